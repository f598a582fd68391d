//! Reactor benchmark (issue 3), release build only:
//!
//! ```text
//! cargo run --release -p flotilla-bench --bin reactor_rules [-- --quick]
//! ```
//!
//! A 20-rule tree with the conditions real configurations use (equals, matches and
//! imatches, numeric comparisons between fields and numbers, AND/OR/NOT, parentheses,
//! dotted paths, nested children) and the plugins that run on most messages
//! (SetField, Template, a rare Drop), run over a varied stream of monitor, RSS, IRC
//! and Wikimedia messages on one core (a current-thread runtime). The target is
//! 1,000,000 messages/s.
//!
//! Two figures: the reactor alone (the input messages are decoded from JSON before the
//! clock starts, as the node hands the reactor messages it decoded from the bus, in
//! batches of 64), and the reactor plus that decoding.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use flotilla_bench::{human, rate};
use flotilla_core::Message;
use flotilla_reactor::serde_json::{Value, json};
use flotilla_reactor::{CompileContext, NoFiles, RecordingEffects, RuleConfig, compile};

const TARGET: f64 = 1_000_000.0;
const BATCH: usize = 64;

fn rules() -> Value {
    let set = |name: &str, condition: Option<&str>, field: &str, value: Value| {
        let mut rule = json!({"name": name, "plugin": "SetField", "config": {"field": field, "value": value}});
        if let Some(condition) = condition {
            rule["condition"] = json!(condition);
        }
        rule
    };
    json!([
        {"name": "drop canaries", "condition": "meta.domain equals canary", "plugin": "Drop"},
        set("keep local", Some("noforward is true"), "forwarded", json!(false)),
        {"name": "problems", "condition": "status equals CRITICAL OR status equals WARNING", "rules": [
            set("red", Some("status equals CRITICAL"), "color", json!("red")),
            set("yellow", Some("status equals WARNING"), "color", json!("yellow")),
            {"name": "alert text", "plugin": "Template", "config": {"template": "{$key}: {$subject}", "target_field": "alert"}},
        ]},
        set("busy", Some("load > 1.5 AND NOT hostname equals build"), "urgent", json!(1)),
        set("normal load", Some("load >= 0.5 AND load < 1.5"), "load_class", json!("normal")),
        {"name": "feeds", "condition": "key matches ^RSS-", "rules": [
            set("languages", Some("title imatches perl|rust"), "mailbox", json!("lang")),
            {"name": "feed line", "plugin": "Template",
             "config": {"template": "[{$key}] {$title} => {$subject}", "target_field": "subject_text"}},
        ]},
        {"name": "our channels",
         "condition": "plugin equals irc AND ( channel equals #flotilla OR channel equals #wubot )",
         "plugin": "Template", "config": {"template": "<{$nick}> {$text}", "target_field": "line"}},
        set("mentions", Some("text imatches \\bflotilla\\b"), "mention", json!(true)),
        set("trusted", Some("username matches ^(wu|bot)"), "trusted", json!(1)),
        set("over limit", Some("count > limit"), "over_limit", json!(1)),
        set("has body", Some("contains body AND body is true"), "has_body", json!(1)),
        {"name": "wikis", "condition": "plugin equals wikimedia", "rules": [
            set("bots", Some("bot is true"), "mailbox", json!("bots")),
            set("big edits", Some("length.new > 10000"), "big", json!(1)),
        ]},
        set("seen", None, "seen", json!(1)),
    ])
}

fn pick(choices: &[&'static str], i: u64) -> &'static str {
    choices[(i % choices.len() as u64) as usize]
}

/// 64 messages of five kinds, with varying values so every rule fires on some.
fn messages() -> Vec<Message> {
    let t = 1_700_000_000u64;
    (0..64u64)
        .map(|i| {
            let value = match i % 5 {
                0 => json!({
                    "key": format!("Uptime-host{i}"), "plugin": "Uptime", "hostname": if i % 3 == 0 { "build" } else { "web" },
                    "load": (i % 8) as f64 * 0.4, "status": pick(&["OK", "WARNING", "CRITICAL"], i),
                    "subject": format!("load is {}", i % 8), "lastupdate": t + i,
                }),
                1 => json!({
                    "key": "RSS-news", "plugin": "rss", "title": pick(&["Perl 5.40", "Rust 1.95", "Weather"], i),
                    "subject": format!("item {i}"), "link": format!("https://example.org/{i}"),
                    "body": if i % 2 == 0 { "<p>text</p>" } else { "" }, "lastupdate": t + i,
                }),
                2 => json!({
                    "key": "irc-libera", "plugin": "irc", "channel": pick(&["#flotilla", "#wubot", "#rust"], i),
                    "nick": if i % 2 == 0 { "wu" } else { "alice" }, "username": if i % 2 == 0 { "wu" } else { "alice" },
                    "text": if i % 4 == 2 { "flotilla rocks" } else { "hello world" }, "lastupdate": t + i,
                    "noforward": i % 7 == 0,
                }),
                3 => json!({
                    "key": "wikimedia", "plugin": "wikimedia", "bot": i % 2 == 0, "title": format!("Page {i}"),
                    "username": "botanist", "length": {"old": 100, "new": i * 400},
                    "meta": {"domain": if i == 63 { "canary" } else { "en.wikipedia.org" }}, "lastupdate": t + i,
                }),
                _ => json!({
                    "key": "Pulse-minute", "plugin": "Pulse", "count": i, "limit": 30, "subject": "tick",
                    "lastupdate": t + i,
                }),
            };
            Message::from_value(value).expect("benchmark messages are objects")
        })
        .collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let total: usize = if quick { 200_000 } else { 4_000_000 };
    let rules: Vec<RuleConfig> = flotilla_reactor::serde_json::from_value(rules()).expect("valid rule config");
    let ctx = CompileContext { host: "bench", base_dir: Path::new("."), loader: &NoFiles };
    let tree = compile(&rules, &ctx).unwrap_or_else(|errors| panic!("rules do not compile: {errors:?}"));
    assert_eq!(tree.len(), 20, "the benchmark tree has 20 rules");
    let inputs = messages();
    let encoded: Vec<Vec<u8>> = inputs.iter().map(Message::to_json).collect();
    let effects = RecordingEffects::new(UNIX_EPOCH + Duration::from_secs(1_700_000_100));
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime");

    // Every rule must fire on some input, or the tree is not measuring what it claims.
    let mut fired_rules = std::collections::BTreeSet::new();
    runtime.block_on(async {
        for message in &inputs {
            fired_rules.extend(tree.run(message.clone(), &effects).await.fired.iter().map(|s| s.to_string()));
        }
    });
    assert_eq!(fired_rules.len(), tree.len(), "rules that fired: {fired_rules:?}");

    let batches = total.div_ceil(BATCH);
    let cpu_before = thread_cpu_time();
    let loop_started = Instant::now();
    let (reactor_time, decode_time, fired, dropped) = runtime.block_on(async {
        let mut reactor_time = Duration::ZERO;
        let mut decode_time = Duration::ZERO;
        let mut fired = 0usize;
        let mut dropped = 0usize;
        let mut batch: Vec<Message> = Vec::with_capacity(BATCH);
        // Round 0 is untimed: it warms the caches and the allocator.
        for round in 0..=batches {
            let started = Instant::now();
            // One batch vector for the whole run, as a consumer would keep: allocating
            // a fresh one per batch makes glibc consolidate its free lists every time.
            batch.extend(
                (0..BATCH)
                    .map(|i| Message::from_json(&encoded[(round * BATCH + i) % encoded.len()]).expect("valid JSON")),
            );
            let decoded = started.elapsed();
            let started = Instant::now();
            let (mut round_fired, mut round_dropped) = (0, 0);
            for message in batch.drain(..) {
                let outcome = tree.run(message, &effects).await;
                round_fired += outcome.fired.len();
                round_dropped += usize::from(outcome.message.is_none());
                black_box(outcome);
            }
            let ran = started.elapsed();
            if round > 0 {
                reactor_time += ran;
                decode_time += decoded;
                fired += round_fired;
                dropped += round_dropped;
            }
        }
        (reactor_time, decode_time, fired, dropped)
    });

    let loop_wall = loop_started.elapsed();
    // The share of the wall-clock time this thread was on a CPU (the machine may be
    // shared): rates per CPU-second are the wall-clock rates divided by it.
    let on_cpu = match (cpu_before, thread_cpu_time()) {
        (Some(before), Some(after)) => Some((after.saturating_sub(before)).as_secs_f64() / loop_wall.as_secs_f64()),
        _ => None,
    };

    let count = (batches * BATCH) as u64;
    let reactor_rate = rate(count, reactor_time);
    let with_decode = rate(count, reactor_time + decode_time);
    println!("reactor_rules: {} rules, {} distinct messages, {count} runs on one core", tree.len(), inputs.len());
    println!(
        "  reactor alone:        {} messages/s ({:.0} ns/message; {:.1} rules fired per message, {} dropped)",
        human(reactor_rate),
        reactor_time.as_nanos() as f64 / count as f64,
        fired as f64 / count as f64,
        dropped
    );
    println!(
        "  with JSON decoding:   {} messages/s ({:.0} ns/message)",
        human(with_decode),
        (reactor_time + decode_time).as_nanos() as f64 / count as f64
    );
    let per_cpu = on_cpu.map(|share| reactor_rate / share.min(1.0));
    if let (Some(share), Some(per_cpu)) = (on_cpu, per_cpu) {
        println!(
            "  on a CPU {:.0}% of the time; reactor alone per CPU-second: {} messages/s",
            share * 100.0,
            human(per_cpu)
        );
    }
    println!(
        "  target {} messages/s: {} (wall clock){}",
        human(TARGET),
        if reactor_rate >= TARGET { "met" } else { "NOT met" },
        match per_cpu {
            Some(rate) if rate >= TARGET => ", met per CPU-second",
            Some(_) => ", NOT met per CPU-second",
            None => "",
        }
    );
}

/// Time this thread has spent on a CPU, from Linux's `/proc/thread-self/schedstat`.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}
