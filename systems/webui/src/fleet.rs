//! `/`: the fleet at a glance, from the node's status (the JSON `/api/v1/status`
//! answers, through [`flotilla_service::NodeView`]): nodes, connectors with state, lag
//! and last error, queues with depth and rate, reactor counters, services, and the graph
//! of messages per second per connector over the last hour.
//!
//! Without a login (with an admin token configured) the page shows the public view, as
//! `/api/v1/status` does without the token: private queues summed up.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use crate::chart::{self, Series};
use crate::pages::{Chrome, access, html, now_secs};
use crate::service::AppState;
use crate::text;

/// The parts of the node's status JSON this page shows (the node's own type lives in
/// the node crate, which services do not depend on); anything missing reads as empty.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StatusJson {
    pub node: String,
    pub state: String,
    pub uptime_seconds: u64,
    pub connectors: Vec<ConnectorJson>,
    pub queues: Vec<QueueJson>,
    pub bus: BusJson,
    pub reactor: ReactorJson,
    pub services: serde_json::Map<String, serde_json::Value>,
    pub private_queues: Option<PrivateJson>,
    pub fleet: Option<FleetJson>,
    pub rates: RatesJson,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConnectorJson {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: String,
    pub restarts: u64,
    pub last_error: Option<String>,
    pub emitted: u64,
    pub detail: serde_json::Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct QueueJson {
    pub queue: String,
    pub next_seq: u64,
    pub bytes: u64,
    pub depth: u64,
    pub groups: Vec<GroupJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct GroupJson {
    pub group: String,
    pub acked_seq: Option<u64>,
    pub pending: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BusJson {
    pub published: u64,
    pub acked: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ReactorJson {
    pub messages: u64,
    pub rules_fired: u64,
    pub plugin_errors: u64,
    pub dropped: u64,
    pub rejected: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PrivateJson {
    pub queues: u64,
    pub depth: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct FleetJson {
    pub error: Option<String>,
    pub nodes: Vec<FleetNodeJson>,
    pub leases: Vec<LeaseJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct FleetNodeJson {
    pub member: MemberJson,
    pub alive: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct MemberJson {
    pub name: String,
    pub hostname: String,
    pub version: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LeaseJson {
    pub resource: String,
    pub node: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RatesJson {
    pub since: u64,
    pub connectors: Vec<SeriesJson>,
    pub queues: Vec<SeriesJson>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SeriesJson {
    pub name: String,
    pub per_minute: Vec<u64>,
}

pub(crate) struct ConnectorRow {
    pub name: String,
    pub kind: String,
    pub state: String,
    pub lag: String,
    pub restarts: u64,
    pub emitted: u64,
    pub rate: String,
    pub last_error: String,
}

pub(crate) struct QueueRow {
    pub name: String,
    pub depth: u64,
    pub rate: String,
    pub next_seq: u64,
    pub bytes: u64,
    pub groups: String,
}

pub(crate) struct NodeRow {
    pub name: String,
    pub alive: &'static str,
    pub host: String,
    pub version: String,
    pub owns: String,
}

#[derive(Template)]
#[template(path = "fleet.html")]
pub(crate) struct FleetPage {
    pub chrome: Chrome,
    pub node: String,
    pub state: String,
    pub uptime: String,
    pub reactor: ReactorJson,
    pub bus_published: u64,
    pub bus_acked: u64,
    /// The graph, already rendered and escaped ([`chart::render`]).
    pub chart: String,
    /// (connector, colour, latest rate)
    pub legend: Vec<(String, &'static str, String)>,
    pub fleet_nodes: Vec<NodeRow>,
    pub fleet_error: Option<String>,
    pub connectors: Vec<ConnectorRow>,
    pub queues: Vec<QueueRow>,
    pub private_queues: Option<String>,
    pub services: Vec<(String, String)>,
}

/// A connector's lag, from what it reports in its detail: its own `lag_ms`, or the
/// largest of its connections' (an IRC network's), as `12 ms`; `-` when it reports none.
pub(crate) fn lag(detail: &serde_json::Value) -> String {
    let own = detail.get("lag_ms").and_then(serde_json::Value::as_u64);
    let connections = detail
        .get("connections")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("lag_ms").and_then(serde_json::Value::as_u64))
        .max();
    own.or(connections).map_or_else(|| "-".to_string(), |ms| format!("{ms} ms"))
}

/// Messages per second over the last five minutes (the minute in progress counted for
/// the seconds it has run), from counts per minute oldest first.
pub(crate) fn recent_rate(per_minute: &[u64], secs_into_minute: u64) -> f64 {
    let last = &per_minute[per_minute.len().saturating_sub(5)..];
    if last.is_empty() {
        return 0.0;
    }
    let seconds = (last.len() as u64 - 1) * 60 + secs_into_minute.clamp(1, 60);
    last.iter().sum::<u64>() as f64 / seconds as f64
}

/// A service's status on one line: its plain fields as `key value`.
fn service_line(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(fields) => fields
            .iter()
            .filter(|(_, v)| !v.is_object() && !v.is_array())
            .map(|(k, v)| format!("{k} {}", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::Value::Null => "running".to_string(),
        other => other.to_string(),
    }
}

/// The page's data from the status and the time.
pub(crate) fn build_page(chrome: Chrome, status: StatusJson, now: u64) -> FleetPage {
    let secs_into_minute = now % 60;
    let connector_rates: std::collections::HashMap<&str, &[u64]> =
        status.rates.connectors.iter().map(|s| (s.name.as_str(), s.per_minute.as_slice())).collect();
    let queue_rates: std::collections::HashMap<&str, &[u64]> =
        status.rates.queues.iter().map(|s| (s.name.as_str(), s.per_minute.as_slice())).collect();
    let series: Vec<Series> = status
        .rates
        .connectors
        .iter()
        .map(|s| Series { name: s.name.clone(), per_minute: s.per_minute.clone() })
        .collect();
    let legend = series
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), chart::colour(i), text::rate(recent_rate(&s.per_minute, secs_into_minute))))
        .collect();
    let connectors = status
        .connectors
        .iter()
        .map(|c| ConnectorRow {
            name: c.name.clone(),
            kind: c.kind.clone(),
            state: c.state.clone(),
            lag: lag(&c.detail),
            restarts: c.restarts,
            emitted: c.emitted,
            rate: text::rate(recent_rate(
                connector_rates.get(c.name.as_str()).copied().unwrap_or(&[]),
                secs_into_minute,
            )),
            last_error: c.last_error.clone().unwrap_or_default(),
        })
        .collect();
    let queues = status
        .queues
        .iter()
        .map(|q| QueueRow {
            name: q.queue.clone(),
            depth: q.depth,
            rate: text::rate(recent_rate(queue_rates.get(q.queue.as_str()).copied().unwrap_or(&[]), secs_into_minute)),
            next_seq: q.next_seq,
            bytes: q.bytes,
            groups: q
                .groups
                .iter()
                .map(|g| format!("{}: {} / {}", g.group, g.acked_seq.map_or("-".into(), |s| s.to_string()), g.pending))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let (fleet_nodes, fleet_error) = match &status.fleet {
        Some(fleet) => (
            fleet
                .nodes
                .iter()
                .map(|n| NodeRow {
                    name: n.member.name.clone(),
                    alive: if n.alive { "yes" } else { "no" },
                    host: n.member.hostname.clone(),
                    version: n.member.version.clone(),
                    owns: fleet
                        .leases
                        .iter()
                        .filter(|l| l.node == n.member.name)
                        .map(|l| l.resource.strip_prefix("connector:").unwrap_or(&l.resource).to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
                .collect(),
            fleet.error.clone(),
        ),
        None => (Vec::new(), None),
    };
    FleetPage {
        chrome,
        node: status.node,
        state: status.state,
        uptime: text::duration(status.uptime_seconds),
        bus_published: status.bus.published,
        bus_acked: status.bus.acked,
        reactor: status.reactor,
        chart: chart::render(&series),
        legend,
        fleet_nodes,
        fleet_error,
        connectors,
        queues,
        private_queues: status.private_queues.filter(|p| p.queues > 0).map(|p| {
            format!("{} private queues (named after users; log in to see them), {} messages in all", p.queues, p.depth)
        }),
        services: status.services.iter().map(|(k, v)| (k.clone(), service_line(v))).collect(),
    }
}

pub(crate) async fn page(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let access = access(&state, &headers, peer);
    let mut chrome = Chrome::new(&state, &access, "/", "Fleet");
    let status = match state.ctx.node.get() {
        Some(view) => serde_json::from_value::<StatusJson>(view.status(access.reader).await).unwrap_or_else(|e| {
            chrome.errors.push(format!("The node's status could not be read: {e}"));
            StatusJson::default()
        }),
        None => {
            chrome.errors.push("The node is still starting; reload in a moment.".into());
            StatusJson::default()
        }
    };
    html(StatusCode::OK, &build_page(chrome, status, now_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lag_is_the_connectors_own_or_its_slowest_connections() {
        let cases = [
            (json!(null), "-"),
            (json!({"lag_ms": 7}), "7 ms"),
            (json!({"connections": [{"lag_ms": 12}, {"lag_ms": null}, {"lag_ms": 40}]}), "40 ms"),
            (json!({"connections": [{"lag_ms": null}]}), "-"),
        ];
        for (detail, expected) in cases {
            assert_eq!(lag(&detail), expected, "{detail}");
        }
    }

    #[test]
    fn the_recent_rate_counts_the_minute_in_progress_for_its_seconds() {
        let cases: &[(&[u64], u64, f64)] = &[
            (&[], 30, 0.0),
            (&[30], 30, 1.0),
            // The minute in progress just began: counted as 1 s, so 300 messages in 241 s.
            (&[0, 0, 60, 60, 60, 60, 60], 0, 300.0 / 241.0),
            (&[60, 60, 60, 60, 60], 60, 1.0),
        ];
        for (counts, secs, expected) in cases {
            assert!((recent_rate(counts, *secs) - expected).abs() < 1e-9, "{counts:?} {secs}");
        }
    }
}
