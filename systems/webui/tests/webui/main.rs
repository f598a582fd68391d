//! The web UI's pages rendered from hostile data, without a browser: every value is
//! escaped, no page holds an inline script or style (the Content-Security-Policy would
//! block them), and a node of a thousand connectors and queues renders; and the log
//! search on SQLite (FTS5) and Postgres (GIN), through the IRC system's migrations. The pages in a
//! real browser against a real node are tested in `crates/flotilla/tests/cli/webui.rs`.

use serde_json::json;

const HOSTILE: &str = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>";

fn status(connectors: usize) -> serde_json::Value {
    json!({
        "node": HOSTILE, "state": "running", "uptime_seconds": 5,
        "connectors": (0..connectors).map(|i| json!({
            "name": format!("{HOSTILE}{i}"), "type": HOSTILE, "state": HOSTILE, "restarts": 0,
            "last_error": HOSTILE, "emitted": 3, "detail": {"lag_ms": 4},
        })).collect::<Vec<_>>(),
        "queues": [{"queue": HOSTILE, "next_seq": 1, "bytes": 2, "depth": 1,
                    "groups": [{"group": HOSTILE, "acked_seq": 1, "pending": 0}]}],
        "services": {HOSTILE: {HOSTILE: HOSTILE}},
        "fleet": {"nodes": [{"member": {"name": HOSTILE, "hostname": HOSTILE, "version": HOSTILE}, "alive": true}],
                  "leases": [{"resource": format!("connector:{HOSTILE}"), "node": HOSTILE}], "error": HOSTILE},
        "rates": {"since": 0, "connectors": (0..connectors).map(|i| json!({"name": format!("{HOSTILE}{i}"), "per_minute": [1, 2, 3]})).collect::<Vec<_>>(), "queues": []},
    })
}

#[test]
fn every_value_on_the_fleet_page_is_escaped() {
    let page = flotilla_webui::render_fleet_page(status(3), 1_000).unwrap();
    assert!(!page.contains("<script>alert"), "a raw script tag");
    assert!(!page.contains("<img src=x"), "a raw tag");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the text is shown, escaped");
    // Attributes cannot be broken out of either.
    assert!(!page.contains("\"'><img"));
}

#[test]
fn no_page_holds_an_inline_script_or_style() {
    let page = flotilla_webui::render_fleet_page(status(2), 1_000).unwrap();
    for (i, _) in page.match_indices("<script") {
        let tag = &page[i..page[i..].find('>').map_or(page.len(), |end| i + end)];
        assert!(tag.contains(" src=\"/assets/"), "an inline script: {tag}");
    }
    assert!(!page.contains("style="), "an inline style attribute");
    assert!(!page.contains("<style"), "an inline style element");
    // No tag has an event-handler attribute (escaped text holds no `<`, so every `<`
    // starts a real tag).
    for (i, _) in page.match_indices('<') {
        let tag = &page[i..page[i..].find('>').map_or(page.len(), |end| i + end)];
        assert!(!attribute_names(tag).iter().any(|name| name.starts_with("on")), "an inline event handler: {tag}");
    }
}

/// The attribute names of a tag (`<name a="…" b='…' c>`), quoted values skipped.
fn attribute_names(tag: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = tag.chars().skip_while(|c| !c.is_whitespace()).peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                for inner in chars.by_ref() {
                    if inner == c {
                        break;
                    }
                }
            }
            c if c.is_whitespace() || c == '=' || c == '/' => {}
            c => {
                let mut name = c.to_string();
                while let Some(next) = chars.peek().filter(|n| !n.is_whitespace() && **n != '=' && **n != '/') {
                    name.push(*next);
                    chars.next();
                }
                names.push(name.to_ascii_lowercase());
            }
        }
    }
    names
}

#[test]
fn attribute_names_skip_quoted_values() {
    assert_eq!(attribute_names(r#"<a href="x onclick=y" class='z' hidden"#), ["href", "class", "hidden"]);
    assert_eq!(attribute_names(r#"<img src=x onerror=alert(2)"#), ["src", "x", "onerror", "alert(2)"]);
}

#[test]
fn a_thousand_connectors_render_with_a_line_each() {
    let page = flotilla_webui::render_fleet_page(status(1_000), 1_000).unwrap();
    assert_eq!(page.matches("<polyline").count(), 1_000);
    assert_eq!(page.matches("data-connector=").count(), 1_000);
}

/// The log search on both engines, through the IRC system's own migrations: a line is
/// found by a word, not by a word it lacks, newest first; SQLite's FTS5 rejects a
/// malformed query with its own message (Postgres's `websearch_to_tsquery` reads any
/// text, so nothing there is rejected).
async fn search_on(url: &str) {
    use flotilla_store::Store;
    use flotilla_webui::logs::{LogError, LogQuery, lines};
    let store = Store::open(url).await.unwrap();
    store.migrate(&flotilla_irc::MIGRATIONS).await.unwrap();
    for (i, message) in ["the quick brown zebrafox", "nothing to see", "another zebrafox, later"].iter().enumerate() {
        store
            .execute(
                &format!(
                    "INSERT INTO irclog (target, message, source, networkname, irc_message_type, received_at) \
                     VALUES ('#c', {}, 'nick', 'net', 'PRIVMSG', {})",
                    store.dialect().placeholder(1),
                    store.dialect().placeholder(2)
                ),
                &[flotilla_store::Param::Text(message), flotilla_store::Param::Int(1_700_000_000_000 + i as i64)],
            )
            .await
            .unwrap();
    }
    let search = |text: &str| LogQuery { search: text.into(), ..LogQuery::default() };
    let found = lines(&store, &search("zebrafox")).await.unwrap();
    let texts: Vec<&str> = found.rows.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(texts, ["another zebrafox, later", "the quick brown zebrafox"], "{url}");
    assert!(lines(&store, &search("giraffe")).await.unwrap().rows.is_empty());
    let channel = LogQuery { network: "net".into(), channel: "#c".into(), ..LogQuery::default() };
    assert_eq!(lines(&store, &channel).await.unwrap().rows.len(), 3);
    if store.dialect() == flotilla_store::Dialect::Sqlite {
        match lines(&store, &search("\"unterminated")).await {
            Err(LogError::Rejected(words)) => assert!(words.contains("unterminated"), "{words}"),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("FTS5 accepted an unterminated phrase"),
        }
    }
    store.close().await;
}

#[tokio::test]
async fn the_log_search_uses_the_full_text_index_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    search_on(&format!("sqlite://{}/log.db", dir.path().display())).await;
}

#[tokio::test]
async fn the_log_search_uses_the_full_text_index_on_postgres() {
    let database = flotilla_test_support::PgDatabase::create().await;
    search_on(&database.url).await;
    database.drop_now().await;
}
