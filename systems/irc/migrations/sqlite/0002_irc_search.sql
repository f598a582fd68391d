-- Full-text search over the IRC log (the web UI's /logs): an FTS5 index of
-- `irclog.message` that keeps no copy of the text (external content: it reads the rows
-- of `irclog` by id), kept in step by triggers, so every writer (the logger's pooled
-- inserts and its bulk writer alike) indexes what it writes without knowing of it.
-- `unicode61` folds case and diacritics: chat is written in every language.
CREATE VIRTUAL TABLE IF NOT EXISTS irclog_search USING fts5(
    message,
    content = 'irclog',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
-- Lines logged before this migration.
INSERT INTO irclog_search (irclog_search) VALUES ('rebuild');

CREATE TRIGGER IF NOT EXISTS irclog_search_insert AFTER INSERT ON irclog BEGIN
    INSERT INTO irclog_search (rowid, message) VALUES (new.id, new.message);
END;
CREATE TRIGGER IF NOT EXISTS irclog_search_delete AFTER DELETE ON irclog BEGIN
    INSERT INTO irclog_search (irclog_search, rowid, message) VALUES ('delete', old.id, old.message);
END;
CREATE TRIGGER IF NOT EXISTS irclog_search_update AFTER UPDATE OF message ON irclog BEGIN
    INSERT INTO irclog_search (irclog_search, rowid, message) VALUES ('delete', old.id, old.message);
    INSERT INTO irclog_search (rowid, message) VALUES (new.id, new.message);
END;
