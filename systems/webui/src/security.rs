//! Who may do what: sessions made by logging in with the admin token, CSRF tokens,
//! the rate limit on login attempts, and the cookies and headers that carry them.
//!
//! A session id is 32 bytes from the operating system's CSPRNG (`getrandom`), given to
//! the browser once (the cookie) and kept here only as its SHA-256: a copy of this
//! table (a core dump) lets nobody in. A lookup finds the entry by that hash and then
//! compares it in constant time (`subtle`), so the comparison says nothing about how
//! close a guess was. Each session has its own CSRF token, which every form carries and
//! every state-changing request must return; before a login there is no session, so
//! the login form's token is a double-submit cookie instead (a cross-site page can
//! neither read that cookie nor, with `SameSite=Strict`, make the browser send it).
//!
//! Everything here takes the time as an argument: no clock, so the tables below test
//! expiry and the rate limit exactly.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "flotilla_session";
/// Name of the login form's double-submit CSRF cookie.
pub const LOGIN_CSRF_COOKIE: &str = "flotilla_login_csrf";

/// 32 random bytes as 64 lowercase hex digits.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The OS's random source failing is a broken machine, not a condition to handle.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    hex(&bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 15)] as char);
    }
    out
}

/// Whether `given` equals `expected`, compared in constant time.
pub fn same_secret(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

fn hash_id(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// A logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The token its forms carry.
    pub csrf: String,
    /// Unix seconds after which it is no longer valid.
    pub expires_at: u64,
}

/// Why a session cookie does not log anyone in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("your session has expired; log in again")]
    Expired,
    #[error("your session is not known here (the node may have restarted); log in again")]
    Unknown,
}

/// The sessions of logged-in browsers, by the hash of their id.
#[derive(Debug)]
pub struct Sessions {
    by_hash: HashMap<[u8; 32], Session>,
    /// Hashes in the order they were made, to forget the oldest beyond `max`.
    order: VecDeque<[u8; 32]>,
    ttl_secs: u64,
    max: usize,
}

impl Sessions {
    pub fn new(ttl_secs: u64, max: usize) -> Sessions {
        Sessions { by_hash: HashMap::new(), order: VecDeque::new(), ttl_secs, max: max.max(1) }
    }

    /// Opens a session at `now`: returns the id for the cookie (not kept here) and the session.
    pub fn open(&mut self, now: u64) -> (String, Session) {
        let id = random_token();
        let session = Session { csrf: random_token(), expires_at: now + self.ttl_secs };
        let hash = hash_id(&id);
        self.by_hash.insert(hash, session.clone());
        self.order.push_back(hash);
        while self.order.len() > self.max {
            if let Some(oldest) = self.order.pop_front() {
                self.by_hash.remove(&oldest);
            }
        }
        (id, session)
    }

    /// The session of cookie value `id` at `now`. An expired one is forgotten.
    pub fn find(&mut self, id: &str, now: u64) -> Result<Session, SessionError> {
        let hash = hash_id(id);
        let Some((stored, session)) = self.by_hash.get_key_value(&hash) else { return Err(SessionError::Unknown) };
        // The map found it by hash; the constant-time comparison is what decides.
        if !bool::from(stored.ct_eq(&hash)) {
            return Err(SessionError::Unknown);
        }
        if now >= session.expires_at {
            self.by_hash.remove(&hash);
            self.order.retain(|h| *h != hash);
            return Err(SessionError::Expired);
        }
        Ok(session.clone())
    }

    /// Ends the session of cookie value `id` (logging out).
    pub fn close(&mut self, id: &str) {
        let hash = hash_id(id);
        self.by_hash.remove(&hash);
        self.order.retain(|h| *h != hash);
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// At most `limit` login attempts per address in any `window_secs`: a guess at the
/// admin token costs a network round trip and a wait, never a tight loop.
#[derive(Debug)]
pub struct LoginLimiter {
    attempts: HashMap<IpAddr, VecDeque<u64>>,
    limit: usize,
    window_secs: u64,
}

impl LoginLimiter {
    pub fn new(limit: usize, window_secs: u64) -> LoginLimiter {
        LoginLimiter { attempts: HashMap::new(), limit, window_secs }
    }

    /// Counts an attempt from `ip` at `now`: `Ok` when it may go ahead, else `Err` with
    /// the seconds to wait.
    pub fn attempt(&mut self, ip: IpAddr, now: u64) -> Result<(), u64> {
        // Forget addresses whose attempts are all outside the window (bounded memory).
        let window = self.window_secs;
        self.attempts.retain(|_, times| times.back().is_some_and(|t| t + window > now));
        let times = self.attempts.entry(ip).or_default();
        while times.front().is_some_and(|t| t + window <= now) {
            times.pop_front();
        }
        if times.len() >= self.limit {
            let oldest = times.front().copied().unwrap_or(now);
            return Err((oldest + window).saturating_sub(now).max(1));
        }
        times.push_back(now);
        Ok(())
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value: only for this site's pages (`Path=/`), never readable by
/// scripts, never sent on a request another site started, and over TLS only when the
/// UI is served over TLS. `max_age` `Some(0)` deletes the cookie.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut out = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        out.push_str("; Secure");
    }
    if let Some(age) = max_age {
        out.push_str(&format!("; Max-Age={age}"));
    }
    out
}

/// The Content-Security-Policy of every page: nothing inline (no inline script, no
/// inline style), scripts, styles and event streams from this origin only, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_until_it_expires_then_forgotten() {
        let mut sessions = Sessions::new(100, 10);
        let (id, session) = sessions.open(1_000);
        assert_eq!(id.len(), 64);
        assert_ne!(session.csrf, id);
        // (time, expected)
        let cases: &[(u64, Result<(), SessionError>)] = &[
            (1_000, Ok(())),
            (1_099, Ok(())),
            (1_100, Err(SessionError::Expired)),
            (1_101, Err(SessionError::Unknown)),
        ];
        for (now, expected) in cases {
            assert_eq!(sessions.find(&id, *now).map(|_| ()), *expected, "at {now}");
        }
    }

    #[test]
    fn ids_are_not_kept_and_guesses_are_unknown() {
        let mut sessions = Sessions::new(100, 10);
        let (id, _) = sessions.open(0);
        let guesses = ["", "0", &id[..63], &format!("{id}0"), &id.to_uppercase(), &random_token()];
        for guess in guesses {
            assert_eq!(sessions.find(guess, 1), Err(SessionError::Unknown), "{guess:?}");
        }
        assert!(sessions.find(&id, 1).is_ok());
        assert!(!format!("{sessions:?}").contains(&id), "the id itself is never stored");
        sessions.close(&id);
        assert_eq!(sessions.find(&id, 1), Err(SessionError::Unknown));
        assert!(sessions.is_empty());
    }

    #[test]
    fn the_oldest_sessions_are_forgotten_beyond_the_cap() {
        let mut sessions = Sessions::new(100, 2);
        let ids: Vec<String> = (0..3).map(|_| sessions.open(0).0).collect();
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.find(&ids[0], 1), Err(SessionError::Unknown));
        assert!(sessions.find(&ids[1], 1).is_ok() && sessions.find(&ids[2], 1).is_ok());
    }

    #[test]
    fn login_attempts_are_limited_per_address_and_window() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut limiter = LoginLimiter::new(3, 60);
        // (address, time, expected)
        let cases: &[(IpAddr, u64, Result<(), u64>)] = &[
            (a, 0, Ok(())),
            (a, 10, Ok(())),
            (a, 20, Ok(())),
            (a, 30, Err(30)),
            (b, 30, Ok(())),
            (a, 59, Err(1)),
            (a, 60, Ok(())),
            (a, 61, Err(9)),
        ];
        for (ip, now, expected) in cases {
            assert_eq!(limiter.attempt(*ip, *now), *expected, "{ip} at {now}");
        }
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("flotilla_session=abc", SESSION_COOKIE, Some("abc")),
            ("a=1; flotilla_session=abc; b=2", SESSION_COOKIE, Some("abc")),
            ("xflotilla_session=abc", SESSION_COOKIE, None),
            ("flotilla_session_x=abc", SESSION_COOKIE, None),
            ("", SESSION_COOKIE, None),
            ("a=1;;b", "b", None),
        ];
        for (header, name, expected) in cases {
            assert_eq!(cookie(header, name), *expected, "{header:?}");
        }
    }

    #[test]
    fn cookies_are_http_only_same_site_strict_and_secure_over_tls() {
        let cases: &[(bool, Option<u64>, &str)] = &[
            (false, None, "s=v; Path=/; HttpOnly; SameSite=Strict"),
            (true, None, "s=v; Path=/; HttpOnly; SameSite=Strict; Secure"),
            (false, Some(0), "s=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        ];
        for (secure, age, expected) in cases {
            assert_eq!(set_cookie("s", "v", *secure, *age), *expected);
        }
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        let cases = [("a", "a", true), ("a", "b", false), ("", "a", false), ("ab", "a", false), ("", "", true)];
        for (given, expected, same) in cases {
            assert_eq!(same_secret(given, expected), same, "{given:?} {expected:?}");
        }
    }

    #[test]
    fn the_policy_allows_nothing_inline() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self'"));
    }
}
