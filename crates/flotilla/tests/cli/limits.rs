//! A node under clients that hold connections open and send nothing, run with few file
//! descriptors: its listeners stay bounded, and `/healthz`, the control port and the
//! admin socket keep answering. And a node warns when its limit on open files is below
//! what its listeners may hold.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use crate::support::*;

/// Open files the node may have (soft and hard): what it uses idle (about 25), its
/// HTTP cap below, the admin socket's 64, and a little more.
const NODE_FILES: u64 = 160;

/// Raises this test process's own soft limit on open files to its hard limit (it opens
/// thousands of sockets).
fn raise_own_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write one rlimit we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// Makes the node's process start with a limit of `files` open files (soft and hard).
fn with_open_files(command: &mut std::process::Command, files: u64) {
    // SAFETY: the closure runs between fork and exec and calls only setrlimit, which is
    // async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: files, rlim_max: files };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// `GET /healthz`, with every step bounded; the response or what went wrong.
fn healthz(addr: &str) -> Result<String, String> {
    let timeout = Duration::from_secs(5);
    let mut stream =
        TcpStream::connect_timeout(&addr.parse().unwrap(), timeout).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(timeout)).unwrap();
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("read: {e} (after {response:?})"))?;
    Ok(response)
}

/// One line of request and one of answer, with a bounded wait.
fn ask<S: Read + Write>(mut stream: S, line: &str) -> Result<String, String> {
    stream.write_all(line.as_bytes()).map_err(|e| format!("write: {e}"))?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).map_err(|e| format!("read: {e}"))?;
    Ok(reply)
}

#[test]
fn two_thousand_idle_connections_leave_every_listener_answering() {
    raise_own_open_files_limit();
    let ws = Workspace::new("dispatcher:\n  enabled: true\nredis:\n  url: redis://127.0.0.1:1/0\n");
    let config = std::fs::read_to_string(ws.config()).unwrap();
    let config =
        config.replace("http:\n  listen: 127.0.0.1:0\n", "http:\n  listen: 127.0.0.1:0\n  max_connections: 32\n");
    std::fs::write(ws.config(), config).unwrap();
    let node = ws.start_with(|command| with_open_files(command, NODE_FILES));

    // Connect and send nothing. A node that stops accepting leaves the rest waiting in
    // its listen queue; once that is full, a connection attempt times out, and there is
    // no point in more.
    let addr = node.http.parse().unwrap();
    let mut idle = Vec::new();
    while idle.len() < 2_000 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(stream) => idle.push(stream),
            Err(error) => {
                eprintln!("connect {}: {error}", idle.len());
                break;
            }
        }
    }
    let opened = idle.len();
    // And the admin socket (the node's own user could do that): more than its cap.
    let socket = ws.data_dir().join("flotilla.sock");
    let idle_admin: Vec<UnixStream> = (0..200).map_while(|_| UnixStream::connect(&socket).ok()).collect();

    let health = healthz(&node.http);
    assert!(
        health.as_ref().is_ok_and(|r| r.starts_with("HTTP/1.1 200") && r.ends_with("ok")),
        "/healthz after {opened} idle connections: {health:?}"
    );
    let control = TcpStream::connect(&node.control).unwrap();
    control.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let info = ask(&control, "info\n");
    assert!(info.as_ref().is_ok_and(|line| line.starts_with("I have ")), "the control port: {info:?}");
    let admin = UnixStream::connect(&socket).unwrap();
    admin.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let status = ask(&admin, "{\"op\":\"status\"}\n");
    assert!(status.as_ref().is_ok_and(|line| line.contains("\"node\":\"testnode\"")), "the admin socket: {status:?}");
    assert_eq!((opened, idle_admin.len()), (2_000, 200), "every connection was accepted");
    assert!(
        !node.startup_log.iter().any(|line| line.contains("limit on open files is below")),
        "the limits of this test fit: {:?}",
        node.startup_log
    );
    drop((idle, idle_admin));
    let (exit, log) = node.stop(libc::SIGTERM);
    assert!(exit.success(), "{log:?}");
}

#[test]
fn a_node_warns_when_it_may_open_fewer_files_than_its_listeners_may_hold() {
    let ws = Workspace::new("");
    let node = ws.start_with(|command| with_open_files(command, 256));
    let warning = node.startup_log.iter().find(|line| line.contains("limit on open files is below"));
    assert!(
        warning
            .is_some_and(|line| line.contains("\"open_files\":256") && line.contains("\"http_max_connections\":1024")),
        "{:?}",
        node.startup_log
    );
}
