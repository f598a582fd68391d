//! `format pipe|xml|json`: sets the authenticated subscription's output format (kept
//! across restarts, unlike in the original).

use crate::format::OutputFormat;
use crate::protocol::{ErrorReply, Output, Reply, Session, Words, require_auth};
use crate::subscription::SubscriptionBackend;

pub(super) struct Format {
    /// `None` when the words are not exactly one format name; reported after the auth
    /// check, as the original did.
    format: Option<OutputFormat>,
}

impl Format {
    pub(super) fn parse(words: Words<'_>) -> Result<Format, ErrorReply> {
        let format = match words.remaining().as_slice() {
            [name] => OutputFormat::parse(name),
            _ => None,
        };
        Ok(Format { format })
    }

    pub(super) fn apply<B>(self, session: &mut Session, backend: &mut B, out: &mut Output)
    where
        B: SubscriptionBackend + ?Sized,
    {
        let Some(id) = require_auth(session, out) else {
            return;
        };
        let Some(format) = self.format else {
            return out.reply(ErrorReply::InvalidFormat);
        };
        match backend.set_format(id, format) {
            Ok(mutation) => {
                out.mutations.push(mutation);
                out.reply(Reply::Ok);
            }
            Err(_) => session.lost_subscription(out),
        }
    }
}
