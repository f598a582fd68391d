-- The IRC fleet's logs (SPEC §7). `irclog` holds the lines bots saw (privmsg, notice,
-- join, part, kick, quit, nick); `fleetlog` the bots' own events (JOINED, KICKED,
-- DISCONNECTED, RECONNECTED, COULD-NOT-RECONNECT, NICK-CHANGED, UNKNOWN-REPLY,
-- ARMADA-ALL-DEAD, PROCESS-TERMINATED) with `detail` saying why. Times are Unix
-- milliseconds (UTC) as integers: sqlx's Any driver cannot decode timestamptz.
CREATE TABLE IF NOT EXISTS irclog (
    id               BIGSERIAL PRIMARY KEY,
    target           TEXT    NOT NULL,
    message          TEXT    NOT NULL,
    host             TEXT,
    source           TEXT    NOT NULL,
    "user"           TEXT,
    networkname      TEXT    NOT NULL,
    irc_message_type TEXT    NOT NULL,
    received_at      BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS irclog_received_at ON irclog (received_at);
CREATE INDEX IF NOT EXISTS irclog_target ON irclog (target);
CREATE INDEX IF NOT EXISTS irclog_source ON irclog (source);
CREATE INDEX IF NOT EXISTS irclog_networkname ON irclog (networkname);

CREATE TABLE IF NOT EXISTS fleetlog (
    id          BIGSERIAL PRIMARY KEY,
    channel     TEXT,
    message     TEXT    NOT NULL,
    nick        TEXT,
    networkname TEXT    NOT NULL,
    detail      TEXT,
    received_at BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS fleetlog_received_at ON fleetlog (received_at);
CREATE INDEX IF NOT EXISTS fleetlog_networkname ON fleetlog (networkname);
