//! RSS: watches a feed (RSS 0.9x, 1.0 and 2.0, Atom, JSON Feed) and sends one message
//! per new item, as wubot's RSS did: items are walked oldest first (the reverse of the
//! feed's order), an item is known by its title, every title in the feed is marked
//! seen in the instance's cache on every check, and titles gone from the feed for 7
//! days are forgotten. So the first check reports every item, and later checks only
//! the new ones. An item without a title is known by its link (wubot skipped it).
//!
//! Message fields: `title` and `subject` (the item's title, or its link when it has
//! none), `link`, `body` (the content, else the summary, as the feed has it: HTML
//! stays HTML), `username` (the first author's name, else e-mail), `feed_title`,
//! `published` (Unix seconds, when the feed dates the item) and `coalesce` (the
//! connector's name).
//!
//! Failures are CRITICAL messages (linking to the feed): `Request failure: 404 Not
//! Found`, `Failure parsing feed: <the parser's reason>`, `No items found in feed`.

use std::time::{Duration, SystemTime};

use feed_rs::model::{Entry, Feed};
use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorSection, ConnectorType, decode_section};
use flotilla_core::Message;
use serde_json::{Map, Value};

use crate::http::Fetcher;
use crate::monitor::{CheckOutcome, Monitor, MonitorConnector, MonitorSettings};
use crate::seen::Seen;

pub(crate) const CONNECTOR_TYPE: ConnectorType =
    ConnectorType { name: "rss", description: "new items of an RSS, Atom or JSON feed (wubot's RSS)", build };

/// RSS has no keys besides the fetch keys.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RssConfig {}

fn build(section: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    let (settings, fetcher) = MonitorSettings::from_section(section, Duration::from_secs(30 * 60), |rest| {
        let (fetcher, _) = Fetcher::from_section(rest, "rss", decode_section::<RssConfig>)?;
        Ok(fetcher)
    })?;
    let monitor = Rss { fetcher: fetcher.with_timeout(settings.timeout), key: section.name.to_string() };
    Ok(Box::new(MonitorConnector { monitor, settings }))
}

/// The RSS monitor.
#[derive(Debug)]
pub struct Rss {
    pub fetcher: Fetcher,
    /// The connector's name, copied to `coalesce`.
    pub key: String,
}

/// Parses a feed of any supported kind; relative links resolve against `url`.
pub fn parse_feed(body: &[u8], url: &str) -> anyhow::Result<Feed> {
    feed_rs::parser::Builder::new()
        .base_uri(Some(url))
        .build()
        .parse(body)
        .map_err(|e| anyhow::anyhow!("Failure parsing feed: {e}"))
}

impl Rss {
    /// The messages for the items of `feed` not seen before, oldest first; marks every
    /// item seen and forgets those gone for a week.
    pub fn new_items(
        &self,
        feed: Feed,
        cache: &mut Map<String, Value>,
        now: SystemTime,
    ) -> anyhow::Result<Vec<Message>> {
        if feed.entries.is_empty() {
            anyhow::bail!("No items found in feed");
        }
        let feed_title = feed.title.as_ref().map(|t| t.content.trim().to_string()).filter(|t| !t.is_empty());
        let mut seen = Seen::new(cache, now);
        let mut messages = Vec::new();
        for entry in feed.entries.iter().rev() {
            let title = entry.title.as_ref().map(|t| t.content.trim()).filter(|t| !t.is_empty());
            let link = entry.links.first().map(|l| l.href.as_str()).filter(|l| !l.is_empty());
            let Some(id) = title.or(link) else {
                tracing::debug!(key = %self.key, "A feed item has neither title nor link; skipped.");
                continue;
            };
            if seen.first_sighting(id) {
                messages.push(self.message(entry, id, link, feed_title.as_deref()));
            }
        }
        seen.expire();
        tracing::debug!(key = %self.key, new = messages.len(), total = feed.entries.len(), "Feed checked.");
        Ok(messages)
    }

    fn message(&self, entry: &Entry, subject: &str, link: Option<&str>, feed_title: Option<&str>) -> Message {
        let mut message = Message::new();
        message.set("title", subject);
        message.set("subject", subject);
        if let Some(link) = link {
            message.set("link", link);
        }
        let body = entry
            .content
            .as_ref()
            .and_then(|c| c.body.as_deref())
            .or(entry.summary.as_ref().map(|s| s.content.as_str()))
            .filter(|b| !b.trim().is_empty());
        if let Some(body) = body {
            message.set("body", body);
        }
        let author = entry.authors.iter().find_map(|a| {
            // RSS 2 writes `email (Name)`; the parser leaves the parentheses on.
            let name = a.name.as_deref().map(|n| n.trim().trim_start_matches('(').trim_end_matches(')').trim());
            let name = name.filter(|n| !n.is_empty());
            name.or(a.email.as_deref())
        });
        if let Some(author) = author {
            message.set("username", author);
        }
        if let Some(feed_title) = feed_title {
            message.set("feed_title", feed_title);
        }
        if let Some(published) = entry.published.or(entry.updated) {
            message.set("published", published.timestamp());
        }
        message.set("coalesce", self.key.as_str());
        message
    }
}

#[async_trait::async_trait]
impl Monitor for Rss {
    async fn check(&self, cache: &mut Map<String, Value>, now: SystemTime) -> anyhow::Result<CheckOutcome> {
        let page = self.fetcher.fetch().await?;
        let feed = parse_feed(&page.body, self.fetcher.link())?;
        let messages = self.new_items(feed, cache, now)?;
        Ok(CheckOutcome { messages, next_delay: None })
    }

    fn link(&self) -> Option<&str> {
        Some(self.fetcher.link())
    }
}
