//! `/tail`: a queue's messages through a condition (SPEC §4's language), live.
//!
//! The page checks the queue and the condition and says what is wrong on the page (an
//! unknown queue, a condition that does not parse, with the parser's own message). It
//! lists the latest matching messages it finds when rendered (so it is readable without
//! JavaScript), and names its event stream, `/tail/events`, which the page's script
//! follows: the server-sent event stream of the queue that the API's `/api/v1/events`
//! serves too ([`flotilla_service::http::event_stream`]), read without consuming.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_bus::ReadFrom;
use flotilla_core::Message;
use flotilla_core::condition::Condition;
use flotilla_service::http::{ApiError, event_stream, last_event_id};

use crate::pages::{Chrome, access, html};
use crate::service::AppState;
use crate::text;

/// How many of the latest matching messages the page lists.
const RECENT: usize = 50;
/// How many messages the page reads at most to find them (a bound on a page's cost).
const SCAN_LIMIT: usize = 20_000;

pub(crate) struct Shown {
    pub subject: String,
    pub meta: String,
    pub json: String,
}

#[derive(Template)]
#[template(path = "tail.html")]
struct TailPage {
    chrome: Chrome,
    queue: String,
    condition: String,
    known_queues: Vec<String>,
    /// The event stream's URL, when queue and condition are good.
    stream: Option<String>,
    recent: Vec<Shown>,
}

/// The first non-empty of a message's conventional text fields.
pub(crate) fn subject_of(message: &serde_json::Value) -> String {
    for field in ["subject", "text", "title", "body"] {
        match message.get(field) {
            Some(serde_json::Value::String(text)) if !text.is_empty() => return text.clone(),
            Some(serde_json::Value::Null) | None => {}
            Some(serde_json::Value::String(_)) => {}
            Some(other) => return other.to_string(),
        }
    }
    "(no subject)".to_string()
}

fn shown(payload: &[u8]) -> Shown {
    let value: serde_json::Value = serde_json::from_slice(payload)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(payload).into()));
    let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str).unwrap_or("").to_string();
    let meta = [field("key"), field("plugin"), field("id")].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>();
    Shown { subject: subject_of(&value), meta: meta.join(" · "), json: value.to_string() }
}

/// Checks what the form asked for: `Ok(condition)` or the message for the page.
fn check(queue: &str, condition: &str, known: &[String]) -> Result<Option<Condition>, String> {
    if !flotilla_bus::valid_name(queue) {
        return Err(format!("'{queue}' is not a queue name."));
    }
    if !known.iter().any(|q| q == queue) {
        return Err(format!("There is no queue named '{queue}' on this node."));
    }
    if condition.trim().is_empty() {
        return Ok(None);
    }
    Condition::parse(condition).map(Some).map_err(|e| format!("The condition does not parse: {e}"))
}

/// The latest [`RECENT`] messages matching `condition` among the first [`SCAN_LIMIT`]
/// of the queue.
async fn recent(state: &AppState, queue: &str, condition: Option<&Condition>) -> Result<Vec<Shown>, String> {
    let mut reader =
        state.ctx.bus.read(queue, ReadFrom::Start).await.map_err(|e| format!("The queue cannot be read: {e}"))?;
    let mut kept: VecDeque<Vec<u8>> = VecDeque::new();
    let mut scanned = 0;
    while scanned < SCAN_LIMIT {
        let batch =
            reader.fetch(1024, Duration::from_millis(1)).await.map_err(|e| format!("The queue cannot be read: {e}"))?;
        if batch.is_empty() {
            break;
        }
        scanned += batch.len();
        for delivery in batch {
            let keep = condition.is_none_or(|c| Message::from_json(&delivery.payload).is_ok_and(|m| c.eval(&m)));
            if keep {
                kept.push_back(delivery.payload.to_vec());
                if kept.len() > RECENT {
                    kept.pop_front();
                }
            }
        }
    }
    Ok(kept.iter().rev().map(|p| shown(p)).collect())
}

async fn known_queues(state: &AppState) -> Vec<String> {
    state.ctx.bus.stats().await.unwrap_or_default().into_iter().map(|q| q.queue).collect()
}

pub(crate) async fn page(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let access = access(&state, &headers, peer);
    let mut chrome = Chrome::new(&state, &access, "/tail", "Tail");
    let queue = query.get("queue").map_or("reactor", |q| q.trim()).to_string();
    let condition = query.get("where").cloned().unwrap_or_default();
    let mut page = TailPage {
        chrome: Chrome::new(&state, &access, "/tail", "Tail"),
        queue,
        condition,
        known_queues: Vec::new(),
        stream: None,
        recent: Vec::new(),
    };
    if !access.reader {
        chrome.needs_login();
        page.chrome = chrome;
        return html(StatusCode::OK, &page);
    }
    page.known_queues = known_queues(&state).await;
    let status = match check(&page.queue, &page.condition, &page.known_queues) {
        Err(problem) => {
            chrome.errors.push(problem);
            StatusCode::BAD_REQUEST
        }
        Ok(condition) => match recent(&state, &page.queue, condition.as_ref()).await {
            Ok(recent) => {
                page.recent = recent;
                page.stream = Some(format!(
                    "/tail/events{}",
                    text::query(&[("queue", &page.queue), ("where", page.condition.trim())])
                ));
                chrome.live = true;
                StatusCode::OK
            }
            Err(problem) => {
                chrome.errors.push(problem);
                StatusCode::SERVICE_UNAVAILABLE
            }
        },
    };
    page.chrome = chrome;
    html(status, &page)
}

/// `GET /tail/events?queue=Q&where=C`: the stream the page's script follows (new
/// messages only; a reconnecting browser resumes after its `Last-Event-ID`).
pub(crate) async fn events(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let access = access(&state, &headers, peer);
    if !access.reader {
        return ApiError::new(StatusCode::FORBIDDEN, "log in to tail queues").into_response();
    }
    let queue = query.get("queue").map_or("reactor", |q| q.trim());
    let condition = query.get("where").map_or("", String::as_str);
    let known = known_queues(&state).await;
    let condition = match check(queue, condition, &known) {
        Ok(condition) => condition,
        Err(problem) => return ApiError::bad_request(problem).into_response(),
    };
    let filter: Option<flotilla_service::http::EventFilter> =
        condition.map(|c| Box::new(move |payload: &[u8]| Message::from_json(payload).is_ok_and(|m| c.eval(&m))) as _);
    let after = last_event_id(&headers);
    let from = if after.is_some() { ReadFrom::Start } else { ReadFrom::End };
    match state.ctx.bus.read(queue, from).await {
        Ok(reader) => event_stream(reader, after, filter, state.ctx.shutdown.clone()),
        Err(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("cannot read the queue: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_queues_and_conditions_are_explained() {
        let known = vec!["reactor".to_string(), "alerts".to_string()];
        // (queue, condition, Ok(has condition) or a fragment of the message)
        let cases: &[(&str, &str, Result<bool, &str>)] = &[
            ("reactor", "", Ok(false)),
            ("alerts", "subject matches x", Ok(true)),
            ("nope", "", Err("no queue named 'nope'")),
            ("../x", "", Err("not a queue name")),
            ("reactor", "subject frobnicates", Err("does not parse")),
            ("reactor", "( a is true", Err("does not parse")),
        ];
        for (queue, condition, expected) in cases {
            let got = check(queue, condition, &known).map(|c| c.is_some());
            match (got, expected) {
                (Ok(has), Ok(want)) => assert_eq!(has, *want, "{queue} {condition}"),
                (Err(message), Err(fragment)) => assert!(message.contains(fragment), "{message}"),
                (got, _) => panic!("{queue} {condition}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_message_is_shown_by_its_first_text_field() {
        let cases = [
            (json!({"subject": "s", "text": "t"}), "s"),
            (json!({"subject": "", "text": "t"}), "t"),
            (json!({"body": 5}), "5"),
            (json!({"other": 1}), "(no subject)"),
        ];
        for (message, expected) in cases {
            assert_eq!(subject_of(&message), expected);
        }
        let shown = shown(br#"{"subject":"<script>alert(1)</script>","key":"k","id":"01"}"#);
        assert_eq!(shown.subject, "<script>alert(1)</script>", "kept as text: the template escapes it");
        assert_eq!(shown.meta, "k · 01");
    }
}
