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

use flotilla_wikimedia_core::{Mutation, Subscriptions};
use tokio_util::sync::CancellationToken;

use crate::persist::SubscriptionStore;

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
    compilers: Arc<tokio::sync::Semaphore>,
    pub counters: Counters,
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
            compilers: Arc::new(tokio::sync::Semaphore::new(COMPILERS)),
            counters: Counters::default(),
        }
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
    pub async fn mutate<R>(&self, change: impl FnOnce(&mut Subscriptions) -> (R, Vec<Mutation>)) -> R {
        let (result, compilation) = {
            let mut pending = self.pending.lock().await;
            let (result, mutations, compilation) = {
                let mut subscriptions = write(&self.subscriptions);
                let (result, mutations) = change(&mut subscriptions);
                (result, mutations, subscriptions.take_compilation())
            };
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
