//! Uptime: the system load, as wubot's Uptime reported it. By default it reads
//! `/proc/loadavg`; with `command` it runs that command (wubot's way, e.g. `uptime` or
//! `ssh somehost uptime`) and reads the `load average(s): a, b, c` in its output.
//!
//! Message fields: `load01`, `load05`, `load15` (numbers), `status` (`OK`, or
//! `WARNING` / `CRITICAL` when the 1-minute load is above `warning_load` /
//! `critical_load`), and for those two a `subject`:
//! `warning: load over last 1 minute is 2.5` / `critical: load over last 1 minute is 4.1`.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorSection, ConnectorType, decode_section, diagnostic_at};
use flotilla_core::Message;
use regex::Regex;
use serde_json::{Map, Value};

use crate::monitor::{CheckOutcome, Monitor, MonitorConnector, MonitorSettings};

pub(crate) const CONNECTOR_TYPE: ConnectorType = ConnectorType {
    name: "uptime",
    description: "the system load with warning and critical thresholds (wubot's Uptime)",
    build,
};

/// Where Linux publishes the load averages.
pub const LOADAVG: &str = "/proc/loadavg";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UptimeConfig {
    warning_load: Option<f64>,
    critical_load: Option<f64>,
    command: Option<String>,
}

fn build(section: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    let (settings, config) = MonitorSettings::from_section(section, Duration::from_secs(60), |rest| {
        let config: UptimeConfig = decode_section(rest)?;
        let mut errors = Vec::new();
        for (key, value) in [("warning_load", config.warning_load), ("critical_load", config.critical_load)] {
            if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
                errors.push(diagnostic_at(rest, key, "must be a number of 0 or more"));
            }
        }
        if config.command.as_deref().is_some_and(|c| c.trim().is_empty()) {
            errors.push(diagnostic_at(rest, "command", "must not be empty"));
        }
        if errors.is_empty() { Ok(config) } else { Err(errors) }
    })?;
    let source = match config.command {
        Some(command) => LoadSource::Command { command, timeout: settings.timeout },
        None => LoadSource::File(PathBuf::from(LOADAVG)),
    };
    let uptime = Uptime { source, warning_load: config.warning_load, critical_load: config.critical_load };
    Ok(Box::new(MonitorConnector { monitor: uptime, settings }))
}

/// Where the load averages come from.
#[derive(Debug, Clone)]
pub enum LoadSource {
    /// A file shaped like `/proc/loadavg`: `0.52 0.58 0.59 1/467 12345`.
    File(PathBuf),
    /// A command printing `… load average: 0.52, 0.58, 0.59` (or BSD's `averages:`).
    Command { command: String, timeout: Duration },
}

/// The Uptime monitor.
#[derive(Debug, Clone)]
pub struct Uptime {
    pub source: LoadSource,
    /// A 1-minute load above this is a WARNING (none: never).
    pub warning_load: Option<f64>,
    /// A 1-minute load above this is CRITICAL (none: never).
    pub critical_load: Option<f64>,
}

/// The three load averages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loads {
    pub load01: f64,
    pub load05: f64,
    pub load15: f64,
}

/// Reads `/proc/loadavg`'s first three fields.
pub fn parse_loadavg(text: &str) -> Option<Loads> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    let (Some(Ok(load01)), Some(Ok(load05)), Some(Ok(load15))) = (fields.next(), fields.next(), fields.next()) else {
        return None;
    };
    Some(Loads { load01, load05, load15 })
}

static UPTIME_OUTPUT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"load averages?: ([\d.]+),?\s+([\d.]+),?\s+([\d.]+)").expect("the pattern is valid"));

/// Reads the load averages out of `uptime`'s output (GNU, BSD and macOS forms).
pub fn parse_uptime_output(text: &str) -> Option<Loads> {
    let captures = UPTIME_OUTPUT.captures(text)?;
    let number = |i: usize| captures.get(i)?.as_str().parse::<f64>().ok();
    Some(Loads { load01: number(1)?, load05: number(2)?, load15: number(3)? })
}

impl Uptime {
    async fn loads(&self) -> anyhow::Result<Loads> {
        match &self.source {
            LoadSource::File(path) => {
                let text =
                    tokio::fs::read_to_string(path).await.with_context(|| format!("cannot read {}", path.display()))?;
                parse_loadavg(&text)
                    .with_context(|| format!("unable to parse {}: {:?}", path.display(), text.trim_end()))
            }
            LoadSource::Command { command, timeout } => {
                let output = flotilla_reactor::run_shell_command(command, b"", crate::command::inner_timeout(*timeout))
                    .await
                    .with_context(|| format!("command '{command}'"))?;
                parse_uptime_output(&output.stdout)
                    .with_context(|| format!("unable to parse uptime output: {:?}", output.stdout.trim_end()))
            }
        }
    }

    /// The message for these loads.
    pub fn message(&self, loads: Loads) -> Message {
        let mut message = Message::new();
        message.set("load01", loads.load01);
        message.set("load05", loads.load05);
        message.set("load15", loads.load15);
        let load = loads.load01;
        let (status, subject) = if self.critical_load.is_some_and(|limit| load > limit) {
            ("CRITICAL", Some(format!("critical: load over last 1 minute is {load}")))
        } else if self.warning_load.is_some_and(|limit| load > limit) {
            ("WARNING", Some(format!("warning: load over last 1 minute is {load}")))
        } else {
            ("OK", None)
        };
        message.set("status", status);
        if let Some(subject) = subject {
            message.set("subject", subject);
        }
        message
    }
}

#[async_trait::async_trait]
impl Monitor for Uptime {
    async fn check(&self, _cache: &mut Map<String, Value>, _now: SystemTime) -> anyhow::Result<CheckOutcome> {
        let loads = self.loads().await?;
        Ok(CheckOutcome { messages: vec![self.message(loads)], next_delay: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_loadavg(text: &str, expect: Option<(f64, f64, f64)>) {
        let got = parse_loadavg(text).map(|l| (l.load01, l.load05, l.load15));
        assert_eq!(got, expect, "{text:?}");
    }

    #[test]
    fn loadavg_files() {
        check_loadavg("0.52 0.58 0.59 1/467 12345\n", Some((0.52, 0.58, 0.59)));
        check_loadavg("12.00 7.5 0.00 3/100 1", Some((12.0, 7.5, 0.0)));
        check_loadavg("0.52 0.58", None);
        check_loadavg("", None);
        check_loadavg("a b c", None);
    }

    #[track_caller]
    fn check_uptime(text: &str, expect: Option<(f64, f64, f64)>) {
        let got = parse_uptime_output(text).map(|l| (l.load01, l.load05, l.load15));
        assert_eq!(got, expect, "{text:?}");
    }

    #[test]
    fn uptime_outputs() {
        // GNU procps.
        check_uptime(" 10:01:02 up 3 days,  2:03,  1 user,  load average: 0.08, 0.03, 0.01", Some((0.08, 0.03, 0.01)));
        // macOS / BSD, as in wubot's documentation.
        check_uptime("12:06  up 4 days, 14:03, 15 users, load averages: 0.80 0.81 0.67", Some((0.8, 0.81, 0.67)));
        check_uptime("no load here", None);
    }

    fn uptime(warning: Option<f64>, critical: Option<f64>) -> Uptime {
        Uptime {
            source: LoadSource::File(PathBuf::from("/nonexistent")),
            warning_load: warning,
            critical_load: critical,
        }
    }

    #[track_caller]
    fn check_status(monitor: &Uptime, load01: f64, status: &str, subject: Option<&str>) {
        let message = monitor.message(Loads { load01, load05: 1.0, load15: 0.5 });
        assert_eq!(message.get_str("status"), Some(status), "load {load01}");
        assert_eq!(message.get_str("subject"), subject, "load {load01}");
        assert_eq!(message.get("load01"), Some(&Value::from(load01)));
        assert_eq!(message.get("load15"), Some(&Value::from(0.5)));
    }

    #[test]
    fn thresholds_as_wubot_compared_them() {
        let monitor = uptime(Some(2.0), Some(3.0));
        check_status(&monitor, 0.5, "OK", None);
        check_status(&monitor, 2.0, "OK", None); // "over", not "at".
        check_status(&monitor, 2.5, "WARNING", Some("warning: load over last 1 minute is 2.5"));
        check_status(&monitor, 3.01, "CRITICAL", Some("critical: load over last 1 minute is 3.01"));
        check_status(&uptime(None, None), 99.0, "OK", None);
        check_status(&uptime(None, Some(1.0)), 1.5, "CRITICAL", Some("critical: load over last 1 minute is 1.5"));
    }

    #[tokio::test]
    async fn reads_a_loadavg_file_and_a_command() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loadavg");
        std::fs::write(&path, "3.50 1.00 0.25 2/300 999\n").unwrap();
        let file = Uptime { source: LoadSource::File(path), warning_load: Some(3.0), critical_load: Some(5.0) };
        let outcome = file.check(&mut Map::new(), SystemTime::now()).await.unwrap();
        assert_eq!(outcome.messages.len(), 1);
        assert_eq!(outcome.messages[0].get_str("status"), Some("WARNING"));
        assert_eq!(outcome.messages[0].get("load05"), Some(&Value::from(1.0)));

        let command = Uptime {
            source: LoadSource::Command {
                command: "echo ' 10:00  up 1 day, load averages: 7.25 1.5 1.25'".into(),
                timeout: Duration::from_secs(10),
            },
            warning_load: Some(3.0),
            critical_load: Some(5.0),
        };
        let outcome = command.check(&mut Map::new(), SystemTime::now()).await.unwrap();
        assert_eq!(outcome.messages[0].get_str("status"), Some("CRITICAL"));
        assert_eq!(outcome.messages[0].get("load01"), Some(&Value::from(7.25)));

        let broken =
            Uptime { source: LoadSource::File(dir.path().join("missing")), warning_load: None, critical_load: None };
        let error = broken.check(&mut Map::new(), SystemTime::now()).await.unwrap_err();
        assert!(format!("{error:#}").contains("cannot read"), "{error:#}");
    }

    #[tokio::test]
    async fn the_real_proc_loadavg_parses() {
        // Linux is the only supported platform; this guards the default path.
        let monitor =
            Uptime { source: LoadSource::File(PathBuf::from(LOADAVG)), warning_load: None, critical_load: None };
        let outcome = monitor.check(&mut Map::new(), SystemTime::now()).await.unwrap();
        assert!(outcome.messages[0].get("load01").and_then(Value::as_f64).is_some_and(|l| l >= 0.0));
    }
}
