//! The sink's TLS server configuration, from PEM certificate and key files.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;

use super::SinkError;

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3) for
/// [`super::SinkConfig::tls`]: `cert` holds the certificate chain (server
/// certificate first), `key` its private key (PKCS#8, PKCS#1 or SEC1), both
/// PEM. See [`crate::rt::tls::server_config`].
pub fn tls_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, SinkError> {
    crate::rt::tls::server_config(cert, key)
        .map_err(|(path, reason)| SinkError::Tls { path, reason })
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
