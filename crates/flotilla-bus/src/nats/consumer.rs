//! A member of a consumer group ([`NatsConsumer`]) and a reader that follows a stream
//! without consuming ([`NatsReader`]). See the module docs of [`super`] for hand-backs,
//! redelivery after `ack_wait` and what a reader asks of the server.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer, stream::Stream as JsStream};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use tokio::task::JoinHandle;

use super::{Inner, lock};
use crate::{BusError, Delivery, DeliveryId};

/// How much longer than its own expiry a pull may take before it counts as lost.
const PULL_MARGIN: Duration = Duration::from_secs(10);
/// The longest a reader waits before looking at the stream again.
const READER_RECHECK: Duration = Duration::from_millis(100);

/// Ack subjects a consumer holds (delivered, not acknowledged), each with its stream
/// sequence and when it was last marked in progress.
type Held = Arc<Mutex<HashMap<Arc<str>, (u64, Instant)>>>;

/// A member of a consumer group: a puller of the group's durable consumer.
pub struct NatsConsumer {
    bus: Arc<Inner>,
    queue: String,
    group: String,
    consumer: PullConsumer,
    held: Held,
    /// Keeps what this consumer holds from being redelivered while it lives.
    refresher: JoinHandle<()>,
}

impl NatsConsumer {
    pub(super) fn new(bus: Arc<Inner>, queue: &str, group: &str, consumer: PullConsumer) -> NatsConsumer {
        let held: Held = Arc::default();
        let refresher = spawn_refresher(&bus, queue, &held);
        NatsConsumer { bus, queue: queue.to_string(), group: group.to_string(), consumer, held, refresher }
    }

    fn context(&self, what: &str) -> String {
        format!("{what} queue '{}' in group '{}' (NATS at {})", self.queue, self.group, self.bus.url)
    }

    fn failed(&self, what: &str, error: impl std::error::Error + Send + Sync + 'static) -> BusError {
        BusError::backend(self.context(what), error)
    }

    /// Gives back (`-NAK`) what consumers of this group in this process held when they
    /// were dropped, so it is redelivered at once, before anything new.
    async fn hand_back(&self) -> Result<(), BusError> {
        let key = (self.queue.clone(), self.group.clone());
        let departed = lock(&self.bus.departed).remove(&key).unwrap_or_default();
        if departed.is_empty() {
            return Ok(());
        }
        let result = self.send_all(&departed, "-NAK").await;
        if result.is_err() {
            lock(&self.bus.departed).entry(key).or_default().extend(departed);
        }
        result.map_err(|e| self.failed("handing back the messages of a departed consumer of", Boxed(e)))
    }

    /// Sends `body` to each ack subject, then waits for NATS to have handled them.
    async fn send_all(&self, subjects: &[Arc<str>], body: &'static str) -> Result<(), async_nats::Error> {
        for subject in subjects {
            self.bus.client.publish(subject.to_string(), Bytes::from_static(body.as_bytes())).await?;
        }
        self.bus.client.flush().await?;
        Ok(())
    }

    /// One pull: up to `max` messages; without `wait`, only what is there now.
    async fn pull(&self, max: usize, wait: Option<Duration>) -> Result<Vec<jetstream::Message>, BusError> {
        let what = "reading";
        let pulling = async {
            let batch = match wait {
                None => self.consumer.fetch().max_messages(max).messages().await,
                Some(wait) => self.consumer.batch().max_messages(max).expires(wait).messages().await,
            };
            let batch = batch.map_err(|e| self.failed(what, e))?;
            batch.try_collect::<Vec<_>>().await.map_err(|e| self.failed(what, Boxed(e)))
        };
        let limit = wait.unwrap_or_default() + PULL_MARGIN;
        match tokio::time::timeout(limit, pulling).await {
            Ok(result) => result,
            Err(elapsed) => Err(BusError::backend(self.context("no answer from NATS in time, reading"), elapsed)),
        }
    }

    /// Hands messages to the caller: they are held (kept from redelivery) until
    /// acknowledged.
    fn deliver(&self, messages: Vec<jetstream::Message>) -> Vec<Delivery> {
        let now = Instant::now();
        let mut held = lock(&self.held);
        let deliveries: Vec<Delivery> = messages
            .into_iter()
            .filter_map(|message| {
                let (seq, timestamp_ms) = message
                    .info()
                    .map(|info| (info.stream_sequence, (info.published.unix_timestamp_nanos() / 1_000_000) as u64))
                    .ok()?;
                let reply: Arc<str> = Arc::from(message.message.reply.as_ref()?.as_str());
                held.insert(reply.clone(), (seq, now));
                Some(Delivery {
                    id: DeliveryId::Text(reply),
                    seq: seq.saturating_sub(1),
                    timestamp_ms,
                    payload: message.message.payload.clone(),
                })
            })
            .collect();
        self.bus.counters.delivered.fetch_add(deliveries.len() as u64, Ordering::Relaxed);
        deliveries
    }
}

/// Sends `+WPI` (work in progress) every `lease_ttl`/3 for what the consumer still
/// holds, so JetStream does not redeliver it while the consumer lives.
fn spawn_refresher(bus: &Arc<Inner>, queue: &str, held: &Held) -> JoinHandle<()> {
    let every = (bus.options.lease_ttl / 3).max(Duration::from_millis(10));
    let (bus, queue, held) = (bus.clone(), queue.to_string(), held.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let now = Instant::now();
            let due: Vec<Arc<str>> = lock(&held)
                .iter_mut()
                .filter(|(_, (_, touched))| now.duration_since(*touched) >= every)
                .map(|(subject, (_, touched))| {
                    *touched = now;
                    subject.clone()
                })
                .collect();
            for subject in &due {
                if let Err(error) = bus.client.publish(subject.to_string(), Bytes::from_static(b"+WPI")).await {
                    tracing::warn!(%error, %queue, held = due.len(),
                        "Could not tell NATS this consumer still works on its messages; they may be redelivered after the lease.");
                    break;
                }
            }
        }
    })
}

/// async-nats's boxed error as an error of its own, its cause kept (for `source`).
#[derive(Debug)]
struct Boxed(async_nats::Error);

impl std::fmt::Display for Boxed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Boxed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[async_trait::async_trait]
impl crate::Consumer for NatsConsumer {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        self.bus.check_open()?;
        let max = max.max(1);
        self.hand_back().await?;
        let mut messages = self.pull(max, None).await?;
        if messages.is_empty() && !wait.is_zero() {
            // Waits for one, then takes what else is there: a fetch returns as soon as
            // something arrived, not when the batch is full.
            messages = self.pull(1, Some(wait.max(Duration::from_millis(1)))).await?;
            if !messages.is_empty() && max > 1 {
                match self.pull(max - 1, None).await {
                    Ok(more) => messages.extend(more),
                    // What came is delivered; the error shows again next time.
                    Err(error) => tracing::debug!(error = %flotilla_core::error_chain(&error), "A pull failed."),
                }
            }
        }
        Ok(self.deliver(messages))
    }

    async fn ack(&mut self, ids: &[DeliveryId]) -> Result<(), BusError> {
        let subjects: Vec<Arc<str>> = ids
            .iter()
            .filter_map(|id| match id {
                DeliveryId::Text(text) => Some(text.clone()),
                DeliveryId::Seq(_) => None,
            })
            .collect();
        if subjects.is_empty() {
            return Ok(());
        }
        self.send_all(&subjects, "+ACK").await.map_err(|e| self.failed("acknowledging messages of", Boxed(e)))?;
        self.bus.counters.acked.fetch_add(subjects.len() as u64, Ordering::Relaxed);
        let mut held = lock(&self.held);
        for subject in &subjects {
            held.remove(subject);
        }
        Ok(())
    }
}

impl Drop for NatsConsumer {
    fn drop(&mut self) {
        self.refresher.abort();
        // What it held goes to the next consumer of the group in this process that
        // fetches, at once; to any other after ack_wait.
        // In queue order: JetStream redelivers given-back messages in the order it got them.
        let mut held: Vec<(u64, Arc<str>)> =
            lock(&self.held).drain().map(|(subject, (seq, _))| (seq, subject)).collect();
        held.sort();
        if !held.is_empty() {
            let mut departed = lock(&self.bus.departed);
            let list = departed.entry((self.queue.clone(), self.group.clone())).or_default();
            list.extend(held.into_iter().map(|(_, subject)| subject));
        }
    }
}

/// Follows a stream without consuming it: gets messages by sequence.
pub struct NatsReader {
    bus: Arc<Inner>,
    queue: String,
    stream: JsStream,
    subject: String,
    /// The stream sequence to read next.
    next: u64,
    /// Hears of publishes to the queue (wakes a waiting fetch).
    wake: async_nats::Subscriber,
}

impl NatsReader {
    pub(super) fn new(
        bus: Arc<Inner>,
        queue: &str,
        stream: JsStream,
        next: u64,
        wake: async_nats::Subscriber,
    ) -> NatsReader {
        let subject = bus.subject(queue);
        NatsReader { bus, queue: queue.to_string(), stream, subject, next, wake }
    }

    /// Up to `max` messages from the cursor on, without waiting.
    async fn read_available(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind as Kind;
        let mut out = Vec::new();
        while out.len() < max {
            match self.stream.get_first_raw_message_by_subject(&self.subject, self.next).await {
                Ok(message) => {
                    self.next = message.sequence + 1;
                    out.push(Delivery {
                        id: DeliveryId::Seq(message.sequence.saturating_sub(1)),
                        seq: message.sequence.saturating_sub(1),
                        timestamp_ms: (message.time.unix_timestamp_nanos() / 1_000_000) as u64,
                        payload: message.payload,
                    });
                }
                Err(e) if matches!(e.kind(), Kind::NoMessageFound) => break,
                Err(e) if matches!(e.kind(), Kind::JetStream(js) if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
                {
                    return Err(BusError::Deleted(self.queue.clone()));
                }
                Err(e) => {
                    let what = format!("following queue '{}' (NATS at {})", self.queue, self.bus.url);
                    return Err(BusError::backend(what, e));
                }
            }
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl crate::Reader for NatsReader {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = Instant::now() + wait;
        loop {
            self.bus.check_open()?;
            let got = self.read_available(max.max(1)).await?;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            // A publish wakes it; it looks again anyway after a while, as a subscriber
            // may hear of a message before the stream stored it.
            let _ = tokio::time::timeout((deadline - now).min(READER_RECHECK), self.wake.next()).await;
            // Wake-ups that queued up meanwhile are all answered by the next look.
            for _ in 0..10_000 {
                if futures_util::FutureExt::now_or_never(self.wake.next()).is_none() {
                    break;
                }
            }
        }
    }
}
