//! The HTTP server (SPEC §11): `/healthz`, `/metrics`, `/api/v1/status`. Errors are
//! JSON `{"error": "…"}` with the right status code. Other components (the dispatcher,
//! Slack) add their routes by merging routers into [`router`]'s.

use axum::Json;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics;
use crate::status::StatusSource;

/// An HTTP error: a status code and a message safe to show.
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

/// The node's routes.
pub fn router(status: StatusSource) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|axum::extract::State(source): axum::extract::State<StatusSource>| async move {
                let text = metrics::render(&source.snapshot().await);
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
            }),
        )
        .route(
            "/api/v1/status",
            get(|axum::extract::State(source): axum::extract::State<StatusSource>| async move {
                Json(source.snapshot().await)
            }),
        )
        .fallback(|| async { ApiError { status: StatusCode::NOT_FOUND, message: "no such endpoint".into() } })
        .with_state(status)
}
