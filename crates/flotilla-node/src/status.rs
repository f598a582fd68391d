//! The node at a glance: what `flotilla status`, `/api/v1/status` and `/metrics` show.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use flotilla_bus::fleet::Fleet;
use flotilla_bus::{Bus, BusCounters, QueueStats};
use flotilla_connector::{ConnectorStatus, StatusBoard};
use flotilla_service::RunningService;
use serde::{Deserialize, Serialize};

use crate::fleet::FleetView;
use crate::reactor::ReactorCounters;

/// Everything the status views show.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub hostname: String,
    pub version: String,
    pub pid: u32,
    /// `running`, or `stopped` when read from the data directory of a node that is not.
    pub state: String,
    pub started_at: u64,
    pub uptime_seconds: u64,
    pub http_listen: Option<String>,
    pub connectors: Vec<ConnectorView>,
    pub queues: Vec<QueueView>,
    pub bus: BusView,
    pub reactor: ReactorView,
    /// Each running service's own status, by service name (only services that run).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub services: serde_json::Map<String, serde_json::Value>,
    /// With a shared bus: every node of the fleet and who owns which connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetView>,
}

/// A connector as shown (a copy of [`ConnectorStatus`] that can be read back).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectorView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: String,
    pub since: u64,
    pub restarts: u64,
    pub last_error: Option<String>,
    pub emitted: u64,
    pub detail: serde_json::Value,
}

impl From<ConnectorStatus> for ConnectorView {
    fn from(s: ConnectorStatus) -> Self {
        ConnectorView {
            name: s.name,
            kind: s.kind,
            state: s.state.as_str().to_string(),
            since: s.since,
            restarts: s.restarts,
            last_error: s.last_error,
            emitted: s.emitted,
            detail: s.detail,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QueueView {
    pub queue: String,
    pub first_seq: u64,
    pub next_seq: u64,
    pub bytes: u64,
    pub depth: u64,
    pub groups: Vec<GroupView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupView {
    pub group: String,
    pub acked_seq: Option<u64>,
    pub pending: u64,
    pub in_flight: u64,
    pub consumers: u64,
}

impl From<QueueStats> for QueueView {
    fn from(q: QueueStats) -> Self {
        QueueView {
            queue: q.queue,
            first_seq: q.first_seq,
            next_seq: q.next_seq,
            bytes: q.bytes,
            depth: q.depth,
            groups: q
                .groups
                .into_iter()
                .map(|g| GroupView {
                    group: g.group,
                    acked_seq: g.acked_seq,
                    pending: g.pending,
                    in_flight: g.in_flight,
                    consumers: g.consumers,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BusView {
    pub published: u64,
    pub publish_batches: u64,
    pub syncs: u64,
    pub delivered: u64,
    pub acked: u64,
    pub corrupt_records_skipped: u64,
    pub publish_errors: u64,
}

impl From<BusCounters> for BusView {
    fn from(c: BusCounters) -> Self {
        BusView {
            published: c.published,
            publish_batches: c.publish_batches,
            syncs: c.syncs,
            delivered: c.delivered,
            acked: c.acked,
            corrupt_records_skipped: c.corrupt_records_skipped,
            publish_errors: c.publish_errors,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReactorView {
    pub messages: u64,
    pub rules_fired: u64,
    pub plugin_errors: u64,
    pub dropped: u64,
    pub rejected: u64,
    pub last_message_at: Option<u64>,
}

/// What a running node needs to produce its status.
#[derive(Clone)]
pub struct StatusSource {
    pub node: String,
    pub hostname: String,
    pub started: Instant,
    pub started_at: SystemTime,
    pub http_listen: Option<String>,
    pub board: StatusBoard,
    pub bus: Arc<dyn Bus>,
    pub reactor: Arc<ReactorCounters>,
    pub services: Arc<[Arc<dyn RunningService>]>,
    pub fleet: Option<Arc<dyn Fleet>>,
}

/// How long status waits for the fleet's backend before showing the error instead.
const FLEET_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

impl StatusSource {
    pub async fn snapshot(&self) -> NodeStatus {
        let queues = self.bus.stats().await.unwrap_or_default().into_iter().map(QueueView::from).collect();
        let fleet = match &self.fleet {
            Some(fleet) => {
                Some(tokio::time::timeout(FLEET_READ_TIMEOUT, crate::fleet::view(fleet.as_ref())).await.unwrap_or_else(
                    |_| FleetView {
                        error: Some("the fleet's backend did not answer in time".into()),
                        ..FleetView::default()
                    },
                ))
            }
            None => None,
        };
        let r = &self.reactor;
        let last = r.last_message_at.load(Ordering::Relaxed);
        NodeStatus {
            node: self.node.clone(),
            hostname: self.hostname.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            state: "running".into(),
            started_at: self.started_at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs(),
            uptime_seconds: self.started.elapsed().as_secs(),
            http_listen: self.http_listen.clone(),
            connectors: self.board.snapshot().into_iter().map(ConnectorView::from).collect(),
            queues,
            bus: self.bus.counters().into(),
            reactor: ReactorView {
                messages: r.messages.load(Ordering::Relaxed),
                rules_fired: r.rules_fired.load(Ordering::Relaxed),
                plugin_errors: r.plugin_errors.load(Ordering::Relaxed),
                dropped: r.dropped.load(Ordering::Relaxed),
                rejected: r.rejected.load(Ordering::Relaxed),
                last_message_at: (last > 0).then_some(last),
            },
            services: self.services.iter().map(|s| (s.name().to_string(), s.status())).collect(),
            fleet,
        }
    }
}

/// The status as a table for people (what `flotilla status` prints).
pub fn render_table(status: &NodeStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {} on {} — {} (pid {}, up {}s, version {})",
        status.node, status.hostname, status.state, status.pid, status.uptime_seconds, status.version
    );
    let _ = writeln!(out);
    if status.connectors.is_empty() {
        let _ = writeln!(out, "no connectors configured");
    } else {
        let _ = writeln!(
            out,
            "{:<24} {:<12} {:<12} {:>8} {:>10}  LAST ERROR / DETAIL",
            "CONNECTOR", "TYPE", "STATE", "RESTARTS", "EMITTED"
        );
        for c in &status.connectors {
            let detail = match (&c.last_error, &c.detail) {
                (Some(e), _) => e.clone(),
                (None, serde_json::Value::Null) => String::new(),
                (None, d) => d.to_string(),
            };
            let _ = writeln!(
                out,
                "{:<24} {:<12} {:<12} {:>8} {:>10}  {}",
                c.name, c.kind, c.state, c.restarts, c.emitted, detail
            );
        }
    }
    let _ = writeln!(out);
    if status.queues.is_empty() {
        let _ = writeln!(out, "no queues yet");
    } else {
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>10} {:>12}  GROUPS (acked / pending)",
            "QUEUE", "DEPTH", "NEXT SEQ", "BYTES"
        );
        for q in &status.queues {
            let groups: Vec<String> = q
                .groups
                .iter()
                .map(|g| {
                    format!("{}: {} / {}", g.group, g.acked_seq.map_or("-".to_string(), |s| s.to_string()), g.pending)
                })
                .collect();
            let _ = writeln!(
                out,
                "{:<24} {:>10} {:>10} {:>12}  {}",
                q.queue,
                q.depth,
                q.next_seq,
                q.bytes,
                groups.join(", ")
            );
        }
    }
    let r = &status.reactor;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "reactor: {} messages, {} rules fired, {} plugin errors, {} dropped, {} rejected",
        r.messages, r.rules_fired, r.plugin_errors, r.dropped, r.rejected
    );
    for (name, detail) in &status.services {
        let _ = writeln!(out, "{name}: {}", service_line(detail));
    }
    if let Some(fleet) = &status.fleet {
        render_fleet(&mut out, fleet);
    }
    out
}

/// The fleet's nodes, each with what it owns.
fn render_fleet(out: &mut String, fleet: &FleetView) {
    use std::fmt::Write;
    let _ = writeln!(out);
    if let Some(error) = &fleet.error {
        let _ = writeln!(out, "fleet: cannot be read: {error}");
        return;
    }
    let alive = fleet.nodes.iter().filter(|n| n.alive).count();
    let _ = writeln!(out, "fleet: {} nodes, {alive} alive, {} leases", fleet.nodes.len(), fleet.leases.len());
    let _ = writeln!(out, "{:<16} {:<6} {:>14} {:<10} {:<16} OWNS", "NODE", "ALIVE", "HEARTBEAT", "VERSION", "HOST");
    let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    for node in &fleet.nodes {
        let owns: Vec<String> = fleet
            .leases
            .iter()
            .filter(|l| l.node == node.member.name)
            .map(|l| format!("{} (#{})", l.resource.strip_prefix("connector:").unwrap_or(&l.resource), l.fence))
            .collect();
        let ago = now_ms.saturating_sub(node.last_heartbeat_ms) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "{:<16} {:<6} {:>14} {:<10} {:<16} {}",
            node.member.name,
            if node.alive { "yes" } else { "no" },
            format!("{ago:.1}s ago"),
            node.member.version,
            node.member.hostname,
            if owns.is_empty() { "-".to_string() } else { owns.join(", ") }
        );
    }
}

/// A service's status on one line for people: `key value` pairs of a flat object
/// (`subscriptions 3, deliveries 120, …`), anything nested as JSON.
fn service_line(detail: &serde_json::Value) -> String {
    match detail {
        serde_json::Value::Object(fields) => fields
            .iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => format!("{key} {text}"),
                other => format!("{key} {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::Value::Null => "running".to_string(),
        other => other.to_string(),
    }
}
