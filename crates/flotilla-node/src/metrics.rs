//! `/metrics` in the Prometheus text format, rendered from a [`NodeStatus`] at scrape
//! time (no registry to keep in sync): the admin's view, or the public one with private
//! queues summed up ([`crate::status::StatusSource::public_snapshot`]). Each running
//! service's status numbers appear as `flotilla_<service>_<field>`
//! (`flotilla_dispatcher_redis_parked`): the services say what they count in one place,
//! their status.

use std::fmt::Write;

use flotilla_connector::ConnectorState;

use crate::status::NodeStatus;

/// Escapes a label value.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label(v))).collect();
            let _ = write!(self.0, "{{{}}}", inner.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }
}

/// The metrics text.
pub fn render(status: &NodeStatus) -> String {
    let mut t = Text(String::new());
    let b = &status.bus;
    t.counter("flotilla_bus_published_total", "Messages published to the bus.", b.published);
    t.counter("flotilla_bus_publish_batches_total", "Publish calls (batches) served.", b.publish_batches);
    t.counter("flotilla_bus_syncs_total", "fsyncs of bus segments.", b.syncs);
    t.counter("flotilla_bus_delivered_total", "Messages handed to consumers.", b.delivered);
    t.counter("flotilla_bus_acked_total", "Messages acknowledged by consumers.", b.acked);
    t.counter("flotilla_bus_publish_errors_total", "Publishes that failed (the publisher was told).", b.publish_errors);
    t.counter(
        "flotilla_bus_corrupt_records_skipped_total",
        "Damaged records skipped, never served.",
        b.corrupt_records_skipped,
    );

    t.family("flotilla_queue_depth", "gauge", "Messages not yet acknowledged by the slowest group.");
    for q in &status.queues {
        t.sample("flotilla_queue_depth", &[("queue", &q.queue)], q.depth);
    }
    t.family("flotilla_queue_bytes", "gauge", "Bytes of retained log per queue.");
    for q in &status.queues {
        t.sample("flotilla_queue_bytes", &[("queue", &q.queue)], q.bytes);
    }
    t.family("flotilla_queue_group_pending", "gauge", "Messages a consumer group has not acknowledged.");
    for q in &status.queues {
        for g in &q.groups {
            t.sample("flotilla_queue_group_pending", &[("queue", &q.queue), ("group", &g.group)], g.pending);
        }
    }
    // Without the admin token, queues named after a service's users are only summed up.
    if let Some(private) = &status.private_queues {
        t.family("flotilla_private_queues", "gauge", "Queues named after a service's users (sub.<name>), not listed.");
        t.sample("flotilla_private_queues", &[], private.queues);
        t.family("flotilla_private_queue_depth", "gauge", "Messages not yet acknowledged in those queues, summed.");
        t.sample("flotilla_private_queue_depth", &[], private.depth);
        t.family("flotilla_private_queue_bytes", "gauge", "Bytes of retained log in those queues, summed.");
        t.sample("flotilla_private_queue_bytes", &[], private.bytes);
    }

    t.family("flotilla_connector_state", "gauge", "1 for the state each connector is in, 0 for the others.");
    for c in &status.connectors {
        for state in ConnectorState::ALL {
            let value = u8::from(c.state == state.as_str());
            t.sample(
                "flotilla_connector_state",
                &[("connector", &c.name), ("type", &c.kind), ("state", state.as_str())],
                value,
            );
        }
    }
    t.family("flotilla_connector_restarts_total", "counter", "Restarts of each connector by the supervisor.");
    for c in &status.connectors {
        t.sample("flotilla_connector_restarts_total", &[("connector", &c.name)], c.restarts);
    }
    t.family("flotilla_connector_emitted_total", "counter", "Messages each connector put on the bus.");
    for c in &status.connectors {
        t.sample("flotilla_connector_emitted_total", &[("connector", &c.name)], c.emitted);
    }

    let r = &status.reactor;
    t.counter("flotilla_reactor_messages_total", "Messages the reactor processed.", r.messages);
    t.counter("flotilla_reactor_rules_fired_total", "Rules that fired.", r.rules_fired);
    t.counter("flotilla_reactor_plugin_errors_total", "Plugin failures recorded in errmsg.", r.plugin_errors);
    t.counter("flotilla_reactor_dropped_total", "Messages dropped by rules.", r.dropped);
    t.counter("flotilla_reactor_rejected_total", "Payloads in the reactor queue that were not messages.", r.rejected);
    t.family("flotilla_uptime_seconds", "gauge", "Seconds since the node started.");
    t.sample("flotilla_uptime_seconds", &[], status.uptime_seconds);
    // The node cannot tell a service's counters from its gauges: `untyped`. Only the
    // top-level numbers; lists (names of things) stay in the status.
    for (service, detail) in &status.services {
        let Some(fields) = detail.as_object() else { continue };
        for (field, value) in fields {
            let Some(number) = value.as_u64() else { continue };
            let name = format!("flotilla_{}_{}", metric_name(service), metric_name(field));
            t.family(&name, "untyped", &format!("The {service} service's `{field}` (its status in /api/v1/status)."));
            t.sample(&name, &[], number);
        }
    }
    t.0
}

/// `text` with every character a metric name cannot hold replaced by `_`.
fn metric_name(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_services_status_numbers_are_metrics_and_its_lists_are_not() {
        let services = serde_json::json!({"dispatcher": {"redis_parked": 2, "redis_parked_keys": ["a"], "note": "x"}});
        let status = NodeStatus {
            node: "n".into(),
            hostname: "h".into(),
            version: "0".into(),
            pid: 1,
            state: "running".into(),
            started_at: 0,
            uptime_seconds: 5,
            http_listen: None,
            connectors: Vec::new(),
            queues: Vec::new(),
            private_queues: None,
            fleet: None,
            rates: Default::default(),
            bus: Default::default(),
            reactor: Default::default(),
            services: services.as_object().cloned().unwrap_or_default(),
        };
        let text = render(&status);
        assert!(
            text.contains("# TYPE flotilla_dispatcher_redis_parked untyped\nflotilla_dispatcher_redis_parked 2\n"),
            "{text}"
        );
        assert!(!text.contains("redis_parked_keys") && !text.contains("note"), "{text}");
    }
}
