//! One queue's shared state (its segments, its durable end, its consumer groups) and
//! the cursors that read it: [`EmbeddedConsumer`] for a group member, [`EmbeddedReader`]
//! for `tail`. Only the writer thread appends; everything here reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{Notify, watch};

use super::io::ReadFile;
use super::record::{self, Decoded};
use super::segment::HEADER_LEN;
use super::writer::WriterTx;
pub(crate) use crate::Counters;
use crate::{BusError, Delivery, DeliveryId, GroupStats, QueueStats};

/// A place in a queue: a byte offset in a segment, and the sequence number of the
/// record there (or the next one to be written, at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Position {
    pub segment: u64,
    pub offset: u64,
    pub seq: u64,
}

/// A segment as readers see it.
pub(crate) struct SegmentMeta {
    pub base: u64,
    pub path: PathBuf,
    pub file: Arc<dyn ReadFile>,
    /// The final length once the writer moved on to a newer segment.
    pub sealed_len: Option<u64>,
}

/// A consumer group's state in one queue.
pub(crate) struct Group {
    /// The never-delivered cursor shared by the group's consumers.
    pub next: Position,
    /// Delivered, not acknowledged: sequence number → (consumer id, position).
    pub in_flight: BTreeMap<u64, (u64, Position)>,
    /// Handed back by a consumer that went away; delivered again before anything new.
    pub redeliver: BTreeMap<u64, Position>,
    pub consumers: u64,
    /// The acknowledged state changed since it was last written to disk.
    pub dirty: bool,
}

impl Group {
    pub fn starting_at(position: Position) -> Group {
        Group { next: position, in_flight: BTreeMap::new(), redeliver: BTreeMap::new(), consumers: 0, dirty: true }
    }

    /// Where the group would resume after a restart: the first message not yet
    /// acknowledged.
    pub fn resume(&self) -> Position {
        let in_flight = self.in_flight.values().next().map(|(_, p)| *p);
        let redeliver = self.redeliver.values().next().copied();
        match (in_flight, redeliver) {
            (Some(a), Some(b)) => {
                if a.seq <= b.seq {
                    a
                } else {
                    b
                }
            }
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => self.next,
        }
    }

    /// Every message below this sequence number has been acknowledged.
    pub fn first_unacked_seq(&self) -> u64 {
        self.resume().seq
    }
}

/// What a queue starts with: found on disk, or fresh.
pub(crate) struct QueueState {
    pub segments: Vec<SegmentMeta>,
    pub end: Position,
    pub groups: BTreeMap<String, Group>,
}

/// What every queue of a bus shares.
pub(crate) struct QueueContext {
    pub max_payload: usize,
    pub counters: Arc<Counters>,
    pub writer: WriterTx,
}

/// One queue.
pub(crate) struct Queue {
    pub name: String,
    pub dir: PathBuf,
    pub max_payload: usize,
    /// Oldest first; the last one is being written.
    pub segments: RwLock<Vec<SegmentMeta>>,
    /// Where the next record will go; readers never read at or past it.
    pub end: watch::Sender<Position>,
    pub groups: Mutex<BTreeMap<String, Group>>,
    /// Wakes consumers when messages are handed back for redelivery.
    pub redelivery: Notify,
    /// Set when group state awaits the writer; avoids flooding it with notices.
    pub groups_flush_pending: AtomicBool,
    pub counters: Arc<Counters>,
    pub writer: WriterTx,
    next_consumer_id: AtomicU64,
    /// Set by the writer when the queue is deleted (`Bus::delete_queue`): its readers
    /// and consumers fail from then on, and appends are refused.
    pub deleted: AtomicBool,
}

impl Queue {
    pub fn new(name: String, dir: PathBuf, state: QueueState, context: &QueueContext) -> Queue {
        Queue {
            name,
            dir,
            max_payload: context.max_payload,
            segments: RwLock::new(state.segments),
            end: watch::Sender::new(state.end),
            groups: Mutex::new(state.groups),
            redelivery: Notify::new(),
            groups_flush_pending: AtomicBool::new(false),
            counters: context.counters.clone(),
            writer: context.writer.clone(),
            next_consumer_id: AtomicU64::new(1),
            deleted: AtomicBool::new(false),
        }
    }

    /// The error a reader or consumer of a deleted queue gets.
    pub fn deleted_error(&self) -> Option<BusError> {
        self.deleted.load(Ordering::Acquire).then(|| BusError::Deleted(self.name.clone()))
    }

    /// The first position of the oldest retained segment.
    pub fn start(&self) -> Position {
        let segments = read_lock(&self.segments);
        match segments.first() {
            Some(s) => Position { segment: s.base, offset: HEADER_LEN, seq: s.base },
            None => *self.end.borrow(),
        }
    }

    pub fn lock_groups(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the writer to persist group positions (once per pending flush).
    pub fn note_groups_dirty(self: &Arc<Self>) {
        if !self.groups_flush_pending.swap(true, Ordering::AcqRel) {
            self.writer.groups_dirty(self.clone());
        }
    }

    pub fn stats(&self) -> QueueStats {
        let end = *self.end.borrow();
        let (first_seq, bytes) = {
            let segments = read_lock(&self.segments);
            let first = segments.first().map_or(end.seq, |s| s.base);
            let bytes = segments.iter().map(|s| s.sealed_len.unwrap_or(end.offset)).sum();
            (first, bytes)
        };
        let groups = self.lock_groups();
        let group_stats: Vec<GroupStats> = groups
            .iter()
            .map(|(name, g)| {
                let first_unacked = g.first_unacked_seq().max(first_seq);
                GroupStats {
                    group: name.clone(),
                    acked_seq: first_unacked.checked_sub(1),
                    in_flight: g.in_flight.len() as u64,
                    pending: end.seq.saturating_sub(first_unacked),
                    consumers: g.consumers,
                }
            })
            .collect();
        let depth = match group_stats.iter().map(|g| g.pending).max() {
            Some(pending) => pending,
            None => end.seq.saturating_sub(first_seq),
        };
        QueueStats { queue: self.name.clone(), first_seq, next_seq: end.seq, bytes, depth, groups: group_stats }
    }
}

pub(crate) fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// Reads records from a position onwards, keeping a chunk of the segment in memory so
/// payloads are handed out as slices of it without copying.
pub(crate) struct Cursor {
    pub pos: Position,
    file: Option<(u64, Arc<dyn ReadFile>)>,
    chunk: Bytes,
    chunk_start: u64,
}

const CHUNK: usize = 1 << 20;

impl Cursor {
    pub fn new(pos: Position) -> Cursor {
        Cursor { pos, file: None, chunk: Bytes::new(), chunk_start: 0 }
    }

    /// Reads up to `max` records from `self.pos`, never past the queue's end, appending
    /// `(position, delivery)` pairs to `out`.
    pub fn read(&mut self, queue: &Queue, max: usize, out: &mut Vec<(Position, Delivery)>) -> Result<(), BusError> {
        let end = *queue.end.borrow();
        let target = out.len() + max;
        while out.len() < target {
            // Which segment, and how far may we read in it?
            let limit = {
                let segments = read_lock(&queue.segments);
                match segments.iter().find(|s| s.base == self.pos.segment) {
                    Some(s) => {
                        if self.file.as_ref().is_none_or(|(base, _)| *base != s.base) {
                            self.file = Some((s.base, s.file.clone()));
                            self.chunk = Bytes::new();
                        }
                        if s.base == end.segment { end.offset } else { s.sealed_len.unwrap_or(end.offset) }
                    }
                    None => {
                        // Removed by retention (or never existed): go to the next newer one.
                        match segments.iter().find(|s| s.base > self.pos.segment) {
                            Some(next) => {
                                self.pos = Position {
                                    segment: next.base,
                                    offset: HEADER_LEN,
                                    seq: self.pos.seq.max(next.base),
                                };
                                continue;
                            }
                            None => return Ok(()),
                        }
                    }
                }
            };
            if self.pos.offset >= limit {
                if self.pos.segment == end.segment {
                    return Ok(()); // Caught up.
                }
                let segments = read_lock(&queue.segments);
                match segments.iter().find(|s| s.base > self.pos.segment) {
                    Some(next) => {
                        self.pos =
                            Position { segment: next.base, offset: HEADER_LEN, seq: self.pos.seq.max(next.base) };
                        continue;
                    }
                    None => return Ok(()),
                }
            }
            let available = self.available(limit);
            match record::decode(available, queue.max_payload) {
                Decoded::Record(r) => {
                    let at = (self.pos.offset - self.chunk_start) as usize;
                    let payload = self.chunk.slice(at + r.payload_start..at + r.total_len());
                    let here = self.pos;
                    out.push((
                        here,
                        Delivery { id: DeliveryId::Seq(r.seq), seq: r.seq, timestamp_ms: r.timestamp_ms, payload },
                    ));
                    self.pos =
                        Position { segment: here.segment, offset: here.offset + r.total_len() as u64, seq: r.seq + 1 };
                }
                Decoded::Incomplete { needed } => {
                    if self.pos.offset + needed as u64 > limit {
                        // Below the durable end every record is whole; this one is not.
                        self.skip_damage(queue, limit, "record runs past the end of the written data")?;
                        continue;
                    }
                    self.fill(queue, limit, needed)?;
                    if self.available(limit).len() < needed {
                        self.skip_damage(queue, limit, "segment file is shorter than expected")?;
                    }
                }
                Decoded::Corrupt(why) => {
                    let why = why.to_string();
                    self.skip_damage(queue, limit, &why)?;
                }
            }
        }
        Ok(())
    }

    fn available(&self, limit: u64) -> &[u8] {
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        if self.pos.offset < self.chunk_start || self.pos.offset >= chunk_end {
            return &[];
        }
        let from = (self.pos.offset - self.chunk_start) as usize;
        let to = (limit.min(chunk_end) - self.chunk_start) as usize;
        &self.chunk[from..to]
    }

    fn fill(&mut self, queue: &Queue, limit: u64, needed: usize) -> Result<(), BusError> {
        let Some((_, file)) = &self.file else { return Ok(()) };
        let want = needed.max(CHUNK).min((limit - self.pos.offset) as usize);
        let mut buf = BytesMut::zeroed(want);
        let got = file
            .read_at(self.pos.offset, &mut buf)
            .map_err(|e| BusError::io(format!("reading queue '{}'", queue.name), e))?;
        buf.truncate(got);
        self.chunk = buf.freeze();
        self.chunk_start = self.pos.offset;
        Ok(())
    }

    /// Never serve a damaged record: find the next valid one in this segment, or give
    /// up on the rest of the segment.
    fn skip_damage(&mut self, queue: &Queue, limit: u64, why: &str) -> Result<(), BusError> {
        queue.counters.corrupt_records_skipped.fetch_add(1, Ordering::Relaxed);
        let Some((_, file)) = &self.file else { return Ok(()) };
        let mut rest = vec![0u8; (limit - self.pos.offset) as usize];
        let got = file
            .read_at(self.pos.offset, &mut rest)
            .map_err(|e| BusError::io(format!("reading queue '{}'", queue.name), e))?;
        rest.truncate(got);
        let last_seq = self.pos.seq.checked_sub(1);
        let skip = record::resync(&rest, last_seq, queue.max_payload);
        tracing::error!(
            queue = %queue.name,
            segment = self.pos.segment,
            offset = self.pos.offset,
            reason = why,
            skipped_bytes = skip.map_or(rest.len(), |s| s),
            "Skipping a damaged record in the bus; the messages in the damaged bytes are lost."
        );
        self.pos.offset += skip.map_or(limit - self.pos.offset, |s| s as u64);
        self.chunk = Bytes::new();
        Ok(())
    }
}

/// A member of a consumer group.
pub struct EmbeddedConsumer {
    pub(crate) queue: Arc<Queue>,
    pub(crate) group: String,
    pub(crate) id: u64,
    pub(crate) cursor: Cursor,
    pub(crate) end_rx: watch::Receiver<Position>,
}

impl EmbeddedConsumer {
    pub(crate) fn attach(queue: Arc<Queue>, group: &str) -> EmbeddedConsumer {
        let id = queue.next_consumer_id.fetch_add(1, Ordering::Relaxed);
        let start = queue.start();
        let next = {
            let mut groups = queue.lock_groups();
            let entry = groups.entry(group.to_string()).or_insert_with(|| Group::starting_at(start));
            entry.consumers += 1;
            entry.next
        };
        queue.note_groups_dirty();
        let end_rx = queue.end.subscribe();
        EmbeddedConsumer { queue, group: group.to_string(), id, cursor: Cursor::new(next), end_rx }
    }

    fn take_available(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let mut found: Vec<(Position, Delivery)> = Vec::new();
        let mut groups = self.queue.lock_groups();
        let group = groups.get_mut(&self.group).expect("an attached group exists");
        // Messages handed back by departed consumers come first, in order.
        while found.len() < max {
            let Some((_, pos)) = group.redeliver.pop_first() else { break };
            self.cursor.pos = pos;
            let before = found.len();
            self.cursor.read(&self.queue, 1, &mut found)?;
            if found.len() == before {
                continue; // Gone (damaged or removed): nothing to hand out.
            }
        }
        if found.len() < max {
            // Positions are compared, so an unchanged cursor keeps its cached chunk.
            self.cursor.pos = group.next;
            self.cursor.read(&self.queue, max - found.len(), &mut found)?;
            group.next = self.cursor.pos;
        }
        for (pos, delivery) in &found {
            group.in_flight.insert(delivery.seq, (self.id, *pos));
        }
        drop(groups);
        self.queue.counters.delivered.fetch_add(found.len() as u64, Ordering::Relaxed);
        Ok(found.into_iter().map(|(_, d)| d).collect())
    }
}

#[async_trait::async_trait]
impl crate::Consumer for EmbeddedConsumer {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(error) = self.queue.deleted_error() {
                return Err(error);
            }
            self.end_rx.borrow_and_update();
            // Registered before looking, so a hand-back in between is not missed.
            let queue = self.queue.clone();
            let redelivery = queue.redelivery.notified();
            tokio::pin!(redelivery);
            redelivery.as_mut().enable();
            let batch = self.take_available(max.max(1))?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            tokio::select! {
                changed = self.end_rx.changed() => if changed.is_err() { return Err(BusError::Closed) },
                _ = redelivery => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
            }
        }
    }

    async fn ack(&mut self, ids: &[DeliveryId]) -> Result<(), BusError> {
        let mut acked = 0;
        {
            let mut groups = self.queue.lock_groups();
            let group = groups.get_mut(&self.group).expect("an attached group exists");
            for id in ids {
                if let DeliveryId::Seq(seq) = id
                    && group.in_flight.remove(seq).is_some()
                {
                    acked += 1;
                }
            }
            group.dirty |= acked > 0;
        }
        if acked > 0 {
            self.queue.counters.acked.fetch_add(acked, Ordering::Relaxed);
            self.queue.note_groups_dirty();
        }
        Ok(())
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        let mut groups = self.queue.lock_groups();
        if let Some(group) = groups.get_mut(&self.group) {
            let mine: Vec<u64> =
                group.in_flight.iter().filter(|(_, (owner, _))| *owner == self.id).map(|(seq, _)| *seq).collect();
            for seq in mine {
                if let Some((_, pos)) = group.in_flight.remove(&seq) {
                    group.redeliver.insert(seq, pos);
                }
            }
            group.consumers = group.consumers.saturating_sub(1);
        }
        drop(groups);
        self.queue.redelivery.notify_waiters();
    }
}

/// Follows a queue without consuming it.
pub struct EmbeddedReader {
    pub(crate) queue: Arc<Queue>,
    pub(crate) cursor: Cursor,
    pub(crate) end_rx: watch::Receiver<Position>,
}

#[async_trait::async_trait]
impl crate::Reader for EmbeddedReader {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(error) = self.queue.deleted_error() {
                return Err(error);
            }
            self.end_rx.borrow_and_update();
            let mut found = Vec::new();
            self.cursor.read(&self.queue, max.max(1), &mut found)?;
            if !found.is_empty() {
                return Ok(found.into_iter().map(|(_, d)| d).collect());
            }
            tokio::select! {
                changed = self.end_rx.changed() => if changed.is_err() { return Err(BusError::Closed) },
                _ = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
            }
        }
    }
}
