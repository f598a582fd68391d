//! Delivery into Redis (SPEC §6.1): consumes the delivery queue `dispatch.redis`
//! (group `redis`) in batches and pushes each payload with `LPUSH <subscription>`, so
//! consumers read oldest first with `BRPOP`/`RPOP`.
//!
//! A batch goes out as one pipelined `MULTI`/`EXEC` (runs of entries for the same list
//! become one `LPUSH` with several values, which keeps their order), and is
//! acknowledged on the bus only after Redis has answered. While Redis is down or
//! refusing, the batch is retried with growing pauses (100 ms doubling to 30 s, with
//! jitter) and everything behind it waits on the bus, in order; when Redis is back, it
//! all goes out in the order it was matched. Nothing is lost: an entry leaves the bus
//! only once Redis has it. If the connection breaks after Redis ran a batch but before
//! its answer arrived, the batch is pushed again (at-least-once); `MULTI`/`EXEC` makes a
//! batch all-or-nothing, so there is never half a batch.
//!
//! The connection has its own generous response timeout (redis-rs's default of 500 ms
//! would fail large batches on a busy server).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use flotilla_bus::{Bus, BusError, Delivery};
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

/// Checks a `redis.url` without connecting.
///
/// # Errors
/// What is wrong with it, in a sentence.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("rediss://") {
        return Err("TLS (rediss://) is not part of this build; use redis:// or unix://".to_string());
    }
    redis::Client::open(url).map(|_| ()).map_err(|e| format!("'{url}' is not a Redis URL: {e}"))
}

/// Runs the delivery worker until `shutdown`.
pub async fn run(bus: Arc<dyn Bus>, url: String, shared: Arc<Shared>, shutdown: CancellationToken) {
    let client = match redis::Client::open(url.as_str()) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "The Redis URL is invalid; deliveries wait on the bus.");
            return;
        }
    };
    let mut worker = Worker { client, connection: None, shared, down_since: None, pause: MIN_PAUSE };
    loop {
        match worker.consume(bus.as_ref(), &shutdown).await {
            Ok(()) | Err(BusError::Closed) => return,
            Err(error) => {
                tracing::error!(%error, "The Redis delivery worker could not read the bus; retrying in 1 s.");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

struct Worker {
    client: redis::Client,
    connection: Option<MultiplexedConnection>,
    shared: Arc<Shared>,
    /// When the current outage began, if Redis is failing.
    down_since: Option<std::time::Instant>,
    pause: Duration,
}

impl Worker {
    async fn consume(&mut self, bus: &dyn Bus, shutdown: &CancellationToken) -> Result<(), BusError> {
        let mut consumer = bus.subscribe(DELIVERY_QUEUE, GROUP).await?;
        while let Some(batch) = crate::matcher::next_batch(consumer.as_mut(), BATCH, shutdown).await? {
            let pipeline = pipeline(&batch);
            // Retry this batch until Redis takes it; what follows waits behind it.
            loop {
                match self.push(&pipeline).await {
                    Ok(()) => break,
                    Err(error) => {
                        self.shared.counters.redis_failures.fetch_add(1, Ordering::Relaxed);
                        self.connection = None;
                        if self.down_since.is_none() {
                            self.down_since = Some(std::time::Instant::now());
                            tracing::warn!(%error, "Cannot deliver to Redis; deliveries wait on the bus and go out in order when it is back.");
                        }
                        let pause = self.pause.mul_f64(0.5 + 0.5 * jitter());
                        self.pause = (self.pause * 2).min(MAX_PAUSE);
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            // Unacknowledged entries stay on the bus for the next start.
                            _ = shutdown.cancelled() => return Ok(()),
                        }
                    }
                }
            }
            if let Some(since) = self.down_since.take() {
                tracing::info!(down_for = ?since.elapsed(), "Redis is reachable again; delivering what waited.");
            }
            self.pause = MIN_PAUSE;
            let ids: Vec<_> = batch.iter().map(|d| d.id.clone()).collect();
            consumer.ack(&ids).await?;
            self.shared.counters.redis_pushed.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn push(&mut self, pipeline: &redis::Pipeline) -> redis::RedisResult<()> {
        if self.connection.is_none() {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(5)))
                .set_response_timeout(Some(Duration::from_secs(30)));
            self.connection = Some(self.client.get_multiplexed_async_connection_with_config(&config).await?);
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

/// A number in [0, 1) that differs between calls, for spreading retries.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}
