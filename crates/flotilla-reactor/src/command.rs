//! Running a shell command for the Command plugin: `sh -c`, the message on standard
//! input, output captured up to a limit, and the whole process group killed when the
//! timeout expires (so a pipeline's grandchildren do not outlive it and hold its pipes
//! open).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::effects::{CommandOutput, EffectError};

/// How much of each of stdout and stderr is kept; the rest is read and discarded so
/// the command never blocks on a full pipe.
pub const OUTPUT_LIMIT: usize = 1024 * 1024;

/// Runs `command` with `sh -c`, writing `stdin` to its standard input.
///
/// # Errors
///
/// [`EffectError::TimedOut`] when the command (including reading all its output) takes
/// longer than `timeout`, after killing its process group; [`EffectError::Failed`] when
/// it cannot be started.
pub async fn run_shell_command(command: &str, stdin: &[u8], timeout: Duration) -> Result<CommandOutput, EffectError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout can kill everything it started.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| EffectError::Failed(format!("cannot start 'sh -c {command}': {e}")))?;
    let pid = child.id();
    let input = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let work = async {
        let write = async {
            if let Some(mut pipe) = input {
                // A command that does not read its input closes the pipe early; that
                // is not an error.
                let _ = pipe.write_all(stdin).await;
            }
        };
        let ((), out, err) = tokio::join!(write, read_capped(stdout), read_capped(stderr));
        let status = child.wait().await;
        (out, err, status)
    };
    let finished = tokio::time::timeout(timeout, work).await;
    match finished {
        Ok(((stdout, out_truncated), (stderr, err_truncated), status)) => {
            let status = status.map_err(|e| EffectError::Failed(format!("cannot wait for '{command}': {e}")))?;
            use std::os::unix::process::ExitStatusExt;
            Ok(CommandOutput {
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
                exit_code: status.code(),
                signal: status.signal(),
                truncated: out_truncated || err_truncated,
            })
        }
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: kill(2) with a negative pid signals the process group we
                // created for this child; it has no memory-safety preconditions.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
            let _ = child.kill().await;
            Err(EffectError::TimedOut(timeout))
        }
    }
}

/// Reads a pipe to its end, keeping at most [`OUTPUT_LIMIT`] bytes.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>) -> (Vec<u8>, bool) {
    let Some(mut pipe) = pipe else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut truncated = false;
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
    (kept, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_output_exit_code_and_reads_stdin() {
        let out = run_shell_command("cat; echo oops >&2; exit 3", b"hello", Duration::from_secs(10)).await.unwrap();
        assert_eq!(out.stdout, "hello");
        assert_eq!(out.stderr, "oops\n");
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.signal, None);
        assert!(!out.truncated);
    }

    #[tokio::test]
    async fn a_command_that_ignores_stdin_is_fine() {
        let big = vec![b'x'; 1 << 20];
        let out = run_shell_command("echo done", &big, Duration::from_secs(10)).await.unwrap();
        assert_eq!(out.stdout, "done\n");
        assert_eq!(out.exit_code, Some(0));
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let started = std::time::Instant::now();
        // The background sleep keeps stdout open: only killing the group ends it.
        let err =
            run_shell_command("sleep 30 & sleep 30; echo never", b"", Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(err, EffectError::TimedOut(Duration::from_millis(300)));
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        assert_eq!(err.to_string(), "timed out after 0.300s");
    }

    #[tokio::test]
    async fn output_is_capped() {
        let out = run_shell_command("head -c 1100000 /dev/zero", b"", Duration::from_secs(10)).await.unwrap();
        assert_eq!(out.stdout.len(), OUTPUT_LIMIT);
        assert!(out.truncated);
    }

    #[tokio::test]
    async fn a_signal_is_reported() {
        let out = run_shell_command("kill -TERM $$", b"", Duration::from_secs(10)).await.unwrap();
        assert_eq!(out.exit_code, None);
        assert_eq!(out.signal, Some(libc::SIGTERM));
    }
}
