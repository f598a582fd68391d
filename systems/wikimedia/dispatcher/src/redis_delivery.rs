//! Delivery into Redis (SPEC §6.1): consumes the delivery queue `dispatch.redis`
//! (group `redis`) in batches and pushes each payload with `LPUSH <subscription>`, so
//! consumers read oldest first with `BRPOP`/`RPOP`.
//!
//! A batch goes out as one pipelined `MULTI`/`EXEC` (runs of entries for the same list
//! become one `LPUSH` with several values, which keeps their order), and is
//! acknowledged on the bus only after Redis has answered. While Redis is down or
//! refusing, the batch is retried with growing pauses (100 ms doubling to 30 s, with
//! jitter: the retry of the bus stage, [`flotilla_bus::stage`], this worker runs as)
//! and everything behind it waits on the bus, in order; when Redis is back, it all goes
//! out in the order it was matched. Nothing is lost: an entry leaves the bus
//! only once Redis has it. If the connection breaks after Redis ran a batch but before
//! its answer arrived, the batch is pushed again (at-least-once); `MULTI`/`EXEC` makes a
//! batch all-or-nothing, so there is never half a batch.
//!
//! The connection has its own generous response timeout (redis-rs's default of 500 ms
//! would fail large batches on a busy server).
//!
//! `rediss://` is TLS ([`flotilla_bus::redis_client`]), trusting the system's roots or
//! `redis.tls_ca`. [`Redis::open`] connects once when the dispatcher starts: a server
//! whose certificate the CA did not sign refuses the start (waiting cannot fix it),
//! while a Redis that is down does not (deliveries wait on the bus as above).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use flotilla_bus::redis_client::RedisSetupError;
use flotilla_bus::stage::{Outputs, Stage, Work};
use flotilla_bus::{Bus, Delivery};
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use crate::matcher::{DELIVERY_QUEUE, DeliveryEntry};
use crate::state::Shared;

/// The consumer group of the Redis delivery worker.
pub const GROUP: &str = "redis";
/// Most entries pushed as one pipeline.
const BATCH: usize = 4096;
const MIN_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(30);

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
        let connection = match connect(&client).await {
            Ok(connection) => Some(connection),
            Err(error) => {
                if let Some(problem) = flotilla_bus::redis_client::certificate_problem(&error) {
                    anyhow::bail!(
                        "Redis at {}: a TLS certificate problem: the server's certificate is not trusted ({problem}); \
                         redis.tls_ca must name the CA that signed it, and the URL's host must be in it",
                        crate::redact(url)
                    );
                }
                tracing::warn!(redis = %crate::redact(url), %error,
                    "Cannot reach Redis now; deliveries wait on the bus until it answers.");
                None
            }
        };
        Ok(Redis { client, connection })
    }
}

/// A connection with the worker's timeouts.
async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(30)));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// Runs the delivery worker until `shutdown`.
///
/// A bus stage ([`flotilla_bus::stage`]), one batch at a time, publishing nothing: its
/// work is the push, and the stage retries a failed push on the same batch with the
/// workspace's one backoff (100 ms doubling to 30 s, with jitter) until Redis takes
/// it or the worker is told to stop (then the batch stays on the bus).
pub async fn run(bus: Arc<dyn Bus>, redis: Redis, shared: Arc<Shared>, shutdown: CancellationToken) {
    let stage = Stage::new("Redis delivery", DELIVERY_QUEUE, GROUP, BATCH).retry(MIN_PAUSE, MAX_PAUSE);
    let mut worker = Worker { client: redis.client, connection: redis.connection, shared, down_since: None };
    // Not drained at shutdown: Redis may be the reason deliveries wait, and they wait
    // durably on the bus for the next start.
    let _closed = stage.run(bus, pipeline, &mut worker, &shutdown).await;
}

struct Worker {
    client: redis::Client,
    connection: Option<MultiplexedConnection>,
    shared: Arc<Shared>,
    /// When the current outage began, if Redis is failing.
    down_since: Option<std::time::Instant>,
}

impl Work for Worker {
    /// The batch as one `MULTI`/`EXEC`, built once and pushed until Redis takes it.
    type Prepared = redis::Pipeline;
    type Done = u64;
    type Error = redis::RedisError;

    async fn process(
        &mut self,
        batch: &[Delivery],
        pipeline: &mut redis::Pipeline,
        _: &mut Outputs,
    ) -> Result<u64, redis::RedisError> {
        match self.push(pipeline).await {
            Ok(()) => {
                if let Some(since) = self.down_since.take() {
                    tracing::info!(down_for = ?since.elapsed(), "Redis is reachable again; delivering what waited.");
                }
                Ok(batch.len() as u64)
            }
            Err(error) => {
                self.shared.counters.redis_failures.fetch_add(1, Ordering::Relaxed);
                self.connection = None;
                if self.down_since.is_none() {
                    self.down_since = Some(std::time::Instant::now());
                    if flotilla_bus::redis_client::certificate_problem(&error).is_some() {
                        tracing::error!(%error, "Redis's TLS certificate is not trusted (check redis.tls_ca); deliveries wait on the bus.");
                    } else {
                        tracing::warn!(%error, "Cannot deliver to Redis; deliveries wait on the bus and go out in order when it is back.");
                    }
                }
                Err(error)
            }
        }
    }

    fn acknowledged(&mut self, pushed: u64) {
        self.shared.counters.redis_pushed.fetch_add(pushed, Ordering::Relaxed);
    }
}

impl Worker {
    async fn push(&mut self, pipeline: &redis::Pipeline) -> redis::RedisResult<()> {
        if self.connection.is_none() {
            self.connection = Some(connect(&self.client).await?);
        }
        let Some(connection) = self.connection.as_mut() else { return Ok(()) };
        pipeline.query_async::<()>(connection).await
    }
}

/// The batch as one `MULTI`/`EXEC`: consecutive entries for one list share an `LPUSH`.
/// Entries that cannot be read (not written by this version) are logged and left out.
fn pipeline(batch: &[Delivery]) -> redis::Pipeline {
    let mut pipeline = redis::pipe();
    pipeline.atomic();
    let mut current: Option<(String, redis::Cmd)> = None;
    for delivery in batch {
        let entry: DeliveryEntry<'_> = match serde_json::from_slice(&delivery.payload) {
            Ok(entry) => entry,
            Err(error) => {
                tracing::warn!(seq = delivery.seq, %error, "Skipped an unreadable entry of the delivery queue.");
                continue;
            }
        };
        match &mut current {
            Some((list, command)) if *list == entry.subscription => {
                command.arg(entry.payload.as_bytes());
            }
            _ => {
                if let Some((_, command)) = current.take() {
                    pipeline.add_command(command).ignore();
                }
                let mut command = redis::cmd("LPUSH");
                command.arg(entry.subscription.as_bytes()).arg(entry.payload.as_bytes());
                current = Some((entry.subscription.into_owned(), command));
            }
        }
    }
    if let Some((_, command)) = current {
        pipeline.add_command(command).ignore();
    }
    pipeline
}
