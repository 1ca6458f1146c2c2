//! The sink's TLS server configuration, from PEM certificate and key files.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::SinkError;

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3) for
/// [`super::SinkConfig::tls`]: `cert` holds the certificate chain (server
/// certificate first), `key` its private key (PKCS#8, PKCS#1 or SEC1), both
/// PEM.
pub fn tls_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, SinkError> {
    let bad = |path: &Path, reason: String| SinkError::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(cert).map_err(|e| bad(cert, e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no PEM certificate in it".into()));
    }
    let pem = std::fs::read(key).map_err(|e| bad(key, e.to_string()))?;
    let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => bad(key, "no PEM private key in it".into()),
        e => bad(key, e.to_string()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| bad(key, e.to_string()))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_pem_files_and_names_the_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        tls_server_config(&cert_file, &key_file).unwrap();

        let missing = dir.path().join("missing.pem");
        let e = tls_server_config(&missing, &key_file).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "cannot load TLS certificate or key {}: ",
                missing.display()
            )),
            "{e}"
        );
        assert!(!e.is_transient());
        let e = tls_server_config(&key_file, &key_file).unwrap_err();
        assert!(e.to_string().ends_with("no PEM certificate in it"), "{e}");
        let e = tls_server_config(&cert_file, &cert_file).unwrap_err();
        assert!(
            e.to_string().ends_with("c.pem: no PEM private key in it"),
            "{e}"
        );
    }
}
