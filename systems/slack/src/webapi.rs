//! A Slack Web API client: `chat.postMessage`, `chat.postEphemeral`, `reactions.add`,
//! `conversations.list`, `users.info` (any method, really) at `api_url`.
//!
//! The bot token goes only into the `Authorization: Bearer` header: never into a URL,
//! a body or a log line ([`Secret`]'s `Debug` is `***`). Answers are classified by the
//! pure [`classify`]: `ok: true` → the answer; `ok: false` → [`ApiError::Slack`] with
//! Slack's `error` code (permanent: retrying `channel_not_found` cannot help); 429 →
//! the method's *tier* waits out `Retry-After` (other tiers carry on, as Slack's limits
//! are per tier) and the call is tried again; 5xx, a body that is not JSON, or no
//! connection → [`ApiError::Transient`], for the caller to retry later.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::config::Secret;

/// Slack's rate-limit tiers (api.slack.com/apis/rate-limits), plus `chat.postMessage`'s
/// own special limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Tier1,
    Tier2,
    Tier3,
    Tier4,
    PostMessage,
}

/// The tier of a method (unknown methods count as tier 3, the common one).
pub fn tier_of(method: &str) -> Tier {
    match method {
        "chat.postMessage" => Tier::PostMessage,
        "conversations.list" | "users.list" => Tier::Tier2,
        "users.info" | "chat.postEphemeral" | "auth.test" => Tier::Tier4,
        _ => Tier::Tier3,
    }
}

/// How a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// `ok: false`: Slack's error code (`channel_not_found`, `invalid_auth`, …).
    #[error("{method}: Slack answered ok:false with error '{error}'")]
    Slack { method: String, error: String },
    /// Still rate-limited after every retry.
    #[error("{method}: still rate-limited (429) after {attempts} attempts")]
    RateLimited { method: String, attempts: u32 },
    /// Worth retrying later: no connection, a 5xx, an answer that is not JSON.
    #[error("{method}: {reason}")]
    Transient { method: String, reason: String },
}

impl ApiError {
    /// Whether retrying the same call later can succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ApiError::Slack { .. })
    }
}

/// What an answer means.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Ok(Value),
    /// 429: wait this long, then retry.
    RateLimited(Duration),
    Failed(ApiError),
}

/// Classifies a Web API answer: its status, its `Retry-After` header, its body.
pub fn classify(method: &str, status: u16, retry_after: Option<&str>, body: &[u8]) -> Answer {
    if status == 429 {
        // Slack sends whole seconds; no header (or garbage) means a minute, its usual window.
        let secs = retry_after.and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(60);
        return Answer::RateLimited(Duration::from_secs(secs.min(3600)));
    }
    let transient = |reason: String| Answer::Failed(ApiError::Transient { method: method.to_string(), reason });
    let json: Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(error) => {
            let start = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
            return transient(format!("HTTP {status} with a body that is not JSON ({error}): {start:?}"));
        }
    };
    if status >= 500 {
        return transient(format!("HTTP {status}"));
    }
    match json.get("ok").and_then(Value::as_bool) {
        Some(true) => Answer::Ok(json),
        Some(false) => {
            let error = json.get("error").and_then(Value::as_str).unwrap_or("unknown_error").to_string();
            Answer::Failed(ApiError::Slack { method: method.to_string(), error })
        }
        None if status >= 400 => transient(format!("HTTP {status}")),
        None => transient(format!("HTTP {status}, a JSON answer without 'ok'")),
    }
}

/// How a method takes its arguments: Slack's write methods accept JSON, its read
/// methods only form fields.
fn takes_json(method: &str) -> bool {
    method.starts_with("chat.") || method.starts_with("reactions.")
}

/// The client.
pub struct WebApi {
    http: reqwest::Client,
    base: String,
    token: Secret,
    /// When each tier may be called again (after a 429).
    blocked: tokio::sync::Mutex<HashMap<Tier, Instant>>,
    /// 429s in a row before a call gives up (it is then retried by its caller later).
    max_attempts: u32,
}

impl std::fmt::Debug for WebApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebApi").field("base", &self.base).field("token", &self.token).finish_non_exhaustive()
    }
}

impl WebApi {
    /// # Errors
    /// The HTTP client could not be built (no TLS roots).
    pub fn new(base: &str, token: Secret) -> Result<WebApi, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebApi {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
            blocked: tokio::sync::Mutex::new(HashMap::new()),
            max_attempts: 5,
        })
    }

    /// Calls `method` with `arguments` (a JSON object), waiting out rate limits.
    ///
    /// # Errors
    /// See [`ApiError`].
    pub async fn call(&self, method: &str, arguments: &Value) -> Result<Value, ApiError> {
        let tier = tier_of(method);
        for _ in 0..self.max_attempts {
            let until = self.blocked.lock().await.get(&tier).copied();
            if let Some(until) = until {
                tokio::time::sleep_until(until).await;
            }
            let answer = self.send(method, arguments).await?;
            match answer {
                Answer::Ok(json) => return Ok(json),
                Answer::Failed(error) => return Err(error),
                Answer::RateLimited(wait) => {
                    tracing::info!(method, ?wait, ?tier, "Slack rate-limited a call (429); its tier waits.");
                    let until = Instant::now() + wait;
                    let mut blocked = self.blocked.lock().await;
                    let entry = blocked.entry(tier).or_insert(until);
                    *entry = (*entry).max(until);
                }
            }
        }
        Err(ApiError::RateLimited { method: method.to_string(), attempts: self.max_attempts })
    }

    async fn send(&self, method: &str, arguments: &Value) -> Result<Answer, ApiError> {
        let url = format!("{}/{method}", self.base);
        let request = self.http.post(&url).bearer_auth(self.token.expose());
        let request = if takes_json(method) {
            request
                .header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
                .body(serde_json::to_vec(arguments).unwrap_or_default())
        } else {
            let mut form = form_urlencoded::Serializer::new(String::new());
            if let Some(map) = arguments.as_object() {
                for (key, value) in map {
                    // Slack documents its boolean arguments as `true`/`false`.
                    let text = match value {
                        Value::Bool(flag) => std::borrow::Cow::Borrowed(if *flag { "true" } else { "false" }),
                        other => flotilla_core::message::value_text(other),
                    };
                    form.append_pair(key, &text);
                }
            }
            request.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(form.finish())
        };
        let transient = |reason: String| ApiError::Transient { method: method.to_string(), reason };
        // reqwest's errors name the URL, which holds no secret (the token is a header).
        let response = request.send().await.map_err(|e| transient(format!("no answer: {e}")))?;
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = response.bytes().await.map_err(|e| transient(format!("reading the answer: {e}")))?;
        Ok(classify(method, status, retry_after.as_deref(), &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let slack = |e: &str| Answer::Failed(ApiError::Slack { method: "chat.postMessage".into(), error: e.into() });
        let transient =
            |r: &str| Answer::Failed(ApiError::Transient { method: "chat.postMessage".into(), reason: r.into() });
        let table: Vec<(u16, Option<&str>, &str, Answer)> = vec![
            (200, None, r#"{"ok":true,"ts":"1.2"}"#, Answer::Ok(serde_json::json!({"ok": true, "ts": "1.2"}))),
            (200, None, r#"{"ok":false,"error":"channel_not_found"}"#, slack("channel_not_found")),
            (200, None, r#"{"ok":false}"#, slack("unknown_error")),
            (429, Some("7"), "", Answer::RateLimited(Duration::from_secs(7))),
            (429, None, r#"{"ok":false,"error":"ratelimited"}"#, Answer::RateLimited(Duration::from_secs(60))),
            (429, Some("soon"), "", Answer::RateLimited(Duration::from_secs(60))),
            (503, None, r#"{"ok":false,"error":"service_unavailable"}"#, transient("HTTP 503")),
            (
                502,
                None,
                "<html>Bad Gateway</html>",
                transient(
                    "HTTP 502 with a body that is not JSON (expected value at line 1 column 1): \"<html>Bad Gateway</html>\"",
                ),
            ),
            (200, None, r#"{"ts":"1"}"#, transient("HTTP 200, a JSON answer without 'ok'")),
            (404, None, r#"{"message":"no"}"#, transient("HTTP 404")),
        ];
        for (status, retry_after, body, expect) in table {
            assert_eq!(classify("chat.postMessage", status, retry_after, body.as_bytes()), expect, "{status} {body}");
        }
        assert!(!ApiError::Slack { method: "m".into(), error: "e".into() }.is_transient());
        assert_eq!(tier_of("chat.postMessage"), Tier::PostMessage);
        assert_eq!(tier_of("conversations.list"), Tier::Tier2);
    }

    #[test]
    fn the_token_is_not_in_debug() {
        let api = WebApi::new("http://127.0.0.1:1", Secret::new("xoxb-secret")).unwrap();
        assert!(!format!("{api:?}").contains("xoxb"), "{api:?}");
    }
}
