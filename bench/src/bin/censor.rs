//! The relay censor's decisions per second on one core, with 1,000 trigger and 1,000
//! blocklist patterns (issue #16: ≥ 1,000,000/s), beside the naive road in the same
//! run: every pattern its own regex, tried one after the other (what Kibicara did).
//!
//! The reports are short, Ticketfrei-like texts (ASCII and with umlauts), most of them
//! passing through one trigger, some blocked, some matching nothing. The patterns are
//! synthetic words (`kontroll?e17`, `\bs17\b`, `wort17\w*`, …) so that the sets are as
//! large as asked and no pattern is a duplicate.
//!
//! `cargo run --release -p flotilla-bench --bin censor [-- PATTERNS SECONDS]`

use std::hint::black_box;
use std::time::{Duration, Instant};

use flotilla_bench::{human, rate};
use flotilla_core::censor::{Censor, CensorPatterns};

fn patterns(count: usize) -> CensorPatterns {
    let trigger = (0..count)
        .map(|i| match i % 4 {
            0 => format!("kontroll?e{i}"),
            1 => format!(r"\bs{i}\b"),
            2 => format!(r"u{i}\d?"),
            _ => format!("haltestelle{i}|bahnhof{i}"),
        })
        .collect();
    let blocklist = (0..count)
        .map(|i| match i % 3 {
            0 => format!("schimpf{i}"),
            1 => format!(r"wort{i}\w*"),
            _ => format!("böse{i}"),
        })
        .collect();
    CensorPatterns { trigger, blocklist }
}

fn reports() -> Vec<String> {
    (0..512)
        .map(|i| match i % 8 {
            0 => format!("Kontrolle{} in der U-Bahn, zwei Leute in Blau am Plärrer", i % 997),
            1 => format!("S{} Richtung Altdorf: Kontis steigen gerade ein", (i * 7) % 1000),
            2 => format!("u{} ab Hauptbahnhof, Vorsicht", (i * 3) % 1000),
            3 => format!("bahnhof{} Kontrolle am Ausgang Süd, schimpf{}", (i * 4 + 3) % 1000, (i * 3) % 999),
            4 => "Heute schönes Wetter, nichts los an der Haltestelle".to_string(),
            5 => format!("Haltestelle{} zwei Kontrolleure, grüne Jacken", (i * 4 + 3) % 1000),
            6 => format!("kontrolle{} Fürth Hbf wort{}xyz", (i * 4) % 1000, (i * 3 + 1) % 1000),
            _ => "ganz normaler Text über den Nahverkehr in Nürnberg und Fürth".to_string(),
        })
        .collect()
}

/// The peer: one regex per pattern, with the same meaning, tried in a loop.
struct Naive {
    trigger: Vec<regex::Regex>,
    blocklist: Vec<regex::Regex>,
}

impl Naive {
    fn new(patterns: &CensorPatterns) -> Naive {
        let one = |p: &String| {
            regex::RegexBuilder::new(&format!(r"\b{{start-half}}(?:{p})\b{{end-half}}"))
                .case_insensitive(true)
                .build()
                .expect("valid pattern")
        };
        Naive {
            trigger: patterns.trigger.iter().map(one).collect(),
            blocklist: patterns.blocklist.iter().map(one).collect(),
        }
    }

    fn passes(&self, text: &str) -> bool {
        !self.blocklist.iter().any(|r| r.is_match(text)) && self.trigger.iter().any(|r| r.is_match(text))
    }
}

/// Runs `decide` over the reports for at least `budget`, returning decisions per second
/// and how many passed.
fn measure(reports: &[String], budget: Duration, mut decide: impl FnMut(&str) -> bool) -> (f64, u64) {
    let mut decisions = 0u64;
    let mut passed = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        for report in reports {
            passed += u64::from(black_box(decide(black_box(report))));
        }
        decisions += reports.len() as u64;
    }
    (rate(decisions, start.elapsed()), passed * reports.len() as u64 / decisions.max(1))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let budget = Duration::from_secs(seconds);
    let patterns = patterns(count);
    let reports = reports();

    let start = Instant::now();
    let censor = Censor::new(patterns.clone()).expect("the benchmark's patterns are valid");
    let compile_set = start.elapsed();
    let start = Instant::now();
    let naive = Naive::new(&patterns);
    let compile_naive = start.elapsed();

    // Both roads must agree before their speed means anything.
    for report in &reports {
        assert_eq!(censor.judge(report).passed(), naive.passes(report), "they disagree on {report:?}");
    }

    // Warm the lazy DFA's cache the way a running group would be warm.
    let _ = measure(&reports, Duration::from_millis(500), |t| censor.judge(t).passed());
    let (ours, passed) = measure(&reports, budget, |t| censor.judge(t).passed());
    let (peer, _) = measure(&reports, budget, |t| naive.passes(t));

    println!(
        "censor: {count} trigger + {count} blocklist patterns, {} reports ({passed} of them pass), one core",
        reports.len()
    );
    println!(
        "compile: set {:.0} ms, naive {:.0} ms",
        compile_set.as_secs_f64() * 1e3,
        compile_naive.as_secs_f64() * 1e3
    );
    println!("set (flotilla):  {} decisions/s", human(ours));
    println!("naive loop:      {} decisions/s", human(peer));
    println!("ratio: {:.1}x", ours / peer);
}
