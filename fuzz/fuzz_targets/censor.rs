//! Censor patterns and texts from arbitrary bytes: compiling never panics (a bad
//! pattern is refused with a reason), and whatever is accepted decides exactly as the
//! naive loop does: each pattern on its own, written with its word boundaries, tried
//! one by one (the set of patterns without assertions must never miss a match).
//!
//! Input: lines; lines before the first empty one are triggers, lines up to the next
//! empty one the blocklist, the rest the text judged.
#![no_main]

use flotilla_core::censor::{Censor, CensorPatterns};
use libfuzzer_sys::fuzz_target;

fn naive(patterns: &CensorPatterns, text: &str) -> Option<String> {
    let one = |p: &String| {
        regex::RegexBuilder::new(&format!(r"\b{{start-half}}(?:{p})\b{{end-half}}"))
            .case_insensitive(true)
            .build()
            .expect("accepted by the censor, so valid")
    };
    if let Some(p) = patterns.blocklist.iter().find(|p| one(p).is_match(text)) {
        return Some(format!("blocked: {p}"));
    }
    if patterns.trigger.is_empty() || patterns.trigger.iter().any(|p| one(p).is_match(text)) {
        None
    } else {
        Some("no trigger matched".into())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let mut parts = input.splitn(3, "\n\n");
    let list = |part: Option<&str>| -> Vec<String> {
        part.unwrap_or_default().lines().take(16).map(|l| l.chars().take(64).collect()).collect()
    };
    let trigger = list(parts.next());
    let blocklist = list(parts.next());
    let text = parts.next().unwrap_or_default();
    let patterns = CensorPatterns { trigger, blocklist };
    match Censor::new(patterns.clone()) {
        Ok(censor) => assert_eq!(censor.judge(text).reason(), naive(&patterns, text), "{patterns:?} on {text:?}"),
        Err(error) => {
            assert!(!error.problems.is_empty());
            assert!(error.problems.iter().all(|p| !p.reason.is_empty() && !p.reason.contains('\n')));
        }
    }
});
