//! Subscriptions: a unique name, a token (kept only as its hash), an output format and
//! definitions; and [`Subscriptions`], the in-memory set of them with the matching index
//! kept in step.
//!
//! The control protocol acts on subscriptions through [`SubscriptionBackend`], a plain
//! synchronous trait, and [`Subscriptions`] is its implementation. The design choice:
//! the in-memory state is the source of truth for matching, which must be synchronous and
//! fast, and every mutation returns a [`Mutation`] describing exactly what changed. The
//! integrator persists those records (write-behind to the SQL store, in order) and, at
//! start-up, rebuilds the state with [`Subscriptions::restore_all`]. So the store never has to
//! diff, the pure core never awaits, and the HTTP API, which calls [`Subscriptions`]
//! directly, gets the same records as the TCP protocol.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::definition::Definition;
use crate::event::Change;
use crate::format::{OutputFormat, render};
use crate::index::{Compilation, Compiled, Index, MatchScratch};
use crate::token::{OsTokens, Token, TokenError, TokenHash, TokenSource};
use crate::wiki::Wikis;

/// Default cap on definitions per subscription.
pub const DEFAULT_MAX_DEFINITIONS: usize = 10_000;

/// What subscribers may make the dispatcher hold: the caps [`Subscriptions`] enforces.
/// The defaults are the configuration's (`docs/configuration.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Subscriptions in all.
    pub max_subscriptions: usize,
    /// Subscriptions created from one client address (since the process started:
    /// addresses are not stored).
    pub max_subscriptions_per_address: usize,
    /// Definitions per subscription.
    pub max_definitions: usize,
    /// Bytes of compiled patterns of one subscription ([`Index::pattern_memory_of`]).
    pub max_pattern_memory_per_subscription: usize,
    /// Bytes of compiled patterns in all ([`Index::pattern_memory`]).
    pub max_pattern_memory: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_subscriptions: 10_000,
            max_subscriptions_per_address: 1_000,
            max_definitions: DEFAULT_MAX_DEFINITIONS,
            max_pattern_memory_per_subscription: 64 << 20,
            max_pattern_memory: 1 << 30,
        }
    }
}

impl Limits {
    /// No caps at all (benchmarks that load more than any budget allows).
    pub const UNLIMITED: Limits = Limits {
        max_subscriptions: usize::MAX,
        max_subscriptions_per_address: usize::MAX,
        max_definitions: usize::MAX,
        max_pattern_memory_per_subscription: usize::MAX,
        max_pattern_memory: usize::MAX,
    };
}

/// Which memory budget a pattern would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternBudget {
    /// The subscription's (`max_pattern_memory_per_subscription`).
    Subscription,
    /// The dispatcher's, all subscriptions together (`max_pattern_memory`).
    Dispatcher,
}

/// Longest subscription name.
pub const MAX_NAME_LEN: usize = 64;

/// A valid subscription name: 1 to 64 of `A-Z a-z 0-9 _ . -`. It is also the Redis list
/// and (as `sub.<name>`) the bus queue the subscription's changes go to.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionName(Arc<str>);

/// A name that breaks the subscription-name rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subscription name {0:?}: use 1 to 64 of A-Z a-z 0-9 _ . -")]
pub struct InvalidName(pub String);

impl SubscriptionName {
    /// Checks a name.
    ///
    /// # Errors
    /// [`InvalidName`] if it is empty, longer than 64 or has another character.
    pub fn parse(name: &str) -> Result<SubscriptionName, InvalidName> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
        if (1..=MAX_NAME_LEN).contains(&name.len()) && name.bytes().all(allowed) {
            Ok(SubscriptionName(Arc::from(name)))
        } else {
            Err(InvalidName(name.to_string()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SubscriptionName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubscriptionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SubscriptionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// A subscription's identity for this process's lifetime. Never reused, so a session
/// authenticated to a subscription that is deleted cannot end up acting on a new one
/// that takes its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(u64);

impl SubscriptionId {
    /// An id from its number, for tests of structures that hold ids.
    #[cfg(test)]
    pub(crate) fn from_raw(raw: u64) -> SubscriptionId {
        SubscriptionId(raw)
    }
}

/// Which life of a subscription name something belongs to: a name deleted and taken
/// again is a new incarnation, so deliveries matched for the old owner can be told
/// from the new owner's and dropped. Derived from the token hash (each subscription
/// gets a fresh token), so it is the same after a restart and nothing more is stored;
/// hashed again, so what travels on the bus says nothing about the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Incarnation(pub u64);

impl Incarnation {
    fn of(token_hash: &TokenHash) -> Incarnation {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new().chain_update(b"flotilla incarnation\0").chain_update(token_hash.to_hex()).finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Incarnation(u64::from_be_bytes(first))
    }
}

/// What changed, for the integrator to persist. Each record is complete on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// A subscription was created.
    Created {
        /// Its name.
        name: SubscriptionName,
        /// The hash of its token.
        token_hash: TokenHash,
        /// Its output format.
        format: OutputFormat,
    },
    /// A subscription and all its definitions were deleted.
    Deleted {
        /// Its name.
        name: SubscriptionName,
    },
    /// A subscription's output format changed.
    FormatSet {
        /// Its name.
        name: SubscriptionName,
        /// The new format.
        format: OutputFormat,
    },
    /// Definitions were added (only those that were new).
    DefinitionsAdded {
        /// The subscription's name.
        name: SubscriptionName,
        /// The added definitions.
        definitions: Vec<Definition>,
    },
    /// Definitions were removed (only those that were there).
    DefinitionsRemoved {
        /// The subscription's name.
        name: SubscriptionName,
        /// The removed definitions.
        definitions: Vec<Definition>,
    },
}

/// The counters `info` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Info {
    /// Open control connections.
    pub connections: usize,
    /// Subscriptions.
    pub subscriptions: usize,
    /// Wikis at least one definition watches.
    pub wikis: usize,
}

/// A new subscription.
#[derive(Debug)]
pub struct Subscribed {
    /// Its identity.
    pub id: SubscriptionId,
    /// Its token: shown to the client once, never stored.
    pub token: Token,
    /// The record to persist.
    pub mutation: Mutation,
}

/// The result of adding or removing definitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// How many definitions were newly added or actually removed.
    pub count: usize,
    /// The record to persist; `None` when nothing changed.
    pub mutation: Option<Mutation>,
}

/// The subscription does not exist (any more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no such subscription")]
pub struct NoSuchSubscription;

/// Why a subscription could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The name is taken.
    #[error("a subscription with this name exists")]
    Exists,
    /// No token could be made.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// There are as many subscriptions as the cap allows, in all or from the client's
    /// address.
    #[error("at most {limit} subscriptions{}", if *.per_address { " from one address" } else { "" })]
    TooMany {
        /// The cap.
        limit: usize,
        /// Whether it is the cap per address.
        per_address: bool,
    },
}

/// Why definitions could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// The subscription does not exist (any more).
    #[error("no such subscription")]
    NoSuchSubscription,
    /// Adding them would pass the cap; nothing was added.
    #[error("a subscription may have at most {limit} definitions")]
    TooMany {
        /// The cap.
        limit: usize,
    },
    /// Their compiled patterns would pass a memory budget; nothing was added.
    #[error("pattern {pattern:?} would take the {budget:?} budget's compiled patterns over {limit} bytes")]
    PatternMemory {
        /// The first pattern that would pass it.
        pattern: String,
        /// Which budget.
        budget: PatternBudget,
        /// The budget in bytes.
        limit: usize,
    },
}

/// Why a stored subscription could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subscription '{0}' is restored twice")]
pub struct DuplicateSubscription(pub SubscriptionName);

/// What the control protocol needs from the subscription state. Synchronous on purpose:
/// see the module documentation.
pub trait SubscriptionBackend {
    /// The wiki registry definitions are resolved against.
    fn wikis(&self) -> &Wikis;

    /// Creates a subscription with a fresh token and the default format, for a client at
    /// `address` (`None`: no client address to cap, as for the admin over HTTP).
    ///
    /// # Errors
    /// [`SubscribeError::Exists`] if the name is taken; [`SubscribeError::TooMany`] at a
    /// cap; [`SubscribeError::Token`] if no token can be made.
    fn subscribe(&mut self, name: SubscriptionName, address: Option<IpAddr>) -> Result<Subscribed, SubscribeError>;

    /// The subscription with this name, if it exists.
    fn find(&self, name: &str) -> Option<SubscriptionId>;

    /// The subscription with this name if `token` is its token.
    fn authenticate(&self, name: &str, token: &str) -> Option<SubscriptionId>;

    /// Deletes a subscription and its definitions.
    ///
    /// # Errors
    /// [`NoSuchSubscription`].
    fn unsubscribe(&mut self, id: SubscriptionId) -> Result<Mutation, NoSuchSubscription>;

    /// Adds definitions, skipping ones the subscription has; all or nothing.
    ///
    /// # Errors
    /// [`InsertError`]; nothing is added then.
    fn insert(&mut self, id: SubscriptionId, definitions: Vec<Definition>) -> Result<Applied, InsertError>;

    /// Removes definitions, skipping ones the subscription lacks.
    ///
    /// # Errors
    /// [`NoSuchSubscription`].
    fn remove(&mut self, id: SubscriptionId, definitions: Vec<Definition>) -> Result<Applied, NoSuchSubscription>;

    /// A subscription's definitions in a stable order.
    ///
    /// # Errors
    /// [`NoSuchSubscription`].
    fn definitions(&self, id: SubscriptionId) -> Result<Vec<Definition>, NoSuchSubscription>;

    /// Sets a subscription's output format.
    ///
    /// # Errors
    /// [`NoSuchSubscription`].
    fn set_format(&mut self, id: SubscriptionId, format: OutputFormat) -> Result<Mutation, NoSuchSubscription>;

    /// The `info` counters.
    fn info(&self) -> Info;

    /// The caps, for what a document may cost before it is even applied.
    fn limits(&self) -> &Limits;
}

/// One change to deliver: push `payload` to the list (and bus queue) of `subscription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Where it goes.
    pub subscription: SubscriptionName,
    /// Which subscription of that name it is for.
    pub incarnation: Incarnation,
    /// The change in the subscription's format; shared between subscriptions with the
    /// same format.
    pub payload: Arc<str>,
}

/// A stored subscription to put back with [`Subscriptions::restore_all`].
#[derive(Debug, Clone)]
pub struct Restored {
    /// Its name.
    pub name: SubscriptionName,
    /// The hash of its token.
    pub token_hash: TokenHash,
    /// Its output format.
    pub format: OutputFormat,
    /// Its definitions.
    pub definitions: Vec<Definition>,
}

struct Record {
    name: SubscriptionName,
    token_hash: TokenHash,
    incarnation: Incarnation,
    format: OutputFormat,
    /// The client address that created it, while this process runs.
    address: Option<IpAddr>,
}

/// Every subscription, in memory, with its matching index.
pub struct Subscriptions {
    wikis: &'static Wikis,
    tokens: Box<dyn TokenSource + Send + Sync>,
    limits: Limits,
    by_name: HashMap<SubscriptionName, SubscriptionId>,
    records: HashMap<SubscriptionId, Record>,
    /// Subscriptions created per client address.
    by_address: HashMap<IpAddr, usize>,
    next_id: u64,
    index: Index,
    connections: usize,
}

impl fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriptions")
            .field("subscriptions", &self.records.len())
            .field("index", &self.index)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl Subscriptions {
    /// No subscriptions; tokens from the OS; the default [`Limits`].
    pub fn new(wikis: &'static Wikis) -> Subscriptions {
        Subscriptions {
            wikis,
            tokens: Box::new(OsTokens),
            limits: Limits::default(),
            by_name: HashMap::new(),
            records: HashMap::new(),
            by_address: HashMap::new(),
            next_id: 1,
            index: Index::new(),
            connections: 0,
        }
    }

    /// Uses another token source (tests use a fixed sequence).
    pub fn with_token_source(mut self, tokens: impl TokenSource + Send + Sync + 'static) -> Self {
        self.tokens = Box::new(tokens);
        self
    }

    /// Sets the caps.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// From now on, changes leave their regex sets and automata to compile elsewhere,
    /// off whatever lock guards this state: see [`Index::defer_compiling`]. The caller
    /// then runs [`Subscriptions::take_compilation`] after each change.
    pub fn defer_compiling(&mut self) {
        self.index.defer_compiling();
    }

    /// What the changes since the last call left to compile ([`Index::take_compilation`]).
    pub fn take_compilation(&mut self) -> Compilation {
        self.index.take_compilation()
    }

    /// Puts a finished compilation in ([`Index::install`]).
    pub fn install(&mut self, compiled: Compiled) {
        self.index.install(compiled);
    }

    /// Puts back stored subscriptions at start-up, compiling the index once for all of
    /// them. No cap applies: the store holds only what was accepted before. Returns
    /// their ids, in the order given.
    ///
    /// # Errors
    /// [`DuplicateSubscription`] if a name is already present or given twice; nothing is
    /// restored then.
    pub fn restore_all(
        &mut self,
        subscriptions: impl IntoIterator<Item = Restored>,
    ) -> Result<Vec<SubscriptionId>, DuplicateSubscription> {
        let subscriptions: Vec<Restored> = subscriptions.into_iter().collect();
        let mut names = std::collections::HashSet::new();
        for restored in &subscriptions {
            if self.by_name.contains_key(&restored.name) || !names.insert(&restored.name) {
                return Err(DuplicateSubscription(restored.name.clone()));
            }
        }
        let mut ids = Vec::with_capacity(subscriptions.len());
        let mut definitions = Vec::new();
        for restored in subscriptions {
            let id = self.add_record(restored.name, restored.token_hash, restored.format, None);
            definitions.extend(restored.definitions.into_iter().map(|d| (id, d)));
            ids.push(id);
        }
        self.index.insert_all(definitions);
        Ok(ids)
    }

    fn add_record(
        &mut self,
        name: SubscriptionName,
        token_hash: TokenHash,
        format: OutputFormat,
        address: Option<IpAddr>,
    ) -> SubscriptionId {
        let id = SubscriptionId(self.next_id);
        self.next_id += 1;
        self.by_name.insert(name.clone(), id);
        let incarnation = Incarnation::of(&token_hash);
        if let Some(address) = address {
            *self.by_address.entry(address).or_insert(0) += 1;
        }
        self.records.insert(id, Record { name, token_hash, incarnation, format, address });
        id
    }

    /// A control connection opened (counted for `info`).
    pub fn connection_opened(&mut self) {
        self.connections += 1;
    }

    /// A control connection closed.
    pub fn connection_closed(&mut self) {
        self.connections = self.connections.saturating_sub(1);
    }

    /// The wiki registry definitions are resolved against, to parse documents away from
    /// this state (on another thread, without its lock).
    pub fn registry(&self) -> &'static Wikis {
        self.wikis
    }

    /// How many subscriptions there are.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// A subscription's name.
    pub fn name(&self, id: SubscriptionId) -> Option<&SubscriptionName> {
        self.records.get(&id).map(|r| &r.name)
    }

    /// Every subscription's id and name, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = (SubscriptionId, &SubscriptionName)> + '_ {
        self.records.iter().map(|(id, record)| (*id, &record.name))
    }

    /// The incarnation of the subscription now named `name`, if there is one: a
    /// delivery of another incarnation was matched for a subscription since deleted.
    pub fn incarnation(&self, name: &str) -> Option<Incarnation> {
        self.records.get(self.by_name.get(name)?).map(|r| r.incarnation)
    }

    /// A subscription's output format.
    pub fn format(&self, id: SubscriptionId) -> Option<OutputFormat> {
        self.records.get(&id).map(|r| r.format)
    }

    /// The matching index (read-only).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The subscriptions that want `change`, each once.
    pub fn matching<'s>(&self, change: &Change<'_>, scratch: &'s mut MatchScratch) -> &'s [SubscriptionId] {
        self.index.matching(change, scratch)
    }

    /// [`Subscriptions::matching`] for each of `changes`, faster on a big index (see
    /// [`Index::matching_each`]).
    pub fn matching_each(
        &self,
        changes: &[Change<'_>],
        scratch: &mut MatchScratch,
        each: impl FnMut(usize, &[SubscriptionId]),
    ) {
        self.index.matching_each(changes, scratch, each);
    }

    /// What to deliver for `change`: one payload per matching subscription, in its
    /// format, each format rendered at most once. Canaries yield nothing.
    pub fn dispatch(&self, change: &Change<'_>, scratch: &mut MatchScratch) -> Vec<Delivery> {
        let matching = self.index.matching(change, scratch);
        self.deliveries(change, matching)
    }

    /// [`Subscriptions::dispatch`] for each of `changes`: calls `each` with the change's
    /// position and its deliveries.
    pub fn dispatch_each(
        &self,
        changes: &[Change<'_>],
        scratch: &mut MatchScratch,
        mut each: impl FnMut(usize, Vec<Delivery>),
    ) {
        self.index.matching_each(changes, scratch, |position, matching| {
            each(position, self.deliveries(&changes[position], matching));
        });
    }

    fn deliveries(&self, change: &Change<'_>, matching: &[SubscriptionId]) -> Vec<Delivery> {
        let mut rendered: [Option<Arc<str>>; 3] = [None, None, None];
        let mut deliveries = Vec::with_capacity(matching.len());
        for id in matching {
            let Some(record) = self.records.get(id) else {
                continue;
            };
            let slot = &mut rendered[record.format as usize];
            let payload = slot.get_or_insert_with(|| Arc::from(render(change, record.format)));
            deliveries.push(Delivery {
                subscription: record.name.clone(),
                incarnation: record.incarnation,
                payload: Arc::clone(payload),
            });
        }
        deliveries
    }

    fn record(&self, id: SubscriptionId) -> Result<&Record, NoSuchSubscription> {
        self.records.get(&id).ok_or(NoSuchSubscription)
    }
}

impl SubscriptionBackend for Subscriptions {
    fn wikis(&self) -> &Wikis {
        self.wikis
    }

    fn subscribe(&mut self, name: SubscriptionName, address: Option<IpAddr>) -> Result<Subscribed, SubscribeError> {
        if self.by_name.contains_key(&name) {
            return Err(SubscribeError::Exists);
        }
        if self.records.len() >= self.limits.max_subscriptions {
            return Err(SubscribeError::TooMany { limit: self.limits.max_subscriptions, per_address: false });
        }
        let from_address = address.and_then(|a| self.by_address.get(&a)).copied().unwrap_or(0);
        if from_address >= self.limits.max_subscriptions_per_address {
            return Err(SubscribeError::TooMany {
                limit: self.limits.max_subscriptions_per_address,
                per_address: true,
            });
        }
        let token = self.tokens.new_token()?;
        let token_hash = token.hash();
        let format = OutputFormat::default();
        let id = self.add_record(name.clone(), token_hash.clone(), format, address);
        Ok(Subscribed { id, token, mutation: Mutation::Created { name, token_hash, format } })
    }

    fn find(&self, name: &str) -> Option<SubscriptionId> {
        self.by_name.get(name).copied()
    }

    fn authenticate(&self, name: &str, token: &str) -> Option<SubscriptionId> {
        let id = self.find(name)?;
        let record = self.records.get(&id)?;
        record.token_hash.verify(token).then_some(id)
    }

    fn unsubscribe(&mut self, id: SubscriptionId) -> Result<Mutation, NoSuchSubscription> {
        let record = self.records.remove(&id).ok_or(NoSuchSubscription)?;
        self.by_name.remove(&record.name);
        if let Some(address) = record.address
            && let Some(count) = self.by_address.get_mut(&address)
        {
            *count -= 1;
            if *count == 0 {
                self.by_address.remove(&address);
            }
        }
        self.index.remove_subscription(id);
        Ok(Mutation::Deleted { name: record.name })
    }

    fn insert(&mut self, id: SubscriptionId, definitions: Vec<Definition>) -> Result<Applied, InsertError> {
        let name = self.record(id).map_err(|_| InsertError::NoSuchSubscription)?.name.clone();
        // Count what would be new (the document may repeat itself) before changing
        // anything, so a refused insert leaves no trace.
        let mut fresh: Vec<&Definition> = definitions.iter().filter(|d| !self.index.contains(id, d)).collect();
        fresh.sort_unstable();
        fresh.dedup();
        if self.index.count_of(id) + fresh.len() > self.limits.max_definitions {
            return Err(InsertError::TooMany { limit: self.limits.max_definitions });
        }
        let Limits { max_pattern_memory_per_subscription, max_pattern_memory, .. } = self.limits;
        // Documents keep their order here, so the pattern named is the first one, in the
        // client's own order, past the budget.
        let fresh_in_order = definitions.iter().filter(|d| !self.index.contains(id, d));
        if let Err((budget, pattern)) =
            self.index.check_pattern_memory(id, fresh_in_order, max_pattern_memory_per_subscription, max_pattern_memory)
        {
            let limit = match budget {
                PatternBudget::Subscription => max_pattern_memory_per_subscription,
                PatternBudget::Dispatcher => max_pattern_memory,
            };
            return Err(InsertError::PatternMemory { pattern: pattern.as_str().to_string(), budget, limit });
        }
        let added = self.index.insert(id, definitions);
        Ok(applied(added, |definitions| Mutation::DefinitionsAdded { name, definitions }))
    }

    fn remove(&mut self, id: SubscriptionId, definitions: Vec<Definition>) -> Result<Applied, NoSuchSubscription> {
        let name = self.record(id)?.name.clone();
        let removed = self.index.remove(id, &definitions);
        Ok(applied(removed, |definitions| Mutation::DefinitionsRemoved { name, definitions }))
    }

    fn definitions(&self, id: SubscriptionId) -> Result<Vec<Definition>, NoSuchSubscription> {
        self.record(id)?;
        Ok(self.index.definitions_of(id))
    }

    fn set_format(&mut self, id: SubscriptionId, format: OutputFormat) -> Result<Mutation, NoSuchSubscription> {
        let record = self.records.get_mut(&id).ok_or(NoSuchSubscription)?;
        record.format = format;
        Ok(Mutation::FormatSet { name: record.name.clone(), format })
    }

    fn info(&self) -> Info {
        Info { connections: self.connections, subscriptions: self.records.len(), wikis: self.index.watched_wikis() }
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }
}

fn applied(definitions: Vec<Definition>, record: impl FnOnce(Vec<Definition>) -> Mutation) -> Applied {
    Applied { count: definitions.len(), mutation: (!definitions.is_empty()).then(|| record(definitions)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state is shared between the control server's connections, the HTTP API and
    /// the delivery loop, so it must be shareable across threads.
    #[test]
    fn state_is_send_and_sync() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Subscriptions>();
        shareable::<crate::protocol::Session>();
    }

    #[test]
    fn a_name_taken_again_is_a_new_incarnation_and_a_restart_keeps_it() {
        let wikis = Wikis::embedded();
        let mut subscriptions = Subscriptions::new(wikis);
        let name = SubscriptionName::parse("bot").unwrap();
        let first = subscriptions.subscribe(name.clone(), None).unwrap();
        let before = subscriptions.incarnation("bot").unwrap();
        subscriptions.unsubscribe(first.id).unwrap();
        assert_eq!(subscriptions.incarnation("bot"), None);
        let second = subscriptions.subscribe(name.clone(), None).unwrap();
        let after = subscriptions.incarnation("bot").unwrap();
        assert_ne!(before, after);

        let Mutation::Created { token_hash, format, .. } = second.mutation else { panic!("a creation") };
        let mut restarted = Subscriptions::new(wikis);
        restarted.restore_all([Restored { name, token_hash, format, definitions: Vec::new() }]).unwrap();
        assert_eq!(restarted.incarnation("bot"), Some(after));
    }

    #[test]
    fn names_follow_the_rules() {
        #[track_caller]
        fn check(name: &str, valid: bool) {
            assert_eq!(SubscriptionName::parse(name).is_ok(), valid, "{name:?}");
        }
        check("mybot", true);
        check("A.b-c_9", true);
        check(&"x".repeat(64), true);
        check(&"x".repeat(65), false);
        check("", false);
        check("my bot", false);
        check("sub:name", false);
        check("bot/1", false);
        check("é", false);
    }
}
