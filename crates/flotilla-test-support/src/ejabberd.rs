//! A throwaway ejabberd (Debian's `ejabberd`) for the XMPP tests, the second server the
//! XMPP suite runs on: its own configuration, Mnesia spool and certificate in a
//! temporary directory, STARTTLS and direct-TLS c2s ports on free loopback ports,
//! stream management with short resumption, offline storage without a per-user cap,
//! a MUC service, and no shaper. Users are created by the test (`ejabberdctl
//! register`).
//!
//! ejabberd runs as the `ejabberd` user (`setpriv`) with its own Erlang distribution
//! port (`ERL_DIST_PORT`, so no epmd is started), in a process group of its own: the
//! Erlang VM is a grandchild of `ejabberdctl`, so killing means SIGKILL to that group.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::prosody::{XmppServer, ensure_installed};
use crate::{free_port, send_signal, tls::TestCa, wait_listening};

/// A throwaway ejabberd; see the module docs.
pub struct Ejabberd {
    pub dir: tempfile::TempDir,
    port: u16,
    tls_port: u16,
    dist_port: u16,
    node: String,
    ca: PathBuf,
    child: Option<Child>,
}

fn user_id(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "ejabberd"]).output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("the ejabberd user exists (apt-get install ejabberd)")
}

impl Ejabberd {
    /// Starts one; returns once it listens (about 2-4 s).
    pub fn start() -> Ejabberd {
        static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        INSTALLED.get_or_init(|| ensure_installed("ejabberdctl", "ejabberd"));
        let dir = tempfile::Builder::new().prefix("ejabberd").tempdir().unwrap();
        let ca = TestCa::new(&dir.path().join("ca"), "ejabberd");
        let cert = ca.server_certificate(dir.path(), "localhost");
        // ejabberd wants the certificate and its key in one file.
        let combined = dir.path().join("localhost-combined.pem");
        let mut pem = std::fs::read_to_string(&cert.cert).unwrap();
        pem.push_str(&std::fs::read_to_string(&cert.key).unwrap());
        std::fs::write(&combined, pem).unwrap();
        let (port, tls_port, dist_port) = (free_port(), free_port(), free_port());
        let config = format!(
            r#"hosts: ["localhost"]
loglevel: info
certfiles: ["{combined}"]
listen:
  - port: {port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: true
    max_stanza_size: 1048576
  - port: {tls_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    tls: true
    max_stanza_size: 1048576
auth_method: internal
auth_password_format: scram
shaper_rules:
  max_user_offline_messages: 10000000
modules:
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_ping: {{}}
  mod_stream_mgmt:
    resend_on_timeout: if_offline
    resume_timeout: 5
    max_ack_queue: 100000
  mod_roster: {{}}
  mod_disco: {{}}
  mod_muc:
    host: "conference.localhost"
    access_create: all
"#,
            combined = combined.display(),
        );
        std::fs::write(dir.path().join("ejabberd.yml"), config).unwrap();
        std::fs::write(dir.path().join("ejabberdctl.cfg"), "").unwrap();
        std::fs::write(dir.path().join("inetrc"), "").unwrap();
        let (uid, gid) = (user_id("-u"), user_id("-g"));
        for entry in walk(dir.path()) {
            std::os::unix::fs::chown(&entry, Some(uid), Some(gid)).unwrap();
        }
        let node = format!("flotilla{port}@localhost");
        let mut server = Ejabberd { dir, port, tls_port, dist_port, node, ca: ca.cert.clone(), child: None };
        server.launch();
        server
    }

    fn ctl(&self) -> Command {
        let d = self.dir.path();
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=ejabberd", "--regid=ejabberd", "--init-groups", "ejabberdctl", "--config-dir"])
            .arg(d)
            .arg("--config")
            .arg(d.join("ejabberd.yml"))
            .arg("--logs")
            .arg(d)
            .arg("--spool")
            .arg(d.join("spool"))
            .args(["--node", &self.node])
            .env("HOME", d)
            .env("ERL_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1");
        command
    }

    fn launch(&mut self) {
        let log = self.dir.path().join("ejabberd.out");
        let mut child = self
            .ctl()
            .arg("foreground")
            .process_group(0)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
            .spawn()
            .expect("starting ejabberd");
        wait_listening(self.port, &mut child, &log);
        wait_listening(self.tls_port, &mut child, &log);
        self.child = Some(child);
        // Listening comes before the node answers commands: wait for `status`.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ctl().arg("status").output().is_ok_and(|o| o.status.success()) {
            assert!(Instant::now() < deadline, "ejabberd does not answer ejabberdctl status");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Every path under `dir` (and `dir` itself).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

impl XmppServer for Ejabberd {
    fn kind(&self) -> &'static str {
        "ejabberd"
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn tls_port(&self) -> u16 {
        self.tls_port
    }
    fn ca_file(&self) -> &Path {
        &self.ca
    }
    fn domain(&self) -> &str {
        "localhost"
    }
    fn muc_domain(&self) -> &str {
        "conference.localhost"
    }
    fn register(&self, user: &str, password: &str) {
        let out = self.ctl().args(["register", user, "localhost", password]).output().expect("ejabberdctl");
        assert!(
            out.status.success(),
            "ejabberdctl register {user}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The whole group: ejabberdctl, the Erlang VM and its helpers.
            send_signal_group(child.id());
            let _ = child.wait();
            // The VM's sockets close as it dies; wait for the port to be free again.
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    fn terminate(&mut self) {
        if self.child.is_some() {
            let _ = self.ctl().arg("stop").output();
            let _ = self.ctl().arg("stopped").output();
        }
        self.kill();
    }
    fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

/// SIGKILL to the process group led by `pid` (one this test started).
fn send_signal_group(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
    send_signal(pid, "KILL");
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        self.kill();
    }
}
