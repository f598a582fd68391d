//! Definitions: what a subscription watches. A definition names one wiki and optionally
//! an exact page or a page regex, an exact user or a user regex, and flags; a change
//! matches when it satisfies every part that is given (SPEC §6.1).
//!
//! This module also reads and writes the two document forms the control protocol carries
//! (`insert`, `remove`, `list`):
//!
//! ```text
//! <items><item page="T" page_rx="RE" user="U" user_rx="RE" flags="bot,minor">WIKI</item></items>
//! [{"wiki": "WIKI", "page": "T", "page_rx": "RE", "user": "U", "user_rx": "RE", "flags": ["bot"]}]
//! ```
//!
//! A [`Definition`] is always valid: its wiki is known (stored by database name) and its
//! regexes compile with the same limits the matching index uses, so building the index
//! from definitions cannot fail. Unknown attributes and keys are rejected rather than
//! ignored, because a misspelt `pagerx` would otherwise turn into a definition that
//! watches every change on the wiki.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use regex_automata::meta::{self, Regex};
use serde::Deserialize;

use crate::event::Change;
use crate::format::{escape_xml, write_json_string};
use crate::wiki::{UnknownWiki, Wiki, Wikis};

/// The most a single page or user regex may compile to, in bytes. Generous for real
/// patterns (a Unicode `\w+` needs a fraction of it) while bounding what one definition
/// can cost; the matching index sizes its regex sets from it.
pub const PATTERN_SIZE_LIMIT: usize = 512 * 1024;

/// The most search cache (the lazy DFA's transitions) one pattern may grow per thread
/// that matches with it, in bytes. Caches grow only as texts visit new states, so real
/// patterns use a few kilobytes; the bound keeps a pattern near [`PATTERN_SIZE_LIMIT`]
/// from growing the regex crate's default of 2 MiB per thread (such a pattern then
/// searches without the lazy DFA: slower, never wrong).
pub const PATTERN_CACHE_LIMIT: usize = 256 * 1024;

/// Compiles a page or user pattern the way validation and the index both do: unanchored,
/// case-sensitive, Unicode, within [`PATTERN_SIZE_LIMIT`]. This is what
/// `regex::RegexBuilder::new(pattern).size_limit(PATTERN_SIZE_LIMIT).build()` builds
/// (same engine, same settings, same answers), built with the engine's own builder so
/// that the compiled size can be read ([`Pattern::compiled_size`]). An error is the
/// compiler's complaint on one line.
pub(crate) fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    let config = meta::Config::new()
        .nfa_size_limit(Some(PATTERN_SIZE_LIMIT))
        .hybrid_cache_capacity(PATTERN_CACHE_LIMIT)
        .match_kind(regex_automata::MatchKind::LeftmostFirst)
        .utf8_empty(true);
    let syntax = regex_automata::util::syntax::Config::new().utf8(true);
    meta::Builder::new().configure(config).syntax(syntax).build(pattern).map_err(|e| regex_detail(&e))
}

/// Shortest literal worth prefiltering on: shorter ones occur in too many texts.
const MIN_REQUIRED_LITERAL: usize = 3;

/// Most alternative literals worth prefiltering on for one pattern.
const MAX_REQUIRED_LITERALS: usize = 64;

/// A compiled page or user regex; equal, hashed and ordered by its source text.
///
/// Compiled patterns are shared: every `Pattern` made from the same source text, by any
/// subscription, points at one compilation (see [`Interned`]). A million definitions
/// typically use far fewer distinct patterns, and a compiled regex with its search
/// caches costs kilobytes, so this is what keeps a large index's memory proportional to
/// the patterns rather than the definitions (and keeps each regex's caches warm).
#[derive(Clone)]
pub struct Pattern {
    compiled: Arc<Compiled>,
}

struct Compiled {
    source: Arc<str>,
    regex: Regex,
    /// What the compiled pattern holds on the heap, in bytes (its automata and
    /// prefilters; not the search caches, see [`PATTERN_CACHE_LIMIT`]).
    bytes: usize,
    /// How to match without the regex engine, when the pattern is only anchors around
    /// literal text.
    shape: Option<LiteralShape>,
    /// Every match contains one of these; empty when no useful set exists.
    required: Box<[Box<[u8]>]>,
}

/// The process's compiled patterns by source, held weakly: a pattern no definition
/// uses any more is freed, and its entry swept out once dead entries could make up
/// half the table.
struct Interned {
    by_source: HashMap<Arc<str>, Weak<Compiled>>,
    sweep_at: usize,
}

static INTERNED: Mutex<Option<Interned>> = Mutex::new(None);

/// Entries below which the table is never swept.
const MIN_SWEEP: usize = 1024;

impl Interned {
    fn with<T>(f: impl FnOnce(&mut Interned) -> T) -> T {
        // A panic elsewhere while holding the lock cannot leave the table inconsistent
        // (every edit is a single insert or retain), so a poisoned lock is still usable.
        let mut guard = INTERNED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(guard.get_or_insert_with(|| Interned { by_source: HashMap::new(), sweep_at: MIN_SWEEP }))
    }

    fn get(source: &str) -> Option<Arc<Compiled>> {
        Interned::with(|interned| interned.by_source.get(source).and_then(Weak::upgrade))
    }

    /// Shares `compiled`, or the one another thread interned for the same source first.
    fn share(compiled: Compiled) -> Arc<Compiled> {
        Interned::with(|interned| {
            if let Some(existing) = interned.by_source.get(&compiled.source).and_then(Weak::upgrade) {
                return existing;
            }
            let compiled = Arc::new(compiled);
            interned.by_source.insert(Arc::clone(&compiled.source), Arc::downgrade(&compiled));
            if interned.by_source.len() >= interned.sweep_at {
                interned.by_source.retain(|_, weak| weak.strong_count() > 0);
                interned.sweep_at = (2 * interned.by_source.len()).max(MIN_SWEEP);
            }
            compiled
        })
    }
}

impl Pattern {
    /// Compiles a pattern (unanchored, case-sensitive, within [`PATTERN_SIZE_LIMIT`]), or
    /// shares the compilation of an equal one that is still in use.
    ///
    /// # Errors
    /// [`DefinitionError::InvalidRegex`] with the compiler's complaint on one line.
    pub fn new(source: &str) -> Result<Pattern, DefinitionError> {
        if let Some(compiled) = Interned::get(source) {
            return Ok(Pattern { compiled });
        }
        // Compiled outside the lock: compiling can take milliseconds, and other threads'
        // patterns should not wait for it.
        let regex = compile_pattern(source)
            .map_err(|detail| DefinitionError::InvalidRegex { pattern: source.to_string(), detail })?;
        let required = required_literals(source).unwrap_or_default().into_boxed_slice();
        let shape = LiteralShape::of(source);
        let bytes = regex.memory_usage()
            + source.len()
            + required.iter().map(|literal| literal.len()).sum::<usize>()
            + shape.as_ref().map_or(0, LiteralShape::memory_usage);
        Ok(Pattern { compiled: Interned::share(Compiled { source: Arc::from(source), regex, bytes, required, shape }) })
    }

    /// What the compiled pattern holds on the heap, in bytes: the figure the dispatcher's
    /// memory budgets count (`max_pattern_memory`). Shared by every definition that uses
    /// the same pattern.
    pub fn compiled_size(&self) -> usize {
        self.compiled.bytes
    }

    /// Literals one of which every match contains (each at least three bytes long), if
    /// the pattern has such a set: a text with none of them cannot match, which lets the
    /// index skip the regex for most texts.
    pub fn required_literals(&self) -> Option<&[Box<[u8]>]> {
        (!self.compiled.required.is_empty()).then_some(&*self.compiled.required)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.compiled.source
    }

    /// The shared source text.
    pub fn source(&self) -> &Arc<str> {
        &self.compiled.source
    }

    /// Whether the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        match &self.compiled.shape {
            Some(shape) => shape.is_match(text),
            None => self.compiled.regex.is_match(text),
        }
    }
}

/// A pattern that is literal text with optional anchors, and alternatives of such text:
/// `^Wikipedia:Articles for creation/`, `Bot$`, `^(?:Script|Tool)$`. Many real
/// patterns look like this, and a comparison of bytes decides them several times
/// faster than a regex search, which for a big index also means less cold memory: the
/// regex engine's caches for thousands of patterns do not all stay in the CPU caches.
struct LiteralShape {
    /// `^`: the text starts with the literal.
    start: bool,
    /// `$`: the text ends with the literal.
    end: bool,
    /// `^literal\b`: a Unicode word boundary right after the literal (only with `start`).
    boundary_after: bool,
    /// `^literal[class]*$`: what may follow the literal to the end (only with `start`
    /// and `end`).
    tail: Option<Tail>,
    /// Any of these (at least one).
    literals: Box<[Box<[u8]>]>,
}

/// A repeated character class at the end of a pattern: `\d*`, `[0-9]{2,4}`, `\w+`.
struct Tail {
    /// The class's ranges, sorted and disjoint (as regex-syntax gives them).
    ranges: Box<[(char, char)]>,
    min: u32,
    max: Option<u32>,
}

impl Tail {
    /// Whether `rest` is between `min` and `max` characters, all in the class.
    fn is_match(&self, rest: &str) -> bool {
        let mut count = 0u32;
        for c in rest.chars() {
            let position = self.ranges.partition_point(|&(_, end)| end < c);
            if self.ranges.get(position).is_none_or(|&(start, _)| start > c) {
                return false;
            }
            count = count.saturating_add(1);
        }
        count >= self.min && self.max.is_none_or(|max| count <= max)
    }
}

impl LiteralShape {
    /// The shape of `source`, parsed as [`compile_pattern`] parses it, if it has one.
    fn of(source: &str) -> Option<LiteralShape> {
        use regex_syntax::hir::{Class, HirKind, Look};

        /// Most characters a class may have to be spelled out as alternatives.
        const MAX_CLASS_CHARS: usize = 4;

        /// The literal alternatives a sequence of `parts` stands for (groups unwrapped,
        /// concatenations multiplied out), if there are few enough to be worth it.
        fn literals(parts: &[regex_syntax::hir::Hir]) -> Option<Vec<Box<[u8]>>> {
            let mut all: Vec<Vec<u8>> = vec![Vec::new()];
            for part in parts {
                let choices: Vec<Box<[u8]>> = match part.kind() {
                    HirKind::Literal(literal) => vec![literal.0.clone()],
                    HirKind::Capture(capture) => literals(std::slice::from_ref(&capture.sub))?,
                    HirKind::Concat(inner) => literals(inner)?,
                    HirKind::Alternation(choices) => choices
                        .iter()
                        .map(|choice| literals(std::slice::from_ref(choice)))
                        .collect::<Option<Vec<_>>>()?
                        .concat(),
                    // `d|e` and `(?i)b` become classes of a few characters.
                    HirKind::Class(Class::Unicode(class)) => {
                        let chars = || class.ranges().iter().flat_map(|range| range.start()..=range.end());
                        if chars().nth(MAX_CLASS_CHARS).is_some() {
                            return None;
                        }
                        chars().map(|c| Box::from(c.encode_utf8(&mut [0; 4]).as_bytes())).collect()
                    }
                    _ => return None,
                };
                all = all.iter().flat_map(|prefix| choices.iter().map(move |c| [&prefix[..], c].concat())).collect();
                if all.len() > MAX_REQUIRED_LITERALS {
                    return None;
                }
            }
            Some(all.into_iter().map(Vec::into_boxed_slice).collect())
        }

        let hir = regex_syntax::parse(source).ok()?;
        let parts = match hir.kind() {
            HirKind::Concat(parts) => parts.as_slice(),
            _ => std::slice::from_ref(&hir),
        };
        let is_look = |hir: &regex_syntax::hir::Hir, look: Look| matches!(hir.kind(), HirKind::Look(l) if *l == look);
        let (start, parts) = match parts.split_first() {
            Some((first, rest)) if is_look(first, Look::Start) => (true, rest),
            _ => (false, parts),
        };
        let (end, parts) = match parts.split_last() {
            Some((last, rest)) if is_look(last, Look::End) => (true, rest),
            _ => (false, parts),
        };
        // `^literal\b` (`\b` as Unicode word boundary, which needs the Unicode word
        // tables regex-syntax was built with).
        let (boundary_after, parts) = match parts.split_last() {
            Some((last, rest))
                if start
                    && !end
                    && is_look(last, Look::WordUnicode)
                    && regex_syntax::try_is_word_character('a').is_ok() =>
            {
                (true, rest)
            }
            _ => (false, parts),
        };
        // `^literal[class]{min,max}$`.
        let (tail, parts) = match parts.split_last() {
            Some((last, rest)) if start && end => match last.kind() {
                HirKind::Repetition(repetition) => match repetition.sub.kind() {
                    HirKind::Class(Class::Unicode(class)) => {
                        let ranges = class.ranges().iter().map(|r| (r.start(), r.end())).collect();
                        (Some(Tail { ranges, min: repetition.min, max: repetition.max }), rest)
                    }
                    _ => (None, parts),
                },
                _ => (None, parts),
            },
            _ => (None, parts),
        };
        if parts.is_empty() {
            return None;
        }
        let literals = literals(parts)?;
        Some(LiteralShape { start, end, boundary_after, tail, literals: literals.into_boxed_slice() })
    }

    /// Its heap bytes.
    fn memory_usage(&self) -> usize {
        self.literals.iter().map(|literal| literal.len()).sum::<usize>()
            + self.tail.as_ref().map_or(0, |tail| tail.ranges.len() * std::mem::size_of::<(char, char)>())
    }

    fn is_match(&self, text: &str) -> bool {
        if let Some(tail) = &self.tail {
            return self.literals.iter().any(|literal| {
                // A literal is whole UTF-8, so where it ends is a character boundary.
                text.as_bytes().starts_with(literal)
                    && text.get(literal.len()..).is_some_and(|rest| tail.is_match(rest))
            });
        }
        let text = text.as_bytes();
        self.literals.iter().any(|literal| match (self.start, self.end) {
            (true, true) => text == &literal[..],
            (true, false) => {
                text.starts_with(literal) && (!self.boundary_after || word_boundary_at(text, literal.len()))
            }
            (false, true) => text.ends_with(literal),
            (false, false) => text.windows(literal.len()).any(|window| window == &literal[..]),
        })
    }
}

/// Whether a Unicode word boundary is at byte `at` of `text` (UTF-8, `at` a character
/// boundary): a word character on exactly one side, as the regex crate's `\b`.
fn word_boundary_at(text: &[u8], at: usize) -> bool {
    let is_word = |c: Option<char>| c.is_some_and(|c| regex_syntax::try_is_word_character(c).unwrap_or(false));
    let (before, after) = text.split_at(at);
    let before = std::str::from_utf8(before).ok().and_then(|s| s.chars().next_back());
    let after = std::str::from_utf8(after).ok().and_then(|s| s.chars().next());
    is_word(before) != is_word(after)
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        Arc::ptr_eq(&self.compiled, &other.compiled) || self.compiled.source == other.compiled.source
    }
}

impl Eq for Pattern {}

impl std::hash::Hash for Pattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.compiled.source.hash(state);
    }
}

impl PartialOrd for Pattern {
    fn partial_cmp(&self, other: &Pattern) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pattern {
    fn cmp(&self, other: &Pattern) -> std::cmp::Ordering {
        self.compiled.source.cmp(&other.compiled.source)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", &*self.compiled.source)
    }
}

/// Flags a change must all have.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Flags(u8);

impl Flags {
    /// Made by a bot.
    pub const BOT: Flags = Flags(1);
    /// Not made by a bot.
    pub const NOBOT: Flags = Flags(1 << 1);
    /// Marked minor.
    pub const MINOR: Flags = Flags(1 << 2);
    /// Not marked minor.
    pub const NOMINOR: Flags = Flags(1 << 3);
    /// Created a page.
    pub const NEW: Flags = Flags(1 << 4);
    /// A log entry.
    pub const LOG: Flags = Flags(1 << 5);

    const NAMES: [(&'static str, Flags); 6] = [
        ("bot", Flags::BOT),
        ("nobot", Flags::NOBOT),
        ("minor", Flags::MINOR),
        ("nominor", Flags::NOMINOR),
        ("new", Flags::NEW),
        ("log", Flags::LOG),
    ];

    /// No flags.
    pub const fn empty() -> Flags {
        Flags(0)
    }

    /// The flag with this name (`bot`, `nobot`, `minor`, `nominor`, `new`, `log`; any
    /// letter case).
    pub fn from_name(name: &str) -> Option<Flags> {
        Flags::NAMES.iter().find(|(known, _)| known.eq_ignore_ascii_case(name)).map(|&(_, flag)| flag)
    }

    /// Flags from names, each trimmed; empty names are skipped.
    ///
    /// # Errors
    /// The first name that is not a flag.
    pub fn from_names<'n>(names: impl IntoIterator<Item = &'n str>) -> Result<Flags, String> {
        let mut flags = Flags::empty();
        for name in names.into_iter().map(str::trim).filter(|n| !n.is_empty()) {
            flags = flags | Flags::from_name(name).ok_or_else(|| name.to_string())?;
        }
        Ok(flags)
    }

    /// The flags this change has: exactly one of bot/nobot and of minor/nominor, plus new
    /// or log by its type.
    pub fn of_change(change: &Change<'_>) -> Flags {
        let mut flags = if change.bot { Flags::BOT } else { Flags::NOBOT };
        flags = flags | if change.minor { Flags::MINOR } else { Flags::NOMINOR };
        if change.is_new() {
            flags = flags | Flags::NEW;
        }
        if change.is_log() {
            flags = flags | Flags::LOG;
        }
        flags
    }

    /// Whether a change with `change_flags` has every flag in `self`.
    pub fn satisfied_by(self, change_flags: Flags) -> bool {
        self.0 & !change_flags.0 == 0
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the set flags, in canonical order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Flags::NAMES.into_iter().filter(move |&(_, flag)| self.0 & flag.0 != 0).map(|(name, _)| name)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

impl fmt::Display for Flags {
    /// Comma-separated names, as the XML form and the store write them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({self})")
    }
}

/// The raw, unvalidated parts of a definition, as documents and the store hold them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefinitionFields {
    /// Wiki in any accepted form.
    pub wiki: String,
    /// Exact page title.
    pub page: Option<String>,
    /// Page regex.
    pub page_rx: Option<String>,
    /// Exact user name.
    pub user: Option<String>,
    /// User regex.
    pub user_rx: Option<String>,
    /// Flag names.
    pub flags: Vec<String>,
}

/// Why fields do not make a definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    /// No wiki was given.
    #[error("the definition names no wiki")]
    MissingWiki,
    /// The wiki is not known.
    #[error(transparent)]
    UnknownWiki(#[from] UnknownWiki),
    /// A regex does not compile.
    #[error("invalid regex {pattern:?}: {detail}")]
    InvalidRegex {
        /// The pattern as given.
        pattern: String,
        /// The compiler's complaint, on one line.
        detail: String,
    },
    /// A flag name is not one of the six.
    #[error("unknown flag '{0}'")]
    UnknownFlag(String),
}

/// A valid definition. Equal definitions (same wiki, page, page regex, user, user regex
/// and flags) are duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Definition {
    wiki: Wiki,
    page: Option<Arc<str>>,
    page_rx: Option<Pattern>,
    user: Option<Arc<str>>,
    user_rx: Option<Pattern>,
    flags: Flags,
}

impl Definition {
    /// Validates raw fields: resolves the wiki, compiles the regexes, reads the flags.
    /// Empty page and user values count as absent.
    ///
    /// # Errors
    /// The first problem, checked in the order wiki, page regex, user regex, flags.
    pub fn new(wikis: &Wikis, fields: &DefinitionFields) -> Result<Definition, DefinitionError> {
        if fields.wiki.trim().is_empty() {
            return Err(DefinitionError::MissingWiki);
        }
        let wiki = wikis.resolve(&fields.wiki)?;
        let present =
            |value: &Option<String>| -> Option<Arc<str>> { value.as_deref().filter(|v| !v.is_empty()).map(Arc::from) };
        let pattern = |value: &Option<String>| -> Result<Option<Pattern>, DefinitionError> {
            value.as_deref().filter(|v| !v.is_empty()).map(Pattern::new).transpose()
        };
        let page_rx = pattern(&fields.page_rx)?;
        let user_rx = pattern(&fields.user_rx)?;
        let flags = Flags::from_names(fields.flags.iter().map(String::as_str)).map_err(DefinitionError::UnknownFlag)?;
        Ok(Definition { wiki, page: present(&fields.page), page_rx, user: present(&fields.user), user_rx, flags })
    }

    /// The raw fields again (wiki by database name), e.g. to store.
    pub fn fields(&self) -> DefinitionFields {
        let owned = |value: Option<&str>| value.map(str::to_string);
        DefinitionFields {
            wiki: self.wiki.dbname().to_string(),
            page: owned(self.page.as_deref()),
            page_rx: owned(self.page_rx.as_ref().map(Pattern::as_str)),
            user: owned(self.user.as_deref()),
            user_rx: owned(self.user_rx.as_ref().map(Pattern::as_str)),
            flags: self.flags.names().map(str::to_string).collect(),
        }
    }

    /// The wiki.
    pub fn wiki(&self) -> Wiki {
        self.wiki
    }

    /// The exact page, if any.
    pub fn page(&self) -> Option<&Arc<str>> {
        self.page.as_ref()
    }

    /// The page regex, if any.
    pub fn page_rx(&self) -> Option<&Pattern> {
        self.page_rx.as_ref()
    }

    /// The exact user, if any.
    pub fn user(&self) -> Option<&Arc<str>> {
        self.user.as_ref()
    }

    /// The user regex, if any.
    pub fn user_rx(&self) -> Option<&Pattern> {
        self.user_rx.as_ref()
    }

    /// The flags.
    pub fn flags(&self) -> Flags {
        self.flags
    }
}

/// A set of literals one of which every match of `pattern` contains, chosen from three
/// candidates by the length of its shortest literal: the prefixes every match starts
/// with and the suffixes every match ends with (regex-syntax's extractor, which expands
/// alternations and small classes, so `^(?:Script|Tool)5$` gives `Script5`, `Tool5` and
/// `(?i)bot` gives its eight spellings), and the longest literal inside that every match
/// must pass through (for `.*Talk.*`). `None` when no candidate has only literals of at
/// least [`MIN_REQUIRED_LITERAL`] bytes and at most [`MAX_REQUIRED_LITERALS`] of them.
fn required_literals(pattern: &str) -> Option<Vec<Box<[u8]>>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    use regex_syntax::hir::{Hir, HirKind};

    /// The longest literal on a path of concatenations, groups and repetitions of at
    /// least one from the root: every match contains it.
    fn inner(hir: &Hir) -> Option<&[u8]> {
        match hir.kind() {
            HirKind::Literal(literal) => Some(&literal.0),
            HirKind::Capture(capture) => inner(&capture.sub),
            HirKind::Repetition(repetition) if repetition.min >= 1 => inner(&repetition.sub),
            HirKind::Concat(parts) => parts.iter().filter_map(inner).max_by_key(|l| l.len()),
            _ => None,
        }
    }

    let hir = regex_syntax::parse(pattern).ok()?;
    let extracted = [ExtractKind::Prefix, ExtractKind::Suffix].map(|kind| {
        let seq = Extractor::new().kind(kind).extract(&hir);
        seq.literals().map(|literals| literals.iter().map(|l| Box::from(l.as_bytes())).collect::<Vec<Box<[u8]>>>())
    });
    let inner = inner(&hir).map(|literal| vec![Box::from(literal)]);
    extracted
        .into_iter()
        .chain([inner])
        .flatten()
        .map(|mut literals| {
            literals.sort();
            literals.dedup();
            literals
        })
        .filter(|literals| {
            !literals.is_empty()
                && literals.len() <= MAX_REQUIRED_LITERALS
                && literals.iter().all(|l| l.len() >= MIN_REQUIRED_LITERAL)
        })
        .max_by_key(|literals| {
            let shortest = literals.iter().map(|l| l.len()).min().unwrap_or(0);
            (shortest, std::cmp::Reverse(literals.len()))
        })
}

/// The compiler's complaint on one line: a syntax error's `error: …` line, not its
/// multi-line drawing of the pattern (the texts the regex crate gives for the same
/// errors).
fn regex_detail(error: &meta::BuildError) -> String {
    if let Some(limit) = error.size_limit() {
        return format!("the compiled pattern would exceed {limit} bytes");
    }
    let text = error.syntax_error().map_or_else(|| error.to_string(), ToString::to_string);
    text.lines()
        .rev()
        .find_map(|line| line.strip_prefix("error: "))
        .or_else(|| text.lines().next_back())
        .unwrap_or("syntax error")
        .to_string()
}

/// The two document forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentFormat {
    /// `<items><item …>WIKI</item></items>`.
    Xml,
    /// `[{"wiki": …}]`.
    Json,
}

impl DocumentFormat {
    /// The format with this name (`xml`, `json`; any letter case).
    pub fn parse(name: &str) -> Option<DocumentFormat> {
        if name.eq_ignore_ascii_case("xml") {
            Some(DocumentFormat::Xml)
        } else if name.eq_ignore_ascii_case("json") {
            Some(DocumentFormat::Json)
        } else {
            None
        }
    }
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Not well-formed XML, or not the `<items><item>` shape.
    #[error("invalid XML at byte {position}: {detail}")]
    Xml {
        /// Byte offset into the document.
        position: u64,
        /// What was wrong.
        detail: String,
    },
    /// Not JSON, or not an array of definition objects.
    #[error("invalid JSON at line {line}, column {column}: {detail}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was wrong.
        detail: String,
    },
    /// Well-formed, but one definition is not valid.
    #[error("definition {number}: {error}")]
    Definition {
        /// 1-based position of the definition in the document.
        number: usize,
        /// What was wrong with it.
        error: DefinitionError,
    },
    /// The document's distinct patterns compile to more than the limit together.
    #[error("definition {number}: pattern {pattern:?} takes the document's compiled patterns over {limit} bytes")]
    PatternMemory {
        /// 1-based position of the definition whose pattern crossed the limit.
        number: usize,
        /// That pattern.
        pattern: String,
        /// The limit in bytes.
        limit: usize,
    },
}

/// Reads a document into definitions, in document order. Its distinct patterns may
/// compile to at most `max_pattern_memory` bytes together ([`Pattern::compiled_size`]):
/// reading stops at the first pattern past that, so a document full of costly patterns
/// costs at most about that much memory and compiling time before it is refused (a
/// subscription's budget is at least what one document's patterns cost, so the caller
/// passes that budget).
///
/// # Errors
/// The first problem found; nothing is returned for a document with any problem.
pub fn parse_document(
    format: DocumentFormat,
    text: &str,
    wikis: &Wikis,
    max_pattern_memory: usize,
) -> Result<Vec<Definition>, DocumentError> {
    let fields = match format {
        DocumentFormat::Xml => parse_xml_fields(text)?,
        DocumentFormat::Json => parse_json_fields(text)?,
    };
    let mut seen = std::collections::HashSet::new();
    let mut compiled = 0usize;
    let mut definitions = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let definition =
            Definition::new(wikis, f).map_err(|error| DocumentError::Definition { number: i + 1, error })?;
        for pattern in [definition.page_rx(), definition.user_rx()].into_iter().flatten() {
            if seen.insert(Arc::clone(pattern.source())) {
                compiled = compiled.saturating_add(pattern.compiled_size());
                if compiled > max_pattern_memory {
                    return Err(DocumentError::PatternMemory {
                        number: i + 1,
                        pattern: pattern.as_str().to_string(),
                        limit: max_pattern_memory,
                    });
                }
            }
        }
        definitions.push(definition);
    }
    Ok(definitions)
}

/// Writes definitions as one document on one line.
pub fn write_document(format: DocumentFormat, definitions: &[Definition]) -> String {
    let mut out = String::new();
    match format {
        DocumentFormat::Xml => {
            out.push_str("<items>");
            for definition in definitions {
                write_xml_item(&mut out, definition);
            }
            out.push_str("</items>");
        }
        DocumentFormat::Json => {
            out.push('[');
            for (i, definition) in definitions.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_item(&mut out, definition);
            }
            out.push(']');
        }
    }
    out
}

/// The optional parts of a definition by their attribute and key names.
fn named_parts(definition: &Definition) -> [(&'static str, Option<&str>); 4] {
    [
        ("page", definition.page.as_deref()),
        ("page_rx", definition.page_rx.as_ref().map(Pattern::as_str)),
        ("user", definition.user.as_deref()),
        ("user_rx", definition.user_rx.as_ref().map(Pattern::as_str)),
    ]
}

fn write_xml_item(out: &mut String, definition: &Definition) {
    out.push_str("<item");
    for (name, value) in named_parts(definition) {
        if let Some(value) = value {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            escape_xml(out, value, true);
            out.push('"');
        }
    }
    if !definition.flags.is_empty() {
        out.push_str(" flags=\"");
        out.push_str(&definition.flags.to_string());
        out.push('"');
    }
    out.push('>');
    out.push_str(definition.wiki.dbname());
    out.push_str("</item>");
}

fn write_json_item(out: &mut String, definition: &Definition) {
    out.push_str("{\"wiki\":");
    write_json_string(out, definition.wiki.dbname());
    for (name, value) in named_parts(definition) {
        if let Some(value) = value {
            out.push(',');
            write_json_string(out, name);
            out.push(':');
            write_json_string(out, value);
        }
    }
    if !definition.flags.is_empty() {
        out.push_str(",\"flags\":[");
        for (i, name) in definition.flags.names().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(out, name);
        }
        out.push(']');
    }
    out.push('}');
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a definition object")]
struct JsonDefinition {
    wiki: Option<String>,
    page: Option<String>,
    page_rx: Option<String>,
    user: Option<String>,
    user_rx: Option<String>,
    flags: Option<Vec<String>>,
}

fn parse_json_fields(text: &str) -> Result<Vec<DefinitionFields>, DocumentError> {
    let items: Vec<JsonDefinition> = serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let detail = match message.rfind(" at line ") {
            Some(cut) => message[..cut].to_string(),
            None => message,
        };
        DocumentError::Json { line: e.line(), column: e.column(), detail }
    })?;
    Ok(items
        .into_iter()
        .map(|item| DefinitionFields {
            wiki: item.wiki.unwrap_or_default(),
            page: item.page,
            page_rx: item.page_rx,
            user: item.user,
            user_rx: item.user_rx,
            flags: item.flags.unwrap_or_default(),
        })
        .collect())
}

/// Where the XML reader is in the expected shape.
enum XmlPlace {
    BeforeRoot,
    InItems,
    InItem(DefinitionFields),
    AfterRoot,
}

fn parse_xml_fields(text: &str) -> Result<Vec<DefinitionFields>, DocumentError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut items = Vec::new();
    let mut place = XmlPlace::BeforeRoot;
    loop {
        let position = reader.buffer_position();
        let fail = |detail: String| DocumentError::Xml { position, detail };
        let event = reader
            .read_event()
            .map_err(|e| DocumentError::Xml { position: reader.error_position(), detail: e.to_string() })?;
        place = match (place, event) {
            (XmlPlace::AfterRoot, Event::Eof) => return Ok(items),
            (_, Event::Eof) => return Err(fail("the document ends before </items>".into())),
            (p, Event::Comment(_) | Event::Decl(_) | Event::PI(_)) => p,
            (p @ (XmlPlace::BeforeRoot | XmlPlace::InItems | XmlPlace::AfterRoot), Event::Text(t))
                if t.trim().is_empty() =>
            {
                p
            }
            (XmlPlace::BeforeRoot, Event::Start(e)) if e.name().as_ref() == "items" => {
                no_attributes(&e).map_err(fail)?;
                XmlPlace::InItems
            }
            (XmlPlace::BeforeRoot, Event::Empty(e)) if e.name().as_ref() == "items" => {
                no_attributes(&e).map_err(fail)?;
                XmlPlace::AfterRoot
            }
            (XmlPlace::InItems, Event::Start(e)) if e.name().as_ref() == "item" => {
                XmlPlace::InItem(item_attributes(&e).map_err(fail)?)
            }
            (XmlPlace::InItems, Event::Empty(e)) if e.name().as_ref() == "item" => {
                // `<item/>` names no wiki; Definition::new reports that.
                items.push(item_attributes(&e).map_err(fail)?);
                XmlPlace::InItems
            }
            // The reader checks that an end tag closes the open element.
            (XmlPlace::InItems, Event::End(_)) => XmlPlace::AfterRoot,
            (XmlPlace::InItem(mut fields), Event::Text(t)) => {
                fields.wiki.push_str(&t.xml10_content());
                XmlPlace::InItem(fields)
            }
            (XmlPlace::InItem(mut fields), Event::CData(t)) => {
                fields.wiki.push_str(&t);
                XmlPlace::InItem(fields)
            }
            (XmlPlace::InItem(mut fields), Event::GeneralRef(r)) => {
                match r.resolve_char_ref() {
                    Ok(Some(c)) => fields.wiki.push(c),
                    Ok(None) => fields.wiki.push_str(
                        quick_xml::escape::resolve_predefined_entity(&r)
                            .ok_or_else(|| fail(format!("unknown entity &{};", &*r)))?,
                    ),
                    Err(e) => return Err(fail(e.to_string())),
                }
                XmlPlace::InItem(fields)
            }
            (XmlPlace::InItem(mut fields), Event::End(_)) => {
                fields.wiki = fields.wiki.trim().to_string();
                items.push(fields);
                XmlPlace::InItems
            }
            (XmlPlace::BeforeRoot, _) => return Err(fail("expected <items>".into())),
            (XmlPlace::InItems, _) => return Err(fail("expected <item> or </items>".into())),
            (XmlPlace::InItem(_), _) => {
                return Err(fail("expected the wiki name and </item>".into()));
            }
            (XmlPlace::AfterRoot, _) => {
                return Err(fail("unexpected content after </items>".into()));
            }
        };
    }
}

fn no_attributes(element: &BytesStart<'_>) -> Result<(), String> {
    match element.attributes().next() {
        None => Ok(()),
        Some(_) => Err("<items> takes no attributes".into()),
    }
}

fn item_attributes(element: &BytesStart<'_>) -> Result<DefinitionFields, String> {
    let mut fields = DefinitionFields::default();
    for attribute in element.attributes().with_checks(true) {
        let attribute = attribute.map_err(|e| e.to_string())?;
        let value = attribute.normalized_value(XmlVersion::Implicit1_0).map_err(|e| e.to_string())?.into_owned();
        match attribute.key.as_ref() {
            "page" => fields.page = Some(value),
            "page_rx" => fields.page_rx = Some(value),
            "user" => fields.user = Some(value),
            "user_rx" => fields.user_rx = Some(value),
            "flags" => fields.flags = value.split(',').map(str::to_string).collect(),
            other => return Err(format!("unknown attribute '{other}' on <item>")),
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_stops_compiling_at_its_pattern_budget() {
        let size = |p: &str| Pattern::new(p).expect("valid").compiled_size();
        let (a, b) = (r"^\w+ one$", r"(?i)\d+ two");
        assert!(size(a) > 10_000 && size(b) > 1_000, "real sizes: {} {}", size(a), size(b));
        let text = format!(
            r#"[{{"wiki":"enwiki","page_rx":{a:?}}},{{"wiki":"dewiki","user_rx":{a:?}}},{{"wiki":"enwiki","user_rx":{b:?}}}]"#
        );
        let parse = |limit| parse_document(DocumentFormat::Json, &text, Wikis::embedded(), limit);
        // A pattern used twice counts once.
        assert_eq!(parse(size(a) + size(b)).map(|d| d.len()), Ok(3));
        assert_eq!(
            parse(size(a) + size(b) - 1),
            Err(DocumentError::PatternMemory { number: 3, pattern: b.to_string(), limit: size(a) + size(b) - 1 })
        );
    }

    /// Parses a document and describes each definition as its written XML item, or the
    /// error.
    #[track_caller]
    fn check(format: DocumentFormat, text: &str, expect: &str) {
        let got = match parse_document(format, text, Wikis::embedded(), usize::MAX) {
            Ok(definitions) => write_document(DocumentFormat::Xml, &definitions),
            Err(error) => error.to_string(),
        };
        assert_eq!(got, expect, "{text}");
    }

    #[test]
    fn xml_documents() {
        use DocumentFormat::Xml;
        check(Xml, "<items></items>", "<items></items>");
        check(
            Xml,
            "<?xml version=\"1.0\"?>\n<!-- mine -->\n<items>\n  <item page=\"A &amp; B\" flags=\"MINOR, bot\">\n en_wikipedia </item>\n</items>\n",
            "<items><item page=\"A &amp; B\" flags=\"bot,minor\">enwiki</item></items>",
        );
        check(
            Xml,
            "<items><item page_rx=\"^&lt;x&gt;&quot;&#10;\" user=''>&#101;n&#x77;iki</item><item><![CDATA[dewiki]]></item></items>",
            "<items><item page_rx=\"^&lt;x&gt;&quot;&#10;\">enwiki</item><item>dewiki</item></items>",
        );
        check(Xml, "<items><item page=\"\" user_rx=\"\">kowiki</item></items>", "<items><item>kowiki</item></items>");
        check(Xml, "<items><item>enwiki</item>", "invalid XML at byte 26: the document ends before </items>");
        check(
            Xml,
            "<items><item>enwiki</itm></items>",
            "invalid XML at byte 19: ill-formed document: expected `</item>`, but `</itm>` was found",
        );
        check(
            Xml,
            "<items><item page=\"a\" page=\"b\">enwiki</item></items>",
            "invalid XML at byte 7: position 14: duplicated attribute, previous declaration at position 5",
        );
        check(Xml, "<items><item>&bogus;</item></items>", "invalid XML at byte 13: unknown entity &bogus;");
        check(Xml, "<items a=\"1\"/>", "invalid XML at byte 0: <items> takes no attributes");
        check(Xml, "<items><item>nosuchwiki</item></items>", "definition 1: unknown wiki 'nosuchwiki'");
        check(
            Xml,
            "<items><item>enwiki</item><item user_rx=\"[\">enwiki</item></items>",
            "definition 2: invalid regex \"[\": unclosed character class",
        );
        check(
            Xml,
            "<items><item flags=\"bot,,\">enwiki</item></items>",
            "<items><item flags=\"bot\">enwiki</item></items>",
        );
    }

    #[test]
    fn json_documents() {
        use DocumentFormat::Json;
        check(Json, "[]", "<items></items>");
        check(
            Json,
            r#"[{"wiki":"commons.wikimedia.org","user":"A \"quoted\" <name>","flags":["new","log"]},{"wiki":"dewiki","page":null}]"#,
            r#"<items><item user="A &quot;quoted&quot; &lt;name&gt;" flags="new,log">commonswiki</item><item>dewiki</item></items>"#,
        );
        check(
            Json,
            r#"[{"wiki":"enwiki","Title":"x"}]"#,
            "invalid JSON at line 1, column 25: unknown field `Title`, expected one of `wiki`, `page`, `page_rx`, `user`, `user_rx`, `flags`",
        );
        check(
            Json,
            r#"[{"wiki":"enwiki","flags":"bot"}]"#,
            "invalid JSON at line 1, column 31: invalid type: string \"bot\", expected a sequence",
        );
        check(Json, r#"{"wiki":"enwiki"}"#, "invalid JSON at line 1, column 0: invalid type: map, expected a sequence");
        check(Json, r#"[{"wiki":""}]"#, "definition 1: the definition names no wiki");
        check(Json, r#"[{"wiki":"enwiki","flags":["bots"]}]"#, "definition 1: unknown flag 'bots'");
    }

    #[test]
    fn written_documents_read_back_the_same() {
        let fields = DefinitionFields {
            wiki: "zh-min-nan.wikipedia.org".into(),
            page: Some("Tâi-oân & \"<ok>\"\tx".into()),
            page_rx: Some("^a\\d+\n$".into()),
            user: Some("Ünï".into()),
            user_rx: None,
            flags: vec!["nominor".into(), "bot".into()],
        };
        let definitions = vec![
            Definition::new(Wikis::embedded(), &fields).expect("valid"),
            Definition::new(Wikis::embedded(), &DefinitionFields { wiki: "metawiki".into(), ..Default::default() })
                .expect("valid"),
        ];
        for format in [DocumentFormat::Xml, DocumentFormat::Json] {
            let text = write_document(format, &definitions);
            assert!(!text.contains('\n'), "one line: {text}");
            let back = parse_document(format, &text, Wikis::embedded(), usize::MAX).expect("reads back");
            assert_eq!(back, definitions, "{text}");
        }
        assert_eq!(definitions[0].fields().wiki, "zh_min_nanwiki");
        assert_eq!(definitions[0].fields().flags, ["bot", "nominor"]);
    }

    #[test]
    fn required_literals() {
        #[track_caller]
        fn check(pattern: &str, expect: &[&str]) {
            let pattern = Pattern::new(pattern).expect("valid pattern");
            let got: Vec<String> = pattern
                .required_literals()
                .unwrap_or_default()
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            assert_eq!(got, expect, "{pattern:?}");
        }
        check("^Talk:Topic 5/", &["Talk:Topic 5/"]);
        check("Project 5$", &["Project 5"]);
        check("^Draft:Item 5\\b", &["Draft:Item 5"]);
        check("^Bot5\\d*$", &["Bot5"]);
        check("^(?:Script|Tool)5$", &["Script5", "Tool5"]);
        check("(?i)bot", &["BOT", "BOt", "BoT", "Bot", "bOT", "bOt", "boT", "bot"]);
        check(".*Talk.*", &["Talk"]);
        check("(x)(longer)", &["xlonger"]);
        check("[a-z]+_archive", &["_archive"]);
        check("日本語", &["日本語"]);
        check("(?:abc)?xy", &[]);
        check("a|bcd", &[]);
        check("[0-9]{3}", &[]);
        check(".", &[]);
    }

    /// Equal sources share one compilation while either is alive; a dropped pattern
    /// is compiled afresh next time (its weak entry does not keep it).
    #[test]
    fn patterns_with_the_same_source_share_their_compilation() {
        let first = Pattern::new("^Interned test (\\d+)$").expect("valid");
        let second = Pattern::new("^Interned test (\\d+)$").expect("valid");
        assert!(Arc::ptr_eq(&first.compiled, &second.compiled));
        let other = Pattern::new("^Interned test (\\w+)$").expect("valid");
        assert!(!Arc::ptr_eq(&first.compiled, &other.compiled));
        let weak = Arc::downgrade(&first.compiled);
        drop((first, second));
        assert!(weak.upgrade().is_none(), "the table holds patterns weakly");
        assert!(Pattern::new("^Interned test (\\d+)$").expect("valid").is_match("Interned test 42"));
    }

    /// Patterns with a literal shape skip the regex engine: they must answer exactly as
    /// it does, and patterns without one (classes, case folding, word boundaries) must
    /// not get one.
    #[test]
    fn literal_shapes_agree_with_the_regex() {
        let shaped = [
            "^Talk:Topic 5/",
            "Project 5$",
            "^(?:Script|Tool)5$",
            "^(Script|Tool)$",
            "Bot",
            "^日本語$",
            "a|bc",
            "^a\\.b$",
            "^(ab)c(?:d|e)$",
            "(?i)bot",
            "^Draft:Item 5\\b",
            "^a/\\b",
            "^(?:Dr|Ü)\\b",
            "^Bot5\\d*$",
            "^Bot\\d+$",
            "^(?:Bot|Ü)[a-c]{1,2}$",
            "^a\\w*$",
        ];
        let unshaped = [
            "Item 5\\b",
            "\\bItem",
            "(?i)[a-z]ot",
            "Bot5\\d*$",
            "^Bot5\\d*",
            "^Bot(?:\\d\\d)*$",
            "[a-z]+",
            "^$",
            "^a$|^b",
            "(?m)^a$",
            ".",
        ];
        let texts = [
            "",
            "Talk:Topic 5/",
            "Talk:Topic 5/Archive",
            "x Talk:Topic 5/",
            "Wikipedia:Project 5",
            "Project 5 x",
            "Script5",
            "Tool5",
            "Tool55",
            "xTool5",
            "Script",
            "Tool",
            "Bot",
            "a Bot b",
            "bot",
            "日本語",
            "日本語x",
            "a",
            "bc",
            "xa",
            "a.b",
            "axb",
            "\na\n",
            "abcd",
            "abce",
            "xabcd",
            "Draft:Item 5",
            "Draft:Item 5 (film)",
            "Draft:Item 55",
            "Draft:Item 5é",
            "Draft:Item 5-x",
            "a/",
            "a/b",
            "a/-",
            "Dr",
            "Dr.",
            "Drx",
            "Ü",
            "Üx",
            "Ü!",
            "Bot5",
            "Bot512",
            "Bot5١٢",
            "Bot5x",
            "Bot5 ",
            "Bot",
            "Bota",
            "Botabc",
            "Botac",
            "Üb",
            "a_é9",
            "a-",
        ];
        for source in shaped {
            let pattern = Pattern::new(source).expect("valid");
            assert!(pattern.compiled.shape.is_some(), "{source} has a literal shape");
            for text in texts {
                assert_eq!(pattern.is_match(text), pattern.compiled.regex.is_match(text), "{source} on {text:?}");
            }
        }
        for source in unshaped {
            assert!(Pattern::new(source).expect("valid").compiled.shape.is_none(), "{source} has no literal shape");
        }
    }

    #[test]
    fn flags_of_changes() {
        let change = Change { bot: true, kind: Some("new".into()), ..Change::default() };
        let flags = Flags::of_change(&change);
        assert_eq!(flags.to_string(), "bot,nominor,new");
        assert!(Flags::from_names(["bot", "new"]).expect("known").satisfied_by(flags));
        assert!(!Flags::from_names(["minor"]).expect("known").satisfied_by(flags));
        assert!(Flags::empty().satisfied_by(flags));
        assert_eq!(Flags::from_names(["bot", "robot"]), Err("robot".to_string()));
    }
}
