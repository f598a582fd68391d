//! The embedded bus: a durable, ordered log per queue on local disk. It needs nothing
//! but the binary, and it is treated as a storage engine.
//!
//! # On disk
//!
//! ```text
//! <data_dir>/bus/
//!   LOCK                          flock'ed by the process that has the bus open; holds its pid
//!   <queue>/                      one directory per queue (names: A-Z a-z 0-9 _ . -)
//!     00000000000000000000.seg    segments, named by the sequence number of their first record
//!     00000000000000004711.seg    the newest one is being appended to
//!     groups.log                  consumer-group positions (see `groups_file`)
//! ```
//!
//! A segment is a 24-byte header (`FLOTSEG1`, base sequence number, CRC-32C) followed
//! by records (see `record`): length, CRC-32C over sequence ‖ timestamp ‖ payload,
//! sequence number, timestamp, payload. A segment is sealed when it passes
//! `segment_bytes` (default 64 MiB) and the next publish starts a new one.
//!
//! # Writing: group commit
//!
//! One writer thread owns every append. Publishers send their batches over a channel
//! and wait. The writer takes everything waiting (up to 32 MiB), appends each queue's
//! records with one write, syncs each touched segment once (`fdatasync`), then publishes
//! the new durable end to readers and answers every publisher. While it syncs, new
//! publishes queue up and share the next sync: sixty-four publishers each waiting for
//! one message cost about one fsync per round, not sixty-four.
//!
//! A new segment is created with its header, synced, and then its directory is synced,
//! before any record goes into it.
//!
//! # Durability policy and its data-loss window
//!
//! - [`Durability::Sync`] (default): `publish` returns after `fdatasync`. Nothing
//!   acknowledged is lost by a process crash (`kill -9`) or by power loss, provided
//!   the disk honours fsync. Readers see a message only once it is durable.
//! - [`Durability::Interval`]: `publish` returns after the write reached the operating
//!   system; a sync follows within the interval. A process crash loses nothing; power
//!   loss may lose what was published in the last interval.
//! - [`Durability::Buffered`]: like `Interval`, but syncing is left to the operating
//!   system (typically up to 30 s of loss on power failure).
//!
//! A failed write or sync (a full disk: ENOSPC) fails every publish of that commit for
//! that queue with an error, and the segment is cut back to its last good length, so a
//! failed publish never leaves half a batch behind and a later publish succeeds once
//! there is room again.
//!
//! # Recovery
//!
//! Opening the bus scans only the newest segment of each queue (so a 1 GiB log opens
//! as fast as a 64 MiB one). A damaged or incomplete record with nothing valid after
//! it is a torn tail from a crash mid-write: it is cut off (it was never acknowledged,
//! because the sync had not completed). A damaged record *followed* by valid ones is
//! disk damage: it is skipped, logged at ERROR, and never served. Readers verify every
//! record's checksum, so damage in older segments is caught when it is read.
//!
//! # Consumer groups
//!
//! A group has one position per queue: the first message it has not acknowledged.
//! Consumers of one group share a cursor; each delivery is tracked until acknowledged,
//! and what a consumer had not acknowledged when it went away is delivered again, first.
//! Positions are appended to `groups.log` by the writer soon after acknowledgements and
//! synced every second; after a crash a group replays at most what it acknowledged in
//! that last second (at-least-once). A group seen for the first time starts at the oldest
//! retained message.
//!
//! # Deleting a queue
//!
//! [`Bus::delete_queue`] goes through the writer, after the appends sent before it.
//! Holding the queue registry (so no publish can recreate the queue meanwhile), the
//! writer puts a `DELETED` file in the queue's directory and syncs it: the deletion is
//! then decided. It removes the segments, `groups.log`, the marker and the directory,
//! and wakes the queue's readers and consumers, whose fetches fail from then on. A
//! directory found with the marker (a crash half-way) is removed at the next open, or
//! before the name is used again, so no part of a deleted queue ever comes back.
//!
//! # Retention
//!
//! Sealed segments are removed, oldest first, when they are older than `max_age` or
//! the queue is bigger than `max_bytes` — but only when every group of the queue has
//! acknowledged all of their messages. Unacknowledged messages are never deleted; a
//! stuck consumer makes its queue grow (visible in `flotilla status`).

mod groups_file;
pub mod io;
mod queue;
pub mod record;
pub mod segment;
pub mod sim;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use self::io::{Filesystem, RealFs};
use self::queue::{Counters, Group, Position, Queue, QueueContext, QueueState, SegmentMeta};
use self::segment::HEADER_LEN;
use self::writer::{Writer, WriterMsg, WriterSettings, WriterTx};
use crate::{Bus, BusCounters, BusError, Consumer, QueueStats, ReadFrom, Reader, SeqRange, valid_name};

pub use self::queue::{EmbeddedConsumer, EmbeddedReader};

/// When a publish counts as done; see the module docs for each policy's loss window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Sync,
    Interval(Duration),
    Buffered,
}

/// How much of a queue to keep once every group has acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

/// Settings of an embedded bus.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub durability: Durability,
    /// A segment is sealed once it reaches this size.
    pub segment_bytes: u64,
    /// Larger messages are refused with [`BusError::TooLarge`].
    pub max_message_bytes: usize,
    pub retention: Retention,
    /// How often retention looks for segments to remove.
    pub retention_check: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            durability: Durability::Sync,
            segment_bytes: 64 << 20,
            max_message_bytes: 8 << 20,
            retention: Retention { max_age: Some(Duration::from_secs(7 * 86_400)), max_bytes: Some(1 << 30) },
            retention_check: Duration::from_secs(30),
        }
    }
}

/// The embedded bus; clones share it.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

struct Inner {
    fs: Arc<dyn Filesystem>,
    root: PathBuf,
    options: EmbeddedOptions,
    registry: Arc<Mutex<HashMap<String, Arc<Queue>>>>,
    counters: Arc<Counters>,
    writer: WriterTx,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    closed: AtomicBool,
    /// The directory lock; released by `close`.
    lock: Mutex<Option<Box<dyn std::any::Any + Send + Sync>>>,
}

impl EmbeddedBus {
    /// Opens (or creates) the bus in `dir` on the real file system.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedBus, BusError> {
        EmbeddedBus::open_with(Arc::new(RealFs), dir, options)
    }

    /// Opens the bus on any [`Filesystem`], recovering every queue found in `dir`.
    pub fn open_with(fs: Arc<dyn Filesystem>, dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedBus, BusError> {
        let io_error = |what: &str, e: std::io::Error| BusError::io(format!("{what} {}", dir.display()), e);
        fs.create_dir_all(dir).map_err(|e| io_error("creating the bus directory", e))?;
        let lock_path = dir.join("LOCK");
        let lock = fs.lock(&lock_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                let holder = read_small(fs.as_ref(), &lock_path)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|pid| !pid.trim().is_empty())
                    .map(|pid| format!(" (pid {})", pid.trim()))
                    .unwrap_or_default();
                BusError::Locked { path: dir.display().to_string(), holder }
            } else {
                io_error("locking", e)
            }
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        let writer_tx = WriterTx(tx);
        let counters = Arc::new(Counters::default());
        let registry: Arc<Mutex<HashMap<String, Arc<Queue>>>> = Arc::default();

        let mut entries = fs.list_dir(dir).map_err(|e| io_error("listing", e))?;
        entries.sort();
        for entry in entries {
            let Some(name) = entry.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
            if !fs.is_dir(&entry) || !valid_name(&name) {
                continue;
            }
            if writer::is_marked_deleted(fs.as_ref(), &entry) {
                writer::finish_delete(fs.as_ref(), &entry)?;
                tracing::info!(queue = %name, "Finished deleting a queue whose deletion a crash interrupted.");
                continue;
            }
            let context = QueueContext {
                max_payload: options.max_message_bytes,
                counters: counters.clone(),
                writer: writer_tx.clone(),
            };
            let queue = recover_queue(&fs, &entry, name.clone(), &context)?;
            registry.lock().unwrap_or_else(|p| p.into_inner()).insert(name, Arc::new(queue));
        }

        let settings = WriterSettings {
            durability: options.durability,
            segment_bytes: options.segment_bytes,
            retention: options.retention,
            retention_check: options.retention_check,
        };
        let writer = Writer::new(fs.clone(), settings, registry.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("flotilla-bus-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io_error("starting the writer thread for", e))?;
        Ok(EmbeddedBus {
            inner: Arc::new(Inner {
                fs,
                root: dir.to_path_buf(),
                options,
                registry,
                counters,
                writer: writer_tx,
                writer_thread: Mutex::new(Some(thread)),
                closed: AtomicBool::new(false),
                lock: Mutex::new(Some(lock)),
            }),
        })
    }

    /// The directory the bus lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.root
    }

    /// Applies retention now instead of waiting for the next check (tests, tools).
    pub fn apply_retention(&self) -> Result<(), BusError> {
        for queue in self.queues() {
            writer::apply_retention_to(self.inner.fs.as_ref(), &self.inner.options.retention, &queue)?;
        }
        Ok(())
    }

    fn queues(&self) -> Vec<Arc<Queue>> {
        self.inner.registry.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    fn check_open(&self) -> Result<(), BusError> {
        if self.inner.closed.load(Ordering::Acquire) { Err(BusError::Closed) } else { Ok(()) }
    }

    fn queue(&self, name: &str) -> Result<Arc<Queue>, BusError> {
        if !valid_name(name) {
            return Err(BusError::InvalidQueueName(name.to_string()));
        }
        let mut registry = self.inner.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(queue) = registry.get(name) {
            return Ok(queue.clone());
        }
        let inner = &self.inner;
        let dir = inner.root.join(name);
        if writer::is_marked_deleted(inner.fs.as_ref(), &dir) {
            // What a failed removal left of a deleted queue of this name goes first.
            writer::finish_delete(inner.fs.as_ref(), &dir)?;
        }
        let io_error = |e: std::io::Error| BusError::io(format!("creating queue directory {}", dir.display()), e);
        inner.fs.create_dir_all(&dir).map_err(io_error)?;
        inner.fs.sync_dir(&inner.root).map_err(io_error)?;
        let path = segment::path(&dir, 0);
        let (_, reader) = writer::create_segment(inner.fs.as_ref(), &dir, &path, 0)?;
        let state = QueueState {
            segments: vec![SegmentMeta { base: 0, path, file: reader, sealed_len: None }],
            end: Position { segment: 0, offset: HEADER_LEN, seq: 0 },
            groups: BTreeMap::new(),
        };
        let queue = Arc::new(Queue::new(name.to_string(), dir, state, &inner.context()));
        registry.insert(name.to_string(), queue.clone());
        Ok(queue)
    }
}

impl Inner {
    fn context(&self) -> QueueContext {
        QueueContext {
            max_payload: self.options.max_message_bytes,
            counters: self.counters.clone(),
            writer: self.writer.clone(),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let (reply, _) = oneshot::channel();
            let _ = self.writer.0.send(WriterMsg::Close { reply });
        }
        if let Some(thread) = self.writer_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

#[async_trait::async_trait]
impl Bus for EmbeddedBus {
    async fn publish(&self, queue: &str, payloads: Vec<Bytes>) -> Result<SeqRange, BusError> {
        self.check_open()?;
        let limit = self.inner.options.max_message_bytes;
        if let Some(big) = payloads.iter().find(|p| p.len() > limit) {
            return Err(BusError::TooLarge { size: big.len(), limit });
        }
        let queue = self.queue(queue)?;
        if payloads.is_empty() {
            let next = queue.end.borrow().seq;
            return Ok(next..next);
        }
        let started = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        self.inner.writer.0.send(WriterMsg::Append { queue, payloads, reply }).map_err(|_| BusError::Closed)?;
        let range = answer.await.map_err(|_| BusError::Closed)??;
        self.inner.counters.publish_seconds.observe(started.elapsed());
        Ok(range)
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), BusError> {
        self.check_open()?;
        if !valid_name(queue) {
            return Err(BusError::InvalidQueueName(queue.to_string()));
        }
        let Some(queue) = self.inner.registry.lock().unwrap_or_else(|p| p.into_inner()).get(queue).cloned() else {
            return Ok(());
        };
        let (reply, answer) = oneshot::channel();
        self.inner.writer.0.send(WriterMsg::Delete { queue, reply }).map_err(|_| BusError::Closed)?;
        answer.await.map_err(|_| BusError::Closed)?
    }

    async fn subscribe(&self, queue: &str, group: &str) -> Result<Box<dyn Consumer>, BusError> {
        self.check_open()?;
        if !valid_name(group) {
            return Err(BusError::InvalidGroupName(group.to_string()));
        }
        let queue = self.queue(queue)?;
        Ok(Box::new(EmbeddedConsumer::attach(queue, group)))
    }

    async fn read(&self, queue: &str, from: ReadFrom) -> Result<Box<dyn Reader>, BusError> {
        self.check_open()?;
        let queue = self.queue(queue)?;
        let position = match from {
            ReadFrom::Start => queue.start(),
            ReadFrom::End => *queue.end.borrow(),
        };
        let end_rx = queue.end.subscribe();
        Ok(Box::new(EmbeddedReader { queue, cursor: queue::Cursor::new(position), end_rx }))
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, BusError> {
        let mut stats: Vec<QueueStats> = self.queues().iter().map(|q| q.stats()).collect();
        stats.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(stats)
    }

    fn counters(&self) -> BusCounters {
        self.inner.counters.snapshot()
    }

    async fn close(&self) -> Result<(), BusError> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.inner.writer.0.send(WriterMsg::Close { reply }).map_err(|_| BusError::Closed)?;
        let result = answer.await.map_err(|_| BusError::Closed)?;
        let thread = self.inner.writer_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        self.inner.lock.lock().unwrap_or_else(|p| p.into_inner()).take();
        result
    }
}

fn read_small(fs: &dyn Filesystem, path: &Path) -> std::io::Result<Vec<u8>> {
    let len = fs.file_len(path)?;
    let mut buf = vec![0u8; len as usize];
    let got = fs.open_read(path)?.read_at(0, &mut buf)?;
    buf.truncate(got);
    Ok(buf)
}

/// Rebuilds one queue's state from its directory.
fn recover_queue(
    fs: &Arc<dyn Filesystem>,
    dir: &Path,
    name: String,
    context: &QueueContext,
) -> Result<Queue, BusError> {
    let io_error = |what: &str, path: &Path, e: std::io::Error| BusError::io(format!("{what} {}", path.display()), e);
    let mut bases: Vec<u64> = fs
        .list_dir(dir)
        .map_err(|e| io_error("listing", dir, e))?
        .iter()
        .filter_map(|p| segment::parse_file_name(p))
        .collect();
    bases.sort_unstable();
    if bases.is_empty() {
        // A crash right after the directory was made: start it afresh.
        writer::create_segment(fs.as_ref(), dir, &segment::path(dir, 0), 0)?;
        bases.push(0);
    }

    let mut segments = Vec::with_capacity(bases.len());
    let last_index = bases.len() - 1;
    let mut end = Position { segment: 0, offset: HEADER_LEN, seq: 0 };
    for (index, &base) in bases.iter().enumerate() {
        let path = segment::path(dir, base);
        let len = fs.file_len(&path).map_err(|e| io_error("reading", &path, e))?;
        let file = fs.open_read(&path).map_err(|e| io_error("opening", &path, e))?;
        let mut header = [0u8; HEADER_LEN as usize];
        let got = file.read_at(0, &mut header).map_err(|e| io_error("reading", &path, e))?;
        let header_problem = segment::decode_header(&header[..got]).err().or_else(|| {
            let named = segment::decode_header(&header).ok()?;
            (named != base).then(|| format!("header names base {named}, file name says {base}"))
        });
        if index < last_index {
            if let Some(problem) = header_problem {
                tracing::error!(segment = %path.display(), %problem, "A bus segment has a damaged header; its records are still read and verified one by one.");
            }
            segments.push(SegmentMeta { base, path, file, sealed_len: Some(len) });
            continue;
        }
        // The newest segment: find where its valid records end.
        if len < HEADER_LEN || (header_problem.is_some() && len == HEADER_LEN) {
            // Torn during creation: it never held a record. Write it again.
            writer::create_segment(fs.as_ref(), dir, &path, base)?;
        } else if let Some(problem) = &header_problem {
            tracing::error!(segment = %path.display(), %problem, "The newest bus segment has a damaged header; scanning its records anyway.");
        }
        let len = fs.file_len(&path).map_err(|e| io_error("reading", &path, e))?;
        let file = fs.open_read(&path).map_err(|e| io_error("opening", &path, e))?;
        let report =
            segment::scan(file.as_ref(), len, context.max_payload).map_err(|e| io_error("scanning", &path, e))?;
        for (offset, bytes) in &report.skipped {
            context.counters.corrupt_records_skipped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(queue = %name, segment = %path.display(), offset, bytes, "Skipping damaged bytes in the bus; the messages in them are lost.");
        }
        if report.valid_end < len {
            tracing::warn!(queue = %name, segment = %path.display(), bytes = len - report.valid_end,
                "Cutting a torn tail left by a crash (never acknowledged to any publisher).");
            let mut append = fs.open_append(&path, false).map_err(|e| io_error("opening", &path, e))?;
            append.truncate(report.valid_end).map_err(|e| io_error("truncating", &path, e))?;
            append.sync_data().map_err(|e| io_error("syncing", &path, e))?;
        }
        let next_seq = report.last_seq.map_or(base, |s| s + 1).max(base);
        end = Position { segment: base, offset: report.valid_end, seq: next_seq };
        segments.push(SegmentMeta { base, path, file, sealed_len: None });
    }

    let first = Position { segment: bases[0], offset: HEADER_LEN, seq: bases[0] };
    let groups_path = dir.join(groups_file::FILE_NAME);
    let mut groups = BTreeMap::new();
    if let Ok(text) = read_small(fs.as_ref(), &groups_path) {
        let (saved, damaged) = groups_file::parse(&text);
        if damaged > 0 {
            tracing::warn!(queue = %name, damaged, "Ignored damaged lines in groups.log (a torn write); those groups may see a few messages again.");
        }
        for (group, mut position) in saved {
            if position.seq < first.seq || position.segment < first.segment {
                position = first; // Its segments were removed: start at what is left.
            }
            if position.seq > end.seq || (position.segment == end.segment && position.offset > end.offset) {
                position = end;
            }
            let mut state = Group::starting_at(position);
            state.dirty = false;
            groups.insert(group, state);
        }
    }
    Ok(Queue::new(name, dir.to_path_buf(), QueueState { segments, end, groups }, context))
}
