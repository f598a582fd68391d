//! Recent-change events for tests, demos and benchmarks: the real recorded events of
//! `testdata/wikimedia/` (compiled in), and synthetic ones that follow the
//! `mediawiki/recentchange` 1.0.1 schema with every field a live event has.
//!
//! Synthetic event `n` is deterministic: its recent-change `id` is `1_000_000 + n`, its
//! `meta.id` a UUID ending in `n`, and its wiki, type, title and user cycle through
//! small sets, so tests can predict what matches and benchmarks get varied input.

use serde_json::{Value, json};

const RECORDED: [&str; 7] = [
    include_str!("../../../../testdata/wikimedia/02_edit_wikidata_2020-02-02.json"),
    include_str!("../../../../testdata/wikimedia/03_log-abusefilter-hit_wikidata_2020-02-02.json"),
    include_str!("../../../../testdata/wikimedia/04_new_wikidata_2020-02-02.json"),
    include_str!("../../../../testdata/wikimedia/05_edit_kowiki_2021-09-14.json"),
    include_str!("../../../../testdata/wikimedia/06_log-delete_enwiki_2024-04-26.json"),
    include_str!("../../../../testdata/wikimedia/07_edit-with-notify_url_wikidata_2024-04-26.json"),
    include_str!("../../../../testdata/wikimedia/08_manual-rcfeed_categorize_commons_2016.json"),
];

/// The recorded events, each as one line of compact JSON, in file order.
pub fn recorded_events() -> Vec<String> {
    RECORDED
        .iter()
        .map(|text| {
            // The files are part of the source tree and checked by this module's tests.
            let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            value.to_string()
        })
        .collect()
}

const WIKIS: [(&str, &str); 4] = [
    ("enwiki", "en.wikipedia.org"),
    ("dewiki", "de.wikipedia.org"),
    ("wikidatawiki", "www.wikidata.org"),
    ("commonswiki", "commons.wikimedia.org"),
];

/// Synthetic event `n` as a JSON value.
pub fn synthetic_value(n: u64) -> Value {
    let (wiki, host) = WIKIS[(n % WIKIS.len() as u64) as usize];
    let kind = ["edit", "edit", "edit", "new", "log", "categorize"][(n % 6) as usize];
    let title = format!("Sample page {}", n % 97);
    let user = if n.is_multiple_of(5) { format!("SampleBot{}", n % 7) } else { format!("Sample user {}", n % 13) };
    let timestamp = 1_700_000_000 + n;
    let mut event = json!({
        "$schema": "/mediawiki/recentchange/1.0.1",
        "meta": {
            "uri": format!("https://{host}/wiki/{}", title.replace(' ', "_")),
            "request_id": format!("req-{n}"),
            "id": format!("00000000-0000-4000-8000-{n:012}"),
            "dt": "2023-11-14T22:13:20Z",
            "domain": host,
            "stream": "mediawiki.recentchange",
            "topic": "eqiad.mediawiki.recentchange",
            "partition": 0,
            "offset": 5_000_000_000u64 + n,
        },
        "id": 1_000_000 + n,
        "type": kind,
        "namespace": 0,
        "title": title,
        "title_url": format!("https://{host}/wiki/{}", title.replace(' ', "_")),
        "comment": format!("sample change {n}"),
        "timestamp": timestamp,
        "user": user,
        "bot": n.is_multiple_of(5),
        "server_url": format!("https://{host}"),
        "server_name": host,
        "server_script_path": "/w",
        "wiki": wiki,
        "parsedcomment": format!("sample change {n}"),
    });
    match kind {
        "log" => {
            event["log_id"] = json!(2_000_000 + n);
            event["log_type"] = json!("delete");
            event["log_action"] = json!("delete");
            event["log_params"] = json!([]);
            event["log_action_comment"] = json!(format!("deleted [[{}]]", event["title"].as_str().unwrap_or("")));
        }
        "new" => {
            event["minor"] = json!(false);
            event["length"] = json!({"new": 100 + n % 50});
            event["revision"] = json!({"new": 3_000_000 + n});
        }
        "categorize" => {}
        _ => {
            event["minor"] = json!(n.is_multiple_of(3));
            event["patrolled"] = json!(true);
            event["length"] = json!({"old": 1000 + n % 10, "new": 1000 + n % 17});
            event["revision"] = json!({"old": 2_999_999 + n, "new": 3_000_000 + n});
        }
    }
    event
}

/// Synthetic event `n` as one line of compact JSON.
pub fn synthetic_event(n: u64) -> String {
    synthetic_value(n).to_string()
}

/// An EventStreams canary (a monitoring probe, not a change).
pub fn canary_event(n: u64) -> String {
    json!({
        "$schema": "/mediawiki/recentchange/1.0.1",
        "meta": {"domain": "canary", "id": format!("canary-{n}"), "stream": "mediawiki.recentchange", "dt": "2023-11-14T22:13:20Z"},
        "wiki": "enwiki", "type": "edit", "title": "Canary", "user": "Canary",
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_wikimedia_core::parse_change;

    #[test]
    fn every_sample_is_a_recent_change() {
        for event in recorded_events() {
            let change = parse_change(event.as_bytes()).expect("recorded events parse");
            assert!(!change.wiki.is_empty() && !change.is_canary(), "{event}");
        }
        for n in 0..60 {
            let event = synthetic_event(n);
            let change = parse_change(event.as_bytes()).expect("synthetic events parse");
            assert_eq!(change.id, Some(1_000_000 + n));
        }
        assert!(parse_change(canary_event(1).as_bytes()).unwrap().is_canary());
    }
}
