//! A server-sent events parser (the WHATWG `text/event-stream` format), pure: bytes in,
//! events out, whatever way the bytes were cut into chunks.
//!
//! Why our own and not a crate: it is small, it must never hold more than a bounded
//! amount of a hostile or broken stream in memory, and the connector needs exactly two
//! things the format defines precisely — each event's `id` (EventStreams' resume
//! position) and its `data` — which are easiest to guarantee with a table of cases.
//!
//! The rules followed: lines end in `\r\n`, `\n` or `\r` (a `\r\n` split across two
//! chunks is one line end); a line starting with `:` is a comment (EventStreams sends
//! them as keep-alives); `field: value` drops one space after the colon; `data` lines
//! join with `\n`; `event` sets the type (default `message`); `id` sets the event's id
//! unless it contains NUL; `retry` takes digits only; a blank line dispatches the event,
//! unless it has no data, and an unknown field is ignored. A leading UTF-8 byte-order
//! mark is skipped.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id` field of this event, if it had one.
    pub id: Option<String>,
    /// The event type (`message` unless an `event` field said otherwise).
    pub event: String,
    /// The data lines joined with `\n`.
    pub data: String,
}

/// The stream broke the parser's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a server-sent event is larger than {limit} bytes")]
pub struct EventTooLarge {
    /// The limit in bytes.
    pub limit: usize,
}

/// Incremental parser state for one connection.
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting this one belongs to it.
    after_cr: bool,
    /// Still at the very start of the stream (where a byte-order mark may be).
    at_start: bool,
    id: Option<String>,
    event: Option<String>,
    data: String,
    has_data: bool,
    retry: Option<u64>,
}

impl SseParser {
    /// A parser that refuses events (or lines) larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> SseParser {
        SseParser {
            max_event_bytes,
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            id: None,
            event: None,
            data: String::new(),
            has_data: false,
            retry: None,
        }
    }

    /// The latest `retry` value the server sent, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Feeds one chunk; complete events are appended to `out`, in order.
    ///
    /// # Errors
    /// [`EventTooLarge`] when a line or an event's data passes the limit; the
    /// connection should then be dropped (the parser is left empty).
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    self.line.extend_from_slice(&chunk[..end]);
                    self.check_size()?;
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line, out);
                    self.line = line;
                    self.line.clear();
                    let ending = chunk[end];
                    chunk = &chunk[end + 1..];
                    if ending == b'\r' {
                        match chunk.first() {
                            Some(b'\n') => chunk = &chunk[1..],
                            Some(_) => {}
                            None => self.after_cr = true,
                        }
                    }
                }
                None => {
                    self.line.extend_from_slice(chunk);
                    self.check_size()?;
                    break;
                }
            }
        }
        Ok(())
    }

    fn check_size(&mut self) -> Result<(), EventTooLarge> {
        if self.line.len() + self.data.len() > self.max_event_bytes {
            *self = SseParser::new(self.max_event_bytes);
            return Err(EventTooLarge { limit: self.max_event_bytes });
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        let mut line = line;
        if self.at_start {
            self.at_start = false;
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // A comment.
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.event = Some(value.into_owned()),
            b"id" if !value.contains('\0') => self.id = Some(value.into_owned()),
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let id = self.id.take();
        let event = self.event.take();
        if !self.has_data {
            self.data.clear();
            return;
        }
        self.has_data = false;
        out.push(SseEvent {
            id,
            event: event.unwrap_or_else(|| "message".to_string()),
            data: std::mem::take(&mut self.data),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Option<&str>, kind: &str, data: &str) -> SseEvent {
        SseEvent { id: id.map(str::to_string), event: kind.to_string(), data: data.to_string() }
    }

    /// Feeds `input` whole, then again cut at every position into two chunks, and one
    /// byte at a time: each way must give `expect`.
    #[track_caller]
    fn check(input: &str, expect: &[SseEvent]) {
        let bytes = input.as_bytes();
        let mut cuts: Vec<Vec<&[u8]>> = vec![vec![bytes], bytes.chunks(1).collect()];
        for at in 1..bytes.len() {
            cuts.push(vec![&bytes[..at], &bytes[at..]]);
        }
        for chunks in cuts {
            let mut parser = SseParser::new(1 << 20);
            let mut out = Vec::new();
            for chunk in &chunks {
                parser.feed(chunk, &mut out).expect("within limits");
            }
            assert_eq!(out, expect, "input {input:?} cut as {chunks:?}");
        }
    }

    #[test]
    fn events() {
        check("data: hello\n\n", &[event(None, "message", "hello")]);
        check("data:hello\n\n", &[event(None, "message", "hello")]);
        check("data:  two spaces\n\n", &[event(None, "message", " two spaces")]);
        check("id: [1]\nevent: message\ndata: {\"a\":1}\n\n", &[event(Some("[1]"), "message", "{\"a\":1}")]);
        check("data: a\ndata: b\n\n", &[event(None, "message", "a\nb")]);
        check("data: a\r\ndata: b\r\n\r\n", &[event(None, "message", "a\nb")]);
        check("data: a\rdata: b\r\r", &[event(None, "message", "a\nb")]);
        check("event: ping\ndata\n\n", &[event(None, "ping", "")]);
        check(": keep-alive\n\n", &[]);
        check("id: 5\n\n", &[]);
        check("data: unfinished", &[]);
        check("data: x\n", &[]);
        check("id: a\0b\ndata: x\n\n", &[event(None, "message", "x")]);
        check("foo: bar\ndata: x\n\n", &[event(None, "message", "x")]);
        check("\u{feff}data: bom\n\n", &[event(None, "message", "bom")]);
        check(
            "id: 1\ndata: one\n\ndata: two\n\n",
            &[event(Some("1"), "message", "one"), event(None, "message", "two")],
        );
        check("data: é\n\n", &[event(None, "message", "é")]);
    }

    #[test]
    fn retry_takes_digits_only() {
        let mut parser = SseParser::new(1024);
        let mut out = Vec::new();
        parser.feed(b"retry: 1500\n\nretry: soon\n\n", &mut out).unwrap();
        assert_eq!(parser.retry(), Some(1500));
        assert!(out.is_empty());
    }

    #[test]
    fn oversized_lines_and_events_are_refused() {
        let mut parser = SseParser::new(16);
        let mut out = Vec::new();
        assert_eq!(parser.feed(&[b'x'; 17], &mut out), Err(EventTooLarge { limit: 16 }));
        let mut parser = SseParser::new(16);
        assert_eq!(parser.feed(b"data: 0123456789\ndata: 0123456789\n", &mut out), Err(EventTooLarge { limit: 16 }));
        // After an error the parser starts clean.
        parser.feed(b"data: ok\n\n", &mut out).unwrap();
        assert_eq!(out, vec![event(None, "message", "ok")]);
    }
}
