//! The `xmpp` connector's keys (SPEC §10 plus our own), checked without any I/O and
//! reported all at once with their locations. wubot's `plugins/XMPP/<instance>.yaml`
//! keys are accepted as they are: `account` (= `jid`), `directory` (= `forward_queue`),
//! `user` (one more peer) and `delay` (ignored: forwarding here is not polled).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `jid` | required | the account, `user@domain` (a `/resource` sets the resource) |
//! | `password` | required | SCRAM-SHA-256 or SCRAM-SHA-1; PLAIN only inside TLS |
//! | `host`, `port` | the JID's domain, 5222 (5223 with `tls: direct`) | the server |
//! | `tls` | `starttls` | `starttls` (required), `direct` (TLS from the first byte), `none` |
//! | `tls_ca` | system roots | a PEM file of certificates to trust instead (local servers) |
//! | `resource` | `flotilla` | |
//! | `peers` | `[]` | JIDs of the other nodes: forwarded messages go to each, and only theirs are accepted as forwarded |
//! | `accept_from` | `[]` | more JIDs whose forwarded messages are accepted (a ring's predecessor), not sent to |
//! | `forward_queue` | none | a queue whose messages are sent to every peer (store-and-forward) |
//! | `deliver_queue` | the connector's queue | where forwarded messages received are appended |
//! | `rooms` | `[]` | multi-user chat rooms to join (`room@conference.host`) |
//! | `nick` | the JID's local part | the nick in rooms |
//! | `ping_interval`, `ping_timeout` | `30s`, `20s` | XEP-0199 ping; no answer in time: reconnect |
//! | `min_backoff`, `max_backoff` | `1s`, `5m` | reconnect delays: doubling, with jitter |
//! | `rejoin_delay` | `10s` | after being kicked from a room |
//! | `batch` | 200 | forwarded messages per batch (acknowledged together by the server) |
//! | `max_stanza` | `1MiB` | a stanza read larger than this is skipped (and logged) |
//! | `max_part` | `60KiB` | a forwarded message larger than this is sent in parts |
//! | `dedup_window` | 100000 | ids of delivered messages remembered (on disk) to drop duplicates |

use std::path::PathBuf;
use std::time::Duration;

use flotilla_config::{Diagnostic, Located};
use flotilla_connector::{ConnectorSection, diagnostic_at};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawXmpp {
    #[serde(alias = "account")]
    jid: Option<Located<String>>,
    password: Option<String>,
    host: Option<Located<String>>,
    port: Option<u16>,
    tls: Option<Located<String>>,
    tls_ca: Option<Located<String>>,
    resource: Option<Located<String>>,
    peers: Option<Vec<Located<String>>>,
    /// wubot's single recipient.
    user: Option<Located<String>>,
    accept_from: Option<Vec<Located<String>>>,
    #[serde(alias = "directory")]
    forward_queue: Option<Located<String>>,
    deliver_queue: Option<Located<String>>,
    rooms: Option<Vec<Located<String>>>,
    nick: Option<Located<String>>,
    ping_interval: Option<Located<String>>,
    ping_timeout: Option<Located<String>>,
    min_backoff: Option<Located<String>>,
    max_backoff: Option<Located<String>>,
    rejoin_delay: Option<Located<String>>,
    batch: Option<u32>,
    max_stanza: Option<Located<String>>,
    max_part: Option<Located<String>>,
    dedup_window: Option<u32>,
    /// wubot's polling delay: accepted, not needed.
    #[allow(dead_code)]
    delay: Option<Located<String>>,
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP, then STARTTLS, required.
    StartTls,
    /// TLS from the first byte (XEP-0368).
    Direct,
    /// No TLS (local test servers only; a warning).
    None,
}

/// A bare or full JID, checked only as far as routing needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jid {
    pub local: String,
    pub domain: String,
    pub resource: Option<String>,
}

impl Jid {
    /// Parses `local@domain/resource` (local part required for accounts and peers).
    pub fn parse(text: &str) -> Result<Jid, String> {
        let text = text.trim();
        let (bare, resource) = match text.split_once('/') {
            Some((bare, resource)) if !resource.is_empty() => (bare, Some(resource.to_string())),
            Some(_) => return Err(format!("'{text}' has an empty resource after '/'")),
            None => (text, None),
        };
        let (local, domain) = bare.split_once('@').ok_or_else(|| format!("'{text}' is not a JID (user@domain)"))?;
        let bad =
            |s: &str| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control() || "\"&'/:<>@".contains(c));
        if bad(local) || bad(domain) {
            return Err(format!("'{text}' is not a JID (user@domain, no spaces or \"&'/:<>@ in either part)"));
        }
        Ok(Jid { local: local.to_string(), domain: domain.to_lowercase(), resource })
    }

    /// `local@domain`.
    pub fn bare(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

/// A secret that never shows in logs or `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(text: impl Into<String>) -> Password {
        Password(text.into())
    }

    /// The secret itself, for the SASL exchange only.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Everything an `xmpp` connector needs, checked.
#[derive(Debug, Clone)]
pub struct XmppSettings {
    pub jid: Jid,
    pub password: Password,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub tls_ca: Option<PathBuf>,
    pub resource: String,
    /// Bare JIDs of the peers.
    pub peers: Vec<String>,
    /// Bare JIDs whose forwarded messages are accepted: the peers and `accept_from`.
    pub accepted: Vec<String>,
    pub forward_queue: Option<String>,
    pub deliver_queue: Option<String>,
    /// Bare room JIDs.
    pub rooms: Vec<String>,
    pub nick: String,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub rejoin_delay: Duration,
    pub batch: usize,
    pub max_stanza: usize,
    pub max_part: usize,
    pub dedup_window: usize,
    /// What is valid but risky.
    pub warnings: Vec<Diagnostic>,
}

/// Reads and checks a section; every problem is reported.
pub fn settings_from_section(section: &ConnectorSection<'_>) -> Result<XmppSettings, Vec<Diagnostic>> {
    let raw: RawXmpp = flotilla_connector::decode_section(section)?;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    let jid = match &raw.jid {
        None => {
            errors.push(diagnostic_at(section, "jid", "is required (the account, user@domain)"));
            None
        }
        Some(text) => match Jid::parse(&text.value) {
            Ok(jid) => Some(jid),
            Err(e) => {
                // Located by the value: the key may be wubot's `account`.
                errors.push(Diagnostic {
                    location: Some(text.location.clone()),
                    message: format!("{}.jid: {e}", section.path),
                });
                None
            }
        },
    };
    let password = match raw.password.as_deref() {
        None | Some("") => {
            errors.push(diagnostic_at(section, "password", "is required"));
            Password::new("")
        }
        Some(p) => Password::new(p),
    };
    let tls = match raw.tls.as_ref().map(|t| t.value.trim().to_ascii_lowercase()) {
        None => TlsMode::StartTls,
        Some(t) if t == "starttls" || t == "true" || t == "yes" || t == "1" => TlsMode::StartTls,
        Some(t) if t == "direct" => TlsMode::Direct,
        Some(t) if t == "none" || t == "false" || t == "no" || t == "0" => TlsMode::None,
        Some(t) => {
            errors.push(diagnostic_at(section, "tls", format!("'{t}' is not one of starttls, direct, none")));
            TlsMode::StartTls
        }
    };
    if tls == TlsMode::None {
        if raw.tls_ca.is_some() {
            errors.push(diagnostic_at(section, "tls_ca", "only means something with tls: starttls or direct"));
        }
        warnings.push(diagnostic_at(
            section,
            "tls",
            "tls: none sends everything, messages included, in clear text (SCRAM keeps the password itself \
             from the wire); use it only for a server on this machine",
        ));
    }
    let host = match (&raw.host, &jid) {
        (Some(h), _) if h.value.trim().is_empty() || h.value.contains(char::is_whitespace) => {
            errors.push(diagnostic_at(section, "host", format!("'{}' is not a host name or address", h.value)));
            String::new()
        }
        (Some(h), _) => h.value.trim().to_string(),
        (None, Some(jid)) => jid.domain.clone(),
        (None, None) => String::new(),
    };
    let port = match raw.port {
        Some(0) => {
            errors.push(diagnostic_at(section, "port", "must be 1-65535"));
            0
        }
        Some(p) => p,
        None if tls == TlsMode::Direct => 5223,
        None => 5222,
    };
    let resource = raw
        .resource
        .as_ref()
        .map(|r| r.value.clone())
        .or_else(|| jid.as_ref().and_then(|j| j.resource.clone()))
        .unwrap_or_else(|| "flotilla".to_string());
    if resource.is_empty() || resource.chars().any(char::is_control) {
        errors.push(diagnostic_at(section, "resource", "must be a non-empty name without control characters"));
    }

    let mut peers = Vec::new();
    let listed = raw.peers.iter().flatten().enumerate().map(|(i, p)| (format!("peers.{i}"), p));
    for (key, text) in listed.chain(raw.user.iter().map(|u| ("user".to_string(), u))) {
        match Jid::parse(&text.value) {
            Ok(peer) if peers.contains(&peer.bare()) => {
                errors.push(diagnostic_at(section, &key, format!("{} is listed twice", peer.bare())))
            }
            Ok(peer) if jid.as_ref().is_some_and(|j| j.bare() == peer.bare()) => {
                errors.push(diagnostic_at(section, &key, "is this connector's own account"))
            }
            Ok(peer) => peers.push(peer.bare()),
            Err(e) => errors.push(diagnostic_at(section, &key, e)),
        }
    }
    let mut accepted = peers.clone();
    for (i, text) in raw.accept_from.iter().flatten().enumerate() {
        match Jid::parse(&text.value) {
            Ok(jid) if !accepted.contains(&jid.bare()) => accepted.push(jid.bare()),
            Ok(_) => {}
            Err(e) => errors.push(diagnostic_at(section, &format!("accept_from.{i}"), e)),
        }
    }
    let queue = |value: &Option<Located<String>>, key: &str, errors: &mut Vec<Diagnostic>| -> Option<String> {
        let value = value.as_ref()?;
        if flotilla_bus::valid_name(&value.value) {
            Some(value.value.clone())
        } else {
            errors.push(diagnostic_at(section, key, format!("'{}' is not a queue name", value.value)));
            None
        }
    };
    let forward_queue = queue(&raw.forward_queue, "forward_queue", &mut errors);
    let deliver_queue = queue(&raw.deliver_queue, "deliver_queue", &mut errors);
    if forward_queue.is_some() && peers.is_empty() {
        errors.push(diagnostic_at(section, "forward_queue", "needs peers: the JIDs to forward to"));
    }
    if forward_queue.is_some() && forward_queue == deliver_queue {
        errors.push(diagnostic_at(
            section,
            "deliver_queue",
            "must differ from forward_queue (what arrives would be sent straight back)",
        ));
    }

    let mut rooms = Vec::new();
    for (i, room) in raw.rooms.iter().flatten().enumerate() {
        match Jid::parse(&room.value) {
            Ok(r) if r.resource.is_none() && !rooms.contains(&r.bare()) => rooms.push(r.bare()),
            Ok(_) => errors.push(diagnostic_at(
                section,
                &format!("rooms.{i}"),
                "must be a room's bare JID (room@conference.host), listed once",
            )),
            Err(e) => errors.push(diagnostic_at(section, &format!("rooms.{i}"), e)),
        }
    }
    let nick = raw
        .nick
        .as_ref()
        .map(|n| n.value.clone())
        .or_else(|| jid.as_ref().map(|j| j.local.clone()))
        .unwrap_or_default();
    if jid.is_some() && (nick.trim().is_empty() || nick.chars().any(char::is_control)) {
        errors.push(diagnostic_at(section, "nick", "must be a non-empty name without control characters"));
    }

    let mut duration = |value: &Option<Located<String>>, key: &str, default: Duration| -> Duration {
        let Some(value) = value else { return default };
        match flotilla_core::parse_duration(&value.value) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                errors.push(diagnostic_at(section, key, "must be more than 0"));
                default
            }
            Err(e) => {
                errors.push(diagnostic_at(section, key, e.to_string()));
                default
            }
        }
    };
    let ping_interval = duration(&raw.ping_interval, "ping_interval", Duration::from_secs(30));
    let ping_timeout = duration(&raw.ping_timeout, "ping_timeout", Duration::from_secs(20));
    let min_backoff = duration(&raw.min_backoff, "min_backoff", Duration::from_secs(1));
    let max_backoff = duration(&raw.max_backoff, "max_backoff", Duration::from_secs(300));
    let rejoin_delay = duration(&raw.rejoin_delay, "rejoin_delay", Duration::from_secs(10));
    if max_backoff < min_backoff {
        errors.push(diagnostic_at(section, "max_backoff", "must not be less than min_backoff"));
    }
    let mut size = |value: &Option<Located<String>>, key: &str, default: usize, min: usize| -> usize {
        let Some(value) = value else { return default };
        match flotilla_core::parse_size(&value.value) {
            Ok(n) if n as usize >= min => n as usize,
            Ok(_) => {
                errors.push(diagnostic_at(section, key, format!("must be at least {min} bytes")));
                default
            }
            Err(e) => {
                errors.push(diagnostic_at(section, key, e.to_string()));
                default
            }
        }
    };
    let max_stanza = size(&raw.max_stanza, "max_stanza", 1 << 20, 4096);
    let max_part = size(&raw.max_part, "max_part", 60 * 1024, 64);
    if max_part + 1024 > max_stanza {
        errors.push(diagnostic_at(section, "max_part", "must be at least 1KiB less than max_stanza"));
    }
    let batch = match raw.batch {
        Some(0) => {
            errors.push(diagnostic_at(section, "batch", "must be at least 1"));
            1
        }
        Some(b) => b as usize,
        None => 200,
    };
    let dedup_window = raw.dedup_window.unwrap_or(100_000).max(1) as usize;

    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(jid) = jid else { return Err(errors) };
    Ok(XmppSettings {
        jid,
        password,
        host,
        port,
        tls,
        tls_ca: raw.tls_ca.as_ref().map(|p| PathBuf::from(&p.value)),
        resource,
        peers,
        accepted,
        forward_queue,
        deliver_queue,
        rooms,
        nick,
        ping_interval,
        ping_timeout,
        min_backoff,
        max_backoff,
        rejoin_delay,
        batch,
        max_stanza,
        max_part,
        dedup_window,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> Result<XmppSettings, Vec<String>> {
        let env = |_: &str| None;
        let node = flotilla_config::parse_str("xmpp.yaml", yaml, &env).expect("yaml");
        let section = ConnectorSection { name: "laptop", node: &node, path: "connectors.laptop".into() };
        settings_from_section(&section).map_err(|errors| errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn jids() {
        type Case<'a> = (&'a str, Result<(&'a str, Option<&'a str>), &'a str>);
        let cases: &[Case] = &[
            ("a@Example.org", Ok(("a@example.org", None))),
            ("a@b/laptop", Ok(("a@b", Some("laptop")))),
            ("a@b/", Err("empty resource")),
            ("ab", Err("not a JID")),
            ("@b", Err("not a JID")),
            ("a b@c", Err("not a JID")),
        ];
        for (text, expect) in cases {
            match (Jid::parse(text), expect) {
                (Ok(jid), Ok((bare, resource))) => {
                    assert_eq!((jid.bare().as_str(), jid.resource.as_deref()), (*bare, *resource), "{text}")
                }
                (Err(e), Err(want)) => assert!(e.contains(want), "{text}: {e}"),
                (got, want) => panic!("{text}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn a_full_section_and_wubots_keys() {
        let s = settings(
            "jid: laptop@example.org\npassword: pw\npeers: [server@example.org]\nforward_queue: forward\n\
             deliver_queue: reactor\ntls: direct\nrooms: [ops@conference.example.org]\nmax_part: 1KiB\n",
        )
        .unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls), ("example.org", 5223, TlsMode::Direct));
        assert_eq!(s.peers, ["server@example.org"]);
        assert_eq!(s.nick, "laptop");
        assert_eq!(s.max_part, 1024);
        assert!(!format!("{s:?}").contains("pw\""), "{s:?}");
        let w = settings(
            "account: wubot-laptop@myserver\npassword: pw\nhost: 192.168.1.2\nport: 5222\n\
             directory: forward\nuser: wubot-reactor@myserver\ndelay: 5s\ntls: none\n",
        )
        .unwrap();
        assert_eq!(w.jid.bare(), "wubot-laptop@myserver");
        assert_eq!(w.peers, ["wubot-reactor@myserver"]);
        assert_eq!(w.forward_queue.as_deref(), Some("forward"));
        assert_eq!(w.warnings.len(), 1);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let errors = settings(
            "jid: nojid\npeers: [x, a@b, a@b]\nforward_queue: 'bad queue'\ntls: maybe\nping_interval: 0s\n\
             rooms: [r@c/nick]\nbatch: 0\nbogus: 1\n",
        )
        .unwrap_err();
        let text = errors.join("\n");
        assert!(text.contains("bogus"), "{text}");
        let errors = settings(
            "jid: nojid\npeers: [x, a@b, a@b]\nforward_queue: 'bad queue'\ntls: maybe\nping_interval: 0s\n\
             rooms: [r@c/nick]\nbatch: 0\n",
        )
        .unwrap_err();
        let text = errors.join("\n");
        for expect in [
            "connectors.laptop.jid: 'nojid' is not a JID",
            "password: is required",
            "peers.0: 'x' is not a JID",
            "peers.2: a@b is listed twice",
            "forward_queue: 'bad queue' is not a queue name",
            "tls: 'maybe' is not one of",
            "ping_interval: must be more than 0",
            "rooms.0: must be a room's bare JID",
            "batch: must be at least 1",
        ] {
            assert!(text.contains(expect), "{expect} missing in:\n{text}");
        }
        let errors = settings("jid: a@b\npassword: p\nforward_queue: f\n").unwrap_err().join("\n");
        assert!(errors.contains("forward_queue: needs peers"), "{errors}");
        let errors = settings("jid: a@b\npassword: p\npeers: [a@b]\n").unwrap_err().join("\n");
        assert!(errors.contains("own account"), "{errors}");
    }
}
