//! Choosing a nick when the one we asked for is taken (SPEC §7): the base nick plus
//! `-NNN` (three random digits), shortened to fit the server's limit: the `NICKLEN`
//! it advertises, or, when it rejects a nick as erroneous (432) before saying, one
//! character less than the nick it rejected. The configured nick is tried again on
//! every new connection.

/// A connection's nick situation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NickChoice {
    /// The nick this connection is configured to use.
    pub base: String,
    /// Longest nick the server accepts, as far as we know.
    pub limit: Option<usize>,
    /// Nicks tried on this connection so far (registration gives up after many).
    pub attempts: u32,
}

/// Nicks at least this long can carry a `-NNN` suffix with one character of base.
const SHORTEST_FALLBACK: usize = 5;

impl NickChoice {
    pub fn new(base: &str) -> NickChoice {
        NickChoice { base: base.to_string(), limit: None, attempts: 0 }
    }

    /// The nick to try first on a new connection: the configured one (cut to the
    /// limit if we learnt one earlier).
    pub fn first(&mut self) -> String {
        self.attempts = 1;
        truncate_chars(&self.base, self.limit.unwrap_or(usize::MAX)).to_string()
    }

    /// The server advertised `NICKLEN`.
    pub fn set_limit(&mut self, nicklen: usize) {
        if nicklen > 0 {
            self.limit = Some(nicklen);
        }
    }

    /// The nick `rejected` was refused as erroneous (432): assume the limit is below its
    /// length, unless the server already told us a limit it fits.
    pub fn rejected_as_erroneous(&mut self, rejected: &str) {
        let length = rejected.chars().count();
        let current = self.limit.map_or(length, |limit| limit.min(length));
        self.limit = Some(current.saturating_sub(1).max(SHORTEST_FALLBACK));
    }

    /// The next nick after one was refused, with `digits` as the suffix (0..=999).
    pub fn fallback(&mut self, digits: u16) -> String {
        self.attempts += 1;
        fallback_nick(&self.base, self.limit, digits)
    }
}

/// `base-NNN`, with the base cut so the whole fits `limit` characters.
pub fn fallback_nick(base: &str, limit: Option<usize>, digits: u16) -> String {
    let suffix = format!("-{:03}", digits % 1000);
    let room = limit.map_or(usize::MAX, |l| l.max(SHORTEST_FALLBACK) - suffix.len());
    format!("{}{suffix}", truncate_chars(base, room))
}

fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// Whether a NOTICE from `source` says the nick we use is registered to someone else
/// (NickServ's "This nickname is registered and protected…" and its variants).
pub fn is_registered_notice(source: &str, text: &str) -> bool {
    if !source.eq_ignore_ascii_case("NickServ") {
        return false;
    }
    let text = text.to_ascii_lowercase();
    text.contains("is registered")
        || text.contains("nickname is owned")
        || text.contains("please choose a different nick")
        || text.contains("this nick is owned")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_nicks() {
        let cases: &[(&str, Option<usize>, u16, &str)] = &[
            ("flotilla", None, 7, "flotilla-007"),
            ("flotilla", Some(30), 123, "flotilla-123"),
            ("flotilla", Some(9), 123, "floti-123"),
            ("flotilla", Some(10), 5, "flotil-005"),
            ("flotilla", Some(3), 42, "f-042"),
            ("flotilla", Some(12), 1999, "flotilla-999"),
            ("bötchen", Some(7), 1, "böt-001"),
        ];
        for (base, limit, digits, expect) in cases {
            assert_eq!(fallback_nick(base, *limit, *digits), *expect, "{base} {limit:?} {digits}");
        }
    }

    #[test]
    fn erroneous_fallbacks_shrink_until_they_fit() {
        // A server that takes at most 9 characters but does not say so.
        let server_limit = 9;
        let mut choice = NickChoice::new("flotillabot");
        let mut nick = choice.first();
        let mut tries = 0;
        while nick.chars().count() > server_limit {
            choice.rejected_as_erroneous(&nick);
            nick = choice.fallback(321);
            tries += 1;
            assert!(tries < 10, "converges");
        }
        assert_eq!(nick, "floti-321");
        assert_eq!(choice.attempts, 1 + tries);
        // The next connection starts with the configured nick, cut to what we learnt.
        assert_eq!(choice.first(), "flotillab");
    }

    #[test]
    fn an_advertised_limit_cuts_the_base() {
        let mut choice = NickChoice::new("averyveryverylongnickname");
        choice.set_limit(12);
        assert_eq!(choice.fallback(1), "averyver-001");
        choice.set_limit(0);
        assert_eq!(choice.limit, Some(12), "0 is no limit, not a limit of 0");
    }

    #[test]
    fn registered_notices() {
        let cases = [
            ("NickServ", "This nickname is registered and protected.  If it is your", true),
            ("nickserv", "This nickname is registered. Please choose a different nickname", true),
            ("NickServ", "Nick flot is owned by someone else", false),
            ("NickServ", "This nickname is owned by someone else", true),
            ("NickServ", "You are now identified for flot.", false),
            ("ChanServ", "This nickname is registered and protected.", false),
            ("irc.test.local", "is registered", false),
        ];
        for (source, text, expect) in cases {
            assert_eq!(is_registered_notice(source, text), expect, "{source}: {text}");
        }
    }
}
