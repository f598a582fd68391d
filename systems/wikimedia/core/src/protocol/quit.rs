//! `quit`: answers `Good bye :o` and ends the session; the server closes the connection
//! after sending the reply.

use crate::protocol::{ErrorReply, Output, Reply, Session, Words};

pub(super) struct Quit;

impl Quit {
    pub(super) fn parse(words: Words<'_>) -> Result<Quit, ErrorReply> {
        if words.is_empty() { Ok(Quit) } else { Err(ErrorReply::CommandNotUnderstood) }
    }

    pub(super) fn apply(self, session: &mut Session, out: &mut Output) {
        session.closed = true;
        session.pending = None;
        out.reply(Reply::Bye);
        out.close = true;
    }
}
