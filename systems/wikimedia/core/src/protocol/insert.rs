//! `insert xml|json` followed by a document (on the same line or the following ones):
//! adds definitions to the authenticated subscription and answers how many were new.
//! All or nothing: a document with any bad definition, or one that would pass the
//! per-subscription cap or a memory budget for compiled patterns, adds none.

use crate::definition::Definition;
use crate::protocol::{ErrorReply, Output, Reply, Session};
use crate::subscription::{InsertError, SubscriptionBackend, SubscriptionId};

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
        Err(InsertError::PatternMemory { pattern, budget, limit }) => {
            out.reply(ErrorReply::PatternMemory { pattern, budget, limit });
        }
        Err(InsertError::NoSuchSubscription) => session.lost_subscription(out),
    }
}
