//! The router, what every page shares (the layout's data, who is asking, the security
//! headers), and the login and logout forms. Each page's own handler lives in its
//! module (`fleet`, `tail`, `logs`, …).
//!
//! Bad input never ends in a 500: a malformed condition, an unknown queue, a search the
//! engine rejects, an expired session or a missing CSRF token are all shown as a message
//! on the page (with a 4xx status where the request itself was wrong).

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::security::{self, LOGIN_CSRF_COOKIE, SESSION_COOKIE, Session, SessionError};
use crate::service::AppState;

/// The web UI's routes (the node adds its own and serves them all).
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(crate::fleet::page))
        .route("/login", get(login_form).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/tail", get(crate::tail::page))
        .route("/tail/events", get(crate::tail::events))
        .route("/logs", get(crate::logs::page))
        .route("/notifications", get(crate::notifications::page))
        .route("/subscriptions", get(crate::subscriptions::page))
        .route("/subscriptions/create", axum::routing::post(crate::subscriptions::create))
        .route("/subscriptions/definitions", axum::routing::post(crate::subscriptions::definitions))
        .route("/subscriptions/format", axum::routing::post(crate::subscriptions::format))
        .route("/subscriptions/delete", axum::routing::post(crate::subscriptions::delete))
        .route("/notifications/seen", axum::routing::post(crate::notifications::mark_seen))
        .route("/assets/{name}", get(asset))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers on every answer of the UI: the Content-Security-Policy (no inline script or
/// style), no MIME sniffing, no framing, no referrer leaving the site, and pages never
/// cached (they show live state and secrets such as a new subscription's token).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(security::CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn asset(Path(name): Path<String>) -> Response {
    match crate::assets::find(&format!("/assets/{name}")) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            asset.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Who is asking, as far as pages care.
pub(crate) struct Access {
    /// The logged-in session (id, session), if any.
    pub session: Option<(String, Session)>,
    /// May read beyond the public view: logged in, or (no admin token configured) on loopback.
    pub reader: bool,
    /// Why a session cookie did not count (expired, unknown), to say on the page.
    pub session_problem: Option<SessionError>,
}

impl Access {
    pub fn admin(&self) -> bool {
        self.session.is_some()
    }

    /// The session's CSRF token ("" without a session).
    pub fn csrf(&self) -> &str {
        self.session.as_ref().map_or("", |(_, s)| s.csrf.as_str())
    }
}

pub(crate) fn access(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> Access {
    let cookies = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut access = Access { session: None, reader: false, session_problem: None };
    if state.admin_token.is_some()
        && let Some(id) = security::cookie(cookies, SESSION_COOKIE).filter(|id| !id.is_empty())
    {
        let found = state.sessions.lock().unwrap_or_else(|e| e.into_inner()).find(id, now_secs());
        match found {
            Ok(session) => access.session = Some((id.to_string(), session)),
            Err(problem) => access.session_problem = Some(problem),
        }
    }
    access.reader = access.session.is_some() || (state.admin_token.is_none() && peer.ip().is_loopback());
    access
}

/// What the layout (`base.html`) shows around every page.
pub(crate) struct Chrome {
    pub title: String,
    pub node: String,
    /// The path of the page, to mark it in the navigation.
    pub current: &'static str,
    pub admin: bool,
    pub login_possible: bool,
    pub csrf: String,
    pub errors: Vec<String>,
    pub infos: Vec<String>,
    pub style: &'static str,
    pub script: &'static str,
    /// Whether the page loads the live-update script.
    pub live: bool,
}

impl Chrome {
    pub fn new(state: &AppState, access: &Access, current: &'static str, title: &str) -> Chrome {
        let mut errors = Vec::new();
        if let Some(problem) = access.session_problem {
            errors.push(problem.to_string());
        }
        Chrome {
            title: title.to_string(),
            node: state.ctx.node_name.clone(),
            current,
            admin: access.admin(),
            login_possible: state.admin_token.is_some(),
            csrf: access.csrf().to_string(),
            errors,
            infos: Vec::new(),
            style: &crate::assets::STYLE.path,
            script: &crate::assets::SCRIPT.path,
            live: false,
        }
    }

    /// The layout of a logged-in page of node `bench` (no request, no service).
    pub fn for_benchmark() -> Chrome {
        Chrome {
            title: "Fleet".into(),
            node: "bench".into(),
            current: "/",
            admin: true,
            login_possible: true,
            csrf: crate::security::random_token(),
            errors: Vec::new(),
            infos: Vec::new(),
            style: &crate::assets::STYLE.path,
            script: &crate::assets::SCRIPT.path,
            live: false,
        }
    }

    /// The navigation: (path, label).
    pub fn nav(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("/", "Fleet"),
            ("/tail", "Tail"),
            ("/logs", "Logs"),
            ("/notifications", "Notifications"),
            ("/subscriptions", "Subscriptions"),
        ]
    }

    /// The notice for a reader-only page seen without the right to read it.
    pub fn needs_login(&mut self) {
        self.infos.push(if self.login_possible {
            "Log in with the admin token to see this page.".to_string()
        } else {
            "Without http.admin_token this page answers on loopback only.".to_string()
        });
    }
}

/// A rendered template as an HTML answer with `status`.
pub(crate) fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(text) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], text).into_response(),
        Err(error) => {
            tracing::warn!(%error, "A web UI page could not be rendered.");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    csrf: String,
}

/// The login form, with a fresh double-submit CSRF token (the cookie and the field).
fn login_page(state: &AppState, access: &Access, status: StatusCode, errors: Vec<String>) -> Response {
    let mut chrome = Chrome::new(state, access, "/login", "Log in");
    chrome.errors.extend(errors);
    if state.admin_token.is_none() {
        chrome.errors.push("No http.admin_token is configured: the web UI is read-only.".into());
    }
    let csrf = security::random_token();
    let cookie = security::set_cookie(LOGIN_CSRF_COOKIE, &csrf, state.settings.secure_cookies, None);
    let mut response = html(status, &LoginPage { chrome, csrf });
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn login_form(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let access = access(&state, &headers, peer);
    login_page(&state, &access, StatusCode::OK, Vec::new())
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// Logs in: rate-limited per address, the double-submit CSRF token checked, the token
/// compared in constant time; success opens a session and goes to the fleet page.
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let access = access(&state, &headers, peer);
    let Some(expected) = state.admin_token.clone() else {
        return login_page(&state, &access, StatusCode::FORBIDDEN, Vec::new());
    };
    let cookies = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let cookie_csrf = security::cookie(cookies, LOGIN_CSRF_COOKIE).unwrap_or("");
    if form.csrf.is_empty() || !security::same_secret(&form.csrf, cookie_csrf) {
        return login_page(
            &state,
            &access,
            StatusCode::FORBIDDEN,
            vec!["The form's CSRF token is missing or wrong; please try again.".into()],
        );
    }
    let allowed = state.logins.lock().unwrap_or_else(|e| e.into_inner()).attempt(peer.ip(), now_secs());
    if let Err(wait) = allowed {
        return login_page(
            &state,
            &access,
            StatusCode::TOO_MANY_REQUESTS,
            vec![format!("Too many login attempts from your address; try again in {wait} s.")],
        );
    }
    if !security::same_secret(form.token.trim(), &expected) {
        tracing::info!(peer = %peer.ip(), "A web UI login with a wrong admin token was refused.");
        return login_page(&state, &access, StatusCode::UNAUTHORIZED, vec!["That is not the admin token.".into()]);
    }
    let (id, _) = state.sessions.lock().unwrap_or_else(|e| e.into_inner()).open(now_secs());
    // A browser-session cookie: the server's expiry decides, so an expired session is
    // still presented and can be told apart ("your session has expired") from none.
    let cookie = security::set_cookie(SESSION_COOKIE, &id, state.settings.secure_cookies, None);
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Checks a state-changing request: a session, and the form's CSRF token equal to the
/// session's. `Err` is the page's message.
pub(crate) fn check_form(access: &Access, given_csrf: &str) -> Result<(), String> {
    let Some((_, session)) = &access.session else {
        return Err("You are not logged in (or your session has ended): log in to change anything.".into());
    };
    if given_csrf.is_empty() || !security::same_secret(given_csrf, &session.csrf) {
        return Err(
            "The form's CSRF token is missing or wrong: nothing was changed. Reload the page and try again.".into()
        );
    }
    Ok(())
}

async fn logout(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let access = access(&state, &headers, peer);
    if let Err(problem) = check_form(&access, &form.csrf) {
        return login_page(&state, &access, StatusCode::FORBIDDEN, vec![problem]);
    }
    if let Some((id, _)) = &access.session {
        state.sessions.lock().unwrap_or_else(|e| e.into_inner()).close(id);
    }
    let cookie = security::set_cookie(SESSION_COOKIE, "", state.settings.secure_cookies, Some(0));
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
