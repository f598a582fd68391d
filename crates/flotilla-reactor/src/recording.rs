//! [`RecordingEffects`]: effects that deliver nothing and remember everything, for
//! tests and for `flotilla rules test` (a dry run must not post, enqueue or run
//! anything).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use chrono::FixedOffset;
use flotilla_core::Message;
use serde_json::{Map, Value};

use crate::effects::{CommandOutput, ConsoleLine, EffectError, Effects};

/// One effect a rule asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// MessageQueue: the message as it was appended.
    Enqueue { queue: String, message: Message },
    /// SQL: the row as it was inserted.
    SqlInsert { table: String, row: Map<String, Value> },
    /// Send: the message as it was handed over.
    Send { connector: String, message: Message },
    /// Console: the printed line.
    Console(ConsoleLine),
    /// Command: what would have run (it did not).
    Command { command: String, timeout: Duration },
    /// State or Status remembering a value.
    SaveState { namespace: String, key: String, value: Value },
}

/// In-memory [`Effects`]: records every effect, keeps state in a map, runs no command
/// (each returns the next queued result, or empty output and exit code 0), and has a
/// clock that moves only when told to.
pub struct RecordingEffects {
    now: Mutex<SystemTime>,
    utc_offset: FixedOffset,
    effects: Mutex<Vec<Effect>>,
    state: Mutex<HashMap<(String, String), Value>>,
    command_results: Mutex<VecDeque<Result<CommandOutput, EffectError>>>,
    failures: Mutex<HashMap<&'static str, EffectError>>,
}

/// Locks a mutex even if a panicking test poisoned it: the data is plain records.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RecordingEffects {
    /// Effects whose clock reads `now` and whose local time is UTC.
    pub fn new(now: SystemTime) -> RecordingEffects {
        RecordingEffects {
            now: Mutex::new(now),
            utc_offset: FixedOffset::east_opt(0).expect("0 is a valid offset"),
            effects: Mutex::new(Vec::new()),
            state: Mutex::new(HashMap::new()),
            command_results: Mutex::new(VecDeque::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The same, with a fixed local time zone for Console.
    pub fn with_utc_offset(mut self, offset: FixedOffset) -> RecordingEffects {
        self.utc_offset = offset;
        self
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = lock(&self.now);
        *now += by;
    }

    /// Sets the clock.
    pub fn set_now(&self, now: SystemTime) {
        *lock(&self.now) = now;
    }

    /// Every effect so far, in order.
    pub fn effects(&self) -> Vec<Effect> {
        lock(&self.effects).clone()
    }

    /// Every effect so far, forgetting them.
    pub fn take_effects(&self) -> Vec<Effect> {
        std::mem::take(&mut *lock(&self.effects))
    }

    /// What State or Status remembered.
    pub fn state(&self, namespace: &str, key: &str) -> Option<Value> {
        lock(&self.state).get(&(namespace.to_string(), key.to_string())).cloned()
    }

    /// Seeds remembered state (e.g. from the real store, for a faithful dry run).
    pub fn set_state(&self, namespace: &str, key: &str, value: Value) {
        lock(&self.state).insert((namespace.to_string(), key.to_string()), value);
    }

    /// Queues the result the next Command gets.
    pub fn push_command_result(&self, result: Result<CommandOutput, EffectError>) {
        lock(&self.command_results).push_back(result);
    }

    /// Makes every later call of one effect fail: `"enqueue"`, `"sql_insert"`,
    /// `"send"`, `"run_command"`, `"load_state"` or `"save_state"`.
    pub fn fail(&self, effect: &'static str, error: EffectError) {
        lock(&self.failures).insert(effect, error);
    }

    fn check(&self, effect: &'static str) -> Result<(), EffectError> {
        match lock(&self.failures).get(effect) {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    fn record(&self, effect: Effect) {
        lock(&self.effects).push(effect);
    }
}

#[async_trait::async_trait]
impl Effects for RecordingEffects {
    async fn enqueue(&self, queue: &str, message: &Message) -> Result<(), EffectError> {
        self.check("enqueue")?;
        self.record(Effect::Enqueue { queue: queue.to_string(), message: message.clone() });
        Ok(())
    }

    async fn sql_insert(&self, table: &str, row: &Map<String, Value>) -> Result<(), EffectError> {
        self.check("sql_insert")?;
        self.record(Effect::SqlInsert { table: table.to_string(), row: row.clone() });
        Ok(())
    }

    async fn send(&self, connector: &str, message: &Message) -> Result<(), EffectError> {
        self.check("send")?;
        self.record(Effect::Send { connector: connector.to_string(), message: message.clone() });
        Ok(())
    }

    fn console(&self, line: &ConsoleLine) {
        self.record(Effect::Console(line.clone()));
    }

    async fn run_command(
        &self,
        command: &str,
        _input: &Message,
        timeout: Duration,
    ) -> Result<CommandOutput, EffectError> {
        self.check("run_command")?;
        self.record(Effect::Command { command: command.to_string(), timeout });
        lock(&self.command_results)
            .pop_front()
            .unwrap_or_else(|| Ok(CommandOutput { exit_code: Some(0), ..CommandOutput::default() }))
    }

    async fn load_state(&self, namespace: &str, key: &str) -> Result<Option<Value>, EffectError> {
        self.check("load_state")?;
        Ok(self.state(namespace, key))
    }

    async fn save_state(&self, namespace: &str, key: &str, value: &Value) -> Result<(), EffectError> {
        self.check("save_state")?;
        self.set_state(namespace, key, value.clone());
        self.record(Effect::SaveState { namespace: namespace.to_string(), key: key.to_string(), value: value.clone() });
        Ok(())
    }

    fn now(&self) -> SystemTime {
        *lock(&self.now)
    }

    fn utc_offset(&self, _unix_seconds: i64) -> FixedOffset {
        self.utc_offset
    }
}
