//! `remove xml|json` followed by a document, as for `insert`: removes the definitions the
//! authenticated subscription has and answers how many were removed. Definitions it does
//! not have are skipped.

use crate::definition::Definition;
use crate::protocol::{Output, Reply, Session};
use crate::subscription::{SubscriptionBackend, SubscriptionId};

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
