//! Command: runs a shell command on every check and reports its output and how it
//! ended, as wubot's Command did (`sh -c`, standard error merged into standard output,
//! the output's lines joined without the final newline).
//!
//! Message fields: the output in `field` (default `command_output`), `exit_status`
//! (the exit code; 0 when killed by a signal, as wubot computed it), `signal` (the
//! signal that killed it, else 0), and `status`: `OK` when it exited 0, else
//! `CRITICAL` with a `subject` saying why (`CRITICAL: command exited with status 3`)
//! and `color: RED`. Output beyond 1 MiB is cut and `output_truncated: true` is set.
//! A command still running at the monitor's `timeout` is killed with everything it
//! started, and the check reports a CRITICAL timeout.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorSection, ConnectorType, decode_section, diagnostic_at};
use flotilla_core::Message;
use flotilla_reactor::CommandOutput;
use serde_json::{Map, Value};

use crate::monitor::{CheckOutcome, Monitor, MonitorConnector, MonitorSettings};

pub(crate) const CONNECTOR_TYPE: ConnectorType = ConnectorType {
    name: "command",
    description: "runs a shell command and reports its output (wubot's Command)",
    build,
};

/// The field the output goes to unless `field` says otherwise.
pub const DEFAULT_FIELD: &str = "command_output";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandConfig {
    command: String,
    field: Option<String>,
}

fn build(section: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    let (settings, config) = MonitorSettings::from_section(section, Duration::from_secs(60), |rest| {
        let config: CommandConfig = decode_section(rest)?;
        let mut errors = Vec::new();
        if config.command.trim().is_empty() {
            errors.push(diagnostic_at(rest, "command", "must not be empty"));
        }
        if config.field.as_deref().is_some_and(str::is_empty) {
            errors.push(diagnostic_at(rest, "field", "must name a field"));
        }
        if errors.is_empty() { Ok(config) } else { Err(errors) }
    })?;
    let monitor = CommandMonitor {
        command: config.command,
        field: config.field.unwrap_or_else(|| DEFAULT_FIELD.to_string()),
        timeout: inner_timeout(settings.timeout),
    };
    Ok(Box::new(MonitorConnector { monitor, settings }))
}

/// A little less than the monitor's timeout, so a hanging command is killed (with its
/// whole process group) by the command runner before the scheduler gives up on the
/// check and drops it.
pub(crate) fn inner_timeout(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 10).min(Duration::from_secs(1))).max(Duration::from_millis(1))
}

/// The Command monitor.
#[derive(Debug, Clone)]
pub struct CommandMonitor {
    pub command: String,
    /// Where the output goes.
    pub field: String,
    pub timeout: Duration,
}

impl CommandMonitor {
    /// The message for a finished command.
    pub fn message(&self, output: &CommandOutput) -> Message {
        let mut message = Message::new();
        // stderr is merged into stdout by the shell (see `check`); stderr here holds
        // only what the shell itself printed before the redirection took effect.
        let mut text = output.stdout.clone();
        text.push_str(&output.stderr);
        if text.ends_with('\n') {
            text.pop();
        }
        message.set(self.field.as_str(), text);
        message.set("exit_status", output.exit_code.unwrap_or(0));
        message.set("signal", output.signal.unwrap_or(0));
        if output.truncated {
            message.set("output_truncated", true);
        }
        let failure = match (output.exit_code, output.signal) {
            (Some(0), _) => None,
            (Some(code), _) => Some(format!("command exited with status {code}")),
            (None, Some(signal)) => Some(format!("command was killed by signal {signal}")),
            (None, None) => Some("command ended without an exit status".to_string()),
        };
        match failure {
            None => message.set("status", "OK"),
            Some(reason) => {
                message.set("status", "CRITICAL");
                message.set("color", "RED");
                message.set("subject", format!("CRITICAL: {reason}"));
            }
        }
        message
    }
}

#[async_trait::async_trait]
impl Monitor for CommandMonitor {
    async fn check(&self, _cache: &mut Map<String, Value>, _now: SystemTime) -> anyhow::Result<CheckOutcome> {
        // wubot ran `$command 2>&1`; a separate line keeps a trailing comment in the
        // command from swallowing the redirection.
        let script = format!("exec 2>&1\n{}", self.command);
        let output = flotilla_reactor::run_shell_command(&script, b"", self.timeout)
            .await
            .with_context(|| format!("command '{}'", self.command))?;
        Ok(CheckOutcome { messages: vec![self.message(&output)], next_delay: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(command: &str) -> CommandMonitor {
        CommandMonitor { command: command.into(), field: DEFAULT_FIELD.into(), timeout: Duration::from_secs(10) }
    }

    async fn run(command: &str) -> Message {
        let mut outcome = monitor(command).check(&mut Map::new(), SystemTime::now()).await.unwrap();
        assert_eq!(outcome.messages.len(), 1);
        outcome.messages.remove(0)
    }

    #[tokio::test]
    async fn output_and_exit_status_as_wubot_reported_them() {
        let ok = run("echo one; echo two >&2; echo three # a comment").await;
        assert_eq!(ok.get_str(DEFAULT_FIELD), Some("one\ntwo\nthree"), "stderr merged in order, last newline gone");
        assert_eq!(ok.get("exit_status"), Some(&Value::from(0)));
        assert_eq!(ok.get("signal"), Some(&Value::from(0)));
        assert_eq!(ok.get_str("status"), Some("OK"));
        assert_eq!(ok.get("subject"), None);

        let failed = run("echo 'disk on fire'; exit 3").await;
        assert_eq!(failed.get_str(DEFAULT_FIELD), Some("disk on fire"));
        assert_eq!(failed.get("exit_status"), Some(&Value::from(3)));
        assert_eq!(failed.get_str("status"), Some("CRITICAL"));
        assert_eq!(failed.get_str("subject"), Some("CRITICAL: command exited with status 3"));

        let killed = run("kill -TERM $$").await;
        assert_eq!(killed.get("exit_status"), Some(&Value::from(0)));
        assert_eq!(killed.get("signal"), Some(&Value::from(libc::SIGTERM)));
        assert_eq!(
            killed.get_str("subject"),
            Some(&*format!("CRITICAL: command was killed by signal {}", libc::SIGTERM))
        );
    }

    #[tokio::test]
    async fn a_custom_field_and_a_timeout() {
        let custom = CommandMonitor { field: "uptime".into(), ..monitor("printf 'x\\n\\n'") };
        let message = custom.check(&mut Map::new(), SystemTime::now()).await.unwrap().messages.remove(0);
        assert_eq!(message.get_str("uptime"), Some("x\n"), "only the final newline goes");

        let slow = CommandMonitor { timeout: Duration::from_millis(200), ..monitor("sleep 30") };
        let started = std::time::Instant::now();
        let error = slow.check(&mut Map::new(), SystemTime::now()).await.unwrap_err();
        assert!(format!("{error:#}").contains("timed out after 0.200s"), "{error:#}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_inner_timeout_leaves_the_scheduler_a_margin() {
        assert_eq!(inner_timeout(Duration::from_secs(30)), Duration::from_secs(29));
        assert_eq!(inner_timeout(Duration::from_secs(2)), Duration::from_millis(1800));
        assert_eq!(inner_timeout(Duration::from_millis(1)), Duration::from_millis(1));
    }
}
