//! A small WebDriver client for driving a real headless Chromium from tests: a
//! throwaway `chromedriver` (Debian's `chromium-driver`, installed by `scripts/peers
//! ensure chromium`) and the few W3C WebDriver commands the web UI's tests use
//! (navigate, find, read text, click, type, run a script, screenshot).
//!
//! WebDriver is plain HTTP with JSON bodies, so this is a page of code on the
//! workspace's reqwest rather than a client crate (fantoccini, thirtyfour): those bring
//! their own HTTP stacks, WebSocket and TLS features the tests do not need, and
//! build time on a two-core machine.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// What went wrong talking to the browser.
#[derive(Debug, thiserror::Error)]
pub enum WebDriverError {
    #[error("cannot start chromedriver: {0}")]
    Start(String),
    #[error("WebDriver request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("WebDriver error {error}: {message}")]
    Command { error: String, message: String },
    #[error("unexpected WebDriver answer: {0}")]
    Answer(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

pub type Result<T> = std::result::Result<T, WebDriverError>;

/// A running chromedriver with one headless Chromium session. Both end on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(9515)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Result<Browser> {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                WebDriverError::Start(format!("{e} (is chromium-driver installed? scripts/peers ensure chromium)"))
            })?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(answer) = http.get(format!("{base}/status")).send().await
                && answer.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(WebDriverError::Start("chromedriver did not answer within 20 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut browser = Browser { driver, base, session: String::new(), http };
        let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| Path::new(p).exists());
        let mut options = json!({
            "args": [
                "--headless=new",
                // Tests run as root in containers, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                format!("--window-size={width},{height}"),
            ]
        });
        if let Some(binary) = binary {
            options["binary"] = json!(binary);
        }
        let answer = browser
            .command(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}),
            )
            .await?;
        browser.session =
            answer["sessionId"].as_str().ok_or_else(|| WebDriverError::Answer(answer.to_string()))?.to_string();
        Ok(browser)
    }

    /// Sends one command; `path` is relative to the driver (`/session`) or, starting
    /// with `./`, to this session.
    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value> {
        let url = match path.strip_prefix("./") {
            Some(rest) => format!("{}/session/{}/{rest}", self.base, self.session),
            None => format!("{}{path}", self.base),
        };
        let mut request = self.http.request(method.clone(), url);
        if method != reqwest::Method::GET && method != reqwest::Method::DELETE {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body).unwrap_or_default());
        }
        let bytes = request.send().await?.bytes().await?;
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|_| WebDriverError::Answer(String::from_utf8_lossy(&bytes).into_owned()))?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            return Err(WebDriverError::Command {
                error: error.to_string(),
                message: value.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
            });
        }
        Ok(value)
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.command(reqwest::Method::POST, "./url", json!({ "url": url })).await.map(drop)
    }

    /// The URL of the current page.
    pub async fn url(&self) -> Result<String> {
        let value = self.command(reqwest::Method::GET, "./url", Value::Null).await?;
        value.as_str().map(str::to_string).ok_or_else(|| WebDriverError::Answer(value.to_string()))
    }

    /// The page's title.
    pub async fn title(&self) -> Result<String> {
        let value = self.command(reqwest::Method::GET, "./title", Value::Null).await?;
        Ok(value.as_str().unwrap_or_default().to_string())
    }

    /// The first element matching CSS `selector`.
    pub async fn find(&self, selector: &str) -> Result<Element> {
        let value = self
            .command(reqwest::Method::POST, "./element", json!({"using": "css selector", "value": selector}))
            .await?;
        element(&value)
    }

    /// Every element matching CSS `selector`.
    pub async fn find_all(&self, selector: &str) -> Result<Vec<Element>> {
        let value = self
            .command(reqwest::Method::POST, "./elements", json!({"using": "css selector", "value": selector}))
            .await?;
        value.as_array().ok_or_else(|| WebDriverError::Answer(value.to_string()))?.iter().map(element).collect()
    }

    /// The rendered text of `element`.
    pub async fn text(&self, element: &Element) -> Result<String> {
        let value = self.command(reqwest::Method::GET, &format!("./element/{}/text", element.0), Value::Null).await?;
        Ok(value.as_str().unwrap_or_default().to_string())
    }

    /// The rendered text of the first element matching `selector`.
    pub async fn text_of(&self, selector: &str) -> Result<String> {
        let element = self.find(selector).await?;
        self.text(&element).await
    }

    pub async fn click(&self, element: &Element) -> Result<()> {
        self.command(reqwest::Method::POST, &format!("./element/{}/click", element.0), json!({})).await.map(drop)
    }

    /// Clears a text field and types `text` into it.
    pub async fn fill(&self, selector: &str, text: &str) -> Result<()> {
        let element = self.find(selector).await?;
        self.command(reqwest::Method::POST, &format!("./element/{}/clear", element.0), json!({})).await?;
        self.command(reqwest::Method::POST, &format!("./element/{}/value", element.0), json!({ "text": text }))
            .await
            .map(drop)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns
    /// its result. WebDriver runs it outside the page's Content-Security-Policy.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.command(reqwest::Method::POST, "./execute/sync", json!({"script": script, "args": args})).await
    }

    /// The page's HTML as the browser holds it now.
    pub async fn source(&self) -> Result<String> {
        let value = self.command(reqwest::Method::GET, "./source", Value::Null).await?;
        Ok(value.as_str().unwrap_or_default().to_string())
    }

    /// Waits until `check` answers `Some` (polling every 100 ms), up to `timeout`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = check().await {
                return Ok(found);
            }
            if Instant::now() > deadline {
                return Err(WebDriverError::Timeout(timeout, what.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of `selector` contains `needle`; returns that text.
    pub async fn wait_for_text(&self, selector: &str, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for(&format!("{needle:?} in {selector}"), timeout, move || async move {
            self.text_of(selector).await.ok().filter(|t| t.contains(needle))
        })
        .await
    }

    /// Sets the window's size (phone width, say).
    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        self.command(reqwest::Method::POST, "./window/rect", json!({"width": width, "height": height})).await.map(drop)
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let value = self.command(reqwest::Method::GET, "./screenshot", Value::Null).await?;
        let encoded = value.as_str().ok_or_else(|| WebDriverError::Answer("screenshot without data".into()))?;
        let png = decode_base64(encoded).ok_or_else(|| WebDriverError::Answer("screenshot not base64".into()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| WebDriverError::Answer(e.to_string()))?;
        }
        std::fs::write(path, png).map_err(|e| WebDriverError::Answer(e.to_string()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The session's Chromium is chromedriver's child: killing the driver alone would
        // leave it behind, so end the session first (a blocking request: Drop cannot await).
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            delete_blocking(&url);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `DELETE url` over a plain socket (HTTP/1.0, the driver on loopback).
fn delete_blocking(url: &str) {
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else { return };
    let Some((host, path)) = rest.split_once('/') else { return };
    let Ok(mut stream) = std::net::TcpStream::connect(host) else { return };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(stream, "DELETE /{path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n");
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
}

fn element(value: &Value) -> Result<Element> {
    value
        .get(ELEMENT_KEY)
        .and_then(Value::as_str)
        .map(|id| Element(id.to_string()))
        .ok_or_else(|| WebDriverError::Answer(value.to_string()))
}

/// Standard base64 (with padding, as WebDriver sends screenshots).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let trimmed = bytes.strip_suffix(b"==").or_else(|| bytes.strip_suffix(b"=")).unwrap_or(&bytes);
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    for chunk in trimmed.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        let take = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        let cases: &[(&str, Option<&[u8]>)] = &[
            ("", Some(b"")),
            ("Zg==", Some(b"f")),
            ("Zm8=", Some(b"fo")),
            ("Zm9v", Some(b"foo")),
            ("Zm9vYmFy", Some(b"foobar")),
            ("iVBORw0KGgo=", Some(b"\x89PNG\r\n\x1a\n")),
            ("Zm9v!", None),
        ];
        for (text, expected) in cases {
            assert_eq!(decode_base64(text).as_deref(), *expected, "{text}");
        }
    }
}
