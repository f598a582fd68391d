//! TLS for IRC connections: rustls on the aws-lc-rs provider, chosen explicitly here
//! (so this connector works whether or not the binary installed a process default),
//! trusting the system's roots, a PEM file (`tls_ca`, for self-signed test servers), or
//! anything (`tls_insecure`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::TlsSettings;

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
}

/// The client configuration for a connector.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let config = if settings.insecure {
        tracing::warn!("tls_insecure is set: server certificates are not checked.");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything { provider }))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match &settings.ca {
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
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    // A malformed system certificate is skipped; the others still count.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(TlsError::NoRoots);
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The server name to check the certificate against.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("'{host}' cannot be checked against a certificate: {e}"))
}

/// `tls_insecure`: accepts every certificate, still checks the handshake signatures.
#[derive(Debug)]
struct AcceptAnything {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = client_config(&TlsSettings { ca: Some(missing.clone()), insecure: false }).unwrap_err();
        assert!(err.to_string().contains("cannot read the certificates in tls_ca"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(&TlsSettings { ca: Some(empty), insecure: false }).unwrap_err();
        assert!(err.to_string().contains("holds no certificate"), "{err}");
        assert!(client_config(&TlsSettings { ca: None, insecure: true }).is_ok());
    }

    #[test]
    fn server_names() {
        assert!(server_name("irc.libera.chat").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("bad name").is_err());
    }
}
