//! Socket Mode: for apps that cannot take Slack's HTTP requests (behind NAT), the
//! connector opens a WebSocket to Slack instead (`app_token`, `xapp-…`) and receives
//! the same events in envelopes.
//!
//! The protocol (api.slack.com/apis/socket-mode): `apps.connections.open` with the app
//! token answers a `wss://` URL; on it Slack sends `hello`, then envelopes
//! `{"envelope_id", "type": "events_api" | "slash_commands" | …, "payload", "retry_attempt"}`,
//! each of which must be acknowledged by sending `{"envelope_id": …}` back, and
//! `disconnect` when it wants the client to reconnect (connections are refreshed every
//! few hours). An envelope is acknowledged only **after** its event is durable on the
//! bus (or known to be a duplicate, or known to be unusable): an envelope that is not
//! acknowledged is delivered again by Slack, so a crash between the two loses nothing.
//! Events go through the same parsing, de-duplication and queues as the HTTP gateway
//! ([`crate::gateway::claim_and_publish`]).
//!
//! [`read_envelope`] is the pure part; [`run`] the shell: connect, read, acknowledge,
//! and reconnect on `disconnect` (at once) and on any failure (with backoff).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_util::sync::CancellationToken;

use crate::event::{Expected, Inbound};
use crate::gateway::{Accepted, Intake, claim_and_publish};
use crate::webapi::WebApi;

/// What Slack sent on the socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    Hello,
    /// Reconnect (Slack's reason: `refresh_requested`, `warning`, `link_disabled`).
    Disconnect {
        reason: String,
    },
    /// An Events API payload (the same JSON the HTTP gateway receives).
    Events {
        envelope_id: String,
        payload: String,
        retry_attempt: u64,
    },
    /// A slash command's fields.
    Command {
        envelope_id: String,
        fields: Map<String, Value>,
    },
    /// Interactivity and anything newer: acknowledged, not queued.
    Other {
        envelope_id: Option<String>,
        kind: String,
    },
}

/// Reads one text frame.
///
/// # Errors
/// Not JSON, or an envelope without what its type needs.
pub fn read_envelope(text: &str) -> Result<Envelope, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("a Socket Mode frame is not JSON: {e}"))?;
    let field = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let kind = field("type").ok_or("a Socket Mode frame without a 'type'")?;
    let envelope_id = field("envelope_id");
    let need_id = || envelope_id.clone().ok_or_else(|| format!("a '{kind}' envelope without an 'envelope_id'"));
    match kind.as_str() {
        "hello" => Ok(Envelope::Hello),
        "disconnect" => Ok(Envelope::Disconnect { reason: field("reason").unwrap_or_default() }),
        "events_api" => {
            let envelope_id = need_id()?;
            let payload = value
                .get("payload")
                .filter(|p| p.is_object())
                .ok_or("an events_api envelope without a payload object")?;
            let retry_attempt = value.get("retry_attempt").and_then(Value::as_u64).unwrap_or(0);
            Ok(Envelope::Events { envelope_id, payload: payload.to_string(), retry_attempt })
        }
        "slash_commands" => {
            let envelope_id = need_id()?;
            let fields = value
                .get("payload")
                .and_then(Value::as_object)
                .cloned()
                .ok_or("a slash_commands envelope without a payload object")?;
            Ok(Envelope::Command { envelope_id, fields })
        }
        _ => Ok(Envelope::Other { envelope_id, kind }),
    }
}

/// The acknowledgement of an envelope.
pub fn ack(envelope_id: &str) -> String {
    serde_json::json!({ "envelope_id": envelope_id }).to_string()
}

/// Socket Mode's settings.
pub struct SocketMode {
    /// A client of the Web API with the app-level token (for `apps.connections.open`).
    pub api: WebApi,
    pub expected: Expected,
    pub intake: Arc<Intake>,
    /// TLS for `wss://` URLs.
    pub tls: Arc<rustls::ClientConfig>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Keeps a Socket Mode connection until `shutdown`; `on_connect` is called with the
/// number of connections made so far (for status).
///
/// # Errors
/// Never returns an error: every failure is logged and followed by a reconnect.
pub async fn run(mode: SocketMode, shutdown: CancellationToken, on_connect: impl Fn(u64) + Send) -> anyhow::Result<()> {
    let mut backoff = flotilla_core::Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    let mut connections = 0u64;
    loop {
        let session = async {
            let url = open(&mode.api).await?;
            let socket = connect(&url, &mode.tls).await?;
            connections += 1;
            on_connect(connections);
            serve(&mode, socket, &mut backoff).await
        };
        let ended = tokio::select! {
            ended = session => ended,
            () = shutdown.cancelled() => return Ok(()),
        };
        let wait = match ended {
            Ok(reason) => {
                tracing::info!(connector = %mode.intake.connector, %reason, "Slack asked the Socket Mode connection to reconnect.");
                Duration::ZERO
            }
            Err(error) => {
                let wait = backoff.next_delay();
                tracing::warn!(connector = %mode.intake.connector, error = %format!("{error:#}"), ?wait,
                    "The Socket Mode connection failed; reconnecting.");
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// `apps.connections.open` → the socket's URL.
async fn open(api: &WebApi) -> anyhow::Result<String> {
    let answer = api.call("apps.connections.open", &Value::Object(Map::new())).await?;
    answer
        .get("url")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("apps.connections.open answered without a 'url'"))
}

type Socket = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

async fn connect(url: &str, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<Socket> {
    let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("the socket URL is not a URL: {e}"))?;
    let host = parsed.host_str().ok_or_else(|| anyhow::anyhow!("the socket URL has no host"))?.to_string();
    let secure = match parsed.scheme() {
        "wss" => true,
        "ws" => false,
        other => anyhow::bail!("the socket URL's scheme is '{other}', not wss"),
    };
    let port = parsed.port().unwrap_or(if secure { 443 } else { 80 });
    let tcp = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {host}:{port} timed out"))??;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Io> = if secure {
        let name = rustls::pki_types::ServerName::try_from(host.clone())?;
        Box::new(tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await?)
    } else {
        Box::new(tcp)
    };
    let (socket, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::client_async(url, stream))
        .await
        .map_err(|_| anyhow::anyhow!("the WebSocket handshake timed out"))??;
    Ok(socket)
}

/// Reads envelopes until Slack says `disconnect` (then `Ok(reason)`) or the connection
/// fails.
async fn serve(mode: &SocketMode, mut socket: Socket, backoff: &mut flotilla_core::Backoff) -> anyhow::Result<String> {
    // Slack pings every few seconds; silence this long means the link is gone.
    const SILENCE: Duration = Duration::from_secs(60);
    loop {
        let frame = match tokio::time::timeout(SILENCE, socket.next()).await {
            Err(_) => anyhow::bail!("nothing from Slack for {SILENCE:?}"),
            Ok(None) => anyhow::bail!("the connection closed"),
            Ok(Some(frame)) => frame?,
        };
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Close(close) => anyhow::bail!("Slack closed the connection ({close:?})"),
            // Pings are answered by tungstenite on the next read or write.
            _ => continue,
        };
        let envelope = match read_envelope(text.as_str()) {
            Ok(envelope) => envelope,
            Err(problem) => {
                tracing::warn!(connector = %mode.intake.connector, %problem, "Skipped a Socket Mode frame.");
                continue;
            }
        };
        let acknowledge = match envelope {
            Envelope::Hello => {
                backoff.reset();
                None
            }
            Envelope::Disconnect { reason } => {
                let _ = socket.close(None).await;
                return Ok(reason);
            }
            Envelope::Events { envelope_id, payload, retry_attempt } => {
                let (_, now_ms) = now();
                let request_id = flotilla_core::Ulid::generate(now_ms).to_text();
                let parsed = crate::event::parse_events(payload.as_bytes(), &mode.expected, now_ms, &request_id);
                let retry = (retry_attempt > 0).then(|| retry_attempt.to_string());
                take(mode, parsed, retry).await.then_some(envelope_id)
            }
            Envelope::Command { envelope_id, fields } => {
                let (_, now_ms) = now();
                let request_id = flotilla_core::Ulid::generate(now_ms).to_text();
                let parsed = crate::event::command_from_fields(fields, &mode.expected, now_ms, &request_id);
                take(mode, parsed, None).await.then_some(envelope_id)
            }
            Envelope::Other { envelope_id, kind } => {
                tracing::info!(connector = %mode.intake.connector, r#type = %kind, "Socket Mode sent an envelope type that is not queued; acknowledged.");
                envelope_id
            }
        };
        if let Some(envelope_id) = acknowledge {
            socket.send(Frame::text(ack(&envelope_id))).await?;
        }
    }
}

/// Queues what an envelope holds; whether to acknowledge it (not when queueing failed:
/// Slack then delivers it again).
async fn take(mode: &SocketMode, parsed: Result<Inbound, crate::event::ParseError>, retry: Option<String>) -> bool {
    match parsed {
        Ok(Inbound::Queue(queued)) => match claim_and_publish(mode.intake.clone(), queued, retry).await {
            Ok(Accepted::Queued | Accepted::Duplicate) => true,
            Err(problem) => {
                tracing::warn!(connector = %mode.intake.connector, %problem, "A Socket Mode event could not be queued; not acknowledged, Slack sends it again.");
                false
            }
        },
        Ok(Inbound::Ignored { kind, .. }) => {
            tracing::info!(connector = %mode.intake.connector, r#type = %kind, "Socket Mode sent an event type the gateway does not queue.");
            true
        }
        Ok(Inbound::Challenge(_)) => true,
        Err(error) => {
            // Sending it again cannot make it better.
            tracing::warn!(connector = %mode.intake.connector, %error, "Refused a Socket Mode event.");
            true
        }
    }
}

fn now() -> (i64, u64) {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_secs() as i64, since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_read() {
        let table: Vec<(&str, Result<Envelope, &str>)> = vec![
            (r#"{"type":"hello","num_connections":1}"#, Ok(Envelope::Hello)),
            (
                r#"{"type":"disconnect","reason":"refresh_requested"}"#,
                Ok(Envelope::Disconnect { reason: "refresh_requested".into() }),
            ),
            (
                r#"{"envelope_id":"e1","type":"events_api","payload":{"type":"event_callback"},"retry_attempt":2}"#,
                Ok(Envelope::Events {
                    envelope_id: "e1".into(),
                    payload: r#"{"type":"event_callback"}"#.into(),
                    retry_attempt: 2,
                }),
            ),
            (
                r#"{"envelope_id":"e2","type":"slash_commands","payload":{"command":"/x"}}"#,
                Ok(Envelope::Command {
                    envelope_id: "e2".into(),
                    fields: serde_json::json!({"command": "/x"}).as_object().cloned().unwrap(),
                }),
            ),
            (
                r#"{"envelope_id":"e3","type":"interactive","payload":{}}"#,
                Ok(Envelope::Other { envelope_id: Some("e3".into()), kind: "interactive".into() }),
            ),
            ("nope", Err("a Socket Mode frame is not JSON: expected ident at line 1 column 2")),
            (r#"{"envelope_id":"e"}"#, Err("a Socket Mode frame without a 'type'")),
            (r#"{"type":"events_api","payload":{}}"#, Err("a 'events_api' envelope without an 'envelope_id'")),
            (
                r#"{"type":"events_api","envelope_id":"e","payload":"x"}"#,
                Err("an events_api envelope without a payload object"),
            ),
        ];
        for (text, expect) in table {
            assert_eq!(read_envelope(text), expect.map_err(str::to_string), "{text}");
        }
        assert_eq!(ack("e1"), r#"{"envelope_id":"e1"}"#);
    }
}
