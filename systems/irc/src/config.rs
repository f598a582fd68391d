//! The `irc` connector's keys (SPEC §7 plus a few of our own), checked without any I/O
//! and reported all at once with their locations, then planned into connections.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `server` | required | `host:port` (port defaults to 6667, or 6697 with `tls`) |
//! | `tls` | `false` | connect with TLS (rustls, aws-lc-rs) |
//! | `tls_ca` | system roots | a PEM file of certificates to trust instead (self-signed servers) |
//! | `tls_insecure` | `false` | accept any certificate (tests only; says so in the log) |
//! | `nick` | required | connection 1 uses it, connection N uses `nickN` |
//! | `user`, `realname` | nick, `Flotilla IRC bot` | the USER line |
//! | `password` | none | SASL PLAIN when the server offers it, else `IDENTIFY` to NickServ (only when NickServ is evidently the services: see `services_host`); without `tls` a warning |
//! | `services_host` | none | the host NickServ's messages come from (`services.libera.chat`): its "registered" notice is trusted from there, and `IDENTIFY` is sent even when the server offers no SASL |
//! | `channels` | `[]` | `#chan` or `#chan key` |
//! | `network` | the connector's name | `networkname` in the logs, `network` on the bus |
//! | `log` | `false` | write lines to `irclog` and events to `fleetlog` |
//! | `bind` | system's choice | local source addresses; connections are dealt over them round-robin |
//! | `max_connections_per_ip` | 3 | per source address (0: no limit) |
//! | `max_channels_per_connection` | 20 | |
//! | `connections` | as needed | at least this many connections |
//! | `rejoin_delay` | `10s` | after a kick |
//! | `ping_interval` | `30s` | |
//! | `max_lag` | `60s` | no PONG (or no welcome while registering) this long: reconnect |
//! | `min_backoff`, `max_backoff` | `2s`, `5m` | reconnect delays: doubling, with jitter |
//! | `max_attempts` | 5 | consecutive failed attempts before a connection is sunk (0: never) |
//! | `flood_burst`, `flood_rate` | 5, 1 | outgoing lines: a burst, then this many per second |
//! | `connect_rate` | 10 | new connections per second for this connector (with a burst of 10) |

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_config::{Diagnostic, Located};
use flotilla_connector::{ConnectorSection, diagnostic_at};

use crate::plan::{ChannelSpec, ConnectionPlan, plan};
use crate::session::SessionConfig;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIrc {
    server: Located<String>,
    tls: Option<bool>,
    tls_ca: Option<Located<String>>,
    tls_insecure: Option<bool>,
    nick: Located<String>,
    user: Option<Located<String>>,
    realname: Option<String>,
    password: Option<String>,
    services_host: Option<String>,
    channels: Option<Vec<Located<String>>>,
    network: Option<Located<String>>,
    log: Option<bool>,
    bind: Option<Vec<Located<String>>>,
    max_connections_per_ip: Option<u32>,
    max_channels_per_connection: Option<u32>,
    connections: Option<u32>,
    rejoin_delay: Option<Located<String>>,
    ping_interval: Option<Located<String>>,
    max_lag: Option<Located<String>>,
    min_backoff: Option<Located<String>>,
    max_backoff: Option<Located<String>>,
    max_attempts: Option<u32>,
    flood_burst: Option<u32>,
    flood_rate: Option<f64>,
    connect_rate: Option<f64>,
}

/// TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Trust only the certificates in this PEM file.
    pub ca: Option<PathBuf>,
    /// Accept any certificate.
    pub insecure: bool,
}

/// Everything an `irc` connector needs, checked.
#[derive(Clone)]
pub struct IrcSettings {
    pub network: Arc<str>,
    pub host: String,
    pub port: u16,
    pub tls: Option<TlsSettings>,
    /// Settings for connection 1; the others differ only in `nick`.
    pub session: SessionConfig,
    pub plans: Vec<ConnectionPlan>,
    pub log: bool,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub max_attempts: u32,
    pub flood_burst: u32,
    pub flood_rate: f64,
    pub connect_rate: f64,
    /// What is valid but risky ([`flotilla_connector::Connector::warnings`]).
    pub warnings: Vec<Diagnostic>,
}

impl std::fmt::Debug for IrcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrcSettings")
            .field("network", &self.network)
            .field("server", &format_args!("{}:{}", self.host, self.port))
            .field("tls", &self.tls)
            .field("nick", &self.session.nick)
            .field("password", &self.session.password.as_ref().map(|_| "***"))
            .field("connections", &self.plans.len())
            .finish_non_exhaustive()
    }
}

impl IrcSettings {
    /// The session settings of connection `index` (its own nick).
    pub fn session_for(&self, index: usize) -> SessionConfig {
        let mut session = self.session.clone();
        if index > 0 {
            session.nick = format!("{}{}", self.session.nick, index + 1);
        }
        session
    }

    /// `host:port`, as status shows it.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Splits `host:port`, `host`, `[v6]:port` or `[v6]`.
pub fn split_server(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("an IPv6 address needs its closing ']'")?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("unexpected '{after}' after the address")),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return Err("write an IPv6 address in brackets: [::1]:6667".into()),
            None => (text, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!("'{host}' is not a host name or address"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("'{p}' is not a port (1-65535)")),
            Ok(p) => p,
        },
    };
    Ok((host.to_string(), port))
}

/// Whether a nick is one IRC accepts (RFC 2812 letters, digits and `[]\`_^{|}-`, not
/// starting with a digit or `-`).
pub fn valid_nick(nick: &str) -> bool {
    let special = |c: char| "[]\\`_^{|}".contains(c);
    let mut chars = nick.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || special(c))
        && chars.all(|c| c.is_ascii_alphanumeric() || special(c) || c == '-')
}

/// Whether a channel name is one IRC accepts.
pub fn valid_channel(name: &str) -> bool {
    name.len() >= 2
        && name.len() <= 200
        && name.starts_with(['#', '&', '+', '!'])
        && !name.chars().any(|c| c == ' ' || c == ',' || c == '\x07' || c.is_control())
}

/// Reads and checks a section; every problem is reported.
pub fn settings_from_section(section: &ConnectorSection<'_>) -> Result<IrcSettings, Vec<Diagnostic>> {
    let raw: RawIrc = flotilla_connector::decode_section(section)?;
    let mut errors = Vec::new();
    let tls = raw.tls.unwrap_or(false);
    let (host, port) = match split_server(&raw.server.value, if tls { 6697 } else { 6667 }) {
        Ok(pair) => pair,
        Err(e) => {
            errors.push(diagnostic_at(section, "server", e));
            (String::new(), 0)
        }
    };
    if !valid_nick(&raw.nick.value) {
        errors.push(diagnostic_at(
            section,
            "nick",
            format!(
                "'{}' is not an IRC nick (letters, digits, []\\`_^{{|}}-, not starting with a digit or -)",
                raw.nick.value
            ),
        ));
    }
    let user = raw.user.as_ref().map_or(raw.nick.value.clone(), |u| u.value.clone());
    if user.is_empty() || user.chars().any(|c| c == ' ' || c == '@' || c.is_control()) {
        errors.push(diagnostic_at(section, "user", format!("'{user}' is not a user name (no spaces or @)")));
    }
    let realname = raw.realname.clone().unwrap_or_else(|| "Flotilla IRC bot".to_string());
    if realname.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
        errors.push(diagnostic_at(section, "realname", "must be one line"));
    }
    if raw.password.as_deref().is_some_and(|p| p.is_empty() || p.contains(['\r', '\n', '\0', ' '])) {
        errors.push(diagnostic_at(section, "password", "must be one word without spaces or line breaks"));
    }
    if raw
        .services_host
        .as_deref()
        .is_some_and(|h| h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control() || c == '@' || c == '!'))
    {
        errors.push(diagnostic_at(section, "services_host", "must be a host name such as services.libera.chat"));
    }

    let mut channels: Vec<ChannelSpec> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, entry) in raw.channels.iter().flatten().enumerate() {
        let text = entry.value.trim();
        let (name, key) = match text.split_once(' ') {
            Some((name, key)) => (name, Some(key.trim().to_string())),
            None => (text, None),
        };
        let at = format!("channels.{i}");
        if !valid_channel(name) {
            errors.push(diagnostic_at(
                section,
                &at,
                format!("'{name}' is not a channel name (starts with #, & , + or !; no spaces, commas or control characters)"),
            ));
        } else if key.as_deref().is_some_and(|k| k.is_empty() || k.contains([' ', ','])) {
            errors.push(diagnostic_at(section, &at, format!("the key of {name} must be one word")));
        } else if !seen.insert(crate::session::fold(name)) {
            errors.push(diagnostic_at(section, &at, format!("{name} is listed twice")));
        } else {
            channels.push(ChannelSpec { name: name.to_string(), key });
        }
    }

    let network = raw.network.as_ref().map_or_else(|| section.name.to_string(), |n| n.value.clone());
    if network.trim().is_empty() {
        errors.push(diagnostic_at(section, "network", "must not be empty"));
    }

    let mut bind: Vec<IpAddr> = Vec::new();
    for (i, entry) in raw.bind.iter().flatten().enumerate() {
        match entry.value.trim().parse::<IpAddr>() {
            Ok(ip) if bind.contains(&ip) => {
                errors.push(diagnostic_at(section, &format!("bind.{i}"), format!("{ip} is listed twice")))
            }
            Ok(ip) => bind.push(ip),
            Err(_) => errors.push(diagnostic_at(
                section,
                &format!("bind.{i}"),
                format!("'{}' is not an IP address", entry.value),
            )),
        }
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
    let rejoin_delay = duration(&raw.rejoin_delay, "rejoin_delay", Duration::from_secs(10));
    let ping_interval = duration(&raw.ping_interval, "ping_interval", Duration::from_secs(30));
    let max_lag = duration(&raw.max_lag, "max_lag", Duration::from_secs(60));
    let min_backoff = duration(&raw.min_backoff, "min_backoff", Duration::from_secs(2));
    let max_backoff = duration(&raw.max_backoff, "max_backoff", Duration::from_secs(300));
    if max_backoff < min_backoff {
        errors.push(diagnostic_at(section, "max_backoff", "must not be less than min_backoff"));
    }

    let mut rate = |value: Option<f64>, key: &str, default: f64| -> f64 {
        match value {
            None => default,
            Some(r) if r.is_finite() && r > 0.0 => r,
            Some(_) => {
                errors.push(diagnostic_at(section, key, "must be a number more than 0"));
                default
            }
        }
    };
    let flood_rate = rate(raw.flood_rate, "flood_rate", 1.0);
    let connect_rate = rate(raw.connect_rate, "connect_rate", 10.0);

    let per_connection = raw.max_channels_per_connection.unwrap_or(20) as usize;
    let per_ip = raw.max_connections_per_ip.unwrap_or(3) as usize;
    let plans = match plan(&channels, per_connection, &bind, per_ip, raw.connections.unwrap_or(0) as usize) {
        Ok(plans) => plans,
        Err(e) => {
            let key = if matches!(e, crate::plan::PlanError::ZeroChannelsPerConnection) {
                "max_channels_per_connection"
            } else if raw.bind.is_some() {
                "bind"
            } else {
                "channels"
            };
            errors.push(diagnostic_at(section, key, e.to_string()));
            Vec::new()
        }
    };

    let tls_settings = if tls {
        Some(TlsSettings {
            ca: raw.tls_ca.as_ref().map(|p| PathBuf::from(&p.value)),
            insecure: raw.tls_insecure.unwrap_or(false),
        })
    } else {
        for key in ["tls_ca", "tls_insecure"] {
            if section.node.get(key).is_some() {
                errors.push(diagnostic_at(section, key, "only means something with tls: true"));
            }
        }
        None
    };

    let mut warnings = Vec::new();
    if raw.password.is_some() && !tls {
        warnings.push(diagnostic_at(
            section,
            "password",
            "sent in clear text: without tls: true anyone on the way to the server can read it \
             (SASL and NickServ IDENTIFY alike); set tls: true",
        ));
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(IrcSettings {
        network: Arc::from(network.as_str()),
        host,
        port,
        tls: tls_settings,
        session: SessionConfig {
            nick: raw.nick.value.clone(),
            user,
            realname,
            password: raw.password.clone(),
            services_host: raw.services_host.clone(),
            ping_interval,
            max_lag,
            rejoin_delay,
            max_backoff,
        },
        plans,
        log: raw.log.unwrap_or(false),
        min_backoff,
        max_backoff,
        max_attempts: raw.max_attempts.unwrap_or(5),
        flood_burst: raw.flood_burst.unwrap_or(5),
        flood_rate,
        connect_rate,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> Result<IrcSettings, Vec<String>> {
        let env = |_: &str| None;
        let node = flotilla_config::parse_str("irc.yaml", yaml, &env).expect("yaml");
        let section = ConnectorSection { name: "libera", node: &node, path: "connectors.libera".into() };
        settings_from_section(&section).map_err(|errors| errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn servers() {
        type Case<'a> = (&'a str, Result<(&'a str, u16), &'a str>);
        let cases: &[Case] = &[
            ("irc.libera.chat:6697", Ok(("irc.libera.chat", 6697))),
            ("irc.libera.chat", Ok(("irc.libera.chat", 6667))),
            ("127.0.0.1:16667", Ok(("127.0.0.1", 16667))),
            ("[::1]:6667", Ok(("::1", 6667))),
            ("[::1]", Ok(("::1", 6667))),
            ("::1", Err("write an IPv6 address in brackets: [::1]:6667")),
            ("host:0", Err("'0' is not a port (1-65535)")),
            ("host:x", Err("'x' is not a port (1-65535)")),
            (":6667", Err("'' is not a host name or address")),
            ("a b:1", Err("'a b' is not a host name or address")),
        ];
        for (text, expect) in cases {
            let got = split_server(text, 6667);
            let expect = expect.map(|(h, p)| (h.to_string(), p)).map_err(str::to_string);
            assert_eq!(got, expect, "{text}");
        }
    }

    #[test]
    fn nicks_and_channels() {
        for (nick, ok) in
            [("flot", true), ("[x]-1", true), ("1flot", false), ("-x", false), ("a b", false), ("", false)]
        {
            assert_eq!(valid_nick(nick), ok, "{nick}");
        }
        for (name, ok) in
            [("#a", true), ("&local", true), ("#", false), ("a", false), ("#a,b", false), ("#a\x07", false)]
        {
            assert_eq!(valid_channel(name), ok, "{name}");
        }
    }

    #[test]
    fn a_full_section() {
        let s = settings(
            "server: 127.0.0.1:16667\nnick: flot\nchannels: ['#a', '#b key', '#c']\nbind: [127.0.0.2, 127.0.0.3]\n\
             max_channels_per_connection: 1\nmax_connections_per_ip: 2\nrejoin_delay: 1s\nlog: true\npassword: pw\n",
        )
        .unwrap();
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 16667));
        assert_eq!(s.plans.len(), 3);
        assert_eq!(s.plans[1].channels[0], ChannelSpec { name: "#b".into(), key: Some("key".into()) });
        assert_eq!(s.plans[2].bind, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(s.session.rejoin_delay, Duration::from_secs(1));
        assert_eq!(s.session_for(0).nick, "flot");
        assert_eq!(s.session_for(2).nick, "flot3");
        assert_eq!(&*s.network, "libera");
        assert!(s.log);
        assert!(!format!("{s:?}").contains("pw"), "the password never reaches logs");
        let warnings: Vec<String> = s.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("connectors.libera.password: sent in clear text"), "{warnings:?}");
        let s = settings("server: 127.0.0.1:16697\ntls: true\nnick: flot\npassword: pw\nservices_host: services.x\n");
        let s = s.unwrap();
        assert!(s.warnings.is_empty());
        assert_eq!(s.session.services_host.as_deref(), Some("services.x"));
    }

    #[test]
    fn every_error_is_reported() {
        let errors = settings(
            "server: 'a b'\nnick: 1flot\nchannels: [nochan, '#a', '#A']\nbind: [nope]\nmax_lag: 0s\n\
             flood_rate: -1\nmin_backoff: 10m\nmax_backoff: 1m\ntls_ca: x.pem\nservices_host: 'a b'\n",
        )
        .unwrap_err();
        let text = errors.join("\n");
        for needle in [
            "server: 'a b' is not a host name",
            "nick: '1flot' is not an IRC nick",
            "channels.0: 'nochan' is not a channel name",
            "channels.2: #A is listed twice",
            "bind.0: 'nope' is not an IP address",
            "max_lag: must be more than 0",
            "flood_rate: must be a number more than 0",
            "max_backoff: must not be less than min_backoff",
            "tls_ca: only means something with tls: true",
            "services_host: must be a host name such as services.libera.chat",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        let unknown = settings("server: x\nnick: n\nbogus: 1\n").unwrap_err().join("\n");
        assert!(unknown.contains("bogus"), "{unknown}");
    }

    #[test]
    fn a_plan_that_cannot_work_is_a_config_error() {
        let errors =
            settings("server: x\nnick: n\nchannels: ['#a', '#b', '#c', '#d']\nmax_channels_per_connection: 1\n")
                .unwrap_err()
                .join("\n");
        assert!(errors.contains("need 4 connections"), "{errors}");
    }
}
