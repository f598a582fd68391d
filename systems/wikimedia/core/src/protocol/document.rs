//! Collecting an `insert`/`remove` document line by line and deciding where it ends.
//!
//! An XML document ends with the line that holds `</items>` (or is a self-closing
//! `<items/>`). A JSON document ends with the line that completes its top-level value:
//! brackets and braces are counted outside strings, so `"]"` inside a title does not end
//! it. A JSON line that ends inside a string, or closes more than it opened, ends the
//! document too (it cannot be valid, and waiting would swallow the client's next
//! commands). A document over the size limit is still read to its end so the lines after
//! it are commands again, but not kept.

use std::borrow::Cow;

use crate::definition::{Definition, DocumentFormat, parse_document};
use crate::protocol::{ErrorReply, Output, Session, Step, Words};
use crate::subscription::SubscriptionId;
use crate::wiki::Wikis;

/// What the document is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocumentOp {
    Insert,
    Remove,
}

/// `insert xml|json` / `remove xml|json`, with whatever followed the format word on the
/// command line (the document may start there).
pub(super) struct DocumentCommand {
    op: DocumentOp,
    format: Option<String>,
    first: String,
}

impl DocumentCommand {
    pub(super) fn parse(op: DocumentOp, mut words: Words<'_>) -> DocumentCommand {
        let format = words.next().map(str::to_string);
        DocumentCommand { op, format, first: words.rest().to_string() }
    }

    /// Starts collecting the document (or answers at once when it cannot be read).
    pub(super) fn apply(self, session: &mut Session, mut out: Output) -> Step {
        let missing = match self.op {
            DocumentOp::Insert => ErrorReply::MissingInsertParameter,
            DocumentOp::Remove => ErrorReply::MissingDeleteParameter,
        };
        let Some((format, target)) = document_target(session, self.format.as_deref(), missing, &mut out) else {
            return Step::Done(out);
        };
        let limit = session.limits.max_document_bytes;
        let pending = PendingDocument::new(self.op, format, target, limit);
        session.start_document(pending, &self.first, out)
    }
}

/// Where an `insert`/`remove` document goes: the authenticated subscription, or (before
/// `auth`) `E020`, which is answered once the document has been read to its end (SPEC
/// §6.2: one reply per command). `None` (after replying) when the document cannot be
/// read at all: its format word is missing or unknown.
fn document_target(
    session: &Session,
    format: Option<&str>,
    missing: ErrorReply,
    out: &mut Output,
) -> Option<(DocumentFormat, Result<SubscriptionId, ErrorReply>)> {
    let target = session.authenticated.ok_or(ErrorReply::NotAuthenticated);
    let refusal = |error: ErrorReply| target.clone().err().unwrap_or(error);
    let Some(format) = format else {
        out.reply(refusal(missing));
        return None;
    };
    let Some(format) = DocumentFormat::parse(format) else {
        out.reply(refusal(ErrorReply::UnknownDataFormat));
        return None;
    };
    Some((format, target))
}

/// What a line did to the document.
#[derive(Debug)]
pub(crate) enum Progress {
    /// The document goes on.
    More,
    /// This line ended it.
    Complete,
    /// This line cannot start the document; the document is dropped.
    Rejected(ErrorReply),
}

/// A document being received.
#[derive(Debug)]
pub(crate) struct PendingDocument {
    op: DocumentOp,
    format: DocumentFormat,
    /// The subscription it is for, or the reply already decided (`E020` before `auth`):
    /// the document is then read to its end and dropped, and that is the one reply.
    target: Result<SubscriptionId, ErrorReply>,
    limit: usize,
    text: String,
    started: bool,
    too_large: bool,
    not_utf8: bool,
    json: JsonFraming,
}

/// How far the XML root's start tag is looked for.
const ROOT_TAG_WINDOW: usize = 1024;

impl PendingDocument {
    pub(crate) fn new(
        op: DocumentOp,
        format: DocumentFormat,
        target: Result<SubscriptionId, ErrorReply>,
        limit: usize,
    ) -> PendingDocument {
        PendingDocument {
            op,
            format,
            target,
            limit,
            text: String::new(),
            started: false,
            too_large: false,
            not_utf8: false,
            json: JsonFraming::default(),
        }
    }

    pub(crate) fn op(&self) -> DocumentOp {
        self.op
    }

    /// The subscription the command was given for, or the reply already decided.
    pub(crate) fn target(&self) -> Result<SubscriptionId, ErrorReply> {
        self.target.clone()
    }

    /// The reply a document gets when a line rejects it: the reply already decided, if
    /// any (one reply per command), else the rejection.
    pub(crate) fn rejection(&self, error: ErrorReply) -> ErrorReply {
        self.target.clone().err().unwrap_or(error)
    }

    /// Takes the next line (without its line ending).
    pub(crate) fn push_line(&mut self, line: &[u8]) -> Progress {
        let text = match std::str::from_utf8(line) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => {
                self.not_utf8 = true;
                String::from_utf8_lossy(line)
            }
        };
        if !self.started {
            let first = text.trim_start();
            if first.is_empty() {
                return Progress::More;
            }
            self.started = true;
            if self.format == DocumentFormat::Xml && !first.starts_with('<') {
                return Progress::Rejected(ErrorReply::InvalidXml);
            }
        }
        if !self.too_large {
            if self.text.len() + text.len() + 1 > self.limit {
                self.too_large = true;
                self.text = String::new();
            } else {
                self.text.push_str(&text);
                self.text.push('\n');
            }
        }
        let complete = match self.format {
            DocumentFormat::Xml => text.contains("</items>") || (!self.too_large && self_closing_root(&self.text)),
            DocumentFormat::Json => self.json.feed(&text),
        };
        if complete { Progress::Complete } else { Progress::More }
    }

    /// The definitions (their patterns compiling to at most `max_pattern_memory` bytes),
    /// or the error reply for the document.
    pub(crate) fn finish(self, wikis: &Wikis, max_pattern_memory: usize) -> Result<Vec<Definition>, ErrorReply> {
        if self.too_large {
            return Err(ErrorReply::DocumentTooLarge { limit: self.limit });
        }
        if self.not_utf8 {
            return Err(match self.format {
                DocumentFormat::Xml => ErrorReply::InvalidXml,
                DocumentFormat::Json => ErrorReply::InvalidJson,
            });
        }
        parse_document(self.format, &self.text, wikis, max_pattern_memory).map_err(|e| ErrorReply::from_document(&e))
    }
}

/// Whether the document so far is a self-closing root, `<items/>`, possibly after an XML
/// declaration. Looks only at the first [`ROOT_TAG_WINDOW`] bytes, so checking after
/// every line stays cheap.
fn self_closing_root(text: &str) -> bool {
    let mut end = text.len().min(ROOT_TAG_WINDOW);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    let Some(start) = head.find("<items") else {
        return false;
    };
    let after = &head[start + "<items".len()..];
    match after.find('>') {
        Some(close) => after[..close].ends_with('/') && after[close + 1..].trim().is_empty(),
        None => false,
    }
}

/// Tracks the nesting of a JSON text across lines.
#[derive(Debug, Default)]
struct JsonFraming {
    started: bool,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl JsonFraming {
    /// Scans one line; true when the top-level value ended on it.
    fn feed(&mut self, line: &str) -> bool {
        for byte in line.bytes() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => {
                    self.started = true;
                    self.in_string = true;
                }
                b'[' | b'{' => {
                    self.started = true;
                    self.depth += 1;
                }
                b']' | b'}' => {
                    if self.depth <= 1 {
                        return true;
                    }
                    self.depth -= 1;
                }
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ => self.started = true,
            }
        }
        // A string cannot span lines, and a scalar or string at the top level is complete
        // at the end of its line.
        self.in_string || (self.started && self.depth == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds lines; returns the index of the line that completed the document.
    #[track_caller]
    fn check_json(lines: &[&str], expect: Option<usize>) {
        let mut framing = JsonFraming::default();
        let got = lines.iter().position(|line| framing.feed(line));
        assert_eq!(got, expect, "{lines:?}");
    }

    #[test]
    fn json_ends_where_the_top_level_value_closes() {
        check_json(&["[]"], Some(0));
        check_json(&["[", "{\"wiki\": \"enwiki\"}", "]"], Some(2));
        check_json(&["  [ {\"page\": \"a]b[\"", "}", "]"], Some(2));
        check_json(&["[{\"page\": \"quote \\\" ] still inside\"}", "]"], Some(1));
        check_json(&["[{\"page\": \"back\\\\\"}]"], Some(0));
        check_json(&["", "[", ""], None);
        check_json(&["{\"wiki\":", "\"x\"}"], Some(1));
        check_json(&["42"], Some(0));
        check_json(&["\"unterminated"], Some(0));
        check_json(&["[\"unterminated", "]"], Some(0));
        check_json(&["]"], Some(0));
        check_json(&["[[]", "]"], Some(1));
    }

    #[test]
    fn xml_self_closing_root() {
        assert!(self_closing_root("<items/>\n"));
        assert!(self_closing_root("<?xml version=\"1.0\"?>\n<items />\n"));
        assert!(!self_closing_root("<items>\n"));
        assert!(!self_closing_root("<items/><x/>\n"));
        assert!(!self_closing_root("<item page=\"x\"/>\n"));
    }
}
