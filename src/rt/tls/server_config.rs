//! The server side's TLS configuration, from PEM certificate and key files
//! (the bundled sink and the SMTP injection listener).

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3): `cert`
/// holds the certificate chain (server certificate first), `key` its
/// private key (PKCS#8, PKCS#1 or SEC1), both PEM. The error names the
/// file at fault and why.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, (PathBufError, String)> {
    let bad = |path: &Path, reason: String| (path.to_path_buf(), reason);
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

/// The file a [`server_config`] error is about.
pub type PathBufError = std::path::PathBuf;
