//! A bus stage: the one consume → work → publish durably → acknowledge loop that every
//! consumer turning batches into results runs (the node's reactor, the dispatcher's
//! matcher, fan-out and Redis delivery, the IRC logger).
//!
//! A [`Stage`] fetches a batch from a queue in a consumer group, has it prepared (the
//! `prepare` function given to [`Stage::run`]: decoding, pure CPU work), hands it to
//! the [`Work`], publishes the [`Outputs`] the work asked for, and only then
//! acknowledges the batch. It knows the bus only through the [`Bus`] trait, so it runs
//! the same on every backend.
//!
//! Guarantees:
//!
//! - **At-least-once, in order.** A batch is acknowledged only after every output of
//!   its work is durable (and after whatever the work did elsewhere, a Redis push or a
//!   database commit, returned). A crash in between delivers the batch again, and its
//!   work runs again. Outputs reach each queue in batch order: a batch's publishes
//!   start only once the previous batch's are durable and acknowledged.
//! - **Retries.** Work that fails ([`Work::process`] returns an error) is retried on the
//!   same batch after a pause from the workspace's one [`Backoff`] (doubling, with
//!   jitter); the batches behind it wait on the bus. A bus error (other than a closed
//!   bus) drops what is in hand unacknowledged, pauses the same way (1 s doubling to
//!   30 s), subscribes again and carries on: the group delivers the unacknowledged
//!   tail again. A closed bus ends the stage with [`BusError::Closed`].
//! - **Shutdown.** Once `shutdown` fires nothing more is fetched: the batch in hand
//!   (and one already fetched and being prepared) is worked on, published and
//!   acknowledged, then [`Stage::run`] returns `Ok`. Work that is failing when shutdown
//!   fires is not retried; its batch stays on the bus for the next start. With
//!   [`Stage::drain`], the stage also returns once a fetch finds the queue empty.
//!
//! Pipelining, chosen per stage for its hot path (the order of durability steps is
//! the same either way):
//!
//! - [`Stage::prepare_ahead`]: batch N+1 is fetched and prepared on another task while
//!   batch N is worked on (the reactor decodes, the IRC logger decodes rows).
//! - [`Stage::publish_behind`]: batch N's outputs are made durable and N acknowledged
//!   while batch N+1 is worked on (the reactor, the matcher).
//!
//! The stage works on whole batches: one `prepare` call, one `process` call and one
//! durable append per output queue per batch, no per-message futures or copies.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_core::Backoff;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Bus, BusError, Consumer, Delivery, DeliveryId};

/// How long a stage stopping with [`Stage::run_draining`] keeps taking what is on its
/// queue, by default (the node's reactor and services use it).
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Pauses after a bus error: 1 s doubling to 30 s, with jitter.
const BUS_RETRY_MIN: Duration = Duration::from_secs(1);
const BUS_RETRY_MAX: Duration = Duration::from_secs(30);

/// Payloads a batch's work asks to publish, by queue, in order within each queue.
#[derive(Debug, Default, Clone)]
pub struct Outputs {
    queues: BTreeMap<String, Vec<Bytes>>,
}

impl Outputs {
    /// Adds one payload to `queue`, after those already held.
    pub fn push(&mut self, queue: &str, payload: Bytes) {
        match self.queues.get_mut(queue) {
            Some(held) => held.push(payload),
            None => {
                self.queues.insert(queue.to_string(), vec![payload]);
            }
        }
    }

    /// Adds payloads to `queue`, after those already held (the vector is kept, not
    /// copied, when the queue had none).
    pub fn add(&mut self, queue: &str, payloads: Vec<Bytes>) {
        if payloads.is_empty() {
            return;
        }
        match self.queues.get_mut(queue) {
            Some(held) if held.is_empty() => *held = payloads,
            Some(held) => held.extend(payloads),
            None => {
                self.queues.insert(queue.to_string(), payloads);
            }
        }
    }

    /// Adds everything `other` holds after what this holds, queue by queue.
    pub fn append(&mut self, other: Outputs) {
        if self.queues.is_empty() {
            self.queues = other.queues;
            return;
        }
        for (queue, payloads) in other.queues {
            self.add(&queue, payloads);
        }
    }

    /// Takes everything held, leaving nothing.
    pub fn take(&mut self) -> Outputs {
        std::mem::take(self)
    }

    /// No payloads held.
    pub fn is_empty(&self) -> bool {
        self.queues.values().all(Vec::is_empty)
    }

    /// Payloads held, over all queues.
    pub fn len(&self) -> usize {
        self.queues.values().map(Vec::len).sum()
    }

    /// The queues and their payloads, in queue-name order.
    pub fn queues(&self) -> impl Iterator<Item = (&str, &[Bytes])> {
        self.queues.iter().map(|(queue, payloads)| (queue.as_str(), payloads.as_slice()))
    }

    /// Appends every queue's payloads durably: one append per queue, all queues at once
    /// so their appends share the bus's commits. Returns once all are durable; on an
    /// error some queues may have them and others not (a retry repeats them all:
    /// at-least-once).
    pub async fn publish(self, bus: &dyn Bus) -> Result<(), BusError> {
        let mut queues = self.queues.into_iter().filter(|(_, payloads)| !payloads.is_empty());
        match (queues.next(), queues.next()) {
            (None, _) => Ok(()),
            (Some((queue, payloads)), None) => bus.publish(&queue, payloads).await.map(drop),
            (Some(first), Some(second)) => {
                let all = [first, second].into_iter().chain(queues);
                futures_util::future::try_join_all(
                    all.map(|(queue, payloads)| async move { bus.publish(&queue, payloads).await }),
                )
                .await
                .map(drop)
            }
        }
    }
}

impl From<BTreeMap<String, Vec<Bytes>>> for Outputs {
    fn from(queues: BTreeMap<String, Vec<Bytes>>) -> Outputs {
        Outputs { queues }
    }
}

/// What a stage does with each batch.
pub trait Work: Send {
    /// A batch as the stage's `prepare` function made it (decoded payloads, a Redis
    /// pipeline); `()` when the work reads the deliveries themselves.
    type Prepared: Send + 'static;
    /// What a batch's work leaves for [`Work::acknowledged`]: figures to count once the
    /// batch is acknowledged.
    type Done: Send;
    /// Why work on a batch failed. The work reports the failure itself (it knows what
    /// it means); the stage pauses and calls [`Work::process`] again on the same batch.
    type Error: std::fmt::Display + Send;

    /// Works on one batch, adding to `outputs` whatever must be published (durably,
    /// before the batch is acknowledged). May be called again on the same batch after
    /// an error, with `outputs` emptied.
    fn process(
        &mut self,
        batch: &[Delivery],
        prepared: &mut Self::Prepared,
        outputs: &mut Outputs,
    ) -> impl Future<Output = Result<Self::Done, Self::Error>> + Send;

    /// The batch `done` came from is acknowledged (its outputs durable).
    fn acknowledged(&mut self, done: Self::Done) {
        let _ = done;
    }

    /// A fetch found nothing and nothing is in hand (the reactor warns when idle long).
    fn idle(&mut self) {}
}

/// A consumer of one queue in one group that works on batches; see the module docs.
#[derive(Debug, Clone)]
pub struct Stage {
    name: &'static str,
    queue: String,
    group: String,
    batch: usize,
    idle_wait: Duration,
    prepare_ahead: bool,
    publish_behind: bool,
    retry: Backoff,
    drain: Option<CancellationToken>,
}

impl Stage {
    /// A stage named `name` (for logs) consuming `queue` in `group`, up to `batch`
    /// deliveries at a time; one batch at a time, waiting up to 1 s for a batch when
    /// idle, retrying failed work after 100 ms doubling to 30 s.
    pub fn new(name: &'static str, queue: &str, group: &str, batch: usize) -> Stage {
        Stage {
            name,
            queue: queue.to_string(),
            group: group.to_string(),
            batch: batch.max(1),
            idle_wait: Duration::from_secs(1),
            prepare_ahead: false,
            publish_behind: false,
            retry: Backoff::new(Duration::from_millis(100), Duration::from_secs(30)),
            drain: None,
        }
    }

    /// How long a fetch waits for the first message when nothing is in hand.
    pub fn idle_wait(mut self, wait: Duration) -> Stage {
        self.idle_wait = wait;
        self
    }

    /// Fetch and prepare batch N+1 on another task while batch N is worked on.
    pub fn prepare_ahead(mut self) -> Stage {
        self.prepare_ahead = true;
        self
    }

    /// Make batch N's outputs durable (and acknowledge N) while batch N+1 is worked on.
    pub fn publish_behind(mut self) -> Stage {
        self.publish_behind = true;
        self
    }

    /// Pauses between retries of failed work: `min` doubling to `max`, with jitter.
    pub fn retry(mut self, min: Duration, max: Duration) -> Stage {
        self.retry = Backoff::new(min, max);
        self
    }

    /// Once `drain` fires, fetches no longer wait and the stage returns when one finds
    /// the queue empty (after finishing what it holds).
    pub fn drain(mut self, drain: CancellationToken) -> Stage {
        self.drain = Some(drain);
        self
    }

    /// The queue the stage consumes.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Runs until `shutdown` fires, then **drains**: takes what is already on the queue
    /// (fetches no longer wait) and returns once a fetch finds it empty, or once `grace`
    /// has passed, whichever comes first, finishing, publishing and acknowledging what
    /// it holds either way. The node's reactor and services stop this way, so what the
    /// connectors emitted while stopping is processed before the node exits.
    ///
    /// # Errors
    /// As [`Stage::run`].
    pub async fn run_draining<W, P>(
        self,
        bus: Arc<dyn Bus>,
        prepare: P,
        work: &mut W,
        shutdown: &CancellationToken,
        grace: Duration,
    ) -> Result<(), BusError>
    where
        W: Work,
        P: Fn(&[Delivery]) -> W::Prepared + Send + Sync + 'static,
    {
        let stop = CancellationToken::new();
        let stage = self.drain(shutdown.clone());
        let run = stage.run(bus, prepare, work, &stop);
        tokio::pin!(run);
        let give_up = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = &mut run => result,
            () = give_up => {
                tracing::warn!(stage = stage.name, ?grace, "Still draining when the grace period ended; the rest waits on the bus.");
                stop.cancel();
                run.await
            }
        }
    }

    /// Runs until `shutdown` fires (or the drain is done): see the module docs.
    ///
    /// # Errors
    /// [`BusError::Closed`] when the bus was closed; other bus errors are retried.
    pub async fn run<W, P>(
        &self,
        bus: Arc<dyn Bus>,
        prepare: P,
        work: &mut W,
        shutdown: &CancellationToken,
    ) -> Result<(), BusError>
    where
        W: Work,
        P: Fn(&[Delivery]) -> W::Prepared + Send + Sync + 'static,
    {
        let prepare = Arc::new(prepare);
        let mut retry = self.retry.clone();
        let mut bus_retry = Backoff::new(BUS_RETRY_MIN, BUS_RETRY_MAX);
        loop {
            let mut behind = None;
            let result = match bus.subscribe(&self.queue, &self.group).await {
                Ok(mut consumer) => {
                    let mut run =
                        Running { stage: self, bus: &bus, consumer: consumer.as_mut(), work: &mut *work, shutdown };
                    run.consume(&prepare, &mut retry, &mut bus_retry, &mut behind).await
                }
                Err(error) => Err(error),
            };
            // A publish still in the air ends before anything is fetched again, so the
            // outputs of a batch delivered again never overtake it.
            if let Some(Publishing { state: PublishState::Started(task), .. }) = behind.take() {
                let _ = task.await;
            }
            match result {
                Ok(()) => return Ok(()),
                Err(BusError::Closed) => return Err(BusError::Closed),
                Err(error) => {
                    let delay = bus_retry.next_delay();
                    tracing::error!(%error, stage = self.name, queue = %self.queue, group = %self.group, ?delay,
                        "A bus stage failed; what it held unacknowledged is delivered again. Retrying after a pause.");
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    fn draining(&self) -> bool {
        self.drain.as_ref().is_some_and(CancellationToken::is_cancelled)
    }
}

/// One subscription's worth of a running stage.
struct Running<'a, W> {
    stage: &'a Stage,
    bus: &'a Arc<dyn Bus>,
    consumer: &'a mut dyn Consumer,
    work: &'a mut W,
    shutdown: &'a CancellationToken,
}

impl<W: Work> Running<'_, W> {
    async fn consume<P>(
        &mut self,
        prepare: &Arc<P>,
        retry: &mut Backoff,
        bus_retry: &mut Backoff,
        behind: &mut Option<Publishing<W::Done>>,
    ) -> Result<(), BusError>
    where
        P: Fn(&[Delivery]) -> W::Prepared + Send + Sync + 'static,
    {
        let stage = self.stage;
        // Fetched and being prepared, when preparing ahead.
        let mut ahead: Option<Preparing<W::Prepared>> = None;
        loop {
            let fetched = if self.shutdown.is_cancelled() {
                Vec::new()
            } else {
                // With a batch in hand, take only what is there now.
                let busy = ahead.is_some() || behind.is_some() || stage.draining();
                let wait = if busy { Duration::ZERO } else { stage.idle_wait };
                tokio::select! {
                    biased;
                    _ = self.shutdown.cancelled() => Vec::new(),
                    batch = self.consumer.fetch(stage.batch, wait) => batch?,
                }
            };
            let fetched_some = !fetched.is_empty();
            let next = fetched_some.then(|| Preparing::start(fetched, prepare, stage.prepare_ahead));
            let current = if stage.prepare_ahead { std::mem::replace(&mut ahead, next) } else { next };
            let Some(current) = current else {
                if !fetched_some {
                    // Nothing in hand: settle the batch in flight, then stop or idle.
                    self.finish(behind.take(), bus_retry).await?;
                    if self.shutdown.is_cancelled() || stage.draining() {
                        return Ok(());
                    }
                    self.work.idle();
                }
                continue;
            };
            let (deliveries, mut prepared) = current.ready(stage.name).await?;
            let mut outputs = Outputs::default();
            let Some(done) = self.process(&deliveries, &mut prepared, &mut outputs, retry).await else {
                // Told to stop while the work fails: this batch (and any fetched behind
                // it) stays on the bus for the next start.
                return self.finish(behind.take(), bus_retry).await;
            };
            let ids: Vec<DeliveryId> = deliveries.iter().map(|d| d.id.clone()).collect();
            drop(prepared);
            drop(deliveries);
            // Publishes stay in batch order: this batch's start once the previous
            // batch's are durable and it is acknowledged.
            self.finish(behind.take(), bus_retry).await?;
            if stage.publish_behind {
                *behind = Some(Publishing::start(self.bus, outputs, ids, done));
            } else {
                let publishing = Publishing { state: PublishState::Held(outputs), ids, done };
                self.finish(Some(publishing), bus_retry).await?;
            }
        }
    }

    /// Works on a batch until it succeeds; `None` when told to stop while it fails.
    async fn process(
        &mut self,
        deliveries: &[Delivery],
        prepared: &mut W::Prepared,
        outputs: &mut Outputs,
        retry: &mut Backoff,
    ) -> Option<W::Done> {
        loop {
            match self.work.process(deliveries, prepared, outputs).await {
                Ok(done) => {
                    retry.reset();
                    return Some(done);
                }
                Err(error) => {
                    *outputs = Outputs::default();
                    let delay = retry.next_delay();
                    tracing::debug!(%error, stage = self.stage.name, ?delay, "Work on a batch failed; retrying it after a pause.");
                    tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Waits until a batch's outputs are durable, then acknowledges the batch. If they
    /// could not be made durable the batch is not acknowledged: it is delivered again.
    async fn finish(
        &mut self,
        publishing: Option<Publishing<W::Done>>,
        bus_retry: &mut Backoff,
    ) -> Result<(), BusError> {
        let Some(Publishing { state, ids, done }) = publishing else { return Ok(()) };
        match state {
            PublishState::Held(outputs) => outputs.publish(self.bus.as_ref()).await?,
            PublishState::Started(task) => task.await.map_err(|e| {
                BusError::backend(format!("the {} stage's publishing task failed", self.stage.name), e)
            })??,
        }
        self.consumer.ack(&ids).await?;
        bus_retry.reset();
        self.work.acknowledged(done);
        Ok(())
    }
}

/// A fetched batch, prepared here or on another task.
enum Preparing<T> {
    Ready(Vec<Delivery>, T),
    Task(JoinHandle<(Vec<Delivery>, T)>),
}

impl<T: Send + 'static> Preparing<T> {
    fn start<P>(deliveries: Vec<Delivery>, prepare: &Arc<P>, on_another_task: bool) -> Preparing<T>
    where
        P: Fn(&[Delivery]) -> T + Send + Sync + 'static,
    {
        if on_another_task {
            let prepare = prepare.clone();
            // The deliveries travel with the task and come back, so nothing is copied.
            Preparing::Task(tokio::spawn(async move {
                let prepared = prepare(&deliveries);
                (deliveries, prepared)
            }))
        } else {
            let prepared = prepare(&deliveries);
            Preparing::Ready(deliveries, prepared)
        }
    }

    async fn ready(self, stage: &str) -> Result<(Vec<Delivery>, T), BusError> {
        match self {
            Preparing::Ready(deliveries, prepared) => Ok((deliveries, prepared)),
            Preparing::Task(task) => match task.await {
                Ok(ready) => Ok(ready),
                // Preparing is pure code: a panic there is a bug, and stays one.
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => Err(BusError::backend(format!("the {stage} stage's preparing task failed"), error)),
            },
        }
    }
}

/// A worked-on batch: its outputs (held, or being published) and what to acknowledge.
struct Publishing<D> {
    state: PublishState,
    ids: Vec<DeliveryId>,
    done: D,
}

enum PublishState {
    /// Not published yet: published when the batch is finished.
    Held(Outputs),
    /// Being published in the background.
    Started(JoinHandle<Result<(), BusError>>),
}

impl<D> Publishing<D> {
    fn start(bus: &Arc<dyn Bus>, outputs: Outputs, ids: Vec<DeliveryId>, done: D) -> Publishing<D> {
        let state = if outputs.is_empty() {
            PublishState::Held(outputs)
        } else {
            let bus = bus.clone();
            PublishState::Started(tokio::spawn(async move { outputs.publish(bus.as_ref()).await }))
        };
        Publishing { state, ids, done }
    }
}
