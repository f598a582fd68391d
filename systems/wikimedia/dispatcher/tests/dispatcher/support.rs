//! Test harness: a dispatcher over a real embedded bus and a real store in a temporary
//! directory, its control server on a free loopback port, throwaway Redis servers, a
//! line-protocol client, and a fresh Postgres database when a test wants one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_bus::{Bus, EmbeddedBus, EmbeddedOptions, ReadFrom};
use flotilla_store::Store;
pub use flotilla_test_support::{PgDatabase, RedisServer, TestCa};
use flotilla_wikimedia_dispatcher::client::ControlClient;
use flotilla_wikimedia_dispatcher::{ControlLimits, Dispatcher, DispatcherSettings};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpStream;

pub struct Harness {
    /// Keeps the bus and the store alive for the test.
    pub _dir: tempfile::TempDir,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<Store>,
    pub settings: DispatcherSettings,
    pub dispatcher: Option<Dispatcher>,
}

impl Harness {
    /// A dispatcher with SQLite in a temporary directory; deliveries to `redis_url`.
    pub async fn start(redis_url: Option<String>, control: ControlLimits) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/store.db", dir.path().display());
        Harness::start_with_store(dir, &url, redis_url, control).await
    }

    pub async fn start_with_store(
        dir: tempfile::TempDir,
        store_url: &str,
        redis_url: Option<String>,
        control: ControlLimits,
    ) -> Harness {
        let settings =
            DispatcherSettings { redis_url, control, admin_token: Some("admin-secret".into()), ..Default::default() };
        Harness::start_with_settings(dir, store_url, settings).await
    }

    /// A dispatcher like [`Harness::start`]'s (SQLite, admin token `admin-secret`)
    /// with `adjust` applied to its settings.
    pub async fn start_adjusted(redis_url: Option<String>, adjust: impl FnOnce(&mut DispatcherSettings)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/store.db", dir.path().display());
        let mut settings =
            DispatcherSettings { redis_url, admin_token: Some("admin-secret".into()), ..Default::default() };
        adjust(&mut settings);
        Harness::start_with_settings(dir, &url, settings).await
    }

    async fn start_with_settings(dir: tempfile::TempDir, store_url: &str, settings: DispatcherSettings) -> Harness {
        let mut harness = Harness::prepare(dir, store_url, settings).await;
        harness.launch().await;
        harness
    }

    /// The bus and the store, with the dispatcher not started yet.
    pub async fn prepare(dir: tempfile::TempDir, store_url: &str, settings: DispatcherSettings) -> Harness {
        let bus: Arc<dyn Bus> =
            Arc::new(EmbeddedBus::open(&dir.path().join("bus"), EmbeddedOptions::default()).unwrap());
        let store = Arc::new(Store::open(store_url).await.unwrap());
        Harness { _dir: dir, bus, store, settings, dispatcher: None }
    }

    /// Starts the dispatcher with [`Harness::settings`], returning its error.
    pub async fn try_launch(&mut self) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dispatcher = Dispatcher::start(
            self.settings.clone(),
            self.bus.clone(),
            Some(self.store.clone()),
            listener,
            tokio_util::sync::CancellationToken::new(),
        )
        .await?;
        self.dispatcher = Some(dispatcher);
        Ok(())
    }

    async fn launch(&mut self) {
        self.try_launch().await.unwrap();
    }

    /// Stops the dispatcher and starts a new one over the same bus and store.
    pub async fn restart(&mut self) {
        if let Some(dispatcher) = self.dispatcher.take() {
            dispatcher.stop().await;
        }
        self.launch().await;
    }

    pub fn dispatcher(&self) -> &Dispatcher {
        self.dispatcher.as_ref().unwrap()
    }

    pub fn control(&self) -> SocketAddr {
        self.dispatcher().control_addr()
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.control()).await
    }

    /// Publishes events to `reactor` as the wikimedia connector would.
    pub async fn publish_events(&self, events: &[String]) {
        let payloads: Vec<Bytes> = events
            .iter()
            .filter_map(|event| {
                let mut message = flotilla_wikimedia_source::change_message(event.as_bytes()).unwrap()?;
                message.set("key", "wm");
                message.stamp("testhost", std::time::SystemTime::now());
                Some(Bytes::from(message.to_json()))
            })
            .collect();
        self.bus.publish("reactor", payloads).await.unwrap();
    }

    /// The payloads of a bus queue, waiting (bounded) until there are `count`.
    pub async fn queue(&self, queue: &str, count: usize) -> Vec<String> {
        let mut reader = self.bus.read(queue, ReadFrom::Start).await.unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while out.len() < count {
            assert!(Instant::now() < deadline, "{queue}: only {} of {count} arrived: {out:?}", out.len());
            for d in reader.fetch(1024, Duration::from_millis(100)).await.unwrap() {
                out.push(String::from_utf8(d.payload.to_vec()).unwrap());
            }
        }
        for d in reader.fetch(1024, Duration::from_millis(300)).await.unwrap() {
            out.push(String::from_utf8(d.payload.to_vec()).unwrap());
        }
        out
    }

    /// Waits (bounded) until every delivery has left `dispatch.redis` for Redis and for
    /// the `sub.<name>` queues, and the matcher has taken everything from `reactor`.
    pub async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let stats = self.bus.stats().await.unwrap();
            let pending: Vec<String> = stats
                .iter()
                .filter(|q| q.queue == "reactor" || q.queue == "dispatch.redis")
                .flat_map(|q| {
                    q.groups.iter().filter(|g| g.pending > 0).map(move |g| format!("{}/{}", q.queue, g.group))
                })
                .collect();
            if pending.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "still pending after 20 s: {pending:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until the dispatcher's status satisfies `ready`; returns it.
    pub async fn status_until(&self, what: &str, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.dispatcher().shared().status();
            if ready(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "{what}: not within 20 s: {status:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(dispatcher) = self.dispatcher.take() {
            dispatcher.stop().await;
        }
        self.bus.close().await.unwrap();
        self.store.close().await;
    }
}

/// A Redis list's elements, oldest first, without taking them.
pub async fn list(redis: &RedisServer, key: &str) -> Vec<String> {
    let mut connection = redis.connection().await;
    let mut items: Vec<String> =
        redis::cmd("LRANGE").arg(key).arg(0).arg(-1).query_async(&mut connection).await.unwrap();
    items.reverse();
    items
}

/// The dispatcher's HTTP routes on a loopback port, and a client for them.
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Api {
    pub async fn start(harness: &Harness) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = harness.dispatcher().router();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Api { base, client: reqwest::Client::new(), server }
    }

    /// One request; the status and the JSON body (`null` when empty).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            let kind = if body.starts_with('<') { "application/xml" } else { "application/json" };
            request = request.header("Content-Type", kind).body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A control-protocol client for tests: the crate's [`ControlClient`], failing the
/// test on connection errors and waiting at most 10 s for a reply.
pub struct Client(pub ControlClient);

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).await.unwrap())
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        Client(ControlClient::from_stream(stream).with_reply_timeout(Duration::from_secs(10)))
    }

    /// Sends raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes).await.unwrap();
    }

    /// The next reply line without its `\n`; `None` when the server closed.
    pub async fn line(&mut self) -> Option<String> {
        match self.0.read_line().await {
            Ok(line) => line,
            // A reset connection is a closed one; only a missing reply fails the test.
            Err(error) if error.downcast_ref::<std::io::Error>().is_some() => None,
            Err(error) => panic!("no reply within 10 s: {error:#}"),
        }
    }

    /// Sends one line and returns the reply (an error line too).
    pub async fn ask(&mut self, line: &str) -> String {
        self.write(format!("{line}\n").as_bytes()).await;
        self.line().await.expect("a reply")
    }

    /// `subscribe NAME` then `auth`; returns the token.
    pub async fn subscribe_and_auth(&mut self, name: &str) -> String {
        let reply = self.ask(&format!("subscribe {name}")).await;
        let token = reply.strip_prefix("TOKEN: ").unwrap_or_else(|| panic!("{reply}")).to_string();
        assert_eq!(self.ask(&format!("auth {name} {token}")).await, "OK");
        token
    }
}

/// What a subscription in `format` receives for `event`.
pub fn rendered(event: &str, format: flotilla_wikimedia_core::OutputFormat) -> String {
    flotilla_wikimedia_core::render(&flotilla_wikimedia_core::parse_change(event.as_bytes()).unwrap(), format)
}
