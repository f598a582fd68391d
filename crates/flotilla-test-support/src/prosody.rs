//! A throwaway Prosody (Debian's `prosody`) for the XMPP tests: its own configuration,
//! data and certificates in a temporary directory, plain/STARTTLS and direct-TLS c2s
//! ports on free loopback ports, a multi-user chat component, stream management
//! (`smacks`) and offline storage on, and no rate limits (`mod_limits` is not loaded,
//! so the benchmarks measure the client, not a throttle). Users are created by the
//! test (`prosodyctl register`). Killed (SIGKILL, by its own PID) and restarted on the
//! same ports and data by the test; stopped when dropped.
//!
//! [`XmppServer`] is what the XMPP suite needs from a server, so it is written once
//! and run on Prosody and on ejabberd ([`crate::ejabberd::Ejabberd`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{free_port, kill_child, tls::TestCa, wait_listening};

/// What the XMPP tests need of a server, whichever it is.
pub trait XmppServer: Send {
    /// The server's name in logs and test names.
    fn kind(&self) -> &'static str;
    /// The c2s port (plain, STARTTLS offered).
    fn port(&self) -> u16;
    /// The direct-TLS c2s port (XEP-0368).
    fn tls_port(&self) -> u16;
    /// The CA that signed the server's certificate.
    fn ca_file(&self) -> &Path;
    /// The virtual host (`localhost`).
    fn domain(&self) -> &str;
    /// The multi-user chat service (`conference.localhost`).
    fn muc_domain(&self) -> &str;
    /// Creates an account.
    fn register(&self, user: &str, password: &str);
    /// Kills the server (SIGKILL) and waits for it.
    fn kill(&mut self);
    /// Stops the server the way its init script does (SIGTERM) and waits for it.
    fn terminate(&mut self);
    /// Starts it again on the same ports with the same data.
    fn restart(&mut self);
}

/// Installs a Debian package through `scripts/peers` when `binary` is not on the path.
pub(crate) fn ensure_installed(binary: &str, peer: &str) {
    let have =
        Command::new("sh").arg("-c").arg(format!("command -v {binary}")).output().is_ok_and(|o| o.status.success());
    if !have {
        let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peers");
        let status = Command::new(peers).args(["ensure", peer]).stdout(Stdio::null()).status();
        assert!(status.is_ok_and(|s| s.success()), "scripts/peers could not install {peer}");
    }
}

/// A throwaway Prosody; see the module docs.
pub struct Prosody {
    pub dir: tempfile::TempDir,
    port: u16,
    tls_port: u16,
    ca: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl Prosody {
    /// Starts one; returns once it listens.
    pub fn start() -> Prosody {
        static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        INSTALLED.get_or_init(|| ensure_installed("prosody", "prosody"));
        let dir = tempfile::Builder::new().prefix("prosody").tempdir().unwrap();
        let ca = TestCa::new(&dir.path().join("ca"), "prosody");
        let certs = dir.path().join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        let cert = ca.server_certificate(&certs, "localhost");
        let (port, tls_port) = (free_port(), free_port());
        let d = dir.path().display();
        let config = dir.path().join("prosody.cfg.lua");
        std::fs::write(
            &config,
            format!(
                r#"run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
log = {{ info = "{d}/prosody.log"; error = "{d}/prosody.err" }}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ {tls_port} }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "offline"; "smacks"; "presence"; "message"; "iq" }}
modules_disabled = {{ "s2s" }}
allow_registration = false
c2s_require_encryption = false
allow_unencrypted_plain_auth = false
authentication = "internal_hashed"
storage = "internal"
smacks_hibernation_time = 5
smacks_max_unacked_stanzas = 200
smacks_max_queue_size = 100000
c2s_stanza_size_limit = 1024 * 1024
ssl = {{ certificate = "{cert}"; key = "{key}" }}
c2s_direct_tls_ssl = {{ certificate = "{cert}"; key = "{key}" }}
VirtualHost "localhost"
    ssl = {{ certificate = "{cert}"; key = "{key}" }}
Component "conference.localhost" "muc"
    restrict_room_creation = false
    -- A new room is open at once (as ejabberd's are), not locked until configured.
    muc_room_locking = false
"#,
                cert = cert.cert.display(),
                key = cert.key.display(),
            ),
        )
        .unwrap();
        let mut server = Prosody { dir, port, tls_port, ca: ca.cert.clone(), config, child: None };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let log = self.dir.path().join("prosody.out");
        let mut child = Command::new("prosody")
            .args(["-F", "--config"])
            .arg(&self.config)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
            .spawn()
            .expect("starting prosody");
        wait_listening(self.port, &mut child, &log);
        wait_listening(self.tls_port, &mut child, &log);
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The server's log (for failing tests).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
    }
}

impl XmppServer for Prosody {
    fn kind(&self) -> &'static str {
        "prosody"
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
        let out = Command::new("prosodyctl")
            .arg("--config")
            .arg(&self.config)
            .args(["register", user, "localhost", password])
            .output()
            .expect("prosodyctl");
        assert!(
            out.status.success(),
            "prosodyctl register {user}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fn kill(&mut self) {
        kill_child(&mut self.child);
    }
    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::send_signal(child.id(), "TERM");
            let _ = child.wait();
        }
    }
    fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        self.kill();
    }
}
