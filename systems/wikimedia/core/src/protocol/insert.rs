//! `insert xml|json` followed by a document (on the same line or the following ones):
//! adds definitions to the authenticated subscription and answers how many were new.
//! All or nothing: a document with any bad definition, or one that would pass the
//! per-subscription cap, adds none.

use crate::definition::Definition;
use crate::protocol::document::{DocumentOp, PendingDocument};
use crate::protocol::{ErrorReply, Output, Reply, Session, Words, document_target};
use crate::subscription::{InsertError, SubscriptionBackend, SubscriptionId};

pub(super) struct Insert {
    format: Option<String>,
    first: String,
}

impl Insert {
    pub(super) fn parse(mut words: Words<'_>) -> Result<Insert, ErrorReply> {
        let format = words.next().map(str::to_string);
        Ok(Insert { format, first: words.rest().to_string() })
    }

    pub(super) fn apply<B>(self, session: &mut Session, backend: &mut B, out: &mut Output)
    where
        B: SubscriptionBackend + ?Sized,
    {
        let Some((format, target)) =
            document_target(session, self.format.as_deref(), ErrorReply::MissingInsertParameter, out)
        else {
            return;
        };
        let limit = session.limits.max_document_bytes;
        let pending = PendingDocument::new(DocumentOp::Insert, format, target, limit);
        session.start_document(pending, &self.first, backend, out);
    }
}

/// Applies a complete document.
pub(super) fn finish<B>(
    session: &mut Session,
    id: SubscriptionId,
    definitions: Vec<Definition>,
    backend: &mut B,
    out: &mut Output,
) where
    B: SubscriptionBackend + ?Sized,
{
    match backend.insert(id, definitions) {
        Ok(applied) => {
            out.mutations.extend(applied.mutation);
            out.reply(Reply::Count(applied.count));
        }
        Err(InsertError::TooMany { limit }) => {
            out.reply(ErrorReply::TooManyDefinitions { limit });
        }
        Err(InsertError::NoSuchSubscription) => session.lost_subscription(out),
    }
}
