//! IRC lines as bytes: framing a byte stream into lines, decoding them to text and
//! splitting a line into its parts. Pure code: no sockets, no clocks.
//!
//! Why not irc-proto's `IrcCodec`: its line codec turns a line that is not UTF-8 into a
//! stream error (the connection would be dropped for one bad byte), buffers a line of
//! any length (a server that never sends `\n` grows the buffer without bound), and a
//! framed reader and writer reserve 8 KiB each per connection, a quarter of our budget
//! for 10,000 bots. Here a connection keeps one small buffer ([`LineBuffer`]); a line
//! longer than IRC allows is skipped and reported, a line that is not UTF-8 is read as
//! Windows-1252 (what legacy IRC clients send) and reported, and neither is a reason
//! to reconnect. irc-proto still serves for what it is good at: the table of known
//! numerics and serialising outgoing commands (see [`crate::session`]), and the fuzz
//! target checks [`parse_line`] against its parser.

use std::borrow::Cow;

/// Longest line RFC 1459 allows, CR LF included, not counting IRCv3 tags.
pub const MAX_LINE: usize = 512;
/// Longest tag section IRCv3 allows (`@…` plus the space), on top of [`MAX_LINE`].
pub const MAX_TAGS: usize = 8191;
/// A connection's read buffer starts (and shrinks back to) this size: one full line
/// plus slack for the next one arriving in the same read.
pub const INITIAL_BUFFER: usize = 1024;

/// What framing produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed<'a> {
    /// One line without its line ending (never empty).
    Line(&'a [u8]),
    /// A line longer than IRC allows; its bytes were dropped. `length` counts what was
    /// seen of it (all of it, when the end was found).
    TooLong { length: usize },
}

/// A connection's read buffer: bytes are read into [`LineBuffer::buffer`], complete
/// lines come out of [`LineBuffer::drain`].
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Inside an over-long line: how many of its bytes were dropped so far.
    discarding: Option<usize>,
}

impl Default for LineBuffer {
    fn default() -> Self {
        LineBuffer::new()
    }
}

/// The most a line starting with these bytes may take, line ending included.
fn limit_for(start: &[u8]) -> usize {
    if start.first() == Some(&b'@') { MAX_TAGS + MAX_LINE } else { MAX_LINE }
}

impl LineBuffer {
    /// An empty buffer of [`INITIAL_BUFFER`] bytes.
    pub fn new() -> LineBuffer {
        LineBuffer { buf: Vec::with_capacity(INITIAL_BUFFER), discarding: None }
    }

    /// The buffer to read into: always has spare capacity. (`read_buf` appends.)
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        if self.buf.len() == self.buf.capacity() {
            // Grow only as far as the longest allowed line (tags make it longer).
            let limit = limit_for(&self.buf) + 1;
            let want = (self.buf.capacity() * 2).clamp(INITIAL_BUFFER, limit.max(INITIAL_BUFFER));
            self.buf.reserve_exact(want.saturating_sub(self.buf.len()).max(64));
        }
        &mut self.buf
    }

    /// Bytes held that are not yet a complete line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Capacity currently reserved (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Hands every complete line in the buffer to `each`, in order, then keeps only the
    /// incomplete rest. An over-long line is reported once, as soon as it is known to
    /// be too long, and its remaining bytes are skipped up to its end.
    pub fn drain(&mut self, mut each: impl FnMut(Framed<'_>)) {
        let mut start = 0;
        while let Some(offset) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + offset;
            let full = &self.buf[start..end + 1];
            if self.discarding.take().is_some() {
                // The end of a line already reported as too long.
            } else {
                let mut line = &self.buf[start..end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                if full.len() > limit_for(line) {
                    each(Framed::TooLong { length: full.len() });
                } else if !line.is_empty() {
                    each(Framed::Line(line));
                }
            }
            start = end + 1;
        }
        let rest = self.buf.len() - start;
        match self.discarding {
            Some(dropped) => {
                self.discarding = Some(dropped + rest);
                self.buf.clear();
            }
            None if rest > limit_for(&self.buf[start..]) => {
                each(Framed::TooLong { length: rest });
                self.discarding = Some(rest);
                self.buf.clear();
            }
            None => {
                self.buf.copy_within(start.., 0);
                self.buf.truncate(rest);
            }
        }
        if self.buf.capacity() > 2 * INITIAL_BUFFER && self.buf.len() < INITIAL_BUFFER {
            self.buf.shrink_to(INITIAL_BUFFER);
        }
    }
}

/// A line as text: UTF-8 when it is, else Windows-1252 (`legacy` is then true).
pub fn decode(bytes: &[u8]) -> (Cow<'_, str>, bool) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Cow::Borrowed(text), false),
        Err(_) => {
            let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
            (text, true)
        }
    }
}

/// Where a line came from: `nick!user@host`, or a server name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Source<'a> {
    /// The nick, or the server name when there is no `!`/`@`.
    pub nick: &'a str,
    pub user: Option<&'a str>,
    pub host: Option<&'a str>,
}

/// One IRC message, borrowed from its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// The raw tag section without `@`, if any.
    pub tags: Option<&'a str>,
    pub source: Option<Source<'a>>,
    /// The command word or three-digit numeric, as sent.
    pub command: &'a str,
    /// Parameters, the trailing one (after ` :`) last.
    pub params: Vec<&'a str>,
}

/// Why a line could not be split into an IRC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("an empty line")]
    Empty,
    #[error("a line with tags but nothing after them")]
    OnlyTags,
    #[error("a source prefix but no command")]
    NoCommand,
    #[error("command '{0}' is neither a word of letters nor a three-digit numeric")]
    BadCommand(String),
    #[error("the line contains a NUL byte, which IRC forbids")]
    Nul,
    #[error("more than 15 parameters")]
    TooManyParams,
}

/// IRC allows at most this many parameters (RFC 2812).
const MAX_PARAMS: usize = 15;

impl<'a> Line<'a> {
    /// The three-digit numeric, if the command is one.
    pub fn numeric(&self) -> Option<u16> {
        let b = self.command.as_bytes();
        if b.len() == 3 && b.iter().all(u8::is_ascii_digit) { self.command.parse().ok() } else { None }
    }

    /// The `n`-th parameter, or "".
    pub fn param(&self, n: usize) -> &'a str {
        self.params.get(n).copied().unwrap_or("")
    }

    /// The last parameter (the text of most messages), or "".
    pub fn trailing(&self) -> &'a str {
        self.params.last().copied().unwrap_or("")
    }

    /// The source's nick (or server name), or "".
    pub fn nick(&self) -> &'a str {
        self.source.map_or("", |s| s.nick)
    }
}

/// Splits one line (no line ending) into tags, source, command and parameters.
pub fn parse_line(text: &str) -> Result<Line<'_>, ParseError> {
    if text.contains('\0') {
        return Err(ParseError::Nul);
    }
    let mut rest = text.trim_start_matches(' ');
    if rest.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut tags = None;
    if let Some(after) = rest.strip_prefix('@') {
        let (t, r) = after.split_once(' ').ok_or(ParseError::OnlyTags)?;
        tags = Some(t);
        rest = r.trim_start_matches(' ');
        if rest.is_empty() {
            return Err(ParseError::OnlyTags);
        }
    }
    let mut source = None;
    if let Some(after) = rest.strip_prefix(':') {
        let (s, r) = after.split_once(' ').ok_or(ParseError::NoCommand)?;
        source = Some(split_source(s));
        rest = r.trim_start_matches(' ');
    }
    let (command, mut rest) = match rest.split_once(' ') {
        Some((c, r)) => (c, r),
        None => (rest, ""),
    };
    if command.is_empty() {
        return Err(ParseError::NoCommand);
    }
    let numeric = command.len() == 3 && command.bytes().all(|b| b.is_ascii_digit());
    if !numeric && !command.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ParseError::BadCommand(command.chars().take(32).collect()));
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if params.len() == MAX_PARAMS {
            return Err(ParseError::TooManyParams);
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing);
            break;
        }
        if params.len() == MAX_PARAMS - 1 {
            // The 15th parameter takes the rest of the line, spaces and all.
            params.push(rest);
            break;
        }
        match rest.split_once(' ') {
            Some((p, r)) => {
                params.push(p);
                rest = r;
            }
            None => {
                params.push(rest);
                break;
            }
        }
    }
    Ok(Line { tags, source, command, params })
}

fn split_source(s: &str) -> Source<'_> {
    let (before_host, host) = match s.split_once('@') {
        Some((b, h)) => (b, Some(h)),
        None => (s, None),
    };
    let (nick, user) = match before_host.split_once('!') {
        Some((n, u)) => (n, Some(u)),
        None => (before_host, None),
    };
    Source { nick, user, host }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` one read at a time and returns what came out, as text.
    fn frame(chunks: &[&[u8]]) -> Vec<String> {
        let mut buffer = LineBuffer::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buffer.buffer().extend_from_slice(chunk);
            buffer.drain(|f| {
                out.push(match f {
                    Framed::Line(l) => format!("line {}", String::from_utf8_lossy(l)),
                    Framed::TooLong { length } => format!("too long {length}"),
                })
            });
        }
        out
    }

    #[test]
    fn framing() {
        let long = vec![b'x'; 600];
        let mut long_line = long.clone();
        long_line.extend_from_slice(b"\r\nPING :a\r\n");
        let mut tagged = b"@".to_vec();
        tagged.extend(vec![b't'; 2000]);
        tagged.extend_from_slice(b" PRIVMSG #a :hi\r\n");
        let cases: Vec<(Vec<&[u8]>, Vec<String>)> = vec![
            (vec![b"PING :x\r\n"], vec!["line PING :x".into()]),
            (vec![b"PING :x\n"], vec!["line PING :x".into()]),
            (vec![b"PI", b"NG :x\r", b"\n"], vec!["line PING :x".into()]),
            (vec![b"A\r\n\r\nB\r\n"], vec!["line A".into(), "line B".into()]),
            (vec![b"A\r\nB"], vec!["line A".into()]),
            (vec![&long_line], vec!["too long 602".into(), "line PING :a".into()]),
            // An over-long line split across reads is reported once, as soon as known.
            (vec![&long[..300], &long[300..], b"\r\nOK\r\n"], vec!["too long 600".into(), "line OK".into()]),
            // Tags may take up to 8191 bytes more.
            (vec![&tagged], vec![format!("line @{} PRIVMSG #a :hi", "t".repeat(2000))]),
        ];
        for (chunks, expect) in cases {
            assert_eq!(frame(&chunks), expect, "chunks {:?}", chunks.iter().map(|c| c.len()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_buffer_stays_small() {
        let mut buffer = LineBuffer::new();
        let mut tagged = b"@".to_vec();
        tagged.extend(vec![b't'; 5000]);
        tagged.extend_from_slice(b" PING :x\r\n");
        for chunk in tagged.chunks(700) {
            buffer.buffer().extend_from_slice(chunk);
            buffer.drain(|_| {});
        }
        assert_eq!(buffer.pending(), 0);
        assert!(buffer.capacity() <= 2 * INITIAL_BUFFER, "shrunk back: {}", buffer.capacity());
        // A server that never sends a line end cannot grow the buffer past a line.
        for _ in 0..100 {
            buffer.buffer().extend_from_slice(&[b'y'; 700]);
            buffer.drain(|_| {});
            assert!(buffer.capacity() <= MAX_TAGS + MAX_LINE + 1024);
        }
    }

    #[test]
    fn decoding() {
        let cases: &[(&[u8], &str, bool)] = &[
            (b"caf\xc3\xa9", "café", false),
            (b"caf\xe9", "café", true),
            (b"\x80 euro", "€ euro", true),
            (b"\xff\xfe", "ÿþ", true),
        ];
        for (bytes, text, legacy) in cases {
            let (decoded, was_legacy) = decode(bytes);
            assert_eq!((decoded.as_ref(), was_legacy), (*text, *legacy), "{bytes:?}");
        }
    }

    fn check(line: &str, expect: Result<(&str, &str, &[&str]), ParseError>) {
        let got = parse_line(line).map(|l| (l.nick(), l.command, l.params.clone()));
        let expect = expect.map(|(n, c, p)| (n, c, p.to_vec()));
        assert_eq!(got, expect, "line {line:?}");
    }

    #[test]
    fn parsing() {
        check(":n!u@h PRIVMSG #chan :hello world", Ok(("n", "PRIVMSG", &["#chan", "hello world"])));
        check("PING :irc.test", Ok(("", "PING", &["irc.test"])));
        check("PING irc.test", Ok(("", "PING", &["irc.test"])));
        check(":srv 001 me :Welcome", Ok(("srv", "001", &["me", "Welcome"])));
        check(":srv 005 me A=1 B :are supported", Ok(("srv", "005", &["me", "A=1", "B", "are supported"])));
        check(":n!u@h JOIN #a", Ok(("n", "JOIN", &["#a"])));
        check(":n!u@h JOIN :#a", Ok(("n", "JOIN", &["#a"])));
        check(":n KICK #a victim :", Ok(("n", "KICK", &["#a", "victim", ""])));
        check(":n PRIVMSG #a ::-) colon", Ok(("n", "PRIVMSG", &["#a", ":-) colon"])));
        check(":n  PRIVMSG   #a   x", Ok(("n", "PRIVMSG", &["#a", "x"])));
        check("@time=2020 :n!u@h PRIVMSG #a :t", Ok(("n", "PRIVMSG", &["#a", "t"])));
        check("ERROR :Closing link", Ok(("", "ERROR", &["Closing link"])));
        check("QUIT", Ok(("", "QUIT", &[])));
        check(
            "CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16",
            Ok(("", "CMD", &["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15 16"])),
        );
        check("", Err(ParseError::Empty));
        check("   ", Err(ParseError::Empty));
        check("@tags-only", Err(ParseError::OnlyTags));
        check(":prefix-only", Err(ParseError::NoCommand));
        check(":prefix ", Err(ParseError::NoCommand));
        check("12 x", Err(ParseError::BadCommand("12".into())));
        check("PRIV-MSG x", Err(ParseError::BadCommand("PRIV-MSG".into())));
        check("\u{1b}[31mgarbage", Err(ParseError::BadCommand("\u{1b}[31mgarbage".into())));
        check("PING \0", Err(ParseError::Nul));
    }

    #[test]
    fn sources() {
        let cases = [
            ("n!u@h", Source { nick: "n", user: Some("u"), host: Some("h") }),
            ("irc.test.local", Source { nick: "irc.test.local", user: None, host: None }),
            ("n@h", Source { nick: "n", user: None, host: Some("h") }),
            ("n!u", Source { nick: "n", user: Some("u"), host: None }),
        ];
        for (text, expect) in cases {
            assert_eq!(split_source(text), expect, "{text}");
        }
    }

    #[test]
    fn numerics_and_accessors() {
        let line = parse_line(":s 433 * flot :Nickname is already in use").unwrap();
        assert_eq!(line.numeric(), Some(433));
        assert_eq!(line.param(1), "flot");
        assert_eq!(line.param(9), "");
        assert_eq!(line.trailing(), "Nickname is already in use");
        assert_eq!(parse_line("PING x").unwrap().numeric(), None);
        assert_eq!(parse_line("4333 x").map(|l| l.numeric()), Err(ParseError::BadCommand("4333".into())));
    }
}
