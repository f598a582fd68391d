-- Full-text search over the IRC log (the web UI's /logs): a GIN index on the text
-- search vector of `irclog.message`. The `simple` configuration (lower-casing, no
-- stemming, no stop words) because chat is written in every language; a query must
-- use the same expression, `to_tsvector('simple', message)`, to use the index.
CREATE INDEX IF NOT EXISTS irclog_message_search ON irclog USING GIN (to_tsvector('simple', message));
