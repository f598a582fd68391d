//! `remove xml|json` followed by a document, as for `insert`: removes the definitions the
//! authenticated subscription has and answers how many were removed. Definitions it does
//! not have are skipped.

use crate::definition::Definition;
use crate::protocol::document::{DocumentOp, PendingDocument};
use crate::protocol::{ErrorReply, Output, Reply, Session, Words, document_target};
use crate::subscription::{SubscriptionBackend, SubscriptionId};

pub(super) struct Remove {
    format: Option<String>,
    first: String,
}

impl Remove {
    pub(super) fn parse(mut words: Words<'_>) -> Result<Remove, ErrorReply> {
        let format = words.next().map(str::to_string);
        Ok(Remove { format, first: words.rest().to_string() })
    }

    pub(super) fn apply<B>(self, session: &mut Session, backend: &mut B, out: &mut Output)
    where
        B: SubscriptionBackend + ?Sized,
    {
        let Some((format, target)) =
            document_target(session, self.format.as_deref(), ErrorReply::MissingDeleteParameter, out)
        else {
            return;
        };
        let limit = session.limits.max_document_bytes;
        let pending = PendingDocument::new(DocumentOp::Remove, format, target, limit);
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
    match backend.remove(id, definitions) {
        Ok(applied) => {
            out.mutations.extend(applied.mutation);
            out.reply(Reply::Count(applied.count));
        }
        Err(_) => session.lost_subscription(out),
    }
}
