//! The node at a glance: what `flotilla status`, `/api/v1/status` and `/metrics` show.
//!
//! Besides the running totals, the node keeps an hour of per-minute counts (messages
//! emitted per connector, messages appended per queue: [`RateHistory`]) so the web UI
//! can draw messages per second without a time-series store: a sample of the totals at
//! each minute's start, the counts being differences between neighbouring samples.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
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
    /// In the public view ([`StatusSource::public_snapshot`]): the services' private
    /// queues, summed up, which `queues` then leaves out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_queues: Option<PrivateQueues>,
    /// With a shared bus: every node of the fleet and who owns which connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetView>,
    /// Messages per minute over the last hour, per connector and per queue.
    #[serde(default)]
    pub rates: RatesView,
}

/// How many minutes of counts the node keeps.
pub const RATE_MINUTES: usize = 60;

/// Per-minute counts over the last [`RATE_MINUTES`] minutes, oldest first; the last
/// count is the minute in progress so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RatesView {
    /// Unix seconds at which the oldest minute began.
    pub since: u64,
    pub connectors: Vec<RateSeries>,
    pub queues: Vec<RateSeries>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RateSeries {
    pub name: String,
    pub per_minute: Vec<u64>,
}

/// Samples of running totals, one per minute (the first sample taken in that minute).
#[derive(Debug, Default)]
pub struct RateHistory {
    /// (minute number since the epoch, totals by name), oldest first.
    samples: VecDeque<(u64, BTreeMap<String, u64>)>,
}

impl RateHistory {
    /// Records `totals` as minute `minute`'s sample, unless that minute already has one;
    /// forgets samples older than the window needs.
    pub fn record(&mut self, minute: u64, totals: impl FnOnce() -> BTreeMap<String, u64>) {
        if self.samples.back().is_some_and(|(m, _)| *m >= minute) {
            return;
        }
        self.samples.push_back((minute, totals()));
        while self.samples.front().is_some_and(|(m, _)| *m + (RATE_MINUTES as u64) < minute) {
            self.samples.pop_front();
        }
    }

    /// The counts of `name` in each of the [`RATE_MINUTES`] minutes ending with `now_minute`
    /// (whose count is `live` minus its sample). A minute without a sample at its start
    /// or end counts 0 (the node was not running, or the minute is older than it); a
    /// total that went down (a restarted connector) counts from zero.
    pub fn per_minute(&self, name: &str, now_minute: u64, live: u64) -> Vec<u64> {
        let total_at = |minute: u64| {
            self.samples.iter().find(|(m, _)| *m == minute).map(|(_, totals)| totals.get(name).copied().unwrap_or(0))
        };
        // Minutes before the epoch (only in tests) count 0 like any minute without samples.
        let first = (now_minute + 1) as i128 - RATE_MINUTES as i128;
        (first..=now_minute as i128)
            .map(|minute| {
                let Ok(minute) = u64::try_from(minute) else { return 0 };
                let start = total_at(minute);
                let end = if minute == now_minute { Some(live) } else { total_at(minute + 1) };
                match (start, end) {
                    (Some(start), Some(end)) if end >= start => end - start,
                    (Some(_), Some(end)) => end,
                    _ => 0,
                }
            })
            .collect()
    }
}

/// The two histories a node keeps.
#[derive(Debug, Default)]
pub struct Rates {
    pub connectors: RateHistory,
    pub queues: RateHistory,
}

fn now_minute() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs() / 60
}

/// Samples the totals at each minute's start until `shutdown`, so that the counts of
/// minutes nobody looked at are kept too.
pub async fn sample_rates_every_minute(status: StatusSource, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        status.sample_rates().await;
        let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let to_next_minute = std::time::Duration::from_secs(60 - secs % 60);
        tokio::select! {
            _ = tokio::time::sleep(to_next_minute) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Queues named after a service's users (`sub.<name>`), summed up for the public view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateQueues {
    pub queues: u64,
    pub depth: u64,
    pub bytes: u64,
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

/// The bus's counters and latency histograms, as the status shows them.
pub type BusView = BusCounters;

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
    /// Per-minute samples of the totals (see [`RateHistory`]).
    pub rates: Arc<Mutex<Rates>>,
}

/// How long status waits for the fleet's backend before showing the error instead.
const FLEET_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

fn connector_totals(connectors: &[ConnectorView]) -> BTreeMap<String, u64> {
    connectors.iter().map(|c| (c.name.clone(), c.emitted)).collect()
}

fn queue_totals(queues: &[QueueView]) -> BTreeMap<String, u64> {
    queues.iter().map(|q| (q.queue.clone(), q.next_seq)).collect()
}

#[async_trait::async_trait]
impl flotilla_service::NodeView for StatusSource {
    async fn status(&self, admin: bool) -> serde_json::Value {
        let status = if admin { self.snapshot().await } else { self.public_snapshot().await };
        serde_json::to_value(status).unwrap_or_default()
    }
}

impl StatusSource {
    /// Takes this minute's sample of the totals, if it has none yet.
    pub async fn sample_rates(&self) {
        let queues: Vec<QueueView> =
            self.bus.stats().await.unwrap_or_default().into_iter().map(QueueView::from).collect();
        let connectors: Vec<ConnectorView> = self.board.snapshot().into_iter().map(ConnectorView::from).collect();
        let minute = now_minute();
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        rates.connectors.record(minute, || connector_totals(&connectors));
        rates.queues.record(minute, || queue_totals(&queues));
    }

    /// The per-minute counts of these connectors and queues (their totals as of now).
    fn rates_view(&self, connectors: &[ConnectorView], queues: &[QueueView]) -> RatesView {
        let minute = now_minute();
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        rates.connectors.record(minute, || connector_totals(connectors));
        rates.queues.record(minute, || queue_totals(queues));
        RatesView {
            since: (minute + 1).saturating_sub(RATE_MINUTES as u64) * 60,
            connectors: connectors
                .iter()
                .map(|c| RateSeries {
                    name: c.name.clone(),
                    per_minute: rates.connectors.per_minute(&c.name, minute, c.emitted),
                })
                .collect(),
            queues: queues
                .iter()
                .map(|q| RateSeries {
                    name: q.queue.clone(),
                    per_minute: rates.queues.per_minute(&q.queue, minute, q.next_seq),
                })
                .collect(),
        }
    }

    pub async fn snapshot(&self) -> NodeStatus {
        let queues: Vec<QueueView> =
            self.bus.stats().await.unwrap_or_default().into_iter().map(QueueView::from).collect();
        let connectors: Vec<ConnectorView> = self.board.snapshot().into_iter().map(ConnectorView::from).collect();
        let rates = self.rates_view(&connectors, &queues);
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
            connectors,
            queues,
            bus: self.bus.counters(),
            reactor: ReactorView {
                messages: r.messages.load(Ordering::Relaxed),
                rules_fired: r.rules_fired.load(Ordering::Relaxed),
                plugin_errors: r.plugin_errors.load(Ordering::Relaxed),
                dropped: r.dropped.load(Ordering::Relaxed),
                rejected: r.rejected.load(Ordering::Relaxed),
                last_message_at: (last > 0).then_some(last),
            },
            services: self.services.iter().map(|s| (s.name().to_string(), s.status())).collect(),
            private_queues: None,
            fleet,
            rates,
        }
    }

    /// The status as shown without the admin token (`docs/security.md`): the services'
    /// private queues (named after their users) summed up rather than listed, and each
    /// service's public status.
    pub async fn public_snapshot(&self) -> NodeStatus {
        let mut status = self.snapshot().await;
        let private = |queue: &str| self.services.iter().any(|s| s.private_queue(queue));
        let mut summed = PrivateQueues::default();
        status.queues.retain(|q| {
            if !private(&q.queue) {
                return true;
            }
            summed.queues += 1;
            summed.depth += q.depth;
            summed.bytes += q.bytes;
            false
        });
        status.rates.queues.retain(|series| !private(&series.name));
        status.private_queues = Some(summed);
        status.services = self.services.iter().map(|s| (s.name().to_string(), s.public_status())).collect();
        status
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
            "{:<24} {:<12} {:<12} {:>8} {:>10}  LAST ERROR",
            "CONNECTOR", "TYPE", "STATE", "RESTARTS", "EMITTED"
        );
        for c in &status.connectors {
            let _ = writeln!(
                out,
                "{:<24} {:<12} {:<12} {:>8} {:>10}  {}",
                c.name,
                c.kind,
                c.state,
                c.restarts,
                c.emitted,
                // Errors quote servers and peers: nothing in them may drive the terminal.
                flotilla_core::escape_controls(c.last_error.as_deref().unwrap_or(""))
            );
            render_detail(&mut out, &c.detail, "    ");
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
        serde_json::Value::Object(fields) => pairs(fields.iter()),
        serde_json::Value::Null => "running".to_string(),
        other => other.to_string(),
    }
}

/// A connector's detail (whatever it reports with `set_detail`) under its row, for a
/// person to read: its plain fields on one line, each nested object on a line of its own
/// (`logger: written 120, failures 0`), and each list of objects as a table with a row
/// per item (an IRC network's connections). `--json` shows the detail as it is.
fn render_detail(out: &mut String, detail: &serde_json::Value, indent: &str) {
    use serde_json::Value;
    use std::fmt::Write;
    let Value::Object(fields) = detail else {
        if !detail.is_null() {
            let _ = writeln!(out, "{indent}{}", cell(detail));
        }
        return;
    };
    let plain: Vec<(&String, &Value)> = fields.iter().filter(|(_, v)| !v.is_object() && !is_table(v)).collect();
    if !plain.is_empty() {
        let _ = writeln!(out, "{indent}{}", pairs(plain.into_iter()));
    }
    for (key, value) in fields {
        match value {
            Value::Object(inner) => {
                let _ = writeln!(out, "{indent}{key}: {}", pairs(inner.iter()));
            }
            Value::Array(rows) if is_table(value) => render_rows(out, key, rows, indent),
            _ => {}
        }
    }
}

/// A non-empty list whose items are all objects.
fn is_table(value: &serde_json::Value) -> bool {
    value.as_array().is_some_and(|rows| !rows.is_empty() && rows.iter().all(serde_json::Value::is_object))
}

/// `rows` as a table: one column per key (in the order keys first appear), headed by
/// the key in capitals, each column as wide as its widest cell.
fn render_rows(out: &mut String, title: &str, rows: &[serde_json::Value], indent: &str) {
    use std::fmt::Write;
    let mut columns: Vec<&str> = Vec::new();
    for row in rows.iter().filter_map(serde_json::Value::as_object) {
        for key in row.keys() {
            if !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    let header: Vec<String> = columns.iter().map(|c| c.replace('_', " ").to_uppercase()).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell(row.get(*c).unwrap_or(&serde_json::Value::Null))).collect())
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| cells.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |values: &[String]| {
        let padded: Vec<String> = values.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    let _ = writeln!(out, "{indent}{title}:");
    let _ = writeln!(out, "{indent}  {}", line(&header));
    for row in &cells {
        let _ = writeln!(out, "{indent}  {}", line(row));
    }
}

/// `key value, key value` for a person.
fn pairs<'a>(fields: impl Iterator<Item = (&'a String, &'a serde_json::Value)>) -> String {
    fields.map(|(key, value)| format!("{key} {}", cell(value))).collect::<Vec<_>>().join(", ")
}

/// One value as a table cell: text without quotes, a list comma-separated, nothing as `-`.
fn cell(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "-".to_string(),
        Value::String(text) => flotilla_core::escape_controls(text).into_owned(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            if items.is_empty() {
                "-".to_string()
            } else {
                items.iter().map(cell).collect::<Vec<_>>().join(",")
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn totals(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn per_minute_counts_are_differences_between_samples() {
        // (samples as (minute, total of "a")), now, live total, the last four counts expected.
        type Case<'a> = (&'a [(u64, u64)], u64, u64, [u64; 4]);
        let cases: &[Case] = &[
            // Nothing sampled before now: only the minute in progress counts.
            (&[(1000, 0)], 1000, 7, [0, 0, 0, 7]),
            (&[(997, 0), (998, 5), (999, 5), (1000, 12)], 1000, 20, [5, 0, 7, 8]),
            // A missing sample (the node was down) counts 0 on both sides of the gap.
            (&[(997, 0), (999, 5), (1000, 12)], 1000, 12, [0, 0, 7, 0]),
            // A total that went down (restarted connector) counts from zero.
            (&[(998, 50), (999, 3)], 999, 4, [0, 0, 3, 1]),
        ];
        for (samples, now, live, expected) in cases {
            let mut history = RateHistory::default();
            for (minute, total) in *samples {
                history.record(*minute, || totals(&[("a", *total)]));
            }
            let counts = history.per_minute("a", *now, *live);
            assert_eq!(counts.len(), RATE_MINUTES);
            assert_eq!(&counts[RATE_MINUTES - 4..], expected, "samples {samples:?}");
            assert_eq!(history.per_minute("unknown", *now, 0).iter().sum::<u64>(), 0);
        }
    }

    #[test]
    fn a_minute_keeps_its_first_sample_and_old_samples_are_forgotten() {
        let mut history = RateHistory::default();
        history.record(10, || totals(&[("a", 1)]));
        history.record(10, || totals(&[("a", 99)]));
        assert_eq!(history.per_minute("a", 10, 5)[RATE_MINUTES - 1], 4);
        history.record(200, || totals(&[("a", 5)]));
        assert_eq!(history.samples.len(), 1);
    }

    #[test]
    fn a_connectors_detail_is_printed_as_lines_and_a_table_not_as_json() {
        let mut out = String::new();
        let detail = json!({
            "network": "libera",
            "server": "irc.example:6697",
            "states": {"connected": 1, "backoff": 1},
            "connections": [
                {"connection": 1, "bind": null, "nick": "flot", "channels": ["#a", "#b"], "lag_ms": 12, "state": "connected", "last_error": null},
                {"connection": 2, "bind": "127.0.0.6", "nick": "flot2", "channels": [], "lag_ms": null, "state": "backoff", "last_error": "Connection refused"},
            ],
            "logger": {"written": 120, "failures": 0, "last_error": null},
        });
        render_detail(&mut out, &detail, "    ");
        assert_eq!(
            out,
            "    network libera, server irc.example:6697
    states: connected 1, backoff 1
    connections:
      CONNECTION  BIND       NICK   CHANNELS  LAG MS  STATE      LAST ERROR
      1           -          flot   #a,#b     12      connected  -
      2           127.0.0.6  flot2  -         -       backoff    Connection refused
    logger: written 120, failures 0, last_error -
"
        );
        // Nothing reported, nothing printed.
        let mut out = String::new();
        render_detail(&mut out, &serde_json::Value::Null, "    ");
        assert_eq!(out, "");
    }
}
