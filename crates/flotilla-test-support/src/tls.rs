//! TLS peers for tests: a self-signed CA made with `openssl` ([`TestCa`]), the server
//! certificates it signs, and a throwaway Postgres cluster that accepts TLS only
//! ([`PgTlsServer`]). A TLS redis-server is [`crate::RedisServer::start_tls`].
//!
//! Certificates name `localhost` and `127.0.0.1` (servers listen on loopback only) and
//! last two days. Keys are P-256: quick to make, and what rustls and both servers take.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A CA for one test: `ca.pem` (what a client trusts) and its key, in a directory.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub cert: PathBuf,
    key: PathBuf,
}

/// A server certificate, its key and the CA file that signed it.
#[derive(Clone)]
pub struct ServerCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Runs `command`, panicking with its output unless it succeeds.
fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn openssl() -> Command {
    // `scripts/peers ensure openssl` installs it.
    Command::new("openssl")
}

impl TestCa {
    /// Makes a CA called `name` in `dir` (`<name>-ca.pem`, `<name>-ca.key`).
    pub fn new(dir: &Path, name: &str) -> TestCa {
        std::fs::create_dir_all(dir).unwrap();
        let cert = dir.join(format!("{name}-ca.pem"));
        let key = dir.join(format!("{name}-ca.key"));
        run(openssl()
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "2", "-subj", &format!("/CN=flotilla test CA {name}"), "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        TestCa { cert, key }
    }

    /// A certificate for `localhost` and `127.0.0.1` signed by this CA, in `dir`
    /// (`<name>.pem`, `<name>.key`).
    pub fn server_certificate(&self, dir: &Path, name: &str) -> ServerCertificate {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        let request = dir.join(format!("{name}.csr"));
        let extensions = dir.join(format!("{name}.ext"));
        run(openssl()
            .args(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&request));
        std::fs::write(
            &extensions,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(openssl()
            .args(["x509", "-req", "-days", "2", "-set_serial", "1", "-in"])
            .arg(&request)
            .arg("-CA")
            .arg(&self.cert)
            .arg("-CAkey")
            .arg(&self.key)
            .arg("-extfile")
            .arg(&extensions)
            .arg("-out")
            .arg(&cert));
        ServerCertificate { cert, key, ca: self.cert.clone() }
    }
}

/// A throwaway Postgres cluster on a free loopback port with `ssl=on` that accepts only
/// TLS connections over TCP (`hostssl … trust`, no `host` line), stopped when dropped.
///
/// Run as root, the cluster belongs to the `postgres` user (initdb refuses root), so its
/// directory is handed to that user and the server is run with `runuser`.
pub struct PgTlsServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    pub port: u16,
}

impl PgTlsServer {
    /// Makes and starts a cluster serving a certificate `ca` signed; returns once it
    /// accepts connections (`pg_ctl -w`, bounded by its `-t`).
    pub fn start(ca: &TestCa) -> PgTlsServer {
        let dir = tempfile::tempdir().unwrap();
        let certificate = ca.server_certificate(dir.path(), "postgres");
        let as_postgres = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        if as_postgres {
            let id = |flag: &str| -> u32 {
                let out = run(Command::new("id").args([flag, "postgres"]));
                String::from_utf8_lossy(&out.stdout).trim().parse().expect("a numeric id")
            };
            let (uid, gid) = (id("-u"), id("-g"));
            for path in [dir.path(), &certificate.cert, &certificate.key] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
            }
        }
        // Postgres refuses a key others may read.
        std::fs::set_permissions(&certificate.key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let server = PgTlsServer { bin: postgres_bin(), as_postgres, port: crate::free_port(), dir };
        let data = server.dir.path().join("data");
        run(server.command("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "-N",
        ]));
        std::fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n").unwrap();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off",
            server.port,
            server.dir.path().display(),
            certificate.cert.display(),
            certificate.key.display()
        );
        let log = server.dir.path().join("postgres.log");
        run(server
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "30", "-o", &options, "start"]));
        server
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres?<query>` (`sslmode=…&sslrootcert=…`).
    pub fn url(&self, query: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?{query}", self.port)
    }

    /// A Postgres program, run as the `postgres` user when this process is root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PgTlsServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ =
            self.command("pg_ctl").arg("-D").arg(&data).args(["-m", "immediate", "-w", "-t", "30", "stop"]).output();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` (Debian's layout), else the `PATH`.
fn postgres_bin() -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
            .filter(|(_, bin)| bin.join("initdb").exists())
            .max_by_key(|(version, _)| *version)
            .map(|(_, bin)| bin)
    });
    newest.unwrap_or_default()
}
