//! SASL SCRAM-SHA-256 and SCRAM-SHA-1 (RFC 5802, RFC 7677), the client side, as pure
//! functions over the server's messages: no I/O, the client nonce handed in, so the
//! RFCs' own examples are the tests. HMAC, PBKDF2 and the digests come from aws-lc-rs,
//! the crypto library rustls already uses here (no second crypto implementation).
//!
//! Channel binding is not used (`n,,`): the connector checks the server's certificate
//! itself, and not every server offers `-PLUS`. The password is used as given
//! (SASLprep is the identity for the ASCII passwords servers generate; a password
//! with characters SASLprep would map may fail to log in, and says so).

use aws_lc_rs::{digest, hmac, pbkdf2};
use base64::Engine as _;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The hash a SCRAM mechanism uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    /// The SASL mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramHash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => hmac::HMAC_SHA256,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramHash::Sha1 => pbkdf2::PBKDF2_HMAC_SHA1,
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramHash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => &digest::SHA256,
        }
    }

    fn len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }
}

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("the server's SCRAM message is malformed: {0}")]
    Malformed(String),
    #[error("the server's nonce does not extend ours (a replay or a broken server)")]
    NonceMismatch,
    #[error("the server asks for {0} PBKDF2 iterations (accepted: 1 to 10,000,000)")]
    Iterations(u64),
    #[error("the server refused: {0}")]
    ServerError(String),
    #[error("the server's signature is wrong: it does not know the password (a man in the middle?)")]
    BadServerSignature,
}

/// A SCRAM exchange in progress (client side).
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    /// Set by `client_final`: what the server must sign.
    expected_server_signature: Option<Vec<u8>>,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient").field("hash", &self.hash).field("password", &"***").finish_non_exhaustive()
    }
}

/// Escapes a user name for SCRAM (`,` and `=`).
fn sasl_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    /// Starts an exchange for `user` with a fresh `client_nonce` (printable, no comma).
    pub fn new(hash: ScramHash, user: &str, password: &str, client_nonce: &str) -> ScramClient {
        let client_first_bare = format!("n={},r={client_nonce}", sasl_name(user));
        ScramClient {
            hash,
            password: password.to_string(),
            client_nonce: client_nonce.to_string(),
            client_first_bare,
            expected_server_signature: None,
        }
    }

    /// The first message (`n,,n=user,r=nonce`).
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Answers the server's first message with the client's proof.
    pub fn client_final(&mut self, server_first: &str) -> Result<String, ScramError> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                Some(("m", _)) => return Err(ScramError::Malformed("mandatory extension 'm' is not supported".into())),
                Some(("e", v)) => return Err(ScramError::ServerError(v.to_string())),
                _ => {}
            }
        }
        let nonce = nonce.ok_or_else(|| ScramError::Malformed("no nonce (r=)".into()))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = B64
            .decode(salt.ok_or_else(|| ScramError::Malformed("no salt (s=)".into()))?)
            .map_err(|e| ScramError::Malformed(format!("the salt is not base64: {e}")))?;
        let iterations: u64 = iterations
            .ok_or_else(|| ScramError::Malformed("no iteration count (i=)".into()))?
            .parse()
            .map_err(|_| ScramError::Malformed("the iteration count is not a number".into()))?;
        if iterations == 0 || iterations > 10_000_000 {
            return Err(ScramError::Iterations(iterations));
        }
        let mut salted = vec![0u8; self.hash.len()];
        let rounds = std::num::NonZeroU32::new(iterations as u32).ok_or(ScramError::Iterations(iterations))?;
        pbkdf2::derive(self.hash.pbkdf2(), rounds, &salt, self.password.as_bytes(), &mut salted);
        let salted_key = hmac::Key::new(self.hash.hmac(), &salted);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(self.hash.digest(), client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature =
            hmac::sign(&hmac::Key::new(self.hash.hmac(), stored_key.as_ref()), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.as_ref().iter().zip(client_signature.as_ref()).map(|(k, s)| k ^ s).collect();
        let server_key = hmac::sign(&salted_key, b"Server Key");
        let server_signature =
            hmac::sign(&hmac::Key::new(self.hash.hmac(), server_key.as_ref()), auth_message.as_bytes());
        self.expected_server_signature = Some(server_signature.as_ref().to_vec());
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server's final message (it proves the server knows the password).
    pub fn verify_server_final(&self, server_final: &str) -> Result<(), ScramError> {
        if let Some(error) = server_final.strip_prefix("e=") {
            return Err(ScramError::ServerError(error.to_string()));
        }
        let signature = server_final
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or_else(|| ScramError::Malformed("no verifier (v=)".into()))?;
        let signature =
            B64.decode(signature).map_err(|e| ScramError::Malformed(format!("the verifier is not base64: {e}")))?;
        let expected = self.expected_server_signature.as_deref().unwrap_or_default();
        // Constant time: the comparison must not tell an attacker how much matched.
        let same = signature.len() == expected.len()
            && signature.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same { Ok(()) } else { Err(ScramError::BadServerSignature) }
    }
}

/// The client nonce: 18 random bytes, base64 (no commas).
pub fn fresh_nonce() -> String {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).expect("the system's random source");
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        hash: ScramHash,
        nonce: &'static str,
        server_first: &'static str,
        client_final: &'static str,
        server_final: &'static str,
    }

    /// RFC 5802 §5 (SHA-1) and RFC 7677 §3 (SHA-256): user `user`, password `pencil`.
    const RFC_CASES: &[Case] = &[
        Case {
            hash: ScramHash::Sha1,
            nonce: "fyko+d2lbbFgONRv9qkxdawL",
            server_first: "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            client_final: "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            server_final: "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        },
        Case {
            hash: ScramHash::Sha256,
            nonce: "rOprNGfwEbeRWgbNEkqO",
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            client_final: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            server_final: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        },
    ];

    #[test]
    fn the_rfc_examples() {
        for case in RFC_CASES {
            let mut client = ScramClient::new(case.hash, "user", "pencil", case.nonce);
            assert_eq!(client.client_first(), format!("n,,n=user,r={}", case.nonce));
            assert_eq!(client.client_final(case.server_first).unwrap(), case.client_final, "{:?}", case.hash);
            client.verify_server_final(case.server_final).unwrap();
        }
    }

    #[test]
    fn what_the_server_gets_wrong_is_refused() {
        let case = &RFC_CASES[1];
        let checks: &[(&str, ScramError)] = &[
            ("r=someoneelse,s=QSXCR+Q6sek8bf92,i=4096", ScramError::NonceMismatch),
            ("r=rOprNGfwEbeRWgbNEkqO,s=QSXCR+Q6sek8bf92,i=4096", ScramError::NonceMismatch),
            ("s=QSXCR+Q6sek8bf92,i=4096", ScramError::Malformed("no nonce (r=)".into())),
            ("r=rOprNGfwEbeRWgbNEkqOx,s=QSXCR+Q6sek8bf92,i=0", ScramError::Iterations(0)),
            ("r=rOprNGfwEbeRWgbNEkqOx,s=QSXCR+Q6sek8bf92,i=99999999999", ScramError::Iterations(99_999_999_999)),
            ("e=invalid-proof", ScramError::ServerError("invalid-proof".into())),
        ];
        for (server_first, expect) in checks {
            let mut client = ScramClient::new(case.hash, "user", "pencil", case.nonce);
            assert_eq!(&client.client_final(server_first).unwrap_err(), expect, "{server_first}");
        }
        let mut client = ScramClient::new(case.hash, "user", "wrong", case.nonce);
        client.client_final(case.server_first).unwrap();
        assert_eq!(client.verify_server_final(case.server_final), Err(ScramError::BadServerSignature));
        assert_eq!(client.verify_server_final("e=other-error"), Err(ScramError::ServerError("other-error".into())));
    }

    #[test]
    fn names_are_escaped_and_the_password_is_not_shown() {
        let client = ScramClient::new(ScramHash::Sha1, "a,b=c", "secret", "n");
        assert_eq!(client.client_first(), "n,,n=a=2Cb=3Dc,r=n");
        assert!(!format!("{client:?}").contains("secret"));
        assert!(!fresh_nonce().contains(','));
    }
}
