//! TLS for XMPP connections: rustls on the aws-lc-rs provider, chosen explicitly here
//! (so the connector works whether or not the binary installed a process default),
//! trusting the system's roots or, with `tls_ca`, only the certificates of a PEM file
//! (a local or test server with its own CA).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificates in tls_ca {path}: {detail}")]
    CaFile { path: String, detail: String },
    #[error("tls_ca {0} holds no certificate")]
    EmptyCa(String),
    #[error("no trusted root certificates found on this system (set tls_ca)")]
    NoRoots,
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("'{0}' cannot be checked against a certificate")]
    ServerName(String),
}

/// The client configuration: roots from `ca`, or the system's.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let display = path.display().to_string();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<_, _>>())
                .map_err(|e| TlsError::CaFile { path: display.clone(), detail: e.to_string() })?;
            if certs.is_empty() {
                return Err(TlsError::EmptyCa(display));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| TlsError::CaFile { path: display.clone(), detail: e.to_string() })?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A malformed system certificate is skipped; the others still count.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(TlsError::NoRoots);
            }
        }
    }
    Ok(Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
}

/// The name the server's certificate must carry: the JID's domain (RFC 6120 §13.7.2.1),
/// not the host connected to.
pub fn server_name(domain: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(domain.to_string()).map_err(|_| TlsError::ServerName(domain.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let err = client_config(Some(&dir.path().join("missing.pem"))).unwrap_err();
        assert!(err.to_string().contains("cannot read the certificates in tls_ca"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(Some(&empty)).unwrap_err();
        assert!(err.to_string().contains("holds no certificate"), "{err}");
        assert!(server_name("localhost").is_ok());
        assert!(server_name("bad name").is_err());
    }
}
