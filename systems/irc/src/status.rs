//! Per-connection figures for `flotilla status` and `/api/v1/status`: server, source
//! address, nick, channels joined, lag, reconnects, state. Connection tasks update their
//! own entry when something changes; the connector publishes the table as its status
//! detail at most once a second, and only when it changed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::{Value, json};

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Waiting for its turn to connect, resolving, connecting, TLS handshake.
    Connecting,
    /// Connected, not yet welcomed.
    Registering,
    Connected,
    /// Lost or failed; waiting to try again.
    Reconnecting,
    /// Gave up after `max_attempts` consecutive failures.
    Sunk,
    Stopped,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Registering => "registering",
            ConnectionState::Connected => "connected",
            ConnectionState::Reconnecting => "reconnecting",
            ConnectionState::Sunk => "sunk",
            ConnectionState::Stopped => "stopped",
        }
    }
}

/// One connection's entry.
#[derive(Debug, Clone)]
pub struct ConnectionStatus {
    pub bind: Option<String>,
    pub nick: String,
    pub channels: Vec<String>,
    pub lag_ms: Option<u64>,
    pub reconnects: u64,
    pub state: ConnectionState,
    pub last_error: Option<String>,
}

/// The logger's figures.
#[derive(Debug, Default)]
pub struct LoggerStatus {
    pub written: AtomicU64,
    pub batches: AtomicU64,
    pub failures: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    pub retrying: AtomicBool,
}

/// Every connection's entry.
#[derive(Debug)]
pub struct StatusTable {
    server: String,
    network: String,
    entries: Mutex<Vec<ConnectionStatus>>,
    dirty: AtomicBool,
    pub logger: LoggerStatus,
}

impl StatusTable {
    pub fn new(server: String, network: String, entries: Vec<ConnectionStatus>) -> StatusTable {
        StatusTable {
            server,
            network,
            entries: Mutex::new(entries),
            dirty: AtomicBool::new(true),
            logger: LoggerStatus::default(),
        }
    }

    /// Changes connection `index`'s entry.
    pub fn update(&self, index: usize, change: impl FnOnce(&mut ConnectionStatus)) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get_mut(index) {
            change(entry);
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Marks the table changed (the logger's figures moved).
    pub fn touch(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// A copy of every entry.
    pub fn entries(&self) -> Vec<ConnectionStatus> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many connections are in each state.
    pub fn count(&self, state: ConnectionState) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|e| e.state == state).count()
    }

    /// The detail JSON if anything changed since the last call.
    pub fn take_detail(&self) -> Option<Value> {
        if self.dirty.swap(false, Ordering::AcqRel) { Some(self.detail()) } else { None }
    }

    /// The detail JSON: the network, counts by state, each connection, the logger.
    pub fn detail(&self) -> Value {
        let entries = self.entries();
        let connections: Vec<Value> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                json!({
                    "connection": i + 1,
                    "server": self.server,
                    "bind": e.bind,
                    "nick": e.nick,
                    "channels": e.channels,
                    "lag_ms": e.lag_ms,
                    "reconnects": e.reconnects,
                    "state": e.state.as_str(),
                    "last_error": e.last_error,
                })
            })
            .collect();
        let mut states = serde_json::Map::new();
        for e in &entries {
            let count = states.entry(e.state.as_str()).or_insert(Value::from(0u64));
            *count = Value::from(count.as_u64().unwrap_or(0) + 1);
        }
        let logger = &self.logger;
        json!({
            "network": self.network,
            "server": self.server,
            "states": states,
            "connections": connections,
            "logger": {
                "written": logger.written.load(Ordering::Relaxed),
                "batches": logger.batches.load(Ordering::Relaxed),
                "failures": logger.failures.load(Ordering::Relaxed),
                "retrying": logger.retrying.load(Ordering::Relaxed),
                "last_error": logger.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_lists_each_connection_and_only_changes_are_taken() {
        let entry = ConnectionStatus {
            bind: Some("127.0.0.2".into()),
            nick: "flot".into(),
            channels: vec![],
            lag_ms: None,
            reconnects: 0,
            state: ConnectionState::Connecting,
            last_error: None,
        };
        let table = StatusTable::new("127.0.0.1:6667".into(), "net".into(), vec![entry.clone(), entry]);
        assert!(table.take_detail().is_some());
        assert!(table.take_detail().is_none(), "nothing changed");
        table.update(1, |e| {
            e.state = ConnectionState::Connected;
            e.channels = vec!["#a".into()];
            e.lag_ms = Some(12);
        });
        let detail = table.take_detail().unwrap();
        assert_eq!(detail["connections"][1]["state"], "connected");
        assert_eq!(detail["connections"][1]["channels"][0], "#a");
        assert_eq!(detail["connections"][1]["lag_ms"], 12);
        assert_eq!(detail["connections"][0]["server"], "127.0.0.1:6667");
        assert_eq!(detail["states"]["connected"], 1);
        assert_eq!(detail["states"]["connecting"], 1);
        assert_eq!(table.count(ConnectionState::Connected), 1);
    }
}
