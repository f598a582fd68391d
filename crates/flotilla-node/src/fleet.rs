//! The node in a fleet (SPEC §5.1): it joins with a heartbeat, and runs a connector
//! only while it holds that connector's lease, written against [`Fleet`] alone.
//!
//! # Timing (`lease_ttl` = T)
//!
//! One loop ticks every T/3: heartbeat, renew what it holds, then place. A lease counts
//! as valid until T·2/3 after the *sending* of its last successful renewal (Redis set
//! the expiry later than that, so the lease lasts at least until send + T). At that
//! moment the connector is told to stop (even if the loop itself is stuck: each
//! connector's own task watches the deadline); it gets T/6 to finish, then is aborted,
//! so it is gone by T·5/6, leaving T/6 of margin for scheduling and for Redis's and
//! this machine's clocks running at slightly different rates. Two renewals may fail
//! in a row (a slow or restarting Redis) before a connector stops.
//!
//! # Fencing
//!
//! A connector's context gets a [`FencedBus`]: every publish it makes through its
//! context (`emit`, `emit_to`, rules' buffered deliveries) goes through
//! [`Fleet::publish_fenced`], which Redis refuses unless the lease is still held with
//! the same fencing number. Not fenced: its outbox acknowledgements (at-least-once
//! anyway), its store writes, and what it does outside (an IRC connection): those
//! are kept single by the stop-before-expiry timing above.
//!
//! # Placement
//!
//! With N connectors and k live nodes, each node's share is ⌈N/k⌉. A node below its
//! share takes free connectors (those whose `nodes:` list allows it), in the order of
//! a hash of (node, connector) so nodes prefer different ones; a node above its share
//! stops and releases the excess (among connectors some other live node may run), and
//! does not take them back for one `lease_ttl`; and while some node has fewer than
//! ⌊N/k⌋ and no connector is free, the fullest node (the first by name among equals)
//! hands one over, so 4
//! connectors over 3 nodes end 2, 1, 1 rather than 2, 2, 0. A connector left free for a whole
//! `lease_ttl` is taken by any allowed node whatever its share (so `nodes:` lists that
//! skew the counts never leave one unowned). Nodes are expected to share the same
//! connector configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use flotilla_bus::fleet::{Fleet, LeaseView, Member, MemberView, NameTaken};
use flotilla_bus::{Bus, BusCounters, BusError, Consumer, QueueStats, ReadFrom, Reader, SeqRange};
use flotilla_connector::{Connector, ConnectorState, NodeServices, StatusBoard};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::RestartPolicy;
use crate::supervisor;

/// The lease resource of connector `name`.
pub fn resource(connector: &str) -> String {
    format!("connector:{connector}")
}

/// The fleet as `flotilla status` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FleetView {
    pub nodes: Vec<MemberView>,
    pub leases: Vec<LeaseView>,
    /// Why the fleet could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads the fleet for status.
pub async fn view(fleet: &dyn Fleet) -> FleetView {
    let nodes = fleet.members().await;
    let leases = fleet.leases().await;
    match (nodes, leases) {
        (Ok(nodes), Ok(leases)) => FleetView { nodes, leases, error: None },
        (Err(e), _) | (_, Err(e)) => FleetView { error: Some(flotilla_core::error_chain(&e)), ..FleetView::default() },
    }
}

/// This process as a member: `name` plus a random instance id.
pub fn member(name: &str, hostname: &str) -> Member {
    Member {
        name: name.to_string(),
        instance: format!("{:016x}", flotilla_core::random::next_u64()),
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        hostname: hostname.to_string(),
        started_at: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs(),
    }
}

/// Joins the fleet, refusing clearly when the name is taken.
pub async fn join(fleet: &dyn Fleet, member: &Member) -> anyhow::Result<()> {
    fleet.join(member).await.map_err(|error| match name_taken(&error) {
        Some(taken) => anyhow::anyhow!("{taken}"),
        None => anyhow::Error::new(error).context("cannot join the fleet"),
    })
}

fn name_taken(error: &BusError) -> Option<&NameTaken> {
    match error {
        BusError::Backend { source, .. } => source.downcast_ref::<NameTaken>(),
        _ => None,
    }
}

/// A lease this node holds, as its connector's task sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub fence: u64,
    /// Stop the connector at this moment unless a renewal moved it.
    pub valid_until: Instant,
}

/// A connector the fleet places.
pub struct Placed {
    pub name: String,
    pub kind: String,
    pub queue: String,
    pub restart: RestartPolicy,
    pub connector: Arc<dyn Connector>,
    /// `connectors.<name>.nodes`: where it may run (`None`: any).
    pub nodes: Option<Vec<String>>,
    /// Its section as written: a reload restarts it only when this changed.
    pub fingerprint: String,
}

/// A change to the set of connectors, sent to the placement loop by a reload.
enum SlotChange {
    Add(Slot),
    /// Stop placing it; answered once the slot is gone (its connector told to stop).
    Remove(String, tokio::sync::oneshot::Sender<()>),
}

/// One placed connector's task, as the runtime tracks it.
struct PlacedTask {
    fingerprint: String,
    /// The configuration it runs with; a reload sends a changed one.
    plan: watch::Sender<Arc<Placed>>,
    /// Cancelled when a reload removes it (a child of the intake token).
    removed: CancellationToken,
    task: JoinHandle<()>,
}

/// Runs the fleet side of a node: the placement loop and one task per connector.
pub struct FleetRuntime {
    fleet: Arc<dyn Fleet>,
    member: Member,
    loop_task: JoinHandle<()>,
    connectors: BTreeMap<String, PlacedTask>,
    changes: tokio::sync::mpsc::UnboundedSender<SlotChange>,
    services: NodeServices,
    board: StatusBoard,
    intake: CancellationToken,
    stop: CancellationToken,
}

impl FleetRuntime {
    /// Starts the loop and the connectors' tasks (each waits for its lease). `intake`
    /// stops the connectors; [`FleetRuntime::stop`] the loop.
    pub fn start(
        fleet: Arc<dyn Fleet>,
        member: Member,
        placed: Vec<Placed>,
        services: &NodeServices,
        board: &StatusBoard,
        intake: &CancellationToken,
    ) -> FleetRuntime {
        let ttl = fleet.lease_ttl();
        let (changes, changes_rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let mut runtime = FleetRuntime {
            fleet: fleet.clone(),
            member: member.clone(),
            loop_task: tokio::spawn(async {}),
            connectors: BTreeMap::new(),
            changes,
            services: services.clone(),
            board: board.clone(),
            intake: intake.clone(),
            stop: stop.clone(),
        };
        // The first slots are the loop's before it starts, so its first tick places them.
        let slots = placed.into_iter().map(|plan| runtime.start_task(plan)).collect();
        let placement = Placement { fleet, member, slots, ttl, intake: intake.clone() };
        runtime.loop_task = tokio::spawn(placement.run(changes_rx, stop));
        runtime
    }

    /// Places one more connector while the loop runs.
    fn add(&mut self, plan: Placed) {
        let slot = self.start_task(plan);
        let _ = self.changes.send(SlotChange::Add(slot));
    }

    /// Starts a connector's task, waiting for its lease, and returns its slot for the loop.
    fn start_task(&mut self, plan: Placed) -> Slot {
        let (grant, grants) = watch::channel(None);
        self.board.register(&plan.name, &plan.kind, ConnectorState::Stopped);
        let slot = Slot {
            connector: plan.name.clone(),
            resource: resource(&plan.name),
            allowed: plan.nodes.clone(),
            grant,
            held: None,
            free_since: None,
            not_before: None,
        };
        let name = plan.name.clone();
        let fingerprint = plan.fingerprint.clone();
        let (plan, plans) = watch::channel(Arc::new(plan));
        let removed = self.intake.child_token();
        let task = tokio::spawn(run_placed(
            plans,
            Lease { fleet: self.fleet.clone(), member: self.member.clone(), grants },
            self.services.clone(),
            self.board.clone(),
            removed.clone(),
            self.fleet.lease_ttl() / 6,
        ));
        self.connectors.insert(name, PlacedTask { fingerprint, plan, removed, task });
        slot
    }

    /// Applies a reloaded configuration's connectors: new ones are placed, removed ones
    /// stop and release their leases, changed ones restart with their new settings
    /// under the lease they hold (so they stay on this node), unchanged ones are left
    /// alone.
    pub async fn apply(&mut self, placed: Vec<Placed>, report: &mut crate::reload::ReloadReport) {
        let wanted: BTreeSet<String> = placed.iter().map(|p| p.name.clone()).collect();
        let gone: Vec<String> = self.connectors.keys().filter(|name| !wanted.contains(*name)).cloned().collect();
        for name in gone {
            self.remove(&name).await;
            self.board.remove(&name);
            report.stopped.push(name);
        }
        for plan in placed {
            match self.connectors.get_mut(&plan.name) {
                Some(running) if running.fingerprint == plan.fingerprint => report.unchanged.push(plan.name),
                Some(running) => {
                    // `nodes:` is read by the loop's slot; a changed list applies after
                    // a restart of the slot, so a connector whose list changed is placed anew.
                    let moved = running.plan.borrow().nodes != plan.nodes;
                    report.restarted.push(plan.name.clone());
                    if moved {
                        self.remove(&plan.name).await;
                        self.add(plan);
                    } else {
                        running.fingerprint = plan.fingerprint.clone();
                        running.plan.send_replace(Arc::new(plan));
                    }
                }
                None => {
                    report.started.push(plan.name.clone());
                    self.add(plan);
                }
            }
        }
    }

    /// Stops placing a connector: its slot leaves the loop (its connector told to stop),
    /// then its task ends once the connector has stopped and the lease is released.
    async fn remove(&mut self, name: &str) {
        let (done, removed) = tokio::sync::oneshot::channel();
        if self.changes.send(SlotChange::Remove(name.to_string(), done)).is_ok() {
            let _ = removed.await;
        }
        if let Some(placed) = self.connectors.remove(name) {
            placed.removed.cancel();
            let _ = placed.task.await;
        }
    }

    /// Waits for the connectors (after intake was cancelled), ends the loop, releases
    /// what is left and leaves the fleet.
    pub async fn stop(self) {
        for (_, placed) in self.connectors {
            if let Err(error) = placed.task.await {
                tracing::error!(%error, "A connector's fleet task failed.");
            }
        }
        self.stop.cancel();
        let _ = self.loop_task.await;
        if let Err(error) = self.fleet.leave(&self.member).await {
            tracing::warn!(error = %flotilla_core::error_chain(&error), "Could not leave the fleet; it notices within bus.lease_ttl.");
        }
    }
}

/// One connector as the loop tracks it.
struct Slot {
    connector: String,
    resource: String,
    allowed: Option<Vec<String>>,
    grant: watch::Sender<Option<Grant>>,
    /// Held by this node: fencing number and when the last successful renewal was sent.
    held: Option<(u64, Instant)>,
    /// Seen free (by nobody) since.
    free_since: Option<Instant>,
    /// Released for balance: not taken back before this.
    not_before: Option<Instant>,
}

impl Slot {
    fn allows(&self, node: &str) -> bool {
        self.allowed.as_ref().is_none_or(|nodes| nodes.iter().any(|n| n == node))
    }

    /// Stops the connector (its task releases the lease once it has stopped).
    fn revoke(&mut self) {
        self.held = None;
        self.grant.send_replace(None);
    }
}

struct Placement {
    fleet: Arc<dyn Fleet>,
    member: Member,
    slots: Vec<Slot>,
    ttl: Duration,
    /// Once cancelled (the node stops), nothing new is taken.
    intake: CancellationToken,
}

impl Placement {
    async fn run(mut self, mut changes: tokio::sync::mpsc::UnboundedReceiver<SlotChange>, stop: CancellationToken) {
        let tick = self.ttl / 3;
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                Some(change) = changes.recv() => {
                    self.change(change);
                    continue;
                }
                _ = stop.cancelled() => break,
            }
            self.tick().await;
        }
        // The connectors' tasks are gone: release what they could not.
        for slot in &mut self.slots {
            if let Some((fence, _)) = slot.held {
                let _ = self.fleet.release(&slot.resource, &self.member, fence).await;
            }
            slot.revoke();
        }
    }

    fn give_up(&self) -> Duration {
        self.ttl * 2 / 3
    }

    /// A reload added or removed a connector. A removed one's connector is told to
    /// stop (its task releases the lease once it has stopped); should this loop have
    /// taken the lease a moment before and the task not have started it yet, nobody
    /// releases it and it lapses after `lease_ttl`, harmless for a connector that no
    /// longer exists.
    fn change(&mut self, change: SlotChange) {
        match change {
            SlotChange::Add(slot) => self.slots.push(slot),
            SlotChange::Remove(name, done) => {
                if let Some(i) = self.slots.iter().position(|s| s.connector == name) {
                    self.slots.remove(i).revoke();
                }
                let _ = done.send(());
            }
        }
    }

    async fn tick(&mut self) {
        let budget = self.ttl / 3;
        let member_ok = match tokio::time::timeout(budget, self.fleet.join(&self.member)).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                if name_taken(&error).is_some() {
                    tracing::error!(error = %flotilla_core::error_chain(&error),
                        "Another node took this node's name while its heartbeat lapsed; stopping every connector here.");
                    for slot in &mut self.slots {
                        slot.revoke();
                    }
                } else {
                    tracing::warn!(error = %flotilla_core::error_chain(&error), "The fleet heartbeat failed.");
                }
                false
            }
            Err(_) => {
                tracing::warn!("The fleet heartbeat timed out.");
                false
            }
        };
        self.renew(budget).await;
        if member_ok
            && !self.intake.is_cancelled()
            && let Err(error) = self.place(budget).await
        {
            tracing::warn!(error = %flotilla_core::error_chain(&error), "Could not read the fleet to place connectors.");
        }
    }

    async fn renew(&mut self, budget: Duration) {
        let give_up = self.give_up();
        for slot in &mut self.slots {
            let Some((fence, renewed)) = slot.held else { continue };
            if renewed.elapsed() >= give_up {
                tracing::warn!(connector = %slot.connector, fence, "The lease was not renewed in time; the connector stops.");
                slot.revoke();
                continue;
            }
            let sent = Instant::now();
            match tokio::time::timeout(budget, self.fleet.renew(&slot.resource, &self.member, fence)).await {
                Ok(Ok(true)) => {
                    slot.held = Some((fence, sent));
                    slot.grant.send_replace(Some(Grant { fence, valid_until: sent + give_up }));
                }
                Ok(Ok(false)) => {
                    tracing::warn!(connector = %slot.connector, fence, "The lease is no longer this node's; the connector stops.");
                    slot.revoke();
                }
                Ok(Err(error)) => {
                    tracing::warn!(connector = %slot.connector, error = %flotilla_core::error_chain(&error),
                    "Could not renew the lease; the connector stops if this lasts.")
                }
                Err(_) => tracing::warn!(connector = %slot.connector, "Renewing the lease timed out."),
            }
        }
    }

    async fn place(&mut self, budget: Duration) -> Result<(), BusError> {
        let timed_out =
            |what: &str| BusError::backend(what.to_string(), std::io::Error::from(std::io::ErrorKind::TimedOut));
        let members =
            tokio::time::timeout(budget, self.fleet.members()).await.map_err(|_| timed_out("listing members"))??;
        let leases =
            tokio::time::timeout(budget, self.fleet.leases()).await.map_err(|_| timed_out("listing leases"))??;
        let me = self.member.name.clone();
        let mut live: BTreeSet<String> = members.iter().filter(|m| m.alive).map(|m| m.member.name.clone()).collect();
        live.insert(me.clone());
        let owners: BTreeMap<&str, &LeaseView> = leases.iter().map(|l| (l.resource.as_str(), l)).collect();
        let share = self.slots.len().div_ceil(live.len());
        let now = Instant::now();
        let mut owned = self.slots.iter().filter(|s| s.held.is_some()).count();

        // Above the share: release the excess that another live node may run. At the
        // share but above ⌊N/k⌋ while another node is below it (4 over 3 nodes: 2, 2,
        // 0): the fullest node (the first by name among equals) releases one it may run.
        let floor = self.slots.len() / live.len();
        let mut counts: BTreeMap<&str, usize> = live.iter().map(|n| (n.as_str(), 0)).collect();
        for lease in &leases {
            if let Some(count) = counts.get_mut(lease.node.as_str()) {
                *count += 1;
            }
        }
        counts.insert(me.as_str(), owned);
        let needy: Vec<&str> = counts.iter().filter(|(n, c)| **n != me && **c < floor).map(|(n, _)| *n).collect();
        // One hand-over at a time: none while a connector is free for the taking.
        let any_free = self.slots.iter().any(|s| s.held.is_none() && !owners.contains_key(s.resource.as_str()));
        let fullest = counts.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(n, _)| *n);
        let (excess, takers): (usize, Vec<&str>) = if owned > share {
            (owned - share, live.iter().map(String::as_str).filter(|n| *n != me).collect())
        } else if owned > floor && !needy.is_empty() && fullest == Some(me.as_str()) && !any_free {
            (1, needy)
        } else {
            (0, Vec::new())
        };
        if excess > 0 {
            let mut movable: Vec<usize> = (0..self.slots.len())
                .filter(|&i| {
                    let slot = &self.slots[i];
                    slot.held.is_some() && takers.iter().any(|n| slot.allows(n))
                })
                .collect();
            movable.sort_by_key(|&i| score(&me, &self.slots[i].connector));
            for i in movable.into_iter().take(excess) {
                let slot = &mut self.slots[i];
                tracing::info!(connector = %slot.connector, share, nodes = live.len(),
                    "Handing a connector over to even out the fleet.");
                slot.revoke();
                slot.not_before = Some(now + self.ttl);
                owned -= 1;
            }
        }

        // Free connectors this node may run, the ones it prefers first.
        let mut free: Vec<usize> = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.held.is_some() || owners.contains_key(slot.resource.as_str()) {
                slot.free_since = None;
                continue;
            }
            slot.free_since.get_or_insert(now);
            if slot.allows(&me) && slot.not_before.is_none_or(|t| now >= t) {
                free.push(i);
            }
        }
        free.sort_by_key(|&i| std::cmp::Reverse(score(&me, &self.slots[i].connector)));
        let give_up = self.give_up();
        for i in free {
            let slot = &mut self.slots[i];
            let abandoned = slot.free_since.is_some_and(|t| now.duration_since(t) >= self.ttl);
            if owned >= share && !abandoned {
                continue;
            }
            let sent = Instant::now();
            match tokio::time::timeout(budget, self.fleet.acquire(&slot.resource, &self.member)).await {
                Ok(Ok(Some(fence))) => {
                    tracing::info!(connector = %slot.connector, fence, "This node now owns the connector.");
                    slot.held = Some((fence, sent));
                    slot.free_since = None;
                    slot.grant.send_replace(Some(Grant { fence, valid_until: sent + give_up }));
                    owned += 1;
                }
                Ok(Ok(None)) => slot.free_since = None, // Another node was quicker.
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(timed_out("acquiring a lease")),
            }
        }
        Ok(())
    }
}

/// A node's preference for a connector (rendezvous hashing: FNV-1a of both names).
fn score(node: &str, connector: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node.bytes().chain([0]).chain(connector.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What one connector's task knows of its lease.
#[derive(Clone)]
struct Lease {
    fleet: Arc<dyn Fleet>,
    member: Member,
    grants: watch::Receiver<Option<Grant>>,
}

/// Why a placed connector stopped when a reload changed its settings.
const RECONFIGURED: &str = "its configuration changed";

/// One connector under the fleet: runs it under the supervisor while a grant is
/// valid, stops it when the grant goes or its deadline passes, then releases the lease.
async fn run_placed(
    mut plans: watch::Receiver<Arc<Placed>>,
    mut lease: Lease,
    services: NodeServices,
    board: StatusBoard,
    intake: CancellationToken,
    grace: Duration,
) {
    let name = plans.borrow().name.clone();
    let resource = resource(&name);
    loop {
        // Wait for a grant that is still valid.
        let grant = loop {
            if let Some(grant) = *lease.grants.borrow_and_update()
                && grant.valid_until > Instant::now()
            {
                break grant;
            }
            tokio::select! {
                changed = lease.grants.changed() => if changed.is_err() { return },
                _ = intake.cancelled() => return,
            }
        };
        let plan = plans.borrow_and_update().clone();
        let fence = grant.fence;
        let mut valid_until = grant.valid_until;
        let stop = intake.child_token();
        let bus = Arc::new(FencedBus {
            inner: services.bus.clone(),
            lease: lease.clone(),
            resource: resource.clone(),
            fence,
        });
        let ctx = NodeServices { bus, ..services.clone() }.connector(&plan.name, &plan.kind, &plan.queue, stop.clone());
        let mut task = tokio::spawn(supervisor::supervise_with_grace(
            plan.connector.clone(),
            ctx,
            plan.restart.clone(),
            board.clone(),
            grace,
        ));
        let (why, ended) = loop {
            tokio::select! {
                _ = intake.cancelled() => break ("the node stops", false),
                changed = lease.grants.changed() => {
                    match *lease.grants.borrow_and_update() {
                        Some(grant) if changed.is_ok() && grant.fence == fence => valid_until = grant.valid_until,
                        _ => break ("the lease was handed over or lost", false),
                    }
                }
                _ = tokio::time::sleep_until(valid_until) => break ("the lease was not renewed in time", false),
                // A reload changed its settings: it restarts with them, under the same lease.
                Ok(()) = plans.changed() => break (RECONFIGURED, false),
                // It ends on its own when sunk, or when the node stops (this branch may
                // win that race): either way it has been polled to completion.
                _ = &mut task => break ("the connector's supervisor ended", true),
            }
        };
        let why = if intake.is_cancelled() { "the node stops" } else { why };
        stop.cancel();
        if !ended {
            let _ = (&mut task).await;
        }
        if ended && !intake.is_cancelled() {
            // Sunk: it stays so here (it needs an operator) while this node keeps the lease.
            while lease_valid(*lease.grants.borrow_and_update(), fence) && !intake.is_cancelled() {
                tokio::select! {
                    changed = lease.grants.changed() => if changed.is_err() { break },
                    _ = intake.cancelled() => {}
                }
            }
        } else {
            board.set_state(&plan.name, ConnectorState::Stopped);
        }
        tracing::info!(connector = %plan.name, fence, "Stopped the connector: {why}.");
        if why == RECONFIGURED {
            continue; // The grant still holds: the next round starts it again at once.
        }
        // Only the holder with this fencing number can release: harmless otherwise.
        if let Err(error) = lease.fleet.release(&resource, &lease.member, fence).await {
            tracing::warn!(connector = %plan.name, error = %flotilla_core::error_chain(&error),
                "Could not release the lease; it lapses after bus.lease_ttl.");
        }
        if intake.is_cancelled() {
            return;
        }
    }
}

/// The bus as a connector under a lease sees it: publishes are fenced (see the module
/// docs), everything else goes to the node's bus.
pub struct FencedBus {
    inner: Arc<dyn Bus>,
    lease: Lease,
    resource: String,
    fence: u64,
}

#[async_trait::async_trait]
impl Bus for FencedBus {
    async fn publish(&self, queue: &str, payloads: Vec<Bytes>) -> Result<SeqRange, BusError> {
        // Past its deadline the lease may already be someone else's: not even tried.
        let valid = lease_valid(*self.lease.grants.borrow(), self.fence);
        if !valid {
            return Err(BusError::backend(
                format!("publishing to queue '{queue}'"),
                flotilla_bus::fleet::StaleFence {
                    resource: self.resource.clone(),
                    fence: self.fence,
                    now: "this node no longer holds it".to_string(),
                },
            ));
        }
        self.lease.fleet.publish_fenced(&self.resource, &self.lease.member, self.fence, queue, payloads).await
    }

    async fn subscribe(&self, queue: &str, group: &str) -> Result<Box<dyn Consumer>, BusError> {
        self.inner.subscribe(queue, group).await
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
        Ok(()) // The node closes its bus; a connector does not.
    }
}

fn lease_valid(grant: Option<Grant>, fence: u64) -> bool {
    grant.is_some_and(|g| g.fence == fence && g.valid_until > Instant::now())
}

#[cfg(test)]
mod tests {
    use super::score;

    #[test]
    fn nodes_prefer_different_connectors() {
        let names: Vec<String> = (0..6).map(|i| format!("Pulse-{i}")).collect();
        let top = |node: &str| names.iter().max_by_key(|c| score(node, c)).unwrap().clone();
        let tops: std::collections::BTreeSet<_> = ["alpha", "beta", "gamma"].iter().map(|n| top(n)).collect();
        assert!(tops.len() >= 2, "{tops:?}");
        assert_eq!(score("alpha", "Pulse-1"), score("alpha", "Pulse-1"));
    }
}
