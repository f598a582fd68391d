//! A fleet of nodes on a shared backend (SPEC §5.1): membership with a heartbeat, and
//! leases with fencing numbers through which exactly one node owns each connector.
//!
//! [`Fleet`] is the seam: [`RedisFleet`] implements it with plain keys and Lua
//! scripts (it shares the [`RedisBus`](crate::RedisBus)'s connection); a NATS implementation (a KV bucket whose revision-checked updates are the
//! fencing numbers) is one more implementation of the same trait. The node's placement
//! loop (`flotilla-node`'s `fleet` module) is written against the trait alone.
//!
//! The contract every implementation keeps:
//!
//! - [`Fleet::join`] refuses a node whose name a *live* member of another process
//!   (another instance id) holds; a heartbeat keeps the membership for `lease_ttl`.
//! - [`Fleet::acquire`] gives a free lease to one caller at a time, with a fencing
//!   number larger than any given before for that resource; [`Fleet::renew`] extends it
//!   only while the caller still holds that very lease (same fencing number).
//! - [`Fleet::publish_fenced`] appends to a queue only if the lease is still held with
//!   the given fencing number, checked and written in one atomic step; otherwise it
//!   fails with [`StaleFence`] and nothing is written.
//!
//! Fleet keys live beside the bus's streams under the same prefix and cannot collide
//! with them: a queue name has no `:`, fleet keys have two.

use std::time::Duration;

use bytes::Bytes;

use crate::{BusError, SeqRange};

pub use crate::redis::RedisFleet;

/// This process as a member of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// `node.name`: unique among the live members.
    pub name: String,
    /// Random per process: tells this process from another one using the same name.
    pub instance: String,
    pub version: String,
    pub pid: u32,
    pub hostname: String,
    /// When the process started (Unix seconds).
    pub started_at: u64,
}

/// A member as the fleet sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberView {
    #[serde(flatten)]
    pub member: Member,
    /// Its heartbeat has not lapsed.
    pub alive: bool,
    /// Its last heartbeat (Unix milliseconds, the backend's clock).
    pub last_heartbeat_ms: u64,
}

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseView {
    /// The resource (`connector:<name>`).
    pub resource: String,
    pub node: String,
    pub instance: String,
    pub fence: u64,
    /// How long until it lapses unless renewed.
    pub expires_in_ms: u64,
}

/// A write on behalf of a lease that is no longer held with that fencing number.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the lease on {resource} is no longer held with fencing number {fence} ({now}); the write was refused")]
pub struct StaleFence {
    pub resource: String,
    pub fence: u64,
    /// Who holds it now, in words.
    pub now: String,
}

/// The name is held by another live process.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "node.name '{name}' is already used by a live node of this fleet (pid {pid} on {hostname}, started at {started_at}); \
     give each node its own node.name, or wait up to bus.lease_ttl after that node stopped"
)]
pub struct NameTaken {
    pub name: String,
    pub pid: u32,
    pub hostname: String,
    pub started_at: u64,
}

/// Membership and leases on a shared backend; see the module docs.
#[async_trait::async_trait]
pub trait Fleet: Send + Sync {
    /// How long a membership or a lease lasts unless renewed.
    fn lease_ttl(&self) -> Duration;

    /// Registers `member` (or renews its heartbeat). Fails with [`NameTaken`] (inside
    /// [`BusError::Backend`]) when another live process holds the name.
    async fn join(&self, member: &Member) -> Result<(), BusError>;

    /// Removes `member` (a clean stop), if it is still this process's.
    async fn leave(&self, member: &Member) -> Result<(), BusError>;

    /// Every member seen, live or not, by name.
    async fn members(&self) -> Result<Vec<MemberView>, BusError>;

    /// Takes `resource` for `member` if nobody holds it: its fencing number.
    async fn acquire(&self, resource: &str, member: &Member) -> Result<Option<u64>, BusError>;

    /// Extends the lease if `member` still holds it with `fence`; `false` if not.
    async fn renew(&self, resource: &str, member: &Member, fence: u64) -> Result<bool, BusError>;

    /// Gives the lease up if `member` still holds it with `fence`.
    async fn release(&self, resource: &str, member: &Member, fence: u64) -> Result<(), BusError>;

    /// Every lease held now.
    async fn leases(&self) -> Result<Vec<LeaseView>, BusError>;

    /// Publishes `payloads` to `queue` only if `member` still holds `resource` with
    /// `fence`; else [`StaleFence`] (inside [`BusError::Backend`]) and nothing written.
    async fn publish_fenced(
        &self,
        resource: &str,
        member: &Member,
        fence: u64,
        queue: &str,
        payloads: Vec<Bytes>,
    ) -> Result<SeqRange, BusError>;
}

/// The [`StaleFence`] inside a bus error, if that is what it is.
pub fn stale_fence(error: &BusError) -> Option<&StaleFence> {
    match error {
        BusError::Backend { source, .. } => source.downcast_ref::<StaleFence>(),
        _ => None,
    }
}
