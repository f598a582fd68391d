//! The node's fleet side in process, on a throwaway redis-server: when its renewals
//! stop being answered, a node stops its connector while the lease is still held in
//! Redis (before anyone else could take it); once the lease has lapsed, it is acquired
//! again with a larger fencing number. A reload restarts a changed connector under
//! the lease it holds, releases a removed one's and places a new one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_bus::fleet::{Fleet, LeaseView, Member, MemberView};
use flotilla_bus::{BusError, RedisBus, RedisFleet, RedisOptions, SeqRange};
use flotilla_connector::{Connector, ConnectorContext, ConnectorState, NodeServices};
use flotilla_core::Message;
use flotilla_node::config::RestartPolicy;
use flotilla_node::fleet::{FleetRuntime, Placed, member};
use flotilla_node::reload::ReloadReport;
use flotilla_test_support::{RedisServer, TestNode};
use tokio_util::sync::CancellationToken;

/// The real Redis fleet, except that renewals can be made to never answer (a Redis
/// that stopped answering this node), to show what the node does on its own.
struct Unanswered {
    fleet: RedisFleet,
    renewals_hang: AtomicBool,
}

#[async_trait::async_trait]
impl Fleet for Unanswered {
    fn lease_ttl(&self) -> Duration {
        self.fleet.lease_ttl()
    }
    async fn join(&self, member: &Member) -> Result<(), BusError> {
        self.fleet.join(member).await
    }
    async fn leave(&self, member: &Member) -> Result<(), BusError> {
        self.fleet.leave(member).await
    }
    async fn members(&self) -> Result<Vec<MemberView>, BusError> {
        self.fleet.members().await
    }
    async fn acquire(&self, resource: &str, member: &Member) -> Result<Option<u64>, BusError> {
        self.fleet.acquire(resource, member).await
    }
    async fn renew(&self, resource: &str, member: &Member, fence: u64) -> Result<bool, BusError> {
        if self.renewals_hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.fleet.renew(resource, member, fence).await
    }
    async fn release(&self, resource: &str, member: &Member, fence: u64) -> Result<(), BusError> {
        self.fleet.release(resource, member, fence).await
    }
    async fn leases(&self) -> Result<Vec<LeaseView>, BusError> {
        self.fleet.leases().await
    }
    async fn publish_fenced(
        &self,
        resource: &str,
        member: &Member,
        fence: u64,
        queue: &str,
        payloads: Vec<Bytes>,
    ) -> Result<SeqRange, BusError> {
        self.fleet.publish_fenced(resource, member, fence, queue, payloads).await
    }
}

/// Emits every 10 ms while it runs; says whether it runs.
#[derive(Default)]
struct Ticker {
    running: AtomicBool,
    runs: AtomicU32,
    stopped_at: std::sync::Mutex<Option<Instant>>,
}

/// Records that the ticker stopped when its run ends, however it ends: returning, or
/// aborted by the supervisor after its grace period (an emit that was slow to answer on
/// a loaded machine), when the future is dropped. Only the first stop is kept: the node
/// may take the released lease back and run it again before a loaded test looks.
struct Stopping<'a>(&'a Ticker);

impl Drop for Stopping<'_> {
    fn drop(&mut self) {
        self.0.stopped_at.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(Instant::now());
        self.0.running.store(false, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Connector for Ticker {
    async fn run(&self, ctx: &ConnectorContext) -> anyhow::Result<()> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.running.store(true, Ordering::SeqCst);
        let _stopping = Stopping(self);
        loop {
            tokio::select! {
                _ = ctx.shutdown().cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(10)) => {
                    if let Err(error) = ctx.emit(Message::new()).await {
                        return Err(error.into());
                    }
                }
            }
        }
    }
}

async fn until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let give_up = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_renew_stops_its_connector_while_the_lease_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    // Long enough that its margins (the stop comes by 5/6 of it) outlast the scheduling
    // delays of a loaded two-core machine, and the expiry read after blocking (a lower
    // bound: the read's own delay counts against the node) does not eat them.
    let ttl = Duration::from_millis(3000);
    let bus = RedisBus::open(RedisOptions { lease_ttl: ttl, ..RedisOptions::new(redis.url(), "alpha") }).await.unwrap();
    let fleet = Arc::new(Unanswered { fleet: RedisFleet::new(&bus), renewals_hang: AtomicBool::new(false) });
    let node = TestNode::new().await;
    let services = NodeServices { bus: Arc::new(bus.clone()), ..node.services() };
    let me = member("alpha", "here");
    fleet.join(&me).await.unwrap();
    let ticker = Arc::new(Ticker::default());
    let intake = CancellationToken::new();
    let placed = Placed {
        name: "c".to_string(),
        kind: "test".to_string(),
        queue: "q".to_string(),
        restart: RestartPolicy::default(),
        connector: ticker.clone(),
        nodes: None,
        fingerprint: "1".to_string(),
    };
    let runtime = FleetRuntime::start(fleet.clone(), me.clone(), vec![placed], &services, &node.board, &intake);
    let lease = async || fleet.leases().await.unwrap().into_iter().find(|l| l.resource == "connector:c");
    until("the connector runs", Duration::from_secs(10), async || ticker.running.load(Ordering::SeqCst)).await;
    let first = lease().await.expect("held").fence;
    assert_eq!(node.board.get("c").unwrap().state, ConnectorState::Running);

    // Renewals stop being answered: the connector stops while Redis still holds the
    // lease (so nobody else can run it yet).
    fleet.renewals_hang.store(true, Ordering::SeqCst);
    *ticker.stopped_at.lock().unwrap() = None; // A stop before this one is not the one measured.
    // A renewal already sent may still land: read the expiry once it has (it takes a
    // round trip), so the bound below is the lease's real one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let blocked = Instant::now();
    let held = lease().await.expect("held");
    let expires = blocked + Duration::from_millis(held.expires_in_ms);
    // The bound is loose (the last renewal may have landed up to T/3 before the block,
    // and the stop comes by 5/6·T after it); what matters is the check after it: the
    // connector stopped before the lease could lapse.
    until("the connector stops", ttl * 2, async || ticker.stopped_at.lock().unwrap().is_some()).await;
    let stopped = ticker.stopped_at.lock().unwrap().expect("it recorded its stop");
    assert!(stopped < expires, "stopped {:?} after the lease lapsed", stopped - expires);
    eprintln!("stopped {:?} after renewals hung, {:?} before the lease lapsed", stopped - blocked, expires - stopped);

    // Once it has lapsed, the node takes it again (acquiring still works) under a
    // larger fencing number, and the connector runs again.
    until("the lease lapses", ttl * 2, async || lease().await.is_none_or(|l| l.fence != first)).await;
    until("the connector runs again", Duration::from_secs(10), async || ticker.runs.load(Ordering::SeqCst) == 2).await;
    assert!(lease().await.expect("held again").fence > first);

    intake.cancel();
    runtime.stop().await;
    assert!(!ticker.running.load(Ordering::SeqCst));
}

fn placed(name: &str, connector: Arc<Ticker>, fingerprint: &str) -> Placed {
    Placed {
        name: name.to_string(),
        kind: "test".to_string(),
        queue: "q".to_string(),
        restart: RestartPolicy::default(),
        connector,
        nodes: None,
        fingerprint: fingerprint.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_restarts_a_changed_connector_under_its_lease_releases_a_removed_one_and_places_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&dir.path().join("redis"));
    let ttl = Duration::from_millis(3000);
    let bus = RedisBus::open(RedisOptions { lease_ttl: ttl, ..RedisOptions::new(redis.url(), "alpha") }).await.unwrap();
    let fleet: Arc<dyn Fleet> = Arc::new(RedisFleet::new(&bus));
    let node = TestNode::new().await;
    let services = NodeServices { bus: Arc::new(bus.clone()), ..node.services() };
    let me = member("alpha", "here");
    fleet.join(&me).await.unwrap();
    let intake = CancellationToken::new();
    let (keep, change, dropped) =
        (Arc::new(Ticker::default()), Arc::new(Ticker::default()), Arc::new(Ticker::default()));
    let mut runtime = FleetRuntime::start(
        fleet.clone(),
        me.clone(),
        vec![
            placed("keep", keep.clone(), "k1"),
            placed("change", change.clone(), "c1"),
            placed("drop", dropped.clone(), "d1"),
        ],
        &services,
        &node.board,
        &intake,
    );
    let fence = async |name: &str| {
        fleet.leases().await.unwrap().into_iter().find(|l| l.resource == format!("connector:{name}")).map(|l| l.fence)
    };
    until("all three run", Duration::from_secs(15), async || {
        [&keep, &change, &dropped].iter().all(|t| t.running.load(Ordering::SeqCst))
    })
    .await;
    let change_fence = fence("change").await.expect("held");

    let (changed, added) = (Arc::new(Ticker::default()), Arc::new(Ticker::default()));
    let mut report = ReloadReport::default();
    runtime
        .apply(
            vec![
                placed("keep", keep.clone(), "k1"),
                placed("change", changed.clone(), "c2"),
                placed("add", added.clone(), "a1"),
            ],
            &mut report,
        )
        .await;
    assert_eq!(report.unchanged, ["keep"]);
    assert_eq!(report.restarted, ["change"]);
    assert_eq!(report.stopped, ["drop"]);
    assert_eq!(report.started, ["add"]);

    // The removed one stopped and gave its lease back; it is gone from the board.
    assert!(!dropped.running.load(Ordering::SeqCst));
    until("the removed connector's lease is released", Duration::from_secs(5), async || fence("drop").await.is_none())
        .await;
    assert!(node.board.get("drop").is_none());
    // The changed one runs its new settings, under the same lease; the old instance stopped.
    until("the changed connector runs again", Duration::from_secs(10), async || changed.running.load(Ordering::SeqCst))
        .await;
    assert!(!change.running.load(Ordering::SeqCst));
    assert_eq!(fence("change").await, Some(change_fence), "the changed connector kept its lease");
    // The new one is placed; the unchanged one never stopped.
    until("the new connector runs", Duration::from_secs(15), async || added.running.load(Ordering::SeqCst)).await;
    assert_eq!(keep.runs.load(Ordering::SeqCst), 1);
    assert!(keep.running.load(Ordering::SeqCst));

    intake.cancel();
    runtime.stop().await;
}
