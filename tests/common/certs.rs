//! Throwaway certificates for TLS tests, made with rcgen: a test CA, server
//! certificates it signs, PEM files of both, and rustls configurations
//! (ring provider) that use them.
//!
//! ```ignore
//! let dir = tempfile::tempdir().unwrap();
//! let pki = certs::write_pki(dir.path(), &["mx.test", "localhost"]);
//! // pki.ca_file, pki.cert_file, pki.key_file are PEM files;
//! // pki.ca.client_config() trusts only the test CA;
//! // pki.server.server_config() serves the certificate.
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The crypto provider of every configuration made here.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority that exists only for the test.
pub struct TestCa {
    /// The self-signed CA certificate.
    pub cert: Certificate,
    key: KeyPair,
}

/// A new test CA named `ringmail test CA`.
pub fn test_ca() -> TestCa {
    let key = KeyPair::generate().expect("generate the CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "ringmail test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("self-sign the CA");
    TestCa { cert, key }
}

impl TestCa {
    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// The CA's public key as a DER subjectPublicKeyInfo (a `2 1 0` TLSA
    /// record's data), from rcgen.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.public_key_der()
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns that path
    /// (for `tls_ca_file` and the like).
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.pem()).expect("write ca.pem");
        path
    }

    /// A server certificate signed by this CA, valid for `names` (DNS
    /// names, or IP addresses such as `127.0.0.1`); the first name is also
    /// its common name.
    pub fn server_cert(&self, names: &[&str]) -> ServerCert {
        let key = KeyPair::generate().expect("generate the server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server parameters");
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign the server certificate");
        ServerCert { cert, key }
    }

    /// A client configuration trusting this CA only (not the system
    /// roots), as a strict client would.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der()).expect("add the test CA");
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// A server certificate with its private key.
pub struct ServerCert {
    /// The certificate.
    pub cert: Certificate,
    key: KeyPair,
}

/// A self-signed server certificate for `names` (no CA trusts it).
pub fn self_signed(names: &[&str]) -> ServerCert {
    let key = KeyPair::generate().expect("generate the key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .expect("parameters")
        .self_signed(&key)
        .expect("self-sign");
    ServerCert { cert, key }
}

impl ServerCert {
    /// The certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Writes `dir/<stem>.crt` (the certificate) and `dir/<stem>.key` (its
    /// key) and returns both paths.
    pub fn write_pem(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, self.cert_pem()).expect("write the certificate");
        std::fs::write(&key, self.key_pem()).expect("write the key");
        (cert, key)
    }

    /// A server configuration presenting this certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.der().clone()], key)
            .expect("server certificate and key");
        Arc::new(config)
    }
}

/// A test CA and a server certificate it signed, with their PEM files.
pub struct Pki {
    /// The CA.
    pub ca: TestCa,
    /// The server certificate.
    pub server: ServerCert,
    /// `dir/ca.pem`.
    pub ca_file: PathBuf,
    /// `dir/server.crt`.
    pub cert_file: PathBuf,
    /// `dir/server.key`.
    pub key_file: PathBuf,
}

/// Makes a CA and a server certificate for `names` and writes `ca.pem`,
/// `server.crt` and `server.key` into `dir`.
pub fn write_pki(dir: &Path, names: &[&str]) -> Pki {
    let ca = test_ca();
    let server = ca.server_cert(names);
    let ca_file = ca.write_pem(dir);
    let (cert_file, key_file) = server.write_pem(dir, "server");
    Pki {
        ca,
        server,
        ca_file,
        cert_file,
        key_file,
    }
}
