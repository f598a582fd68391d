//! Connector states as `flotilla status`, `/metrics` and `/api/v1/status` show them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

/// Where a connector is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorState {
    /// Built, its task is starting.
    Starting,
    Running,
    /// Failed; waiting before the next restart.
    BackingOff,
    /// Gave up after too many consecutive failures; needs an operator.
    Sunk,
    /// Shut down (or disabled).
    Stopped,
}

impl ConnectorState {
    pub const ALL: [ConnectorState; 5] = [
        ConnectorState::Starting,
        ConnectorState::Running,
        ConnectorState::BackingOff,
        ConnectorState::Sunk,
        ConnectorState::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorState::Starting => "starting",
            ConnectorState::Running => "running",
            ConnectorState::BackingOff => "backing_off",
            ConnectorState::Sunk => "sunk",
            ConnectorState::Stopped => "stopped",
        }
    }
}

/// One connector's status.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: ConnectorState,
    /// Unix seconds when it entered this state.
    pub since: u64,
    pub restarts: u64,
    pub last_error: Option<String>,
    /// Messages this connector put on the bus.
    pub emitted: u64,
    /// Connector-specific details (e.g. an IRC connector's connections, their lag).
    pub detail: serde_json::Value,
}

/// Every connector's status, shared by the supervisor, the connectors and the servers.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    inner: Arc<Mutex<BTreeMap<String, ConnectorStatus>>>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl StatusBoard {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, ConnectorStatus>) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Adds a connector in state `starting` (or `stopped` when disabled).
    pub fn register(&self, name: &str, kind: &str, state: ConnectorState) {
        self.with(|all| {
            all.insert(
                name.to_string(),
                ConnectorStatus {
                    name: name.to_string(),
                    kind: kind.to_string(),
                    state,
                    since: unix_now(),
                    restarts: 0,
                    last_error: None,
                    emitted: 0,
                    detail: serde_json::Value::Null,
                },
            );
        });
    }

    /// Forgets a connector (a reload removed it from the configuration).
    pub fn remove(&self, name: &str) {
        self.with(|all| {
            all.remove(name);
        });
    }

    pub fn set_state(&self, name: &str, state: ConnectorState) {
        self.with(|all| {
            if let Some(status) = all.get_mut(name)
                && status.state != state
            {
                status.state = state;
                status.since = unix_now();
            }
        });
    }

    pub fn record_failure(&self, name: &str, error: String) {
        self.with(|all| {
            if let Some(status) = all.get_mut(name) {
                status.last_error = Some(error);
            }
        });
    }

    pub fn record_restart(&self, name: &str) {
        self.with(|all| {
            if let Some(status) = all.get_mut(name) {
                status.restarts += 1;
            }
        });
    }

    pub fn add_emitted(&self, name: &str, count: u64) {
        self.with(|all| {
            if let Some(status) = all.get_mut(name) {
                status.emitted += count;
            }
        });
    }

    pub fn set_detail(&self, name: &str, detail: serde_json::Value) {
        self.with(|all| {
            if let Some(status) = all.get_mut(name) {
                status.detail = detail;
            }
        });
    }

    /// A copy of every status, by name.
    pub fn snapshot(&self) -> Vec<ConnectorStatus> {
        self.with(|all| all.values().cloned().collect())
    }

    pub fn get(&self, name: &str) -> Option<ConnectorStatus> {
        self.with(|all| all.get(name).cloned())
    }
}
