//! The Slack handlers' throughput (issue 14): 1,000 glossary terms and 100 reaction
//! words, messages of three kinds (a `define TERM` to the bot, text that holds reaction
//! words, plain chatter), decided by `Handlers::handle`. The peer is the obvious way,
//! in the same run: every reaction word searched for on its own in the lower-cased text
//! (what gopherbot did, a `strings.Contains` per word), printed with the ratio.
//!
//!     cargo run --release -p flotilla-bench --bin slack_handlers -- [MESSAGES]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use flotilla_bench::{human, rate};
use flotilla_slack::handlers::{Action, Glossary, HandlerConfig, Handlers, Verdict};
use serde_json::{Map, Value, json};

fn main() {
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300_000);
    let words: Vec<(String, String)> = (0..100).map(|i| (format!("word{i:03}x"), format!("reaction{i}"))).collect();
    let glossary: Glossary = (0..1000).map(|i| (format!("term{i:04}"), format!("definition number {i}"))).collect();
    let aliases: HashMap<String, String> = (0..100).map(|i| (format!("alias{i:03}"), format!("term{i:04}"))).collect();
    let handlers = Handlers::new(HandlerConfig {
        bot_user_id: Some("UBOT".into()),
        max_age_secs: 30,
        reactions: words.clone(),
        prefixes: vec![],
        exact: HashMap::from([("ping".to_string(), "pong".to_string())]),
        glossary: true,
        aliases,
        editors: vec![],
    })
    .unwrap();
    let now = 1_700_000_000.0;
    let messages: Vec<Map<String, Value>> = (0..1000)
        .map(|i| {
            let text = match i % 3 {
                0 => format!("<@UBOT> define term{:04}", (i * 7) % 1000),
                1 => format!(
                    "I was thinking about word{:03}x and also word{:03}x today, what do you think?",
                    i % 100,
                    (i * 3) % 100
                ),
                _ => {
                    "just some ordinary chatter in the channel about lunch and the weather, nothing to see".to_string()
                }
            };
            json!({"channel": "C1", "user": "U1", "ts": format!("{now}"), "text": text, "channel_type": "channel"})
                .as_object()
                .cloned()
                .unwrap()
        })
        .collect();

    let started = Instant::now();
    let mut actions = 0usize;
    for i in 0..count {
        if let Verdict::Handled(done) = handlers.handle(&messages[i % messages.len()], now + 1.0, &glossary) {
            actions += done.len();
        }
    }
    let ours = rate(count as u64, started.elapsed());
    black_box(actions);

    // The peer: one substring search per word.
    let started = Instant::now();
    let mut found = 0usize;
    for i in 0..count {
        let text = messages[i % messages.len()]["text"].as_str().unwrap_or_default().to_lowercase();
        for (word, reaction) in &words {
            if text.contains(word.as_str()) {
                found += 1;
                black_box(Action::React { channel: String::new(), timestamp: String::new(), name: reaction.clone() });
            }
        }
    }
    let naive = rate(count as u64, started.elapsed());
    black_box(found);
    println!("handlers (100 reaction words, 1,000 terms, 100 aliases): {} messages/s, {actions} actions", human(ours));
    println!("per-word substring search, reactions only: {} messages/s", human(naive));
    println!("ratio: {:.1}x", ours / naive);
}
