//! The HTTP server (SPEC §11): `/healthz`, `/metrics`, `/api/v1/status`, and
//! `/api/v1/events?where=CONDITION` (server-sent events of a queue's messages, for the
//! admin). Errors are JSON `{"error": "…"}` with the right status code. Services
//! (the dispatcher, …) add their routes: the node merges each running service's router
//! into [`router`]'s.
//!
//! Admin access: with `http.admin_token` set, a request must carry it as a Bearer
//! token (compared in constant time); without one, admin reads are allowed from
//! loopback only ("read-only on loopback"), which trusts every local user (and any
//! proxy on the host). Reading queues (`/api/v1/events`) is admin only. `/api/v1/status`
//! and `/metrics` show a request that is not admin the public view: queues named
//! after a service's users (`sub.<name>`) only summed up, never by name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flotilla_bus::ReadFrom;
use flotilla_core::Message;
use flotilla_core::condition::Condition;
use tokio_util::sync::CancellationToken;

use flotilla_service::http::{ApiError, bearer_is, event_stream, last_event_id};

use crate::metrics;
use crate::status::StatusSource;

/// What the node's routes need.
#[derive(Clone)]
pub struct HttpState {
    pub status: StatusSource,
    pub admin_token: Option<Arc<str>>,
    /// Ends long-lived responses (event streams) when the node stops.
    pub shutdown: CancellationToken,
}

/// SPEC §11: with no `http.admin_token` the API (`/api/…`, the services' routes
/// included) answers loopback only; a token configured, it answers wherever the
/// listener does (each route then checks tokens itself).
pub fn loopback_only_without_token(app: Router, admin_token_set: bool) -> Router {
    if admin_token_set { app } else { app.layer(axum::middleware::from_fn(refuse_remote_api)) }
}

async fn refuse_remote_api(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path().starts_with("/api/") && !peer.ip().is_loopback() {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "without http.admin_token the API answers requests from loopback only",
        )
        .into_response();
    }
    next.run(request).await
}

/// The node's routes. Serve them with `into_make_service_with_connect_information`
/// so admin checks can see the peer's address.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(state): State<HttpState>, ConnectInfo(peer), headers: HeaderMap| async move {
                let text = metrics::render(&state.status_for(&headers, peer).await);
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
            }),
        )
        .route(
            "/api/v1/status",
            get(|State(state): State<HttpState>, ConnectInfo(peer), headers: HeaderMap| async move {
                Json(state.status_for(&headers, peer).await)
            }),
        )
        .route("/api/v1/events", get(events))
        .fallback(|| async { ApiError { status: StatusCode::NOT_FOUND, message: "no such endpoint".into() } })
        .with_state(state)
}

impl HttpState {
    /// Whether the request is the admin's: it carries the admin token as Bearer, or
    /// (with no token configured) it comes from loopback.
    fn is_admin(&self, headers: &HeaderMap, peer: SocketAddr) -> bool {
        match &self.admin_token {
            Some(token) => bearer_is(headers, token),
            None => peer.ip().is_loopback(),
        }
    }

    /// [`HttpState::is_admin`], or a 401 that says what is missing.
    fn check_admin(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<(), ApiError> {
        match (self.is_admin(headers, peer), &self.admin_token) {
            (true, _) => Ok(()),
            (false, Some(_)) => Err(ApiError::unauthorized("this needs the admin token as a Bearer token")),
            (false, None) => {
                Err(ApiError::unauthorized("without http.admin_token this is only available from loopback"))
            }
        }
    }

    /// The status as this request may see it: the admin's, or the public view.
    async fn status_for(&self, headers: &HeaderMap, peer: SocketAddr) -> crate::status::NodeStatus {
        if self.is_admin(headers, peer) { self.status.snapshot().await } else { self.status.public_snapshot().await }
    }
}

/// The warning for a listener that answers beyond loopback with no admin token: who can
/// then read what (`None` on loopback, or with a token).
pub fn exposure_warning(listen: SocketAddr, admin_token_set: bool) -> Option<&'static str> {
    (!listen.ip().is_loopback() && !admin_token_set).then_some(
        "HTTP listens beyond loopback without http.admin_token: /healthz and /metrics (private queues summed up) \
         answer everyone, the API answers loopback only and trusts every local user; set http.admin_token to \
         require a token.",
    )
}

/// `GET /api/v1/events?where=CONDITION&queue=Q&from=start|end`: a queue's messages
/// (default `reactor`, from now on) as server-sent events, only those for which the
/// condition holds. Reading does not consume.
async fn events(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    state.check_admin(&headers, peer)?;
    let bad = |message: String| ApiError { status: StatusCode::BAD_REQUEST, message };
    let filter: Option<flotilla_service::http::EventFilter> = match query.get("where") {
        Some(text) => {
            let condition = Condition::parse(text).map_err(|e| bad(format!("where: {e}")))?;
            Some(Box::new(move |payload: &[u8]| Message::from_json(payload).is_ok_and(|m| condition.eval(&m))))
        }
        None => None,
    };
    let queue = query.get("queue").map_or("reactor", String::as_str);
    if !flotilla_bus::valid_name(queue) {
        return Err(bad(format!("queue: '{queue}' is not a queue name")));
    }
    let from = match query.get("from").map(String::as_str) {
        Some("start") => ReadFrom::Start,
        Some("end") | None => ReadFrom::End,
        Some(other) => return Err(bad(format!("from: expected 'start' or 'end', found '{other}'"))),
    };
    let after = last_event_id(&headers);
    let from = if after.is_some() { ReadFrom::Start } else { from };
    let reader = state.status.bus.read(queue, from).await.map_err(|e| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!("cannot read the queue: {e}"),
    })?;
    Ok(event_stream(reader, after, filter, state.shutdown.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::connect_info::MockConnectInfo;
    use tower::ServiceExt;

    async fn status_from(peer: &str, path: &str, admin_token_set: bool) -> StatusCode {
        let app = Router::new().route("/api/v1/x", get(|| async { "ok" })).route("/healthz", get(|| async { "ok" }));
        let app = loopback_only_without_token(app, admin_token_set)
            .layer(MockConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        let request = axum::http::Request::builder().uri(path).body(axum::body::Body::empty()).unwrap();
        app.oneshot(request).await.unwrap().status()
    }

    #[test]
    fn a_listener_beyond_loopback_without_a_token_is_warned_about() {
        let warned = |listen: &str, token| exposure_warning(listen.parse().unwrap(), token).is_some();
        assert!(warned("0.0.0.0:8080", false));
        assert!(warned("192.0.2.1:8080", false));
        assert!(warned("[::]:8080", false));
        assert!(!warned("0.0.0.0:8080", true));
        assert!(!warned("127.0.0.1:8080", false));
        assert!(!warned("[::1]:8080", false));
    }

    #[tokio::test]
    async fn without_an_admin_token_the_api_answers_loopback_only() {
        // 192.0.2.1 is a documentation address: nothing is sent anywhere, the peer is mocked.
        assert_eq!(status_from("192.0.2.1:5000", "/api/v1/x", false).await, StatusCode::FORBIDDEN);
        assert_eq!(status_from("127.0.0.1:5000", "/api/v1/x", false).await, StatusCode::OK);
        assert_eq!(status_from("[::1]:5000", "/api/v1/x", false).await, StatusCode::OK);
        assert_eq!(status_from("192.0.2.1:5000", "/healthz", false).await, StatusCode::OK);
        assert_eq!(status_from("192.0.2.1:5000", "/api/v1/x", true).await, StatusCode::OK);
    }
}
