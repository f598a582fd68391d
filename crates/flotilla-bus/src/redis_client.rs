//! The one way Flotilla opens a Redis client, for every component that talks to Redis
//! (the dispatcher's delivery into `redis.url`, the Redis bus backend at `bus.url`):
//! [`client`] takes the URL and, for TLS, the CA file to trust.
//!
//! `redis://` and `unix://` are plain. `rediss://` is TLS through rustls on the
//! process's crypto provider (aws-lc-rs, which the binary installs), and always checks
//! the server's certificate and host name: against the system's roots, or against the
//! PEM file `ca` alone when one is given (a private CA, a self-signed server). redis-rs's
//! `rediss://…/#insecure` (no check at all) is refused rather than silently ignored.
//!
//! [`client`] reads the URL and the CA file without connecting, so `flotilla check`
//! reports either mistake. A certificate the server presents is only seen on
//! connecting; [`certificate_problem`] tells such a failure (retrying cannot help) from a
//! Redis that is down (retrying will).

use std::path::Path;

use flotilla_core::redact::redact_url;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a Redis client could not be set up. Every URL in a message is redacted.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("'{url}' is not a Redis URL: {detail}")]
    Url { url: String, detail: String },
    #[error(
        "'{url}' asks for TLS without checking the server's certificate (#insecure), which is not supported: give the CA that signed the server's certificate as tls_ca instead"
    )]
    Insecure { url: String },
    #[error("a CA file means nothing for '{url}', which is not a TLS URL (rediss://)")]
    CaWithoutTls { url: String },
    #[error("cannot read the CA certificates in {path}: {detail}")]
    CaFile { path: String, detail: String },
    #[error("the CA file {path} holds no PEM certificate")]
    EmptyCa { path: String },
}

impl RedisSetupError {
    /// Whether the CA file (not the URL) is what is wrong, so a configuration error can
    /// point at the right key.
    pub fn is_about_ca(&self) -> bool {
        matches!(
            self,
            RedisSetupError::CaWithoutTls { .. } | RedisSetupError::CaFile { .. } | RedisSetupError::EmptyCa { .. }
        )
    }
}

/// A client for `url` (`redis://`, `rediss://` or `unix://`), trusting only the PEM
/// certificates in `ca` (for `rediss://`) when it is given. Does not connect.
///
/// # Errors
/// The URL is not one redis-rs reads, asks for `#insecure`, `ca` is given for a URL
/// without TLS, or `ca` cannot be read or holds no certificate.
pub fn client(url: &str, ca: Option<&Path>) -> Result<redis::Client, RedisSetupError> {
    let shown = || redact_url(url);
    let info = redis::IntoConnectionInfo::into_connection_info(url)
        .map_err(|e| RedisSetupError::Url { url: shown(), detail: e.to_string() })?;
    let tls = match info.addr() {
        redis::ConnectionAddr::TcpTls { insecure: true, .. } => return Err(RedisSetupError::Insecure { url: shown() }),
        redis::ConnectionAddr::TcpTls { .. } => true,
        _ => false,
    };
    let Some(ca) = ca else {
        return redis::Client::open(info).map_err(|e| RedisSetupError::Url { url: shown(), detail: e.to_string() });
    };
    if !tls {
        return Err(RedisSetupError::CaWithoutTls { url: shown() });
    }
    let path = ca.display().to_string();
    let pem = std::fs::read(ca).map_err(|e| RedisSetupError::CaFile { path: path.clone(), detail: e.to_string() })?;
    // redis-rs skips what is not PEM without a word; an empty trust store would then
    // refuse every server with an error that never names the file.
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RedisSetupError::CaFile { path: path.clone(), detail: e.to_string() })?;
    if certificates.is_empty() {
        return Err(RedisSetupError::EmptyCa { path });
    }
    let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
    redis::Client::build_with_tls(info, certificates)
        .map_err(|e| RedisSetupError::CaFile { path, detail: e.to_string() })
}

/// When `error` (from connecting) is the server's certificate failing the check, what
/// rustls said (`invalid peer certificate: UnknownIssuer`, …); `None` for anything else.
///
/// redis-rs keeps rustls's error inside an `io::Error` behind an `Arc`, out of reach of
/// `downcast_ref` (`io::Error::source` skips the error it wraps), so this reads rustls's
/// own wording: "invalid peer certificate" is how it shows
/// `rustls::Error::InvalidCertificate`, "peer sent no certificates" a server without one.
pub fn certificate_problem(error: &redis::RedisError) -> Option<String> {
    if error.kind() != redis::ErrorKind::Io {
        return None;
    }
    let text = error.to_string();
    (text.contains("invalid peer certificate") || text.contains("peer sent no certificates")).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_tls_urls_open_and_mistakes_say_what_is_wrong() {
        assert!(client("redis://127.0.0.1:6379/0", None).is_ok());
        assert!(client("rediss://127.0.0.1:6380/0", None).is_ok());
        assert!(client("unix:///tmp/redis.sock", None).is_ok());

        let insecure = client("rediss://:secret@127.0.0.1:6380/0#insecure", None).unwrap_err().to_string();
        assert!(insecure.contains("#insecure") && insecure.contains("tls_ca"), "{insecure}");
        assert!(!insecure.contains("secret"), "{insecure}");

        let plain = client("redis://:secret@127.0.0.1:6379/0", Some(Path::new("/nonexistent.pem"))).unwrap_err();
        assert!(matches!(plain, RedisSetupError::CaWithoutTls { .. }), "{plain}");
        assert!(!plain.to_string().contains("secret"), "{plain}");

        let missing = client("rediss://127.0.0.1:6380/0", Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/ca.pem"), "{missing}");

        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        let empty = client("rediss://127.0.0.1:6380/0", Some(&not_pem)).unwrap_err();
        assert!(matches!(empty, RedisSetupError::EmptyCa { .. }), "{empty}");
        assert!(empty.to_string().contains("ca.pem"), "{empty}");

        let url = client("http://:secret@127.0.0.1/", None).unwrap_err().to_string();
        assert!(url.contains("not a Redis URL") && !url.contains("secret"), "{url}");
    }
}
