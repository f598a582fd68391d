//! Delivery into Redis (SPEC §6.1): consumes the delivery queue `dispatch.redis`
//! (group `redis`) in batches and pushes each payload with `LPUSH <key>`, so consumers
//! read oldest first with `BRPOP`/`RPOP`. The key is the subscription's name (the
//! original dispatcher's interface), after `redis.key_prefix` when one is set.
//!
//! A batch goes out as one pipelined `MULTI`/`EXEC` (runs of entries for the same list
//! become one `LPUSH` with several values, which keeps their order), and is
//! acknowledged on the bus only after Redis has answered. While Redis is down or
//! refusing, the batch is retried with growing pauses (100 ms doubling to 30 s, with
//! jitter: the retry of the bus stage, [`flotilla_bus::stage`], this worker runs as)
//! and everything behind it waits on the bus, in order; when Redis is back, it all goes
//! out in the order it was matched. Nothing is lost: an entry leaves the bus
//! only once Redis has it. If the connection breaks after Redis ran a batch but before
//! its answer arrived, the batch is pushed again (at-least-once); `MULTI`/`EXEC` makes
//! that all or nothing, so there is never half a batch.
//!
//! # One key cannot hold up the others
//!
//! Redis runs every command of an `EXEC` even when one of them fails, and undoes
//! nothing, so each reply is read on its own: a push Redis took is never pushed again,
//! and only those it did not take are retried. A push refused because of its key —
//! `WRONGTYPE` (another application's key of another type has the name) or `NOPERM`
//! (an ACL denies the key) — **parks** the key: that push, and the key's later ones
//! while it stays parked, go in order to bus queue `dispatch.parked.<name>` (durable,
//! so they survive restarts), and the batch is acknowledged. The parked-key task
//! ([`Parking`]) retries each parked key with the workspace's [`Backoff`] (1 s
//! doubling to 60 s): it pushes the oldest waiting deliveries, and once none are left
//! the key is unparked and its deliveries go straight to Redis again. A gate keeps
//! that task and this worker from interleaving, so a key's deliveries reach Redis in
//! the order they were matched. Parked keys are in the dispatcher's status
//! (`redis_parked`, `redis_parked_keys`: `/api/v1/status`, `flotilla status`,
//! `/metrics`) and logged when parked and when drained. Errors about Redis itself
//! (unreachable, out of memory, read-only) are reported before `EXEC` runs anything,
//! and keep the batch waiting as above.
//!
//! # Purges
//!
//! A deleted subscription's purge entry deletes its list — with `DEL`, and only if the
//! key holds a list: a key of another type is not the dispatcher's — and its parking
//! queue, in order with the pushes around it. Deliveries matched for a subscription
//! deleted since are dropped, so whoever takes the name next starts with an empty list.
//!
//! The connection has its own generous response timeout (redis-rs's default of 500 ms
//! would fail large batches on a busy server).
//!
//! `rediss://` is TLS ([`flotilla_bus::redis_client`]), trusting the system's roots or
//! `redis.tls_ca`. [`Redis::open`] connects once when the dispatcher starts: a server
//! whose certificate the CA did not sign refuses the start (waiting cannot fix it),
//! while a Redis that is down does not (deliveries wait on the bus as above).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use flotilla_bus::redis_client::RedisSetupError;
use flotilla_bus::stage::{Outputs, Stage, Work};
use flotilla_bus::{Bus, BusError, Delivery, DeliveryId};
use flotilla_core::Backoff;
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::matcher::{DELIVERY_QUEUE, DeliveryEntry};
use crate::state::Shared;

/// The consumer group of the Redis delivery worker (also on the parking queues).
pub const GROUP: &str = "redis";
/// A parked key's deliveries wait in bus queue `dispatch.parked.<subscription name>`.
pub const PARKED_PREFIX: &str = "dispatch.parked.";
/// Most entries pushed as one pipeline.
const BATCH: usize = 4096;
const MIN_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// Pauses between retries of a parked key.
const PARKED_MIN_PAUSE: Duration = Duration::from_secs(1);
const PARKED_MAX_PAUSE: Duration = Duration::from_secs(60);
/// Longest `redis.key_prefix`.
const MAX_KEY_PREFIX: usize = 128;

/// The bus queue a parked subscription's deliveries wait in.
pub fn parked_queue(name: &str) -> String {
    format!("{PARKED_PREFIX}{name}")
}

/// Checks `redis.url` and `redis.tls_ca` without connecting.
///
/// # Errors
/// What is wrong with them ([`RedisSetupError::is_about_ca`] says which).
pub fn check_url(url: &str, ca: Option<&Path>) -> Result<(), RedisSetupError> {
    flotilla_bus::redis_client::client(url, ca).map(drop)
}

/// Where deliveries go: the client, and the connection made at start if Redis was up.
pub struct Redis {
    client: redis::Client,
    connection: Option<MultiplexedConnection>,
}

impl Redis {
    /// The client for `url` (trusting `ca` for `rediss://`), and one connection.
    ///
    /// # Errors
    /// The URL or CA file is wrong, or the server's certificate is not trusted; a
    /// Redis that cannot be reached is not an error (it is logged and retried).
    pub async fn open(url: &str, ca: Option<&Path>) -> anyhow::Result<Redis> {
        let client = flotilla_bus::redis_client::client(url, ca)?;
        let mut connection = None;
        if let Err(error) = connected(&client, &mut connection).await {
            if let Some(problem) = flotilla_bus::redis_client::certificate_problem(&error) {
                anyhow::bail!(
                    "Redis at {}: a TLS certificate problem: the server's certificate is not trusted ({problem}); \
                     redis.tls_ca must name the CA that signed it, and the URL's host must be in it",
                    crate::redact(url)
                );
            }
            tracing::warn!(redis = %crate::redact(url), %error,
                "Cannot reach Redis now; deliveries wait on the bus until it answers.");
        }
        Ok(Redis { client, connection })
    }
}

/// Checks a `redis.key_prefix`.
///
/// # Errors
/// What is wrong with it, in a sentence.
pub fn check_key_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > MAX_KEY_PREFIX {
        return Err(format!("at most {MAX_KEY_PREFIX} bytes"));
    }
    if prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("no spaces or control characters".to_string());
    }
    Ok(())
}

/// The Redis key of each subscription: the key prefix (none by default), then the name.
#[derive(Debug, Clone)]
struct Keys(Arc<str>);

impl Keys {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.0)
    }
}

/// Redis keys that refuse their pushes (see the module docs), shared by the worker,
/// the parked-key task and the dispatcher's status.
#[derive(Default)]
pub struct Parking {
    /// Held by the worker for a batch and by the parked-key task for a retry.
    gate: tokio::sync::Mutex<()>,
    /// By subscription name.
    keys: std::sync::Mutex<BTreeMap<String, Parked>>,
    /// Wakes the parked-key task when a key is parked.
    wake: tokio::sync::Notify,
}

struct Parked {
    key: String,
    retry: Backoff,
    due: Instant,
}

impl Parking {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Parked>> {
        self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The parked Redis keys, in order.
    pub fn keys(&self) -> Vec<String> {
        self.lock().values().map(|parked| parked.key.clone()).collect()
    }

    fn names(&self) -> BTreeSet<String> {
        self.lock().keys().cloned().collect()
    }

    fn is_parked(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// Parks `name` (if it is not already) and has the parked-key task try it later.
    fn park(&self, name: &str, key: String) {
        let mut keys = self.lock();
        if !keys.contains_key(name) {
            let mut retry = Backoff::new(PARKED_MIN_PAUSE, PARKED_MAX_PAUSE);
            let due = Instant::now() + retry.next_delay();
            keys.insert(name.to_string(), Parked { key, retry, due });
            self.wake.notify_one();
        }
    }

    fn unpark(&self, name: &str) {
        self.lock().remove(name);
    }

    /// A retry of `name` failed: the next one after a longer pause.
    fn failed(&self, name: &str) -> Option<Duration> {
        let mut keys = self.lock();
        let parked = keys.get_mut(name)?;
        let delay = parked.retry.next_delay();
        parked.due = Instant::now() + delay;
        Some(delay)
    }

    /// A retry of `name` pushed something: the next failure starts the pauses over.
    fn succeeded(&self, name: &str) {
        if let Some(parked) = self.lock().get_mut(name) {
            parked.retry.reset();
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.lock().values().map(|parked| parked.due).min()
    }

    fn due_now(&self) -> Vec<String> {
        let now = Instant::now();
        self.lock().iter().filter(|(_, parked)| parked.due <= now).map(|(name, _)| name.clone()).collect()
    }
}

/// Why pushing a batch (or a parked key's deliveries) failed; it is tried again.
#[derive(Debug)]
enum DeliveryError {
    /// Redis could not be reached or answered with nonsense.
    Redis(redis::RedisError),
    /// Redis refused a command for a reason that is not about its key.
    Refused(String),
    /// The bus refused a parking-queue append or a deletion.
    Bus(BusError),
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Redis(error) => write!(f, "{error}"),
            DeliveryError::Refused(error) => write!(f, "Redis refused: {error}"),
            DeliveryError::Bus(error) => write!(f, "the bus: {error}"),
        }
    }
}

impl From<redis::RedisError> for DeliveryError {
    fn from(error: redis::RedisError) -> DeliveryError {
        DeliveryError::Redis(error)
    }
}

impl From<BusError> for DeliveryError {
    fn from(error: BusError) -> DeliveryError {
        DeliveryError::Bus(error)
    }
}

/// Whether Redis refused a push because of its key: the key is parked.
fn refuses_key(error: &redis::ServerError) -> bool {
    matches!(error.code(), "WRONGTYPE" | "NOPERM")
}

/// The open connection, opened (again) if there is none.
async fn connected<'c>(
    client: &redis::Client,
    connection: &'c mut Option<MultiplexedConnection>,
) -> redis::RedisResult<&'c mut MultiplexedConnection> {
    if connection.is_none() {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(30)));
        *connection = Some(client.get_multiplexed_async_connection_with_config(&config).await?);
    }
    Ok(connection.as_mut().expect("opened above"))
}

/// The payload of a delivery entry, without copying it when it needs no unescaping.
fn payload_bytes(delivery: &Delivery, payload: Cow<'_, str>) -> Bytes {
    match payload {
        Cow::Borrowed(text) => delivery.payload.slice_ref(text.as_bytes()),
        Cow::Owned(text) => Bytes::from(text),
    }
}

/// Runs the delivery worker, and the parked-key task beside it, until `shutdown`.
///
/// The worker is a bus stage ([`flotilla_bus::stage`]), one batch at a time,
/// publishing nothing: its work is the push, and the stage retries a failed push on
/// the same batch with the workspace's one backoff (100 ms doubling to 30 s, with
/// jitter) until Redis takes it or the worker is told to stop (then the batch stays
/// on the bus). Keys parked before the last stop (their parking queues are on the
/// bus) are parked again first.
pub async fn run(
    bus: Arc<dyn Bus>,
    redis: Redis,
    key_prefix: String,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let Redis { client, connection } = redis;
    let keys = Keys(Arc::from(key_prefix));
    match bus.stats().await {
        Ok(queues) => {
            for name in queues.iter().filter_map(|q| q.queue.strip_prefix(PARKED_PREFIX)) {
                shared.parking.park(name, keys.key(name));
                tracing::warn!(key = %keys.key(name), "A Redis key parked before the last stop is still parked; retrying it.");
            }
        }
        Err(error) => tracing::error!(%error, "Cannot list the bus's queues to find parked Redis keys."),
    }
    let retrying =
        tokio::spawn(retry_parked(bus.clone(), client.clone(), keys.clone(), shared.clone(), shutdown.clone()));
    let stage = Stage::new("Redis delivery", DELIVERY_QUEUE, GROUP, BATCH).retry(MIN_PAUSE, MAX_PAUSE);
    let prepare = {
        let shared = shared.clone();
        move |batch: &[Delivery]| prepare(batch, &shared)
    };
    let mut worker = Worker { client, connection, bus: bus.clone(), keys, shared, down_since: None };
    // Not drained at shutdown: Redis may be the reason deliveries wait, and they wait
    // durably on the bus for the next start.
    let _closed = stage.run(bus, prepare, &mut worker, &shutdown).await;
    if let Err(error) = retrying.await {
        tracing::error!(%error, "The parked Redis key task failed.");
    }
}

/// A batch, prepared: its runs of consecutive entries for one subscription, in order.
struct Batch {
    runs: Vec<Run>,
    /// List elements Redis has taken so far (a retry keeps counting).
    pushed: u64,
}

struct Run {
    name: String,
    action: Action,
    /// Done: pushed, parked or purged; a retry of the batch skips it.
    done: bool,
}

enum Action {
    /// `LPUSH` the payloads (oldest first); `entries` are the delivery-queue entries
    /// they came from, for the parking queue.
    Push { payloads: Vec<Bytes>, entries: Vec<Bytes> },
    /// The subscription was deleted: its list and parking queue go.
    Purge,
}

/// Where a run goes in this attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Redis,
    Park,
}

/// Decodes a batch into runs. Deliveries for a subscription deleted since they were
/// matched are left out (the fan-out counts them); entries that cannot be read (not
/// written by this version) are logged and left out.
fn prepare(batch: &[Delivery], shared: &Shared) -> Batch {
    let subscriptions = shared.read();
    let mut runs: Vec<Run> = Vec::new();
    for delivery in batch {
        let entry: DeliveryEntry<'_> = match serde_json::from_slice(&delivery.payload) {
            Ok(entry) => entry,
            Err(error) => {
                tracing::warn!(seq = delivery.seq, %error, "Skipped an entry of the delivery queue that is not a delivery.");
                continue;
            }
        };
        if entry.purge {
            runs.push(Run { name: entry.subscription.into_owned(), action: Action::Purge, done: false });
            continue;
        }
        if !entry.is_current(&subscriptions) {
            continue;
        }
        let DeliveryEntry { subscription, payload, .. } = entry;
        let payload = payload_bytes(delivery, payload);
        match runs.last_mut() {
            Some(Run { name, action: Action::Push { payloads, entries }, .. }) if *name == *subscription => {
                payloads.push(payload);
                entries.push(delivery.payload.clone());
            }
            _ => runs.push(Run {
                name: subscription.into_owned(),
                action: Action::Push { payloads: vec![payload], entries: vec![delivery.payload.clone()] },
                done: false,
            }),
        }
    }
    Batch { runs, pushed: 0 }
}

struct Worker {
    client: redis::Client,
    connection: Option<MultiplexedConnection>,
    bus: Arc<dyn Bus>,
    keys: Keys,
    shared: Arc<Shared>,
    /// When the current outage began, if Redis is failing.
    down_since: Option<std::time::Instant>,
}

impl Work for Worker {
    type Prepared = Batch;
    type Done = u64;
    type Error = DeliveryError;

    async fn process(&mut self, _: &[Delivery], batch: &mut Batch, _: &mut Outputs) -> Result<u64, DeliveryError> {
        let shared = self.shared.clone();
        let gate = shared.parking.gate.lock().await;
        let result = self.deliver(batch).await;
        drop(gate);
        match &result {
            Ok(_) => {
                if let Some(since) = self.down_since.take() {
                    tracing::info!(down_for = ?since.elapsed(), "Redis is reachable again; delivering what waited.");
                }
            }
            Err(error) => {
                self.shared.counters.redis_failures.fetch_add(1, Ordering::Relaxed);
                if matches!(error, DeliveryError::Redis(_)) {
                    self.connection = None;
                }
                if self.down_since.is_none() {
                    self.down_since = Some(std::time::Instant::now());
                    let certificate = match &error {
                        DeliveryError::Redis(e) => flotilla_bus::redis_client::certificate_problem(e).is_some(),
                        _ => false,
                    };
                    if certificate {
                        tracing::error!(%error, "Redis's TLS certificate is not trusted (check redis.tls_ca); deliveries wait on the bus.");
                    } else {
                        tracing::warn!(%error, "Cannot deliver to Redis; deliveries wait on the bus and go out in order when it is back.");
                    }
                }
            }
        }
        result
    }

    fn acknowledged(&mut self, pushed: u64) {
        self.shared.counters.redis_pushed.fetch_add(pushed, Ordering::Relaxed);
    }
}

impl Worker {
    /// Does what is left of a batch: pushes, parks and purges, in order. Returns the
    /// elements pushed, or the first error (what was done stays done).
    async fn deliver(&mut self, batch: &mut Batch) -> Result<u64, DeliveryError> {
        let shared = self.shared.clone();
        let parking = &shared.parking;
        // Routes, with the parked keys as they will be after each purge.
        let mut parked = parking.names();
        let mut routes: Vec<(usize, Route)> = Vec::new();
        for (index, run) in batch.runs.iter().enumerate().filter(|(_, run)| !run.done) {
            let route = match run.action {
                Action::Purge => {
                    parked.remove(&run.name);
                    Route::Redis
                }
                Action::Push { .. } if parked.contains(&run.name) => Route::Park,
                Action::Push { .. } => Route::Redis,
            };
            routes.push((index, route));
        }
        let replies = self.exec(batch, &routes).await?;
        let mut refused = None;
        for ((index, route), reply) in routes.into_iter().zip(replies) {
            let run = &mut batch.runs[index];
            let key_error = match &reply {
                Some(redis::Value::ServerError(error)) if refuses_key(error) => Some(error.to_string()),
                Some(redis::Value::ServerError(error)) => {
                    refused.get_or_insert_with(|| error.to_string());
                    continue;
                }
                _ => None,
            };
            match (&run.action, route) {
                (Action::Purge, _) => {
                    self.bus.delete_queue(&parked_queue(&run.name)).await?;
                    parking.unpark(&run.name);
                    tracing::info!(key = %self.keys.key(&run.name), "Purged the Redis list of a deleted subscription.");
                }
                (Action::Push { entries, .. }, Route::Park) => {
                    self.bus.publish(&parked_queue(&run.name), entries.clone()).await?;
                }
                (Action::Push { entries, .. }, Route::Redis) if key_error.is_some() => {
                    let key = self.keys.key(&run.name);
                    if !parking.is_parked(&run.name) {
                        tracing::warn!(%key, error = key_error.as_deref().unwrap_or_default(), queue = %parked_queue(&run.name),
                            "Redis refuses pushes to this key; it is parked: its deliveries wait on the bus and are retried, the other keys are not held up.");
                    }
                    parking.park(&run.name, key);
                    self.bus.publish(&parked_queue(&run.name), entries.clone()).await?;
                }
                (Action::Push { payloads, .. }, Route::Redis) => batch.pushed += payloads.len() as u64,
            }
            run.done = true;
        }
        match refused {
            Some(error) => Err(DeliveryError::Refused(error)),
            None => Ok(batch.pushed),
        }
    }

    /// Sends the runs routed to Redis as one `MULTI`/`EXEC`; returns each route's
    /// reply (`None`: nothing was sent for it).
    async fn exec(
        &mut self,
        batch: &Batch,
        routes: &[(usize, Route)],
    ) -> Result<Vec<Option<redis::Value>>, DeliveryError> {
        let mut replies: Vec<Option<redis::Value>> = routes.iter().map(|_| None).collect();
        if !routes.iter().any(|(_, route)| *route == Route::Redis) {
            return Ok(replies);
        }
        let connection = connected(&self.client, &mut self.connection).await?;
        let purged: Vec<String> = routes
            .iter()
            .filter(|(index, _)| matches!(batch.runs[*index].action, Action::Purge))
            .map(|(index, _)| self.keys.key(&batch.runs[*index].name))
            .collect();
        let lists = lists_among(connection, &purged).await?;
        let mut pipeline = redis::pipe();
        pipeline.atomic().ignore_errors();
        let mut sent = Vec::new();
        for (slot, (index, route)) in routes.iter().enumerate() {
            let run = &batch.runs[*index];
            let key = self.keys.key(&run.name);
            match (&run.action, route) {
                (Action::Purge, _) if lists.contains(&key) => {
                    pipeline.cmd("DEL").arg(&key);
                }
                (Action::Push { payloads, .. }, Route::Redis) => {
                    let command = pipeline.cmd("LPUSH").arg(&key);
                    for payload in payloads {
                        command.arg(&payload[..]);
                    }
                }
                _ => continue,
            }
            sent.push(slot);
        }
        if sent.is_empty() {
            return Ok(replies);
        }
        let answers: Vec<redis::Value> = pipeline.query_async(connection).await?;
        if answers.len() != sent.len() {
            let detail = format!("{} replies to {} commands: {answers:?}", answers.len(), sent.len());
            return Err(DeliveryError::Refused(detail));
        }
        for (slot, answer) in sent.into_iter().zip(answers) {
            replies[slot] = Some(answer);
        }
        Ok(replies)
    }
}

/// Which of `keys` hold lists: a purge deletes only those (a key of another type is
/// another application's).
async fn lists_among(connection: &mut MultiplexedConnection, keys: &[String]) -> redis::RedisResult<HashSet<String>> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let mut pipeline = redis::pipe();
    for key in keys {
        pipeline.cmd("TYPE").arg(key);
    }
    let kinds: Vec<String> = pipeline.query_async(connection).await?;
    Ok(keys.iter().zip(kinds).filter(|(_, kind)| kind == "list").map(|(key, _)| key.clone()).collect())
}

/// The parked-key task: retries each parked key when its pause is over, until
/// `shutdown`. A key whose waiting deliveries all reached Redis is unparked.
async fn retry_parked(
    bus: Arc<dyn Bus>,
    client: redis::Client,
    keys: Keys,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let parking = &shared.parking;
    let mut connection = None;
    loop {
        let due = parking.next_due();
        let sleep = async {
            match due {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = parking.wake.notified() => continue,
            _ = sleep => {}
        }
        for name in parking.due_now() {
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(error) = drain(&name, &bus, &client, &mut connection, &keys, &shared).await {
                if matches!(error, DeliveryError::Redis(_)) {
                    connection = None;
                }
                if let Some(delay) = parking.failed(&name) {
                    tracing::debug!(key = %keys.key(&name), %error, ?delay, "A parked Redis key still refuses; retrying after a pause.");
                }
            }
        }
    }
}

/// Pushes a parked key's waiting deliveries, a batch at a time and in order, and
/// unparks it when none are left; an error leaves it parked (what was pushed and
/// acknowledged stays done).
async fn drain(
    name: &str,
    bus: &Arc<dyn Bus>,
    client: &redis::Client,
    connection: &mut Option<MultiplexedConnection>,
    keys: &Keys,
    shared: &Shared,
) -> Result<(), DeliveryError> {
    let queue = parked_queue(name);
    loop {
        let _gate = shared.parking.gate.lock().await;
        if !shared.parking.is_parked(name) {
            return Ok(()); // Purged meanwhile.
        }
        let mut consumer = bus.subscribe(&queue, GROUP).await?;
        let waiting = consumer.fetch(BATCH, Duration::ZERO).await?;
        if waiting.is_empty() {
            drop(consumer);
            bus.delete_queue(&queue).await?;
            shared.parking.unpark(name);
            tracing::info!(key = %keys.key(name), "Redis takes this key's pushes again; its parked deliveries are delivered.");
            return Ok(());
        }
        let payloads: Vec<Bytes> = {
            let subscriptions = shared.read();
            waiting
                .iter()
                .filter_map(|delivery| {
                    let entry = serde_json::from_slice::<DeliveryEntry<'_>>(&delivery.payload).ok()?;
                    (!entry.purge && entry.is_current(&subscriptions)).then(|| payload_bytes(delivery, entry.payload))
                })
                .collect()
        };
        if !payloads.is_empty() {
            let mut command = redis::cmd("LPUSH");
            command.arg(keys.key(name));
            for payload in &payloads {
                command.arg(&payload[..]);
            }
            command.query_async::<redis::Value>(connected(client, connection).await?).await?;
        }
        let ids: Vec<DeliveryId> = waiting.iter().map(|delivery| delivery.id.clone()).collect();
        consumer.ack(&ids).await?;
        shared.counters.redis_pushed.fetch_add(payloads.len() as u64, Ordering::Relaxed);
        shared.parking.succeeded(name);
    }
}
