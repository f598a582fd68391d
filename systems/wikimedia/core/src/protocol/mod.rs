//! The control protocol (SPEC §6.2) as a pure, per-connection state machine: bytes of one
//! line in, reply lines and state changes out. No sockets here; the TCP server frames
//! lines with [`frame::next_line`], feeds them to [`Session::feed_line`], persists the
//! returned [`Mutation`]s, writes the replies and closes when told to.
//!
//! Each command lives in its own file with `parse` (words to a command value) and `apply`
//! (the command against the session and the [`SubscriptionBackend`]); [`Reply::encode`]
//! writes the wire form. `insert` and `remove` carry a document that may span lines; the
//! session collects it (`document.rs`) and applies the command when it is complete.
//!
//! # Reply lines
//!
//! Success: `TOKEN: <token>`, `OK`, a number, a one-line document, the info line,
//! `Good bye :o`. Errors, texts exactly as the original dispatcher wrote them:
//!
//! | line | when |
//! |---|---|
//! | `E001: Invalid name` | `subscribe` without a valid name (`[A-Za-z0-9_.-]{1,64}`) |
//! | `E002: This subscription exist` | `subscribe` with a taken name |
//! | `E005: Invalid token or name` | `auth`/`unsubscribe` with a wrong name or token, or the wrong number of words; `subscribe NAME TOKEN` with a token that is not the admin token |
//! | `E006: Command not understood` | an unknown command, unexpected words, or a line that is not UTF-8 |
//! | `E007: No such feed` | `unsubscribe NAME TOKEN` for a name that does not exist; any command on a subscription deleted since `auth` |
//! | `E008: Missing parameter for insert` / `… for delete` | `insert`/`remove` without a format |
//! | `E010: Unknown format of data` | `insert`/`remove`/`list` with a format other than `xml` or `json` |
//! | `E011: Invalid regex: "<pattern>": <problem>` | a definition's regex does not compile |
//! | `E012: Invalid format` | `format` without `pipe`, `xml` or `json` |
//! | `E013: Line too long` | a line over the limit (64 KiB); the connection is then closed |
//! | `E014: Unknown wiki: <name>` | a definition's wiki is not known |
//! | `E020: Authentication was not completed` | `insert`, `remove`, `list`, `format` before `auth` |
//! | `E060: Invalid xml` / `E062: Invalid json` | a document that is not the expected shape |
//!
//! Added by Flotilla (codes the original did not use):
//!
//! | line | when |
//! |---|---|
//! | `E015: Too many definitions (at most N per subscription)` | an `insert` would pass the cap; nothing is added |
//! | `E016: Document too large (at most N bytes)` | an `insert`/`remove` document over the limit (1 MiB); it is read to its end and dropped |
//! | `E017: Unknown flag: <flag>` | a flag other than `bot`, `nobot`, `minor`, `nominor`, `new`, `log` |
//! | `E018: Missing wiki` | a definition without a wiki |
//! | `E019: Could not create a token` | the system random source failed |
//! | `E022: Subscribing needs the admin token: subscribe NAME ADMIN_TOKEN` | `subscribe NAME` where [`SubscribePolicy::Admin`] applies |
//! | `E023: Subscribing is closed` | `subscribe` where [`SubscribePolicy::Closed`] applies |
//! | `E024: Too many subscriptions (at most N)` / `… from this address (at most N)` | `subscribe` at the cap on subscriptions, in all or from the client's address |
//! | `E025: Patterns too large: "<pattern>" would take this subscription's compiled patterns over N bytes` / `… the dispatcher's …` | an `insert` whose patterns would pass a memory budget (the first pattern past it is named); nothing is added |
//!
//! (`E021: Too many connections` is the server's, before any session: see the
//! dispatcher's control server.)
//!
//! # Who may subscribe
//!
//! The original let anyone who reached the port create subscriptions. A session
//! follows a [`SubscribeAccess`] ([`Session::with_access`]): `open` (the original's
//! behaviour), `admin` (only a client that gives the admin token as the optional
//! second word, `subscribe NAME ADMIN_TOKEN`: the one addition to the command, so
//! every other command and reply stays the original's) or `closed`. A token given is
//! always checked, in constant time, whatever the policy.
//!
//! Names echoed in error lines are cut to 200 characters and control characters in them
//! are escaped, so no client input can break a reply into two lines.
//!
//! # Choices where the original was silent or buggy
//!
//! - Blank lines outside a document are ignored (no reply).
//! - A failed `auth` ends the previous authentication, so a client cannot go on editing a
//!   subscription it believes it left.
//! - `unsubscribe NAME` (one word) is `E005`; the original deleted the authenticated
//!   subscription whatever name was given.
//! - Arguments split on runs of spaces and tabs; format names are case-insensitive.
//! - A document's first non-blank line must start one (`<` for xml); otherwise the error
//!   comes at once and the line is consumed, instead of every later line being swallowed
//!   while waiting for `</items>`.
//! - The document belongs to its command whatever the reply (SPEC §6.2): before `auth`,
//!   `insert xml` and `remove json` read their document to its end and then answer
//!   `E020` once, so a client that writes a command and its document together reads one
//!   reply per command (the original answered each document line as a command).

pub mod frame;

mod document;

mod auth;
mod format;
mod info;
mod insert;
mod list;
mod quit;
mod remove;
mod subscribe;
mod unsubscribe;

use std::fmt;
use std::net::IpAddr;

use crate::definition::{Definition, DefinitionError, DocumentError};
use crate::subscription::{Info, Mutation, PatternBudget, SubscriptionBackend, SubscriptionId};
use crate::token::{Token, TokenHash};
use crate::wiki::Wikis;

use self::document::{DocumentCommand, DocumentOp, PendingDocument, Progress};

/// Default longest line, in bytes, without its line ending.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Default largest `insert`/`remove` document, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Longest client-supplied name echoed in an error line, in characters.
const MAX_ECHO_CHARS: usize = 200;

/// Size limits of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Longest line (without `\r\n`); a longer one closes the connection.
    pub max_line_bytes: usize,
    /// Largest document.
    pub max_document_bytes: usize,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits { max_line_bytes: MAX_LINE_BYTES, max_document_bytes: MAX_DOCUMENT_BYTES }
    }
}

/// An error reply; `Display` is the exact line without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorReply {
    /// E001.
    InvalidName,
    /// E002.
    SubscriptionExists,
    /// E005.
    InvalidTokenOrName,
    /// E006.
    CommandNotUnderstood,
    /// E007.
    NoSuchFeed,
    /// E008, insert.
    MissingInsertParameter,
    /// E008, remove.
    MissingDeleteParameter,
    /// E010.
    UnknownDataFormat,
    /// E011, with the pattern and the problem.
    InvalidRegex {
        /// The pattern.
        pattern: String,
        /// The problem.
        detail: String,
    },
    /// E012.
    InvalidFormat,
    /// E013.
    LineTooLong,
    /// E014, with the name as given.
    UnknownWiki(String),
    /// E015.
    TooManyDefinitions {
        /// The cap.
        limit: usize,
    },
    /// E016.
    DocumentTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// E017, with the flag as given.
    UnknownFlag(String),
    /// E018.
    MissingWiki,
    /// E019.
    TokenUnavailable,
    /// E022.
    AdminTokenNeeded,
    /// E023.
    SubscribingClosed,
    /// E020.
    NotAuthenticated,
    /// E024.
    TooManySubscriptions {
        /// The cap.
        limit: usize,
        /// Whether it is the cap per client address.
        per_address: bool,
    },
    /// E025, with the first pattern past the budget.
    PatternMemory {
        /// The pattern.
        pattern: String,
        /// Which budget.
        budget: PatternBudget,
        /// The budget in bytes.
        limit: usize,
    },
    /// E060.
    InvalidXml,
    /// E062.
    InvalidJson,
}

impl ErrorReply {
    /// The code, e.g. `E014`.
    pub fn code(&self) -> &'static str {
        match self {
            ErrorReply::InvalidName => "E001",
            ErrorReply::SubscriptionExists => "E002",
            ErrorReply::InvalidTokenOrName => "E005",
            ErrorReply::CommandNotUnderstood => "E006",
            ErrorReply::NoSuchFeed => "E007",
            ErrorReply::MissingInsertParameter | ErrorReply::MissingDeleteParameter => "E008",
            ErrorReply::UnknownDataFormat => "E010",
            ErrorReply::InvalidRegex { .. } => "E011",
            ErrorReply::InvalidFormat => "E012",
            ErrorReply::LineTooLong => "E013",
            ErrorReply::UnknownWiki(_) => "E014",
            ErrorReply::TooManyDefinitions { .. } => "E015",
            ErrorReply::DocumentTooLarge { .. } => "E016",
            ErrorReply::UnknownFlag(_) => "E017",
            ErrorReply::MissingWiki => "E018",
            ErrorReply::TokenUnavailable => "E019",
            ErrorReply::AdminTokenNeeded => "E022",
            ErrorReply::SubscribingClosed => "E023",
            ErrorReply::NotAuthenticated => "E020",
            ErrorReply::TooManySubscriptions { .. } => "E024",
            ErrorReply::PatternMemory { .. } => "E025",
            ErrorReply::InvalidXml => "E060",
            ErrorReply::InvalidJson => "E062",
        }
    }

    /// The reply for a document that could not be read.
    pub fn from_document(error: &DocumentError) -> ErrorReply {
        match error {
            DocumentError::Xml { .. } => ErrorReply::InvalidXml,
            DocumentError::Json { .. } => ErrorReply::InvalidJson,
            DocumentError::Definition { error, .. } => match error {
                DefinitionError::MissingWiki => ErrorReply::MissingWiki,
                DefinitionError::UnknownWiki(unknown) => ErrorReply::UnknownWiki(unknown.name.clone()),
                DefinitionError::InvalidRegex { pattern, detail } => {
                    ErrorReply::InvalidRegex { pattern: pattern.clone(), detail: detail.clone() }
                }
                DefinitionError::UnknownFlag(flag) => ErrorReply::UnknownFlag(flag.clone()),
            },
            // A document's patterns cost at most what the subscription may hold.
            DocumentError::PatternMemory { pattern, limit, .. } => ErrorReply::PatternMemory {
                pattern: pattern.clone(),
                budget: PatternBudget::Subscription,
                limit: *limit,
            },
        }
    }
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.code();
        match self {
            ErrorReply::InvalidName => write!(f, "{code}: Invalid name"),
            ErrorReply::SubscriptionExists => write!(f, "{code}: This subscription exist"),
            ErrorReply::InvalidTokenOrName => write!(f, "{code}: Invalid token or name"),
            ErrorReply::CommandNotUnderstood => write!(f, "{code}: Command not understood"),
            ErrorReply::NoSuchFeed => write!(f, "{code}: No such feed"),
            ErrorReply::MissingInsertParameter => {
                write!(f, "{code}: Missing parameter for insert")
            }
            ErrorReply::MissingDeleteParameter => {
                write!(f, "{code}: Missing parameter for delete")
            }
            ErrorReply::UnknownDataFormat => write!(f, "{code}: Unknown format of data"),
            ErrorReply::InvalidRegex { pattern, detail } => {
                write!(f, "{code}: Invalid regex: {:?}: {}", clip(pattern), one_line(detail))
            }
            ErrorReply::InvalidFormat => write!(f, "{code}: Invalid format"),
            ErrorReply::LineTooLong => write!(f, "{code}: Line too long"),
            ErrorReply::UnknownWiki(name) => {
                write!(f, "{code}: Unknown wiki: {}", one_line(&clip(name)))
            }
            ErrorReply::TooManyDefinitions { limit } => {
                write!(f, "{code}: Too many definitions (at most {limit} per subscription)")
            }
            ErrorReply::DocumentTooLarge { limit } => {
                write!(f, "{code}: Document too large (at most {limit} bytes)")
            }
            ErrorReply::UnknownFlag(flag) => {
                write!(f, "{code}: Unknown flag: {}", one_line(&clip(flag)))
            }
            ErrorReply::MissingWiki => write!(f, "{code}: Missing wiki"),
            ErrorReply::TokenUnavailable => write!(f, "{code}: Could not create a token"),
            ErrorReply::AdminTokenNeeded => {
                write!(f, "{code}: Subscribing needs the admin token: subscribe NAME ADMIN_TOKEN")
            }
            ErrorReply::SubscribingClosed => write!(f, "{code}: Subscribing is closed"),
            ErrorReply::NotAuthenticated => {
                write!(f, "{code}: Authentication was not completed")
            }
            ErrorReply::TooManySubscriptions { limit, per_address: false } => {
                write!(f, "{code}: Too many subscriptions (at most {limit})")
            }
            ErrorReply::TooManySubscriptions { limit, per_address: true } => {
                write!(f, "{code}: Too many subscriptions from this address (at most {limit})")
            }
            ErrorReply::PatternMemory { pattern, budget, limit } => {
                let whose = match budget {
                    PatternBudget::Subscription => "this subscription's",
                    PatternBudget::Dispatcher => "the dispatcher's",
                };
                write!(
                    f,
                    "{code}: Patterns too large: {:?} would take {whose} compiled patterns over {limit} bytes",
                    clip(pattern)
                )
            }
            ErrorReply::InvalidXml => write!(f, "{code}: Invalid xml"),
            ErrorReply::InvalidJson => write!(f, "{code}: Invalid json"),
        }
    }
}

/// At most [`MAX_ECHO_CHARS`] characters, marked with `…` when cut.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Control characters escaped, so echoed text stays on one line.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// One reply line.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `TOKEN: <token>` after `subscribe` (`Debug` does not show the token).
    Token(Token),
    /// `OK`.
    Ok,
    /// A count of definitions added or removed.
    Count(usize),
    /// A `list` document, on one line.
    Document(String),
    /// The `info` line.
    Info(Info),
    /// `Good bye :o`.
    Bye,
    /// An error.
    Error(ErrorReply),
}

impl Reply {
    /// The line without its line ending. This is the one place a token is written out.
    pub fn line(&self) -> String {
        match self {
            Reply::Token(token) => format!("TOKEN: {}", token.expose()),
            Reply::Ok => "OK".to_string(),
            Reply::Count(count) => count.to_string(),
            Reply::Document(document) => document.clone(),
            Reply::Info(info) => format!(
                "I have {} connections and {} subscriptions, I am now watching {} wikis",
                info.connections, info.subscriptions, info.wikis
            ),
            Reply::Bye => "Good bye :o".to_string(),
            Reply::Error(error) => error.to_string(),
        }
    }

    /// The bytes to send: the line and `\n`.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.line().into_bytes();
        bytes.push(b'\n');
        bytes
    }
}

impl From<ErrorReply> for Reply {
    fn from(error: ErrorReply) -> Reply {
        Reply::Error(error)
    }
}

/// What one line produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Lines to send, in order.
    pub replies: Vec<Reply>,
    /// State changes to persist, in order, before sending the replies.
    pub mutations: Vec<Mutation>,
    /// Close the connection after sending the replies.
    pub close: bool,
}

impl Output {
    fn reply(&mut self, reply: impl Into<Reply>) {
        self.replies.push(reply.into());
    }
}

/// Who may create subscriptions with `subscribe` (`dispatcher.subscribe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscribePolicy {
    /// Anyone who can reach the control port (the original's behaviour).
    #[default]
    Open,
    /// Only a client that gives the admin token: `subscribe NAME ADMIN_TOKEN`.
    Admin,
    /// No one: no new subscriptions.
    Closed,
}

impl SubscribePolicy {
    /// The policy named `open`, `admin` or `closed`.
    pub fn parse(name: &str) -> Option<SubscribePolicy> {
        match name {
            "open" => Some(SubscribePolicy::Open),
            "admin" => Some(SubscribePolicy::Admin),
            "closed" => Some(SubscribePolicy::Closed),
            _ => None,
        }
    }

    /// Its name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            SubscribePolicy::Open => "open",
            SubscribePolicy::Admin => "admin",
            SubscribePolicy::Closed => "closed",
        }
    }
}

/// What `subscribe` requires of a client: the policy, and the admin token's hash to
/// check a given token against.
#[derive(Debug, Clone, Default)]
pub struct SubscribeAccess {
    pub policy: SubscribePolicy,
    /// The hash of the admin token (`http.admin_token`), if one is configured.
    pub admin_token: Option<TokenHash>,
}

impl SubscribeAccess {
    /// Whether a client that gave `token` (or none) may create a subscription; the
    /// refusal otherwise. A given token is checked (in constant time) whatever the
    /// policy, so a wrong one is never silently accepted.
    ///
    /// # Errors
    /// `E023` when closed, `E005` for a wrong token, `E022` when the token is needed.
    pub fn check(&self, token: Option<&str>) -> Result<(), ErrorReply> {
        let valid = |token: &str| self.admin_token.as_ref().is_some_and(|admin| admin.verify(token));
        match (self.policy, token) {
            (SubscribePolicy::Closed, _) => Err(ErrorReply::SubscribingClosed),
            (_, Some(token)) if !valid(token) => Err(ErrorReply::InvalidTokenOrName),
            (SubscribePolicy::Admin, None) => Err(ErrorReply::AdminTokenNeeded),
            _ => Ok(()),
        }
    }
}

/// One control connection's state.
#[derive(Debug)]
pub struct Session {
    limits: SessionLimits,
    access: SubscribeAccess,
    /// The client's address, for the cap on subscriptions per address.
    address: Option<IpAddr>,
    authenticated: Option<SubscriptionId>,
    pending: Option<PendingDocument>,
    closed: bool,
}

/// What a line did, for a server that parses documents off its lock ([`Session::step`]).
#[derive(Debug)]
pub enum Step {
    /// Everything the line did.
    Done(Output),
    /// The line completed an `insert`/`remove` document for the authenticated
    /// subscription: parse it ([`CompleteDocument::parse`], which compiles its patterns),
    /// then [`Session::apply_document`].
    Document(CompleteDocument),
}

/// A received document, not parsed yet.
#[derive(Debug)]
pub struct CompleteDocument {
    subscription: SubscriptionId,
    pending: PendingDocument,
}

impl CompleteDocument {
    /// Parses the document, compiling its patterns (the slow part), within
    /// `max_pattern_memory` bytes of compiled patterns ([`parse_document`](crate::definition::parse_document)).
    pub fn parse(self, wikis: &Wikis, max_pattern_memory: usize) -> ParsedDocument {
        let op = self.pending.op();
        ParsedDocument {
            op,
            subscription: self.subscription,
            definitions: self.pending.finish(wikis, max_pattern_memory),
        }
    }
}

/// A parsed document, for [`Session::apply_document`].
#[derive(Debug)]
pub struct ParsedDocument {
    op: DocumentOp,
    subscription: SubscriptionId,
    definitions: Result<Vec<Definition>, ErrorReply>,
}

impl Default for Session {
    fn default() -> Session {
        Session::new(SessionLimits::default())
    }
}

impl Session {
    /// A fresh, unauthenticated session; anyone may subscribe (see [`Session::with_access`]).
    pub fn new(limits: SessionLimits) -> Session {
        Session {
            limits,
            access: SubscribeAccess::default(),
            address: None,
            authenticated: None,
            pending: None,
            closed: false,
        }
    }

    /// Who may create subscriptions in this session.
    #[must_use]
    pub fn with_access(mut self, access: SubscribeAccess) -> Session {
        self.access = access;
        self
    }

    /// The session of a client at `address`: its `subscribe`s count against the cap per
    /// address.
    pub fn from_address(mut self, address: IpAddr) -> Session {
        self.address = Some(address);
        self
    }

    /// The subscription this session is authenticated to.
    pub fn authenticated(&self) -> Option<SubscriptionId> {
        self.authenticated
    }

    /// Whether the session is waiting for more lines of a document.
    pub fn in_document(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the session has ended (`quit` or a line too long); later lines are ignored.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Handles one line (with or without its `\n`; a trailing `\r` is dropped). A
    /// document it completes is parsed and applied here; see [`Session::step`] for a
    /// server that parses elsewhere.
    pub fn feed_line<B>(&mut self, line: &[u8], backend: &mut B) -> Output
    where
        B: SubscriptionBackend + ?Sized,
    {
        match self.step(line, backend) {
            Step::Done(out) => out,
            Step::Document(document) => {
                let parsed = document.parse(backend.wikis(), backend.limits().max_pattern_memory_per_subscription);
                self.apply_document(parsed, backend)
            }
        }
    }

    /// Applies a parsed document ([`Step::Document`]) to its subscription.
    pub fn apply_document<B>(&mut self, parsed: ParsedDocument, backend: &mut B) -> Output
    where
        B: SubscriptionBackend + ?Sized,
    {
        let mut out = Output::default();
        let definitions = match parsed.definitions {
            Ok(definitions) => definitions,
            Err(error) => {
                out.reply(error);
                return out;
            }
        };
        match parsed.op {
            DocumentOp::Insert => insert::finish(self, parsed.subscription, definitions, backend, &mut out),
            DocumentOp::Remove => remove::finish(self, parsed.subscription, definitions, backend, &mut out),
        }
        out
    }

    /// [`Session::feed_line`] without parsing documents: a document the line completes
    /// comes back as [`Step::Document`]. Parsing compiles the document's patterns, which
    /// can take seconds, so a server that holds a lock while it calls this parses
    /// without the lock.
    pub fn step<B>(&mut self, line: &[u8], backend: &mut B) -> Step
    where
        B: SubscriptionBackend + ?Sized,
    {
        let mut out = Output::default();
        if self.closed {
            return Step::Done(out);
        }
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.limits.max_line_bytes {
            return Step::Done(self.line_too_long());
        }
        if let Some(pending) = self.pending.as_mut() {
            match pending.push_line(line) {
                Progress::More => {}
                Progress::Rejected(error) => {
                    out.reply(pending.rejection(error));
                    self.pending = None;
                }
                Progress::Complete => {
                    if let Some(pending) = self.pending.take() {
                        return self.complete_document(pending, out);
                    }
                }
            }
            return Step::Done(out);
        }
        let Ok(text) = std::str::from_utf8(line) else {
            out.reply(ErrorReply::CommandNotUnderstood);
            return Step::Done(out);
        };
        match Command::parse(text) {
            Ok(Some(command)) => return command.apply(self, backend, out),
            Ok(None) => {}
            Err(error) => out.reply(error),
        }
        Step::Done(out)
    }

    /// The server found a line longer than the limit before its end: answer `E013` and
    /// close.
    pub fn line_too_long(&mut self) -> Output {
        self.closed = true;
        self.pending = None;
        Output { replies: vec![Reply::Error(ErrorReply::LineTooLong)], mutations: Vec::new(), close: true }
    }

    /// Starts collecting a document; `first` is what followed the format word on the
    /// command line.
    fn start_document(&mut self, mut pending: PendingDocument, first: &str, mut out: Output) -> Step {
        if first.trim().is_empty() {
            self.pending = Some(pending);
            return Step::Done(out);
        }
        match pending.push_line(first.as_bytes()) {
            Progress::More => self.pending = Some(pending),
            Progress::Rejected(error) => out.reply(pending.rejection(error)),
            Progress::Complete => return self.complete_document(pending, out),
        }
        Step::Done(out)
    }

    /// A document is complete: its one reply if it was refused before it began, else
    /// the document to parse.
    fn complete_document(&mut self, pending: PendingDocument, mut out: Output) -> Step {
        match pending.target() {
            Ok(subscription) => Step::Document(CompleteDocument { subscription, pending }),
            // Refused before the document began (E020): read to its end, one reply.
            Err(refusal) => {
                out.reply(refusal);
                Step::Done(out)
            }
        }
    }

    /// The subscription vanished under this session (deleted by another connection).
    fn lost_subscription(&mut self, out: &mut Output) {
        self.authenticated = None;
        out.reply(ErrorReply::NoSuchFeed);
    }
}

/// A command line, parsed.
enum Command {
    Subscribe(subscribe::Subscribe),
    Auth(auth::Auth),
    Unsubscribe(unsubscribe::Unsubscribe),
    Document(DocumentCommand),
    List(list::List),
    Format(format::Format),
    Info(info::Info),
    Quit(quit::Quit),
}

impl Command {
    /// `Ok(None)` for a blank line.
    fn parse(line: &str) -> Result<Option<Command>, ErrorReply> {
        let mut words = Words::new(line);
        let Some(name) = words.next() else {
            return Ok(None);
        };
        let command = match name.to_ascii_lowercase().as_str() {
            "subscribe" => Command::Subscribe(subscribe::Subscribe::parse(words)?),
            "auth" => Command::Auth(auth::Auth::parse(words)?),
            "unsubscribe" => Command::Unsubscribe(unsubscribe::Unsubscribe::parse(words)?),
            "insert" => Command::Document(DocumentCommand::parse(DocumentOp::Insert, words)),
            "remove" => Command::Document(DocumentCommand::parse(DocumentOp::Remove, words)),
            "list" => Command::List(list::List::parse(words)?),
            "format" => Command::Format(format::Format::parse(words)?),
            "info" => Command::Info(info::Info::parse(words)?),
            "quit" => Command::Quit(quit::Quit::parse(words)?),
            _ => return Err(ErrorReply::CommandNotUnderstood),
        };
        Ok(Some(command))
    }

    fn apply<B>(self, session: &mut Session, backend: &mut B, mut out: Output) -> Step
    where
        B: SubscriptionBackend + ?Sized,
    {
        match self {
            Command::Subscribe(c) => c.apply(&session.access, session.address, backend, &mut out),
            Command::Auth(c) => c.apply(session, backend, &mut out),
            Command::Unsubscribe(c) => c.apply(session, backend, &mut out),
            Command::Document(c) => return c.apply(session, out),
            Command::List(c) => c.apply(session, backend, &mut out),
            Command::Format(c) => c.apply(session, backend, &mut out),
            Command::Info(c) => c.apply(backend, &mut out),
            Command::Quit(c) => c.apply(session, &mut out),
        }
        Step::Done(out)
    }
}

/// The words of a command line, split on runs of spaces and tabs.
struct Words<'l> {
    rest: &'l str,
}

impl<'l> Words<'l> {
    fn new(line: &'l str) -> Words<'l> {
        Words { rest: line }
    }

    /// Everything after the words taken so far, leading blanks dropped (a document's
    /// first line).
    fn rest(self) -> &'l str {
        self.rest.trim_start_matches(is_blank)
    }

    /// Whether no words are left.
    fn is_empty(&self) -> bool {
        self.rest.trim_matches(is_blank).is_empty()
    }

    /// The words left, collected.
    fn remaining(self) -> Vec<&'l str> {
        self.collect()
    }
}

impl<'l> Iterator for Words<'l> {
    type Item = &'l str;

    fn next(&mut self) -> Option<&'l str> {
        let trimmed = self.rest.trim_start_matches(is_blank);
        if trimmed.is_empty() {
            self.rest = trimmed;
            return None;
        }
        let end = trimmed.find(is_blank).unwrap_or(trimmed.len());
        let (word, rest) = trimmed.split_at(end);
        self.rest = rest;
        Some(word)
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The authenticated subscription, or `E020`.
fn require_auth(session: &Session, out: &mut Output) -> Option<SubscriptionId> {
    if session.authenticated.is_none() {
        out.reply(ErrorReply::NotAuthenticated);
    }
    session.authenticated
}
