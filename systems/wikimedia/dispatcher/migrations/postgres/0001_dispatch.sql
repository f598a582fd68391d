-- The Wikimedia dispatcher's subscriptions (SPEC §6.1). The in-memory index is the
-- source of truth for matching; these tables are its write-behind copy, loaded once at
-- start-up. A token is stored only as the hex SHA-256 of it.
CREATE TABLE IF NOT EXISTS dispatch_subscriptions (
    name        TEXT    NOT NULL PRIMARY KEY,
    token_hash  TEXT    NOT NULL,
    format      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- One row per definition. Absent parts are empty strings (a definition treats an empty
-- page or user as absent); `def_key` is the hex SHA-256 of the canonical parts, so the
-- key stays short however long a regex is.
CREATE TABLE IF NOT EXISTS dispatch_definitions (
    subscription  TEXT    NOT NULL,
    def_key       TEXT    NOT NULL,
    wiki          TEXT    NOT NULL,
    page          TEXT    NOT NULL,
    page_rx       TEXT    NOT NULL,
    user_name     TEXT    NOT NULL,
    user_rx       TEXT    NOT NULL,
    flags         TEXT    NOT NULL,
    added_at      BIGINT  NOT NULL,
    PRIMARY KEY (subscription, def_key)
);
