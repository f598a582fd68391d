//! The node's configuration (SPEC §3): raw structs decoded from the YAML tree, pure
//! validation that reports every problem with its location, and the built [`Config`]
//! with every connector constructed and the rules compiled.
//!
//! Each connector section has common keys the node handles (`type`, `enabled` — or
//! wubot's `enable` —, `queue`, `restart`, `nodes`); the rest is decoded by the connector
//! type's own `build`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::{Durability, EmbeddedOptions, NatsOptions, RedisOptions};
use flotilla_config::{Diagnostic, Located, Location, Node, decode_at};
use flotilla_connector::{Connector, ConnectorSection, ConnectorType, FileRulesLoader, RulesFile, split_section};
use flotilla_core::{parse_duration, parse_size};
use flotilla_reactor::{CompileContext, RuleConfig, RuleTree};
use flotilla_service::{ConfiguredConnector, Service, ServiceConfig, ServiceType};
use serde::Deserialize;

use crate::http_server::HttpLimits;

/// A validated, built configuration.
pub struct Config {
    /// The file or directory it came from (`None`: built-in defaults).
    pub source: Option<PathBuf>,
    pub node_name: String,
    /// Short host name (up to the first dot).
    pub hostname: String,
    pub data_dir: PathBuf,
    pub bus: BusSettings,
    pub store_url: String,
    pub http_listen: SocketAddr,
    pub http_limits: HttpLimits,
    pub admin_token: Option<AdminToken>,
    pub connectors: Vec<ConnectorPlan>,
    /// The services the configuration asks for, built and ready to start.
    pub services: Vec<ServicePlan>,
    pub rules: Arc<RuleTree>,
    pub reactor: ReactorSettings,
    /// What is valid but risky ([`Connector::warnings`]), in file order: `check` prints
    /// them, `run` logs them.
    pub warnings: Vec<Diagnostic>,
    /// The settings a reload cannot apply (the node's own sections other than
    /// connectors, rules and reactor, and each service's sections), each as the name of
    /// what it configures and its text: a reload compares them and says which changed.
    pub fixed: Vec<(String, String)>,
}

/// Which bus the node opens (`bus.backend`), with its settings.
#[derive(Debug, Clone)]
pub enum BusSettings {
    /// The segment log under `<data_dir>/bus`.
    Embedded(EmbeddedOptions),
    /// Redis Streams: a fleet of nodes sharing one Redis (SPEC §5.1).
    Redis(RedisOptions),
    /// NATS JetStream: a fleet of nodes sharing one NATS (SPEC §5.1).
    Nats(NatsOptions),
}

/// A secret that never shows in logs.
#[derive(Clone)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// How the supervisor restarts a failing connector.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Consecutive failures after which the connector is sunk; 0 = never give up.
    pub max_restarts: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy { min_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(300), max_restarts: 0 }
    }
}

/// One configured connector, built and ready to run.
pub struct ConnectorPlan {
    pub name: String,
    pub kind: String,
    pub enabled: bool,
    /// Where its messages go.
    pub queue: String,
    pub restart: RestartPolicy,
    /// `nodes: [..]`: the nodes it may run on (`None`: any). A node not in the list
    /// never runs it, in a fleet or alone.
    pub nodes: Option<Vec<String>>,
    pub connector: Arc<dyn Connector>,
    /// The connector's section as written (after includes and variables): a reload
    /// restarts the connector only when this changed.
    pub fingerprint: String,
    /// Its section minus the common keys, for the services that serve its type.
    pub section: Node,
}

/// One service the configuration asks for, built and ready to start.
pub struct ServicePlan {
    pub name: &'static str,
    pub service: Box<dyn Service>,
}

/// The reactor's settings.
#[derive(Debug, Clone)]
pub struct ReactorSettings {
    /// Warn when no message arrived for this long (`None`: never).
    pub idle_warning: Option<Duration>,
}

/// What [`load_config`] needs besides the files.
pub struct LoadOptions<'a> {
    /// `-c PATH`; `None` means `./flotilla.yaml` if present, else built-in defaults.
    pub path: Option<&'a Path>,
    pub registry: &'a [ConnectorType],
    /// The service types this binary has.
    pub services: &'a [ServiceType],
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The short host name (`.yaml.<shorthost>` files, `node.name`'s default).
    pub hostname: String,
}

/// The short name of this machine: the host name up to its first dot.
pub fn short_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let short = name.split('.').next().unwrap_or("").to_string();
    if short.is_empty() { "localhost".to_string() } else { short }
}

/// The sections, each decoded on its own (a section with mistakes is reported and
/// then treated as empty).
#[derive(Default)]
struct RawConfig {
    node: RawNode,
    bus: RawBus,
    store: RawStore,
    http: RawHttp,
    reactor: RawReactor,
    connectors: BTreeMap<String, Node>,
    rules: Option<Node>,
}

impl RawConfig {
    fn decode(tree: &Node, services: &[ServiceType], problems: &mut Problems) -> RawConfig {
        check_top_level_keys(tree, services, problems);
        fn section<T: serde::de::DeserializeOwned + Default>(tree: &Node, key: &str, problems: &mut Problems) -> T {
            let Some(node) = tree.entry(key).filter(|n| !n.is_null()) else { return T::default() };
            let (value, errors) = decode_at::<T>(node, key);
            problems.0.extend(errors);
            value.unwrap_or_default()
        }
        RawConfig {
            node: section(tree, "node", problems),
            bus: section(tree, "bus", problems),
            store: section(tree, "store", problems),
            http: section(tree, "http", problems),
            reactor: section(tree, "reactor", problems),
            connectors: section(tree, "connectors", problems),
            rules: tree.entry("rules").filter(|n| !n.is_null()).cloned(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Option<Located<String>>,
    data_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBus {
    /// `embedded` (default), `redis` or `nats`.
    backend: Option<Located<String>>,
    /// Redis / NATS: where the backend is.
    url: Option<Located<String>>,
    /// Redis: with `rediss://`, the CA file to trust instead of the system's roots.
    tls_ca: Option<Located<String>>,
    /// Redis / NATS: the fleet's name space (`<prefix>:<queue>` streams; `<prefix>.<queue>`
    /// subjects in `<prefix>_<queue>` JetStream streams).
    prefix: Option<Located<String>>,
    /// Redis / NATS: how long a dead node keeps what it held.
    lease_ttl: Option<Located<String>>,
    /// Embedded: `sync` (default), `interval` or `buffered`.
    durability: Option<Located<String>>,
    /// With `durability: interval`: how often to sync (default 50ms).
    sync_interval: Option<Located<String>>,
    segment_size: Option<Located<String>>,
    max_message_size: Option<Located<String>>,
    #[serde(default)]
    retention: RawRetention,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    max_age: Option<Located<String>>,
    max_size: Option<Located<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<Located<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Located<String>>,
    admin_token: Option<Located<String>>,
    max_connections: Option<Located<u64>>,
    max_connections_per_ip: Option<Located<u64>>,
    header_timeout: Option<Located<String>>,
    idle_timeout: Option<Located<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReactor {
    /// A duration, or `off`.
    idle_warning: Option<Located<String>>,
}

/// The common keys of every connector section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommon {
    r#type: Option<Located<String>>,
    enabled: Option<Located<serde_json::Value>>,
    enable: Option<Located<serde_json::Value>>,
    queue: Option<Located<String>>,
    restart: Option<RawRestart>,
    nodes: Option<Located<Vec<String>>>,
}

const COMMON_KEYS: [&str; 6] = ["type", "enabled", "enable", "queue", "restart", "nodes"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestart {
    min_backoff: Option<Located<String>>,
    max_backoff: Option<Located<String>>,
    max_restarts: Option<u32>,
}

/// Collects diagnostics while validating.
#[derive(Default)]
struct Problems(Vec<Diagnostic>);

impl Problems {
    fn at(&mut self, location: &Location, message: impl Into<String>) {
        self.0.push(Diagnostic::at(location, message));
    }

    fn duration(&mut self, value: &Option<Located<String>>, what: &str) -> Option<Duration> {
        let value = value.as_ref()?;
        match parse_duration(&value.value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.at(&value.location, format!("{what}: {e}"));
                None
            }
        }
    }

    fn size(&mut self, value: &Option<Located<String>>, what: &str) -> Option<u64> {
        let value = value.as_ref()?;
        match parse_size(&value.value) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.at(&value.location, format!("{what}: {e}"));
                None
            }
        }
    }

    fn listen(&mut self, value: &Option<Located<String>>, what: &str, default: &str) -> SocketAddr {
        let fallback = default.parse().expect("defaults are valid addresses");
        let Some(value) = value else { return fallback };
        match value.value.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                self.at(
                    &value.location,
                    format!("{what}: '{}' is not an address:port such as 127.0.0.1:8080", value.value),
                );
                fallback
            }
        }
    }
}

/// Loads, validates and builds the configuration. Returns every problem found, each
/// with its file, line and column where it has one.
pub fn load_config(options: &LoadOptions<'_>) -> Result<Config, Vec<Diagnostic>> {
    let source = match options.path {
        Some(path) => Some(path.to_path_buf()),
        None => Some(PathBuf::from("flotilla.yaml")).filter(|p| p.exists()),
    };
    let tree = match &source {
        Some(path) => {
            if !path.exists() {
                return Err(vec![Diagnostic::global(format!("{}: no such file or directory", path.display()))]);
            }
            flotilla_config::load(path, &options.hostname, options.env)?
        }
        None => Node::empty_map(Location::new("<built-in defaults>", 1, 1)),
    };
    let base_dir = match &source {
        Some(path) if path.is_dir() => path.clone(),
        Some(path) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
        None => PathBuf::from("."),
    };
    let mut problems = Problems::default();
    let raw = RawConfig::decode(&tree, options.services, &mut problems);
    let config = build(raw, &tree, source, &base_dir, options, &mut problems);
    let mut diagnostics = problems.0;
    if diagnostics.is_empty() {
        Ok(config)
    } else {
        flotilla_config::sort_diagnostics(&mut diagnostics);
        Err(diagnostics)
    }
}

fn build(
    raw: RawConfig,
    tree: &Node,
    source: Option<PathBuf>,
    base_dir: &Path,
    options: &LoadOptions<'_>,
    problems: &mut Problems,
) -> Config {
    let node_name = match &raw.node.name {
        Some(name) if !flotilla_bus::valid_name(&name.value) => {
            problems.at(&name.location, "node.name: use letters, digits, '_', '.' and '-'");
            name.value.clone()
        }
        Some(name) => name.value.clone(),
        None => options.hostname.clone(),
    };
    let data_dir = PathBuf::from(raw.node.data_dir.unwrap_or_else(|| "./flotilla-data".to_string()));

    let bus = bus_settings(&raw.bus, &node_name, problems);
    if let Some(url) = &raw.store.url
        && let Err(problem) = flotilla_store::check_url(&url.value)
    {
        problems.at(&url.location, format!("store.url: {problem}"));
    }
    let store_url =
        raw.store.url.map(|url| url.value).unwrap_or_else(|| format!("sqlite://{}/flotilla.db", data_dir.display()));
    let http_listen = problems.listen(&raw.http.listen, "http.listen", "127.0.0.1:8080");
    let http_limits = http_limits(&raw.http, problems);
    let admin_token = admin_token(raw.http.admin_token, problems);
    let idle_warning = match &raw.reactor.idle_warning {
        Some(v) if v.value.eq_ignore_ascii_case("off") => None,
        Some(_) => problems.duration(&raw.reactor.idle_warning, "reactor.idle_warning"),
        None => Some(Duration::from_secs(600)),
    };

    let connectors = raw
        .connectors
        .iter()
        .filter_map(|(name, section)| connector_plan(name, section, options.registry, problems))
        .collect::<Vec<_>>();

    let services = service_plans(tree, options.services, &connectors, admin_token.as_ref(), problems);

    let rules = compile_rules(raw.rules.as_ref(), tree, &node_name, base_dir, &connectors, problems);
    let mut warnings: Vec<Diagnostic> = connectors.iter().flat_map(|c| c.connector.warnings()).collect();
    flotilla_config::sort_diagnostics(&mut warnings);
    let fixed = fixed_settings(tree, options.services);

    Config {
        source,
        node_name,
        hostname: options.hostname.clone(),
        data_dir,
        bus,
        store_url,
        http_listen,
        http_limits,
        admin_token,
        connectors,
        services,
        rules: Arc::new(rules),
        reactor: ReactorSettings { idle_warning },
        warnings,
        fixed,
    }
}

/// What only a restart applies: the node's sections `node`, `bus`, `store` and `http`,
/// and each service type's sections, as text (see [`Config::fixed`]).
fn fixed_settings(tree: &Node, services: &[ServiceType]) -> Vec<(String, String)> {
    let text = |key: &str| tree.entry(key).map_or_else(String::new, |node| node.to_json().to_string());
    let mut fixed: Vec<(String, String)> =
        ["node", "bus", "store", "http"].iter().map(|key| (format!("the {key} section"), text(key))).collect();
    for service in services {
        let sections: Vec<String> = service.sections.iter().map(|key| text(key)).collect();
        fixed.push((format!("the {} service's sections", service.name), sections.join("\n")));
    }
    fixed
}

/// `http`'s connection caps and timeouts, each checked where it is written.
fn http_limits(raw: &RawHttp, problems: &mut Problems) -> HttpLimits {
    let mut limits = HttpLimits::default();
    let mut count = |value: &Option<Located<u64>>, key: &str, target: &mut usize| {
        if let Some(value) = value {
            if value.value == 0 {
                problems.at(&value.location, format!("http.{key}: must be at least 1"));
            } else {
                *target = usize::try_from(value.value).unwrap_or(usize::MAX);
            }
        }
    };
    count(&raw.max_connections, "max_connections", &mut limits.max_connections);
    count(&raw.max_connections_per_ip, "max_connections_per_ip", &mut limits.max_connections_per_ip);
    if let Some(timeout) = problems.duration(&raw.header_timeout, "http.header_timeout") {
        match &raw.header_timeout {
            Some(value) if timeout.is_zero() => {
                problems.at(&value.location, "http.header_timeout: must be more than 0")
            }
            _ => limits.header_timeout = timeout,
        }
    }
    if let Some(timeout) = problems.duration(&raw.idle_timeout, "http.idle_timeout") {
        match &raw.idle_timeout {
            Some(value) if timeout <= flotilla_service::http::KEEP_ALIVE => problems.at(
                &value.location,
                format!(
                    "http.idle_timeout: must be longer than {}s, the event streams' keep-alive interval",
                    flotilla_service::http::KEEP_ALIVE.as_secs()
                ),
            ),
            _ => limits.idle_timeout = timeout,
        }
    }
    limits
}

/// The shortest `http.admin_token` accepted: 16 characters, as many as a random
/// token of 96 bits in base64, and more than anyone guesses over HTTP.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// `http.admin_token`: empty is none; a short one is refused (its length is told,
/// never its text).
fn admin_token(raw: Option<Located<String>>, problems: &mut Problems) -> Option<AdminToken> {
    let token = raw.filter(|t| !t.value.is_empty())?;
    let length = token.value.chars().count();
    if length < MIN_ADMIN_TOKEN_CHARS {
        problems.at(
            &token.location,
            format!(
                "http.admin_token: too short ({length} characters); use at least {MIN_ADMIN_TOKEN_CHARS} \
                 (e.g. the output of `openssl rand -base64 24`)"
            ),
        );
        return None;
    }
    Some(AdminToken(token.value))
}

/// The bus section: the backend, and the keys that apply to it (a key of another
/// backend is an error, so a setting never silently does nothing).
fn bus_settings(raw: &RawBus, node_name: &str, problems: &mut Problems) -> BusSettings {
    let backend = raw.backend.as_ref().map_or("embedded", |b| b.value.as_str());
    // A problem with the backend as a whole is reported where it is named.
    let at_backend = |problems: &mut Problems, message: String| match &raw.backend {
        Some(named) => problems.at(&named.location, message),
        None => problems.0.push(Diagnostic::global(message)),
    };
    let only = |problems: &mut Problems, key: &Option<Located<String>>, name: &str, applies: &str| {
        if let Some(key) = key {
            problems.at(&key.location, format!("bus.{name}: applies to {applies}, not to bus.backend '{backend}'"));
        }
    };
    let fleet_keys =
        [(&raw.url, "url"), (&raw.tls_ca, "tls_ca"), (&raw.prefix, "prefix"), (&raw.lease_ttl, "lease_ttl")];
    let embedded_keys = [
        (&raw.durability, "durability"),
        (&raw.sync_interval, "sync_interval"),
        (&raw.segment_size, "segment_size"),
        (&raw.retention.max_size, "retention.max_size"),
    ];
    let max_message_bytes = problems.size(&raw.max_message_size, "bus.max_message_size").map(|b| b as usize);
    match backend {
        "embedded" => {
            for (key, name) in fleet_keys {
                only(problems, key, name, "the redis and nats backends");
            }
            BusSettings::Embedded(embedded_options(raw, max_message_bytes, problems))
        }
        "redis" => {
            for (key, name) in embedded_keys {
                only(problems, key, name, "the embedded bus (Redis persists by its own appendonly/appendfsync)");
            }
            let mut options = RedisOptions::new("", node_name);
            options.tls_ca = raw.tls_ca.as_ref().map(|ca| PathBuf::from(&ca.value));
            if let Some(url) = &raw.url
                && let Err(why) = flotilla_bus::redis::check_url(&url.value, options.tls_ca.as_deref())
            {
                // A problem of the CA file is told at its line, the URL's at the URL's.
                match (&raw.tls_ca, why.is_about_ca()) {
                    (Some(ca), true) => problems.at(&ca.location, format!("bus.tls_ca: {why}")),
                    _ => problems.at(&url.location, format!("bus.url: {why}")),
                }
            }
            // The URL is checked above, with the CA file.
            let shared = shared_bus(raw, max_message_bytes, problems, |_| Ok(()));
            if let Some(url) = shared.url {
                options.url = url;
            } else {
                at_backend(
                    problems,
                    "bus.url: required with bus.backend redis (e.g. redis://127.0.0.1:6379/0)".to_string(),
                );
            }
            options.prefix = shared.prefix.unwrap_or(options.prefix);
            options.lease_ttl = shared.lease_ttl.unwrap_or(options.lease_ttl);
            options.max_message_bytes = shared.max_message_bytes.unwrap_or(options.max_message_bytes);
            options.max_age = shared.max_age.unwrap_or(options.max_age);
            BusSettings::Redis(options)
        }
        "nats" => {
            for (key, name) in embedded_keys {
                only(problems, key, name, "the embedded bus (JetStream persists by its own store settings)");
            }
            let mut options = NatsOptions::new("", node_name);
            let shared = shared_bus(raw, max_message_bytes, problems, flotilla_bus::nats::check_url);
            if let Some(url) = shared.url {
                options.url = url;
            } else {
                at_backend(
                    problems,
                    "bus.url: required with bus.backend nats (e.g. nats://127.0.0.1:4222)".to_string(),
                );
            }
            options.prefix = shared.prefix.unwrap_or(options.prefix);
            options.lease_ttl = shared.lease_ttl.unwrap_or(options.lease_ttl);
            options.max_message_bytes = shared.max_message_bytes.unwrap_or(options.max_message_bytes);
            options.max_age = shared.max_age.unwrap_or(options.max_age);
            BusSettings::Nats(options)
        }
        other => {
            at_backend(problems, format!("bus.backend: unknown backend '{other}' (expected embedded, redis or nats)"));
            BusSettings::Embedded(embedded_options(raw, max_message_bytes, problems))
        }
    }
}

/// The keys a shared bus (Redis, NATS) takes, checked; `None` where not given (or wrong:
/// the problem is recorded).
struct SharedBus {
    url: Option<String>,
    prefix: Option<String>,
    lease_ttl: Option<std::time::Duration>,
    max_message_bytes: Option<usize>,
    max_age: Option<Option<std::time::Duration>>,
}

fn shared_bus(
    raw: &RawBus,
    max_message_bytes: Option<usize>,
    problems: &mut Problems,
    check_url: fn(&str) -> Result<(), String>,
) -> SharedBus {
    let url = raw.url.as_ref().map(|url| {
        if let Err(why) = check_url(&url.value) {
            problems.at(&url.location, format!("bus.url: {why}"));
        }
        url.value.clone()
    });
    let prefix = raw.prefix.as_ref().map(|prefix| {
        if !flotilla_bus::valid_name(&prefix.value) {
            problems.at(&prefix.location, "bus.prefix: use 1 to 200 characters from A-Z a-z 0-9 _ . -");
        }
        prefix.value.clone()
    });
    let lease_ttl = match (problems.duration(&raw.lease_ttl, "bus.lease_ttl"), &raw.lease_ttl) {
        (Some(lease_ttl), Some(key)) if lease_ttl.is_zero() => {
            problems.at(&key.location, "bus.lease_ttl: must be more than 0");
            None
        }
        (lease_ttl, _) => lease_ttl,
    };
    let max_age =
        raw.retention.max_age.is_some().then(|| problems.duration(&raw.retention.max_age, "bus.retention.max_age"));
    SharedBus { url, prefix, lease_ttl, max_message_bytes, max_age }
}

fn embedded_options(raw: &RawBus, max_message_bytes: Option<usize>, problems: &mut Problems) -> EmbeddedOptions {
    let mut options = EmbeddedOptions::default();
    let interval = problems.duration(&raw.sync_interval, "bus.sync_interval").unwrap_or(Duration::from_millis(50));
    if let Some(durability) = &raw.durability {
        options.durability = match durability.value.as_str() {
            "sync" => Durability::Sync,
            "interval" => Durability::Interval(interval),
            "buffered" => Durability::Buffered,
            other => {
                problems.at(
                    &durability.location,
                    format!("bus.durability: unknown policy '{other}' (expected sync, interval or buffered)"),
                );
                Durability::Sync
            }
        };
    }
    if let Some(bytes) = problems.size(&raw.segment_size, "bus.segment_size") {
        options.segment_bytes = bytes.max(4096);
    }
    if let Some(bytes) = max_message_bytes {
        options.max_message_bytes = bytes;
    }
    if raw.retention.max_age.is_some() {
        options.retention.max_age = problems.duration(&raw.retention.max_age, "bus.retention.max_age");
    }
    if raw.retention.max_size.is_some() {
        options.retention.max_bytes = problems.size(&raw.retention.max_size, "bus.retention.max_size");
    }
    options
}

fn connector_plan(
    name: &str,
    section: &Node,
    registry: &[ConnectorType],
    problems: &mut Problems,
) -> Option<ConnectorPlan> {
    let path = format!("connectors.{name}");
    if section.as_map().is_none() {
        problems.at(&section.location, format!("{path}: expected a map with at least a 'type' key"));
        return None;
    }
    let (common_node, rest) = split_section(section, &COMMON_KEYS);
    let (common, errors) = decode_at::<RawCommon>(&common_node, &path);
    problems.0.extend(errors);
    let common = common?;
    let Some(kind) = common.r#type else {
        problems.at(&section.location, format!("{path}: missing key 'type' (one of: {})", type_names(registry)));
        return None;
    };
    let type_name = kind.value.to_ascii_lowercase();
    let Some(connector_type) = registry.iter().find(|t| t.name == type_name) else {
        problems.at(
            &kind.location,
            format!("{path}.type: unknown connector type '{}' (known: {})", kind.value, type_names(registry)),
        );
        return None;
    };
    let mut enabled = true;
    for (key, value) in [("enabled", &common.enabled), ("enable", &common.enable)] {
        if let Some(value) = value {
            match value.as_flag(&format!("{path}.{key}")) {
                Ok(flag) => enabled = flag,
                Err(problem) => problems.0.push(problem),
            }
        }
    }
    let queue = match common.queue {
        Some(queue) if !flotilla_bus::valid_name(&queue.value) => {
            problems.at(&queue.location, format!("{path}.queue: '{}' is not a valid queue name", queue.value));
            return None;
        }
        Some(queue) => queue.value,
        None => "reactor".to_string(),
    };
    let mut restart = RestartPolicy::default();
    if let Some(raw) = &common.restart {
        if let Some(d) = problems.duration(&raw.min_backoff, &format!("{path}.restart.min_backoff")) {
            restart.min_backoff = d;
        }
        if let Some(d) = problems.duration(&raw.max_backoff, &format!("{path}.restart.max_backoff")) {
            restart.max_backoff = d;
        }
        restart.max_restarts = raw.max_restarts.unwrap_or(0);
    }
    let nodes = match common.nodes {
        Some(nodes) if nodes.value.is_empty() || nodes.value.iter().any(|n| n.trim().is_empty()) => {
            problems.at(
                &nodes.location,
                format!("{path}.nodes: list at least one node name (or leave the key out: any node)"),
            );
            None
        }
        other => other.map(|nodes| nodes.value),
    };
    let connector_section = ConnectorSection { name, node: &rest, path: path.clone() };
    match (connector_type.build)(&connector_section) {
        Ok(connector) => Some(ConnectorPlan {
            name: name.to_string(),
            kind: connector_type.name.to_string(),
            enabled,
            queue,
            restart,
            nodes,
            connector: Arc::from(connector),
            fingerprint: section.to_json().to_string(),
            section: rest.clone(),
        }),
        Err(errors) => {
            problems.0.extend(errors);
            None
        }
    }
}

/// The node's own top-level keys; services add theirs.
const NODE_SECTIONS: [&str; 7] = ["node", "bus", "store", "http", "reactor", "connectors", "rules"];

/// Reports top-level keys that neither the node nor a service owns.
fn check_top_level_keys(tree: &Node, services: &[ServiceType], problems: &mut Problems) {
    let Some(entries) = tree.as_map() else {
        problems.at(&tree.location, "the configuration must be a map of sections (node, bus, connectors, rules, …)");
        return;
    };
    let mut known: Vec<&str> = NODE_SECTIONS.to_vec();
    known.extend(services.iter().flat_map(|s| s.sections.iter().copied()));
    for (key, _) in entries {
        if let Some(name) = key.as_str().filter(|name| !known.contains(name)) {
            problems.at(&key.location, flotilla_config::unknown_key_message(name, "", &known));
        }
    }
}

/// Builds every service the configuration asks for; a service type whose `build`
/// answers `None` is not configured and does not start.
fn service_plans(
    tree: &Node,
    services: &[ServiceType],
    connectors: &[ConnectorPlan],
    admin_token: Option<&AdminToken>,
    problems: &mut Problems,
) -> Vec<ServicePlan> {
    let configured: Vec<ConfiguredConnector> = connectors
        .iter()
        .map(|c| ConfiguredConnector {
            name: c.name.clone(),
            kind: c.kind.clone(),
            queue: c.queue.clone(),
            enabled: c.enabled,
            section: c.section.clone(),
        })
        .collect();
    let mut plans = Vec::new();
    for service_type in services {
        let sections =
            service_type.sections.iter().filter_map(|key| tree.entry(key).map(|node| (*key, node))).collect();
        let section =
            ServiceConfig { sections, connectors: &configured, admin_token: admin_token.map(|t| t.0.as_str()) };
        match (service_type.build)(&section) {
            Ok(Some(service)) => plans.push(ServicePlan { name: service_type.name, service }),
            Ok(None) => {}
            Err(errors) => problems.0.extend(errors),
        }
    }
    plans
}

fn type_names(registry: &[ConnectorType]) -> String {
    let mut names: Vec<&str> = registry.iter().map(|t| t.name).collect();
    names.sort_unstable();
    names.join(", ")
}

/// Compiles a file shaped like `reactor.yaml` (a top-level `rules:` list), as
/// `flotilla rules test --rules FILE` uses it, reporting every problem with its place.
pub fn compile_rules_file(
    path: &Path,
    host: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RuleTree, Vec<Diagnostic>> {
    let tree = flotilla_config::load(path, host, env)?;
    let (file, diagnostics) = flotilla_config::decode::<RulesFile>(&tree);
    let Some(file) = file.filter(|_| diagnostics.is_empty()) else { return Err(diagnostics) };
    let loader = FileRulesLoader::default();
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let ctx = CompileContext { host, base_dir: &base_dir, loader: &loader };
    flotilla_reactor::compile(&file.rules, &ctx)
        .map_err(|errors| errors.iter().map(|e| rule_error_diagnostic(e, &loader, &tree)).collect())
}

fn rule_error_diagnostic(error: &flotilla_reactor::RuleError, loader: &FileRulesLoader, tree: &Node) -> Diagnostic {
    let location = loader.locate(error.file.as_deref(), tree, &error.path);
    let message = match &error.file {
        Some(file) if location.is_none() => format!("{}: {}: {}", file.display(), error.path, error.message),
        _ => format!("{}: {}", error.path, error.message),
    };
    Diagnostic { location, message }
}

fn compile_rules(
    rules: Option<&Node>,
    tree: &Node,
    host: &str,
    base_dir: &Path,
    connectors: &[ConnectorPlan],
    problems: &mut Problems,
) -> RuleTree {
    let Some(rules_node) = rules else { return RuleTree::empty() };
    let (rules, errors) = decode_at::<Vec<RuleConfig>>(rules_node, "rules");
    problems.0.extend(errors);
    let Some(rules) = rules else { return RuleTree::empty() };
    let loader = FileRulesLoader::default();
    let ctx = CompileContext { host, base_dir, loader: &loader };
    match flotilla_reactor::compile(&rules, &ctx) {
        Ok(tree_built) => {
            check_references(&tree_built, tree, &loader, connectors, problems);
            tree_built
        }
        Err(errors) => {
            problems.0.extend(errors.iter().map(|e| rule_error_diagnostic(e, &loader, tree)));
            RuleTree::empty()
        }
    }
}

/// `Send` must name a configured connector.
fn check_references(
    rules: &RuleTree,
    tree: &Node,
    loader: &FileRulesLoader,
    connectors: &[ConnectorPlan],
    problems: &mut Problems,
) {
    for reference in rules.references() {
        if reference.kind == flotilla_reactor::ReferenceKind::Connector
            && !connectors.iter().any(|c| c.name == reference.name)
        {
            let location = loader.locate(reference.file.as_deref(), tree, &reference.path);
            problems.0.push(Diagnostic {
                location,
                message: format!("{}: no connector named '{}' is configured", reference.path, reference.name),
            });
        }
    }
}
