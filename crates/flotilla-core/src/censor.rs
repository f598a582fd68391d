//! The relay censor (SPEC §8): a report passes when at least one **trigger** pattern
//! matches it (an empty trigger list lets everything through) and no **blocklist**
//! pattern does. Patterns are regexes, matched case-insensitively and on word
//! boundaries: a match must neither start right after nor end right before a word
//! character (Unicode letters, digits, `_`), so `u1` finds "U1 Plärrer" but not
//! "Mu12", and `kontroll?e` finds "Kontrolle!" but not "Kontrolleur".
//!
//! Both the relay groups (`systems/relay`) and the reactor's `Censor` plugin use this
//! one type, so it lives in the pure core both depend on (the reactor must not depend
//! on a system crate).
//!
//! How it stays fast with thousands of patterns: each list is compiled **as one set**
//! (a regex-automata meta regex over every pattern) from the patterns with their
//! look-around assertions removed. That set matches a superset of what the exact
//! patterns match, and it runs on the lazy DFA whatever the text (Unicode word
//! boundaries would make the DFA give up on non-ASCII text). When the set finds
//! nothing, which is the usual answer for a blocklist, the decision is one pass over
//! the text. When it finds candidates, only those are checked with their exact,
//! boundary-anchored regex, in list order, so the reason names the first pattern of the
//! list that really matched.
//!
//! Bad patterns are refused when they are set, never at match time: every problem is
//! reported at once, each with its list, position, the pattern and why.

use std::fmt;

use regex_automata::meta;
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::{Input, PatternSet};
use regex_syntax::hir::{self, Hir, HirKind, Look};
use serde::{Deserialize, Serialize};

/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 1_000;
/// The most patterns one list may hold.
pub const MAX_PATTERNS: usize = 20_000;
/// How deeply a pattern may nest groups and repetitions.
const NEST_LIMIT: u32 = 64;
/// The compiled size one pattern's exact regex may take.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// The compiled size a whole list's set may take.
const SET_SIZE_LIMIT: usize = 256 << 20;
/// The lazy DFA's cache for a set: a few MiB keep 1,000 patterns from thrashing it.
const SET_CACHE: usize = 16 << 20;

/// A group's patterns as written: what is shown, persisted and edited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CensorPatterns {
    /// At least one must match (an empty list: every report passes this check).
    #[serde(default)]
    pub trigger: Vec<String>,
    /// None may match.
    #[serde(default)]
    pub blocklist: Vec<String>,
}

/// Which list a pattern belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternList {
    Trigger,
    Blocklist,
}

impl PatternList {
    pub fn as_str(self) -> &'static str {
        match self {
            PatternList::Trigger => "trigger",
            PatternList::Blocklist => "blocklist",
        }
    }
}

/// One refused pattern: where it is, what it is and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}[{index}] '{pattern}': {reason}", list.as_str())]
pub struct PatternError {
    pub list: PatternList,
    /// Its position in the list, from 0.
    pub index: usize,
    pub pattern: String,
    pub reason: String,
}

/// Every refused pattern of a [`CensorPatterns`], in list order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CensorError {
    pub problems: Vec<PatternError>,
}

impl fmt::Display for CensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CensorError {}

/// What the censor decided about one text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Relay it.
    Pass,
    /// There are triggers and none matched.
    NoTrigger,
    /// This blocklist pattern (the first in the list that matched) matched.
    Blocked(&'a str),
}

impl Verdict<'_> {
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Pass)
    }

    /// The review reason SPEC §8 fixes: `no trigger matched` or `blocked: <pattern>`;
    /// `None` when the report passed.
    pub fn reason(&self) -> Option<String> {
        match self {
            Verdict::Pass => None,
            Verdict::NoTrigger => Some("no trigger matched".into()),
            Verdict::Blocked(pattern) => Some(format!("blocked: {pattern}")),
        }
    }
}

/// A compiled censor. Cheap to share (`Arc`); deciding never allocates on the usual
/// paths and never fails.
#[derive(Debug, Clone)]
pub struct Censor {
    patterns: CensorPatterns,
    trigger: CompiledList,
    blocklist: CompiledList,
}

impl Censor {
    /// Compiles both lists, refusing every bad pattern (all reported at once).
    pub fn new(patterns: CensorPatterns) -> Result<Censor, CensorError> {
        let mut problems = Vec::new();
        let trigger = CompiledList::new(PatternList::Trigger, &patterns.trigger, &mut problems);
        let blocklist = CompiledList::new(PatternList::Blocklist, &patterns.blocklist, &mut problems);
        match (trigger, blocklist) {
            (Some(trigger), Some(blocklist)) if problems.is_empty() => Ok(Censor { patterns, trigger, blocklist }),
            _ => Err(CensorError { problems }),
        }
    }

    /// A censor that lets everything through.
    pub fn open() -> Censor {
        Censor::new(CensorPatterns::default()).expect("no patterns, no problems")
    }

    /// The patterns as written.
    pub fn patterns(&self) -> &CensorPatterns {
        &self.patterns
    }

    /// Decides about one text: blocked first (so a blocked report says why even when it
    /// also lacks a trigger), then the triggers.
    pub fn judge(&self, text: &str) -> Verdict<'_> {
        if let Some(index) = self.blocklist.first_match(text) {
            return Verdict::Blocked(&self.patterns.blocklist[index]);
        }
        if self.trigger.is_empty() || self.trigger.first_match(text).is_some() {
            Verdict::Pass
        } else {
            Verdict::NoTrigger
        }
    }
}

/// One list compiled: the superset set and each pattern's exact regex.
#[derive(Debug, Clone)]
struct CompiledList {
    /// `None` for an empty list.
    set: Option<meta::Regex>,
    exact: Vec<meta::Regex>,
}

impl CompiledList {
    fn new(list: PatternList, patterns: &[String], problems: &mut Vec<PatternError>) -> Option<CompiledList> {
        let before = problems.len();
        if patterns.len() > MAX_PATTERNS {
            problems.push(PatternError {
                list,
                index: MAX_PATTERNS,
                pattern: patterns[MAX_PATTERNS].clone(),
                reason: format!("a list holds at most {MAX_PATTERNS} patterns, this one has {}", patterns.len()),
            });
            return None;
        }
        let mut loose = Vec::with_capacity(patterns.len());
        let mut exact = Vec::with_capacity(patterns.len());
        for (index, pattern) in patterns.iter().enumerate() {
            let refuse = |reason: String| PatternError { list, index, pattern: pattern.clone(), reason };
            match compile_pattern(pattern) {
                Ok((without_looks, anchored)) => {
                    loose.push(without_looks);
                    exact.push(anchored);
                }
                Err(reason) => problems.push(refuse(reason)),
            }
        }
        if problems.len() > before {
            return None;
        }
        if loose.is_empty() {
            return Some(CompiledList { set: None, exact });
        }
        let config = meta::Config::new()
            .match_kind(regex_automata::MatchKind::All)
            .which_captures(WhichCaptures::None)
            .nfa_size_limit(Some(SET_SIZE_LIMIT))
            .dfa_size_limit(Some(SET_SIZE_LIMIT))
            .hybrid_cache_capacity(SET_CACHE);
        match meta::Builder::new().configure(config).build_many_from_hir(&loose) {
            Ok(set) => Some(CompiledList { set: Some(set), exact }),
            Err(e) => {
                problems.push(PatternError {
                    list,
                    index: 0,
                    pattern: patterns[0].clone(),
                    reason: format!("the list as a whole is too large to compile: {e}"),
                });
                None
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.set.is_none()
    }

    /// The index of the first pattern (in list order) that matches on word boundaries.
    fn first_match(&self, text: &str) -> Option<usize> {
        let set = self.set.as_ref()?;
        let input = Input::new(text);
        if !set.is_match(input.clone()) {
            return None;
        }
        let mut candidates = PatternSet::new(set.pattern_len());
        set.which_overlapping_matches(&input, &mut candidates);
        candidates.iter().map(|id| id.as_usize()).find(|&index| self.exact[index].is_match(text))
    }
}

/// Parses one pattern (case-insensitively) into the form the set uses (look-arounds
/// removed: a superset) and its exact regex (anchored on word boundaries).
fn compile_pattern(pattern: &str) -> Result<(Hir, meta::Regex), String> {
    if pattern.trim().is_empty() {
        return Err("the pattern is empty".into());
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("the pattern is {} bytes long, at most {MAX_PATTERN_LEN} are allowed", pattern.len()));
    }
    let parsed = regex_syntax::ParserBuilder::new()
        .case_insensitive(true)
        .nest_limit(NEST_LIMIT)
        .build()
        .parse(pattern)
        .map_err(|e| one_line(&e.to_string()))?;
    if parsed.properties().minimum_len() == Some(0) {
        return Err("it matches the empty text, so it would match every report".into());
    }
    let anchored =
        Hir::concat(vec![Hir::look(Look::WordStartHalfUnicode), parsed.clone(), Hir::look(Look::WordEndHalfUnicode)]);
    let exact_config = meta::Config::new()
        .which_captures(WhichCaptures::None)
        .nfa_size_limit(Some(PATTERN_SIZE_LIMIT))
        .dfa_size_limit(Some(PATTERN_SIZE_LIMIT));
    let exact = meta::Builder::new()
        .configure(exact_config)
        .build_from_hir(&anchored)
        .map_err(|e| format!("it compiles too large ({e})"))?;
    Ok((without_looks(parsed), exact))
}

/// The pattern with every assertion (`^`, `$`, `\b`, …) replaced by "nothing": it
/// matches wherever the original does, and maybe more.
fn without_looks(hir: Hir) -> Hir {
    match hir.into_kind() {
        HirKind::Look(_) => Hir::empty(),
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(hir::Literal(bytes)) => Hir::literal(bytes),
        HirKind::Class(class) => Hir::class(class),
        HirKind::Repetition(rep) => Hir::repetition(hir::Repetition { sub: Box::new(without_looks(*rep.sub)), ..rep }),
        HirKind::Capture(capture) => without_looks(*capture.sub),
        HirKind::Concat(parts) => Hir::concat(parts.into_iter().map(without_looks).collect()),
        HirKind::Alternation(parts) => Hir::alternation(parts.into_iter().map(without_looks).collect()),
    }
}

/// regex-syntax's errors draw the pattern over several lines with a caret; one line
/// reads better in a log, a CLI answer and a JSON error.
fn one_line(text: &str) -> String {
    let reason = text.lines().rev().find_map(|l| l.strip_prefix("error:")).unwrap_or(text);
    reason.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn censor(trigger: &[&str], blocklist: &[&str]) -> Censor {
        Censor::new(CensorPatterns {
            trigger: trigger.iter().map(|s| s.to_string()).collect(),
            blocklist: blocklist.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    #[test]
    fn decisions() {
        let nbg = censor(&["kontroll?e", r"\bs\d\b", r"u\d\d?", "kontis?"], &["nazi", "scheiß\\w*"]);
        let cases: &[(&str, Option<&str>)] = &[
            ("Kontrolle in der U1 am Plärrer", None),
            ("KONTROLLE!", None),
            ("kontrole hbf", None),
            ("S2 richtung Altdorf, 2 Kontis", None),
            ("Kontrolleur im Bus", Some("no trigger matched")),
            ("Mu12 ist ein Name", Some("no trigger matched")),
            ("schönes Wetter heute", Some("no trigger matched")),
            ("Kontrolle, diese Nazis", None), // "nazi" is not a word of it
            ("Kontrolle, ein Nazi", Some("blocked: nazi")),
            ("Nazi", Some("blocked: nazi")),
            ("scheißkontrolle", Some("blocked: scheiß\\w*")),
            ("Kontrolle an der U11, Scheißtag", Some("blocked: scheiß\\w*")),
            ("", Some("no trigger matched")),
            ("ü-Kontrolle", None),
            ("Überkontrolle", Some("no trigger matched")),
        ];
        for (text, expected) in cases {
            assert_eq!(nbg.judge(text).reason().as_deref(), *expected, "{text:?}");
        }
    }

    #[test]
    fn empty_trigger_list_passes_everything_not_blocked() {
        let open = censor(&[], &["nazi"]);
        assert_eq!(open.judge("anything at all"), Verdict::Pass);
        assert_eq!(open.judge(""), Verdict::Pass);
        assert_eq!(open.judge("NAZI"), Verdict::Blocked("nazi"));
        assert_eq!(Censor::open().judge("x"), Verdict::Pass);
    }

    #[test]
    fn first_blocked_pattern_in_list_order_is_named() {
        let c = censor(&[], &["zwei", "eins"]);
        assert_eq!(c.judge("eins zwei"), Verdict::Blocked("zwei"));
    }

    #[test]
    fn bad_patterns_are_all_refused_with_place_and_reason() {
        let error = Censor::new(CensorPatterns {
            trigger: vec!["ok".into(), "(unclosed".into(), "".into()],
            blocklist: vec!["a*".into(), "x".repeat(MAX_PATTERN_LEN + 1), "[z-a]".into()],
        })
        .unwrap_err();
        let shown: Vec<(PatternList, usize)> = error.problems.iter().map(|p| (p.list, p.index)).collect();
        assert_eq!(
            shown,
            vec![
                (PatternList::Trigger, 1),
                (PatternList::Trigger, 2),
                (PatternList::Blocklist, 0),
                (PatternList::Blocklist, 1),
                (PatternList::Blocklist, 2)
            ]
        );
        let text = error.to_string();
        assert!(text.contains("trigger[1] '(unclosed': unclosed group"), "{text}");
        assert!(text.contains("trigger[2] '': the pattern is empty"), "{text}");
        assert!(text.contains("blocklist[0] 'a*': it matches the empty text"), "{text}");
        assert!(text.contains("blocklist[2] '[z-a]': invalid character class range"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    /// The oracle: every pattern on its own, written as text with the boundaries
    /// around it (a different road to the same meaning), tried one by one.
    fn naive(patterns: &CensorPatterns, text: &str) -> Option<String> {
        let one = |p: &String| {
            regex::RegexBuilder::new(&format!(r"\b{{start-half}}(?:{p})\b{{end-half}}"))
                .case_insensitive(true)
                .build()
                .unwrap()
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

    mod agrees_with_naive_loop {
        use proptest::prelude::*;

        use super::*;

        const PIECES: &[&str] =
            &["ab", "a", "b", r"\d", r"\bb", "a+", "ä", "ß", r"b\b", "(a|bc)", "^a", "b$", r"\w", "[ab]c", "A"];
        const TEXT: &[&str] = &["a", "b", "c", "ä", "Ä", "ß", " ", "1", "_", "-", "é", "B", "\n"];

        fn pattern() -> impl Strategy<Value = String> {
            proptest::collection::vec(proptest::sample::select(PIECES), 1..3).prop_map(|p| p.concat())
        }

        proptest! {
            #[test]
            fn on_any_text(
                trigger in proptest::collection::vec(pattern(), 0..4),
                blocklist in proptest::collection::vec(pattern(), 0..4),
                text in proptest::collection::vec(proptest::sample::select(TEXT), 0..12),
            ) {
                let text = text.concat();
                let patterns = CensorPatterns { trigger, blocklist };
                let censor = Censor::new(patterns.clone()).unwrap();
                prop_assert_eq!(censor.judge(&text).reason(), naive(&patterns, &text));
            }
        }
    }
}
