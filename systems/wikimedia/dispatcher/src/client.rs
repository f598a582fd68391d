//! A client of the control protocol (SPEC §6.2): one line out, one reply line back.
//! `flotilla dispatcher-cli` and the tests speak to the dispatcher through it.

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A connection to a dispatcher's control server.
pub struct ControlClient {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    reply_timeout: Duration,
}

/// The server answered with an error line (`E…: …`), kept whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError(pub String);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl ControlClient {
    /// Connects to `host:port`, giving up after `timeout`.
    ///
    /// # Errors
    /// The server could not be reached in time.
    pub async fn connect(host: &str, port: u16, timeout: Duration) -> anyhow::Result<ControlClient> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to the dispatcher at {host}:{port} timed out"))?
            .with_context(|| format!("cannot reach the dispatcher at {host}:{port}"))?;
        Ok(ControlClient::from_stream(stream))
    }

    /// A client over a connected stream; replies are awaited for up to 60 s.
    pub fn from_stream(stream: TcpStream) -> ControlClient {
        let (read, writer) = stream.into_split();
        ControlClient { reader: BufReader::new(read), writer, reply_timeout: Duration::from_secs(60) }
    }

    /// How long [`read_line`](Self::read_line) and [`ask`](Self::ask) wait for a reply.
    #[must_use]
    pub fn with_reply_timeout(mut self, timeout: Duration) -> ControlClient {
        self.reply_timeout = timeout;
        self
    }

    /// Sends bytes as they are (a line, a document, or deliberately broken input).
    ///
    /// # Errors
    /// The connection failed.
    pub async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.writer.write_all(bytes).await.context("sending to the dispatcher")
    }

    /// The next reply line without its line end; `None` when the server closed.
    ///
    /// # Errors
    /// No reply within the reply timeout, or the connection failed.
    pub async fn read_line(&mut self) -> anyhow::Result<Option<String>> {
        let mut line = String::new();
        let read = tokio::time::timeout(self.reply_timeout, self.reader.read_line(&mut line))
            .await
            .map_err(|_| anyhow::anyhow!("the dispatcher did not answer within {:?}", self.reply_timeout))?
            .context("reading the dispatcher's answer")?;
        Ok((read > 0).then(|| line.trim_end_matches(['\n', '\r']).to_string()))
    }

    /// Sends one line; returns the reply, or the error line as [`ServerError`].
    ///
    /// # Errors
    /// The connection failed, closed, or no reply came in time.
    pub async fn ask(&mut self, line: &str) -> anyhow::Result<Result<String, ServerError>> {
        self.write(format!("{line}\n").as_bytes()).await?;
        let reply = self.read_line().await?.context("the dispatcher closed the connection")?;
        Ok(if is_error_line(&reply) { Err(ServerError(reply)) } else { Ok(reply) })
    }
}

/// `E` and three digits, then `:`.
pub fn is_error_line(line: &str) -> bool {
    let bytes = line.as_bytes();
    bytes.len() >= 5 && bytes[0] == b'E' && bytes[1..4].iter().all(u8::is_ascii_digit) && bytes[4] == b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines() {
        for (line, expect) in [
            ("E005: Invalid token or name", true),
            ("E013: Line too long", true),
            ("TOKEN: ABC", false),
            ("3", false),
            ("Eabc: x", false),
            ("E01", false),
        ] {
            assert_eq!(is_error_line(line), expect, "{line}");
        }
    }
}
