-- Slack's event ids seen by the gateway (retries are dropped), and the glossary.
CREATE TABLE IF NOT EXISTS slack_seen (
    connector TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (connector, event_id)
);
CREATE INDEX IF NOT EXISTS slack_seen_at ON slack_seen (seen_at);
CREATE TABLE IF NOT EXISTS slack_glossary (
    connector TEXT NOT NULL,
    term TEXT NOT NULL,
    definition TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (connector, term)
);
