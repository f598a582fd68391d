//! The HTTP API for subscriptions (SPEC §11), merged into the node's router:
//!
//! | method and path | does | answer |
//! |---|---|---|
//! | `POST /api/v1/subscriptions` `{"name": N}` | create | 201 `{"name", "token", "format"}` |
//! | `GET /api/v1/subscriptions` | list (admin only) | `{"subscriptions": [{"name", "format", "definitions"}]}` |
//! | `GET /api/v1/subscriptions/N` | show | `{"name", "format", "definitions": [...]}` |
//! | `DELETE /api/v1/subscriptions/N` | delete | 204 |
//! | `GET /api/v1/subscriptions/N/definitions` | list definitions | the JSON document (`list json`) |
//! | `POST /api/v1/subscriptions/N/definitions` | add (JSON document, or XML with an XML content type) | `{"inserted": n}`; 422 with `E015`/`E025` over a cap |
//! | `DELETE /api/v1/subscriptions/N/definitions` (or `POST …/definitions/remove`) | remove | `{"removed": n}` |
//! | `PUT /api/v1/subscriptions/N/format` `{"format": F}` | set the output format | `{"format": F}` |
//! | `GET /api/v1/subscriptions/N/events` | the subscription's changes as server-sent events | `text/event-stream` |
//! | `GET /api/v1/dispatcher` | counters | JSON |
//!
//! Every `/api/v1/subscriptions/N…` route takes `Authorization: Bearer <token>`: the
//! subscription's own token, or `http.admin_token`. A wrong token and an unknown name
//! get the same 401, so the API does not reveal which names exist. Creating needs the
//! admin token; without one configured the API is read-only (SPEC §11: creating answers
//! 403, and the node serves the API to loopback only), and subscriptions are created
//! with the control protocol's `subscribe`. With `dispatcher.subscribe: closed`
//! creating answers 403 whatever the token, as `subscribe` does on the control port. Errors are JSON
//! `{"error": "…"}`; document problems carry the control protocol's line
//! (`E014: Unknown wiki: …`) so both interfaces say the same thing.
//!
//! The event stream reads bus queue `sub.<name>`: new changes by default, everything
//! retained with `?from=start`, or what follows a `Last-Event-ID` (each event's `id` is
//! its sequence number in the queue), so a client that reconnects misses nothing. It
//! ends when the node shuts down, and when its subscription is deleted (so a stream of
//! a name's old owner never shows what a new owner of the name receives).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use flotilla_bus::{Bus, BusError, Delivery, ReadFrom, Reader};
use flotilla_wikimedia_core::definition::{DocumentFormat, parse_document, write_document};
use flotilla_wikimedia_core::protocol::ErrorReply;
use flotilla_wikimedia_core::subscription::{InsertError, SubscribeError};
use flotilla_wikimedia_core::{
    OutputFormat, SubscribePolicy, SubscriptionBackend, SubscriptionId, SubscriptionName, Wikis,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use flotilla_service::http::{ApiError, bearer, bearer_is, event_stream, last_event_id};

use crate::matcher::subscription_queue;
use crate::state::Shared;

/// What the routes need.
#[derive(Clone)]
pub struct ApiState {
    pub shared: Arc<Shared>,
    pub bus: Arc<dyn Bus>,
    pub wikis: &'static Wikis,
    pub admin_token: Option<Arc<str>>,
    /// Who may create subscriptions (`dispatcher.subscribe`): over HTTP, `open` and
    /// `admin` both need the admin token (SPEC §11); `closed` refuses everyone.
    pub subscribe: SubscribePolicy,
    /// Ends open event streams when the node stops.
    pub shutdown: CancellationToken,
}

type ApiResult<T> = Result<T, ApiError>;

/// The dispatcher's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/dispatcher", get(counters))
        .route("/api/v1/subscriptions", post(create).get(list_all))
        .route("/api/v1/subscriptions/{name}", get(show).delete(delete))
        .route("/api/v1/subscriptions/{name}/definitions", get(definitions).post(insert).delete(remove))
        .route("/api/v1/subscriptions/{name}/definitions/remove", post(remove))
        .route("/api/v1/subscriptions/{name}/format", put(set_format))
        .route("/api/v1/subscriptions/{name}/events", get(events))
        .with_state(state)
}

impl ApiState {
    fn is_admin(&self, headers: &HeaderMap) -> bool {
        self.admin_token.as_deref().is_some_and(|admin| bearer_is(headers, admin))
    }

    /// The subscription `name` if the bearer token may act on it.
    fn authorize(&self, headers: &HeaderMap, name: &str) -> ApiResult<SubscriptionId> {
        let Some(token) = bearer(headers) else {
            return Err(ApiError::unauthorized("missing 'Authorization: Bearer <token>'"));
        };
        let subscriptions = self.shared.read();
        if self.is_admin(headers) {
            return subscriptions
                .find(name)
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no subscription named '{name}'")));
        }
        subscriptions.authenticate(name, token).ok_or_else(|| ApiError::unauthorized("invalid token or name"))
    }
}

async fn counters(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(state.shared.status())
}

fn json_body(body: &Bytes) -> ApiResult<serde_json::Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))
}

async fn create(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    if state.subscribe == SubscribePolicy::Closed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "creating subscriptions is closed on this dispatcher (dispatcher.subscribe: closed)",
        ));
    }
    // SPEC §11: without `http.admin_token` the API is read-only; subscriptions are
    // then created with the control protocol's `subscribe` (or `dispatcher-cli`).
    if state.admin_token.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "creating a subscription over HTTP needs http.admin_token (without one the API is read-only; \
             use the control protocol's subscribe)",
        ));
    }
    if !state.is_admin(&headers) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "creating a subscription needs the admin token"));
    }
    let request = json_body(&body)?;
    let Some(name) = request.get("name").and_then(|n| n.as_str()) else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "expected {\"name\": \"…\"}"));
    };
    let name = SubscriptionName::parse(name)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, ErrorReply::InvalidName.to_string()))?;
    let created = state
        .shared
        .mutate(|subscriptions| match subscriptions.subscribe(name.clone(), None) {
            Ok(subscribed) => {
                let mutation = subscribed.mutation.clone();
                (Ok(subscribed), vec![mutation])
            }
            Err(error) => (Err(error), Vec::new()),
        })
        .await;
    match created {
        Ok(subscribed) => Ok((
            StatusCode::CREATED,
            Json(json!({"name": name.as_str(), "token": subscribed.token.expose(), "format": OutputFormat::default().name()})),
        )
            .into_response()),
        Err(SubscribeError::Exists) => {
            Err(ApiError::new(StatusCode::CONFLICT, ErrorReply::SubscriptionExists.to_string()))
        }
        Err(SubscribeError::Token(_)) => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorReply::TokenUnavailable.to_string()))
        }
        Err(SubscribeError::TooMany { limit, per_address }) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorReply::TooManySubscriptions { limit, per_address }.to_string(),
        )),
    }
}

async fn list_all(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult<Json<serde_json::Value>> {
    if !state.is_admin(&headers) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "listing subscriptions needs the admin token"));
    }
    let subscriptions = state.shared.read();
    let mut all: Vec<serde_json::Value> = subscriptions
        .names()
        .filter_map(|(id, name)| {
            Some(json!({
                "name": name.as_str(),
                "format": subscriptions.format(id)?.name(),
                "definitions": subscriptions.index().count_of(id),
            }))
        })
        .collect();
    all.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Json(json!({ "subscriptions": all })))
}

fn no_such() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorReply::NoSuchFeed.to_string())
}

fn definitions_json(state: &ApiState, id: SubscriptionId) -> ApiResult<(String, serde_json::Value)> {
    let subscriptions = state.shared.read();
    let definitions = subscriptions.definitions(id).map_err(|_| no_such())?;
    let format = subscriptions.format(id).ok_or_else(no_such)?;
    let document = write_document(DocumentFormat::Json, &definitions);
    let value = serde_json::from_str(&document)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("listing failed: {e}")))?;
    Ok((format.name().to_string(), value))
}

async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = state.authorize(&headers, &name)?;
    let (format, definitions) = definitions_json(&state, id)?;
    Ok(Json(json!({"name": name, "format": format, "definitions": definitions})))
}

async fn delete(State(state): State<ApiState>, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let id = state.authorize(&headers, &name)?;
    let deleted = state
        .shared
        .mutate(|subscriptions| match subscriptions.unsubscribe(id) {
            Ok(mutation) => (true, vec![mutation]),
            Err(_) => (false, Vec::new()),
        })
        .await;
    if deleted { Ok(StatusCode::NO_CONTENT) } else { Err(no_such()) }
}

async fn definitions(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = state.authorize(&headers, &name)?;
    Ok(Json(definitions_json(&state, id)?.1))
}

/// The document in a request body: XML when the content type says so, JSON otherwise.
/// Parsed (its patterns compiled, within the subscription's pattern budget) on a
/// blocking thread, with no lock held: see [`crate::state`].
async fn document(
    state: &ApiState,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Vec<flotilla_wikimedia_core::Definition>> {
    let xml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("xml"));
    let format = if xml { DocumentFormat::Xml } else { DocumentFormat::Json };
    let not_text = || {
        let reply = if xml { ErrorReply::InvalidXml } else { ErrorReply::InvalidJson };
        ApiError::new(StatusCode::BAD_REQUEST, reply.to_string())
    };
    if std::str::from_utf8(&body).is_err() {
        return Err(not_text());
    }
    let budget = state.shared.read().limits().max_pattern_memory_per_subscription;
    let wikis = state.wikis;
    let parsed = state
        .shared
        .compile(move || {
            let text = std::str::from_utf8(&body).unwrap_or_default();
            parse_document(format, text, wikis, budget).map_err(|e| ErrorReply::from_document(&e))
        })
        .await;
    parsed.map_err(|reply| {
        // Over the pattern budget is not a malformed document but one the subscription
        // may not hold, as with E015.
        let status = match reply {
            ErrorReply::PatternMemory { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, reply.to_string())
    })
}

async fn insert(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let id = state.authorize(&headers, &name)?;
    let definitions = document(&state, &headers, body).await?;
    let result = state
        .shared
        .mutate(|subscriptions| match subscriptions.insert(id, definitions) {
            Ok(applied) => (Ok(applied.count), applied.mutation.into_iter().collect()),
            Err(error) => (Err(error), Vec::new()),
        })
        .await;
    match result {
        Ok(count) => Ok(Json(json!({ "inserted": count }))),
        Err(InsertError::NoSuchSubscription) => Err(no_such()),
        Err(InsertError::TooMany { limit }) => {
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorReply::TooManyDefinitions { limit }.to_string()))
        }
        Err(InsertError::PatternMemory { pattern, budget, limit }) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorReply::PatternMemory { pattern, budget, limit }.to_string(),
        )),
    }
}

async fn remove(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let id = state.authorize(&headers, &name)?;
    let definitions = document(&state, &headers, body).await?;
    let result = state
        .shared
        .mutate(|subscriptions| match subscriptions.remove(id, definitions) {
            Ok(applied) => (Some(applied.count), applied.mutation.into_iter().collect()),
            Err(_) => (None, Vec::new()),
        })
        .await;
    result.map(|count| Json(json!({ "removed": count }))).ok_or_else(no_such)
}

async fn set_format(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let id = state.authorize(&headers, &name)?;
    let request = json_body(&body)?;
    let format = request
        .get("format")
        .and_then(|f| f.as_str())
        .and_then(OutputFormat::parse)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, ErrorReply::InvalidFormat.to_string()))?;
    let set = state
        .shared
        .mutate(|subscriptions| match subscriptions.set_format(id, format) {
            Ok(mutation) => (true, vec![mutation]),
            Err(_) => (false, Vec::new()),
        })
        .await;
    if set { Ok(Json(json!({ "format": format.name() }))) } else { Err(no_such()) }
}

async fn events(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let id = state.authorize(&headers, &name)?;
    let after = last_event_id(&headers);
    let from = match query.get("from").map(String::as_str) {
        _ if after.is_some() => ReadFrom::Start,
        Some("start") => ReadFrom::Start,
        Some("end") | None => ReadFrom::End,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("from: expected 'start' or 'end', found '{other}'"),
            ));
        }
    };
    let reader = state
        .bus
        .read(&subscription_queue(&name), from)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("cannot read the queue: {e}")))?;
    let reader = Box::new(OwnQueue { reader, shared: state.shared.clone(), id, name });
    Ok(event_stream(reader, after, None, state.shutdown.clone()))
}

/// A subscription's queue as its event stream reads it: nothing more once the
/// subscription is deleted (its fetches then fail, which ends the stream), whatever
/// the bus does with a queue deleted and created again under the same name.
struct OwnQueue {
    reader: Box<dyn Reader>,
    shared: Arc<Shared>,
    id: SubscriptionId,
    name: String,
}

#[async_trait::async_trait]
impl Reader for OwnQueue {
    async fn fetch(&mut self, max: usize, wait: std::time::Duration) -> Result<Vec<Delivery>, BusError> {
        let deliveries = self.reader.fetch(max, wait).await?;
        // Checked after the fetch: whatever it returned was published before the
        // subscription was deleted, or is not handed out.
        if self.shared.read().name(self.id).is_none() {
            return Err(BusError::Deleted(format!("sub.{}", self.name)));
        }
        Ok(deliveries)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flotilla_wikimedia_core::Subscriptions;

    use super::*;

    /// Hands out one message per fetch, as a queue created again under the old name
    /// by a backend that keeps readers on names would.
    struct Endless;

    #[async_trait::async_trait]
    impl Reader for Endless {
        async fn fetch(&mut self, _: usize, _: Duration) -> Result<Vec<Delivery>, BusError> {
            let payload = bytes::Bytes::from_static(b"the new owner's change");
            Ok(vec![Delivery { id: flotilla_bus::DeliveryId::Seq(0), seq: 0, timestamp_ms: 0, payload }])
        }
    }

    #[tokio::test]
    async fn a_stream_of_a_deleted_subscription_hands_out_nothing_more() {
        let mut subscriptions = Subscriptions::new(Wikis::embedded());
        let id = subscriptions.subscribe(SubscriptionName::parse("old").unwrap(), None).unwrap().id;
        let shared = Arc::new(Shared::new(subscriptions, None));
        let mut reader = OwnQueue { reader: Box::new(Endless), shared: shared.clone(), id, name: "old".into() };
        assert_eq!(reader.fetch(10, Duration::ZERO).await.unwrap().len(), 1);
        shared
            .mutate(|s| {
                let deleted = s.unsubscribe(id).unwrap();
                let again = s.subscribe(SubscriptionName::parse("old").unwrap(), None).unwrap();
                ((), vec![deleted, again.mutation])
            })
            .await;
        let error = reader.fetch(10, Duration::ZERO).await.unwrap_err();
        assert_eq!(error.to_string(), "queue 'sub.old' was deleted");
    }
}
