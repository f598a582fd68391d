//! The web UI's pages rendered from hostile data, without a browser: every value is
//! escaped, no page holds an inline script or style (the Content-Security-Policy would
//! block them), and a node of a thousand connectors and queues renders. The pages in a
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
