//! `/notifications`: wubot's notification view of a queue (`webui.notifications_queue`,
//! default `notifications`; a rule's `MessageQueue` plugin fills it): messages grouped
//! by `mailbox`, unseen first and `sticky` ones on top within each mailbox, with their
//! `color` as a swatch and their `link` as a link (http and https only: a message's
//! link is not trusted with `javascript:`). "Mark seen" records the ids in the store
//! (state `webui` / `seen.<queue>`, the newest 10,000), so seen survives restarts and
//! reading never consumes the queue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use askama::Template;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use flotilla_bus::ReadFrom;
use serde::Deserialize;

use crate::pages::{Chrome, access, check_form, html};
use crate::service::AppState;

/// How many messages the page reads at most.
const SCAN_LIMIT: usize = 20_000;
/// How many seen ids are remembered.
const SEEN_KEEP: usize = 10_000;

pub(crate) struct Notification {
    pub id: String,
    pub subject: String,
    pub meta: String,
    pub colour: Option<String>,
    pub link: Option<String>,
    pub sticky: bool,
    pub seen: bool,
}

pub(crate) struct Mailbox {
    pub name: String,
    pub unseen: usize,
    /// The unseen ids, comma-separated, for the "mark seen" form.
    pub unseen_ids: String,
    pub items: Vec<Notification>,
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    chrome: Chrome,
    queue: String,
    total: usize,
    unseen: usize,
    mailboxes: Vec<Mailbox>,
}

/// A colour to draw: a CSS colour name or a hex colour, else nothing.
pub fn colour(value: Option<&str>) -> Option<String> {
    let value = value?.trim();
    let hex =
        value.strip_prefix('#').is_some_and(|h| matches!(h.len(), 3 | 6) && h.chars().all(|c| c.is_ascii_hexdigit()));
    let name = !value.is_empty() && value.len() <= 20 && value.chars().all(|c| c.is_ascii_alphabetic());
    (hex || name).then(|| value.to_string())
}

/// A link to show: only `http://` and `https://` URLs.
pub fn link(value: Option<&str>) -> Option<String> {
    let value = value?.trim();
    let lower = value.to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")).then(|| value.to_string())
}

fn truthy(value: Option<&serde_json::Value>) -> bool {
    match value {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        Some(serde_json::Value::String(s)) => !s.is_empty() && s != "0" && s != "false",
        Some(_) => true,
    }
}

/// Groups messages (oldest first) into mailboxes: mailboxes by name, within each
/// sticky first, then unseen, then seen, newest first within each.
pub(crate) fn group(messages: Vec<serde_json::Value>, seen: &HashSet<String>) -> Vec<Mailbox> {
    let mut boxes: BTreeMap<String, Vec<Notification>> = BTreeMap::new();
    for (index, message) in messages.into_iter().enumerate().rev() {
        let text = |key: &str| message.get(key).and_then(serde_json::Value::as_str).map(str::to_string);
        let id = text("id").unwrap_or_else(|| format!("#{index}"));
        let mailbox = text("mailbox").filter(|m| !m.is_empty()).unwrap_or_else(|| "(no mailbox)".to_string());
        let meta =
            [text("key"), text("username"), text("hostname")].into_iter().flatten().collect::<Vec<_>>().join(" · ");
        boxes.entry(mailbox).or_default().push(Notification {
            seen: seen.contains(&id),
            subject: crate::tail::subject_of(&message),
            colour: colour(message.get("color").and_then(serde_json::Value::as_str)),
            link: link(message.get("link").and_then(serde_json::Value::as_str)),
            sticky: truthy(message.get("sticky")),
            meta,
            id,
        });
    }
    boxes
        .into_iter()
        .map(|(name, mut items)| {
            // Stable: newest first is kept within each rank.
            items.sort_by_key(|n| (!n.sticky, n.seen));
            let unseen: Vec<&str> = items.iter().filter(|n| !n.seen).map(|n| n.id.as_str()).collect();
            Mailbox { name, unseen: unseen.len(), unseen_ids: unseen.join(","), items }
        })
        .collect()
}

fn state_key(queue: &str) -> String {
    format!("seen.{queue}")
}

async fn seen_ids(state: &AppState, queue: &str) -> Vec<String> {
    match state.ctx.store.get_state("webui", &state_key(queue)).await {
        Ok(Some(serde_json::Value::Array(ids))) => {
            ids.into_iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
        }
        _ => Vec::new(),
    }
}

pub(crate) async fn page(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let access = access(&state, &headers, peer);
    let mut chrome = Chrome::new(&state, &access, "/notifications", "Notifications");
    let queue = query.get("queue").cloned().unwrap_or_else(|| state.settings.notifications_queue.clone());
    if query.contains_key("marked") {
        chrome.infos.push("Marked seen.".into());
    }
    let mut page = NotificationsPage {
        chrome: Chrome::new(&state, &access, "/notifications", "Notifications"),
        queue,
        total: 0,
        unseen: 0,
        mailboxes: Vec::new(),
    };
    if !access.reader {
        chrome.needs_login();
        page.chrome = chrome;
        return html(StatusCode::OK, &page);
    }
    let known = state.ctx.bus.stats().await.unwrap_or_default();
    if !flotilla_bus::valid_name(&page.queue) || !known.iter().any(|q| q.queue == page.queue) {
        chrome.infos.push(format!("There is no queue named '{}' yet: nothing has been notified.", page.queue));
        page.chrome = chrome;
        return html(StatusCode::OK, &page);
    }
    let mut messages = Vec::new();
    match state.ctx.bus.read(&page.queue, ReadFrom::Start).await {
        Ok(mut reader) => {
            while messages.len() < SCAN_LIMIT {
                match reader.fetch(1024, Duration::from_millis(1)).await {
                    Ok(batch) if !batch.is_empty() => messages.extend(
                        batch.iter().filter_map(|d| serde_json::from_slice::<serde_json::Value>(&d.payload).ok()),
                    ),
                    Ok(_) => break,
                    Err(e) => {
                        chrome.errors.push(format!("The queue cannot be read: {e}"));
                        break;
                    }
                }
            }
        }
        Err(e) => chrome.errors.push(format!("The queue cannot be read: {e}")),
    }
    let seen: HashSet<String> = seen_ids(&state, &page.queue).await.into_iter().collect();
    page.total = messages.len();
    page.mailboxes = group(messages, &seen);
    page.unseen = page.mailboxes.iter().map(|m| m.unseen).sum();
    page.chrome = chrome;
    html(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub(crate) struct SeenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    ids: String,
}

/// `POST /notifications/seen`: records ids as seen (CSRF-checked).
pub(crate) async fn mark_seen(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SeenForm>,
) -> Response {
    let access = access(&state, &headers, peer);
    if let Err(problem) = check_form(&access, &form.csrf) {
        let mut chrome = Chrome::new(&state, &access, "/notifications", "Notifications");
        chrome.errors.push(problem);
        let page = NotificationsPage { chrome, queue: form.queue, total: 0, unseen: 0, mailboxes: Vec::new() };
        return html(StatusCode::FORBIDDEN, &page);
    }
    if !flotilla_bus::valid_name(&form.queue) {
        return Redirect::to("/notifications").into_response();
    }
    let mut ids = seen_ids(&state, &form.queue).await;
    let known: HashSet<String> = ids.iter().cloned().collect();
    ids.extend(
        form.ids
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty() && id.len() <= 64 && !known.contains(*id))
            .map(str::to_string),
    );
    let excess = ids.len().saturating_sub(SEEN_KEEP);
    ids.drain(..excess);
    let value = serde_json::Value::Array(ids.into_iter().map(serde_json::Value::String).collect());
    if let Err(e) = state.ctx.store.put_state("webui", &state_key(&form.queue), &value).await {
        let mut chrome = Chrome::new(&state, &access, "/notifications", "Notifications");
        chrome.errors.push(format!("Could not record what was seen: {e}"));
        let page = NotificationsPage { chrome, queue: form.queue, total: 0, unseen: 0, mailboxes: Vec::new() };
        return html(StatusCode::SERVICE_UNAVAILABLE, &page);
    }
    Redirect::to(&format!("/notifications{}", crate::text::query(&[("queue", &form.queue), ("marked", "1")])))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_safe_colours_and_links_are_used() {
        let colours = [
            (Some("red"), Some("red")),
            (Some("#a0f"), Some("#a0f")),
            (Some("#aabbcc"), Some("#aabbcc")),
            (Some("#ab"), None),
            (Some("red\" onclick=\"x"), None),
            (Some("url(x)"), None),
            (None, None),
        ];
        for (value, expected) in colours {
            assert_eq!(colour(value).as_deref(), expected, "{value:?}");
        }
        let links = [
            (Some("https://example.org/x"), true),
            (Some("HTTP://a"), true),
            (Some("javascript:alert(1)"), false),
            (Some("data:text/html,x"), false),
            (Some("/relative"), false),
            (None, false),
        ];
        for (value, shown) in links {
            assert_eq!(link(value).is_some(), shown, "{value:?}");
        }
    }

    #[test]
    fn mailboxes_show_sticky_then_unseen_then_seen_newest_first() {
        let messages = vec![
            json!({"id": "1", "mailbox": "news", "subject": "old seen"}),
            json!({"id": "2", "mailbox": "news", "subject": "old unseen"}),
            json!({"id": "3", "mailbox": "alerts", "subject": "alert", "sticky": 1, "color": "red"}),
            json!({"id": "4", "mailbox": "news", "subject": "new unseen"}),
            json!({"id": "5", "subject": "no box", "sticky": "0"}),
            json!({"id": "6", "mailbox": "news", "subject": "sticky seen", "sticky": true}),
        ];
        let seen: HashSet<String> = ["1", "6"].into_iter().map(String::from).collect();
        let boxes = group(messages, &seen);
        let summary: Vec<(String, Vec<String>, usize)> = boxes
            .iter()
            .map(|b| (b.name.clone(), b.items.iter().map(|n| n.subject.clone()).collect(), b.unseen))
            .collect();
        let expect = |name: &str, subjects: &[&str], unseen| {
            (name.to_string(), subjects.iter().map(|s| s.to_string()).collect(), unseen)
        };
        assert_eq!(
            summary,
            vec![
                expect("(no mailbox)", &["no box"], 1),
                expect("alerts", &["alert"], 1),
                expect("news", &["sticky seen", "new unseen", "old unseen", "old seen"], 2),
            ]
        );
        assert_eq!(boxes[2].unseen_ids, "4,2");
        assert_eq!(boxes[1].items[0].colour.as_deref(), Some("red"));
        assert!(!boxes[0].items[0].sticky);
    }
}
