//! `unsubscribe` (the authenticated subscription) or `unsubscribe NAME TOKEN`: deletes a
//! subscription with all its definitions.

use crate::protocol::{ErrorReply, Output, Reply, Session, Words};
use crate::subscription::SubscriptionBackend;

pub(super) enum Unsubscribe {
    Authenticated,
    Named { name: String, token: String },
}

impl Unsubscribe {
    pub(super) fn parse(words: Words<'_>) -> Result<Unsubscribe, ErrorReply> {
        match words.remaining().as_slice() {
            [] => Ok(Unsubscribe::Authenticated),
            [name, token] => Ok(Unsubscribe::Named { name: (*name).to_string(), token: (*token).to_string() }),
            _ => Err(ErrorReply::InvalidTokenOrName),
        }
    }

    pub(super) fn apply<B>(self, session: &mut Session, backend: &mut B, out: &mut Output)
    where
        B: SubscriptionBackend + ?Sized,
    {
        let id = match self {
            Unsubscribe::Authenticated => match session.authenticated {
                Some(id) => id,
                None => return out.reply(ErrorReply::InvalidTokenOrName),
            },
            Unsubscribe::Named { name, token } => {
                if backend.find(&name).is_none() {
                    return out.reply(ErrorReply::NoSuchFeed);
                }
                match backend.authenticate(&name, &token) {
                    Some(id) => id,
                    None => return out.reply(ErrorReply::InvalidTokenOrName),
                }
            }
        };
        match backend.unsubscribe(id) {
            Ok(mutation) => {
                if session.authenticated == Some(id) {
                    session.authenticated = None;
                }
                out.mutations.push(mutation);
                out.reply(Reply::Ok);
            }
            Err(_) => session.lost_subscription(out),
        }
    }
}
