//! The test harness: real IRC servers (ngIRCd, InspIRCd) started as children on free
//! ports in temporary directories and stopped by their PIDs; a real independent client
//! (the Python `irc` package, `human.py`) as the humans; a connector context with an
//! embedded bus and a SQLite or Postgres store; and bounded waits that poll what the
//! connector wrote. Servers and clients are installed when missing (`scripts/peers`).
#![allow(dead_code)] // Each test uses a different part.

use flotilla_test_support::TestNode;
pub use flotilla_test_support::{Ngircd, NgircdOptions, wait_listening};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flotilla_bus::ReadFrom;
use flotilla_connector::{Connector, ConnectorContext, ConnectorSection};
use flotilla_core::Message;

pub const QUEUE: &str = "reactor";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Installs ngIRCd, InspIRCd, openssl and the Python `irc` package when missing (once).
pub fn ensure_peers() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let have = |cmd: &str| {
            Command::new("sh").arg("-c").arg(format!("command -v {cmd}")).output().is_ok_and(|o| o.status.success())
        };
        let python_irc =
            Command::new("python3").args(["-c", "import irc.client"]).output().is_ok_and(|o| o.status.success());
        if !(have("ngircd") && have("inspircd") && have("openssl") && python_irc) {
            let status = Command::new(repo_root().join("scripts/peers"))
                .args(["ensure", "ngircd", "inspircd", "python-irc", "openssl"])
                .stdout(Stdio::null())
                .status()
                .expect("running scripts/peers");
            assert!(status.success(), "scripts/peers could not install the IRC servers and client");
        }
    });
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: signalling a child process this test started and still holds.
    unsafe { libc::kill(pid as i32, signal) };
}

/// An InspIRCd child process (it refuses root: run as user `irc`).
pub struct Inspircd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Inspircd {
    pub fn start() -> Inspircd {
        ensure_peers();
        let dir = tempfile::Builder::new().prefix("inspircd").tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            r#"<server name="irc.test.local" description="test ircd" network="TestNet">
<admin name="test" nick="test" email="test@test.local">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect name="main" allow="*" maxchans="50" timeout="20" pingfreq="120"
         hardsendq="1M" softsendq="10240" recvq="10K" threshold="1000"
         commandrate="100000" fakelag="no" localmax="30" globalmax="30" limit="200"
         resolvehostnames="no" useident="no">
<performance softlimit="200" somaxconn="128">
<dns timeout="1">
<options prefixquit="Quit: " syntaxhints="no" announcets="yes">
<security hideserver="" userstats="Pu" customversion="">
<class name="All" commands="*">
<type name="Admin" classes="All" vhost="admin.test.local">
<oper name="admin" password="adminpass" host="*@*" type="Admin">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{d}/ircd.log">
"#
        );
        std::fs::write(dir.path().join("inspircd.conf"), conf).unwrap();
        let status = Command::new("chown").args(["-R", "irc:irc"]).arg(dir.path()).status().unwrap();
        assert!(status.success());
        let log = dir.path().join("out.log");
        let mut child = Command::new("setpriv")
            .args(["--reuid=irc", "--regid=irc", "--init-groups", "inspircd", "--config"])
            .arg(dir.path().join("inspircd.conf"))
            .args(["--nofork", "--nopid"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
            .spawn()
            .expect("starting inspircd");
        wait_listening(port, &mut child, &log);
        Inspircd { port, dir, child }
    }
}

impl Drop for Inspircd {
    fn drop(&mut self) {
        signal(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A human on IRC: `human.py` driving the Python `irc` client.
pub struct Human {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub nick: String,
}

impl Human {
    pub fn connect(port: u16, nick: &str) -> Human {
        Human::connect_from(port, nick, None)
    }

    pub fn connect_from(port: u16, nick: &str, bind: Option<&str>) -> Human {
        ensure_peers();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/human.py");
        let mut command = Command::new("python3");
        command.arg(script).arg("127.0.0.1").arg(port.to_string()).arg(nick);
        if let Some(bind) = bind {
            command.arg(bind);
        }
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("starting human.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut human = Human { child, stdin, stdout, nick: nick.to_string() };
        let ready = human.read_line();
        assert!(ready.starts_with("ready"), "the human could not connect: {ready}");
        human.nick = ready.trim_start_matches("ready ").to_string();
        human
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    /// Runs one command; returns its answer (panics on `error`).
    pub fn cmd(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let answer = self.read_line();
        assert!(!answer.starts_with("error"), "human: {command} -> {answer}");
        answer
    }

    /// Runs a command that must answer `ok`.
    pub fn ok(&mut self, command: &str) -> String {
        let answer = self.cmd(command);
        assert!(answer.starts_with("ok"), "human: {command} -> {answer}");
        answer
    }
}

impl Drop for Human {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

flotilla_test_support::harness!(
    /// A connector context on an embedded bus and a store.
    pub Harness
);

impl Harness {
    /// With a SQLite store in the temporary directory.
    pub async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/store.db", dir.path().display());
        Harness::with_store(dir, &url).await
    }

    pub async fn with_store(dir: tempfile::TempDir, url: &str) -> Harness {
        Harness(TestNode::with_store(dir, url).await)
    }

    pub fn context(&self, name: &str) -> ConnectorContext {
        self.0.context(name, "irc", QUEUE)
    }

    /// Builds an `irc` connector from YAML and runs it in the background.
    pub fn spawn(&self, name: &str, yaml: &str) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        let connector = build(name, yaml);
        let ctx = self.context(name);
        tokio::spawn(async move { connector.run(&ctx).await })
    }

    /// Every message in `queue`, oldest first, without consuming.
    pub async fn read_all(&self, queue: &str) -> Vec<Message> {
        let mut reader = self.bus.read(queue, ReadFrom::Start).await.unwrap();
        let mut all = Vec::new();
        loop {
            let deliveries = reader.fetch(10_000, Duration::from_millis(5)).await.unwrap();
            if deliveries.is_empty() {
                return all;
            }
            all.extend(deliveries.iter().map(|d| Message::from_json(&d.payload).unwrap()));
        }
    }

    /// Makes sure the log tables exist before reading them (a poll may come before
    /// the logger created them; migrating is idempotent).
    async fn log_tables(&self) {
        self.store.migrate(&flotilla_irc::MIGRATIONS).await.unwrap();
    }

    /// `fleetlog` rows as `MESSAGE channel` (channel `-` when none), oldest first.
    pub async fn fleetlog(&self) -> Vec<String> {
        self.log_tables().await;
        let rows = self.store.fetch_all("SELECT message, channel FROM fleetlog ORDER BY id", &[]).await.unwrap();
        rows.iter()
            .map(|r| {
                let message = r.text(0).unwrap();
                let channel = r.opt_text(1).unwrap();
                format!("{message} {}", channel.unwrap_or("-"))
            })
            .collect()
    }

    /// `fleetlog` rows with their details: `MESSAGE channel nick: detail`.
    pub async fn fleetlog_detailed(&self) -> Vec<String> {
        self.log_tables().await;
        let rows =
            self.store.fetch_all("SELECT message, channel, nick, detail FROM fleetlog ORDER BY id", &[]).await.unwrap();
        rows.iter()
            .map(|r| {
                let get = |i: usize| r.opt_text(i).unwrap().unwrap_or("-");
                format!("{} {} {}: {}", get(0), get(1), get(2), get(3))
            })
            .collect()
    }

    /// `irclog` rows as `TYPE target source: message`, oldest first.
    pub async fn irclog(&self) -> Vec<String> {
        self.log_tables().await;
        let rows = self
            .store
            .fetch_all("SELECT irc_message_type, target, source, message FROM irclog ORDER BY id", &[])
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                let get = |i: usize| r.text(i).unwrap();
                format!("{} {} {}: {}", get(0), get(1), get(2), get(3))
            })
            .collect()
    }

    /// Polls `probe` until it returns `Some` (at most `seconds`).
    pub async fn until<T, F, Fut>(&self, what: &str, seconds: u64, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out after {seconds}s waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `fleetlog` has a row matching each of `wanted` (`MESSAGE channel`),
    /// counting repeats; returns the whole log.
    pub async fn wait_fleet(&self, wanted: &[&str], seconds: u64) -> Vec<String> {
        let what = format!("fleetlog rows {wanted:?}");
        self.until(&what, seconds, || async {
            let log = self.fleetlog().await;
            let mut left: Vec<&str> = wanted.to_vec();
            for row in &log {
                if let Some(i) = left.iter().position(|w| w == row) {
                    left.remove(i);
                }
            }
            left.is_empty().then_some(log)
        })
        .await
    }

    /// The connector's status detail.
    pub fn detail(&self, name: &str) -> serde_json::Value {
        self.board.get(name).map(|s| s.detail).unwrap_or_default()
    }

    /// Waits until the connector's status detail satisfies `check` (it is published at
    /// most once a second); returns it.
    pub async fn detail_when(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.until(what, 15, || async {
            let detail = self.detail(name);
            check(&detail).then_some(detail)
        })
        .await
    }

    /// Stops every connector and waits for `handle`.
    pub async fn stop(&self, handle: tokio::task::JoinHandle<anyhow::Result<()>>) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), handle).await.expect("the connector stopped in time").unwrap()
    }
}

/// Builds an `irc` connector from a YAML section.
pub fn build(name: &str, yaml: &str) -> Box<dyn Connector> {
    let node = flotilla_config::parse_str("test.yaml", yaml, &|_| None).unwrap();
    let section = ConnectorSection { name, node: &node, path: format!("connectors.{name}") };
    match (flotilla_irc::CONNECTOR_TYPE.build)(&section) {
        Ok(connector) => connector,
        Err(errors) => {
            panic!("the section does not build: {:?}", errors.iter().map(ToString::to_string).collect::<Vec<_>>())
        }
    }
}

/// A throwaway Postgres instance of the test's own (so the test may stop and restart
/// it), run as user `postgres` on a free port in a temporary directory.
pub struct Postgres {
    pub port: u16,
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    child: Option<Child>,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (scripts/peers ensure postgres)")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("a PostgreSQL bin directory");
        let dir = tempfile::Builder::new().prefix("pg").tempdir_in("/tmp").unwrap();
        let status = Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status().unwrap();
        assert!(status.success());
        let data = dir.path().join("data");
        let out = Command::new("setpriv")
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut pg = Postgres { port: free_port(), dir, bin, child: None };
        pg.launch();
        pg
    }

    fn launch(&mut self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("pg.log");
        let log_file = std::fs::File::options().create(true).append(true).open(&log).unwrap();
        let mut child = Command::new("setpriv")
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(self.bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .arg("-k")
            .arg(self.dir.path())
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap();
        wait_listening(self.port, &mut child, &log);
        // Listening is not accepting: right after start the server answers "the
        // database system is starting up". Wait for pg_isready (bounded).
        let started = Instant::now();
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Postgres on port {} listens but does not accept connections; see {}",
                self.port,
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it (fast shutdown, SIGINT) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGINT);
            let _ = child.wait();
        }
    }

    pub fn start_again(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// A self-signed CA and a server certificate for 127.0.0.1/localhost, made with the
/// `openssl` command; returns (ca.pem, another CA that vouches for nothing here, server
/// cert, server key), readable by ngIRCd.
pub fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Flotilla test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Other CA",
        "-keyout",
        "other.key",
        "-out",
        "other.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    let status = Command::new("chown").args(["-R", "irc:irc"]).arg(dir).status().unwrap();
    assert!(status.success());
    (dir.join("ca.pem"), dir.join("other.pem"), dir.join("server.pem"), dir.join("server.key"))
}
