//! Page and user patterns: any pattern text compiles or is refused without panicking,
//! and a compiled pattern answers exactly as the regex crate does on any text, whether
//! the index matches it as bytes (a literal shape) or with the regex engine.
//!
//! Input: the pattern, a NUL byte, the text.
#![no_main]

use flotilla_wikimedia_core::definition::{PATTERN_SIZE_LIMIT, Pattern};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let Some((source, text)) = input.split_once('\0') else { return };
    let Ok(pattern) = Pattern::new(source) else { return };
    let Ok(regex) = regex::RegexBuilder::new(source).size_limit(PATTERN_SIZE_LIMIT).build() else {
        panic!("Pattern::new accepted {source:?}, which the regex crate refuses");
    };
    assert_eq!(pattern.is_match(text), regex.is_match(text), "{source:?} on {text:?}");
});
