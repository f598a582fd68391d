//! Subscription tokens: the secret that proves a client owns a subscription.
//!
//! A token is 40 letters `A`–`Z` drawn from the operating system's CSPRNG (about 188 bits).
//! Random bytes are turned into letters by rejection sampling, so every letter is equally
//! likely. Only the SHA-256 of a token is kept ([`TokenHash`]); a fast hash is right for a
//! secret this long. Candidates are checked by hashing them and comparing the hashes in
//! constant time. Nothing that holds a token or its hash prints it in `Debug`.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Letters in a token.
pub const TOKEN_LEN: usize = 40;

/// A subscription token. It has no `Display`: code that puts the secret on the wire
/// says so with [`Token::expose`].
#[derive(Clone)]
pub struct Token(String);

/// The system random source failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the system random source failed: {0}")]
pub struct TokenError(pub String);

impl Token {
    /// Draws a new token from the OS CSPRNG.
    ///
    /// # Errors
    /// [`TokenError`] if the OS cannot supply random bytes.
    pub fn generate() -> Result<Token, TokenError> {
        let mut letters = String::with_capacity(TOKEN_LEN);
        // 26 * 9 = 234: bytes at or above it are dropped so that `byte % 26` is uniform.
        // 64 bytes give 40 letters with overwhelming probability; loop in case not.
        let mut bytes = [0u8; 64];
        while letters.len() < TOKEN_LEN {
            getrandom::fill(&mut bytes).map_err(|e| TokenError(e.to_string()))?;
            letters.extend(
                bytes.iter().filter(|&&b| b < 234).map(|&b| char::from(b'A' + b % 26)).take(TOKEN_LEN - letters.len()),
            );
        }
        Ok(Token(letters))
    }

    /// A token from its text, if it has the token shape (40 letters `A`–`Z`).
    pub fn parse(text: &str) -> Option<Token> {
        let shaped = text.len() == TOKEN_LEN && text.bytes().all(|b| b.is_ascii_uppercase());
        shaped.then(|| Token(text.to_string()))
    }

    /// The secret itself, for the one reply that hands it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash to store.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The SHA-256 of a token: what is stored and compared.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes a token's text.
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `candidate` is the token, compared in constant time.
    pub fn verify(&self, candidate: &str) -> bool {
        TokenHash::of(candidate).0.ct_eq(&self.0).into()
    }

    /// The hash as 64 lowercase hex digits, for the store.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A hash from 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<TokenHash> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(TokenHash(bytes))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

/// Where new tokens come from: the OS in production, a fixed sequence in tests.
pub trait TokenSource {
    /// A fresh token.
    ///
    /// # Errors
    /// [`TokenError`] if no token can be made.
    fn new_token(&mut self) -> Result<Token, TokenError>;
}

/// Tokens from the OS CSPRNG.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsTokens;

impl TokenSource for OsTokens {
    fn new_token(&mut self) -> Result<Token, TokenError> {
        Token::generate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_token_shape() {
        let token = Token::generate().expect("the OS has randomness");
        assert!(Token::parse(token.expose()).is_some(), "{}", token.expose());
        let other = Token::generate().expect("the OS has randomness");
        assert_ne!(token.expose(), other.expose());
    }

    #[test]
    fn every_letter_is_drawn() {
        // 100 tokens are 4000 letters; each letter is expected ~154 times, so a missing
        // letter would mean a broken mapping, not bad luck.
        let mut counts = [0usize; 26];
        for _ in 0..100 {
            for b in Token::generate().expect("randomness").expose().bytes() {
                counts[usize::from(b - b'A')] += 1;
            }
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    }

    #[test]
    fn parse_accepts_only_forty_capitals() {
        let good = "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMN";
        assert!(Token::parse(good).is_some());
        assert!(Token::parse(&good[1..]).is_none());
        assert!(Token::parse(&good.to_lowercase()).is_none());
        assert!(Token::parse(&format!("{}1", &good[1..])).is_none());
        assert!(Token::parse(&format!("{}É", &good[2..])).is_none());
    }

    #[test]
    fn hash_verifies_only_its_token() {
        let token = Token::parse("FNVUIPDZHQHNLYJPEHDETZRRDJRIQXXLNWPWBPSR").expect("shape");
        let hash = token.hash();
        assert!(hash.verify("FNVUIPDZHQHNLYJPEHDETZRRDJRIQXXLNWPWBPSR"));
        assert!(!hash.verify("FNVUIPDZHQHNLYJPEHDETZRRDJRIQXXLNWPWBPSS"));
        assert!(!hash.verify(""));
        let hex = hash.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(TokenHash::from_hex(&hex), Some(hash));
        assert_eq!(TokenHash::from_hex(&hex[1..]), None);
        assert_eq!(TokenHash::from_hex(&format!("{}g", &hex[1..])), None);
    }

    #[test]
    fn sha256_of_a_known_value() {
        // The SHA-256 of "abc" from FIPS 180-2, so the stored hash is the standard one.
        assert_eq!(TokenHash::of("abc").to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn debug_redacts() {
        let token = Token::parse("FNVUIPDZHQHNLYJPEHDETZRRDJRIQXXLNWPWBPSR").expect("shape");
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        assert_eq!(format!("{:?}", token.hash()), "TokenHash(<redacted>)");
    }
}
