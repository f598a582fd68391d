//! FileTail: follows a growing file (a log) and sends one message per new line, as
//! wubot's FileTail did: `subject` is the line, lines matching any of the `ignore`
//! patterns are skipped, empty lines too.
//!
//! Where it is in the file (offset, device and inode) is kept in the instance's cache
//! after every check, and only complete lines are consumed, so a restart resumes
//! exactly after the last line reported: no repeats, no gaps (a partial last line
//! waits until its newline arrives). The very first check starts at the end of the
//! file, as wubot's did, so an old log is not replayed.
//!
//! The file may change under it:
//! - **truncated** (smaller than the offset): a message `file was truncated: <path>`,
//!   then the file is read from its start;
//! - **rotated** (the path now names another file): the rest of the old file is read
//!   first (it is kept open), then `file was renamed: <path>`, then the new file from
//!   its start. While the path names no file, the old one keeps being followed. After
//!   a restart only the path is known, so lines added to a rotated file while Flotilla
//!   was down are not read;
//! - **missing or unreadable**: `path not readable: <path>`, once until it is readable
//!   again; a file that appears later is read from its start.
//!
//! Every message also has `file` (the path). At most 4 MiB are read per check; the
//! next check follows at once when there is more.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorSection, ConnectorType, decode_section, diagnostic_at};
use flotilla_core::Message;
use regex::Regex;
use serde_json::{Map, Value};

use crate::monitor::{CheckOutcome, Monitor, MonitorConnector, MonitorSettings};

pub(crate) const CONNECTOR_TYPE: ConnectorType = ConnectorType {
    name: "filetail",
    description: "one message per new line of a file, across truncation and rotation (wubot's FileTail)",
    build,
};

/// The most read in one check.
pub const MAX_READ: u64 = 4 * 1024 * 1024;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTailConfig {
    path: String,
    #[serde(default)]
    ignore: Vec<String>,
}

fn build(section: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    let (settings, monitor) = MonitorSettings::from_section(section, Duration::from_secs(10), |rest| {
        let config: FileTailConfig = decode_section(rest)?;
        let mut errors = Vec::new();
        if config.path.is_empty() {
            errors.push(diagnostic_at(rest, "path", "must name a file"));
        }
        for (i, pattern) in config.ignore.iter().enumerate() {
            if let Err(e) = Regex::new(pattern) {
                errors.push(diagnostic_at(rest, &format!("ignore[{i}]"), format!("invalid regular expression: {e}")));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // wubot joined the patterns with `|`; grouping each keeps one pattern's
        // alternation from swallowing its neighbours.
        let ignore = match config.ignore.is_empty() {
            true => None,
            false => {
                let joined = config.ignore.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|");
                let regex = Regex::new(&joined)
                    .map_err(|e| vec![diagnostic_at(rest, "ignore", format!("invalid patterns: {e}"))])?;
                Some(regex)
            }
        };
        Ok(FileTail::new(PathBuf::from(config.path), ignore))
    })?;
    Ok(Box::new(MonitorConnector { monitor, settings }))
}

/// The FileTail monitor.
#[derive(Debug)]
pub struct FileTail {
    pub path: PathBuf,
    pub ignore: Option<Regex>,
    /// The file being followed, kept open so a rotated file can be finished.
    held: Arc<Mutex<Option<Held>>>,
}

#[derive(Debug)]
struct Held {
    file: File,
    dev: u64,
    ino: u64,
}

/// Where the monitor is, as kept in the cache.
#[derive(Debug, Clone, Default, PartialEq)]
struct Position {
    offset: Option<u64>,
    dev: Option<u64>,
    ino: Option<u64>,
    /// The path could not be opened at the last check (and that was reported).
    unreadable: bool,
}

impl Position {
    fn from_cache(cache: &Map<String, Value>) -> Position {
        Position {
            offset: cache.get("position").and_then(Value::as_u64),
            dev: cache.get("dev").and_then(Value::as_u64),
            ino: cache.get("ino").and_then(Value::as_u64),
            unreadable: cache.get("unreadable").and_then(Value::as_bool).unwrap_or(false),
        }
    }

    fn store(&self, cache: &mut Map<String, Value>) {
        let mut put = |key: &str, value: Option<Value>| match value {
            Some(value) => {
                cache.insert(key.to_string(), value);
            }
            None => {
                cache.remove(key);
            }
        };
        put("position", self.offset.map(Value::from));
        put("dev", self.dev.map(Value::from));
        put("ino", self.ino.map(Value::from));
        put("unreadable", self.unreadable.then_some(Value::Bool(true)));
    }
}

/// What one pass over the file found, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Line(String),
    Notice(String),
}

impl FileTail {
    pub fn new(path: PathBuf, ignore: Option<Regex>) -> FileTail {
        FileTail { path, ignore, held: Arc::default() }
    }

    fn message(&self, text: String) -> Option<Message> {
        if self.ignore.as_ref().is_some_and(|ignore| ignore.is_match(&text)) {
            return None;
        }
        let mut message = Message::new();
        message.set("subject", text);
        message.set("file", self.path.display().to_string());
        Some(message)
    }
}

/// Reads from `offset` to the end of `file` (at most [`MAX_READ`]), returning the
/// complete lines and the offset after the last of them, and whether more remains.
/// With `finish`, a last line without its newline counts too (the file is done).
fn read_lines(
    file: &File,
    offset: u64,
    len: u64,
    finish: bool,
    events: &mut Vec<Event>,
) -> std::io::Result<(u64, bool)> {
    if len <= offset {
        return Ok((offset, false));
    }
    let want = (len - offset).min(MAX_READ);
    let mut buffer = vec![0u8; want as usize];
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], offset + filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    buffer.truncate(filled);
    let more = offset + (filled as u64) < len;
    let take = match buffer.iter().rposition(|&b| b == b'\n') {
        _ if finish => buffer.len(),
        Some(last) => last + 1,
        // A line longer than a whole read is cut rather than waited for forever.
        None if buffer.len() as u64 == MAX_READ => buffer.len(),
        None => 0,
    };
    for line in buffer[..take].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() {
            events.push(Event::Line(String::from_utf8_lossy(line).into_owned()));
        }
    }
    Ok((offset + take as u64, more))
}

/// One pass: what happened to the file since `position`, and the new position.
fn tail(path: &Path, held: &mut Option<Held>, position: &mut Position) -> std::io::Result<(Vec<Event>, bool)> {
    let mut events = Vec::new();
    let shown = path.display();
    let current = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));

    // Rotated: finish the old file, then move on to the new one.
    if let Some(old) = held.as_ref()
        && let Some((dev, ino)) = current
        && (dev, ino) != (old.dev, old.ino)
    {
        let len = old.file.metadata()?.len();
        read_lines(&old.file, position.offset.unwrap_or(0), len, true, &mut events)?;
        events.push(Event::Notice(format!("file was renamed: {shown}")));
        *held = None;
        *position = Position { offset: Some(0), ..Position::default() };
    }

    if held.is_none() {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(_) => {
                if !position.unreadable {
                    events.push(Event::Notice(format!("path not readable: {shown}")));
                    position.unreadable = true;
                }
                return Ok((events, false));
            }
        };
        let metadata = file.metadata()?;
        let (dev, ino) = (metadata.dev(), metadata.ino());
        let was_unreadable = std::mem::take(&mut position.unreadable);
        match (position.dev, position.ino) {
            (Some(d), Some(i)) if (d, i) == (dev, ino) => {} // Resume where we were.
            (Some(_), Some(_)) => {
                // Replaced while we were not looking (e.g. during a restart).
                events.push(Event::Notice(format!("file was renamed: {shown}")));
                position.offset = Some(0);
            }
            _ if was_unreadable => position.offset = Some(0), // It appeared: all of it is new.
            _ => {
                if position.offset.is_none() {
                    position.offset = Some(metadata.len()); // First start: only new lines.
                }
            }
        }
        position.dev = Some(dev);
        position.ino = Some(ino);
        *held = Some(Held { file, dev, ino });
    }

    let Some(current_file) = held.as_ref() else { return Ok((events, false)) };
    let len = current_file.file.metadata()?.len();
    let mut offset = position.offset.unwrap_or(len);
    if len < offset {
        events.push(Event::Notice(format!("file was truncated: {shown}")));
        offset = 0;
    }
    let (offset, more) = read_lines(&current_file.file, offset, len, false, &mut events)?;
    position.offset = Some(offset);
    Ok((events, more))
}

#[async_trait::async_trait]
impl Monitor for FileTail {
    async fn check(&self, cache: &mut Map<String, Value>, _now: SystemTime) -> anyhow::Result<CheckOutcome> {
        let mut position = Position::from_cache(cache);
        let path = self.path.clone();
        let held = self.held.clone();
        let (events, more, position) = tokio::task::spawn_blocking(move || {
            let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
            let result = tail(&path, &mut held, &mut position);
            if result.is_err() {
                // Start over from the cached position with a fresh handle.
                *held = None;
            }
            result.map(|(events, more)| (events, more, position))
        })
        .await??;
        position.store(cache);
        let messages = events
            .into_iter()
            .filter_map(|event| match event {
                Event::Line(text) | Event::Notice(text) => self.message(text),
            })
            .collect();
        Ok(CheckOutcome { messages, next_delay: more.then_some(Duration::ZERO) })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
        cache: Map<String, Value>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("app.log");
            Fixture { _dir: dir, path, cache: Map::new() }
        }

        fn append(&self, text: &str) {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).unwrap();
            file.write_all(text.as_bytes()).unwrap();
        }

        async fn check(&mut self, tail: &FileTail) -> Vec<String> {
            let outcome = tail.check(&mut self.cache, SystemTime::now()).await.unwrap();
            outcome.messages.iter().map(|m| m.get_str("subject").unwrap().to_string()).collect()
        }
    }

    #[tokio::test]
    async fn new_lines_only_partial_lines_wait_and_ignore_filters() {
        let mut f = Fixture::new();
        f.append("old line before we started\n");
        let tail = FileTail::new(f.path.clone(), Some(Regex::new("(?:DEBUG)|(?:noise)").unwrap()));
        assert!(f.check(&tail).await.is_empty(), "the first check starts at the end");
        f.append("one\r\n\nDEBUG chatter\ntwo\nthr");
        assert_eq!(f.check(&tail).await, ["one", "two"]);
        f.append("ee\n");
        assert_eq!(f.check(&tail).await, ["three"]);
        assert!(f.check(&tail).await.is_empty());
        let outcome = tail.check(&mut f.cache, SystemTime::now()).await.unwrap();
        assert_eq!(outcome.next_delay, None);
    }

    #[tokio::test]
    async fn a_restart_resumes_without_repeats_or_gaps() {
        let mut f = Fixture::new();
        f.append("");
        let first = FileTail::new(f.path.clone(), None);
        f.check(&first).await;
        f.append("a\nb\n");
        assert_eq!(f.check(&first).await, ["a", "b"]);
        f.append("c\nd");
        drop(first); // The node stops; only the cache survives.
        f.append("\ne\n");
        let second = FileTail::new(f.path.clone(), None);
        assert_eq!(f.check(&second).await, ["c", "d", "e"]);
    }

    #[tokio::test]
    async fn truncation_and_rotation() {
        let mut f = Fixture::new();
        f.append("x\n");
        let tail = FileTail::new(f.path.clone(), None);
        f.check(&tail).await;
        f.append("before truncation\n");
        assert_eq!(f.check(&tail).await, ["before truncation"]);

        std::fs::write(&f.path, "fresh\n").unwrap(); // Same file, shorter.
        let shown = f.path.display().to_string();
        assert_eq!(f.check(&tail).await, [format!("file was truncated: {shown}"), "fresh".to_string()]);

        // logrotate: the writer adds to the old file, which is then renamed away and
        // replaced by a new one.
        f.append("late in the old file");
        std::fs::rename(&f.path, f.path.with_extension("log.1")).unwrap();
        assert!(f.check(&tail).await.is_empty(), "no new file yet: keep following the old one");
        f.append("first in the new file\n");
        assert_eq!(
            f.check(&tail).await,
            [
                "late in the old file".to_string(),
                format!("file was renamed: {shown}"),
                "first in the new file".to_string()
            ]
        );
    }

    #[tokio::test]
    async fn missing_file_is_reported_once_then_read_whole() {
        let mut f = Fixture::new();
        let tail = FileTail::new(f.path.clone(), None);
        let shown = f.path.display().to_string();
        assert_eq!(f.check(&tail).await, [format!("path not readable: {shown}")]);
        assert!(f.check(&tail).await.is_empty(), "reported once");
        f.append("hello\n");
        assert_eq!(f.check(&tail).await, ["hello"]);
    }

    #[tokio::test]
    async fn replaced_during_a_restart_is_read_from_its_start() {
        let mut f = Fixture::new();
        f.append("a\n");
        let first = FileTail::new(f.path.clone(), None);
        f.check(&first).await;
        drop(first);
        std::fs::rename(&f.path, f.path.with_extension("old")).unwrap();
        f.append("new file\n");
        let second = FileTail::new(f.path.clone(), None);
        let shown = f.path.display().to_string();
        assert_eq!(f.check(&second).await, [format!("file was renamed: {shown}"), "new file".to_string()]);
    }

    #[tokio::test]
    async fn big_backlogs_are_read_in_bounded_steps() {
        let mut f = Fixture::new();
        f.append("");
        let tail = FileTail::new(f.path.clone(), None);
        f.check(&tail).await;
        let line = "y".repeat(1023) + "\n";
        let lines = (MAX_READ as usize / 1024) + 10;
        f.append(&line.repeat(lines));
        let first = tail.check(&mut f.cache, SystemTime::now()).await.unwrap();
        assert_eq!(first.messages.len(), MAX_READ as usize / 1024);
        assert_eq!(first.next_delay, Some(Duration::ZERO), "more to read: check again at once");
        let second = tail.check(&mut f.cache, SystemTime::now()).await.unwrap();
        assert_eq!(second.messages.len(), 10);
        assert_eq!(second.next_delay, None);
    }
}
