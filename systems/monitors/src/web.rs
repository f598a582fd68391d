//! WebFetch and WebMatches: watching a web page, as wubot's plugins of those names did.
//!
//! **webfetch** fetches `url` on every check and sends one message with the page in
//! `field` (default `content`), or, with `regexp`, only what the pattern captured
//! (its first group, else the whole match; no match is a CRITICAL message). Rules in
//! `react` usually take it from there (CaptureData, Template).
//!
//! **webmatches** fetches `url` and sends one message per *new* match of `regexp`:
//! `match` (the text) and `link` (the URL). As with Perl's `m//g` in list context,
//! a pattern with groups yields each group's text of each match, one without groups
//! the whole match. Matches are remembered in the instance's cache (forgotten 7 days
//! after they left the page), so each is reported once. A page with no match at all
//! is a CRITICAL message (`no matches found`), as in wubot: the page has probably
//! changed shape.
//!
//! The pattern is matched in wubot's default mode `m` (`^` and `$` at line ends); with
//! `modifier_s: true` in mode `s` instead (`.` matches a newline too). The syntax is
//! Rust's `regex` (no look-around or back-references).

use std::time::{Duration, SystemTime};

use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorSection, ConnectorType, decode_section, diagnostic_at};
use flotilla_core::Message;
use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use crate::http::Fetcher;
use crate::monitor::{CheckOutcome, Monitor, MonitorConnector, MonitorSettings};
use crate::seen::Seen;

pub(crate) const WEBFETCH: ConnectorType = ConnectorType {
    name: "webfetch",
    description: "a web page (or what a regexp captures of it) in a message (wubot's WebFetch)",
    build: build_webfetch,
};

pub(crate) const WEBMATCHES: ConnectorType = ConnectorType {
    name: "webmatches",
    description: "one message per new regexp match on a web page (wubot's WebMatches)",
    build: build_webmatches,
};

/// The field the page goes to unless `field` says otherwise.
pub const DEFAULT_FIELD: &str = "content";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WebFetchConfig {
    field: Option<String>,
    regexp: Option<String>,
    #[serde(default)]
    modifier_s: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WebMatchesConfig {
    regexp: String,
    #[serde(default)]
    modifier_s: bool,
}

/// Compiles a pattern in wubot's `m` mode, or `s` mode with `modifier_s`.
fn pattern(section: &ConnectorSection<'_>, text: &str, modifier_s: bool) -> Result<Regex, Vec<Diagnostic>> {
    let mut builder = RegexBuilder::new(text);
    if modifier_s {
        builder.dot_matches_new_line(true);
    } else {
        builder.multi_line(true);
    }
    builder.build().map_err(|e| vec![diagnostic_at(section, "regexp", format!("invalid regular expression: {e}"))])
}

fn build_webfetch(section: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    let (settings, (fetcher, (field, regexp))) =
        MonitorSettings::from_section(section, Duration::from_secs(3600), |rest| {
            Fetcher::from_section(rest, "webfetch", |specific| {
                let config: WebFetchConfig = decode_section(specific)?;
                if config.field.as_deref().is_some_and(str::is_empty) {
                    return Err(vec![diagnostic_at(specific, "field", "must name a field")]);
                }
                let regexp = config.regexp.as_deref().map(|r| pattern(specific, r, config.modifier_s)).transpose()?;
                Ok((config.field.unwrap_or_else(|| DEFAULT_FIELD.to_string()), regexp))
            })
        })?;
    let monitor = WebFetch { fetcher: fetcher.with_timeout(settings.timeout), field, regexp };
    Ok(Box::new(MonitorConnector { monitor, settings }))
}

fn build_webmatches(section: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    let (settings, (fetcher, regexp)) = MonitorSettings::from_section(section, Duration::from_secs(3600), |rest| {
        Fetcher::from_section(rest, "webmatches", |specific| {
            let config: WebMatchesConfig = decode_section(specific)?;
            pattern(specific, &config.regexp, config.modifier_s)
        })
    })?;
    let monitor = WebMatches { fetcher: fetcher.with_timeout(settings.timeout), regexp };
    Ok(Box::new(MonitorConnector { monitor, settings }))
}

/// The WebFetch monitor.
#[derive(Debug)]
pub struct WebFetch {
    pub fetcher: Fetcher,
    pub field: String,
    pub regexp: Option<Regex>,
}

impl WebFetch {
    /// The message for a fetched page.
    pub fn message(&self, page: &str) -> anyhow::Result<Message> {
        let value = match &self.regexp {
            None => page,
            Some(regexp) => {
                let captures = regexp
                    .captures(page)
                    .ok_or_else(|| anyhow::anyhow!("no match for regexp '{}' in the page", regexp.as_str()))?;
                captures.get(1).or(captures.get(0)).map_or("", |m| m.as_str())
            }
        };
        let mut message = Message::new();
        message.set(self.field.as_str(), value);
        message.set("link", self.fetcher.link());
        Ok(message)
    }
}

#[async_trait::async_trait]
impl Monitor for WebFetch {
    async fn check(&self, _cache: &mut Map<String, Value>, _now: SystemTime) -> anyhow::Result<CheckOutcome> {
        let page = self.fetcher.fetch().await?;
        Ok(CheckOutcome { messages: vec![self.message(&page.text())?], next_delay: None })
    }

    fn link(&self) -> Option<&str> {
        Some(self.fetcher.link())
    }
}

/// The WebMatches monitor.
#[derive(Debug)]
pub struct WebMatches {
    pub fetcher: Fetcher,
    pub regexp: Regex,
}

/// Every match of `regexp` in `text`, as Perl's `m//g` lists them: the groups of each
/// match when the pattern has groups (those that took part), else the whole matches.
pub fn all_matches<'t>(regexp: &Regex, text: &'t str) -> Vec<&'t str> {
    let groups = regexp.captures_len() - 1;
    if groups == 0 {
        return regexp.find_iter(text).map(|m| m.as_str()).collect();
    }
    regexp.captures_iter(text).flat_map(|c| (1..=groups).filter_map(move |i| c.get(i).map(|m| m.as_str()))).collect()
}

impl WebMatches {
    /// The messages for the matches in `page` not seen before, in page order.
    pub fn new_matches(
        &self,
        page: &str,
        cache: &mut Map<String, Value>,
        now: SystemTime,
    ) -> anyhow::Result<Vec<Message>> {
        let matches = all_matches(&self.regexp, page);
        if matches.is_empty() {
            anyhow::bail!("no matches found");
        }
        let mut seen = Seen::new(cache, now);
        let mut messages = Vec::new();
        for text in matches {
            if seen.first_sighting(text) {
                let mut message = Message::new();
                message.set("match", text);
                message.set("link", self.fetcher.link());
                messages.push(message);
            }
        }
        seen.expire();
        Ok(messages)
    }
}

#[async_trait::async_trait]
impl Monitor for WebMatches {
    async fn check(&self, cache: &mut Map<String, Value>, now: SystemTime) -> anyhow::Result<CheckOutcome> {
        let page = self.fetcher.fetch().await?;
        let messages = self.new_matches(&page.text(), cache, now)?;
        Ok(CheckOutcome { messages, next_delay: None })
    }

    fn link(&self) -> Option<&str> {
        Some(self.fetcher.link())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_matches(pattern: &str, modifier_s: bool, text: &str, expect: &[&str]) {
        let mut builder = RegexBuilder::new(pattern);
        if modifier_s {
            builder.dot_matches_new_line(true);
        } else {
            builder.multi_line(true);
        }
        let regexp = builder.build().unwrap();
        assert_eq!(all_matches(&regexp, text), expect, "{pattern} on {text:?}");
    }

    #[test]
    fn matches_as_perl_lists_them() {
        let page = r#"<a href="openssl-1.0.1c.tar.gz">x</a> <a href="openssl-1.0.1d.tar.gz">"#;
        check_matches(
            r#""(openssl\-[\d\.]+[a-z]?\.tar\.gz)""#,
            false,
            page,
            &["openssl-1.0.1c.tar.gz", "openssl-1.0.1d.tar.gz"],
        );
        check_matches(r"\d+", false, "a1 b22 c333", &["1", "22", "333"]);
        check_matches(r"(\w)=(\d)", false, "a=1 b=2", &["a", "1", "b", "2"]);
        check_matches(r"(x)|(y)", false, "xy", &["x", "y"]);
        // Mode m: ^ and $ at each line; mode s: . crosses lines.
        check_matches(r"^item (\w+)$", false, "item one\nitem two\n", &["one", "two"]);
        check_matches(r"<b>(.+?)</b>", false, "<b>a\nb</b>", &[]);
        check_matches(r"<b>(.+?)</b>", true, "<b>a\nb</b>", &["a\nb"]);
        check_matches(r"nothing", false, "here", &[]);
    }
}
