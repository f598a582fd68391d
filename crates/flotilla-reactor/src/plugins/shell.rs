//! Quoting message text into a command line for `sh -c` (the Command plugin).
//!
//! A placeholder's text must reach the shell as data, never as code: chat lines, feed
//! titles and edit summaries are written by strangers. So the command's literal text
//! is read as the shell would read it, far enough to know the quoting context at each
//! placeholder, and the field's text is quoted for that context:
//!
//! - outside quotes: a single-quoted word (`'it'\''s'`), so `y; id` stays one argument
//!   (text of only letters, digits and `@%+:,./_-` is left as it is);
//! - inside `'…'`: each `'` becomes `'\''` (close, escaped quote, reopen);
//! - inside `"…"`: `\`, `"`, `$` and `` ` `` get a backslash.
//!
//! `$( … )` starts a fresh command inside either, as in the shell. Places where no
//! quoting is safe are refused when the rule is compiled: right after a backslash or a
//! `$`, inside backquotes or `${ … }`, in a comment, and anywhere after a here-document
//! (`<<`). `{$!field}` (the raw form) pastes the text as it is, for the rare rule that
//! builds shell code from a trusted field.

/// How a placeholder's text is written into the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quoting {
    /// As it is: templates that are not commands, and the raw form `{$!field}`.
    Raw,
    /// Outside quotes: one single-quoted word.
    Word,
    /// Inside single quotes.
    InSingle,
    /// Inside double quotes.
    InDouble,
}

impl Quoting {
    /// Appends `text` to `out`, quoted for this context.
    pub(crate) fn push(self, text: &str, out: &mut String) {
        match self {
            Quoting::Raw => out.push_str(text),
            // A word the shell reads the same unquoted (a number, a plain name) stays
            // as it is, so command lines stay readable; `=` and `~` are not plain
            // (an assignment, a home directory).
            Quoting::Word
                if !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"@%+:,./_-".contains(&b)) =>
            {
                out.push_str(text);
            }
            Quoting::Word => {
                out.push('\'');
                push_single_quoted(text, out);
                out.push('\'');
            }
            Quoting::InSingle => push_single_quoted(text, out),
            Quoting::InDouble => {
                for c in text.chars() {
                    if matches!(c, '\\' | '"' | '$' | '`') {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
        }
    }
}

/// Inside single quotes nothing is special but `'` itself, which cannot be escaped
/// there: close the quotes, add an escaped quote, reopen.
fn push_single_quoted(text: &str, out: &mut String) {
    for c in text.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// A command: the whole line, or the inside of `$( … )` with its open parentheses.
    Command {
        parens: u32,
    },
    Double,
    Backquote,
    /// `${ … }`.
    Brace,
    /// bash's `$'…'`, where a backslash escapes a quote.
    AnsiC,
}

/// Reads a command line's literal text as `sh` would, far enough to know the quoting
/// context where a placeholder sits.
#[derive(Debug, Clone)]
pub(crate) struct ShellLexer {
    stack: Vec<Frame>,
    single: bool,
    escaped: bool,
    dollar: bool,
    comment: bool,
    heredoc: bool,
    less: bool,
    word_start: bool,
}

impl Default for ShellLexer {
    fn default() -> Self {
        ShellLexer {
            stack: vec![Frame::Command { parens: 0 }],
            single: false,
            escaped: false,
            dollar: false,
            comment: false,
            heredoc: false,
            less: false,
            word_start: true,
        }
    }
}

impl ShellLexer {
    /// Reads literal text of the command line.
    pub(crate) fn feed(&mut self, text: &str) {
        for c in text.chars() {
            self.char(c);
        }
    }

    fn char(&mut self, c: char) {
        let dollar = std::mem::take(&mut self.dollar);
        let less = std::mem::take(&mut self.less);
        if self.comment {
            if c == '\n' {
                self.comment = false;
                self.word_start = true;
            }
            return;
        }
        if self.escaped {
            self.escaped = false;
            self.word_start = false;
            return;
        }
        if self.single {
            self.single = c != '\'';
            return;
        }
        let nested = self.stack.len() > 1;
        let top = self.stack.last_mut().expect("the line's own frame is never popped");
        match (*top, c) {
            (_, '\\') => self.escaped = true,
            (Frame::Double | Frame::Command { .. } | Frame::Brace, '$') => self.dollar = true,
            (Frame::Double | Frame::Command { .. } | Frame::Brace, '(') if dollar => {
                self.stack.push(Frame::Command { parens: 0 })
            }
            (Frame::Double | Frame::Command { .. } | Frame::Brace, '{') if dollar => self.stack.push(Frame::Brace),
            (Frame::Double | Frame::Command { .. }, '`') => self.stack.push(Frame::Backquote),
            (Frame::Command { .. }, '\'') if dollar => self.stack.push(Frame::AnsiC),
            (Frame::Backquote, '`') | (Frame::Double, '"') | (Frame::Brace, '}') | (Frame::AnsiC, '\'') => {
                self.stack.pop();
            }
            (Frame::Command { .. }, '\'') => self.single = true,
            (Frame::Command { .. }, '"') => self.stack.push(Frame::Double),
            (Frame::Command { parens }, '(') => *top = Frame::Command { parens: parens + 1 },
            (Frame::Command { parens: 0 }, ')') if nested => {
                self.stack.pop();
            }
            (Frame::Command { parens }, ')') => *top = Frame::Command { parens: parens.saturating_sub(1) },
            (Frame::Command { .. }, '#') if self.word_start => self.comment = true,
            (Frame::Command { .. }, '<') => {
                self.heredoc |= less;
                self.less = true;
            }
            _ => {}
        }
        self.word_start = matches!(self.stack.last(), Some(Frame::Command { .. }))
            && (c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '<' | '>'));
    }

    /// A placeholder was written here: it is part of a word, and it ends any `$` or
    /// `<` that came before it.
    pub(crate) fn placeholder(&mut self) {
        self.word_start = false;
        self.dollar = false;
        self.less = false;
    }

    /// How a placeholder at this point is quoted, or why none can be.
    pub(crate) fn quoting(&self) -> Result<Quoting, &'static str> {
        if self.escaped {
            return Err("it follows a backslash");
        }
        if self.dollar {
            return Err("it follows a '$'");
        }
        if self.comment {
            return Err("it is in a comment");
        }
        if self.heredoc {
            return Err("it follows a here-document ('<<')");
        }
        if self.stack.contains(&Frame::Backquote) {
            return Err("it is inside backquotes (write $( … ) instead)");
        }
        if self.stack.contains(&Frame::Brace) {
            return Err("it is inside '${ … }'");
        }
        if self.stack.contains(&Frame::AnsiC) {
            return Err("it is inside $' … '");
        }
        Ok(match self.stack.last() {
            _ if self.single => Quoting::InSingle,
            Some(Frame::Double) => Quoting::InDouble,
            _ => Quoting::Word,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn context(before: &str) -> Result<Quoting, &'static str> {
        let mut lexer = ShellLexer::default();
        lexer.feed(before);
        lexer.quoting()
    }

    #[test]
    fn contexts() {
        let cases: &[(&str, Result<Quoting, &str>)] = &[
            ("echo ", Ok(Quoting::Word)),
            ("echo --name=", Ok(Quoting::Word)),
            ("echo 'a ", Ok(Quoting::InSingle)),
            ("echo 'a' ", Ok(Quoting::Word)),
            ("echo \"a ", Ok(Quoting::InDouble)),
            ("echo \"it's ", Ok(Quoting::InDouble)),
            ("echo 'say \"", Ok(Quoting::InSingle)),
            ("echo \"a\\\" ", Ok(Quoting::InDouble)),
            ("echo \\' ", Ok(Quoting::Word)),
            ("echo \"$(basename ", Ok(Quoting::Word)),
            ("echo \"$(basename \"", Ok(Quoting::InDouble)),
            ("echo \"$(basename x) ", Ok(Quoting::InDouble)),
            ("echo $( (cd /; ls) ) ", Ok(Quoting::Word)),
            ("echo $((1 + 2)) ", Ok(Quoting::Word)),
            ("echo a#b ", Ok(Quoting::Word)),
            ("echo # it's\necho ", Ok(Quoting::Word)),
            ("echo ${HOME} ", Ok(Quoting::Word)),
            ("echo 2>&1 ", Ok(Quoting::Word)),
            ("echo \\", Err("it follows a backslash")),
            ("echo $", Err("it follows a '$'")),
            ("echo # ", Err("it is in a comment")),
            ("cat <<EOF\n", Err("it follows a here-document ('<<')")),
            ("echo `echo ", Err("it is inside backquotes (write $( … ) instead)")),
            ("echo \"`echo ", Err("it is inside backquotes (write $( … ) instead)")),
            ("echo ${X:-", Err("it is inside '${ … }'")),
            ("echo $'it\\'s ", Err("it is inside $' … '")),
            ("echo $'it\\'s' ", Ok(Quoting::Word)),
        ];
        for (before, want) in cases {
            assert_eq!(context(before), *want, "{before:?}");
        }
    }

    #[test]
    fn quoting() {
        let cases = [
            (Quoting::Raw, "a 'b' $c", "a 'b' $c"),
            (Quoting::Word, "", "''"),
            (Quoting::Word, "60", "60"),
            (Quoting::Word, "en.wikipedia.org/wiki/A_b-c", "en.wikipedia.org/wiki/A_b-c"),
            (Quoting::Word, "PATH=/tmp", "'PATH=/tmp'"),
            (Quoting::Word, "~root", "'~root'"),
            (Quoting::Word, "ünï", "'ünï'"),
            (Quoting::Word, "y; id", "'y; id'"),
            (Quoting::Word, "it's", "'it'\\''s'"),
            (Quoting::InSingle, "it's", "it'\\''s"),
            (Quoting::InDouble, "a \"b\" $c `d` \\e 'f'", "a \\\"b\\\" \\$c \\`d\\` \\\\e 'f'"),
        ];
        for (quoting, text, want) in cases {
            let mut out = String::new();
            quoting.push(text, &mut out);
            assert_eq!(out, want, "{quoting:?} {text:?}");
        }
    }
}
