//! One connection's IRC behaviour as a pure state machine (SPEC §7): registration with
//! CAP negotiation and SASL PLAIN (or NickServ IDENTIFY), nick fallback, joining its
//! channels, kicks and rejoins, PING/PONG lag tracking, and what counts as an unknown
//! reply. It sees parsed lines and the time, and answers with [`Action`]s: lines to
//! send (at once or paced by the flood bucket), fleet events to log, or a reason to
//! disconnect. The connection task ([`crate::connection`]) does the I/O.
//!
//! A session lives as long as its connection slot, across reconnects: the channel
//! states (a kicked channel waits for its rejoin even while the connection is down) and
//! what was learnt about the server's nick length survive; [`Session::start`] begins
//! each new connection.

use std::sync::Arc;
use std::time::Duration;

use irc_proto::Command;
use tokio::time::Instant;

use crate::line::Line;
use crate::nick::{NickChoice, is_registered_notice};
use crate::plan::ChannelSpec;

/// What the bot logs about itself in `fleetlog.message` (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FleetMessage {
    Joined,
    Kicked,
    Disconnected,
    Reconnected,
    CouldNotReconnect,
    NickChanged,
    UnknownReply,
    ArmadaAllDead,
    ProcessTerminated,
}

impl FleetMessage {
    pub fn as_str(self) -> &'static str {
        match self {
            FleetMessage::Joined => "JOINED",
            FleetMessage::Kicked => "KICKED",
            FleetMessage::Disconnected => "DISCONNECTED",
            FleetMessage::Reconnected => "RECONNECTED",
            FleetMessage::CouldNotReconnect => "COULD-NOT-RECONNECT",
            FleetMessage::NickChanged => "NICK-CHANGED",
            FleetMessage::UnknownReply => "UNKNOWN-REPLY",
            FleetMessage::ArmadaAllDead => "ARMADA-ALL-DEAD",
            FleetMessage::ProcessTerminated => "PROCESS-TERMINATED",
        }
    }
}

/// One fleet event: a `fleetlog` row and a bus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetEvent {
    pub message: FleetMessage,
    pub channel: Option<String>,
    /// The bot's nick at the time.
    pub nick: String,
    /// Why, in words (the kicker and reason, the unknown line, the disconnect reason).
    pub detail: Option<String>,
}

/// What the connection should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this line now (registration, PING/PONG, QUIT): not paced.
    Send(String),
    /// Send this line when the flood bucket allows.
    Paced(String),
    Fleet(FleetEvent),
    /// Worth a line in the node's log (a failed join, a failed SASL login).
    Note(String),
    /// Close the connection and reconnect later.
    Disconnect(String),
}

/// A connection's settings (shared by every connection of a connector except `nick`).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub nick: String,
    pub user: String,
    pub realname: String,
    pub password: Option<String>,
    /// The host NickServ's messages come from, when the operator names it: its
    /// "registered" notice is trusted from there, and IDENTIFY is sent even without
    /// SASL (see [`Session::nickserv_is_services`]).
    pub services_host: Option<String>,
    pub ping_interval: Duration,
    pub max_lag: Duration,
    pub rejoin_delay: Duration,
    /// Ceiling for the growing delay between attempts to join a channel that refuses us.
    pub max_backoff: Duration,
}

/// Where a channel stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelState {
    /// To be joined on the next registration.
    Wanted,
    /// JOIN sent, no answer yet.
    Joining { since: Instant },
    /// In the channel (the active set).
    Joined,
    /// Kicked: rejoin at this time.
    Kicked { rejoin_at: Instant },
    /// The server refused the join: try again at this time.
    Refused { retry_at: Instant, reason: String },
}

#[derive(Debug, Clone)]
struct ChannelSlot {
    spec: ChannelSpec,
    /// Name folded for comparison (RFC 1459 case mapping).
    folded: String,
    state: ChannelState,
    /// Consecutive refused joins (the retry delay doubles with each).
    refusals: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// No connection.
    Idle,
    Registering {
        deadline: Instant,
        cap: CapPhase,
        sasl: SaslPhase,
        ls: Vec<String>,
    },
    Registered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CapPhase {
    /// `CAP LS` sent; the server may answer or ignore it.
    Listing,
    /// `CAP REQ` sent.
    Requesting,
    /// `CAP END` sent (or never needed).
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SaslPhase {
    NotUsed,
    Started,
    Done,
}

/// Most nicks tried while registering before giving up on this connection.
const MAX_NICK_ATTEMPTS: u32 = 12;
/// Longest text of one PRIVMSG/NOTICE line: 512 less CR LF, the command, the target
/// and room for the `:nick!user@host ` prefix the server prepends when relaying.
const PREFIX_ROOM: usize = 100;

/// One connection's protocol state.
#[derive(Debug, Clone)]
pub struct Session {
    cfg: Arc<SessionConfig>,
    channels: Vec<ChannelSlot>,
    nick: NickChoice,
    current_nick: String,
    phase: Phase,
    /// A connection has registered before (the next registration is a reconnect).
    registered_before: bool,
    registered_at: Option<Instant>,
    joined_any: bool,
    next_ping_at: Option<Instant>,
    outstanding_ping: Option<(u64, Instant)>,
    ping_counter: u64,
    lag: Option<Duration>,
    identified: bool,
    /// This connection's server offered SASL: services are linked, so the nick
    /// NickServ is theirs.
    services_linked: bool,
}

/// RFC 1459 case folding: ASCII plus `[]\~` as the upper case of `{}|^`.
pub fn fold(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '[' => '{',
            ']' => '}',
            '\\' => '|',
            '~' => '^',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Numerics irc-proto does not name that are common enough not to be "unknown":
/// statistics, WHOIS extras, channel metadata and help that ngIRCd, InspIRCd, Solanum
/// and UnrealIRCd send in ordinary operation.
const EXTRA_KNOWN_NUMERICS: &[u16] = &[
    42, 250, 264, 307, 310, 320, 328, 329, 330, 335, 338, 378, 379, 671, 704, 705, 706, 900, 901, 902, 903, 904, 905,
    906, 907, 908,
];

/// Commands a server sends that we understand (or knowingly ignore).
const KNOWN_COMMANDS: &[&str] = &[
    "PRIVMSG",
    "NOTICE",
    "JOIN",
    "PART",
    "KICK",
    "QUIT",
    "NICK",
    "MODE",
    "TOPIC",
    "INVITE",
    "PING",
    "PONG",
    "ERROR",
    "CAP",
    "AUTHENTICATE",
    "KILL",
    "WALLOPS",
    "AWAY",
    "ACCOUNT",
    "CHGHOST",
    "SETNAME",
    "BATCH",
    "TAGMSG",
    "FAIL",
    "WARN",
    "NOTE",
];

/// Whether a parsed line is something we know (a command or numeric we understand or
/// knowingly ignore); the rest is logged as `UNKNOWN-REPLY`.
pub fn is_known(line: &Line<'_>) -> bool {
    match line.numeric() {
        Some(code) => code.to_string().parse::<irc_proto::Response>().is_ok() || EXTRA_KNOWN_NUMERICS.contains(&code),
        None => KNOWN_COMMANDS.iter().any(|c| c.eq_ignore_ascii_case(line.command)),
    }
}

fn render(command: Command) -> String {
    String::from(&command)
}

/// Standard base64 (RFC 4648) for SASL.
fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Splits `text` into pieces of at most `max` bytes at character boundaries.
fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        // Prefer to break at the last space in the piece.
        if let Some(space) = rest[..cut].rfind(' ').filter(|&s| s > max / 2) {
            cut = space + 1;
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

/// Why an outgoing message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SayError {
    #[error("target '{0}' is not a channel or nick (empty, or has spaces, commas or control characters)")]
    BadTarget(String),
    #[error("a raw line must be one line of at most 510 bytes without NUL, CR or LF")]
    BadRaw,
    #[error("nothing to send: the text is empty")]
    Empty,
}

impl Session {
    pub fn new(cfg: Arc<SessionConfig>, channels: &[ChannelSpec]) -> Session {
        let nick = NickChoice::new(&cfg.nick);
        Session {
            current_nick: cfg.nick.clone(),
            channels: channels
                .iter()
                .map(|spec| ChannelSlot {
                    folded: fold(&spec.name),
                    spec: spec.clone(),
                    state: ChannelState::Wanted,
                    refusals: 0,
                })
                .collect(),
            nick,
            cfg,
            phase: Phase::Idle,
            registered_before: false,
            registered_at: None,
            joined_any: false,
            next_ping_at: None,
            outstanding_ping: None,
            ping_counter: 0,
            lag: None,
            identified: false,
            services_linked: false,
        }
    }

    /// The nick in use (or being registered).
    pub fn nick(&self) -> &str {
        &self.current_nick
    }

    pub fn is_registered(&self) -> bool {
        self.phase == Phase::Registered
    }

    /// The last measured round trip, or how long the oldest PING has waited when that is
    /// longer.
    pub fn lag(&self, now: Instant) -> Option<Duration> {
        let waiting = self.outstanding_ping.map(|(_, sent)| now.saturating_duration_since(sent));
        match (self.lag, waiting) {
            (Some(l), Some(w)) => Some(l.max(w)),
            (l, w) => l.or(w),
        }
    }

    /// The channels joined now (the active set).
    pub fn joined(&self) -> impl Iterator<Item = &str> {
        self.channels.iter().filter(|c| c.state == ChannelState::Joined).map(|c| c.spec.name.as_str())
    }

    /// Every channel with its state.
    pub fn channel_states(&self) -> impl Iterator<Item = (&str, &ChannelState)> {
        self.channels.iter().map(|c| (c.spec.name.as_str(), &c.state))
    }

    /// Whether the current connection counts as a success for the reconnect backoff: it
    /// got into a channel (or had none to join and registered), as TheFleet judged.
    pub fn succeeded(&self) -> bool {
        self.joined_any || (self.channels.is_empty() && self.registered_at.is_some())
    }

    /// Whether a channel is this session's.
    pub fn has_channel(&self, name: &str) -> bool {
        self.slot(name).is_some()
    }

    fn slot(&self, name: &str) -> Option<usize> {
        let folded = fold(name);
        self.channels.iter().position(|c| c.folded == folded)
    }

    fn is_me(&self, nick: &str) -> bool {
        fold(nick) == fold(&self.current_nick)
    }

    fn fleet(&self, message: FleetMessage, channel: Option<&str>, detail: Option<String>) -> Action {
        Action::Fleet(FleetEvent {
            message,
            channel: channel.map(str::to_string),
            nick: self.current_nick.clone(),
            detail,
        })
    }

    /// A new connection is up (TCP and TLS): begin registration.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        self.phase = Phase::Registering {
            deadline: now + self.cfg.max_lag,
            cap: CapPhase::Listing,
            sasl: SaslPhase::NotUsed,
            ls: Vec::new(),
        };
        self.registered_at = None;
        self.joined_any = false;
        self.next_ping_at = None;
        self.outstanding_ping = None;
        self.lag = None;
        self.identified = false;
        self.services_linked = false;
        for channel in &mut self.channels {
            channel.state = match &channel.state {
                ChannelState::Kicked { rejoin_at } if *rejoin_at > now => channel.state.clone(),
                ChannelState::Refused { retry_at, .. } if *retry_at > now => channel.state.clone(),
                _ => ChannelState::Wanted,
            };
        }
        self.current_nick = self.nick.first();
        vec![
            Action::Send("CAP LS 302".to_string()),
            Action::Send(render(Command::NICK(self.current_nick.clone()))),
            Action::Send(render(Command::USER(self.cfg.user.clone(), "0".into(), self.cfg.realname.clone()))),
        ]
    }

    /// The connection is gone. Logs `DISCONNECTED` for every channel of the active set
    /// (one event without a channel when none was joined) and forgets the connection.
    pub fn disconnected(&mut self, reason: &str) -> Vec<Action> {
        let joined: Vec<String> = self.joined().map(str::to_string).collect();
        let mut actions: Vec<Action> =
            joined.iter().map(|c| self.fleet(FleetMessage::Disconnected, Some(c), Some(reason.to_string()))).collect();
        if actions.is_empty() && self.phase != Phase::Idle {
            actions.push(self.fleet(FleetMessage::Disconnected, None, Some(reason.to_string())));
        }
        for channel in &mut self.channels {
            if matches!(channel.state, ChannelState::Joined | ChannelState::Joining { .. }) {
                channel.state = ChannelState::Wanted;
            }
        }
        self.phase = Phase::Idle;
        self.next_ping_at = None;
        self.outstanding_ping = None;
        actions
    }

    /// This connection gave up (too many failed attempts): `COULD-NOT-RECONNECT` for each
    /// of its channels (one without a channel when it has none).
    pub fn sunk(&self, reason: &str) -> Vec<Action> {
        let mut actions: Vec<Action> = self
            .channels
            .iter()
            .map(|c| self.fleet(FleetMessage::CouldNotReconnect, Some(&c.spec.name), Some(reason.to_string())))
            .collect();
        if actions.is_empty() {
            actions.push(self.fleet(FleetMessage::CouldNotReconnect, None, Some(reason.to_string())));
        }
        actions
    }

    /// The line to say goodbye with.
    pub fn quit(&self, reason: &str) -> String {
        render(Command::QUIT(Some(reason.to_string())))
    }

    /// When [`Session::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        match &self.phase {
            Phase::Idle => return None,
            Phase::Registering { deadline, .. } => consider(*deadline),
            Phase::Registered => {
                if let Some(t) = self.next_ping_at {
                    consider(t);
                }
                if let Some((_, sent)) = self.outstanding_ping {
                    consider(sent + self.cfg.max_lag);
                }
                for channel in &self.channels {
                    match &channel.state {
                        ChannelState::Kicked { rejoin_at } => consider(*rejoin_at),
                        ChannelState::Refused { retry_at, .. } => consider(*retry_at),
                        ChannelState::Joining { since } => consider(*since + self.cfg.max_lag),
                        _ => {}
                    }
                }
            }
        }
        next
    }

    /// Timers: registration timeout, PINGs and the lag limit, rejoins.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match &self.phase {
            Phase::Idle => {}
            Phase::Registering { deadline, .. } => {
                if now >= *deadline {
                    actions.push(Action::Disconnect(format!(
                        "the server did not complete registration within {}s (no welcome)",
                        self.cfg.max_lag.as_secs_f64()
                    )));
                }
            }
            Phase::Registered => {
                if let Some((_, sent)) = self.outstanding_ping
                    && now.saturating_duration_since(sent) >= self.cfg.max_lag
                {
                    actions.push(Action::Disconnect(format!(
                        "no PONG within max_lag ({}s): the server stopped answering",
                        self.cfg.max_lag.as_secs_f64()
                    )));
                    return actions;
                }
                if self.next_ping_at.is_some_and(|t| now >= t) {
                    self.ping_counter += 1;
                    if self.outstanding_ping.is_none() {
                        self.outstanding_ping = Some((self.ping_counter, now));
                    }
                    actions.push(Action::Send(render(Command::PING(format!("flotilla-{}", self.ping_counter), None))));
                    self.next_ping_at = Some(now + self.cfg.ping_interval);
                }
                let mut to_join = Vec::new();
                for i in 0..self.channels.len() {
                    let channel = &mut self.channels[i];
                    match &channel.state {
                        ChannelState::Kicked { rejoin_at } if now >= *rejoin_at => to_join.push(i),
                        ChannelState::Refused { retry_at, .. } if now >= *retry_at => to_join.push(i),
                        ChannelState::Joining { since }
                            if now.saturating_duration_since(*since) >= self.cfg.max_lag =>
                        {
                            let reason = format!("no answer to JOIN within {}s", self.cfg.max_lag.as_secs_f64());
                            actions.push(Action::Note(format!("{}: {reason}", channel.spec.name)));
                            channel.refusals += 1;
                            channel.state = ChannelState::Refused { retry_at: now + self.cfg.rejoin_delay, reason };
                        }
                        _ => {}
                    }
                }
                actions.extend(self.join(&to_join, now));
            }
        }
        actions
    }

    /// JOIN lines for these channels (keyed ones first, as IRC pairs keys in order),
    /// each line within IRC's length limit.
    fn join(&mut self, indices: &[usize], now: Instant) -> Vec<Action> {
        let mut ordered: Vec<usize> = indices.to_vec();
        ordered.sort_by_key(|&i| self.channels[i].spec.key.is_none());
        let mut actions = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        let mut keys: Vec<&str> = Vec::new();
        let mut length = 0;
        let flush = |names: &mut Vec<&str>, keys: &mut Vec<&str>, actions: &mut Vec<Action>| {
            if !names.is_empty() {
                let key = (!keys.is_empty()).then(|| keys.join(","));
                actions.push(Action::Paced(render(Command::JOIN(names.join(","), key, None))));
                names.clear();
                keys.clear();
            }
        };
        for &i in &ordered {
            let spec = &self.channels[i].spec;
            let extra = spec.name.len() + 1 + spec.key.as_ref().map_or(0, |k| k.len() + 1);
            if length + extra > 400 {
                flush(&mut names, &mut keys, &mut actions);
                length = 0;
            }
            names.push(&spec.name);
            if let Some(key) = &spec.key {
                keys.push(key);
            }
            length += extra;
        }
        flush(&mut names, &mut keys, &mut actions);
        for &i in indices {
            self.channels[i].state = ChannelState::Joining { since: now };
        }
        actions
    }

    fn refuse_join(&mut self, name: &str, reason: String, now: Instant) -> Vec<Action> {
        let Some(i) = self.slot(name) else { return Vec::new() };
        let channel = &mut self.channels[i];
        channel.refusals = channel.refusals.saturating_add(1);
        let delay = self
            .cfg
            .rejoin_delay
            .saturating_mul(1u32 << channel.refusals.saturating_sub(1).min(16))
            .min(self.cfg.max_backoff.max(self.cfg.rejoin_delay));
        channel.state = ChannelState::Refused { retry_at: now + delay, reason: reason.clone() };
        vec![Action::Note(format!(
            "cannot join {}: {reason}; trying again in {}s",
            channel.spec.name,
            delay.as_secs_f64()
        ))]
    }

    /// A line from the server.
    pub fn handle(&mut self, line: &Line<'_>, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(code) = line.numeric() {
            self.numeric(code, line, now, &mut actions);
        } else {
            self.command(line, now, &mut actions);
        }
        if !is_known(line) {
            actions.push(self.fleet(
                FleetMessage::UnknownReply,
                None,
                Some(format!("unknown reply {}: {}", line.command, line.params.join(" "))),
            ));
        }
        actions
    }

    fn registering(&self) -> bool {
        matches!(self.phase, Phase::Registering { .. })
    }

    fn try_another_nick(&mut self, actions: &mut Vec<Action>) {
        if self.nick.attempts >= MAX_NICK_ATTEMPTS {
            actions.push(Action::Disconnect(format!(
                "the server refused {MAX_NICK_ATTEMPTS} nicks in a row (last: {})",
                self.current_nick
            )));
            return;
        }
        let digits = flotilla_core::random::below(1000) as u16;
        self.current_nick = self.nick.fallback(digits);
        actions.push(Action::Send(render(Command::NICK(self.current_nick.clone()))));
    }

    fn numeric(&mut self, code: u16, line: &Line<'_>, now: Instant, actions: &mut Vec<Action>) {
        match code {
            1 => {
                self.phase = Phase::Registered;
                self.registered_at = Some(now);
                let given = line.param(0);
                if !given.is_empty() {
                    self.current_nick = given.to_string();
                }
                if self.registered_before {
                    actions.push(self.fleet(FleetMessage::Reconnected, None, None));
                }
                self.registered_before = true;
                if fold(&self.current_nick) != fold(&self.cfg.nick) {
                    actions.push(self.fleet(
                        FleetMessage::NickChanged,
                        None,
                        Some(format!("registered as {} because {} was refused", self.current_nick, self.cfg.nick)),
                    ));
                }
                self.next_ping_at = Some(now + self.cfg.ping_interval);
                if let Some(password) = &self.cfg.password
                    && !self.identified
                {
                    // No SASL (or it failed): identify to NickServ instead, if NickServ
                    // is the network's services and not whoever took the nick.
                    self.identified = true;
                    if self.nickserv_is_services() {
                        let text = if fold(&self.current_nick) == fold(&self.cfg.nick) {
                            format!("IDENTIFY {password}")
                        } else {
                            format!("IDENTIFY {} {password}", self.cfg.nick)
                        };
                        actions.push(Action::Paced(render(Command::PRIVMSG("NickServ".into(), text))));
                    } else {
                        actions.push(Action::Note(
                            "not identifying to NickServ: this server offers no SASL, so the nick NickServ may \
                             belong to anyone; set services_host if the network has services"
                                .into(),
                        ));
                    }
                }
                let wanted: Vec<usize> =
                    (0..self.channels.len()).filter(|&i| self.channels[i].state == ChannelState::Wanted).collect();
                actions.extend(self.join(&wanted, now));
            }
            5 => {
                // `005 <me> TOKEN… :are supported by this server`
                for token in line.params.iter().skip(1).take(line.params.len().saturating_sub(2)) {
                    if let Some(value) = token.strip_prefix("NICKLEN=")
                        && let Ok(limit) = value.parse::<usize>()
                    {
                        self.nick.set_limit(limit);
                    }
                }
            }
            // ERR_NICKNAMEINUSE, ERR_NICKCOLLISION, ERR_UNAVAILRESOURCE (for a nick).
            433 | 436 | 437 if !(code == 437 && self.has_channel(line.param(1))) && self.registering() => {
                self.try_another_nick(actions);
            }
            432 if self.registering() => {
                self.nick.rejected_as_erroneous(line.param(1));
                self.try_another_nick(actions);
            }
            // Refused joins: full, invite only, banned, bad key, needs registration, no
            // such channel, too many channels, temporarily unavailable, bad name, TLS
            // only, opers only.
            471 | 473 | 474 | 475 | 477 | 403 | 405 | 437 | 479 | 489 | 520 => {
                let channel = line.param(1);
                if self.has_channel(channel) {
                    let reason = format!("{code} {}", line.trailing());
                    actions.extend(self.refuse_join(channel, reason, now));
                }
            }
            // SASL: success, or failure (then NickServ is tried after registration).
            903 | 907 => self.end_sasl(true, actions),
            902 | 904 | 905 | 906 | 908 => {
                if let Phase::Registering { sasl: SaslPhase::Started, .. } = self.phase {
                    actions.push(Action::Note(format!("SASL login failed: {code} {}", line.trailing())));
                    self.end_sasl(false, actions);
                }
            }
            _ => {}
        }
    }

    fn end_sasl(&mut self, success: bool, actions: &mut Vec<Action>) {
        if let Phase::Registering { sasl, cap, .. } = &mut self.phase {
            *sasl = SaslPhase::Done;
            if *cap != CapPhase::Ended {
                *cap = CapPhase::Ended;
                actions.push(Action::Send("CAP END".into()));
            }
            // With SASL done, NickServ needs no IDENTIFY; after a failure it gets one.
            self.identified = success;
        }
    }

    fn command(&mut self, line: &Line<'_>, now: Instant, actions: &mut Vec<Action>) {
        let command = line.command.to_ascii_uppercase();
        match command.as_str() {
            "PING" => {
                let token = line.trailing().to_string();
                actions.push(Action::Send(render(Command::PONG(token, None))));
            }
            "PONG" => {
                let token = line.trailing();
                if let Some((n, sent)) = self.outstanding_ping
                    && token == format!("flotilla-{n}")
                {
                    self.lag = Some(now.saturating_duration_since(sent));
                    self.outstanding_ping = None;
                } else if let Some(n) = token.strip_prefix("flotilla-").and_then(|n| n.parse::<u64>().ok()) {
                    // A later PING answered: the server is alive; the oldest wait is over.
                    if self.outstanding_ping.is_some_and(|(o, _)| n > o) {
                        self.outstanding_ping = None;
                    }
                }
            }
            "ERROR" => {
                actions.push(Action::Disconnect(format!("the server closed the link: {}", line.trailing())));
            }
            "CAP" => self.cap(line, actions),
            "AUTHENTICATE" => {
                if line.param(0) == "+"
                    && let (Some(password), Phase::Registering { sasl: SaslPhase::Started, .. }) =
                        (&self.cfg.password, &self.phase)
                {
                    let payload = format!("{0}\0{0}\0{password}", self.cfg.nick);
                    let encoded = base64(payload.as_bytes());
                    let chunks: Vec<&str> =
                        encoded.as_bytes().chunks(400).filter_map(|c| std::str::from_utf8(c).ok()).collect();
                    for chunk in &chunks {
                        actions.push(Action::Send(format!("AUTHENTICATE {chunk}")));
                    }
                    if encoded.len().is_multiple_of(400) {
                        actions.push(Action::Send("AUTHENTICATE +".into()));
                    }
                }
            }
            "JOIN" => {
                if self.is_me(line.nick())
                    && let Some(i) = self.slot(line.param(0))
                {
                    let channel = &mut self.channels[i];
                    channel.state = ChannelState::Joined;
                    channel.refusals = 0;
                    self.joined_any = true;
                    let name = channel.spec.name.clone();
                    actions.push(self.fleet(FleetMessage::Joined, Some(&name), None));
                }
            }
            "KICK" => {
                if self.is_me(line.param(1))
                    && let Some(i) = self.slot(line.param(0))
                {
                    let rejoin_at = now + self.cfg.rejoin_delay;
                    self.channels[i].state = ChannelState::Kicked { rejoin_at };
                    let name = self.channels[i].spec.name.clone();
                    let detail = format!("kicked by {}: {}", line.nick(), line.param(2));
                    actions.push(self.fleet(FleetMessage::Kicked, Some(&name), Some(detail)));
                }
            }
            "PART" => {
                // Parted without asking (an operator's SAPART): treat it like a kick.
                if self.is_me(line.nick())
                    && let Some(i) = self.slot(line.param(0))
                    && self.channels[i].state == ChannelState::Joined
                {
                    self.channels[i].state = ChannelState::Kicked { rejoin_at: now + self.cfg.rejoin_delay };
                    actions.push(Action::Note(format!("made to leave {}: {}", line.param(0), line.param(1))));
                }
            }
            "NICK" if self.is_me(line.nick()) => {
                let old = std::mem::replace(&mut self.current_nick, line.param(0).to_string());
                if self.is_registered() {
                    actions.push(self.fleet(
                        FleetMessage::NickChanged,
                        None,
                        Some(format!("{old} is now {}", self.current_nick)),
                    ));
                }
            }
            "NOTICE"
                if self.is_registered()
                    && self.comes_from_services(line)
                    && is_registered_notice(line.nick(), line.trailing()) =>
            {
                match &self.cfg.password {
                    // We have the password: identify (once per connection).
                    Some(password) if !self.identified => {
                        self.identified = true;
                        actions.push(Action::Paced(render(Command::PRIVMSG(
                            "NickServ".into(),
                            format!("IDENTIFY {} {password}", self.cfg.nick),
                        ))));
                    }
                    Some(_) => {}
                    // Someone else's registered nick: move aside.
                    None => {
                        let digits = flotilla_core::random::below(1000) as u16;
                        let next = self.nick.fallback(digits);
                        actions.push(Action::Paced(render(Command::NICK(next))));
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether the nick NickServ belongs to the network's services: the server offered
    /// SASL on this connection (services are linked, and they hold their nicks), or the
    /// operator said so with `services_host`. On a network without services anyone may
    /// take the nick, and would be sent the password.
    fn nickserv_is_services(&self) -> bool {
        self.services_linked || self.cfg.services_host.is_some()
    }

    /// Whether `line` may be trusted as NickServ's: services are linked, or it comes
    /// from `services_host` (compared case-insensitively, as host names are).
    fn comes_from_services(&self, line: &Line<'_>) -> bool {
        self.services_linked
            || self.cfg.services_host.as_deref().is_some_and(|expected| {
                line.source.and_then(|s| s.host).is_some_and(|host| host.eq_ignore_ascii_case(expected))
            })
    }

    fn cap(&mut self, line: &Line<'_>, actions: &mut Vec<Action>) {
        let Phase::Registering { cap, sasl, ls, .. } = &mut self.phase else { return };
        let sub = line.param(1).to_ascii_uppercase();
        match sub.as_str() {
            "LS" if *cap == CapPhase::Listing => {
                // `CAP * LS * :…` continues on the next line; `CAP * LS :…` ends the list.
                let more = line.params.len() >= 4 && line.param(2) == "*";
                ls.extend(line.trailing().split(' ').filter(|s| !s.is_empty()).map(str::to_string));
                if more {
                    return;
                }
                let offers_plain = ls.iter().any(|c| {
                    c == "sasl" || c.strip_prefix("sasl=").is_some_and(|m| m.split(',').any(|m| m == "PLAIN"))
                });
                self.services_linked = ls.iter().any(|c| c == "sasl" || c.starts_with("sasl="));
                if self.cfg.password.is_some() && offers_plain {
                    *cap = CapPhase::Requesting;
                    actions.push(Action::Send("CAP REQ :sasl".into()));
                } else {
                    *cap = CapPhase::Ended;
                    actions.push(Action::Send("CAP END".into()));
                }
            }
            "ACK" if *cap == CapPhase::Requesting => {
                if line.trailing().split(' ').any(|c| c == "sasl") {
                    *sasl = SaslPhase::Started;
                    actions.push(Action::Send("AUTHENTICATE PLAIN".into()));
                } else {
                    *cap = CapPhase::Ended;
                    actions.push(Action::Send("CAP END".into()));
                }
            }
            "NAK" if *cap == CapPhase::Requesting => {
                *cap = CapPhase::Ended;
                actions.push(Action::Send("CAP END".into()));
            }
            _ => {}
        }
    }

    /// Lines to post `text` to `target` (a channel or nick), split at line breaks and to
    /// fit IRC's length limit, paced.
    pub fn say(&self, target: &str, text: &str, notice: bool) -> Result<Vec<Action>, SayError> {
        if target.is_empty() || target.chars().any(|c| c == ' ' || c == ',' || c.is_control()) {
            return Err(SayError::BadTarget(target.to_string()));
        }
        let verb = if notice { "NOTICE" } else { "PRIVMSG" };
        let room = 510usize.saturating_sub(PREFIX_ROOM + verb.len() + target.len() + 3).max(16);
        let lines: Vec<Action> = text
            .split(['\r', '\n'])
            .filter(|l| !l.trim().is_empty())
            .flat_map(|l| split_text(l, room))
            .map(|piece| {
                let command = if notice {
                    Command::NOTICE(target.to_string(), piece.to_string())
                } else {
                    Command::PRIVMSG(target.to_string(), piece.to_string())
                };
                Action::Paced(render(command))
            })
            .collect();
        if lines.is_empty() { Err(SayError::Empty) } else { Ok(lines) }
    }

    /// A raw IRC line to send as is (paced).
    pub fn raw(&self, line: &str) -> Result<Action, SayError> {
        if line.is_empty() || line.len() > 510 || line.contains(['\0', '\r', '\n']) {
            return Err(SayError::BadRaw);
        }
        Ok(Action::Paced(line.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::parse_line;

    fn config(password: Option<&str>) -> Arc<SessionConfig> {
        Arc::new(SessionConfig {
            nick: "flot".into(),
            user: "flot".into(),
            realname: "Flotilla".into(),
            password: password.map(str::to_string),
            services_host: None,
            ping_interval: Duration::from_secs(30),
            max_lag: Duration::from_secs(60),
            rejoin_delay: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
        })
    }

    /// A network whose services' host is configured.
    fn services_config(password: Option<&str>) -> Arc<SessionConfig> {
        let mut cfg = (*config(password)).clone();
        cfg.services_host = Some("services.example".into());
        Arc::new(cfg)
    }

    fn channels(names: &[&str]) -> Vec<ChannelSpec> {
        names
            .iter()
            .map(|n| match n.split_once(' ') {
                Some((name, key)) => ChannelSpec { name: name.into(), key: Some(key.into()) },
                None => ChannelSpec { name: n.to_string(), key: None },
            })
            .collect()
    }

    /// Renders actions compactly: `> line` sent, `~ line` paced, `! EVENT channel`,
    /// `# note`, `x reason`.
    fn show(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Send(l) => format!("> {l}"),
                Action::Paced(l) => format!("~ {l}"),
                Action::Fleet(e) => {
                    format!("! {} {}", e.message.as_str(), e.channel.as_deref().unwrap_or("-"))
                }
                Action::Note(n) => format!("# {n}"),
                Action::Disconnect(r) => format!("x {r}"),
            })
            .collect()
    }

    /// Plays a transcript: lines starting with `<` come from the server at time `t`
    /// (seconds, `@t` prefix optional); `tick@t` runs the timers. Returns every step's
    /// actions, with nick suffix digits replaced by NNN.
    fn play(session: &mut Session, start: Instant, steps: &[&str]) -> Vec<Vec<String>> {
        steps
            .iter()
            .map(|step| {
                let (at, what) = match step.split_once(' ') {
                    Some((t, rest)) if t.starts_with('@') => (t[1..].parse::<u64>().unwrap(), rest),
                    _ => (0, *step),
                };
                let now = start + Duration::from_secs(at);
                let actions = if what == "tick" {
                    session.tick(now)
                } else if what == "start" {
                    session.start(now)
                } else if let Some(reason) = what.strip_prefix("lost ") {
                    session.disconnected(reason)
                } else {
                    session.handle(&parse_line(what).unwrap(), now)
                };
                show(&actions).into_iter().map(|s| mask_digits(&s)).collect()
            })
            .collect()
    }

    fn mask_digits(s: &str) -> String {
        // `flot-123` → `flot-NNN`
        let mut out = s.to_string();
        while let Some(i) = out
            .find("flot-")
            .filter(|&i| out[i + 5..].len() >= 3 && out.as_bytes()[i + 5..i + 8].iter().all(u8::is_ascii_digit))
        {
            out.replace_range(i + 5..i + 8, "NNN");
        }
        out
    }

    fn steps(expect: &[&[&str]]) -> Vec<Vec<String>> {
        expect.iter().map(|s| s.iter().map(|x| x.to_string()).collect()).collect()
    }

    #[test]
    fn registration_without_cap_support_then_joins() {
        let start = Instant::now();
        let mut s = Session::new(config(None), &channels(&["#a", "#b key"]));
        let got = play(
            &mut s,
            start,
            &[
                "start",
                ":srv 421 * CAP :Unknown command",
                ":srv 001 flot :Welcome",
                ":flot!u@h JOIN #a",
                ":flot!u@h JOIN :#B",
                ":srv 353 flot = #a :@op flot",
            ],
        );
        assert_eq!(
            got,
            steps(&[
                &["> CAP LS 302", "> NICK flot", "> USER flot 0 * Flotilla"],
                &[],
                &["~ JOIN #b,#a key"],
                &["! JOINED #a"],
                &["! JOINED #b"],
                &[],
            ])
        );
        assert!(s.is_registered());
        assert_eq!(s.joined().collect::<Vec<_>>(), vec!["#a", "#b"]);
        assert!(s.succeeded());
    }

    #[test]
    fn cap_negotiation_and_sasl_plain() {
        let start = Instant::now();
        let mut s = Session::new(config(Some("secret")), &channels(&[]));
        let got = play(
            &mut s,
            start,
            &[
                "start",
                ":srv CAP * LS * :multi-prefix",
                ":srv CAP * LS :sasl=EXTERNAL,PLAIN account-notify",
                ":srv CAP flot ACK :sasl",
                "AUTHENTICATE +",
                ":srv 900 flot flot!u@h flot :You are now logged in as flot",
                ":srv 903 flot :SASL authentication successful",
                ":srv 001 flot :Welcome",
            ],
        );
        assert_eq!(
            got,
            steps(&[
                &["> CAP LS 302", "> NICK flot", "> USER flot 0 * Flotilla"],
                &[],
                &["> CAP REQ :sasl"],
                &["> AUTHENTICATE PLAIN"],
                &["> AUTHENTICATE ZmxvdABmbG90AHNlY3JldA=="],
                &[],
                &["> CAP END"],
                &[], // Logged in by SASL: no NickServ IDENTIFY.
            ])
        );
    }

    #[test]
    fn sasl_failure_falls_back_to_nickserv_and_no_sasl_offer_ends_cap() {
        let start = Instant::now();
        let mut s = Session::new(config(Some("pw")), &channels(&[]));
        let got = play(
            &mut s,
            start,
            &[
                "start",
                ":srv CAP * LS :sasl",
                ":srv CAP * ACK :sasl",
                "AUTHENTICATE +",
                ":srv 904 flot :SASL authentication failed",
                ":srv 001 flot :Welcome",
            ],
        );
        assert_eq!(got[4], vec!["# SASL login failed: 904 SASL authentication failed", "> CAP END"]);
        assert_eq!(got[5], vec!["~ PRIVMSG NickServ :IDENTIFY pw"]);

        let mut s = Session::new(config(Some("pw")), &channels(&[]));
        let got = play(&mut s, start, &["start", ":srv CAP * LS :multi-prefix", ":srv 001 flot :Welcome"]);
        assert_eq!(got[1], vec!["> CAP END"]);
        assert_eq!(
            got[2],
            vec![
                "# not identifying to NickServ: this server offers no SASL, so the nick NickServ may belong \
                 to anyone; set services_host if the network has services"
            ],
            "no sign of services: the password is not handed to whoever holds the nick"
        );
        let mut s = Session::new(services_config(Some("pw")), &channels(&[]));
        let got = play(&mut s, start, &["start", ":srv CAP * LS :multi-prefix", ":srv 001 flot :Welcome"]);
        assert_eq!(got[2], vec!["~ PRIVMSG NickServ :IDENTIFY pw"], "services_host says there are services");

        let mut s = Session::new(config(None), &channels(&[]));
        let got = play(&mut s, start, &["start", ":srv CAP * LS :sasl", ":srv 001 flot :Welcome"]);
        assert_eq!(got[1], vec!["> CAP END"], "no password: no SASL");
    }

    #[test]
    fn nick_in_use_and_erroneous_fallbacks() {
        let start = Instant::now();
        let mut s = Session::new(config(None), &channels(&["#a"]));
        let got = play(
            &mut s,
            start,
            &["start", ":srv 433 * flot :Nickname is already in use", ":srv 001 flot-123 :Welcome"],
        );
        assert_eq!(got[1], vec!["> NICK flot-NNN"]);
        assert_eq!(got[2], vec!["! NICK-CHANGED -", "~ JOIN #a"]);
        assert_eq!(s.nick(), "flot-123");
        // The next connection tries the configured nick again.
        s.disconnected("test");
        let got = play(&mut s, start, &["start"]);
        assert_eq!(got[0][1], "> NICK flot");

        // A server with a 6-character limit it does not advertise.
        let mut s = Session::new(config(None), &channels(&[]));
        let mut now_nick = String::new();
        let mut actions = s.start(start);
        for _ in 0..5 {
            let nick_line = actions.iter().find_map(|a| match a {
                Action::Send(l) if l.starts_with("NICK ") => Some(l[5..].to_string()),
                _ => None,
            });
            let Some(nick) = nick_line else { break };
            now_nick = nick.clone();
            let reply = if nick.len() > 6 {
                format!(":srv 432 * {nick} :Erroneous Nickname")
            } else if nick == "flot" {
                ":srv 433 * flot :Nickname is already in use".to_string()
            } else {
                format!(":srv 001 {nick} :Welcome")
            };
            actions = s.handle(&parse_line(&reply).unwrap(), start);
        }
        assert!(s.is_registered(), "registered as {now_nick}");
        assert!(now_nick.len() <= 6 && now_nick.starts_with('f') && now_nick.contains('-'), "{now_nick}");
    }

    #[test]
    fn too_many_refused_nicks_disconnects() {
        let start = Instant::now();
        let mut s = Session::new(config(None), &channels(&[]));
        s.start(start);
        let line = ":srv 433 * x :in use";
        let mut last = Vec::new();
        for _ in 0..MAX_NICK_ATTEMPTS {
            last = s.handle(&parse_line(line).unwrap(), start);
        }
        assert!(matches!(last.as_slice(), [Action::Disconnect(r)] if r.contains("refused 12 nicks")), "{last:?}");
    }

    #[test]
    fn kicks_remove_one_channel_and_rejoin_after_the_delay() {
        let start = Instant::now();
        let mut s = Session::new(config(None), &channels(&["#a", "#b"]));
        let got = play(
            &mut s,
            start,
            &[
                "start",
                ":srv 001 flot :Welcome",
                ":flot!u@h JOIN #a",
                ":flot!u@h JOIN #b",
                "@5 :op!u@h KICK #a flot :behave",
                "@6 :op!u@h KICK #a someoneelse :bye",
                "@14 tick",
                "@15 tick",
                "@16 :flot!u@h JOIN #a",
            ],
        );
        assert_eq!(got[4], vec!["! KICKED #a"]);
        assert_eq!(got[5], Vec::<String>::new());
        assert_eq!(got[6], Vec::<String>::new(), "not yet");
        assert_eq!(got[7], vec!["~ JOIN #a"]);
        assert_eq!(got[8], vec!["! JOINED #a"]);
        assert_eq!(s.joined().collect::<Vec<_>>(), vec!["#a", "#b"]);
    }

    #[test]
    fn a_reconnect_rejoins_only_active_channels() {
        let start = Instant::now();
        let mut s = Session::new(config(None), &channels(&["#a", "#b"]));
        let got = play(
            &mut s,
            start,
            &[
                "start",
                ":srv 001 flot :Welcome",
                ":flot!u@h JOIN #a",
                ":flot!u@h JOIN #b",
                "@1 :op!u@h KICK #b flot :out",
                "@2 lost connection reset",
                "@3 start",
                "@3 :srv 001 flot :Welcome back",
                "@3 :flot!u@h JOIN #a",
            ],
        );
        assert_eq!(got[5], vec!["! DISCONNECTED #a"], "only the active set");
        assert_eq!(got[7], vec!["! RECONNECTED -", "~ JOIN #a"], "#b waits for its rejoin");
        // Its timer still brings #b back.
        let got = play(&mut s, start, &["@11 tick"]);
        assert_eq!(got[0], vec!["~ JOIN #b"]);
    }

    #[test]
    fn refused_joins_retry_with_growing_delays() {
        let start = Instant::now();
        let mut s = Session::new(config(None), &channels(&["#a"]));
        let got = play(
            &mut s,
            start,
            &[
                "start",
                ":srv 001 flot :Welcome",
                ":srv 474 flot #a :Cannot join channel (+b)",
                "@10 tick",
                "@10 :srv 474 flot #a :Cannot join channel (+b)",
                "@29 tick",
                "@30 tick",
            ],
        );
        assert_eq!(got[2], vec!["# cannot join #a: 474 Cannot join channel (+b); trying again in 10s"]);
        assert_eq!(got[3], vec!["~ JOIN #a"]);
        assert_eq!(got[4], vec!["# cannot join #a: 474 Cannot join channel (+b); trying again in 20s"]);
        assert_eq!(got[5], Vec::<String>::new());
        assert_eq!(got[6], vec!["> PING flotilla-1", "~ JOIN #a"]);
    }

    #[test]
    fn pings_measure_lag_and_silence_disconnects() {
        let start = Instant::now();
        let mut s = Session::new(config(None), &channels(&[]));
        let got = play(
            &mut s,
            start,
            &[
                "start",
                ":srv 001 flot :Welcome",
                "PING :srv.token",
                "@30 tick",
                "@30 :srv PONG srv :flotilla-1",
                "@60 tick",
                "@119 tick",
                "@120 tick",
            ],
        );
        assert_eq!(got[2], vec!["> PONG srv.token"]);
        assert_eq!(got[3], vec!["> PING flotilla-1"]);
        assert_eq!(got[4], Vec::<String>::new());
        assert_eq!(s.lag(start + Duration::from_secs(30)), Some(Duration::ZERO));
        assert_eq!(got[5], vec!["> PING flotilla-2"]);
        assert_eq!(got[6], vec!["> PING flotilla-3"], "no PONG for 59 s: still fine");
        assert_eq!(got[7], vec!["x no PONG within max_lag (60s): the server stopped answering"]);
        assert_eq!(s.lag(start + Duration::from_secs(120)), Some(Duration::from_secs(60)));
    }

    #[test]
    fn a_silent_server_times_out_registration() {
        let start = Instant::now();
        let mut s = Session::new(config(None), &channels(&["#a"]));
        s.start(start);
        assert_eq!(s.next_deadline(), Some(start + Duration::from_secs(60)));
        assert!(s.tick(start + Duration::from_secs(59)).is_empty());
        let got = show(&s.tick(start + Duration::from_secs(60)));
        assert_eq!(got, vec!["x the server did not complete registration within 60s (no welcome)"]);
        let got = show(&s.disconnected("registration timed out"));
        assert_eq!(got, vec!["! DISCONNECTED -"]);
        assert!(!s.succeeded());
    }

    #[test]
    fn unknown_replies_are_reported_not_fatal() {
        let start = Instant::now();
        let mut s = Session::new(config(None), &channels(&[]));
        let got = play(
            &mut s,
            start,
            &[
                "start",
                ":srv 001 flot :Welcome",
                ":srv 006 flot :irc.test.local (1)",
                ":srv 250 flot :Highest connection count: 1",
                ":srv 372 flot :- motd",
                ":srv FROBNICATE flot :what",
                ":srv 042 flot ABCDEF :your unique ID",
            ],
        );
        assert_eq!(got[2], vec!["! UNKNOWN-REPLY -"]);
        assert_eq!(got[3], Vec::<String>::new());
        assert_eq!(got[4], Vec::<String>::new());
        assert_eq!(got[5], vec!["! UNKNOWN-REPLY -"]);
        assert_eq!(got[6], Vec::<String>::new());
        assert!(s.is_registered());
    }

    #[test]
    fn nickserv_registered_notices() {
        let start = Instant::now();
        // The server offers SASL: services are linked and the nick NickServ is theirs.
        let mut s = Session::new(config(None), &channels(&[]));
        let got = play(
            &mut s,
            start,
            &[
                "start",
                ":srv CAP * LS :sasl multi-prefix",
                ":srv 001 flot :Welcome",
                ":NickServ!s@services NOTICE flot :This nickname is registered and protected.",
                ":flot!u@h NICK :flot-555",
            ],
        );
        assert_eq!(got[3], vec!["~ NICK flot-NNN"]);
        assert_eq!(got[4], vec!["! NICK-CHANGED -"]);
        assert_eq!(s.nick(), "flot-555");

        let mut s = Session::new(config(Some("pw")), &channels(&[]));
        let got = play(
            &mut s,
            start,
            &[
                "start",
                ":srv CAP * LS :sasl",
                ":srv CAP * NAK :sasl",
                ":srv 001 flot :Welcome",
                ":NickServ!s@services NOTICE flot :This nickname is registered and protected.",
            ],
        );
        assert_eq!(got[3], vec!["~ PRIVMSG NickServ :IDENTIFY pw"]);
        assert_eq!(got[4], Vec::<String>::new(), "already identified on this connection");
    }

    /// Issue 11, finding 10: on a network without services anyone may take the nick
    /// NickServ; their "registered" notice must neither push the bot off its nick nor
    /// draw its password.
    #[test]
    fn a_nickserv_impostor_is_not_trusted() {
        let start = Instant::now();
        let notice = |host: &str| format!(":NickServ!x@{host} NOTICE flot :This nickname is registered and protected.");
        for password in [None, Some("pw")] {
            let mut s = Session::new(config(password), &channels(&[]));
            let got = play(
                &mut s,
                start,
                &["start", ":srv CAP * LS :multi-prefix", ":srv 001 flot :Welcome", &notice("evil.example")],
            );
            assert_eq!(got[3], Vec::<String>::new(), "password {password:?}");
            assert_eq!(s.nick(), "flot");
        }
        // With services_host, a notice is trusted from that host only.
        let mut s = Session::new(services_config(None), &channels(&[]));
        let got = play(
            &mut s,
            start,
            &["start", ":srv 001 flot :Welcome", &notice("services.example.evil.example"), &notice("Services.Example")],
        );
        assert_eq!(got[2], Vec::<String>::new());
        assert_eq!(got[3], vec!["~ NICK flot-NNN"]);
    }

    #[test]
    fn outgoing_messages_are_split_and_checked() {
        let s = Session::new(config(None), &channels(&[]));
        let show_say = |t: &str, text: &str, notice: bool| s.say(t, text, notice).map(|a| show(&a));
        assert_eq!(show_say("#a", "hello", false), Ok(vec!["~ PRIVMSG #a hello".to_string()]));
        assert_eq!(show_say("#a", "two\nlines", true), Ok(vec!["~ NOTICE #a two".into(), "~ NOTICE #a lines".into()]));
        assert_eq!(show_say("bob", "hi there", false), Ok(vec!["~ PRIVMSG bob :hi there".to_string()]));
        assert_eq!(show_say("#a b", "x", false), Err(SayError::BadTarget("#a b".into())));
        assert_eq!(show_say("", "x", false), Err(SayError::BadTarget("".into())));
        assert_eq!(show_say("#a", "\n \n", false), Err(SayError::Empty));
        let long = "wörd ".repeat(200);
        let lines = s.say("#a", &long, false).unwrap();
        assert!(lines.len() > 2);
        for line in &lines {
            let Action::Paced(l) = line else { panic!() };
            assert!(l.len() + PREFIX_ROOM + 2 <= 512, "{} bytes", l.len());
        }
        assert_eq!(s.raw("MAP"), Ok(Action::Paced("MAP".into())));
        assert_eq!(s.raw("A\r\nB"), Err(SayError::BadRaw));
    }

    #[test]
    fn base64_vectors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
            (b"\0a\0b", "AGEAYg=="),
        ];
        for (input, expect) in cases {
            assert_eq!(base64(input), *expect);
        }
    }

    #[test]
    fn case_folding() {
        let cases = [("#Chan[1]", "#chan{1}"), ("Nick\\~", "nick|^"), ("#ü", "#ü")];
        for (input, expect) in cases {
            assert_eq!(fold(input), expect);
        }
    }
}
