//! `info`: one line of counters, in the original's words:
//! `I have N connections and M subscriptions, I am now watching W wikis`.

use crate::protocol::{ErrorReply, Output, Reply, Words};
use crate::subscription::SubscriptionBackend;

pub(super) struct Info;

impl Info {
    pub(super) fn parse(words: Words<'_>) -> Result<Info, ErrorReply> {
        if words.is_empty() { Ok(Info) } else { Err(ErrorReply::CommandNotUnderstood) }
    }

    pub(super) fn apply<B>(self, backend: &B, out: &mut Output)
    where
        B: SubscriptionBackend + ?Sized,
    {
        out.reply(Reply::Info(backend.info()));
    }
}
