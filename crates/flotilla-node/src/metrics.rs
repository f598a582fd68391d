//! `/metrics` in the Prometheus text format, written by `prometheus-client` from a
//! [`NodeStatus`] taken at scrape time (a collector over the snapshot, so there is no
//! second set of counters to keep in sync with the status): the admin's view, or the
//! public one with private queues summed up
//! ([`crate::status::StatusSource::public_snapshot`]). docs/metrics.md lists every
//! family.
//!
//! Two kinds of numbers come from parts the node does not know:
//! - each running service's status numbers, as `flotilla_<service>_<field>`
//!   (`flotilla_dispatcher_redis_parked`): a service says what it counts in one place,
//!   its status;
//! - each connector's reported detail (what `flotilla status` prints as lines and
//!   tables): its top-level numbers as `flotilla_<type>_<field>{connector}`, and the
//!   numbers in each row of its tables as `flotilla_<type>_<table>_<field>{connector,row}`
//!   (an IRC connection's lag: `flotilla_irc_connections_lag_ms{connector,row}`, `row`
//!   being the connection's number in `flotilla status`).
//!
//! Their type is `untyped`: the node cannot tell a counter from a gauge there.

use std::borrow::Cow;

use flotilla_bus::HistogramSnapshot;
use flotilla_connector::ConnectorState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::status::NodeStatus;

/// The metrics text.
pub fn render(status: &NodeStatus) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { status: status.clone(), process: ProcessStats::read() }));
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

/// What one scrape encodes.
#[derive(Debug)]
struct Scrape {
    status: NodeStatus,
    process: ProcessStats,
}

type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// Writes families into an encoder; each helper writes one family.
struct Families<'e>(DescriptorEncoder<'e>);

impl Families<'_> {
    /// One counter without labels (`name` without `_total`: the encoder appends it).
    fn counter(&mut self, name: &str, help: &str, value: u64) -> std::fmt::Result {
        let mut metric = self.0.encode_descriptor(name, help, None, MetricType::Counter)?;
        metric.encode_counter::<NoLabelSet, u64, u64>(&value, None)
    }

    fn gauge(
        &mut self,
        name: &str,
        help: &str,
        value: impl prometheus_client::encoding::EncodeGaugeValue,
    ) -> std::fmt::Result {
        let mut metric = self.0.encode_descriptor(name, help, None, MetricType::Gauge)?;
        metric.encode_gauge(&value)
    }

    /// A family of `kind` (counter, gauge or unknown), one sample per label set.
    fn family<'a>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: impl IntoIterator<Item = (Labels<'a>, u64)>,
    ) -> std::fmt::Result {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return Ok(()); // No family without samples.
        }
        let mut metric = self.0.encode_descriptor(name, help, None, kind)?;
        for (labels, value) in samples {
            let mut sample = metric.encode_family(&labels)?;
            match kind {
                MetricType::Counter => sample.encode_counter::<NoLabelSet, u64, u64>(&value, None)?,
                _ => sample.encode_gauge(&value)?,
            }
        }
        Ok(())
    }

    fn histogram(&mut self, name: &str, help: &str, histogram: &HistogramSnapshot) -> std::fmt::Result {
        let mut metric = self.0.encode_descriptor(name, help, None, MetricType::Histogram)?;
        metric.encode_histogram::<NoLabelSet>(histogram.sum, histogram.count, &per_bucket(histogram), None)
    }
}

/// prometheus-client takes each bucket's own count and sums them itself; the
/// snapshot's are cumulative.
fn per_bucket(histogram: &HistogramSnapshot) -> Vec<(f64, u64)> {
    let mut below = 0;
    histogram
        .buckets
        .iter()
        .map(|(le, cumulative)| {
            let own = cumulative - below;
            below = *cumulative;
            (*le, own)
        })
        .collect()
}

fn labels<'a>(pairs: impl IntoIterator<Item = (&'static str, &'a str)>) -> Labels<'a> {
    pairs.into_iter().map(|(k, v)| (k, Cow::Borrowed(v))).collect()
}

impl Collector for Scrape {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        let status = &self.status;
        let mut f = Families(encoder);
        let b = &status.bus;
        f.counter("flotilla_bus_published", "Messages published to the bus.", b.published)?;
        f.counter("flotilla_bus_publish_batches", "Publish calls (batches) served.", b.publish_batches)?;
        f.counter("flotilla_bus_syncs", "fsyncs of bus segments.", b.syncs)?;
        f.counter("flotilla_bus_delivered", "Messages handed to consumers.", b.delivered)?;
        f.counter("flotilla_bus_acked", "Messages acknowledged by consumers.", b.acked)?;
        f.counter("flotilla_bus_publish_errors", "Publishes that failed (the publisher was told).", b.publish_errors)?;
        f.counter(
            "flotilla_bus_corrupt_records_skipped",
            "Damaged records skipped, never served.",
            b.corrupt_records_skipped,
        )?;
        f.histogram(
            "flotilla_bus_publish_seconds",
            "How long a publish took, from the call until the batch was durable.",
            &b.publish_seconds,
        )?;
        f.histogram(
            "flotilla_bus_sync_seconds",
            "How long each sync of the embedded bus's files took.",
            &b.sync_seconds,
        )?;

        let queues = &status.queues;
        f.family(
            "flotilla_queue_depth",
            "Messages not yet acknowledged by the slowest group.",
            MetricType::Gauge,
            queues.iter().map(|q| (labels([("queue", q.queue.as_str())]), q.depth)),
        )?;
        f.family(
            "flotilla_queue_bytes",
            "Bytes of retained log per queue.",
            MetricType::Gauge,
            queues.iter().map(|q| (labels([("queue", q.queue.as_str())]), q.bytes)),
        )?;
        let by_group = |value: fn(&crate::status::GroupView) -> u64| {
            queues.iter().flat_map(move |q| {
                q.groups
                    .iter()
                    .map(move |g| (labels([("queue", q.queue.as_str()), ("group", g.group.as_str())]), value(g)))
            })
        };
        f.family(
            "flotilla_queue_group_pending",
            "Messages a consumer group has not acknowledged (its lag, in messages).",
            MetricType::Gauge,
            by_group(|g| g.pending),
        )?;
        f.family(
            "flotilla_queue_group_in_flight",
            "Messages delivered to a consumer group and not yet acknowledged.",
            MetricType::Gauge,
            by_group(|g| g.in_flight),
        )?;
        // Without the admin token, queues named after a service's users are only summed up.
        if let Some(private) = &status.private_queues {
            f.gauge(
                "flotilla_private_queues",
                "Queues named after a service's users (sub.<name>), not listed.",
                private.queues,
            )?;
            f.gauge(
                "flotilla_private_queue_depth",
                "Messages not yet acknowledged in those queues, summed.",
                private.depth,
            )?;
            f.gauge("flotilla_private_queue_bytes", "Bytes of retained log in those queues, summed.", private.bytes)?;
        }

        let connectors = &status.connectors;
        f.family(
            "flotilla_connector_state",
            "1 for the state each connector is in, 0 for the others.",
            MetricType::Gauge,
            connectors.iter().flat_map(|c| {
                ConnectorState::ALL.iter().map(move |state| {
                    (
                        labels([("connector", c.name.as_str()), ("type", c.kind.as_str()), ("state", state.as_str())]),
                        u64::from(c.state == state.as_str()),
                    )
                })
            }),
        )?;
        f.family(
            "flotilla_connector_restarts",
            "Restarts of each connector by the supervisor.",
            MetricType::Counter,
            connectors.iter().map(|c| (labels([("connector", c.name.as_str())]), c.restarts)),
        )?;
        f.family(
            "flotilla_connector_emitted",
            "Messages each connector put on the bus.",
            MetricType::Counter,
            connectors.iter().map(|c| (labels([("connector", c.name.as_str())]), c.emitted)),
        )?;
        for family in detail_families(status) {
            f.family(&family.name, &family.help, MetricType::Unknown, family.samples)?;
        }

        let r = &status.reactor;
        f.counter("flotilla_reactor_messages", "Messages the reactor processed.", r.messages)?;
        f.counter("flotilla_reactor_rules_fired", "Rules that fired.", r.rules_fired)?;
        f.counter("flotilla_reactor_plugin_errors", "Plugin failures recorded in errmsg.", r.plugin_errors)?;
        f.counter("flotilla_reactor_dropped", "Messages dropped by rules.", r.dropped)?;
        f.counter("flotilla_reactor_rejected", "Payloads in the reactor queue that were not messages.", r.rejected)?;
        f.gauge("flotilla_uptime_seconds", "Seconds since the node started.", status.uptime_seconds)?;

        // Only a service's top-level numbers; lists (names of things) stay in the status.
        for (service, detail) in &status.services {
            let Some(fields) = detail.as_object() else { continue };
            for (field, value) in fields {
                let Some(number) = value.as_u64() else { continue };
                let name = format!("flotilla_{}_{}", metric_name(service), metric_name(field));
                let help = format!("The {service} service's `{field}` (its status in /api/v1/status).");
                f.family(&name, &help, MetricType::Unknown, [(Labels::new(), number)])?;
            }
        }

        // The process, under the names Prometheus's own clients use.
        let p = &self.process;
        if let Some(seconds) = p.cpu_seconds {
            let mut metric = f.0.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds.",
                None,
                MetricType::Counter,
            )?;
            metric.encode_counter::<NoLabelSet, f64, f64>(&seconds, None)?;
        }
        if let Some(bytes) = p.resident_bytes {
            f.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", bytes)?;
        }
        if let Some(bytes) = p.virtual_bytes {
            f.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", bytes)?;
        }
        if let Some(count) = p.open_fds {
            f.gauge("process_open_fds", "Open file descriptors.", count)?;
        }
        if let Some(count) = p.max_fds {
            f.gauge("process_max_fds", "The limit on open file descriptors.", count)?;
        }
        f.gauge(
            "process_start_time_seconds",
            "When the node started, in seconds since the Unix epoch.",
            status.started_at,
        )?;
        Ok(())
    }
}

/// One family taken from connectors' reported details.
struct DetailFamily<'a> {
    name: String,
    help: String,
    samples: Vec<(Labels<'a>, u64)>,
}

/// The numbers in connectors' details (see the module docs), grouped into families by
/// name across connectors of a type.
fn detail_families(status: &NodeStatus) -> Vec<DetailFamily<'_>> {
    fn add<'a>(families: &mut Vec<DetailFamily<'a>>, name: String, help: String, labels: Labels<'a>, value: u64) {
        match families.iter_mut().find(|f| f.name == name) {
            Some(family) => family.samples.push((labels, value)),
            None => families.push(DetailFamily { name, help, samples: vec![(labels, value)] }),
        }
    }
    let mut families: Vec<DetailFamily<'_>> = Vec::new();
    for connector in &status.connectors {
        let Some(fields) = connector.detail.as_object() else { continue };
        let kind = metric_name(&connector.kind);
        for (field, value) in fields {
            if let Some(number) = value.as_u64() {
                add(
                    &mut families,
                    format!("flotilla_{kind}_{}", metric_name(field)),
                    format!("A {} connector's `{field}` (its detail in flotilla status).", connector.kind),
                    labels([("connector", connector.name.as_str())]),
                    number,
                );
            } else if let Some(rows) = value.as_array() {
                for (i, row) in rows.iter().enumerate() {
                    let Some(cells) = row.as_object() else { continue };
                    for (cell, value) in cells {
                        let Some(number) = value.as_u64() else { continue };
                        add(
                            &mut families,
                            format!("flotilla_{kind}_{}_{}", metric_name(field), metric_name(cell)),
                            format!(
                                "A {} connector's `{cell}` in each row of its `{field}` (row: as numbered in flotilla status).",
                                connector.kind
                            ),
                            vec![
                                ("connector", Cow::Borrowed(connector.name.as_str())),
                                ("row", Cow::Owned((i + 1).to_string())),
                            ],
                            number,
                        );
                    }
                }
            }
        }
    }
    families
}

/// `text` with every character a metric name cannot hold replaced by `_`.
fn metric_name(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// What the kernel says about this process (Linux `/proc/self`); `None` where it
/// could not be read.
#[derive(Debug, Default)]
struct ProcessStats {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl ProcessStats {
    fn read() -> ProcessStats {
        let mut stats = ProcessStats::default();
        // SAFETY: sysconf only reads a configuration value.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            // The command name (field 2) may hold spaces: count fields after its ')'.
            && let Some((_, rest)) = stat.rsplit_once(')')
        {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // After ')': state is field 3, so field N is at index N - 3.
            let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
            if let (Some(user), Some(system)) = (field(14), field(15))
                && ticks > 0
            {
                stats.cpu_seconds = Some((user + system) as f64 / ticks as f64);
            }
            stats.virtual_bytes = field(23);
            stats.resident_bytes = field(24).map(|pages| pages * u64::try_from(page).unwrap_or(4096));
        }
        stats.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as u64);
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes one rlimit into memory we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            stats.max_fds = Some(limit.rlim_cur);
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> NodeStatus {
        NodeStatus {
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
            services: serde_json::Map::new(),
        }
    }

    #[test]
    fn a_services_status_numbers_are_metrics_and_its_lists_are_not() {
        let services = serde_json::json!({"dispatcher": {"redis_parked": 2, "redis_parked_keys": ["a"], "note": "x"}});
        let status = NodeStatus { services: services.as_object().cloned().unwrap_or_default(), ..status() };
        let text = render(&status);
        assert!(
            text.contains("# TYPE flotilla_dispatcher_redis_parked untyped\nflotilla_dispatcher_redis_parked 2\n"),
            "{text}"
        );
        assert!(!text.contains("redis_parked_keys") && !text.contains("note"), "{text}");
    }

    #[test]
    fn a_connectors_detail_numbers_and_table_cells_are_metrics() {
        let connector = crate::status::ConnectorView {
            name: "libera".into(),
            kind: "irc".into(),
            state: "running".into(),
            since: 0,
            restarts: 0,
            last_error: None,
            emitted: 3,
            detail: serde_json::json!({
                "network": "libera",
                "logged": 7,
                "connections": [{"server": "a", "lag_ms": 12, "nick": "x"}, {"server": "a", "lag_ms": null}, {"lag_ms": 40}],
            }),
        };
        let status = NodeStatus { connectors: vec![connector], ..status() };
        let text = render(&status);
        for expected in [
            "flotilla_irc_logged{connector=\"libera\"} 7\n",
            "# TYPE flotilla_irc_connections_lag_ms untyped\n",
            "flotilla_irc_connections_lag_ms{connector=\"libera\",row=\"1\"} 12\n",
            "flotilla_irc_connections_lag_ms{connector=\"libera\",row=\"3\"} 40\n",
            "flotilla_connector_emitted_total{connector=\"libera\"} 3\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("row=\"2\""), "a missing lag is no sample: {text}");
    }

    #[test]
    fn histograms_have_cumulative_buckets_a_sum_and_a_count() {
        let histogram = flotilla_bus::LatencyHistogram::default();
        for micros in [40, 40, 700, 3_000_000] {
            histogram.observe(std::time::Duration::from_micros(micros));
        }
        let mut status = status();
        status.bus.publish_seconds = histogram.snapshot();
        let text = render(&status);
        for expected in [
            "# TYPE flotilla_bus_publish_seconds histogram\n",
            "flotilla_bus_publish_seconds_bucket{le=\"5e-05\"} 2\n",
            "flotilla_bus_publish_seconds_bucket{le=\"0.001\"} 3\n",
            "flotilla_bus_publish_seconds_bucket{le=\"2.5\"} 3\n",
            "flotilla_bus_publish_seconds_bucket{le=\"+Inf\"} 4\n",
            "flotilla_bus_publish_seconds_count 4\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn process_metrics_are_read_from_proc() {
        let text = render(&status());
        for family in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(family), "missing {family} in\n{text}");
        }
    }
}
