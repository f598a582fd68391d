//! The XML of an XMPP stream, as bytes in and elements out: a bounded, incremental
//! parser ([`StreamParser`]) that turns what the socket delivered into the stream's
//! header, its top-level elements (stanzas and stream-level elements such as
//! `<stream:features/>`, `<a h='3'/>`) and its end, plus a small [`Element`] tree and
//! its serialisation.
//!
//! XMPP uses a restricted XML (RFC 6120 §11): no DTD, no comments, no processing
//! instructions other than the XML declaration. This parser takes that subset and no
//! more, so it stays small enough to read and to fuzz (`fuzz/fuzz_targets/xmpp_stream.rs`).
//! Names are kept as written (`stream:features`); namespaces are ordinary `xmlns`
//! attributes, which is all a client needs from servers that declare them on the
//! element that uses them.
//!
//! A stanza larger than `max_stanza` is not held in memory: the parser skips to its end
//! and reports [`StreamEvent::Skipped`] with its name and size, so the connection can
//! stay up (and the stanza still counts for stream management). Malformed XML is an
//! error: after it the stream cannot be trusted and must be closed.

use std::fmt::Write as _;

/// One XML element: name, attributes in document order, children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

/// A child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    /// An element with no attributes or children.
    pub fn new(name: &str) -> Element {
        Element { name: name.to_string(), attrs: Vec::new(), children: Vec::new() }
    }

    /// Adds an attribute (builder style).
    pub fn attr(mut self, name: &str, value: impl Into<String>) -> Element {
        self.attrs.push((name.to_string(), value.into()));
        self
    }

    /// Adds a child element (builder style).
    pub fn child(mut self, child: Element) -> Element {
        self.children.push(Node::Element(child));
        self
    }

    /// Adds text (builder style).
    pub fn text(mut self, text: impl Into<String>) -> Element {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// The value of attribute `name`.
    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The name without its prefix (`stream:features` → `features`).
    pub fn local_name(&self) -> &str {
        self.name.rsplit_once(':').map_or(self.name.as_str(), |(_, local)| local)
    }

    /// The element's own `xmlns`, if it declares one.
    pub fn ns(&self) -> Option<&str> {
        self.get_attr("xmlns")
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|c| match c {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this local name (and namespace, when given).
    pub fn find(&self, local: &str, ns: Option<&str>) -> Option<&Element> {
        self.elements().find(|e| e.local_name() == local && ns.is_none_or(|ns| e.ns() == Some(ns)))
    }

    /// The element's text (its text children joined).
    pub fn text_content(&self) -> String {
        let mut out = String::new();
        for child in &self.children {
            if let Node::Text(t) = child {
                out.push_str(t);
            }
        }
        out
    }

    /// The element as XML text.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(128);
        self.write_xml(&mut out);
        out
    }

    /// Appends the element as XML text to `out`.
    pub fn write_xml(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (name, value) in &self.attrs {
            let _ = write!(out, " {name}=\"{}\"", escape(value));
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for child in &self.children {
            match child {
                Node::Element(e) => e.write_xml(out),
                Node::Text(t) => out.push_str(&escape(t)),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

/// Escapes text for XML content or a quoted attribute value.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The `<stream:stream …>` header (an element without children).
    Open(Element),
    /// A complete top-level element.
    Element(Element),
    /// A top-level element longer than the limit, skipped whole.
    Skipped { name: String, bytes: usize },
    /// `</stream:stream>`.
    Close,
}

/// Why the stream cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML at byte {offset}: {detail}")]
    Malformed { offset: usize, detail: String },
    #[error("the stream uses a forbidden XML construct ({0})")]
    Forbidden(&'static str),
    #[error("an element ended with </{found}> where </{expected}> was open")]
    Mismatched { expected: String, found: String },
    #[error("the element is nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("content before the stream header")]
    NoHeader,
}

/// How deep elements may nest (a stanza with deeper nesting is malformed for us).
const MAX_DEPTH: usize = 64;

/// An incremental parser for one XML stream (one per stream: a new one after STARTTLS,
/// SASL success or a reconnect, as RFC 6120 restarts the stream there).
#[derive(Debug)]
pub struct StreamParser {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    pos: usize,
    /// Bytes consumed before `buf` was last compacted (for error offsets).
    consumed: usize,
    max_stanza: usize,
    opened: bool,
    /// Open elements of the top-level element being read (empty between stanzas).
    open: Vec<Element>,
    /// Skipping an oversized top-level element: its name, its depth, bytes so far.
    skipping: Option<(String, usize, usize)>,
    /// Bytes of the current top-level element so far.
    stanza_bytes: usize,
}

enum Token {
    Decl,
    Start { name: String, attrs: Vec<(String, String)>, empty: bool },
    End(String),
    Text(String),
}

impl StreamParser {
    /// A parser that skips top-level elements longer than `max_stanza` bytes.
    pub fn new(max_stanza: usize) -> StreamParser {
        StreamParser {
            buf: Vec::new(),
            pos: 0,
            consumed: 0,
            max_stanza: max_stanza.max(1024),
            opened: false,
            open: Vec::new(),
            skipping: None,
            stanza_bytes: 0,
        }
    }

    /// Hands the parser more bytes from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.consumed += self.pos;
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.consumed += self.pos;
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes fed but not yet consumed (a test of boundedness).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, XmlError> {
        loop {
            let start = self.pos;
            let in_stanza = !self.open.is_empty() || self.skipping.is_some();
            let Some(token) = self.token()? else {
                // An incomplete token this long is an oversized stanza (or, between
                // stanzas, garbage we cannot hold).
                if self.buffered() > self.max_stanza {
                    if in_stanza && self.skipping.is_none() {
                        let name = self.open.first().map(|e| e.name.clone()).unwrap_or_default();
                        let depth = self.open.len();
                        self.open.clear();
                        self.skipping = Some((name, depth, self.stanza_bytes));
                    }
                    let buffered = self.buffered();
                    let tag_open = self.buf[self.pos..].contains(&b'<');
                    if tag_open && self.skipping.is_some() {
                        // Only text can be this long without a '<'.
                        return Err(self.malformed("a tag longer than the stanza limit"));
                    }
                    if let Some(skip) = &mut self.skipping {
                        skip.2 += buffered;
                        self.pos = self.buf.len();
                        return Ok(None);
                    }
                    return Err(self.malformed("too much text outside any stanza"));
                }
                return Ok(None);
            };
            let used = self.pos - start;
            if let Some((name, depth, bytes)) = &mut self.skipping {
                *bytes += used;
                match token {
                    Token::Start { empty: false, .. } => *depth += 1,
                    Token::End(_) => *depth -= 1,
                    _ => {}
                }
                if *depth == 0 {
                    let event = StreamEvent::Skipped { name: std::mem::take(name), bytes: *bytes };
                    self.skipping = None;
                    self.stanza_bytes = 0;
                    return Ok(Some(event));
                }
                continue;
            }
            if !self.opened {
                match token {
                    Token::Decl => continue,
                    Token::Text(t) if t.trim().is_empty() => continue,
                    Token::Start { name, attrs, empty: false } if name == "stream:stream" || name == "stream" => {
                        self.opened = true;
                        return Ok(Some(StreamEvent::Open(Element { name, attrs, children: Vec::new() })));
                    }
                    _ => return Err(XmlError::NoHeader),
                }
            }
            if self.open.is_empty() {
                self.stanza_bytes = 0;
            }
            self.stanza_bytes += used;
            match token {
                Token::Decl => return Err(XmlError::Forbidden("a second XML declaration")),
                Token::Text(text) => {
                    // Whitespace between stanzas is a keepalive.
                    if let Some(top) = self.open.last_mut() {
                        top.children.push(Node::Text(text));
                    } else if !text.trim().is_empty() {
                        return Err(self.malformed("text outside any stanza"));
                    }
                }
                Token::Start { name, attrs, empty } => {
                    let element = Element { name, attrs, children: Vec::new() };
                    if empty {
                        match self.open.last_mut() {
                            Some(parent) => parent.children.push(Node::Element(element)),
                            None => return Ok(Some(StreamEvent::Element(element))),
                        }
                    } else {
                        if self.open.len() >= MAX_DEPTH {
                            return Err(XmlError::TooDeep(MAX_DEPTH));
                        }
                        self.open.push(element);
                    }
                }
                Token::End(name) => {
                    let Some(element) = self.open.pop() else {
                        if name == "stream:stream" || name == "stream" {
                            return Ok(Some(StreamEvent::Close));
                        }
                        return Err(XmlError::Mismatched { expected: "stream:stream".into(), found: name });
                    };
                    if element.name != name {
                        return Err(XmlError::Mismatched { expected: element.name, found: name });
                    }
                    match self.open.last_mut() {
                        Some(parent) => parent.children.push(Node::Element(element)),
                        None => return Ok(Some(StreamEvent::Element(element))),
                    }
                }
            }
            if self.stanza_bytes > self.max_stanza && !self.open.is_empty() {
                let name = self.open[0].name.clone();
                let depth = self.open.len();
                self.open.clear();
                self.skipping = Some((name, depth, self.stanza_bytes));
            }
        }
    }

    fn malformed(&self, detail: &str) -> XmlError {
        XmlError::Malformed { offset: self.consumed + self.pos, detail: detail.to_string() }
    }

    /// Reads one token at `pos`; `None` when it is not complete yet.
    fn token(&mut self) -> Result<Option<Token>, XmlError> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return Ok(None);
        }
        if rest[0] != b'<' {
            let Some(end) = memchr(b'<', rest) else { return Ok(None) };
            let text = self.decode_text(&rest[..end])?;
            self.pos += end;
            return Ok(Some(Token::Text(text)));
        }
        if rest.len() < 2 {
            return Ok(None);
        }
        match rest[1] {
            b'?' => {
                let Some(end) = find(rest, b"?>") else { return Ok(None) };
                if !rest.starts_with(b"<?xml") {
                    return Err(XmlError::Forbidden("a processing instruction"));
                }
                self.pos += end + 2;
                Ok(Some(Token::Decl))
            }
            b'!' => {
                if rest.len() < 9 && b"<![CDATA[".starts_with(rest) {
                    return Ok(None);
                }
                if rest.starts_with(b"<![CDATA[") {
                    let Some(end) = find(rest, b"]]>") else { return Ok(None) };
                    let text = std::str::from_utf8(&rest[9..end])
                        .map_err(|_| self.malformed("CDATA that is not UTF-8"))?
                        .to_string();
                    self.pos += end + 3;
                    return Ok(Some(Token::Text(text)));
                }
                if rest.starts_with(b"<!--") || (rest.len() < 4 && b"<!--".starts_with(rest)) {
                    return Err(XmlError::Forbidden("a comment"));
                }
                Err(XmlError::Forbidden("a document type declaration"))
            }
            b'/' => {
                let Some(end) = memchr(b'>', rest) else { return Ok(None) };
                let name = std::str::from_utf8(&rest[2..end])
                    .map_err(|_| self.malformed("a tag name that is not UTF-8"))?
                    .trim_end();
                if !valid_name(name) {
                    return Err(self.malformed(&format!("'{name}' is not an element name")));
                }
                let name = name.to_string();
                self.pos += end + 1;
                Ok(Some(Token::End(name)))
            }
            _ => {
                let Some(end) = tag_end(rest) else { return Ok(None) };
                let (body, empty) = match rest[end - 1] {
                    b'/' => (&rest[1..end - 1], true),
                    _ => (&rest[1..end], false),
                };
                let body = std::str::from_utf8(body).map_err(|_| self.malformed("a tag that is not UTF-8"))?;
                let (name, attrs) = self.parse_tag(body)?;
                self.pos += end + 1;
                Ok(Some(Token::Start { name, attrs, empty }))
            }
        }
    }

    fn parse_tag(&self, body: &str) -> Result<(String, Vec<(String, String)>), XmlError> {
        let name_end = body.find(|c: char| c.is_ascii_whitespace()).unwrap_or(body.len());
        let name = &body[..name_end];
        if !valid_name(name) {
            return Err(self.malformed(&format!("'{name}' is not an element name")));
        }
        let mut attrs: Vec<(String, String)> = Vec::new();
        let mut rest = body[name_end..].trim_start();
        while !rest.is_empty() {
            let Some(eq) = rest.find('=') else {
                return Err(self.malformed(&format!("attribute '{rest}' has no value")));
            };
            let attr = rest[..eq].trim_end();
            if !valid_name(attr) {
                return Err(self.malformed(&format!("'{attr}' is not an attribute name")));
            }
            let after = rest[eq + 1..].trim_start();
            let quote = match after.chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => return Err(self.malformed(&format!("the value of '{attr}' is not quoted"))),
            };
            let Some(close) = after[1..].find(quote) else {
                return Err(self.malformed(&format!("the value of '{attr}' is not closed")));
            };
            let raw = &after[1..1 + close];
            if raw.contains('<') {
                return Err(self.malformed(&format!("'<' in the value of '{attr}'")));
            }
            let value = unescape(raw).map_err(|detail| self.malformed(&detail))?;
            if attrs.iter().any(|(n, _)| n == attr) {
                return Err(self.malformed(&format!("attribute '{attr}' given twice")));
            }
            attrs.push((attr.to_string(), value));
            rest = after[1 + close + 1..].trim_start();
        }
        Ok((name.to_string(), attrs))
    }

    fn decode_text(&self, bytes: &[u8]) -> Result<String, XmlError> {
        let text = std::str::from_utf8(bytes).map_err(|_| self.malformed("text that is not UTF-8"))?;
        if text.contains('>') && text.contains("]]>") {
            return Err(self.malformed("']]>' in text"));
        }
        unescape(text).map_err(|detail| self.malformed(&detail))
    }
}

/// Resolves entity and character references.
fn unescape(text: &str) -> Result<String, String> {
    if !text.contains('&') {
        return Ok(text.to_string());
    }
    quick_xml::escape::unescape(text).map(|c| c.into_owned()).map_err(|e| format!("bad reference: {e}"))
}

/// Whether `name` can be an element or attribute name (the subset XMPP uses).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
}

fn memchr(byte: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == byte)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The index of the `>` that ends a start tag, skipping quoted attribute values.
fn tag_end(tag: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in tag.iter().enumerate().skip(1) {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), b) if b == q => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>";

    /// Feeds `input` in pieces of `chunk` bytes and collects the events, or the error.
    fn events(input: &str, chunk: usize, max: usize) -> Result<Vec<StreamEvent>, XmlError> {
        let mut parser = StreamParser::new(max);
        let mut out = Vec::new();
        for piece in input.as_bytes().chunks(chunk) {
            parser.feed(piece);
            while let Some(event) = parser.next_event()? {
                out.push(event);
            }
        }
        Ok(out)
    }

    fn summary(events: &[StreamEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                StreamEvent::Open(h) => format!("open id={}", h.get_attr("id").unwrap_or("")),
                StreamEvent::Element(e) => e.to_xml(),
                StreamEvent::Skipped { name, .. } => format!("skipped {name}"),
                StreamEvent::Close => "close".into(),
            })
            .collect()
    }

    #[test]
    fn streams_parse_the_same_whatever_the_chunking() {
        let cases: &[(&str, &[&str])] = &[
            (
                "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>",
                &[
                    "<stream:features><starttls xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"><required/></starttls></stream:features>",
                ],
            ),
            (
                "<a xmlns='urn:xmpp:sm:3' h='42'/> \n <r xmlns='urn:xmpp:sm:3'/>",
                &["<a xmlns=\"urn:xmpp:sm:3\" h=\"42\"/>", "<r xmlns=\"urn:xmpp:sm:3\"/>"],
            ),
            (
                "<message from='a@b/c' to=\"d@e\"><body>x &lt; y &amp;&#x41;&#66; &quot;q&apos;</body></message>",
                &["<message from=\"a@b/c\" to=\"d@e\"><body>x &lt; y &amp;AB &quot;q&apos;</body></message>"],
            ),
            (
                "<message><body><![CDATA[<not a tag>]]></body></message>",
                &["<message><body>&lt;not a tag&gt;</body></message>"],
            ),
            (
                "<message a='1>2'><body>é ü 漢</body></message></stream:stream>",
                &["<message a=\"1&gt;2\"><body>é ü 漢</body></message>", "close"],
            ),
        ];
        for (body, expect) in cases {
            let input = format!("{HEADER}{body}");
            for chunk in [1, 2, 3, 7, 64, 10_000] {
                let got = events(&input, chunk, 1 << 20).unwrap_or_else(|e| panic!("{body} in chunks of {chunk}: {e}"));
                let mut want = vec!["open id=s1".to_string()];
                want.extend(expect.iter().map(|s| s.to_string()));
                assert_eq!(summary(&got), want, "{body} in chunks of {chunk}");
            }
        }
    }

    #[test]
    fn malformed_streams_are_errors_that_say_what() {
        let cases: &[(&str, &str)] = &[
            ("<message><body>x</message>", "</message> where </body>"),
            ("<message><!-- c --></message>", "comment"),
            ("<!DOCTYPE x>", "document type"),
            ("<?php x?>", "processing instruction"),
            ("<message a=1/>", "not quoted"),
            ("<message a='1' a='2'/>", "given twice"),
            ("<message><body>&bogus;</body></message>", "bad reference"),
            ("<1abc/>", "not an element name"),
            ("text at top<x/>", "text outside any stanza"),
            ("</x>", "</x> where </stream:stream>"),
        ];
        for (body, expect) in cases {
            let err = events(&format!("{HEADER}{body}"), 5, 1 << 20).unwrap_err().to_string();
            assert!(err.contains(expect), "{body}: {err} (expected '{expect}')");
        }
        assert_eq!(events("<message/>", 5, 1 << 20).unwrap_err(), XmlError::NoHeader);
        let deep = "<a>".repeat(70);
        assert_eq!(events(&format!("{HEADER}{deep}"), 50, 1 << 20).unwrap_err(), XmlError::TooDeep(MAX_DEPTH));
    }

    #[test]
    fn oversized_stanzas_are_skipped_and_the_stream_goes_on() {
        let big = "x".repeat(10_000);
        let input = format!(
            "{HEADER}<message id='1'><body>small</body></message><message id='2'><body>{big}</body><x>{big}</x></message><presence/>"
        );
        for chunk in [1, 100, 4096, 100_000] {
            let got = events(&input, chunk, 4096).unwrap();
            assert_eq!(
                summary(&got),
                ["open id=s1", "<message id=\"1\"><body>small</body></message>", "skipped message", "<presence/>"],
                "chunks of {chunk}"
            );
            let StreamEvent::Skipped { bytes, .. } = &got[2] else { unreachable!() };
            assert!(*bytes > 20_000, "{bytes}");
        }
        // The parser never holds much more than the limit.
        let mut parser = StreamParser::new(4096);
        parser.feed(HEADER.as_bytes());
        parser.feed(b"<message><body>");
        let _ = parser.next_event().unwrap();
        for _ in 0..100 {
            parser.feed(&[b'y'; 1000]);
            while parser.next_event().unwrap().is_some() {}
            assert!(parser.buffered() <= 4096 + 1000, "{}", parser.buffered());
        }
    }

    #[test]
    fn elements_serialise_with_escaping() {
        let e = Element::new("message")
            .attr("to", "a@b")
            .attr("q", "\"<&>'")
            .child(Element::new("body").text("1 < 2 & \"x\""));
        let xml = e.to_xml();
        assert_eq!(
            xml,
            "<message to=\"a@b\" q=\"&quot;&lt;&amp;&gt;&apos;\"><body>1 &lt; 2 &amp; &quot;x&quot;</body></message>"
        );
        let parsed = events(&format!("{HEADER}{xml}"), 3, 4096).unwrap();
        assert_eq!(parsed[1], StreamEvent::Element(e));
    }
}
