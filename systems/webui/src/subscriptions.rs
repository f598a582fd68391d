//! `/subscriptions`: the dispatcher's subscriptions (SPEC §6.1): create one (its token
//! shown once, on the answer to the form, never in a URL), add and remove definitions
//! (the API's JSON document), set the output format, delete.
//!
//! The page talks to the dispatcher through its HTTP API on this node's own listener,
//! with the admin token, rather than through the dispatcher's code: a service depends
//! on no other service's crate, and the API already checks names, documents and limits
//! and says what is wrong in the control protocol's words (`E014: Unknown wiki: …`),
//! which the page shows as they are.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use crate::pages::{Access, Chrome, access, check_form, html};
use crate::service::AppState;

pub(crate) struct DefinitionRow {
    pub wiki: String,
    pub page: String,
    pub page_rx: String,
    pub user: String,
    pub user_rx: String,
    pub flags: String,
}

pub(crate) struct SubscriptionRow {
    pub name: String,
    pub format: String,
    pub count: u64,
    pub definitions: Vec<DefinitionRow>,
    /// What the definitions box starts with.
    pub example: String,
}

#[derive(Template)]
#[template(path = "subscriptions.html")]
struct SubscriptionsPage {
    chrome: Chrome,
    /// (name, token) of the subscription just created.
    created: Option<(String, String)>,
    subscriptions: Vec<SubscriptionRow>,
    formats: &'static [&'static str],
}

const FORMATS: &[&str] = &["pipe", "xml", "json"];

/// An answer of the dispatcher's API: the status and the JSON body.
struct Answer {
    status: StatusCode,
    body: serde_json::Value,
}

impl Answer {
    /// The API's error text, or a description of the status.
    fn problem(&self) -> String {
        if self.status == StatusCode::NOT_FOUND && self.body["error"] == "no such endpoint" {
            return "The dispatcher does not run on this node (no dispatcher: section or wikimedia connector).".into();
        }
        self.body["error"].as_str().map_or_else(|| format!("the dispatcher answered {}", self.status), str::to_string)
    }
}

/// Where this node's HTTP server listens, reachable from here (an unspecified address
/// is reached on loopback).
async fn api_base(state: &AppState) -> Result<String, String> {
    let view = state.ctx.node.get().ok_or("The node is still starting; reload in a moment.")?;
    let status = view.status(true).await;
    let listen: SocketAddr =
        status["http_listen"].as_str().and_then(|a| a.parse().ok()).ok_or("The node's HTTP address is not known.")?;
    let ip = if listen.ip().is_unspecified() {
        if listen.is_ipv4() { std::net::IpAddr::from([127, 0, 0, 1]) } else { std::net::Ipv6Addr::LOCALHOST.into() }
    } else {
        listen.ip()
    };
    Ok(format!("http://{}", SocketAddr::new(ip, listen.port())))
}

async fn call(state: &AppState, method: reqwest::Method, path: &str, body: Option<String>) -> Result<Answer, String> {
    let base = api_base(state).await?;
    let mut request = state.http.request(method, format!("{base}{path}"));
    if let Some(token) = &state.admin_token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    }
    let answer = request.send().await.map_err(|e| format!("The dispatcher's API did not answer: {e}"))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let bytes = answer.bytes().await.map_err(|e| format!("The dispatcher's API did not answer: {e}"))?;
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(Answer { status, body })
}

/// A name as a URL path segment (names are `[A-Za-z0-9_.-]`; anything else is encoded).
fn segment(name: &str) -> String {
    crate::text::query_value(name)
}

fn definition_rows(document: &serde_json::Value) -> Vec<DefinitionRow> {
    let text = |d: &serde_json::Value, key: &str| d[key].as_str().unwrap_or("").to_string();
    document
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| DefinitionRow {
            wiki: text(d, "wiki"),
            page: text(d, "page"),
            page_rx: text(d, "page_rx"),
            user: text(d, "user"),
            user_rx: text(d, "user_rx"),
            flags: d["flags"]
                .as_array()
                .map(|f| f.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(","))
                .unwrap_or_default(),
        })
        .collect()
}

/// The subscriptions and their definitions (at most 200 shown).
async fn list(state: &AppState) -> Result<Vec<SubscriptionRow>, String> {
    let answer = call(state, reqwest::Method::GET, "/api/v1/subscriptions", None).await?;
    if !answer.status.is_success() {
        return Err(answer.problem());
    }
    let mut rows = Vec::new();
    for s in answer.body["subscriptions"].as_array().into_iter().flatten().take(200) {
        let name = s["name"].as_str().unwrap_or("").to_string();
        let definitions =
            call(state, reqwest::Method::GET, &format!("/api/v1/subscriptions/{}/definitions", segment(&name)), None)
                .await
                .map(|a| definition_rows(&a.body))
                .unwrap_or_default();
        rows.push(SubscriptionRow {
            format: s["format"].as_str().unwrap_or("pipe").to_string(),
            count: s["definitions"].as_u64().unwrap_or(0),
            definitions,
            example: r#"[{"wiki": "enwiki", "page": "Main Page"}]"#.to_string(),
            name,
        });
    }
    Ok(rows)
}

/// Renders the page after an action: `created` (a new token), notices, errors.
async fn render(
    state: &AppState,
    access: &Access,
    created: Option<(String, String)>,
    infos: Vec<String>,
    errors: Vec<String>,
    status: StatusCode,
) -> Response {
    let mut chrome = Chrome::new(state, access, "/subscriptions", "Subscriptions");
    chrome.infos.extend(infos);
    chrome.errors.extend(errors);
    let mut page = SubscriptionsPage { chrome, created, subscriptions: Vec::new(), formats: FORMATS };
    if !access.reader {
        page.chrome.needs_login();
        return html(StatusCode::OK, &page);
    }
    match list(state).await {
        Ok(rows) => page.subscriptions = rows,
        Err(problem) => page.chrome.errors.push(problem),
    }
    html(status, &page)
}

pub(crate) async fn page(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let access = access(&state, &headers, peer);
    render(&state, &access, None, Vec::new(), Vec::new(), StatusCode::OK).await
}

#[derive(Deserialize)]
pub(crate) struct SubscriptionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    document: String,
    #[serde(default)]
    format: String,
}

/// What a form asks the API to do: (method, path, body), or the page's message.
fn request_for(kind: &str, form: &SubscriptionForm) -> Result<(reqwest::Method, String, Option<String>), String> {
    let name = form.name.trim();
    if name.is_empty() {
        return Err("A subscription needs a name.".into());
    }
    let base = format!("/api/v1/subscriptions/{}", segment(name));
    Ok(match kind {
        "create" => (
            reqwest::Method::POST,
            "/api/v1/subscriptions".into(),
            Some(serde_json::json!({ "name": name }).to_string()),
        ),
        "definitions" => match form.action.as_str() {
            "insert" => (reqwest::Method::POST, format!("{base}/definitions"), Some(form.document.clone())),
            "remove" => (reqwest::Method::POST, format!("{base}/definitions/remove"), Some(form.document.clone())),
            other => return Err(format!("Unknown action '{other}'.")),
        },
        "format" => {
            if !FORMATS.contains(&form.format.as_str()) {
                return Err(format!("Unknown format '{}': pipe, xml or json.", form.format));
            }
            (
                reqwest::Method::PUT,
                format!("{base}/format"),
                Some(serde_json::json!({ "format": form.format }).to_string()),
            )
        }
        "delete" => (reqwest::Method::DELETE, base, None),
        other => return Err(format!("Unknown form '{other}'.")),
    })
}

async fn act(state: AppState, peer: SocketAddr, headers: HeaderMap, form: SubscriptionForm, kind: &str) -> Response {
    let access = access(&state, &headers, peer);
    if let Err(problem) = check_form(&access, &form.csrf) {
        return render(&state, &access, None, Vec::new(), vec![problem], StatusCode::FORBIDDEN).await;
    }
    let (method, path, body) = match request_for(kind, &form) {
        Ok(request) => request,
        Err(problem) => return render(&state, &access, None, Vec::new(), vec![problem], StatusCode::BAD_REQUEST).await,
    };
    let answer = match call(&state, method, &path, body).await {
        Ok(answer) => answer,
        Err(problem) => return render(&state, &access, None, Vec::new(), vec![problem], StatusCode::BAD_GATEWAY).await,
    };
    if !answer.status.is_success() {
        let status = if answer.status.is_client_error() { StatusCode::BAD_REQUEST } else { StatusCode::BAD_GATEWAY };
        return render(&state, &access, None, Vec::new(), vec![answer.problem()], status).await;
    }
    let name = form.name.trim().to_string();
    let (created, info) = match kind {
        "create" => (
            answer.body["token"].as_str().map(|token| (name.clone(), token.to_string())),
            format!("Created {name}. Keep its token: it is not shown again."),
        ),
        "definitions" if form.action == "insert" => (None, format!("Inserted: {}", answer.body["inserted"])),
        "definitions" => (None, format!("Removed: {}", answer.body["removed"])),
        "format" => (None, format!("{name} is delivered as {} now.", form.format)),
        _ => (None, format!("Deleted {name}.")),
    };
    render(&state, &access, created, vec![info], Vec::new(), StatusCode::OK).await
}

pub(crate) async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SubscriptionForm>,
) -> Response {
    act(state, peer, headers, form, "create").await
}

pub(crate) async fn definitions(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SubscriptionForm>,
) -> Response {
    act(state, peer, headers, form, "definitions").await
}

pub(crate) async fn format(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SubscriptionForm>,
) -> Response {
    act(state, peer, headers, form, "format").await
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SubscriptionForm>,
) -> Response {
    act(state, peer, headers, form, "delete").await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(name: &str, action: &str, format: &str) -> SubscriptionForm {
        SubscriptionForm {
            csrf: String::new(),
            name: name.into(),
            action: action.into(),
            document: "[]".into(),
            format: format.into(),
        }
    }

    #[test]
    fn each_form_maps_to_one_api_request() {
        // (form kind, form, method and path, or a fragment of the message)
        type Case<'a> = (&'a str, SubscriptionForm, Result<(&'a str, &'a str), &'a str>);
        let cases: &[Case] = &[
            ("create", form("bot", "", ""), Ok(("POST", "/api/v1/subscriptions"))),
            ("definitions", form("bot", "insert", ""), Ok(("POST", "/api/v1/subscriptions/bot/definitions"))),
            ("definitions", form("bot", "remove", ""), Ok(("POST", "/api/v1/subscriptions/bot/definitions/remove"))),
            ("format", form("bot", "", "xml"), Ok(("PUT", "/api/v1/subscriptions/bot/format"))),
            ("format", form("bot", "", "yaml"), Err("Unknown format")),
            ("delete", form("a/b", "", ""), Ok(("DELETE", "/api/v1/subscriptions/a%2Fb"))),
            ("create", form(" ", "", ""), Err("needs a name")),
            ("definitions", form("bot", "drop", ""), Err("Unknown action")),
        ];
        for (kind, form, expected) in cases {
            match (request_for(kind, form), expected) {
                (Ok((method, path, _)), Ok((m, p))) => assert_eq!((method.as_str(), path.as_str()), (*m, *p)),
                (Err(message), Err(fragment)) => assert!(message.contains(fragment), "{message}"),
                (got, _) => panic!("{kind}: {:?}", got.map(|(m, p, _)| (m, p))),
            }
        }
    }
}
