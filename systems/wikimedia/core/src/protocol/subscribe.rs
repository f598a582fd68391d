//! `subscribe NAME`: creates a subscription and answers `TOKEN: <token>`. The token is
//! shown this once; only its hash is kept. The session is not authenticated afterwards
//! (as in the original): the client sends `auth NAME TOKEN` next.

use std::net::IpAddr;

use crate::protocol::{ErrorReply, Output, Reply, Words};
use crate::subscription::{SubscribeError, SubscriptionBackend, SubscriptionName};

pub(super) struct Subscribe {
    name: SubscriptionName,
}

impl Subscribe {
    pub(super) fn parse(words: Words<'_>) -> Result<Subscribe, ErrorReply> {
        match words.remaining().as_slice() {
            [name] => SubscriptionName::parse(name).map(|name| Subscribe { name }).map_err(|_| ErrorReply::InvalidName),
            _ => Err(ErrorReply::InvalidName),
        }
    }

    pub(super) fn apply<B>(self, address: Option<IpAddr>, backend: &mut B, out: &mut Output)
    where
        B: SubscriptionBackend + ?Sized,
    {
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
