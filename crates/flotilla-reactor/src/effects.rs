//! The side effects rules may ask for, behind one trait the node implements.
//!
//! The rule tree itself is pure: every plugin that reaches outside the message (append
//! to a queue, insert into the store, hand a message to a connector, print, run a
//! command, remember state across messages, read the clock) does it through
//! [`Effects`]. The node gives the reactor its real implementation (which buffers
//! deliveries until the caller publishes them; see [`Effects`]); tests and
//! `flotilla rules test` give it [`RecordingEffects`](crate::RecordingEffects), which
//! delivers nothing.

use std::time::{Duration, SystemTime};

use chrono::{FixedOffset, Local, Offset, TimeZone};
use flotilla_core::Message;
use serde_json::{Map, Value};

/// Everything a rule may do outside the message it is working on.
///
/// Durability is the implementation's to state, and the caller's to honour. The real
/// implementation (`flotilla_connector::BusEffects`, used by the node's reactor and the
/// monitors' `react:` rules) **buffers** deliveries: [`Effects::enqueue`] and
/// [`Effects::send`] return once the message is buffered, not once it is on the bus;
/// the buffer becomes durable when the caller publishes it (`BusEffects::flush`, or
/// the reactor's bus stage with the batch's outputs), and the caller acknowledges its
/// input only after that. Rows ([`Effects::sql_insert`]) and state
/// ([`Effects::save_state`]) are written before the call returns. So a message
/// acknowledged after [`RuleTree::run`] returned *and the buffer was published* has
/// had all its effects; a crash before the publish repeats the message (at-least-once).
/// The reactor processes one message at a time per rule tree, so State and Status
/// never race with themselves.
///
/// [`RuleTree::run`]: crate::RuleTree::run
#[async_trait::async_trait]
pub trait Effects: Send + Sync {
    /// Appends the message to a bus queue (MessageQueue). May only buffer it: durable
    /// once the caller published the buffer (see the trait docs).
    async fn enqueue(&self, queue: &str, message: &Message) -> Result<(), EffectError>;

    /// Inserts one row into a table of the store (SQL), creating the table and any
    /// missing columns first. Column names are message field names and must be quoted;
    /// lists and objects are stored as JSON text.
    async fn sql_insert(&self, table: &str, row: &Map<String, Value>) -> Result<(), EffectError>;

    /// Hands the message to a connector to post (Send), through its outbox queue; may
    /// only buffer it, like [`Effects::enqueue`].
    async fn send(&self, connector: &str, message: &Message) -> Result<(), EffectError>;

    /// Prints one notification line (Console).
    fn console(&self, line: &ConsoleLine);

    /// Runs a shell command with the message as JSON on its standard input (Command).
    /// [`run_shell_command`](crate::run_shell_command) is the real implementation.
    async fn run_command(
        &self,
        command: &str,
        input: &Message,
        timeout: Duration,
    ) -> Result<CommandOutput, EffectError>;

    /// Reads what State or Status remembered under `namespace`/`key`; survives restarts.
    async fn load_state(&self, namespace: &str, key: &str) -> Result<Option<Value>, EffectError>;

    /// Remembers a value under `namespace`/`key`, replacing what was there.
    async fn save_state(&self, namespace: &str, key: &str, value: &Value) -> Result<(), EffectError>;

    /// The current time.
    fn now(&self) -> SystemTime;

    /// The local time zone's offset from UTC at a moment (Console prints local time).
    fn utc_offset(&self, unix_seconds: i64) -> FixedOffset {
        Local.timestamp_opt(unix_seconds, 0).single().map_or_else(|| Local::now().offset().fix(), |t| t.offset().fix())
    }
}

/// Why an effect failed. The plugin that asked records it in the message's `errmsg`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EffectError {
    /// The effect did not finish in time (a command's timeout).
    #[error("timed out after {}", human_duration(*.0))]
    TimedOut(Duration),
    /// The effect could not be carried out.
    #[error("{0}")]
    Failed(String),
}

fn human_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{:.3}s", duration.as_secs_f64())
    }
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Standard output, decoded as UTF-8 (invalid bytes replaced).
    pub stdout: String,
    /// Standard error, decoded the same way.
    pub stderr: String,
    /// The exit code, when the command exited (rather than being killed).
    pub exit_code: Option<i32>,
    /// The signal that killed the command, if one did.
    pub signal: Option<i32>,
    /// Whether output beyond the capture limit was discarded.
    pub truncated: bool,
}

/// One line for the console, as wubot's Console plugin printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    /// `YYYY/MM/DD HH:MM:SS> [key] username: title => subject`.
    pub text: String,
    /// wubot's terminal colour for the line (`white`, `red`, `bold yellow`, …), from
    /// the message's `color` and `urgent` fields; printers without colour ignore it.
    pub color: &'static str,
}
