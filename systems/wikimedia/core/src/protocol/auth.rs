//! `auth NAME TOKEN`: authenticates the session to a subscription, so `insert`, `remove`,
//! `list`, `format` and a bare `unsubscribe` act on it. A failed attempt leaves the session
//! unauthenticated.

use crate::protocol::{ErrorReply, Output, Reply, Session, Words};
use crate::subscription::SubscriptionBackend;

pub(super) struct Auth {
    name: String,
    token: String,
}

impl Auth {
    pub(super) fn parse(words: Words<'_>) -> Result<Auth, ErrorReply> {
        match words.remaining().as_slice() {
            [name, token] => Ok(Auth { name: (*name).to_string(), token: (*token).to_string() }),
            _ => Err(ErrorReply::InvalidTokenOrName),
        }
    }

    pub(super) fn apply<B>(self, session: &mut Session, backend: &mut B, out: &mut Output)
    where
        B: SubscriptionBackend + ?Sized,
    {
        session.authenticated = backend.authenticate(&self.name, &self.token);
        match session.authenticated {
            Some(_) => out.reply(Reply::Ok),
            None => out.reply(ErrorReply::InvalidTokenOrName),
        }
    }
}
