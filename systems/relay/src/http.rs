//! The relay's HTTP API, merged into the node's router (the web UI's `/groups` page and
//! `flotilla review` use it):
//!
//! | method and path | does | answer |
//! |---|---|---|
//! | `GET /api/v1/groups` | every group: members, patterns, counters | `{"groups": [...]}` |
//! | `GET /api/v1/groups/G` | one group | the group |
//! | `PUT /api/v1/groups/G/censor` `{"trigger": [...], "blocklist": [...]}` | replace the patterns (next report on) | the patterns; 422 naming each refused pattern and why |
//! | `GET /api/v1/groups/G/review[?all=true]` | reports waiting for review (with `all`: decided ones too) | `{"reports": [...]}` |
//! | `POST /api/v1/groups/G/review/ID/approve` | relay the report as if it had passed | `{"id", "relayed_to"}`; 409 when decided |
//! | `POST /api/v1/groups/G/review/ID/reject` | keep it out | `{"id"}`; 409 when decided |
//!
//! Reading needs the admin token when one is set (reports are people's messages);
//! changing always does, and without `http.admin_token` the API is read-only (SPEC §11).
//! A rejected report stays in `review.<group>` whatever is decided: nothing is lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use flotilla_bus::stage::Outputs;
use flotilla_bus::{Bus, ReadFrom};
use flotilla_core::Message;
use flotilla_core::censor::CensorPatterns;
use flotilla_service::http::{ApiError, bearer_is};
use flotilla_store::Store;
use serde_json::{Value, json};

use crate::groups::{ChangeError, Decision, Group, Groups, review_queue};
use crate::relay::relay;
use crate::report::Report;

#[derive(Clone)]
pub struct ApiState {
    pub groups: Arc<Groups>,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<Store>,
    pub admin_token: Option<Arc<str>>,
}

type ApiResult<T> = Result<T, ApiError>;

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/groups", get(list_groups))
        .route("/api/v1/groups/{group}", get(show_group))
        .route("/api/v1/groups/{group}/censor", put(set_censor).get(show_censor))
        .route("/api/v1/groups/{group}/review", get(list_review))
        .route("/api/v1/groups/{group}/review/{id}/approve", post(approve))
        .route("/api/v1/groups/{group}/review/{id}/reject", post(reject))
        .with_state(state)
}

impl ApiState {
    fn may_read(&self, headers: &HeaderMap) -> ApiResult<()> {
        match &self.admin_token {
            None => Ok(()),
            Some(token) if bearer_is(headers, token) => Ok(()),
            Some(_) => Err(ApiError::unauthorized("reading relay groups needs the admin token")),
        }
    }

    fn may_change(&self, headers: &HeaderMap) -> ApiResult<()> {
        match &self.admin_token {
            None => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the API is read-only: changing relay groups needs http.admin_token",
            )),
            Some(token) if bearer_is(headers, token) => Ok(()),
            Some(_) => Err(ApiError::unauthorized("changing relay groups needs the admin token")),
        }
    }

    fn group(&self, name: &str) -> ApiResult<Arc<Group>> {
        self.groups
            .find(name)
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no group named '{name}'")))
    }
}

async fn list_groups(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    state.may_read(&headers)?;
    Ok(Json(json!({"groups": state.groups.groups.iter().map(|g| g.summary()).collect::<Vec<_>>()})))
}

async fn show_group(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> ApiResult<Json<Value>> {
    state.may_read(&headers)?;
    Ok(Json(state.group(&group)?.summary()))
}

async fn show_censor(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> ApiResult<Json<Value>> {
    state.may_read(&headers)?;
    Ok(Json(json!(state.group(&group)?.censor().patterns())))
}

async fn set_censor(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(group): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    state.may_change(&headers)?;
    let group = state.group(&group)?;
    let patterns: CensorPatterns = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"trigger\": [patterns], \"blocklist\": [patterns]}}: {e}"))
    })?;
    match group.set_patterns(&state.store, patterns).await {
        Ok(censor) => Ok(Json(json!(censor.patterns()))),
        // Every refused pattern, each with its list, place, text and reason.
        Err(ChangeError::Patterns(error)) => {
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("patterns refused: {error}")))
        }
        Err(ChangeError::Store(e)) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("saving failed: {e}")))
        }
    }
}

/// Every report in the group's review queue, oldest first.
async fn held_reports(bus: &dyn Bus, group: &str) -> ApiResult<Vec<Message>> {
    let unavailable = |e: flotilla_bus::BusError| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("reading the review queue: {e}"))
    };
    let mut reader = bus.read(&review_queue(group), ReadFrom::Start).await.map_err(unavailable)?;
    let mut reports = Vec::new();
    loop {
        let batch = reader.fetch(1024, Duration::from_millis(50)).await.map_err(unavailable)?;
        if batch.is_empty() {
            return Ok(reports);
        }
        reports.extend(batch.iter().filter_map(|d| Message::from_json(&d.payload).ok()));
    }
}

fn id_of(message: &Message) -> &str {
    message.get("id").and_then(Value::as_str).unwrap_or_default()
}

#[derive(serde::Deserialize)]
struct ReviewQuery {
    all: Option<bool>,
}

async fn list_review(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(group): Path<String>,
    Query(query): Query<ReviewQuery>,
) -> ApiResult<Json<Value>> {
    state.may_read(&headers)?;
    let group = state.group(&group)?;
    let all = query.all.unwrap_or(false);
    let reports: Vec<Value> = held_reports(state.bus.as_ref(), &group.name)
        .await?
        .iter()
        .filter_map(|m| {
            let decision = group.decision(id_of(m));
            if decision.is_some() && !all {
                return None;
            }
            let report: Option<Report> = m.get("report").and_then(|r| serde_json::from_value(r.clone()).ok());
            Some(json!({
                "id": id_of(m),
                "reason": m.get("review_reason"),
                "source": m.get("review_source"),
                "username": report.as_ref().map(|r| r.username.clone()),
                "subject": report.as_ref().and_then(|r| r.subject.clone()),
                "text": report.as_ref().map(|r| r.text.clone()),
                "lastupdate": m.get("lastupdate"),
                "decision": decision.map(|(d, _)| d.as_str()),
            }))
        })
        .collect();
    Ok(Json(json!({"group": group.name, "reports": reports})))
}

async fn find_undecided(state: &ApiState, group: &Group, id: &str) -> ApiResult<Message> {
    if let Some((decision, _)) = group.decision(id) {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("report {id} was already {}", decision.as_str())));
    }
    held_reports(state.bus.as_ref(), &group.name)
        .await?
        .into_iter()
        .find(|m| id_of(m) == id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no report {id} in review.{}", group.name)))
}

async fn approve(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((group, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state.may_change(&headers)?;
    let group = state.group(&group)?;
    let _one_decision_at_a_time = group.reviewing.lock().await;
    let held = find_undecided(&state, &group, &id).await?;
    let source = held.get("review_source").and_then(Value::as_str).unwrap_or_default().to_string();
    let report: Report = held.get("report").and_then(|r| serde_json::from_value(r.clone()).ok()).ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("report {id} has no readable report"))
    })?;
    // Relayed first, decided after: a crash between the two relays it again on a
    // second approval (at-least-once), never not at all.
    let mut outputs = Outputs::default();
    relay(&group, &source, &held, &report, &mut outputs);
    let relayed_to: Vec<String> = outputs.queues().map(|(q, _)| q.trim_start_matches("outbox.").to_string()).collect();
    outputs
        .publish(state.bus.as_ref())
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("relaying failed: {e}")))?;
    group
        .decide(&state.store, &id, Decision::Approved)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("saving the decision failed: {e}")))?;
    group.counters.approved.fetch_add(1, Ordering::Relaxed);
    tracing::info!(group = %group.name, %id, "A report was approved and relayed.");
    Ok(Json(json!({"id": id, "relayed_to": relayed_to})))
}

async fn reject(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((group, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state.may_change(&headers)?;
    let group = state.group(&group)?;
    let _one_decision_at_a_time = group.reviewing.lock().await;
    find_undecided(&state, &group, &id).await?;
    group
        .decide(&state.store, &id, Decision::Rejected)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("saving the decision failed: {e}")))?;
    group.counters.discarded.fetch_add(1, Ordering::Relaxed);
    Ok(Json(json!({"id": id})))
}
