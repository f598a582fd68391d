//! HTTP pieces the node and its services share: the JSON error answer, the Bearer
//! token check, and a server-sent event stream of a bus queue.

use std::collections::VecDeque;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use flotilla_bus::{DeliveryId, Reader};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

/// An error answer: a status and a message safe to show, sent as `{"error": "…"}`. A
/// 401 also carries `WWW-Authenticate: Bearer`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The request's Bearer token, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether the request carries `expected` as its Bearer token (compared in constant time).
pub fn bearer_is(headers: &HeaderMap, expected: &str) -> bool {
    bearer(headers).is_some_and(|given| expected.as_bytes().ct_eq(given.as_bytes()).into())
}

/// The `Last-Event-ID` a reconnecting event-stream client sends.
pub fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok())
}

/// How often an event stream with nothing to say sends a comment, so that proxies and
/// the node's own idle timeout (`http.idle_timeout`, which must be longer) see it alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Which messages of a queue an event stream shows.
pub type EventFilter = Box<dyn Fn(&[u8]) -> bool + Send>;

/// Where an event stream is in its queue.
struct Tail {
    reader: Box<dyn Reader>,
    /// Skip events up to this sequence number (a `Last-Event-ID`).
    after: Option<u64>,
    filter: Option<EventFilter>,
    ready: VecDeque<Event>,
    shutdown: CancellationToken,
}

/// A server-sent event stream of a queue's messages, read with `reader` (which does not
/// consume): each message is one event whose id is its sequence number, so a client
/// resumes with `Last-Event-ID` (pass it as `after`; on a bus that does not number
/// messages, Redis, the id is the entry id and the stream starts where the reader does).
/// The stream ends when `shutdown` is cancelled.
pub fn event_stream(
    reader: Box<dyn Reader>,
    after: Option<u64>,
    filter: Option<EventFilter>,
    shutdown: CancellationToken,
) -> Response {
    let tail = Tail { reader, after, filter, ready: VecDeque::new(), shutdown };
    let stream = futures_util::stream::unfold(tail, |mut tail| async move {
        loop {
            if let Some(event) = tail.ready.pop_front() {
                return Some((Ok::<Event, std::convert::Infallible>(event), tail));
            }
            let fetched = tokio::select! {
                fetched = tail.reader.fetch(256, Duration::from_secs(5)) => fetched,
                _ = tail.shutdown.cancelled() => return None,
            };
            let deliveries = match fetched {
                Ok(deliveries) => deliveries,
                Err(error) => {
                    tracing::warn!(%error, "An event stream could not read its queue; ending it.");
                    return None;
                }
            };
            for delivery in deliveries {
                // The event id is the sequence number where the bus numbers messages
                // (embedded), else the backend's id (a Redis entry id, which a
                // `Last-Event-ID` cannot skip by: such a stream resumes where asked).
                let id = match &delivery.id {
                    DeliveryId::Seq(seq) => {
                        if tail.after.is_some_and(|after| *seq <= after) {
                            continue;
                        }
                        seq.to_string()
                    }
                    DeliveryId::Text(text) => text.to_string(),
                };
                if tail.filter.as_ref().is_some_and(|keep| !keep(&delivery.payload)) {
                    continue;
                }
                let text = String::from_utf8_lossy(&delivery.payload);
                tail.ready.push_back(Event::default().id(id).data(text));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response()
}
