//! `list [xml|json]`: the authenticated subscription's definitions as one document on one
//! line (json when no format is given), sorted so the same definitions always list the
//! same way. The output can be fed back to `remove` as it is.

use crate::definition::{DocumentFormat, write_document};
use crate::protocol::{ErrorReply, Output, Reply, Session, Words, require_auth};
use crate::subscription::SubscriptionBackend;

pub(super) struct List {
    format: Option<DocumentFormat>,
    /// The words did not name a document format; reported after the auth check, as the
    /// original did.
    unknown_format: bool,
}

impl List {
    pub(super) fn parse(words: Words<'_>) -> Result<List, ErrorReply> {
        let (format, unknown_format) = match words.remaining().as_slice() {
            [] => (None, false),
            [name] => match DocumentFormat::parse(name) {
                Some(format) => (Some(format), false),
                None => (None, true),
            },
            _ => (None, true),
        };
        Ok(List { format, unknown_format })
    }

    pub(super) fn apply<B>(self, session: &mut Session, backend: &mut B, out: &mut Output)
    where
        B: SubscriptionBackend + ?Sized,
    {
        let Some(id) = require_auth(session, out) else {
            return;
        };
        if self.unknown_format {
            return out.reply(ErrorReply::UnknownDataFormat);
        }
        match backend.definitions(id) {
            Ok(definitions) => {
                let format = self.format.unwrap_or(DocumentFormat::Json);
                out.reply(Reply::Document(write_document(format, &definitions)));
            }
            Err(_) => session.lost_subscription(out),
        }
    }
}
