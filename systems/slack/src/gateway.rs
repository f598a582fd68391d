//! The gateway: the HTTP endpoint Slack posts events and slash commands to (one per
//! `slack` connector, at its `path`), around the pure [`signature`](crate::signature) and
//! [`event`](crate::event) cores.
//!
//! In order, and answering as soon as one step refuses: the method (POST, else 405 with
//! `Allow`), the content type (JSON for events, form-encoded for slash commands, else
//! 415), the body size (`max_body`, else 413, read no further), the signature over the
//! raw bytes (else 401), the payload (else 400, or 403 for another app or workspace),
//! then `url_verification`'s challenge, an ignored type (200), or: claim the
//! `event_id` in the store, publish to the queue, 200. A retry of an event already
//! claimed is answered 200 and not queued again. Nothing is queued before the signature
//! has been checked.
//!
//! Slack wants an answer within 3 s. The claim and the publish run on a task of their
//! own with a deadline ([`ACK_DEADLINE`]): past it the gateway answers 503 while the
//! task carries on; if it then fails it releases the claim, so Slack's next retry is
//! queued; if it succeeds, the retry is a duplicate. Either way nothing accepted is lost
//! and nothing is queued twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flotilla_bus::Bus;
use flotilla_core::{Message, Ulid};
use flotilla_service::http::ApiError;
use http_body_util::BodyExt;

use crate::event::{Expected, Inbound, ParseError, Queued};
use crate::persist::SeenEvents;
use crate::signature::Verifier;

/// How long the gateway waits for the store and the bus before answering 503 (Slack
/// gives up at 3 s).
pub const ACK_DEADLINE: Duration = Duration::from_millis(2500);

/// What one gateway counts, for status.
#[derive(Debug, Default)]
pub struct GatewayCounters {
    pub queued: AtomicU64,
    pub duplicates: AtomicU64,
    pub ignored: AtomicU64,
    pub unauthorized: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
}

impl GatewayCounters {
    pub fn snapshot(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "queued": get(&self.queued), "duplicates": get(&self.duplicates), "ignored": get(&self.ignored),
            "unauthorized": get(&self.unauthorized), "rejected": get(&self.rejected), "failed": get(&self.failed),
        })
    }
}

/// Where accepted events go: claimed in the store, then published. Shared by the
/// HTTP gateway and Socket Mode ([`crate::socket`]).
pub struct Intake {
    pub connector: String,
    pub hostname: String,
    pub bus: Arc<dyn Bus>,
    pub seen: SeenEvents,
    pub counters: Arc<GatewayCounters>,
}

/// One connector's gateway.
pub struct Gateway {
    pub verifier: Verifier,
    pub expected: Expected,
    pub max_body: usize,
    pub intake: Arc<Intake>,
}

impl Gateway {
    /// The route, to merge into the node's router.
    pub fn router(self: Arc<Self>, path: &str) -> axum::Router {
        axum::Router::new().route(path, axum::routing::any(handle)).with_state(self)
    }
}

fn now() -> (i64, u64) {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_secs() as i64, since.as_millis() as u64)
}

enum Kind {
    Events,
    Command,
}

async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        let mut response = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "use POST").into_response();
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let kind = match content_type(&parts.headers) {
        Some("application/json") => Kind::Events,
        Some("application/x-www-form-urlencoded") => Kind::Command,
        _ => {
            gateway.intake.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type application/json (events) or application/x-www-form-urlencoded (slash commands)",
            )
            .into_response();
        }
    };
    let body = match read_capped(body, gateway.max_body).await {
        Ok(body) => body,
        Err(status) => {
            gateway.intake.counters.rejected.fetch_add(1, Ordering::Relaxed);
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the body is larger than {} bytes", gateway.max_body)
            } else {
                "the body could not be read".to_string()
            };
            return ApiError::new(status, message).into_response();
        }
    };
    let (now_secs, now_ms) = now();
    let header_bytes = |name: &str| parts.headers.get(name).map(HeaderValue::as_bytes);
    if let Err(refused) = gateway.verifier.verify(
        header_bytes("x-slack-request-timestamp"),
        header_bytes("x-slack-signature"),
        &body,
        now_secs,
    ) {
        gateway.intake.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        tracing::info!(connector = %gateway.intake.connector, reason = %refused, "Refused a Slack request: bad signature.");
        return ApiError::unauthorized(refused.to_string()).into_response();
    }
    let request_id = Ulid::generate(now_ms).to_text();
    let parsed = match kind {
        Kind::Events => crate::event::parse_events(&body, &gateway.expected, now_ms, &request_id),
        Kind::Command => crate::event::parse_command(&body, &gateway.expected, now_ms, &request_id),
    };
    match parsed {
        Err(error) => refuse(&gateway, &error),
        Ok(Inbound::Challenge(challenge)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], challenge).into_response()
        }
        Ok(Inbound::Ignored { kind, event_id }) => {
            gateway.intake.counters.ignored.fetch_add(1, Ordering::Relaxed);
            tracing::info!(connector = %gateway.intake.connector, r#type = %kind, event_id = event_id.as_deref().unwrap_or(""),
                "Slack sent an event type the gateway does not queue; answered 200 so it is not retried.");
            StatusCode::OK.into_response()
        }
        Ok(Inbound::Queue(queued)) => {
            let retry = parts.headers.get("x-slack-retry-num").and_then(|v| v.to_str().ok()).map(str::to_string);
            accept(gateway.intake.clone(), queued, retry).await
        }
    }
}

fn refuse(gateway: &Gateway, error: &ParseError) -> Response {
    gateway.intake.counters.rejected.fetch_add(1, Ordering::Relaxed);
    tracing::info!(connector = %gateway.intake.connector, %error, "Refused a signed Slack request.");
    let status = if error.is_origin() { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
    ApiError::new(status, error.to_string()).into_response()
}

/// Claims, publishes, answers (see the module docs for the deadline).
async fn accept(intake: Arc<Intake>, queued: Queued, retry: Option<String>) -> Response {
    let work = tokio::spawn(claim_and_publish(intake.clone(), queued, retry));
    match tokio::time::timeout(ACK_DEADLINE, work).await {
        Ok(Ok(Ok(Accepted::Queued))) => StatusCode::OK.into_response(),
        Ok(Ok(Ok(Accepted::Duplicate))) => StatusCode::OK.into_response(),
        Ok(Ok(Err(message))) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message).into_response(),
        Ok(Err(_panicked)) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the event could not be queued").into_response()
        }
        Err(_late) => {
            tracing::warn!(connector = %intake.connector, deadline = ?ACK_DEADLINE,
                "Queueing a Slack event took longer than the deadline; answered 503 (it is still being queued).");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the event is taking long to queue; retry").into_response()
        }
    }
}

/// What became of an event.
pub enum Accepted {
    Queued,
    Duplicate,
}

/// Claims the event's id and publishes it (see the module docs).
///
/// # Errors
/// The store or the bus failed (the claim is then released), in words for the sender.
pub async fn claim_and_publish(intake: Arc<Intake>, queued: Queued, retry: Option<String>) -> Result<Accepted, String> {
    let key = queued.dedupe_key.clone().filter(|k| !k.is_empty());
    if let Some(key) = &key {
        match intake.seen.claim(key).await {
            Ok(true) => {}
            Ok(false) => {
                intake.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(connector = %intake.connector, event_id = %key, retry = retry.as_deref().unwrap_or(""),
                    "A Slack event already queued came again (a retry); not queued twice.");
                return Ok(Accepted::Duplicate);
            }
            Err(error) => {
                intake.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(connector = %intake.connector, error = %error.chain(), "Could not record a Slack event id; answered 500 (Slack retries).");
                return Err("the event could not be recorded; retry".into());
            }
        }
    }
    let mut message = match Message::from_map(queued.fields) {
        Ok(message) => message,
        Err(error) => return Err(format!("the event could not be made a message: {error}")),
    };
    message.set(flotilla_core::message::KEY, intake.connector.as_str());
    message.set(flotilla_core::message::PLUGIN, "slack");
    message.stamp(&intake.hostname, SystemTime::now());
    match intake.bus.publish(queued.queue, vec![Bytes::from(message.to_json())]).await {
        Ok(_) => {
            intake.counters.queued.fetch_add(1, Ordering::Relaxed);
            Ok(Accepted::Queued)
        }
        Err(error) => {
            intake.counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(connector = %intake.connector, queue = queued.queue, %error,
                "Could not queue a Slack event; answered 500 (Slack retries).");
            if let Some(key) = &key
                && let Err(error) = intake.seen.release(key).await
            {
                tracing::error!(connector = %intake.connector, event_id = %key, error = %error.chain(),
                    "Could not forget a Slack event id that was not queued: Slack's retry of it will be dropped.");
            }
            Err("the event could not be queued; retry".into())
        }
    }
}

/// The media type, without parameters, lower-cased.
fn content_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next()?.trim();
    ["application/json", "application/x-www-form-urlencoded"]
        .into_iter()
        .find(|known| media.eq_ignore_ascii_case(known))
}

/// Reads the body up to `max` bytes: 413 as soon as it is longer (a `Content-Length`
/// that says so is refused before reading anything).
async fn read_capped(body: Body, max: usize) -> Result<Bytes, StatusCode> {
    let limited = http_body_util::Limited::new(body, max);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(StatusCode::PAYLOAD_TOO_LARGE),
        Err(_) => Err(StatusCode::BAD_REQUEST),
    }
}
