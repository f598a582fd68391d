//! The writer thread: the only code that appends to segments. It takes every publish
//! waiting in its channel, appends them all, syncs each touched file once, and only
//! then answers the publishers: group commit, so concurrent publishers share fsyncs.
//! It also persists consumer group positions, applies retention and deletes queues.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::io::{AppendFile, Filesystem};
use super::queue::{Counters, Position, Queue, SegmentMeta, read_lock, write_lock};
use super::segment::{self, HEADER_LEN};
use super::{Durability, Retention, groups_file};
use crate::{BusError, SeqRange};

/// Where the writer answers a publish.
pub(crate) type PublishReply = oneshot::Sender<Result<SeqRange, BusError>>;

pub(crate) enum WriterMsg {
    Append {
        queue: Arc<Queue>,
        payloads: Vec<Bytes>,
        reply: PublishReply,
    },
    GroupsDirty(Arc<Queue>),
    /// `Bus::delete_queue`; always the last message of its commit, so the appends
    /// sent before it are written (and deleted) first.
    Delete {
        queue: Arc<Queue>,
        reply: oneshot::Sender<Result<(), BusError>>,
    },
    Close {
        reply: oneshot::Sender<Result<(), BusError>>,
    },
}

/// The sending side of the writer's channel.
#[derive(Clone)]
pub(crate) struct WriterTx(pub Sender<WriterMsg>);

impl WriterTx {
    pub fn groups_dirty(&self, queue: Arc<Queue>) {
        // A closed writer means the bus is shutting down; it flushed groups already.
        let _ = self.0.send(WriterMsg::GroupsDirty(queue));
    }
}

pub(crate) struct WriterSettings {
    pub durability: Durability,
    pub segment_bytes: u64,
    pub retention: Retention,
    pub retention_check: Duration,
}

struct QueueWriter {
    queue: Arc<Queue>,
    file: Box<dyn AppendFile>,
    base: u64,
    written: u64,
    synced: u64,
    next_seq: u64,
    /// Records of the commit being built.
    buf: Vec<u8>,
    /// `next_seq` when this commit first touched the queue, to undo a failed commit.
    commit_start_seq: Option<u64>,
}

struct GroupsLog {
    file: Box<dyn AppendFile>,
    unsynced: bool,
}

/// Caps one commit so a flood of publishers still gets answered promptly.
const MAX_COMMIT_BYTES: usize = 32 << 20;
/// A groups log larger than this is rewritten with one line per group.
const GROUPS_LOG_COMPACT_BYTES: u64 = 1 << 20;
const GROUPS_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// The longest a commit waits for more publishers to join it.
const MAX_GATHER: Duration = Duration::from_micros(400);

pub(crate) struct Writer {
    fs: Arc<dyn Filesystem>,
    settings: WriterSettings,
    registry: Arc<Mutex<HashMap<String, Arc<Queue>>>>,
    counters: Arc<Counters>,
    writers: HashMap<String, QueueWriter>,
    groups_logs: HashMap<String, GroupsLog>,
    last_data_sync: Instant,
    last_groups_sync: Instant,
    last_retention: Instant,
    /// Publishes served by the last commit: how many are likely to come back.
    last_commit_appends: usize,
    /// How long the last data sync took.
    last_sync_time: Duration,
}

impl Writer {
    pub fn new(
        fs: Arc<dyn Filesystem>,
        settings: WriterSettings,
        registry: Arc<Mutex<HashMap<String, Arc<Queue>>>>,
        counters: Arc<Counters>,
    ) -> Writer {
        let now = Instant::now();
        Writer {
            fs,
            settings,
            registry,
            counters,
            writers: HashMap::new(),
            groups_logs: HashMap::new(),
            last_data_sync: now,
            last_groups_sync: now,
            last_retention: now,
            last_commit_appends: 0,
            last_sync_time: Duration::ZERO,
        }
    }

    pub fn run(mut self, rx: Receiver<WriterMsg>) {
        let tick = match self.settings.durability {
            Durability::Interval(every) => every.min(GROUPS_SYNC_INTERVAL),
            _ => GROUPS_SYNC_INTERVAL,
        };
        loop {
            let mut batch = Vec::new();
            let ends_commit = |msg: &WriterMsg| matches!(msg, WriterMsg::Delete { .. });
            match rx.recv_timeout(tick) {
                Ok(first) => batch.push(first),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let mut bytes = 0usize;
            let mut appends = 0usize;
            // Group commit: take whatever is waiting. When the last commit served many
            // publishers, they are probably about to come back: wait a fraction of a
            // sync for them so one fsync serves them all (PostgreSQL's commit_delay).
            let gather_until = (self.last_commit_appends > 1 && !batch.is_empty())
                .then(|| Instant::now() + self.last_sync_time.min(MAX_GATHER) / 2);
            while bytes < MAX_COMMIT_BYTES && !batch.last().is_some_and(ends_commit) {
                let next = match gather_until {
                    Some(deadline) if appends + 1 < self.last_commit_appends => {
                        match deadline.checked_duration_since(Instant::now()) {
                            Some(left) => rx.recv_timeout(left).ok(),
                            None => rx.try_recv().ok(),
                        }
                    }
                    _ => rx.try_recv().ok(),
                };
                let Some(msg) = next else { break };
                if let WriterMsg::Append { payloads, .. } = &msg {
                    bytes += payloads.iter().map(Bytes::len).sum::<usize>();
                    appends += 1;
                }
                batch.push(msg);
            }
            if let Some(WriterMsg::Append { .. }) = batch.first() {
                appends += 1;
            }
            if appends > 0 {
                self.last_commit_appends = appends;
            }
            let close = self.commit(batch);
            self.periodic();
            if let Some(reply) = close {
                let result = self.shutdown();
                let _ = reply.send(result);
                return;
            }
        }
        if let Err(error) = self.shutdown() {
            tracing::error!(%error, "The bus could not flush while closing.");
        }
    }

    /// Appends a batch of requests and answers them; returns a pending close request.
    fn commit(&mut self, batch: Vec<WriterMsg>) -> Option<oneshot::Sender<Result<(), BusError>>> {
        let mut close = None;
        let mut replies: Vec<(String, SeqRange, PublishReply)> = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        let mut dirty_groups: BTreeMap<String, Arc<Queue>> = BTreeMap::new();
        let mut delete = None;
        let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;

        for msg in batch {
            match msg {
                WriterMsg::Append { queue, payloads, reply } => {
                    let name = queue.name.clone();
                    if queue.deleted.load(Ordering::Acquire) {
                        // Looked up before the queue was deleted (`Bus::delete_queue`).
                        let _ = reply.send(Err(BusError::Deleted(name.clone())));
                        continue;
                    }
                    if let Err(error) = self.prepare(&queue) {
                        self.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                        let _ = reply.send(Err(error));
                        continue;
                    }
                    let qw = self.writers.get_mut(&name).expect("prepared above");
                    qw.commit_start_seq.get_or_insert(qw.next_seq);
                    let start = qw.next_seq;
                    for payload in &payloads {
                        super::record::encode(&mut qw.buf, qw.next_seq, now_ms, payload);
                        qw.next_seq += 1;
                    }
                    if !touched.contains(&name) {
                        touched.push(name.clone());
                    }
                    self.counters.published.fetch_add(payloads.len() as u64, Ordering::Relaxed);
                    self.counters.publish_batches.fetch_add(1, Ordering::Relaxed);
                    replies.push((name, start..qw.next_seq, reply));
                }
                WriterMsg::GroupsDirty(queue) => {
                    dirty_groups.insert(queue.name.clone(), queue);
                }
                WriterMsg::Delete { queue, reply } => delete = Some((queue, reply)),
                WriterMsg::Close { reply } => close = Some(reply),
            }
        }

        let mut failed: HashMap<String, BusError> = HashMap::new();
        let sync_now = match self.settings.durability {
            Durability::Sync => true,
            Durability::Interval(every) => self.last_data_sync.elapsed() >= every,
            Durability::Buffered => false,
        };
        // Write every touched queue's records, then sync all those files together.
        let mut outcomes: HashMap<String, (u64, u64, std::io::Result<()>)> = HashMap::new();
        for name in &touched {
            let qw = self.writers.get_mut(name).expect("touched queues have writers");
            let before = qw.written;
            let start_seq = qw.commit_start_seq.take().unwrap_or(qw.next_seq);
            let result = qw.file.append(&qw.buf);
            if result.is_ok() {
                qw.written += qw.buf.len() as u64;
            }
            qw.buf.clear();
            outcomes.insert(name.clone(), (before, start_seq, result));
        }
        if sync_now {
            let mut to_sync: Vec<(&String, &mut QueueWriter)> = self
                .writers
                .iter_mut()
                .filter(|(name, _)| outcomes.get(*name).is_some_and(|(_, _, r)| r.is_ok()))
                .collect();
            self.counters.syncs.fetch_add(to_sync.len() as u64, Ordering::Relaxed);
            // Until its sync reports back, a file counts as not synced.
            for (name, _) in &to_sync {
                if let Some(outcome) = outcomes.get_mut(*name) {
                    outcome.2 = Err(std::io::Error::other("the sync did not complete"));
                }
            }
            let started = Instant::now();
            for (name, result) in sync_files(&mut to_sync) {
                if let Some(outcome) = outcomes.get_mut(&name) {
                    outcome.2 = result;
                }
            }
            self.last_sync_time = started.elapsed();
            self.counters.sync_seconds.observe(self.last_sync_time);
        }
        for (name, (before, start_seq, result)) in outcomes {
            let qw = self.writers.get_mut(&name).expect("touched queues have writers");
            match result {
                Ok(()) => {
                    if sync_now {
                        qw.synced = qw.written;
                    }
                }
                Err(e) => {
                    // Undo the whole commit for this queue: cut what may have reached
                    // the file and hand the sequence numbers out again.
                    let keep = if matches!(self.settings.durability, Durability::Sync) { qw.synced } else { before };
                    if let Err(cut) = qw.file.truncate(keep) {
                        tracing::error!(queue = %name, error = %cut, "Could not cut a failed write from a segment.");
                    }
                    qw.written = keep;
                    qw.next_seq = start_seq;
                    tracing::warn!(queue = %name, error = %e, "A publish to the bus failed; the publisher was told.");
                    failed.insert(name.clone(), BusError::io(format!("writing to queue '{name}'"), e));
                    continue;
                }
            }
            let visible = if matches!(self.settings.durability, Durability::Sync) { qw.synced } else { qw.written };
            qw.queue.end.send_replace(Position { segment: qw.base, offset: visible, seq: qw.next_seq });
        }
        if sync_now && !touched.is_empty() {
            self.last_data_sync = Instant::now();
        }
        for (name, range, reply) in replies {
            let result = match failed.get(&name) {
                Some(error) => {
                    self.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                    Err(error.clone())
                }
                None => Ok(range),
            };
            let _ = reply.send(result);
        }
        for queue in dirty_groups.into_values() {
            if let Err(error) = self.flush_groups(&queue) {
                tracing::warn!(queue = %queue.name, %error, "Could not persist consumer group positions; will retry.");
                queue.groups_flush_pending.store(false, Ordering::Release);
            }
        }
        if let Some((queue, reply)) = delete {
            let _ = reply.send(self.delete_queue(&queue));
        }
        close
    }

    /// Deletes a queue (`Bus::delete_queue`). The directory is marked first: from then
    /// on the deletion is decided, and whatever of it a crash interrupts is finished at
    /// the next open (or when the name is published to again). The registry lock is
    /// held throughout, so no publish creates the queue afresh in the directory being
    /// emptied. Readers and consumers of the queue are woken and fail.
    fn delete_queue(&mut self, queue: &Arc<Queue>) -> Result<(), BusError> {
        if queue.deleted.load(Ordering::Acquire) {
            return Ok(()); // Deleted by an earlier request.
        }
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        mark_deleted(self.fs.as_ref(), &queue.dir)?;
        if registry.get(&queue.name).is_some_and(|current| Arc::ptr_eq(current, queue)) {
            registry.remove(&queue.name);
        }
        queue.deleted.store(true, Ordering::Release);
        self.writers.remove(&queue.name);
        self.groups_logs.remove(&queue.name);
        if let Err(error) = finish_delete(self.fs.as_ref(), &queue.dir) {
            tracing::warn!(queue = %queue.name, %error, "A deleted queue's files could not all be removed yet; they are removed at the next open.");
        }
        drop(registry);
        queue.end.send_modify(|_| {});
        queue.redelivery.notify_waiters();
        tracing::debug!(queue = %queue.name, "Deleted a queue.");
        Ok(())
    }

    /// Makes sure the queue has an open writer with room in its segment.
    fn prepare(&mut self, queue: &Arc<Queue>) -> Result<(), BusError> {
        if !self.writers.contains_key(&queue.name) {
            let end = *queue.end.borrow();
            let path = segment::path(&queue.dir, end.segment);
            let mut file = self
                .fs
                .open_append(&path, false)
                .map_err(|e| BusError::io(format!("opening {}", path.display()), e))?;
            if file.len() != end.offset {
                // Recovery cut the torn tail in its view; make the file agree.
                file.truncate(end.offset).map_err(|e| BusError::io(format!("truncating {}", path.display()), e))?;
            }
            self.writers.insert(
                queue.name.clone(),
                QueueWriter {
                    queue: queue.clone(),
                    file,
                    base: end.segment,
                    written: end.offset,
                    synced: end.offset,
                    next_seq: end.seq,
                    buf: Vec::new(),
                    commit_start_seq: None,
                },
            );
        }
        let qw = self.writers.get_mut(&queue.name).expect("inserted above");
        let segment_full = qw.written >= self.settings.segment_bytes && qw.written > HEADER_LEN;
        if segment_full && qw.buf.is_empty() {
            roll(self.fs.as_ref(), qw)?;
        }
        Ok(())
    }

    fn flush_groups(&mut self, queue: &Arc<Queue>) -> Result<(), BusError> {
        queue.groups_flush_pending.store(false, Ordering::Release);
        if queue.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        let lines: Vec<(String, Position)> = {
            let mut groups = queue.lock_groups();
            groups
                .iter_mut()
                .filter(|(_, g)| g.dirty)
                .map(|(name, g)| {
                    g.dirty = false;
                    (name.clone(), g.resume())
                })
                .collect()
        };
        if lines.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        for (name, position) in &lines {
            groups_file::encode_line(&mut text, name, position);
        }
        let result = self.append_groups(queue, &text);
        if result.is_err() {
            // Mark them dirty again so the next flush retries.
            let mut groups = queue.lock_groups();
            for (name, _) in &lines {
                if let Some(g) = groups.get_mut(name) {
                    g.dirty = true;
                }
            }
        }
        result
    }

    fn append_groups(&mut self, queue: &Arc<Queue>, text: &[u8]) -> Result<(), BusError> {
        let path = queue.dir.join(groups_file::FILE_NAME);
        let io_error = |e: std::io::Error| BusError::io(format!("writing {}", path.display()), e);
        if !self.groups_logs.contains_key(&queue.name) {
            let file = self.fs.open_append(&path, true).map_err(io_error)?;
            self.fs.sync_dir(&queue.dir).map_err(io_error)?;
            self.groups_logs.insert(queue.name.clone(), GroupsLog { file, unsynced: false });
        }
        let log = self.groups_logs.get_mut(&queue.name).expect("inserted above");
        log.file.append(text).map_err(io_error)?;
        log.unsynced = true;
        if log.file.len() > GROUPS_LOG_COMPACT_BYTES {
            self.compact_groups(queue)?;
        }
        Ok(())
    }

    /// Rewrites a queue's groups log with the current position of every group.
    fn compact_groups(&mut self, queue: &Arc<Queue>) -> Result<(), BusError> {
        let path = queue.dir.join(groups_file::FILE_NAME);
        let temporary = queue.dir.join(format!("{}.tmp", groups_file::FILE_NAME));
        let io_error = |e: std::io::Error| BusError::io(format!("compacting {}", path.display()), e);
        let mut text = Vec::new();
        for (name, group) in queue.lock_groups().iter() {
            groups_file::encode_line(&mut text, name, &group.resume());
        }
        let _ = self.fs.remove_file(&temporary);
        let mut file = self.fs.open_append(&temporary, true).map_err(io_error)?;
        file.append(&text).map_err(io_error)?;
        file.sync_data().map_err(io_error)?;
        self.fs.rename(&temporary, &path).map_err(io_error)?;
        self.fs.sync_dir(&queue.dir).map_err(io_error)?;
        let file = self.fs.open_append(&path, false).map_err(io_error)?;
        self.groups_logs.insert(queue.name.clone(), GroupsLog { file, unsynced: false });
        Ok(())
    }

    fn periodic(&mut self) {
        if let Durability::Interval(every) = self.settings.durability
            && self.last_data_sync.elapsed() >= every
        {
            self.sync_data_files();
        }
        if self.last_groups_sync.elapsed() >= GROUPS_SYNC_INTERVAL {
            self.sync_groups_logs();
        }
        if self.last_retention.elapsed() >= self.settings.retention_check {
            self.last_retention = Instant::now();
            self.apply_retention();
        }
    }

    fn sync_data_files(&mut self) {
        for (name, qw) in &mut self.writers {
            if qw.synced == qw.written {
                continue;
            }
            self.counters.syncs.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let synced = qw.file.sync_data();
            self.counters.sync_seconds.observe(started.elapsed());
            match synced {
                Ok(()) => qw.synced = qw.written,
                Err(error) => tracing::error!(
                    queue = %name, %error,
                    "Syncing the bus failed: messages accepted in the last sync interval may be lost on power failure."
                ),
            }
        }
        self.last_data_sync = Instant::now();
    }

    fn sync_groups_logs(&mut self) {
        for (name, log) in &mut self.groups_logs {
            if log.unsynced {
                match log.file.sync_data() {
                    Ok(()) => log.unsynced = false,
                    Err(error) => tracing::warn!(queue = %name, %error, "Could not sync consumer group positions."),
                }
            }
        }
        self.last_groups_sync = Instant::now();
    }

    /// Deletes the oldest segments that every group has acknowledged and that are older
    /// or larger than the retention allows. Unacknowledged messages are never deleted.
    pub fn apply_retention(&mut self) {
        let queues: Vec<Arc<Queue>> =
            self.registry.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for queue in queues {
            if let Err(error) = apply_retention_to(self.fs.as_ref(), &self.settings.retention, &queue) {
                tracing::warn!(queue = %queue.name, %error, "Retention could not remove an old segment.");
            }
        }
    }

    fn shutdown(&mut self) -> Result<(), BusError> {
        let queues: Vec<Arc<Queue>> =
            self.registry.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let mut first_error = None;
        for queue in &queues {
            if let Err(e) = self.flush_groups(queue) {
                first_error.get_or_insert(e);
            }
        }
        self.sync_data_files();
        self.sync_groups_logs();
        first_error.map_or(Ok(()), Err)
    }
}

/// At most this many threads sync files of one commit at once.
const SYNC_THREADS: usize = 8;

/// Syncs the files of a commit. One file is synced here; several are synced by up to
/// [`SYNC_THREADS`] threads at once: the file system then flushes them together
/// (one journal commit for many files), which for a commit touching hundreds of queues
/// (the dispatcher's `sub.<name>` fan-out) is ten to thirty times faster than syncing
/// them one after another.
fn sync_files(files: &mut [(&String, &mut QueueWriter)]) -> Vec<(String, std::io::Result<()>)> {
    if files.len() <= 1 {
        return files.iter_mut().map(|(name, qw)| ((*name).clone(), qw.file.sync_data())).collect();
    }
    let per_thread = files.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks_mut(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk.iter_mut().map(|(name, qw)| ((*name).clone(), qw.file.sync_data())).collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                // A panicked worker's files keep their "not synced" error.
                worker.join().unwrap_or_default()
            })
            .collect()
    })
}

/// Starts a new segment at `next_seq` once the current one is full and synced.
fn roll(fs: &dyn Filesystem, qw: &mut QueueWriter) -> Result<(), BusError> {
    if qw.synced != qw.written {
        qw.file.sync_data().map_err(|e| BusError::io(format!("syncing queue '{}'", qw.queue.name), e))?;
        qw.synced = qw.written;
    }
    let base = qw.next_seq;
    let path = segment::path(&qw.queue.dir, base);
    let (file, reader) = create_segment(fs, &qw.queue.dir, &path, base)?;
    {
        let mut segments = write_lock(&qw.queue.segments);
        if let Some(last) = segments.last_mut() {
            last.sealed_len = Some(qw.written);
        }
        segments.push(SegmentMeta { base, path, file: reader, sealed_len: None });
    }
    qw.file = file;
    qw.base = base;
    qw.written = HEADER_LEN;
    qw.synced = HEADER_LEN;
    qw.queue.end.send_replace(Position { segment: base, offset: HEADER_LEN, seq: base });
    Ok(())
}

/// The file that marks a queue directory as deleted.
pub(crate) const DELETED_MARKER: &str = "DELETED";

/// Whether `dir` is a deleted queue's directory that still has to be removed.
pub(crate) fn is_marked_deleted(fs: &dyn Filesystem, dir: &Path) -> bool {
    let marker = dir.join(DELETED_MARKER);
    fs.list_dir(dir).is_ok_and(|entries| entries.contains(&marker))
}

/// Marks a queue directory as deleted, durably.
fn mark_deleted(fs: &dyn Filesystem, dir: &Path) -> Result<(), BusError> {
    let io_error = |e: std::io::Error| BusError::io(format!("marking {} deleted", dir.display()), e);
    fs.open_append(&dir.join(DELETED_MARKER), true).map_err(io_error)?;
    fs.sync_dir(dir).map_err(io_error)
}

/// Removes a directory marked deleted: its files, then the marker, then itself.
pub(crate) fn finish_delete(fs: &dyn Filesystem, dir: &Path) -> Result<(), BusError> {
    let io_error = |e: std::io::Error| BusError::io(format!("removing deleted queue {}", dir.display()), e);
    let marker = dir.join(DELETED_MARKER);
    for entry in fs.list_dir(dir).map_err(io_error)? {
        if entry != marker {
            fs.remove_file(&entry).map_err(io_error)?;
        }
    }
    fs.sync_dir(dir).map_err(io_error)?;
    fs.remove_file(&marker).map_err(io_error)?;
    fs.remove_dir(dir).map_err(io_error)?;
    if let Some(parent) = dir.parent() {
        fs.sync_dir(parent).map_err(io_error)?;
    }
    Ok(())
}

/// A freshly created segment, open for appending and for reading.
pub(crate) type NewSegment = (Box<dyn AppendFile>, Arc<dyn super::io::ReadFile>);

/// Creates a segment file with its header, durable together with its name.
pub(crate) fn create_segment(fs: &dyn Filesystem, dir: &Path, path: &Path, base: u64) -> Result<NewSegment, BusError> {
    let io_error = |e: std::io::Error| BusError::io(format!("creating segment {}", path.display()), e);
    let mut file = fs.open_append(path, true).map_err(io_error)?;
    // A leftover from a crash during an earlier creation holds no acknowledged data.
    file.truncate(0).map_err(io_error)?;
    file.append(&segment::encode_header(base)).map_err(io_error)?;
    file.sync_data().map_err(io_error)?;
    // IMPORTANT: without syncing the directory the new name may vanish in a crash,
    // taking acknowledged records with it.
    fs.sync_dir(dir).map_err(io_error)?;
    let reader = fs.open_read(path).map_err(io_error)?;
    Ok((file, reader))
}

pub(crate) fn apply_retention_to(fs: &dyn Filesystem, retention: &Retention, queue: &Queue) -> Result<(), BusError> {
    if retention.max_age.is_none() && retention.max_bytes.is_none() {
        return Ok(());
    }
    let min_unacked = queue.lock_groups().values().map(|g| g.first_unacked_seq()).min().unwrap_or(u64::MAX);
    let end = *queue.end.borrow();
    loop {
        let (path, base_after, len, total) = {
            let segments = read_lock(&queue.segments);
            if segments.len() < 2 {
                return Ok(());
            }
            let total: u64 = segments.iter().map(|s| s.sealed_len.unwrap_or(end.offset)).sum();
            let oldest = &segments[0];
            (oldest.path.clone(), segments[1].base, oldest.sealed_len.unwrap_or(0), total)
        };
        if min_unacked < base_after {
            return Ok(()); // Someone still needs it.
        }
        let too_big = retention.max_bytes.is_some_and(|max| total > max);
        let too_old = retention.max_age.is_some_and(|max_age| {
            fs.modified(&path).ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age > max_age)
        });
        if !(too_big || too_old) {
            return Ok(());
        }
        write_lock(&queue.segments).remove(0);
        fs.remove_file(&path).map_err(|e| BusError::io(format!("removing {}", path.display()), e))?;
        fs.sync_dir(&queue.dir).map_err(|e| BusError::io(format!("syncing {}", queue.dir.display()), e))?;
        tracing::debug!(queue = %queue.name, segment = %path.display(), bytes = len, "Retention removed a segment.");
    }
}
