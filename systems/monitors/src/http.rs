//! Fetching a web page for the monitors that watch one (rss, webfetch, webmatches), as
//! wubot's WebFetcher did: a GET of `url`, optionally with basic auth (`user`, `pass`)
//! and through a `proxy`, under a User-Agent (`agent`) that says what is asking.
//! Anything but a 2xx answer is an error (`Request failure: 404 Not Found`), which the
//! scheduler turns into a CRITICAL message.
//!
//! Timeouts are a connect timeout and a read timeout (each the monitor's `timeout`),
//! not a whole-request timeout, and the body is read in chunks up to `max_size`, so a
//! slow or endless answer can neither hang a check past its timeout nor fill memory.
//! TLS is rustls with the aws-lc-rs provider.

use std::sync::OnceLock;
use std::time::Duration;

use flotilla_config::{Diagnostic, Located, Node};
use flotilla_connector::{ConnectorSection, decode_section, diagnostic_at, split_section};
use flotilla_core::redact::redact_url;

/// The keys of a section that configure the fetch.
pub const HTTP_KEYS: [&str; 6] = ["url", "agent", "user", "pass", "proxy", "max_size"];

/// Bodies larger than this are refused unless `max_size` says otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// The longest wait for a connection, whatever the monitor's timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    url: Located<String>,
    agent: Option<String>,
    user: Option<String>,
    pass: Option<String>,
    proxy: Option<Located<String>>,
    max_size: Option<Located<String>>,
}

/// Why a fetch failed. Messages start as wubot's did (`Request failure: …`).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("Request failure: {0}")]
    Request(String),
    #[error("Request failure: {0}")]
    Status(reqwest::StatusCode),
    #[error("Request failure: the answer is larger than {0} bytes (max_size)")]
    TooLarge(u64),
}

/// One configured URL and how to fetch it. Its `Debug` shows no credentials.
pub struct Fetcher {
    url: String,
    /// `url` without its user information, for messages (see [`Fetcher::link`]).
    link: String,
    agent: String,
    auth: Option<(String, String)>,
    proxy: Option<String>,
    max_bytes: u64,
    timeout: Duration,
    /// Built on first use: setting up TLS (reading the system's roots) is work a
    /// configuration check should not do.
    client: OnceLock<reqwest::Client>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("url", &self.link)
            .field("agent", &self.agent)
            .field("auth", &self.auth.as_ref().map(|(user, _)| format!("{user}:***")))
            .field("proxy", &self.proxy.as_deref().map(redact_url))
            .field("max_bytes", &self.max_bytes)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A fetched answer.
#[derive(Debug)]
pub struct Page {
    pub body: Vec<u8>,
    /// The `charset` of the `Content-Type` header, if it named one.
    pub charset: Option<String>,
}

impl Page {
    /// The body as text: decoded by its byte-order mark, else the declared charset,
    /// else as UTF-8; undecodable bytes become U+FFFD.
    pub fn text(&self) -> String {
        let declared = self.charset.as_deref().and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()));
        let (text, _, _) = declared.unwrap_or(encoding_rs::UTF_8).decode(&self.body);
        text.into_owned()
    }
}

impl Fetcher {
    /// Splits the fetch keys off a section (the rest is for `specific`), checks them,
    /// and reports the problems of both parts together. `kind` names the monitor in the
    /// default User-Agent.
    pub fn from_section<T>(
        section: &ConnectorSection<'_>,
        kind: &str,
        specific: impl FnOnce(&ConnectorSection<'_>) -> Result<T, Vec<Diagnostic>>,
    ) -> Result<(Fetcher, T), Vec<Diagnostic>> {
        let (http, rest): (Node, Node) = split_section(section.node, &HTTP_KEYS);
        let http_section = ConnectorSection { name: section.name, node: &http, path: section.path.clone() };
        let rest_section = ConnectorSection { name: section.name, node: &rest, path: section.path.clone() };
        let mut errors = Vec::new();
        let fetcher = match decode_section::<RawHttp>(&http_section) {
            Ok(raw) => Fetcher::check(&http_section, raw, kind).map_err(|more| errors.extend(more)).ok(),
            Err(more) => {
                errors.extend(more);
                None
            }
        };
        let specific = specific(&rest_section).map_err(|more| errors.extend(more)).ok();
        match (fetcher, specific) {
            (Some(fetcher), Some(specific)) if errors.is_empty() => Ok((fetcher, specific)),
            _ => Err(errors),
        }
    }

    fn check(section: &ConnectorSection<'_>, raw: RawHttp, kind: &str) -> Result<Fetcher, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        match reqwest::Url::parse(&raw.url.value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(url) => errors.push(diagnostic_at(
                section,
                "url",
                format!("'{}' is a {} URL; expected http:// or https://", redact_url(&raw.url.value), url.scheme()),
            )),
            Err(e) => errors.push(diagnostic_at(
                section,
                "url",
                format!("'{}' is not a URL: {e}", redact_url(&raw.url.value)),
            )),
        }
        let auth = match (raw.user, raw.pass) {
            (Some(user), Some(pass)) => Some((user, pass)),
            (None, None) => None,
            (Some(_), None) => {
                errors.push(diagnostic_at(section, "user", "'user' needs 'pass' too"));
                None
            }
            (None, Some(_)) => {
                errors.push(diagnostic_at(section, "pass", "'pass' needs 'user' too"));
                None
            }
        };
        if let Some(proxy) = &raw.proxy
            && let Err(e) = reqwest::Proxy::all(proxy.value.as_str())
        {
            errors.push(diagnostic_at(
                section,
                "proxy",
                format!("'{}' is not a proxy URL: {}", redact_url(&proxy.value), flotilla_core::error_chain(&e)),
            ));
        }
        let max_bytes = match &raw.max_size {
            None => DEFAULT_MAX_BYTES,
            Some(text) => match flotilla_core::parse_size(&text.value) {
                Ok(0) => {
                    errors.push(diagnostic_at(section, "max_size", "must be more than 0 bytes"));
                    DEFAULT_MAX_BYTES
                }
                Ok(bytes) => bytes,
                Err(e) => {
                    errors.push(diagnostic_at(section, "max_size", e.to_string()));
                    DEFAULT_MAX_BYTES
                }
            },
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Fetcher {
            link: without_credentials(&raw.url.value),
            url: raw.url.value,
            agent: raw.agent.unwrap_or_else(|| default_agent(kind)),
            auth,
            proxy: raw.proxy.map(|p| p.value),
            max_bytes,
            timeout: Duration::from_secs(30),
            client: OnceLock::new(),
        })
    }

    /// Uses the monitor's timeout for connecting and for each read.
    pub fn with_timeout(mut self, timeout: Duration) -> Fetcher {
        self.timeout = timeout;
        self
    }

    /// The configured URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL as messages show it (`link`, the base of a feed's relative links): the
    /// configured one without a `user:password@` (which still logs in, like
    /// `user`/`pass`). Messages go to chats, queues and subscribers.
    pub fn link(&self) -> &str {
        &self.link
    }

    fn client(&self) -> Result<&reqwest::Client, FetchError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(self.agent.as_str())
            .connect_timeout(self.timeout.min(MAX_CONNECT_TIMEOUT))
            .read_timeout(self.timeout);
        if let Some(proxy) = &self.proxy {
            builder = builder.proxy(
                reqwest::Proxy::all(proxy.as_str()).map_err(|e| FetchError::Client(flotilla_core::error_chain(&e)))?,
            );
        }
        let client = builder.build().map_err(|e| FetchError::Client(flotilla_core::error_chain(&e)))?;
        Ok(self.client.get_or_init(|| client))
    }

    /// GETs the URL and reads the whole body (up to `max_size`).
    pub async fn fetch(&self) -> Result<Page, FetchError> {
        let mut request = self.client()?.get(self.url.as_str());
        if let Some((user, pass)) = &self.auth {
            request = request.basic_auth(user, Some(pass));
        }
        let mut response = request.send().await.map_err(request_failure)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status));
        }
        if response.content_length().is_some_and(|length| length > self.max_bytes) {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        let charset = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(charset_of);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_failure)? {
            if body.len() as u64 + chunk.len() as u64 > self.max_bytes {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Page { body, charset })
    }
}

/// A failed request, told without the credentials of its URL (reqwest's message
/// quotes the URL, and the message becomes a CRITICAL message's subject).
fn request_failure(mut error: reqwest::Error) -> FetchError {
    if let Some(url) = error.url_mut() {
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    FetchError::Request(flotilla_core::error_chain(&error))
}

/// `url` without a `user:password@`; as it is when it has none (or does not parse).
fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

fn default_agent(kind: &str) -> String {
    format!("Flotilla/{} ({kind} monitor; wubot-style)", env!("CARGO_PKG_VERSION"))
}

/// The `charset` parameter of a `Content-Type` value.
fn charset_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim().eq_ignore_ascii_case("charset").then(|| value.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_charset(content_type: &str, expect: Option<&str>) {
        assert_eq!(charset_of(content_type).as_deref(), expect, "{content_type}");
    }

    #[test]
    fn charsets_from_content_type() {
        check_charset("text/html; charset=ISO-8859-1", Some("ISO-8859-1"));
        check_charset("text/html;charset=\"utf-8\"", Some("utf-8"));
        check_charset("application/xml; boundary=x; Charset=koi8-r", Some("koi8-r"));
        check_charset("text/html", None);
        check_charset("text/html; charsetx=utf-8", None);
    }

    #[test]
    fn text_follows_the_declared_charset_and_the_bom() {
        let latin1 = Page { body: b"caf\xe9".to_vec(), charset: Some("iso-8859-1".into()) };
        assert_eq!(latin1.text(), "café");
        let undeclared = Page { body: "café".as_bytes().to_vec(), charset: None };
        assert_eq!(undeclared.text(), "café");
        let bom = Page { body: b"\xef\xbb\xbfhi".to_vec(), charset: Some("iso-8859-1".into()) };
        assert_eq!(bom.text(), "hi", "a BOM wins over the header");
        let broken = Page { body: b"a\xffb".to_vec(), charset: Some("no-such-charset".into()) };
        assert_eq!(broken.text(), "a\u{fffd}b");
    }
}
