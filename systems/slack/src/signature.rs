//! Slack's request signatures (SPEC §9), pure: no clock is read here, the caller passes
//! "now".
//!
//! Slack signs every request it sends with the app's signing secret:
//! `X-Slack-Signature: v0=` + hex(HMAC-SHA256(secret, `v0:{X-Slack-Request-Timestamp}:{raw body}`)).
//! A request is accepted only when both headers are present and well formed, the
//! timestamp is within [`MAX_SKEW_SECS`] of now *in either direction* (gopherbot only
//! rejected old ones, so a captured request with a future timestamp stayed replayable),
//! and the signature matches, compared in constant time so that the time taken says
//! nothing about how many leading bytes were right.

use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// How far a request's timestamp may be from now, in seconds, either way.
pub const MAX_SKEW_SECS: i64 = 300;

/// The only signature version Slack uses.
const VERSION: &str = "v0";

/// Why a request's signature was refused (answered 401, nothing queued). The text is
/// safe to show to the sender: it never holds the secret or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Slack-Request-Timestamp header is missing")]
    MissingTimestamp,
    #[error("the X-Slack-Signature header is missing")]
    MissingSignature,
    #[error("the X-Slack-Request-Timestamp header is not Unix seconds")]
    MalformedTimestamp,
    #[error("the X-Slack-Signature header is not v0= followed by 64 hexadecimal digits")]
    MalformedSignature,
    #[error("the request's timestamp is {skew} s from the gateway's clock (at most {MAX_SKEW_SECS} s either way)")]
    Stale { skew: i64 },
    #[error("the signature does not match the request")]
    Mismatch,
}

/// Checks requests against one signing secret. Holds the keyed HMAC state (the key's
/// pads already hashed), cloned per request. `Debug` does not show the secret.
#[derive(Clone)]
pub struct Verifier {
    keyed: HmacSha256,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier { secret: *** }")
    }
}

impl Verifier {
    pub fn new(signing_secret: &str) -> Verifier {
        #[allow(clippy::expect_used)] // HMAC takes keys of any length: this cannot fail.
        let keyed = HmacSha256::new_from_slice(signing_secret.as_bytes()).expect("HMAC accepts keys of any length");
        Verifier { keyed }
    }

    /// The signature Slack would send for `body` at `timestamp` (`v0=` + 64 hex digits):
    /// for tests and the benchmark's client.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let tag = self.tag(timestamp, body);
        let mut text = String::with_capacity(3 + 64);
        text.push_str("v0=");
        for byte in tag {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        text
    }

    /// Checks a request: its two headers as received (`None`: absent), its raw body,
    /// and the gateway's clock `now` (Unix seconds).
    ///
    /// # Errors
    /// The first thing wrong, in the order: headers present, well formed, timestamp
    /// fresh, signature matching.
    pub fn verify(
        &self,
        timestamp: Option<&[u8]>,
        signature: Option<&[u8]>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?;
        let signature = signature.ok_or(SignatureError::MissingSignature)?;
        let seconds = parse_timestamp(timestamp).ok_or(SignatureError::MalformedTimestamp)?;
        let given = parse_signature(signature).ok_or(SignatureError::MalformedSignature)?;
        let skew = now.saturating_sub(seconds);
        if skew.unsigned_abs() > MAX_SKEW_SECS.unsigned_abs() {
            return Err(SignatureError::Stale { skew });
        }
        // The timestamp is all ASCII digits here (parse_timestamp checked).
        let text = std::str::from_utf8(timestamp).map_err(|_| SignatureError::MalformedTimestamp)?;
        let expected = self.tag(text, body);
        if bool::from(expected.ct_eq(&given)) { Ok(()) } else { Err(SignatureError::Mismatch) }
    }

    fn tag(&self, timestamp: &str, body: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(VERSION.as_bytes());
        mac.update(b":");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Unix seconds: 1 to 12 ASCII digits, nothing else (no sign, no spaces).
fn parse_timestamp(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 12 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
}

/// `v0=` and 64 hex digits (either case) → the 32 bytes.
fn parse_signature(bytes: &[u8]) -> Option<[u8; 32]> {
    let hex = bytes.strip_prefix(b"v0=")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's published example ("Verifying requests from Slack").
    pub const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    pub const SLACK_TS: &str = "1531420618";
    pub const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    pub const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slacks_published_example_verifies() {
        let verifier = Verifier::new(SLACK_SECRET);
        assert_eq!(verifier.sign(SLACK_TS, SLACK_BODY.as_bytes()), SLACK_SIG);
        let now = 1531420618;
        assert_eq!(
            verifier.verify(Some(SLACK_TS.as_bytes()), Some(SLACK_SIG.as_bytes()), SLACK_BODY.as_bytes(), now),
            Ok(())
        );
        assert_eq!(format!("{verifier:?}"), "Verifier { secret: *** }");
    }

    #[test]
    fn each_defect_is_refused_with_its_reason() {
        let verifier = Verifier::new(SLACK_SECRET);
        let ts = SLACK_TS.as_bytes();
        let sig = SLACK_SIG.as_bytes();
        let body = SLACK_BODY.as_bytes();
        let now: i64 = 1531420618;
        let upper = SLACK_SIG.replace("a2114d", "A2114D");
        let v1 = sig_with_prefix(b"v1=");
        let not_hex = sig_with_last(b'g');
        let changed = sig_with_last(b'2');
        type Case<'a> = (&'a str, Option<&'a [u8]>, Option<&'a [u8]>, &'a [u8], i64, Result<(), SignatureError>);
        let table: Vec<Case<'_>> = vec![
            ("as sent", Some(ts), Some(sig), body, now, Ok(())),
            ("upper-case hex", Some(ts), Some(upper.as_bytes()), body, now, Ok(())),
            ("300 s late", Some(ts), Some(sig), body, now + 300, Ok(())),
            ("300 s early", Some(ts), Some(sig), body, now - 300, Ok(())),
            ("301 s late", Some(ts), Some(sig), body, now + 301, Err(SignatureError::Stale { skew: 301 })),
            ("301 s early", Some(ts), Some(sig), body, now - 301, Err(SignatureError::Stale { skew: -301 })),
            ("no timestamp", None, Some(sig), body, now, Err(SignatureError::MissingTimestamp)),
            ("no signature", Some(ts), None, body, now, Err(SignatureError::MissingSignature)),
            ("empty timestamp", Some(b""), Some(sig), body, now, Err(SignatureError::MalformedTimestamp)),
            ("signed timestamp", Some(b"+1531420618"), Some(sig), body, now, Err(SignatureError::MalformedTimestamp)),
            (
                "huge timestamp",
                Some(b"99999999999999999"),
                Some(sig),
                body,
                now,
                Err(SignatureError::MalformedTimestamp),
            ),
            ("v1 signature", Some(ts), Some(&v1), body, now, Err(SignatureError::MalformedSignature)),
            ("short signature", Some(ts), Some(&sig[..66]), body, now, Err(SignatureError::MalformedSignature)),
            ("not hex", Some(ts), Some(&not_hex), body, now, Err(SignatureError::MalformedSignature)),
            ("other body", Some(ts), Some(sig), b"token=x", now, Err(SignatureError::Mismatch)),
            ("other timestamp", Some(b"1531420619"), Some(sig), body, now, Err(SignatureError::Mismatch)),
            ("last digit changed", Some(ts), Some(&changed), body, now, Err(SignatureError::Mismatch)),
        ];
        for (name, ts, sig, body, now, expect) in table {
            assert_eq!(verifier.verify(ts, sig, body, now), expect, "{name}");
        }
    }

    #[test]
    fn every_tampered_body_byte_is_refused() {
        let verifier = Verifier::new(SLACK_SECRET);
        let now: i64 = 1531420618;
        let body = SLACK_BODY.as_bytes();
        for i in 0..body.len() {
            let mut tampered = body.to_vec();
            tampered[i] ^= 0x01;
            assert_eq!(
                verifier.verify(Some(SLACK_TS.as_bytes()), Some(SLACK_SIG.as_bytes()), &tampered, now),
                Err(SignatureError::Mismatch),
                "byte {i}"
            );
        }
        let wrong_secret = Verifier::new("8f742231b10e8888abcd99yyyzzz85a6");
        assert_eq!(
            wrong_secret.verify(Some(SLACK_TS.as_bytes()), Some(SLACK_SIG.as_bytes()), body, now),
            Err(SignatureError::Mismatch)
        );
    }

    fn sig_with_prefix(prefix: &[u8]) -> Vec<u8> {
        let mut v = prefix.to_vec();
        v.extend_from_slice(&SLACK_SIG.as_bytes()[3..]);
        v
    }

    fn sig_with_last(last: u8) -> Vec<u8> {
        let mut v = SLACK_SIG.as_bytes().to_vec();
        *v.last_mut().unwrap_or(&mut 0) = last;
        v
    }
}
