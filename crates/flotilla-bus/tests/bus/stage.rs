//! The bus stage (`flotilla_bus::stage`) on every backend: outputs are durable before
//! their input is acknowledged (a crash in between delivers the input again), outputs
//! keep input order through the pipelined schedule, shutdown finishes the batch in
//! hand, draining takes what is there. Failed work is retried with doubling, jittered
//! pauses until it recovers: those two tests measure pauses on tokio's paused clock,
//! which a backend across a real network cannot run under, so they use the embedded
//! bus.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flotilla_bus::stage::{Outputs, Stage, Work};
use flotilla_bus::{
    Bus, BusCounters, BusError, Consumer, Delivery, DeliveryId, EmbeddedBus, EmbeddedOptions, QueueStats, ReadFrom,
    Reader, SeqRange,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::support::*;

conformance!(
    pipelined_outputs_keep_input_order_and_are_durable_before_each_acknowledgement,
    a_crash_between_publish_and_acknowledgement_delivers_the_input_again,
    shutdown_finishes_the_batch_in_hand_and_fetches_no_more,
    shutdown_finishes_the_batch_in_hand_and_fetches_no_more_pipelined,
    draining_returns_once_the_queue_is_empty,
);

const INPUT: &str = "in";
const OUTPUT: &str = "out";
const GROUP: &str = "stage";

/// A bus, watched: counts what reached `out`, checks at each
/// acknowledgement that the outputs of everything acknowledged so far are durable,
/// and can "crash" at the first acknowledgement (it then never returns).
struct Watched {
    inner: Arc<dyn Bus>,
    published_out: Arc<AtomicUsize>,
    acked: Arc<AtomicUsize>,
    violations: Arc<Mutex<Vec<String>>>,
    crash_at_ack: bool,
    reached_ack: Arc<Notify>,
}

impl Watched {
    fn new(inner: Arc<dyn Bus>, crash_at_ack: bool) -> Watched {
        Watched {
            inner,
            published_out: Arc::default(),
            acked: Arc::default(),
            violations: Arc::default(),
            crash_at_ack,
            reached_ack: Arc::default(),
        }
    }
}

struct WatchedConsumer {
    inner: Box<dyn Consumer>,
    published_out: Arc<AtomicUsize>,
    acked: Arc<AtomicUsize>,
    violations: Arc<Mutex<Vec<String>>>,
    crash_at_ack: bool,
    reached_ack: Arc<Notify>,
}

#[async_trait::async_trait]
impl Bus for Watched {
    async fn publish(&self, queue: &str, payloads: Vec<Bytes>) -> Result<SeqRange, BusError> {
        let count = payloads.len();
        let range = self.inner.publish(queue, payloads).await?;
        if queue == OUTPUT {
            self.published_out.fetch_add(count, Ordering::SeqCst);
        }
        Ok(range)
    }
    async fn subscribe(&self, queue: &str, group: &str) -> Result<Box<dyn Consumer>, BusError> {
        Ok(Box::new(WatchedConsumer {
            inner: self.inner.subscribe(queue, group).await?,
            published_out: self.published_out.clone(),
            acked: self.acked.clone(),
            violations: self.violations.clone(),
            crash_at_ack: self.crash_at_ack,
            reached_ack: self.reached_ack.clone(),
        }))
    }
    async fn read(&self, queue: &str, from: ReadFrom) -> Result<Box<dyn Reader>, BusError> {
        self.inner.read(queue, from).await
    }
    async fn delete_queue(&self, queue: &str) -> Result<(), BusError> {
        self.inner.delete_queue(queue).await
    }
    async fn stats(&self) -> Result<Vec<QueueStats>, BusError> {
        self.inner.stats().await
    }
    fn counters(&self) -> BusCounters {
        self.inner.counters()
    }
    async fn close(&self) -> Result<(), BusError> {
        self.inner.close().await
    }
}

#[async_trait::async_trait]
impl Consumer for WatchedConsumer {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        self.inner.fetch(max, wait).await
    }
    async fn ack(&mut self, ids: &[DeliveryId]) -> Result<(), BusError> {
        // The echo work publishes one output per input.
        let acked = self.acked.fetch_add(ids.len(), Ordering::SeqCst) + ids.len();
        let durable = self.published_out.load(Ordering::SeqCst);
        if durable < acked {
            self.violations.lock().unwrap().push(format!("{acked} acknowledged with {durable} outputs durable"));
        }
        if self.crash_at_ack {
            self.reached_ack.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.ack(ids).await
    }
}

/// One output per input, `out:<input>`; fails while `failing` says so, noting when
/// each attempt started; holds a batch while `hold` is set until `release` fires.
#[derive(Default)]
struct Echo {
    failing: usize,
    attempts: Vec<tokio::time::Instant>,
    acknowledged: usize,
    hold: Option<(Arc<Notify>, Arc<Notify>)>,
}

impl Work for Echo {
    type Prepared = Vec<String>;
    type Done = usize;
    type Error = String;

    async fn process(
        &mut self,
        batch: &[Delivery],
        prepared: &mut Vec<String>,
        outputs: &mut Outputs,
    ) -> Result<usize, String> {
        self.attempts.push(tokio::time::Instant::now());
        if let Some((started, release)) = self.hold.take() {
            started.notify_one();
            release.notified().await;
        }
        if self.failing > 0 {
            self.failing -= 1;
            // Outputs of a failed attempt are dropped, never published.
            outputs.push(OUTPUT, Bytes::from_static(b"from a failed attempt"));
            return Err("the far side is down".into());
        }
        assert_eq!(batch.len(), prepared.len());
        for text in prepared.iter() {
            outputs.push(OUTPUT, Bytes::from(format!("out:{text}")));
        }
        Ok(batch.len())
    }

    fn acknowledged(&mut self, done: usize) {
        self.acknowledged += done;
    }
}

fn prepare(batch: &[Delivery]) -> Vec<String> {
    texts(batch)
}

/// The first `count` outputs, waiting up to 30 s of real time for them. (Not of the
/// tokio clock: when it is paused, it jumps ahead whenever the runtime waits for the
/// bus's writer thread, so its waits say nothing about how long the bus had.)
async fn read_out(bus: &dyn Bus, count: usize) -> Vec<String> {
    let mut reader = bus.read(OUTPUT, ReadFrom::Start).await.unwrap();
    let mut all = Vec::new();
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    while all.len() < count {
        let batch = reader.fetch(count - all.len(), Duration::from_secs(1)).await.unwrap();
        assert!(
            !batch.is_empty() || std::time::Instant::now() < give_up,
            "only {} of {count} outputs arrived",
            all.len()
        );
        if batch.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        all.extend(texts(&batch));
    }
    all
}

fn outs(range: std::ops::Range<usize>) -> Vec<String> {
    names(range).into_iter().map(|n| format!("out:{n}")).collect()
}

async fn pipelined_outputs_keep_input_order_and_are_durable_before_each_acknowledgement(backend: &dyn Backend) {
    let inner = backend.open().await;
    let watched = Arc::new(Watched::new(inner.clone(), false));
    let bus: Arc<dyn Bus> = watched.clone();
    for chunk in 0..10 {
        bus.publish(INPUT, payloads(chunk * 10..chunk * 10 + 10)).await.unwrap();
    }
    let shutdown = CancellationToken::new();
    let stage = Stage::new("test", INPUT, GROUP, 7).prepare_ahead().publish_behind();
    let task = {
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut work = Echo::default();
            stage.run(bus, prepare, &mut work, &shutdown).await.map(|()| work.acknowledged)
        })
    };
    assert_eq!(read_out(bus.as_ref(), 100).await, outs(0..100));
    shutdown.cancel();
    assert_eq!(task.await.unwrap().unwrap(), 100, "every batch acknowledged before returning");
    assert!(watched.violations.lock().unwrap().is_empty(), "{:?}", watched.violations.lock().unwrap());
    let stats = bus.stats().await.unwrap();
    let input = stats.iter().find(|q| q.queue == INPUT).unwrap();
    assert_eq!(input.groups[0].acked_seq, Some(99));
    bus.close().await.unwrap();
}

async fn a_crash_between_publish_and_acknowledgement_delivers_the_input_again(backend: &dyn Backend) {
    {
        let inner = backend.open().await;
        inner.publish(INPUT, payloads(0..4)).await.unwrap();
        let watched = Arc::new(Watched::new(inner.clone(), true));
        let reached_ack = watched.reached_ack.clone();
        let bus: Arc<dyn Bus> = watched.clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(async move {
            let mut work = Echo::default();
            Stage::new("test", INPUT, GROUP, 100).run(bus, prepare, &mut work, &shutdown).await
        });
        reached_ack.notified().await;
        // The outputs are durable by the time the stage acknowledges...
        assert_eq!(watched.published_out.load(Ordering::SeqCst), 4);
        // ...and then the process dies before the acknowledgement lands.
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        drop(watched);
        inner.close().await.unwrap();
    }
    let bus = backend.open().await;
    assert_eq!(read_out(bus.as_ref(), 4).await, outs(0..4), "the outputs survived");
    let mut consumer = bus.subscribe(INPUT, GROUP).await.unwrap();
    assert_eq!(texts(&fetch_all(consumer.as_mut(), 4).await), names(0..4), "the input is delivered again");
    bus.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_work_is_retried_with_doubling_jittered_pauses_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(dir.path(), EmbeddedOptions::default()).unwrap());
    bus.publish(INPUT, payloads(0..3)).await.unwrap();
    let shutdown = CancellationToken::new();
    let (min, max) = (Duration::from_millis(100), Duration::from_millis(1000));
    let stage = Stage::new("test", INPUT, GROUP, 100).retry(min, max);
    let failures = 6;
    let task = {
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut work = Echo { failing: failures, ..Echo::default() };
            stage.run(bus, prepare, &mut work, &shutdown).await.map(|()| work)
        })
    };
    assert_eq!(read_out(bus.as_ref(), 3).await, outs(0..3), "recovered: no output of a failed attempt");
    // Once recovered, the next batch goes through at once.
    bus.publish(INPUT, payloads(3..5)).await.unwrap();
    assert_eq!(read_out(bus.as_ref(), 5).await, outs(0..5));
    shutdown.cancel();
    let work = task.await.unwrap().unwrap();
    assert_eq!(work.acknowledged, 5);
    assert_eq!(work.attempts.len(), failures + 2, "one attempt per failure, one success, the second batch");

    let pauses: Vec<Duration> = work.attempts.windows(2).take(failures).map(|w| w[1] - w[0]).collect();
    let ceilings: Vec<Duration> = (0..failures as u32).map(|i| (min * 2u32.pow(i)).min(max)).collect();
    for (pause, ceiling) in pauses.iter().zip(&ceilings) {
        assert!(*pause >= *ceiling / 2 && *pause <= *ceiling, "pause {pause:?} outside the upper half of {ceiling:?}");
    }
    assert!(pauses.iter().zip(&ceilings).any(|(p, c)| p < c), "jittered, not the bare ceilings: {pauses:?}");
    let stats = bus.stats().await.unwrap();
    assert_eq!(stats.iter().find(|q| q.queue == INPUT).unwrap().groups[0].acked_seq, Some(4));
    bus.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_while_failing_leaves_the_batch_on_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(dir.path(), EmbeddedOptions::default()).unwrap());
    bus.publish(INPUT, payloads(0..2)).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = {
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut work = Echo { failing: usize::MAX, ..Echo::default() };
            Stage::new("test", INPUT, GROUP, 100).run(bus, prepare, &mut work, &shutdown).await.map(|()| work)
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    shutdown.cancel();
    let work = task.await.unwrap().unwrap();
    assert!(work.attempts.len() > 2 && work.acknowledged == 0);
    let stats = bus.stats().await.unwrap();
    let input = stats.iter().find(|q| q.queue == INPUT).unwrap();
    assert_eq!(input.groups[0].acked_seq, None, "nothing acknowledged");
    assert!(stats.iter().all(|q| q.queue != OUTPUT || q.next_seq == 0), "nothing published");
    bus.close().await.unwrap();
}

async fn shutdown_finishes_the_batch_in_hand_and_fetches_no_more(backend: &dyn Backend) {
    shutdown_finishes_the_batch_in_hand(backend, false).await;
}

async fn shutdown_finishes_the_batch_in_hand_and_fetches_no_more_pipelined(backend: &dyn Backend) {
    shutdown_finishes_the_batch_in_hand(backend, true).await;
}

async fn shutdown_finishes_the_batch_in_hand(backend: &dyn Backend, pipelined: bool) {
    let bus = backend.open().await;
    bus.publish(INPUT, payloads(0..3)).await.unwrap();
    let shutdown = CancellationToken::new();
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let mut stage = Stage::new("test", INPUT, GROUP, 3);
    if pipelined {
        stage = stage.prepare_ahead().publish_behind();
    }
    let task = {
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        let hold = Some((started.clone(), release.clone()));
        tokio::spawn(async move {
            let mut work = Echo { hold, ..Echo::default() };
            stage.run(bus, prepare, &mut work, &shutdown).await.map(|()| work.acknowledged)
        })
    };
    started.notified().await;
    // Arrives while the batch is being worked on, after shutdown: not taken.
    shutdown.cancel();
    bus.publish(INPUT, payloads(3..6)).await.unwrap();
    release.notify_one();
    assert_eq!(task.await.unwrap().unwrap(), 3, "pipelined: {pipelined}");
    assert_eq!(read_out(bus.as_ref(), 3).await, outs(0..3));
    let stats = bus.stats().await.unwrap();
    let input = stats.iter().find(|q| q.queue == INPUT).unwrap();
    assert_eq!(input.groups[0].acked_seq, Some(2), "the batch in hand is acknowledged, pipelined: {pipelined}");
    let mut consumer = bus.subscribe(INPUT, GROUP).await.unwrap();
    assert_eq!(texts(&fetch_all(consumer.as_mut(), 3).await), names(3..6), "the rest waits on the bus");
    drop(consumer);
    bus.close().await.unwrap();
}

async fn draining_returns_once_the_queue_is_empty(backend: &dyn Backend) {
    let bus = backend.open().await;
    bus.publish(INPUT, payloads(0..20)).await.unwrap();
    let drain = CancellationToken::new();
    drain.cancel();
    let stage = Stage::new("test", INPUT, GROUP, 6).idle_wait(Duration::from_secs(3600)).prepare_ahead().drain(drain);
    let mut work = Echo::default();
    stage.run(bus.clone(), prepare, &mut work, &CancellationToken::new()).await.unwrap();
    assert_eq!(work.acknowledged, 20);
    assert_eq!(read_out(bus.as_ref(), 20).await, outs(0..20));
    bus.close().await.unwrap();
}
