//! `/logs`: the IRC log (SPEC §7's `irclog` table) by network and channel, newest
//! first, paged by id, and searchable by text through the full-text index the IRC
//! system's migration 2 creates: SQLite's FTS5 table `irclog_search` (the query in FTS5
//! syntax: words, `"a phrase"`, `a OR b`, `NOT`, `pre*`), Postgres's GIN index on
//! `to_tsvector('simple', message)` (the query as `websearch_to_tsquery` reads it:
//! words, `"a phrase"`, `or`, `-word`).
//!
//! A query the engine rejects (FTS5 syntax errors) is said on the page; so is a store
//! with no IRC log yet (no logger has run).

use std::collections::HashMap;
use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use flotilla_store::{Dialect, ErrorKind, Param, Row, Store, StoreError};

use crate::pages::{Chrome, access, html};
use crate::paging::{self, PAGE_SIZE};
use crate::service::AppState;
use crate::text;

/// One line of the log as shown.
pub struct Line {
    pub id: i64,
    pub time: String,
    pub network: String,
    pub channel: String,
    pub nick: String,
    pub kind: String,
    pub message: String,
}

pub(crate) struct ChannelRow {
    pub network: String,
    pub channel: String,
    pub lines: i64,
}

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage {
    chrome: Chrome,
    networks: Vec<String>,
    network: String,
    channel: String,
    query: String,
    channels: Vec<ChannelRow>,
    heading: String,
    lines: Vec<Line>,
    older: Option<String>,
    newest: String,
}

/// What to show: filters, a search, a page cursor.
#[derive(Debug, Default, Clone)]
pub struct LogQuery {
    pub network: String,
    pub channel: String,
    pub search: String,
    pub before: Option<i64>,
}

/// Why the log could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("There is no IRC log in this store yet (no IRC connector with log: true has run).")]
    NoLog,
    #[error("The search engine rejected the query: {0}")]
    Rejected(String),
    #[error("The log cannot be read now: {0}")]
    Unavailable(String),
}

fn log_error(error: StoreError) -> LogError {
    let text = flotilla_core::error_chain(&error);
    if text.contains("no such table") || text.contains("does not exist") {
        return LogError::NoLog;
    }
    match error.kind() {
        // The engine's own words (the innermost cause), without the driver's prefixes.
        ErrorKind::Refused => LogError::Rejected(engine_words(&error)),
        _ => LogError::Unavailable(text),
    }
}

/// The innermost cause of `error`, without sqlx's "error returned from database:" and
/// SQLite's "(code: 1)".
fn engine_words(error: &dyn std::error::Error) -> String {
    let mut innermost = error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    let text = innermost.to_string();
    let text = text.strip_prefix("error returned from database: ").unwrap_or(&text);
    let text = match text.strip_prefix("(code: ") {
        Some(rest) => rest.split_once(") ").map_or(rest, |(_, words)| words),
        None => text,
    };
    text.to_string()
}

const COLUMNS: &str = "l.id, l.received_at, l.networkname, l.target, l.source, l.irc_message_type, l.message";

/// The SQL and its parameters for one page of lines, newest first (one row more than a
/// page, to learn whether another follows).
pub fn lines_sql<'a>(dialect: Dialect, q: &'a LogQuery) -> (String, Vec<Param<'a>>) {
    let mut params: Vec<Param<'a>> = Vec::new();
    let mut conditions: Vec<String> = Vec::new();
    let bind = |params: &mut Vec<Param<'a>>, value: Param<'a>| {
        params.push(value);
        dialect.placeholder(params.len())
    };
    let search = q.search.trim();
    let from = if search.is_empty() {
        "irclog l".to_string()
    } else {
        match dialect {
            Dialect::Sqlite => {
                let p = bind(&mut params, Param::Text(search));
                conditions.push(format!("irclog_search MATCH {p}"));
                "irclog_search s JOIN irclog l ON l.id = s.rowid".to_string()
            }
            Dialect::Postgres => {
                let p = bind(&mut params, Param::Text(search));
                conditions.push(format!("to_tsvector('simple', l.message) @@ websearch_to_tsquery('simple', {p})"));
                "irclog l".to_string()
            }
        }
    };
    if !q.network.is_empty() {
        let p = bind(&mut params, Param::Text(&q.network));
        conditions.push(format!("l.networkname = {p}"));
    }
    if !q.channel.is_empty() {
        let p = bind(&mut params, Param::Text(&q.channel));
        conditions.push(format!("l.target = {p}"));
    }
    if let Some(before) = q.before {
        let p = bind(&mut params, Param::Int(before));
        conditions.push(format!("l.id < {p}"));
    }
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    // FTS5 returns rows in rowid order on its own: ordering by its rowid lets SQLite
    // stop after the page instead of sorting every match.
    let order = if !search.is_empty() && dialect == Dialect::Sqlite { "s.rowid" } else { "l.id" };
    (format!("SELECT {COLUMNS} FROM {from}{filter} ORDER BY {order} DESC LIMIT {}", PAGE_SIZE + 1), params)
}

fn line(row: &Row) -> Result<Line, StoreError> {
    Ok(Line {
        id: row.int(0)?,
        time: text::utc_time(row.int(1)?),
        network: row.text(2)?.to_string(),
        channel: row.text(3)?.to_string(),
        nick: row.text(4)?.to_string(),
        kind: row.text(5)?.to_string(),
        message: row.text(6)?.to_string(),
    })
}

/// One page of the log.
pub async fn lines(store: &Store, q: &LogQuery) -> Result<paging::Page<Line>, LogError> {
    let (sql, params) = lines_sql(store.dialect(), q);
    let rows = store.fetch_all(&sql, &params).await.map_err(log_error)?;
    let lines =
        rows.iter().map(line).collect::<Result<Vec<_>, _>>().map_err(|e| LogError::Unavailable(e.to_string()))?;
    Ok(paging::page(lines, PAGE_SIZE, |l| l.id))
}

async fn networks(store: &Store) -> Result<Vec<String>, LogError> {
    let rows = store
        .fetch_all("SELECT DISTINCT networkname FROM irclog ORDER BY networkname LIMIT 500", &[])
        .await
        .map_err(log_error)?;
    Ok(rows.iter().filter_map(|r| r.text(0).ok().map(str::to_string)).collect())
}

/// The channels of a network with their line counts (only for a chosen network: over
/// the whole log this would read every row).
async fn channels(store: &Store, network: &str) -> Result<Vec<ChannelRow>, LogError> {
    let sql = format!(
        "SELECT target, COUNT(*) FROM irclog WHERE networkname = {} GROUP BY target ORDER BY target LIMIT 500",
        store.dialect().placeholder(1)
    );
    let rows = store.fetch_all(&sql, &[Param::Text(network)]).await.map_err(log_error)?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(ChannelRow {
                network: network.to_string(),
                channel: r.text(0).ok()?.to_string(),
                lines: r.int(1).ok()?,
            })
        })
        .collect())
}

pub(crate) async fn page(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let access = access(&state, &headers, peer);
    let mut chrome = Chrome::new(&state, &access, "/logs", "IRC log");
    let get = |key: &str| query.get(key).map_or("", |v| v.trim()).to_string();
    let q = LogQuery {
        network: get("network"),
        channel: get("channel"),
        search: get("q"),
        before: paging::cursor(query.get("before").map(String::as_str)),
    };
    let mut page = LogsPage {
        chrome: Chrome::new(&state, &access, "/logs", "IRC log"),
        networks: Vec::new(),
        network: q.network.clone(),
        channel: q.channel.clone(),
        query: q.search.clone(),
        channels: Vec::new(),
        heading: String::new(),
        lines: Vec::new(),
        older: None,
        newest: String::new(),
    };
    if !access.reader {
        chrome.needs_login();
        page.chrome = chrome;
        return html(StatusCode::OK, &page);
    }
    let store = &state.ctx.store;
    let mut status = StatusCode::OK;
    match networks(store).await {
        Ok(found) => page.networks = found,
        Err(problem) => chrome.errors.push(problem.to_string()),
    }
    if chrome.errors.is_empty() {
        if !q.network.is_empty() && q.search.is_empty() && q.channel.is_empty() {
            match channels(store, &q.network).await {
                Ok(found) => page.channels = found,
                Err(problem) => chrome.errors.push(problem.to_string()),
            }
        }
        match lines(store, &q).await {
            Ok(found) => {
                let filters =
                    [("network", q.network.as_str()), ("channel", q.channel.as_str()), ("q", q.search.as_str())];
                page.older = found.older.map(|id| {
                    let before = id.to_string();
                    format!("/logs{}", text::query(&[filters[0], filters[1], filters[2], ("before", &before)]))
                });
                if q.before.is_some() {
                    page.newest = format!("/logs{}", text::query(&filters));
                }
                page.lines = found.rows;
            }
            Err(problem) => {
                if matches!(problem, LogError::Rejected(_)) {
                    status = StatusCode::BAD_REQUEST;
                }
                chrome.errors.push(problem.to_string());
            }
        }
    }
    let place = match (q.network.as_str(), q.channel.as_str()) {
        ("", "") => "all networks".to_string(),
        (network, "") => network.to_string(),
        ("", channel) => channel.to_string(),
        (network, channel) => format!("{channel} on {network}"),
    };
    page.heading = if q.search.is_empty() {
        format!("Latest lines: {place}")
    } else {
        format!("Lines matching “{}”: {place}", q.search)
    };
    page.chrome = chrome;
    html(status, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_uses_the_full_text_index_of_each_engine() {
        let q = |network: &str, channel: &str, search: &str, before: Option<i64>| LogQuery {
            network: network.into(),
            channel: channel.into(),
            search: search.into(),
            before,
        };
        // (dialect, query, SQL after FROM, number of parameters)
        let cases = [
            (Dialect::Sqlite, q("", "", "", None), "irclog l ORDER BY l.id DESC LIMIT 51", 0),
            (
                Dialect::Sqlite,
                q("net", "#c", "", Some(9)),
                "irclog l WHERE l.networkname = ?1 AND l.target = ?2 AND l.id < ?3 ORDER BY l.id DESC LIMIT 51",
                3,
            ),
            (
                Dialect::Sqlite,
                q("net", "", "hello", None),
                "irclog_search s JOIN irclog l ON l.id = s.rowid WHERE irclog_search MATCH ?1 AND l.networkname = ?2 ORDER BY s.rowid DESC LIMIT 51",
                2,
            ),
            (
                Dialect::Postgres,
                q("", "", "hello", Some(5)),
                "irclog l WHERE to_tsvector('simple', l.message) @@ websearch_to_tsquery('simple', $1) AND l.id < $2 ORDER BY l.id DESC LIMIT 51",
                2,
            ),
        ];
        for (dialect, query, tail, count) in cases {
            let (sql, params) = lines_sql(dialect, &query);
            assert_eq!(sql, format!("SELECT {COLUMNS} FROM {tail}"), "{query:?}");
            assert_eq!(params.len(), count);
        }
    }
}
