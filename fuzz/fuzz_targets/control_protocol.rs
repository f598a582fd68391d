//! Arbitrary bytes as control-protocol lines: the session must never panic, every reply
//! must be exactly one line, and whatever `list` writes must read back as the
//! subscription's definitions.
//!
//! The first input byte picks the setting: bit 0 authenticates first (so the fuzzer
//! reaches `insert`, `remove`, `list` and `format` without guessing a token), bit 1 uses
//! tight limits so the line and document caps are hit.

#![no_main]

use flotilla_wikimedia_core::definition::{DocumentFormat, parse_document};
use flotilla_wikimedia_core::subscription::SubscriptionBackend;
use flotilla_wikimedia_core::token::{Token, TokenError, TokenSource};
use flotilla_wikimedia_core::{Limits, Reply, Session, SessionLimits, Subscriptions, Wikis};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "FUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZ";

struct FixedToken;

impl TokenSource for FixedToken {
    fn new_token(&mut self) -> Result<Token, TokenError> {
        Token::parse(TOKEN).ok_or_else(|| TokenError("bad fixed token".into()))
    }
}

fn check_reply(reply: &Reply) {
    let bytes = reply.encode();
    assert_eq!(bytes.last(), Some(&b'\n'), "{reply:?}");
    assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1, "one line: {reply:?}");
    assert!(std::str::from_utf8(&bytes).is_ok(), "UTF-8: {reply:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let mut state = Subscriptions::new(Wikis::embedded())
        .with_token_source(FixedToken)
        .with_limits(Limits { max_definitions: 64, ..Limits::default() });
    let limits = if mode & 2 != 0 {
        SessionLimits { max_line_bytes: 256, max_document_bytes: 1024 }
    } else {
        SessionLimits::default()
    };
    let mut session = Session::new(limits);
    if mode & 1 != 0 {
        session.feed_line(b"subscribe fuzz", &mut state);
        let out = session.feed_line(format!("auth fuzz {TOKEN}").as_bytes(), &mut state);
        assert_eq!(out.replies.first().map(Reply::line).as_deref(), Some("OK"));
    }
    for line in input.split(|&b| b == b'\n') {
        let out = session.feed_line(line, &mut state);
        out.replies.iter().for_each(check_reply);
        if out.close {
            assert!(session.is_closed());
            return;
        }
    }
    // Round trip: the listing reads back as the definitions it lists.
    let Some(id) = session.authenticated() else {
        return;
    };
    if session.in_document() {
        return;
    }
    let Ok(definitions) = state.definitions(id) else {
        return;
    };
    for (command, format) in [("list xml", DocumentFormat::Xml), ("list json", DocumentFormat::Json)] {
        let out = session.feed_line(command.as_bytes(), &mut state);
        let [Reply::Document(text)] = out.replies.as_slice() else {
            panic!("{command} answered {:?}", out.replies);
        };
        let back = parse_document(format, text, Wikis::embedded(), usize::MAX)
            .unwrap_or_else(|e| panic!("{command} wrote {text:?}, which reads back as {e}"));
        assert_eq!(back, definitions, "{command}: {text}");
    }
});
