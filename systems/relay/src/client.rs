//! The client `flotilla review` uses: one HTTP/1.1 request per call to the node's
//! `/api/v1/groups…` routes, over a plain TCP connection to `http.listen` (loopback by
//! default), with the admin token as Bearer. Small on purpose: the binary needs no
//! HTTP client library for four JSON calls.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The longest answer read.
const MAX_ANSWER: u64 = 16 << 20;
/// How long one call may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the node's HTTP server at {addr} (is `flotilla run` running?): {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("talking to the node failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the node did not answer within {TIMEOUT:?}")]
    TimedOut,
    #[error("the node's answer is not HTTP with JSON: {0}")]
    Malformed(String),
    /// The node answered with an error status and its `error` text.
    #[error("{message} (HTTP {status})")]
    Refused { status: u16, message: String },
}

/// A client of one node.
pub struct Client {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Client {
    /// `method path` with an optional JSON body; the answer's JSON on a 2xx.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        tokio::time::timeout(TIMEOUT, self.call_inner(method, path, body)).await.map_err(|_| ClientError::TimedOut)?
    }

    async fn call_inner(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|source| ClientError::Connect { addr: self.addr, source })?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
        parse_answer(&answer)
    }
}

/// Status and JSON body of an HTTP/1.1 answer (`Content-Length` or chunked).
fn parse_answer(answer: &[u8]) -> Result<Value, ClientError> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| ClientError::Malformed("no header end".into()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Malformed(head.lines().next().unwrap_or_default().to_string()))?;
    let chunked =
        head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    let json: Value = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).map_err(|e| ClientError::Malformed(format!("{e}: {body}")))?
    };
    if (200..300).contains(&status) {
        Ok(json)
    } else {
        let message = json["error"].as_str().map_or_else(|| body.clone(), str::to_string);
        Err(ClientError::Refused { status, message })
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{\"a\": 1}\n";
        assert_eq!(parse_answer(ok).unwrap()["a"], 1);
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"b\"\r\n3\r\n:2}\r\n0\r\n\r\n";
        assert_eq!(parse_answer(chunked).unwrap()["b"], 2);
        let refused = b"HTTP/1.1 409 Conflict\r\n\r\n{\"error\":\"report X was already approved\"}";
        assert_eq!(parse_answer(refused).unwrap_err().to_string(), "report X was already approved (HTTP 409)");
        assert!(matches!(parse_answer(b"garbage"), Err(ClientError::Malformed(_))));
    }
}
