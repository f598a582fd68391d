//! A member of a consumer group ([`RedisConsumer`]) and a reader that follows a stream
//! without consuming ([`RedisReader`]). See the module docs of [`super`] for names,
//! claims and what a lost connection costs.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::{Cmd, Value, cmd};
use tokio::task::JoinHandle;

use super::link::{Failed, Link};
use super::reply::{self, Entry};
use super::{Inner, scripts};
use crate::{BusError, Delivery, DeliveryId};

/// How much longer than its `BLOCK` a blocking read may take to answer before its
/// connection counts as dead.
const BLOCK_MARGIN: Duration = Duration::from_secs(10);

/// Entries a consumer holds (delivered, not acknowledged) and when each was last
/// refreshed in Redis.
type Held = Arc<Mutex<HashMap<Arc<str>, Instant>>>;

/// A member of a consumer group on a Redis stream.
pub struct RedisConsumer {
    pub(super) bus: Arc<Inner>,
    pub(super) queue: String,
    pub(super) key: String,
    pub(super) group: String,
    pub(super) slot: u32,
    /// `<node>-<slot>`: the name Redis knows this consumer by.
    pub(super) name: String,
    /// This consumer's own connection, for blocking reads.
    pub(super) reads: Link,
    /// Its own pending entries must be read again (`XREADGROUP … <cursor>`) before new
    /// ones: at the start (what it held before a restart) and after a read whose answer
    /// never arrived (an error, or a fetch dropped mid-way).
    pub(super) rescan: bool,
    /// Where the reading of its own pending entries has got to.
    pub(super) own_cursor: String,
    /// Where `XAUTOCLAIM` continues, and when it runs next.
    pub(super) claim_cursor: String,
    pub(super) next_claim: Instant,
    pub(super) held: Held,
    /// Keeps what this consumer holds from being claimed by others while it lives.
    pub(super) refresher: JoinHandle<()>,
}

/// An entry on its way to the caller, or one to acknowledge and drop (deleted while
/// pending, or not written by the bus).
struct Gathered {
    deliver: Vec<Entry>,
    discard: Vec<Arc<str>>,
}

impl Gathered {
    fn len(&self) -> usize {
        self.deliver.len()
    }

    fn take(&mut self, entries: Vec<Entry>, held: &Held) {
        let held = held.lock().unwrap_or_else(|p| p.into_inner());
        for entry in entries {
            if held.contains_key(&entry.id) {
                continue; // Already in the caller's hands.
            }
            if entry.payload.is_some() {
                self.deliver.push(entry);
            } else {
                self.discard.push(entry.id);
            }
        }
    }
}

impl RedisConsumer {
    pub(super) fn spawn_refresher(bus: &Arc<Inner>, key: &str, group: &str, name: &str, held: &Held) -> JoinHandle<()> {
        let every = (bus.options.lease_ttl / 3).max(Duration::from_millis(10));
        let (bus, key, group, name, held) =
            (bus.clone(), key.to_string(), group.to_string(), name.to_string(), held.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let now = Instant::now();
                let due: Vec<Arc<str>> = {
                    let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
                    held.iter_mut()
                        .filter(|(_, touched)| now.duration_since(**touched) >= every)
                        .map(|(id, touched)| {
                            *touched = now;
                            id.clone()
                        })
                        .collect()
                };
                if due.is_empty() {
                    continue;
                }
                let mut refresh = cmd("EVAL");
                refresh.arg(scripts::REFRESH).arg(1).arg(&key).arg(&group).arg(&name);
                for id in &due {
                    refresh.arg(&**id);
                }
                if let Err(error) = bus.link.query::<i64>("keeping held entries", &refresh).await {
                    tracing::warn!(%error, consumer = %name, queue = %key, held = due.len(),
                        "Could not tell Redis this consumer still works on its entries; another consumer may take them after the lease.");
                }
            }
        })
    }

    /// Waits for new entries at most this long per read, so claims and hand-backs are
    /// looked at in between.
    fn claim_interval(&self) -> Duration {
        (self.bus.options.lease_ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    fn context(&self, what: &str) -> String {
        format!("{what} queue '{}' in group '{}' as consumer '{}'", self.queue, self.group, self.name)
    }

    /// Collects up to `max` entries: its own pending ones (when a rescan is due), those
    /// of consumers of this process that went away, those of dead consumers (after the
    /// lease), then new ones, waiting for them until `deadline`.
    async fn gather(&mut self, max: usize, deadline: Instant, out: &mut Gathered) -> Result<(), Failed> {
        while self.rescan && out.len() < max {
            let want = max - out.len();
            let mut read = cmd("XREADGROUP");
            read.arg("GROUP").arg(&self.group).arg(&self.name).arg("COUNT").arg(want);
            read.arg("STREAMS").arg(&self.key).arg(&self.own_cursor);
            let value: Value = self.bus.link.query_once(&self.context("re-reading its own entries of"), &read).await?;
            let entries = reply::read_reply(value).map_err(|e| self.unexpected(e))?;
            if let Some(last) = entries.last() {
                self.own_cursor = last.id.to_string();
            }
            if entries.len() < want {
                self.rescan = false;
                self.own_cursor = "0".to_string();
            }
            out.take(entries, &self.held);
        }

        while out.len() < max {
            let Some(slot) = self.bus.take_departed(&self.queue, &self.group) else { break };
            let mut returned = SlotGuard { bus: &self.bus, queue: &self.queue, group: &self.group, slot, done: false };
            let departed = self.bus.consumer_name(slot);
            let want = max - out.len();
            let mut pending = cmd("XPENDING");
            pending.arg(&self.key).arg(&self.group).arg("-").arg("+").arg(want).arg(&departed);
            let value: Value = self.bus.link.query_once(&self.context("handing back entries of"), &pending).await?;
            let ids = reply::pending_ids(value).map_err(|e| self.unexpected(e))?;
            if !ids.is_empty() {
                let mut claim = cmd("XCLAIM");
                claim.arg(&self.key).arg(&self.group).arg(&self.name).arg(0).arg(&ids);
                // What this claims is this consumer's from now on: if the answer is lost
                // (or the fetch dropped), the rescan finds it.
                self.rescan = true;
                let value: Value = self.bus.link.query_once(&self.context("taking over entries of"), &claim).await?;
                self.rescan = false;
                out.take(reply::entries(value).map_err(|e| self.unexpected(e))?, &self.held);
            }
            returned.done = true;
            if ids.len() == want {
                self.bus.depart(&self.queue, &self.group, slot); // It may hold more.
            } else {
                self.bus.release(&self.queue, &self.group, slot);
            }
        }

        if out.len() < max && Instant::now() >= self.next_claim {
            let lease_ms = self.bus.options.lease_ttl.as_millis() as u64;
            let mut claim = cmd("XAUTOCLAIM");
            claim.arg(&self.key).arg(&self.group).arg(&self.name).arg(lease_ms).arg(&self.claim_cursor);
            claim.arg("COUNT").arg(max - out.len());
            self.rescan = true; // As for XCLAIM above.
            let value: Value =
                self.bus.link.query_once(&self.context("claiming entries of dead consumers of"), &claim).await?;
            let (cursor, entries) = reply::autoclaim_reply(value).map_err(|e| self.unexpected(e))?;
            self.rescan = false;
            if !entries.is_empty() {
                tracing::info!(queue = %self.queue, group = %self.group, consumer = %self.name, claimed = entries.len(),
                    "Took over entries a consumer held past the lease without acknowledging them.");
            }
            out.take(entries, &self.held);
            if cursor == "0-0" {
                self.next_claim = Instant::now() + self.claim_interval();
            }
            self.claim_cursor = cursor;
        }

        if out.len() < max {
            let mut read = cmd("XREADGROUP");
            read.arg("GROUP").arg(&self.group).arg(&self.name).arg("COUNT").arg(max - out.len());
            let now = Instant::now();
            let block =
                if out.len() == 0 && deadline > now { Some((deadline - now).min(self.claim_interval())) } else { None };
            if let Some(block) = block {
                read.arg("BLOCK").arg(block.as_millis().max(1) as u64);
            }
            read.arg("STREAMS").arg(&self.key).arg(">");
            // Marks the read in flight: if its answer never arrives, what it took is in
            // this consumer's pending list, and the next fetch reads that first.
            self.rescan = true;
            let value = self.blocking(&read, block).await?;
            let entries = reply::read_reply(value).map_err(|e| self.unexpected(e))?;
            self.rescan = false;
            out.take(entries, &self.held);
        }
        Ok(())
    }

    /// A read on this consumer's own connection, bounded by its `BLOCK` plus a margin.
    async fn blocking(&self, read: &Cmd, block: Option<Duration>) -> Result<Value, Failed> {
        let what = self.context("reading");
        let limit = block.unwrap_or_default() + BLOCK_MARGIN;
        match tokio::time::timeout(limit, self.reads.query_once::<Value>(&what, read)).await {
            Ok(result) => result,
            Err(elapsed) => {
                self.reads.forget_current().await;
                Err(Failed::Lost(BusError::backend(format!("{what}: no answer from Redis within {limit:?}"), elapsed)))
            }
        }
    }

    fn unexpected(&self, error: reply::UnexpectedReply) -> Failed {
        Failed::Refused(BusError::backend(self.context("reading"), error))
    }

    /// Hands entries to the caller: they are held (and kept from other consumers) until
    /// acknowledged.
    fn deliver(&mut self, entries: Vec<Entry>) -> Vec<Delivery> {
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let deliveries: Vec<Delivery> = entries
            .into_iter()
            .filter_map(|entry| {
                let payload = entry.payload?;
                held.insert(entry.id.clone(), now);
                Some(Delivery {
                    timestamp_ms: reply::timestamp_ms(&entry.id),
                    seq: 0, // Redis numbers no entries (see the module docs).
                    id: DeliveryId::Text(entry.id),
                    payload,
                })
            })
            .collect();
        self.bus.counters.delivered.fetch_add(deliveries.len() as u64, Ordering::Relaxed);
        deliveries
    }

    /// Acknowledges entries that cannot be delivered (deleted while pending, or without
    /// a payload), so they leave the group's pending list.
    async fn discard(&self, ids: Vec<Arc<str>>) {
        if ids.is_empty() {
            return;
        }
        self.bus.counters.corrupt_records_skipped.fetch_add(ids.len() as u64, Ordering::Relaxed);
        tracing::error!(queue = %self.queue, group = %self.group, entries = ids.len(),
            "Entries of the queue were deleted while pending, or hold no payload; they cannot be delivered.");
        let mut ack = cmd("XACK");
        ack.arg(&self.key).arg(&self.group);
        for id in &ids {
            ack.arg(&**id);
        }
        let _ = self.bus.link.query::<i64>(&self.context("dropping undeliverable entries of"), &ack).await;
    }
}

#[async_trait::async_trait]
impl crate::Consumer for RedisConsumer {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let max = max.max(1);
        let deadline = Instant::now() + wait;
        let mut reconnected = false;
        loop {
            self.bus.check_open()?;
            let mut out = Gathered { deliver: Vec::new(), discard: Vec::new() };
            let result = self.gather(max, deadline, &mut out).await;
            let discard = std::mem::take(&mut out.discard);
            self.discard(discard).await;
            if let Err(failed) = result {
                // Whatever a failed step took is in this consumer's pending list: read
                // it all again (what the caller holds is skipped).
                self.rescan = true;
                self.own_cursor = "0".to_string();
                match failed {
                    // What was gathered is delivered; the error shows again next time.
                    _ if !out.deliver.is_empty() => {}
                    // A connection Redis dropped (a restart): once more, on a new one.
                    Failed::Lost(_) if !reconnected => {
                        reconnected = true;
                        continue;
                    }
                    failed => return Err(failed.into_error()),
                }
            }
            if !out.deliver.is_empty() || Instant::now() >= deadline {
                return Ok(self.deliver(out.deliver));
            }
        }
    }

    async fn ack(&mut self, ids: &[DeliveryId]) -> Result<(), BusError> {
        let texts: Vec<&str> = ids
            .iter()
            .filter_map(|id| match id {
                DeliveryId::Text(text) => Some(&**text),
                DeliveryId::Seq(_) => None,
            })
            .collect();
        if texts.is_empty() {
            return Ok(());
        }
        let mut ack = cmd("XACK");
        ack.arg(&self.key).arg(&self.group).arg(&texts);
        let acked: u64 = self.bus.link.query(&self.context("acknowledging entries of"), &ack).await?;
        self.bus.counters.acked.fetch_add(acked, Ordering::Relaxed);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for id in texts {
            held.remove(id);
        }
        Ok(())
    }
}

impl Drop for RedisConsumer {
    fn drop(&mut self) {
        self.refresher.abort();
        // What it held goes to the next consumer of the group in this process that
        // fetches (or subscribes), at once; to any other after the lease.
        self.bus.depart(&self.queue, &self.group, self.slot);
    }
}

/// Puts a departed consumer's slot back for another try if handing back its entries
/// did not finish (an error, or the fetch was dropped).
struct SlotGuard<'a> {
    bus: &'a Inner,
    queue: &'a str,
    group: &'a str,
    slot: u32,
    done: bool,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.bus.depart(self.queue, self.group, self.slot);
        }
    }
}

/// Follows a stream without consuming it (`XREAD`).
pub struct RedisReader {
    pub(super) bus: Arc<Inner>,
    pub(super) queue: String,
    pub(super) key: String,
    /// The id of the last entry read (`0` from the start).
    pub(super) cursor: String,
    pub(super) reads: Link,
}

#[async_trait::async_trait]
impl crate::Reader for RedisReader {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let what = format!("following queue '{}'", self.queue);
        let mut reconnected = false;
        loop {
            self.bus.check_open()?;
            let mut read = cmd("XREAD");
            read.arg("COUNT").arg(max.max(1));
            if !wait.is_zero() {
                read.arg("BLOCK").arg(wait.as_millis().max(1) as u64);
            }
            read.arg("STREAMS").arg(&self.key).arg(&self.cursor);
            let result =
                match tokio::time::timeout(wait + BLOCK_MARGIN, self.reads.query_once::<Value>(&what, &read)).await {
                    Ok(result) => result,
                    Err(elapsed) => {
                        self.reads.forget_current().await;
                        Err(Failed::Lost(BusError::backend(format!("{what}: no answer from Redis in time"), elapsed)))
                    }
                };
            let value = match result {
                Ok(value) => value,
                Err(Failed::Lost(_)) if !reconnected => {
                    reconnected = true;
                    continue;
                }
                Err(failed) => return Err(failed.into_error()),
            };
            let entries = reply::read_reply(value).map_err(|e| BusError::backend(what.clone(), e))?;
            if let Some(last) = entries.last() {
                self.cursor = last.id.to_string();
            }
            let deliveries: Vec<Delivery> = entries
                .into_iter()
                .filter_map(|entry| {
                    Some(Delivery {
                        timestamp_ms: reply::timestamp_ms(&entry.id),
                        seq: 0,
                        payload: entry.payload?,
                        id: DeliveryId::Text(entry.id),
                    })
                })
                .collect();
            return Ok(deliveries);
        }
    }
}
