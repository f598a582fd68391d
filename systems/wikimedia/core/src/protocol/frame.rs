//! Finding lines in the bytes a connection has received, without reading more than the
//! line limit: the server keeps a buffer, asks [`next_line`] after each read, and stops
//! buffering (answering `E013` through [`super::Session::line_too_long`]) as soon as a
//! line cannot fit, however much the client keeps sending.

/// What the start of a buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole line: `buffer[..end]` is the line without `\n` (a `\r` before it is left
    /// for the session to drop); consume `buffer[..next]`.
    Line {
        /// End of the line's bytes.
        end: usize,
        /// Start of whatever follows the line.
        next: usize,
    },
    /// No line end yet, and the line may still fit: read more.
    Incomplete,
    /// The line is longer than `max_line` bytes (not counting `\r\n`).
    TooLong,
}

/// Finds the first line in `buffer`, looking at no more than `max_line + 2` bytes.
pub fn next_line(buffer: &[u8], max_line: usize) -> Frame {
    let window = &buffer[..buffer.len().min(max_line.saturating_add(2))];
    match window.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let content = buffer[..end].strip_suffix(b"\r").unwrap_or(&buffer[..end]);
            if content.len() > max_line { Frame::TooLong } else { Frame::Line { end, next: end + 1 } }
        }
        None => {
            // A final `\r` may yet turn out to be part of the line ending.
            let content = window.strip_suffix(b"\r").unwrap_or(window);
            if content.len() > max_line { Frame::TooLong } else { Frame::Incomplete }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(buffer: &[u8], max_line: usize, expect: Frame) {
        assert_eq!(next_line(buffer, max_line), expect, "{buffer:?}");
    }

    #[test]
    fn frames() {
        check(b"", 4, Frame::Incomplete);
        check(b"info", 4, Frame::Incomplete);
        check(b"info\n", 4, Frame::Line { end: 4, next: 5 });
        check(b"info\r\nquit\n", 4, Frame::Line { end: 5, next: 6 });
        check(b"info\r", 4, Frame::Incomplete);
        check(b"infos", 4, Frame::TooLong);
        check(b"info\r\r", 4, Frame::TooLong);
        check(b"infos\n", 4, Frame::TooLong);
        check(b"infoss", 4, Frame::TooLong);
        check(b"\n", 0, Frame::Line { end: 0, next: 1 });
        check(b"a\n", 0, Frame::TooLong);
    }
}
