//! `subscribe NAME` (or `subscribe NAME ADMIN_TOKEN`): creates a subscription and answers
//! `TOKEN: <token>`, if the session's [`SubscribeAccess`] lets this client. The token is
//! shown this once; only its hash is kept. The session is not authenticated afterwards
//! (as in the original): the client sends `auth NAME TOKEN` next.

use std::net::IpAddr;

use crate::protocol::{ErrorReply, Output, Reply, SubscribeAccess, Words};
use crate::subscription::{SubscribeError, SubscriptionBackend, SubscriptionName};

pub(super) struct Subscribe {
    name: SubscriptionName,
    admin_token: Option<String>,
}

impl Subscribe {
    pub(super) fn parse(words: Words<'_>) -> Result<Subscribe, ErrorReply> {
        let (name, admin_token) = match words.remaining().as_slice() {
            [name] => (*name, None),
            [name, token] => (*name, Some((*token).to_string())),
            _ => return Err(ErrorReply::InvalidName),
        };
        let name = SubscriptionName::parse(name).map_err(|_| ErrorReply::InvalidName)?;
        Ok(Subscribe { name, admin_token })
    }

    pub(super) fn apply<B>(self, access: &SubscribeAccess, address: Option<IpAddr>, backend: &mut B, out: &mut Output)
    where
        B: SubscriptionBackend + ?Sized,
    {
        if let Err(refusal) = access.check(self.admin_token.as_deref()) {
            return out.reply(refusal);
        }
        match backend.subscribe(self.name, address) {
            Ok(subscribed) => {
                out.mutations.push(subscribed.mutation);
                out.reply(Reply::Token(subscribed.token));
            }
            Err(SubscribeError::Exists) => out.reply(ErrorReply::SubscriptionExists),
            Err(SubscribeError::Token(_)) => out.reply(ErrorReply::TokenUnavailable),
            Err(SubscribeError::TooMany { limit, per_address }) => {
                out.reply(ErrorReply::TooManySubscriptions { limit, per_address });
            }
        }
    }
}
