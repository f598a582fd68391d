//! The state every part of the dispatcher shares: the subscriptions with their matching
//! index, and the ordered write-behind of their changes to the store.
//!
//! Reads (matching a change, `list`, `info`) take a read lock and never wait for the
//! database. Changes go through [`Shared::mutate`]: one change at a time (an async mutex
//! orders them), applied in memory under the write lock, which is released before the
//! records are written, so matching never waits for a disk. Records are written in the
//! order they were made; if the store refuses, they are kept and written before the next
//! ones (and retried in the background), so the copy in the store is late at worst,
//! never out of order.
//!
//! Deleting a subscription also records its purge on the delivery queue
//! ([`DeliveryEntry::encode_purge`]) before the change is done: the fan-out then
//! deletes its `sub.<name>` queue and the Redis worker its list, each in order with
//! the deliveries around it, so whoever takes the name next starts empty (and
//! deliveries still waiting for the old owner are dropped: their incarnation is gone).
//! Nor does anything wait for a regex compiler, which can take seconds for a document
//! of large patterns: documents are parsed (their patterns compiled) before the lock is
//! taken, and the index's regex sets and automata are compiled after it is released
//! ([`Subscriptions::defer_compiling`]; until they are put in, the chunks concerned
//! match pattern by pattern), both on blocking threads ([`Shared::compile`]), at most
//! [`COMPILERS`] at a time, so neither the lock nor the async workers that serve
//! `/healthz`, the control port and matching are held up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use flotilla_bus::{Bus, BusError};
use flotilla_core::Backoff;
use flotilla_wikimedia_core::{Mutation, Subscriptions};
use tokio_util::sync::CancellationToken;

use crate::matcher::{DELIVERY_QUEUE, DeliveryEntry};
use crate::persist::SubscriptionStore;
use crate::redis_delivery::Parking;

/// Counters for status and benchmarks.
#[derive(Debug, Default)]
pub struct Counters {
    /// Changes the matcher has looked at.
    pub changes: AtomicU64,
    /// Bus messages the matcher skipped (not a recent change).
    pub skipped: AtomicU64,
    /// Deliveries made (one per subscription per matching change).
    pub deliveries: AtomicU64,
    /// Deliveries copied into their `sub.<name>` queues.
    pub queued: AtomicU64,
    /// List elements Redis confirmed.
    pub redis_pushed: AtomicU64,
    /// Failed attempts to push to Redis.
    pub redis_failures: AtomicU64,
    /// Deliveries dropped because their subscription was deleted after they were
    /// matched.
    pub stale_dropped: AtomicU64,
    /// Subscription records the store has not taken yet.
    pub unsaved_records: AtomicU64,
}

impl Counters {
    /// The counters as JSON.
    pub fn snapshot(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "changes": get(&self.changes),
            "skipped": get(&self.skipped),
            "deliveries": get(&self.deliveries),
            "queued": get(&self.queued),
            "redis_pushed": get(&self.redis_pushed),
            "redis_failures": get(&self.redis_failures),
            "stale_dropped": get(&self.stale_dropped),
            "unsaved_records": get(&self.unsaved_records),
        })
    }
}

/// Compilations (documents' patterns, the index's regex sets) that run at once; more
/// wait their turn, so a flood of large documents costs at most this many compilers'
/// memory and cores.
pub const COMPILERS: usize = 2;

/// The shared state.
pub struct Shared {
    /// Shared with the compilations that put their results in (which finish even when
    /// the request that started them is gone).
    subscriptions: Arc<RwLock<Subscriptions>>,
    /// Records not yet in the store, oldest first; the lock also orders changes.
    pending: tokio::sync::Mutex<Vec<Mutation>>,
    store: Option<SubscriptionStore>,
    /// Where purges of deleted subscriptions are recorded (`None`: nowhere, for
    /// benchmarks that delete nothing).
    bus: Option<Arc<dyn Bus>>,
    compilers: Arc<tokio::sync::Semaphore>,
    pub counters: Counters,
    /// Redis keys that refuse their pushes, parked by the Redis worker.
    pub parking: Parking,
}

impl Shared {
    /// Counters and sizes, as `GET /api/v1/dispatcher` and `/api/v1/status` show them.
    pub fn status(&self) -> serde_json::Value {
        let subscriptions = self.read();
        let info = flotilla_wikimedia_core::SubscriptionBackend::info(&*subscriptions);
        let pattern_memory = subscriptions.index().pattern_memory();
        drop(subscriptions);
        let mut value = self.counters.snapshot();
        value["subscriptions"] = serde_json::json!(info.subscriptions);
        value["pattern_memory"] = serde_json::json!(pattern_memory);
        value["watched_wikis"] = serde_json::json!(info.wikis);
        value["control_connections"] = serde_json::json!(info.connections);
        let parked = self.parking.keys();
        value["redis_parked"] = serde_json::json!(parked.len());
        value["redis_parked_keys"] = serde_json::json!(parked);
        value
    }

    /// State around `subscriptions` (loaded: from now on its changes leave their
    /// compiling to [`Shared::mutate`]); `store` receives the records (`None`: memory
    /// only, for tests and benchmarks).
    pub fn new(mut subscriptions: Subscriptions, store: Option<SubscriptionStore>) -> Shared {
        subscriptions.defer_compiling();
        Shared {
            subscriptions: Arc::new(RwLock::new(subscriptions)),
            pending: tokio::sync::Mutex::new(Vec::new()),
            store,
            bus: None,
            compilers: Arc::new(tokio::sync::Semaphore::new(COMPILERS)),
            counters: Counters::default(),
            parking: Parking::default(),
        }
    }

    /// Records the purges of deleted subscriptions on `bus`'s delivery queue.
    #[must_use]
    pub fn with_bus(mut self, bus: Arc<dyn Bus>) -> Shared {
        self.bus = Some(bus);
        self
    }

    /// The subscriptions, for reading.
    pub fn read(&self) -> RwLockReadGuard<'_, Subscriptions> {
        self.subscriptions.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `work` (compiling patterns) on a blocking thread, at most [`COMPILERS`] at
    /// a time, and returns its result. Hold no lock while awaiting it. The work is
    /// done even if the caller stops waiting (a client that hangs up).
    pub async fn compile<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let compilers = Arc::clone(&self.compilers);
        let task = tokio::spawn(async move {
            // The semaphore is never closed, so the permit always comes.
            let _turn = compilers.acquire_owned().await;
            tokio::task::spawn_blocking(work).await
        });
        match task.await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) | Err(error) => match error.try_into_panic() {
                // The work panicked (a bug): the caller's task fails as if it ran it.
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled: only when the runtime shuts down, taking the caller along.
                Err(_) => std::future::pending().await,
            },
        }
    }

    /// Changes the subscriptions with `change`, which returns its result and the
    /// records to persist; returns once the records are written (or kept for a retry,
    /// if the store refused: see the module docs) and the index's regex sets and
    /// automata that the change left to compile are compiled, off the lock, and in.
    /// `change` runs under the write lock: it must be quick (parse documents before).
    ///
    /// A deletion's purge is on the delivery queue before this returns, and before any
    /// later change (a subscription taking the name again) is made: see the module docs.
    pub async fn mutate<R>(&self, change: impl FnOnce(&mut Subscriptions) -> (R, Vec<Mutation>)) -> R {
        let (result, compilation) = {
            let mut pending = self.pending.lock().await;
            let (result, mutations, compilation) = {
                let mut subscriptions = write(&self.subscriptions);
                let (result, mutations) = change(&mut subscriptions);
                (result, mutations, subscriptions.take_compilation())
            };
            let deleted: Vec<&str> = mutations
                .iter()
                .filter_map(|m| match m {
                    Mutation::Deleted { name } => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            if !deleted.is_empty() {
                self.record_purges(&deleted).await;
            }
            pending.extend(mutations);
            self.flush(&mut pending).await;
            (result, compilation)
        };
        // Other changes go on meanwhile; one that touches the same chunks makes this
        // result stale, and `install` then leaves it out for that change's own.
        if !compilation.is_empty() {
            let subscriptions = Arc::clone(&self.subscriptions);
            self.compile(move || {
                let compiled = compilation.run();
                write(&subscriptions).install(compiled);
            })
            .await;
        }
        result
    }

    /// Puts the purges of `deleted` on the delivery queue, retrying while the bus
    /// refuses (a full disk). Changes wait meanwhile: no subscription may take one of
    /// the names before its purge is recorded, or the purge would delete its queue.
    async fn record_purges(&self, deleted: &[&str]) {
        let Some(bus) = &self.bus else { return };
        let entries: Vec<bytes::Bytes> = deleted.iter().map(|name| DeliveryEntry::encode_purge(name)).collect();
        let mut retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            match bus.publish(DELIVERY_QUEUE, entries.clone()).await {
                Ok(_) => return,
                Err(BusError::Closed) => {
                    tracing::error!(subscriptions = ?deleted,
                        "The bus closed before the purge of deleted subscriptions was recorded: delete their sub.<name> queues and Redis lists by hand before the names are used again.");
                    return;
                }
                Err(error) => {
                    let delay = retry.next_delay();
                    tracing::error!(%error, subscriptions = ?deleted, ?delay,
                        "Cannot record the purge of deleted subscriptions on the bus; subscription changes wait until it can.");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Writes what is pending; keeps it if the store refuses.
    async fn flush(&self, pending: &mut Vec<Mutation>) {
        if pending.is_empty() {
            return;
        }
        let Some(store) = &self.store else {
            pending.clear();
            return;
        };
        match store.apply(pending).await {
            Ok(()) => pending.clear(),
            Err(error) => tracing::error!(error = %error.chain(), records = pending.len(),
                "Could not save subscription changes; they are applied in memory and will be saved when the store works again."),
        }
        self.counters.unsaved_records.store(pending.len() as u64, Ordering::Relaxed);
    }

    /// Retries unsaved records every few seconds until `shutdown`, then once more.
    pub async fn keep_saving(&self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.cancelled() => {
                    let mut pending = self.pending.lock().await;
                    self.flush(&mut pending).await;
                    return;
                }
            }
            let mut pending = self.pending.lock().await;
            self.flush(&mut pending).await;
        }
    }
}

fn write(subscriptions: &RwLock<Subscriptions>) -> std::sync::RwLockWriteGuard<'_, Subscriptions> {
    subscriptions.write().unwrap_or_else(|p| p.into_inner())
}
