//! Running the real binary: a temporary directory with a config, a node process whose
//! readiness is read from its JSON log (no sleeping), and helpers to run commands.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_flotilla")
}

/// A directory holding `flotilla.yaml` and the node's data.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    /// `config` is appended to a node section that keeps everything in the directory
    /// and lets the HTTP and control servers pick free ports (unless `config` has its
    /// own `control:` section), so tests can run nodes side by side.
    pub fn new(config: &str) -> Workspace {
        Workspace::named("testnode", config)
    }

    /// As [`Workspace::new`], for a node named `name` (nodes of one fleet).
    pub fn named(name: &str, config: &str) -> Workspace {
        let dir = tempfile::Builder::new().prefix("flt").tempdir_in("/tmp").unwrap();
        let control = if config.contains("\ncontrol:") || config.starts_with("control:") {
            ""
        } else {
            "control:\n  listen: 127.0.0.1:0\n"
        };
        let text = format!(
            "node:\n  name: {name}\n  data_dir: {}/data\nhttp:\n  listen: 127.0.0.1:0\n{control}{config}",
            dir.path().display()
        );
        std::fs::write(dir.path().join("flotilla.yaml"), text).unwrap();
        Workspace { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("flotilla.yaml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs `flotilla ARGS -c <config>` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(binary());
        command.args(args).arg("-c").arg(self.config()).env("FLOTILLA_LOG", "warn");
        command.output().unwrap()
    }

    /// Starts `flotilla run` and waits until it says it is ready.
    pub fn start(&self) -> NodeProcess {
        NodeProcess::start(&self.config())
    }

    /// [`Workspace::start`], with `prepare` setting up the process first (environment,
    /// resource limits).
    pub fn start_with(&self, prepare: impl FnOnce(&mut Command)) -> NodeProcess {
        NodeProcess::start_with(&self.config(), prepare)
    }
}

/// A running `flotilla run`.
pub struct NodeProcess {
    pub child: Child,
    pub http: String,
    /// The dispatcher's control address (`off` when it does not run).
    pub control: String,
    /// Log lines (JSON) the node printed before it was ready.
    pub startup_log: Vec<String>,
    /// Log lines (JSON) the node printed after it was ready. Kept so the thread reading
    /// the node's stderr keeps draining it (a full pipe would block the node).
    pub log: mpsc::Receiver<String>,
}

impl NodeProcess {
    pub fn start(config: &Path) -> NodeProcess {
        NodeProcess::start_with(config, |_| {})
    }

    /// Starts `flotilla run` with extra environment variables.
    pub fn start_with_env(config: &Path, env: &[(&str, &std::ffi::OsStr)]) -> NodeProcess {
        NodeProcess::start_with(config, |command| {
            command.envs(env.iter().copied());
        })
    }

    /// Starts `flotilla run` under this umask (instead of the test's own).
    pub fn start_with_umask(config: &Path, umask: libc::mode_t) -> NodeProcess {
        use std::os::unix::process::CommandExt;
        NodeProcess::start_with(config, |command| {
            // SAFETY: umask(2) is async-signal-safe and touches no memory.
            unsafe {
                command.pre_exec(move || {
                    libc::umask(umask);
                    Ok(())
                });
            }
        })
    }

    /// Starts `flotilla run`, letting `prepare` adjust the command first (its
    /// environment, its limits), and waits until it says it is ready.
    pub fn start_with(config: &Path, prepare: impl FnOnce(&mut Command)) -> NodeProcess {
        NodeProcess::start_program(Path::new(binary()), config, prepare)
    }

    /// [`NodeProcess::start_with`] for another copy of the binary (one a package installed).
    pub fn start_program(program: &Path, config: &Path, prepare: impl FnOnce(&mut Command)) -> NodeProcess {
        let mut command = Command::new(program);
        command
            .args(["run", "-c"])
            .arg(config)
            .env("FLOTILLA_LOG_FORMAT", "json")
            .env("FLOTILLA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        prepare(&mut command);
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if line.contains("Flotilla node is ready.") {
                        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
                        let http = value["fields"]["http"].as_str().unwrap().to_string();
                        let listeners = value["fields"]["listeners"].as_str().unwrap_or_default();
                        let control =
                            listeners.split(' ').find_map(|l| l.strip_prefix("control=")).unwrap_or("off").to_string();
                        return NodeProcess { child, http, control, startup_log: seen, log: rx };
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the node did not become ready; it said:\n{}", seen.join("\n"));
                }
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal and waits for the exit status.
    pub fn signal_and_wait(self, signal: i32) -> std::process::ExitStatus {
        self.stop(signal).0
    }

    /// Sends a signal, waits for the exit, and returns the status and the log lines
    /// printed since the node was ready.
    pub fn stop(mut self, signal: i32) -> (std::process::ExitStatus, Vec<String>) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.pid(), signal) };
        let status = self.child.wait().unwrap();
        let lines = self.log.try_iter().collect();
        (status, lines)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on loopback; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    // Small bodies only: undo chunked encoding if present.
    let body = if response.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(&body) } else { body };
    (status, body)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&tail[..size]);
        rest = &tail[size + 2..];
    }
    out
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The first `count` lines (raw bytes, without the line break) a child prints on its
/// standard output, waiting at most `within`; then the child is killed.
pub fn first_stdout_lines(mut child: Child, count: usize, within: Duration) -> Vec<Vec<u8>> {
    let out = child.stdout.take().expect("the child's stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(out);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    line.pop_if(|b| *b == b'\n');
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + within;
    let mut lines = Vec::new();
    while lines.len() < count {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines.len(), count, "the child printed {} of {count} lines in {within:?}: {lines:?}", lines.len());
    lines
}
