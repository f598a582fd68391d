//! Connection slots: how many connections a server holds open, in total and per client
//! address, so that no number of clients can take the process's file descriptors (which
//! every listener, the bus and the store share).
//!
//! A server asks for a slot for each connection it accepts ([`Slots::admit`]) and holds
//! it while the connection is open. At a cap, what happens depends on the server:
//!
//! - with `evict_idle`, the new connection closes the connection from the same address
//!   (at the cap per address) or from anywhere (at the total cap) that has been idle the
//!   longest: one waiting for its next request, not one in the middle of a request or
//!   a response. Idle connections can be closed at any time (HTTP's kept-alive
//!   connections are), so a client that opens connections and sends nothing only ever
//!   closes its own or other idle ones, and a client that has something to ask still
//!   gets in. Only when every connection is busy is the new one refused;
//! - without it, the new connection is refused (the control protocol's `E021`), and
//!   the ones held keep their slots until they close or time out.
//!
//! A connection is idle when it takes its slot, busy while any [`Busy`] guard of its
//! slot lives, and idle again (the most recently idle of all) when the last one drops.
//! A closed connection's slot is free at once, but its socket closes only when its task
//! gets to run: a server that evicts waits for that ([`Slots::evicted_closed`]) before
//! it accepts again, so that it never holds more than its cap of descriptors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// The caps of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    /// Connections in total.
    pub max_connections: usize,
    /// Connections from one client address (Unix sockets have none: only the total).
    pub max_per_address: usize,
    /// Close the longest-idle connection to make room, rather than refuse.
    pub evict_idle: bool,
}

/// The slots of one server. Cheap to clone; clones share the slots.
#[derive(Clone)]
pub struct Slots {
    inner: Arc<Mutex<Inner>>,
    /// Told when an evicted connection has closed.
    closed: Arc<Notify>,
}

struct Inner {
    limits: SlotLimits,
    per_address: HashMap<IpAddr, usize>,
    open: HashMap<u64, Open>,
    /// Idle connections by when they became idle (a counter, oldest first).
    idle: BTreeMap<u64, u64>,
    /// Evicted connections whose slots are not dropped yet.
    closing: HashSet<u64>,
    next: u64,
}

struct Open {
    address: Option<IpAddr>,
    /// Busy guards alive.
    busy: usize,
    /// Its key in `idle` while it is idle.
    idle_since: Option<u64>,
    evicted: CancellationToken,
}

/// A connection's slot, given back when dropped: drop it after the connection's socket.
pub struct Slot {
    inner: Arc<Mutex<Inner>>,
    closed: Arc<Notify>,
    id: u64,
    evicted: CancellationToken,
}

/// Keeps a connection busy (not to be closed to make room) while it lives.
pub struct Busy {
    inner: Arc<Mutex<Inner>>,
    id: u64,
}

impl Inner {
    fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
        // Every edit leaves the maps consistent before it can panic, so a poisoned lock
        // is still usable.
        inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stamp(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn make_idle(&mut self, id: u64) {
        let stamp = self.stamp();
        if let Some(open) = self.open.get_mut(&id) {
            open.idle_since = Some(stamp);
            self.idle.insert(stamp, id);
        }
    }

    /// Forgets a connection (closed, or evicted); true if it was there.
    fn release(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        if let Some(stamp) = open.idle_since {
            self.idle.remove(&stamp);
        }
        if let Some(address) = open.address
            && let Some(count) = self.per_address.get_mut(&address)
        {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&address);
            }
        }
        Some(open)
    }

    /// Closes the longest-idle connection (from `address` when given); false if none.
    fn evict(&mut self, address: Option<IpAddr>) -> bool {
        let victim = self
            .idle
            .values()
            .copied()
            .find(|id| address.is_none() || self.open.get(id).is_some_and(|open| open.address == address));
        match victim.and_then(|id| self.release(id).map(|open| (id, open))) {
            Some((id, open)) => {
                self.closing.insert(id);
                open.evicted.cancel();
                true
            }
            None => false,
        }
    }
}

impl Slots {
    pub fn new(limits: SlotLimits) -> Slots {
        let inner = Inner {
            limits,
            per_address: HashMap::new(),
            open: HashMap::new(),
            idle: BTreeMap::new(),
            closing: HashSet::new(),
            next: 0,
        };
        Slots { inner: Arc::new(Mutex::new(inner)), closed: Arc::new(Notify::new()) }
    }

    /// A slot for a connection from `address` (`None`: a Unix socket), making room by
    /// closing an idle connection if the server evicts; `None` when the connection must
    /// be refused.
    pub fn admit(&self, address: Option<IpAddr>) -> Option<Slot> {
        let mut inner = Inner::lock(&self.inner);
        let limits = inner.limits;
        let from_address = address.and_then(|a| inner.per_address.get(&a).copied()).unwrap_or(0);
        if from_address >= limits.max_per_address && !(limits.evict_idle && inner.evict(address)) {
            return None;
        }
        if inner.open.len() >= limits.max_connections && !(limits.evict_idle && inner.evict(None)) {
            return None;
        }
        let id = inner.stamp();
        let evicted = CancellationToken::new();
        inner.open.insert(id, Open { address, busy: 0, idle_since: None, evicted: evicted.clone() });
        if let Some(address) = address {
            *inner.per_address.entry(address).or_insert(0) += 1;
        }
        inner.make_idle(id);
        Some(Slot { inner: self.inner.clone(), closed: self.closed.clone(), id, evicted })
    }

    /// Completes once every connection closed to make room has dropped its slot (its
    /// socket closed first).
    pub async fn evicted_closed(&self) {
        loop {
            let notified = self.closed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a close in between is not missed.
            notified.as_mut().enable();
            if Inner::lock(&self.inner).closing.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Connections holding a slot.
    pub fn open(&self) -> usize {
        Inner::lock(&self.inner).open.len()
    }
}

impl Slot {
    /// Marks the connection busy until the guard (and every other) is dropped.
    pub fn busy(&self) -> Busy {
        let mut inner = Inner::lock(&self.inner);
        if let Some(open) = inner.open.get_mut(&self.id) {
            open.busy += 1;
            if let Some(stamp) = open.idle_since.take() {
                inner.idle.remove(&stamp);
            }
        }
        Busy { inner: self.inner.clone(), id: self.id }
    }

    /// Completes when the connection was closed to make room for another: its server
    /// then closes it.
    pub fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.evicted.cancelled()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = Inner::lock(&self.inner);
        inner.release(self.id);
        if inner.closing.remove(&self.id) {
            self.closed.notify_waiters();
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut inner = Inner::lock(&self.inner);
        let idle = inner.open.get_mut(&self.id).is_some_and(|open| {
            open.busy -= 1;
            open.busy == 0
        });
        if idle {
            inner.make_idle(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn without_eviction_a_connection_over_a_cap_is_refused_until_one_closes() {
        let slots = Slots::new(SlotLimits { max_connections: 3, max_per_address: 2, evict_idle: false });
        let a1 = slots.admit(ip(1)).expect("room");
        let _a2 = slots.admit(ip(1)).expect("room");
        assert!(slots.admit(ip(1)).is_none(), "over the cap per address");
        let _b1 = slots.admit(ip(2)).expect("another address");
        assert!(slots.admit(ip(3)).is_none(), "over the total cap");
        assert!(slots.admit(None).is_none(), "a Unix socket counts in total");
        drop(a1);
        let _a3 = slots.admit(ip(1)).expect("a slot given back is free again");
        assert_eq!(slots.open(), 3);
    }

    #[test]
    fn with_eviction_the_longest_idle_makes_room_and_busy_ones_stay() {
        let slots = Slots::new(SlotLimits { max_connections: 3, max_per_address: 2, evict_idle: true });
        let a1 = slots.admit(ip(1)).expect("room");
        let a2 = slots.admit(ip(1)).expect("room");
        let b1 = slots.admit(ip(2)).expect("room");
        let evicted = |slot: &Slot| slot.evicted.is_cancelled();
        // a1 is busy, so at their address's cap the idle a2 makes room.
        let working = a1.busy();
        let a3 = slots.admit(ip(1)).expect("room made");
        assert_eq!((evicted(&a1), evicted(&a2), evicted(&b1)), (false, true, false));
        // At the total cap the longest idle anywhere goes: b1 (a3 became idle later).
        let c1 = slots.admit(ip(3)).expect("room made");
        assert_eq!((evicted(&b1), evicted(&a3)), (true, false));
        // A connection idle again counts from then: a1 is now the most recently idle.
        drop(working);
        let d1 = slots.admit(ip(4)).expect("room made");
        assert_eq!((evicted(&a3), evicted(&a1)), (true, false));
        // When every connection is busy, a new one is refused.
        let busy = [a1.busy(), c1.busy(), d1.busy()];
        assert!(slots.admit(ip(5)).is_none());
        drop(busy);
        let _e1 = slots.admit(ip(5)).expect("idle again, they make room");
        assert!(evicted(&a1), "a1 was the first idle again");
        // Evicted slots were given back at once; dropping them later changes nothing
        // but lets the server accept again.
        let settled = slots.evicted_closed();
        tokio::pin!(settled);
        let waker = futures_util::task::noop_waker();
        let mut context = std::task::Context::from_waker(&waker);
        assert!(settled.as_mut().poll(&mut context).is_pending(), "evicted slots are not dropped yet");
        drop((a1, a2, b1, a3));
        assert!(settled.as_mut().poll(&mut context).is_ready());
        assert_eq!(slots.open(), 3);
    }
}
