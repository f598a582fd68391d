//! The running groups: each group's members and its current censor (replaced whole when
//! its patterns change, so a report is judged by one version of them), the review
//! decisions taken, the counters, and the one place patterns and decisions are
//! persisted (the store's state, namespace `relay`):
//!
//! - `censor.<group>`: `{"configured": …, "patterns": …}`. Patterns set at run time
//!   (API, CLI, web UI) are kept with the configured patterns they replaced; at start
//!   they win as long as the configuration still says what it said then. When the
//!   configuration's patterns change, they win (the operator edited the file last).
//! - `review.<group>`: `{"<report id>": {"decision": "approved"|"rejected", "at": s}}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use flotilla_core::censor::{Censor, CensorError, CensorPatterns};
use flotilla_store::{Store, StoreError};
use serde_json::{Value, json};

use crate::config::{GroupSettings, Member};

/// The store namespace of the relay's state.
pub const STATE_NAMESPACE: &str = "relay";

/// The queue a group's rejected reports wait in.
pub fn review_queue(group: &str) -> String {
    format!("review.{group}")
}

/// A review decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approved,
    Rejected,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
        }
    }
}

/// What a group has done since the node started.
#[derive(Debug, Default)]
pub struct Counters {
    pub reports: AtomicU64,
    pub relayed: AtomicU64,
    pub rejected: AtomicU64,
    pub approved: AtomicU64,
    pub discarded: AtomicU64,
}

/// One running group.
pub struct Group {
    pub name: String,
    pub members: Vec<Member>,
    configured: CensorPatterns,
    censor: RwLock<Arc<Censor>>,
    decisions: Mutex<HashMap<String, (Decision, u64)>>,
    pub counters: Counters,
    /// Pattern changes and decisions are written one at a time.
    write: tokio::sync::Mutex<()>,
    /// Held from looking a report up to recording the decision, so two moderators
    /// approving the same report at once relay it once.
    pub reviewing: tokio::sync::Mutex<()>,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{0}")]
    Patterns(CensorError),
    #[error("saving failed: {0}")]
    Store(#[from] StoreError),
}

impl Group {
    /// The group as configured, with what the store remembers applied.
    pub async fn load(settings: GroupSettings, store: &Store) -> anyhow::Result<Group> {
        let saved = store.get_state(STATE_NAMESPACE, &format!("censor.{}", settings.name)).await?;
        let mut patterns = settings.patterns.clone();
        if let Some(saved) = saved {
            let configured: Option<CensorPatterns> = serde_json::from_value(saved["configured"].clone()).ok();
            let current: Option<CensorPatterns> = serde_json::from_value(saved["patterns"].clone()).ok();
            match (configured, current) {
                (Some(configured), Some(current)) if configured == settings.patterns => patterns = current,
                _ => tracing::info!(group = %settings.name,
                    "The configuration's censor patterns changed since they were last set at run time; using the configuration's."),
            }
        }
        let censor = match Censor::new(patterns.clone()) {
            Ok(censor) => censor,
            Err(error) => {
                // Saved patterns were valid when saved; a newer regex engine might
                // disagree. The configuration's were checked by `build`.
                tracing::warn!(group = %settings.name, %error, "Saved censor patterns no longer compile; using the configuration's.");
                Censor::new(settings.patterns.clone())?
            }
        };
        let saved = store.get_state(STATE_NAMESPACE, &review_queue(&settings.name)).await?;
        let mut decisions = HashMap::new();
        if let Some(Value::Object(map)) = saved {
            for (id, entry) in map {
                let decision = match entry["decision"].as_str() {
                    Some("approved") => Decision::Approved,
                    Some("rejected") => Decision::Rejected,
                    _ => continue,
                };
                decisions.insert(id, (decision, entry["at"].as_u64().unwrap_or(0)));
            }
        }
        Ok(Group {
            name: settings.name,
            members: settings.members,
            configured: settings.patterns,
            censor: RwLock::new(Arc::new(censor)),
            decisions: Mutex::new(decisions),
            counters: Counters::default(),
            write: tokio::sync::Mutex::new(()),
            reviewing: tokio::sync::Mutex::new(()),
        })
    }

    /// The censor the next report is judged by.
    pub fn censor(&self) -> Arc<Censor> {
        self.censor.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the patterns: refused whole when one is bad; saved before it applies.
    pub async fn set_patterns(&self, store: &Store, patterns: CensorPatterns) -> Result<Arc<Censor>, ChangeError> {
        let censor = Arc::new(Censor::new(patterns.clone()).map_err(ChangeError::Patterns)?);
        let _one_at_a_time = self.write.lock().await;
        let saved = json!({"configured": self.configured, "patterns": patterns});
        store.put_state(STATE_NAMESPACE, &format!("censor.{}", self.name), &saved).await?;
        *self.censor.write().unwrap_or_else(|p| p.into_inner()) = censor.clone();
        tracing::info!(group = %self.name, trigger = patterns.trigger.len(), blocklist = patterns.blocklist.len(),
            "Censor patterns changed.");
        Ok(censor)
    }

    /// The decision taken on a report, if any.
    pub fn decision(&self, id: &str) -> Option<(Decision, u64)> {
        self.decisions.lock().unwrap_or_else(|p| p.into_inner()).get(id).copied()
    }

    /// Records a decision (saved before it counts).
    pub async fn decide(&self, store: &Store, id: &str, decision: Decision) -> Result<(), StoreError> {
        let _one_at_a_time = self.write.lock().await;
        let at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut all: serde_json::Map<String, Value> = self
            .decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, (d, at))| (id.clone(), json!({"decision": d.as_str(), "at": at})))
            .collect();
        all.insert(id.to_string(), json!({"decision": decision.as_str(), "at": at}));
        store.put_state(STATE_NAMESPACE, &review_queue(&self.name), &Value::Object(all)).await?;
        self.decisions.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), (decision, at));
        Ok(())
    }

    /// Counters and patterns for status and the API.
    pub fn summary(&self) -> Value {
        let c = &self.counters;
        json!({
            "name": self.name,
            "connectors": self.members.iter().map(|m| json!({"name": m.connector, "type": m.kind.as_str()})).collect::<Vec<_>>(),
            "censor": self.censor().patterns(),
            "reports": c.reports.load(Ordering::Relaxed),
            "relayed": c.relayed.load(Ordering::Relaxed),
            "rejected": c.rejected.load(Ordering::Relaxed),
            "approved": c.approved.load(Ordering::Relaxed),
            "discarded": c.discarded.load(Ordering::Relaxed),
        })
    }
}

/// Every group, and which groups each connector is a member of.
pub struct Groups {
    pub groups: Vec<Arc<Group>>,
    by_connector: HashMap<String, Vec<usize>>,
}

impl Groups {
    pub fn new(groups: Vec<Group>) -> Groups {
        let mut by_connector: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, group) in groups.iter().enumerate() {
            for member in &group.members {
                by_connector.entry(member.connector.clone()).or_default().push(i);
            }
        }
        Groups { groups: groups.into_iter().map(Arc::new).collect(), by_connector }
    }

    pub fn find(&self, name: &str) -> Option<&Arc<Group>> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The groups `connector` is a member of.
    pub fn of_connector<'a>(&'a self, connector: &str) -> impl Iterator<Item = &'a Arc<Group>> + 'a {
        self.by_connector.get(connector).into_iter().flatten().map(|&i| &self.groups[i])
    }
}
