-- Small named values that must survive restarts: monitor caches, the last event id of
-- a stream, reactor State/Status memory. `value` is JSON text.
CREATE TABLE IF NOT EXISTS flotilla_state (
    namespace  TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (namespace, key)
);
