//! The supervisor with connectors that misbehave on purpose: failing, panicking and
//! hanging connectors are restarted with backoff, sunk after too many failures, and
//! never disturb a healthy neighbour. `shutdown.rs`: a whole node stopping in stages;
//! `fleet.rs`: a node that cannot renew its lease stops its connector in time.
//! `http_server.rs`: the HTTP listener's timeouts and cap against clients that hold on.

mod fleet;
mod http_server;
mod shutdown;

use flotilla_test_support::TestNode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use flotilla_bus::ReadFrom;
use flotilla_connector::{Connector, ConnectorContext, ConnectorState};
use flotilla_core::Message;
use flotilla_node::config::RestartPolicy;
use flotilla_node::supervisor::supervise;

enum Behaviour {
    Fail,
    Panic,
    /// Emits a message every 10 ms until shut down.
    Tick,
}

struct TestConnector {
    behaviour: Behaviour,
    runs: AtomicU32,
}

#[async_trait::async_trait]
impl Connector for TestConnector {
    async fn run(&self, ctx: &ConnectorContext) -> anyhow::Result<()> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        match self.behaviour {
            Behaviour::Fail => anyhow::bail!("failure number {run}"),
            Behaviour::Panic => panic!("panic number {run}"),
            Behaviour::Tick => loop {
                tokio::select! {
                    _ = ctx.shutdown().cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {
                        let mut message = Message::new();
                        message.set("run", run);
                        ctx.emit(message).await?;
                    }
                }
            },
        }
    }
}

flotilla_test_support::harness!(Harness);

impl Harness {
    async fn new() -> Harness {
        Harness(TestNode::new().await)
    }

    fn spawn(
        &self,
        name: &str,
        behaviour: Behaviour,
        policy: RestartPolicy,
    ) -> (Arc<TestConnector>, tokio::task::JoinHandle<()>) {
        let connector = Arc::new(TestConnector { behaviour, runs: AtomicU32::new(0) });
        let ctx = self.0.context(name, "test", &format!("q-{name}"));
        let handle = tokio::spawn(supervise(connector.clone(), ctx, policy, self.0.board.clone()));
        (connector, handle)
    }
}

fn quick(max_restarts: u32) -> RestartPolicy {
    RestartPolicy { min_backoff: Duration::from_millis(10), max_backoff: Duration::from_millis(40), max_restarts }
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_panicking_connectors_are_restarted_and_sunk_while_a_healthy_one_runs_on() {
    let h = Harness::new().await;
    let (healthy, healthy_task) = h.spawn("healthy", Behaviour::Tick, quick(0));
    let (failing, _) = h.spawn("failing", Behaviour::Fail, quick(4));
    let (panicking, _) = h.spawn("panicking", Behaviour::Panic, quick(3));

    wait_until("the failing connector is sunk", || h.board.get("failing").unwrap().state == ConnectorState::Sunk).await;
    wait_until("the panicking connector is sunk", || h.board.get("panicking").unwrap().state == ConnectorState::Sunk)
        .await;
    assert_eq!(failing.runs.load(Ordering::SeqCst), 4, "sunk after max_restarts consecutive failures");
    assert_eq!(panicking.runs.load(Ordering::SeqCst), 3);
    let failing_status = h.board.get("failing").unwrap();
    assert_eq!(failing_status.restarts, 3);
    assert_eq!(failing_status.last_error.as_deref(), Some("failure number 3"));
    assert_eq!(h.board.get("panicking").unwrap().last_error.as_deref(), Some("panicked: panic number 2"));

    // The healthy connector never stopped ticking meanwhile.
    assert_eq!(h.board.get("healthy").unwrap().state, ConnectorState::Running);
    assert_eq!(healthy.runs.load(Ordering::SeqCst), 1);
    let before = h.board.get("healthy").unwrap().emitted;
    wait_until("the healthy connector keeps emitting", || h.board.get("healthy").unwrap().emitted > before + 3).await;

    h.shutdown.cancel();
    healthy_task.await.unwrap();
    assert_eq!(h.board.get("healthy").unwrap().state, ConnectorState::Stopped);
    let mut reader = h.bus.read("q-healthy", ReadFrom::Start).await.unwrap();
    let messages = reader.fetch(10_000, Duration::from_millis(100)).await.unwrap();
    let first: serde_json::Value = serde_json::from_slice(&messages[0].payload).unwrap();
    assert_eq!(
        (first["key"].as_str(), first["plugin"].as_str(), first["hostname"].as_str()),
        (Some("healthy"), Some("test"), Some(flotilla_test_support::TEST_HOST))
    );
    assert!(first["id"].is_string() && first["lastupdate"].is_number());
}

/// On tokio's paused clock (after the store is open): the backoff waits take no real
/// time, and the elapsed time they add up to is exact.
#[tokio::test]
async fn backoff_grows_between_restarts() {
    let h = Harness::new().await;
    tokio::time::pause();
    let policy = RestartPolicy {
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(400),
        max_restarts: 6,
    };
    let (failing, _) = h.spawn("failing", Behaviour::Fail, policy);
    let started = tokio::time::Instant::now();
    wait_until("sunk", || h.board.get("failing").unwrap().state == ConnectorState::Sunk).await;
    // Five waits drawn from [c/2, c] with c = 20, 40, 80, 160, 320 ms: at least 310 ms,
    // at most 620 ms (and one 5 ms poll).
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(310) && elapsed <= Duration::from_millis(625), "{elapsed:?}");
    assert_eq!(failing.runs.load(Ordering::SeqCst), 6);
}
