//! What Flotilla's test harnesses share, so each crate's tests build on one copy:
//!
//! - [`TestNode`]: an embedded bus and a SQLite (or given) store in a temporary
//!   directory, a status board and a shutdown token, and [`TestNode::context`] for a
//!   connector context wired as the node wires one.
//! - [`PgDatabase`]: a fresh database on the Postgres of `FLOTILLA_TEST_POSTGRES`
//!   (`scripts/test` sets it), dropped at the end of the test.
//! - [`RedisServer`]: a throwaway `redis-server` on a free port, append-only with an
//!   fsync per write, that a test can kill and restart; [`RedisServer::start_tls`] serves
//!   `rediss://` only, with a certificate of a [`TestCa`].
//! - [`TestCa`] ([`tls`]): a self-signed CA made with `openssl`, and server certificates
//!   it signs; [`PgTlsServer`]: a throwaway Postgres cluster that accepts TLS only.
//! - [`Ngircd`]: a throwaway ngIRCd on a free port that a test can kill, restart,
//!   freeze and thaw.
//!   fsync per write, that a test can kill and restart.
//! - [`Prosody`] ([`prosody`]): a throwaway Prosody with STARTTLS and direct TLS from a
//!   [`TestCa`], stream management, offline storage and a MUC service, that a test can
//!   kill and restart; [`Ejabberd`] the same with ejabberd; [`XmppServer`] is what the
//!   XMPP suite needs of either.
//! - [`NatsServer`]: a throwaway `nats-server -js` on a free port with its own store
//!   directory, that a test can kill and restart (or start without JetStream).
//! - [`webdriver::Browser`]: a throwaway `chromedriver` driving a headless Chromium
//!   (the web UI's tests).
//!
//! Every wait here is bounded and every address is loopback.

#![forbid(unsafe_code)]

pub mod ejabberd;
pub mod prosody;
pub mod tls;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use ejabberd::Ejabberd;
use flotilla_bus::{Bus, EmbeddedBus, EmbeddedOptions};
use flotilla_connector::{ConnectorContext, ConnectorState, NodeServices, StatusBoard};
use flotilla_store::Store;
pub use prosody::{Prosody, XmppServer};
pub use tls::{PgTlsServer, TestCa};
use tokio_util::sync::CancellationToken;

/// Declares a test harness type wrapping a [`TestNode`] (reachable through `Deref`), so
/// a crate's tests can add helpers of their own to it:
/// `flotilla_test_support::harness!(pub Harness);` then `impl Harness { … }`.
#[macro_export]
macro_rules! harness {
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        $vis struct $name(pub $crate::TestNode);

        impl ::std::ops::Deref for $name {
            type Target = $crate::TestNode;
            fn deref(&self) -> &$crate::TestNode {
                &self.0
            }
        }
    };
}

/// The host name test contexts report.
pub const TEST_HOST: &str = "testhost";
/// The node name test contexts report.
pub const TEST_NODE: &str = "testnode";

/// A bus and a store in a temporary directory, as a node would give its connectors.
pub struct TestNode {
    pub dir: tempfile::TempDir,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<Store>,
    pub board: StatusBoard,
    /// The parent of every context's shutdown token.
    pub shutdown: CancellationToken,
}

impl TestNode {
    /// With a SQLite store in the temporary directory.
    pub async fn new() -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/store.db", dir.path().display());
        TestNode::with_store(dir, &url).await
    }

    /// With the store at `url` (a [`PgDatabase`]'s, say).
    pub async fn with_store(dir: tempfile::TempDir, url: &str) -> TestNode {
        let bus: Arc<dyn Bus> =
            Arc::new(EmbeddedBus::open(&dir.path().join("bus"), EmbeddedOptions::default()).unwrap());
        let store = Arc::new(Store::open(url).await.unwrap_or_else(|e| panic!("opening the store at {url}: {e}")));
        TestNode { dir, bus, store, board: StatusBoard::default(), shutdown: CancellationToken::new() }
    }

    /// What the node shares with every connector.
    pub fn services(&self) -> NodeServices {
        NodeServices {
            hostname: TEST_HOST.to_string(),
            node_name: TEST_NODE.to_string(),
            bus: self.bus.clone(),
            store: self.store.clone(),
            status: self.board.clone(),
            data_dir: self.dir.path().to_path_buf(),
        }
    }

    /// The context of connector `name` of type `kind`, emitting into `queue`, registered
    /// on the status board as starting and stopped by [`TestNode::shutdown`].
    pub fn context(&self, name: &str, kind: &str, queue: &str) -> ConnectorContext {
        self.context_with_shutdown(name, kind, queue, self.shutdown.child_token())
    }

    /// The same, stopped by a token of the test's own.
    pub fn context_with_shutdown(
        &self,
        name: &str,
        kind: &str,
        queue: &str,
        shutdown: CancellationToken,
    ) -> ConnectorContext {
        self.board.register(name, kind, ConnectorState::Starting);
        self.services().connector(name, kind, queue, shutdown)
    }
}

/// A fresh Postgres database for one test, dropped with [`PgDatabase::drop_now`].
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    /// Creates `flotilla_t_<random>` on the server of `FLOTILLA_TEST_POSTGRES`.
    pub async fn create() -> PgDatabase {
        let admin_url = std::env::var("FLOTILLA_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).unwrap();
        let name = format!("flotilla_t_{}", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>());
        PgDatabase::admin(&admin_url, &format!("CREATE DATABASE {name}")).await;
        let cut = admin_url.rfind('/').expect("a database in the URL");
        let url = format!("{}/{name}", &admin_url[..cut]);
        PgDatabase { admin_url, name, url }
    }

    async fn admin(admin_url: &str, statement: &str) {
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(admin_url).await.unwrap_or_else(|e| {
            panic!("Postgres at {admin_url} is needed for this test (scripts/test starts it): {e}")
        });
        sqlx::query(sqlx::AssertSqlSafe(statement.to_string())).execute(&admin).await.unwrap();
        admin.close().await;
    }

    /// Drops the database (closing any connection still open to it).
    pub async fn drop_now(self) {
        PgDatabase::admin(&self.admin_url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await;
    }
}

/// A free TCP port on loopback (bound and released; fine for test servers).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits (bounded) until `ready` holds for the server `name` just started on `port`.
fn wait_ready(name: &str, port: u16, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "{name} did not start on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills a server (SIGKILL, by its own PID) and waits for it to be gone.
fn kill_child(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A throwaway redis-server on a free port, stopped by its own PID when dropped.
/// Append-only with fsync on every write, so a restart keeps what it acknowledged.
pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    /// With TLS: the server's certificate and key, and the CA file that signed them.
    tls: Option<tls::ServerCertificate>,
    /// Settings given after the defaults (they override them).
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one keeping its files in `dir`; returns once it answers PING.
    pub fn start(dir: &Path) -> RedisServer {
        RedisServer::start_with(dir, &[])
    }

    /// Starts one with extra command-line settings after the defaults, which they
    /// override (`["--appendonly", "no"]`: a Redis that does not persist); kept for
    /// restarts.
    pub fn start_with(dir: &Path, extra: &[&str]) -> RedisServer {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut server = RedisServer { port: free_port(), dir: dir.to_path_buf(), tls: None, extra, child: None };
        server.spawn();
        server
    }

    /// The same serving TLS only (`rediss://`, no plain port), with a certificate for
    /// 127.0.0.1 and localhost signed by `ca`; clients need not present one.
    pub fn start_tls(dir: &Path, ca: &TestCa) -> RedisServer {
        std::fs::create_dir_all(dir).unwrap();
        let tls = Some(ca.server_certificate(dir, "redis"));
        let mut server = RedisServer { port: free_port(), dir: dir.to_path_buf(), tls, extra: Vec::new(), child: None };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:PORT/0`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// The CA file a client of a TLS server trusts.
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.ca.as_path())
    }

    /// A client for [`RedisServer::url`], trusting [`RedisServer::ca_file`].
    pub fn client(&self) -> redis::Client {
        flotilla_bus::redis_client::client(&self.url(), self.ca_file()).unwrap()
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let mut command = Command::new("redis-server");
        command.args(["--bind", "127.0.0.1", "--save", ""]);
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string(), "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca),
        };
        let child = command
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/peers ensure redis installs it)");
        self.child = Some(child);
        // PING answers LOADING until the append-only file is read back. (Through
        // `client`: a TLS server answers only a client that trusts its CA.)
        let client = self.client();
        wait_ready("redis-server", self.port, || {
            client.get_connection().is_ok_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok())
        });
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.client().get_multiplexed_async_connection().await.unwrap()
    }

    /// Pops everything from a list, oldest first, once it holds at least `count`.
    pub async fn drain(&self, list: &str, count: usize) -> Vec<String> {
        let mut connection = self.connection().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let len: usize = redis::cmd("LLEN").arg(list).query_async(&mut connection).await.unwrap();
            if len >= count {
                break;
            }
            assert!(Instant::now() < deadline, "{list}: only {len} of {count} arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await; // Anything extra would show now.
        let mut out = Vec::new();
        while let Some(item) =
            redis::cmd("RPOP").arg(list).query_async::<Option<String>>(&mut connection).await.unwrap()
        {
            out.push(item);
        }
        out
    }

    /// A blocking connection, for tests that are not async.
    pub fn blocking_connection(&self) -> redis::Connection {
        self.client().get_connection().unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until something accepts TCP connections on `port` (at most 15 s); fails with
/// the server's log if `child` exits first.
pub fn wait_listening(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited ({status}); its log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the server did not listen on {port}; its log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`, …) to a child process of this test, with
/// kill(1): this crate has no unsafe code.
pub(crate) fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).stderr(Stdio::null()).status();
}

/// Installs ngIRCd through `scripts/peers` when it is not on the path (once).
fn ensure_ngircd() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let have = Command::new("sh").arg("-c").arg("command -v ngircd").output().is_ok_and(|o| o.status.success());
        if !have {
            let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peers");
            let status = Command::new(peers).args(["ensure", "ngircd"]).stdout(Stdio::null()).status();
            assert!(status.is_ok_and(|s| s.success()), "scripts/peers could not install ngircd");
        }
    });
}

/// ngIRCd settings a test may change.
#[derive(Clone)]
pub struct NgircdOptions {
    pub max_connections: u32,
    pub max_connections_ip: u32,
    pub max_joins: u32,
    pub max_nick_length: u32,
    pub ping_timeout: u32,
    pub pong_timeout: u32,
    /// Also listen with TLS on this port, with this certificate and key.
    pub tls: Option<(u16, PathBuf, PathBuf)>,
}

impl Default for NgircdOptions {
    fn default() -> Self {
        NgircdOptions {
            max_connections: 200,
            max_connections_ip: 30,
            max_joins: 50,
            max_nick_length: 30,
            ping_timeout: 120,
            pong_timeout: 20,
            tls: None,
        }
    }
}

/// A throwaway ngIRCd on a free loopback port in a temporary directory, stopped by
/// its PID when dropped (the IRC connector's tests, the fleet's).
pub struct Ngircd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    options: NgircdOptions,
    child: Option<Child>,
}

impl Ngircd {
    pub fn start(options: NgircdOptions) -> Ngircd {
        ensure_ngircd();
        let dir = tempfile::Builder::new().prefix("ngircd").tempdir().unwrap();
        let mut server = Ngircd { port: free_port(), dir, options, child: None };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let o = &self.options;
        let tls = match &o.tls {
            Some((port, cert, key)) => {
                format!("[SSL]\n\tPorts = {port}\n\tCertFile = {}\n\tKeyFile = {}\n", cert.display(), key.display())
            }
            None => String::new(),
        };
        let conf = format!(
            "[Global]\n\tName = irc.test.local\n\tInfo = test ircd\n\tAdminInfo1 = test\n\tAdminInfo2 = test\n\
             \tAdminEMail = test@test.local\n\tListen = 127.0.0.1\n\tPorts = {port}\n\tMotdPhrase = test\n\
             \tServerUID = irc\n\tServerGID = irc\n\
             [Limits]\n\tMaxConnections = {mc}\n\tMaxConnectionsIP = {mci}\n\tMaxJoins = {mj}\n\
             \tMaxNickLength = {mnl}\n\tPingTimeout = {pt}\n\tPongTimeout = {pot}\n\tMaxPenaltyTime = 0\n\
             [Options]\n\tPAM = no\n\tDNS = no\n\tIdent = no\n\tOperCanUseMode = yes\n\
             [Operator]\n\tName = admin\n\tPassword = adminpass\n{tls}",
            port = self.port,
            mc = o.max_connections,
            mci = o.max_connections_ip,
            mj = o.max_joins,
            mnl = o.max_nick_length,
            pt = o.ping_timeout,
            pot = o.pong_timeout,
        );
        let conf_path = self.dir.path().join("ngircd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = self.dir.path().join("ngircd.log");
        let mut child = Command::new("ngircd")
            .args(["-n", "-f"])
            .arg(&conf_path)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
            .spawn()
            .expect("starting ngircd");
        wait_listening(self.port, &mut child, &log);
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Freezes it (SIGSTOP): it keeps its sockets but answers nothing.
    pub fn freeze(&self) {
        send_signal(self.pid(), "STOP");
    }

    pub fn thaw(&self) {
        send_signal(self.pid(), "CONT");
    }
}

impl Drop for Ngircd {
    fn drop(&mut self) {
        if self.child.is_some() {
            send_signal(self.pid(), "CONT");
        }
        self.kill();
    }
}

/// A throwaway `nats-server` on a free loopback port, with JetStream storing in its own
/// directory (unless started without), stopped by its own PID when dropped.
pub struct NatsServer {
    pub port: u16,
    /// The JetStream store directory (`-sd`).
    pub dir: PathBuf,
    jetstream: bool,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts one with JetStream storing in `dir`; returns once it accepts clients.
    pub fn start(dir: &Path) -> NatsServer {
        NatsServer::spawned(dir, true)
    }

    /// Starts one without JetStream (what the bus must refuse clearly).
    pub fn start_without_jetstream(dir: &Path) -> NatsServer {
        NatsServer::spawned(dir, false)
    }

    fn spawned(dir: &Path, jetstream: bool) -> NatsServer {
        let mut server = NatsServer { port: free_port(), dir: dir.to_path_buf(), jetstream, child: None };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let mut command = Command::new("nats-server");
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.jetstream {
            command.arg("-js").arg("-sd").arg(&self.dir);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (scripts/peers ensure nats-server installs it)");
        self.child = Some(child);
        // The server greets each client with INFO once it accepts them; with JetStream
        // it says so once JetStream (and what it recovered from the store) is ready.
        let (port, jetstream) = (self.port, self.jetstream);
        wait_ready("nats-server", port, || {
            use std::io::{BufRead, BufReader};
            let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).is_ok()
                && line.starts_with("INFO ")
                && (!jetstream || line.contains("\"jetstream\":true"))
        });
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts it again on the same port and store directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
