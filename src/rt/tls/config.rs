//! Client configurations for Postfix's `smtp_tls_security_level`, the
//! system roots, the verifier of levels `may` and `encrypt`, and the trust
//! classification of a finished handshake.
//!
//! At `may` and `encrypt` no certificate problem stops the handshake (the
//! handshake signatures are still checked with the provider's algorithms);
//! after it, the peer's chain is verified against the roots (the system's
//! plus the CA file) and the name, only to report [`Trust`]. At `verify`
//! rustls's own webpki verifier refuses anything less than
//! [`Trust::Verified`].

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::verifier::{ChainCheck, CheckedVerifier};
use super::{TlsError, Trust};

/// Postfix's `smtp_tls_security_level`: how much TLS a delivery needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsLevel {
    /// Never use TLS.
    None,
    /// Opportunistic: STARTTLS when offered, any certificate; plaintext
    /// when not offered.
    #[default]
    May,
    /// Mandatory TLS, any certificate: no plaintext delivery.
    Encrypt,
    /// Mandatory TLS with a certificate that verifies (chain and name).
    Verify,
}

impl TlsLevel {
    /// The configuration word: `none`, `may`, `encrypt`, `verify`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsLevel::None => "none",
            TlsLevel::May => "may",
            TlsLevel::Encrypt => "encrypt",
            TlsLevel::Verify => "verify",
        }
    }

    /// True for `encrypt` and `verify`: without TLS, mail must not be sent
    /// (a server without STARTTLS or a failed handshake defers).
    pub fn requires_tls(self) -> bool {
        matches!(self, TlsLevel::Encrypt | TlsLevel::Verify)
    }

    /// True unless `none`: STARTTLS is tried when the server offers it.
    pub fn uses_tls(self) -> bool {
        self != TlsLevel::None
    }
}

impl FromStr for TlsLevel {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        match s {
            "none" => Ok(TlsLevel::None),
            "may" => Ok(TlsLevel::May),
            "encrypt" => Ok(TlsLevel::Encrypt),
            "verify" => Ok(TlsLevel::Verify),
            other => Err(TlsError::BadLevel(other.to_string())),
        }
    }
}

impl fmt::Display for TlsLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(super) const NO_ROOTS: &str =
    "security level verify needs trusted roots, and neither the system nor a CA file gives any";

/// The client configuration for `level`, trusting the system roots (loaded
/// once per process; when they cannot be loaded, a warning is logged and
/// only `ca_file` is used) plus the PEM certificates in `ca_file`.
///
/// `None`, `May` and `Encrypt` get the same configuration: no certificate
/// problem stops the handshake, and [`crate::rt::Conn::start_tls`] reports
/// the [`Trust`]. `Verify` refuses servers whose chain or name does not
/// verify; it fails here when there is no trust anchor at all.
pub fn client_config(
    level: TlsLevel,
    ca_file: Option<&Path>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = trust_anchors(ca_file)?;
    let webpki = if roots.is_empty() {
        None
    } else {
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Some(v)
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let config = match (level, &webpki) {
        (TlsLevel::Verify, Some(v)) => builder
            .with_webpki_verifier(v.clone())
            .with_no_client_auth(),
        (TlsLevel::Verify, None) => return Err(TlsError::Config(NO_ROOTS.into())),
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CheckedVerifier::new(
                AnyCertificate,
                &provider,
            )))
            .with_no_client_auth(),
    };
    let config = Arc::new(config);
    register(
        &config,
        Classifier {
            level,
            webpki,
            name_authenticated: true,
            by_host_name: true,
        },
    );
    Ok(config)
}

/// The trust anchors of levels `verify` and `secure`: the system's plus
/// the PEM certificates of `ca_file`.
pub(super) fn trust_anchors(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = system_roots().clone();
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| TlsError::BadCaFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(roots)
}

/// The system's trust anchors, loaded at the first call. Unreadable or
/// unparsable ones are skipped with a warning.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(target: "smtp", "cannot load system trust anchors: {e}");
        }
        let mut roots = RootCertStore::empty();
        let (_, ignored) = roots.add_parsable_certificates(found.certs);
        if ignored > 0 {
            tracing::warn!(target: "smtp", "ignored {ignored} unparsable system trust anchors");
        }
        if roots.is_empty() {
            tracing::warn!(target: "smtp", "no system trust anchors found; only a CA file is trusted");
        }
        roots
    })
}

/// The certificates of a PEM file; at least one.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::CaFile {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCaFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::BadCaFile {
            path: path.to_path_buf(),
            reason: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

/// The chain check of levels `may` and `encrypt`: any certificate (the
/// handshake signatures made with its key are still checked); the trust
/// is classified after the handshake (see `trust_of`).
#[derive(Debug)]
struct AnyCertificate;

impl ChainCheck for AnyCertificate {
    type Refusal = std::convert::Infallible;

    fn check(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<(), Self::Refusal> {
        Ok(())
    }
}

/// How to classify the peers of one configuration.
pub(super) struct Classifier {
    /// At `Verify` every finished handshake is `Verified`.
    pub(super) level: TlsLevel,
    /// The verifier that tells `Trusted` from `Untrusted` at other levels.
    pub(super) webpki: Option<Arc<WebPkiServerVerifier>>,
    /// False when the name verified at `Verify` is itself unauthenticated
    /// (DANE at a host of an unsigned MX RRset): `Trusted` then.
    pub(super) name_authenticated: bool,
    /// At `Verify`: the chain was verified for the name of the host
    /// connected to (rustls's webpki verifier); false where DANE or a
    /// name list decided, which may have checked other names or none.
    pub(super) by_host_name: bool,
}

/// The classifiers of the configurations made by [`client_config`],
/// looked up by the configuration's address. rustls gives no way back
/// from a `ClientConfig` to its verifier, and the trust must be known per
/// connection (also for resumed sessions, where no verifier runs), so the
/// finished handshake's certificates are classified again here.
type Registry = Vec<(Weak<ClientConfig>, Arc<Classifier>)>;

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static REGISTRY: Mutex<Registry> = Mutex::new(Vec::new());
    // Every update is a single push or retain: a panic elsewhere cannot
    // leave it half done.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Remembers how to classify the handshakes made with `config`.
pub(super) fn register(config: &Arc<ClientConfig>, classifier: Classifier) {
    let mut r = registry();
    r.retain(|(weak, _)| weak.strong_count() > 0);
    r.push((Arc::downgrade(config), Arc::new(classifier)));
}

/// The trust of a finished handshake made with `config` to `name`, whose
/// server presented `chain` (end entity first), and whether a `Verified`
/// certificate was verified for `name` itself (see `TlsInfo`).
pub(super) fn trust_of(
    config: &Arc<ClientConfig>,
    name: &ServerName<'_>,
    chain: Option<&[CertificateDer<'static>]>,
) -> (Trust, bool) {
    let classifier = registry()
        .iter()
        .find(|(weak, _)| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(config)))
        .map(|(_, c)| Arc::clone(c));
    let Some(classifier) = classifier else {
        // A configuration not made by `client_config`: nothing is known.
        return (Trust::Untrusted, false);
    };
    if classifier.level == TlsLevel::Verify {
        // rustls's webpki verifier (or DANE's, or a name list's) accepted
        // the chain.
        return if classifier.name_authenticated {
            (Trust::Verified, classifier.by_host_name)
        } else {
            (Trust::Trusted, false)
        };
    }
    let (Some(webpki), Some([end_entity, intermediates @ ..])) = (&classifier.webpki, chain) else {
        return (Trust::Untrusted, false);
    };
    let trust =
        match webpki.verify_server_cert(end_entity, intermediates, name, &[], UnixTime::now()) {
            Ok(_) => Trust::Verified,
            // webpki checks the name only once the chain verified.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Trust::Trusted,
            Err(_) => Trust::Untrusted,
        };
    (trust, trust == Trust::Verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_print() {
        for word in ["none", "may", "encrypt", "verify"] {
            let level: TlsLevel = word.parse().unwrap();
            assert_eq!(level.to_string(), word);
        }
        let e = "secure".parse::<TlsLevel>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown TLS security level \"secure\" (expected none, may, encrypt or verify)"
        );
        assert!(!e.is_transient());
        assert!(TlsLevel::Verify.requires_tls() && TlsLevel::Encrypt.requires_tls());
        assert!(!TlsLevel::May.requires_tls() && TlsLevel::May.uses_tls());
        assert!(!TlsLevel::None.uses_tls());
    }

    #[test]
    fn ca_file_errors_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = client_config(TlsLevel::Verify, Some(&missing)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot read CA file {}: ", missing.display())),
            "{e}"
        );
        assert!(!e.is_transient());
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(TlsLevel::May, Some(&empty)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot read CA file {}: no PEM certificate in it",
                empty.display()
            )
        );
    }

    #[test]
    fn configs_are_registered_and_forgotten() {
        let a = client_config(TlsLevel::May, None).unwrap();
        let b = client_config(TlsLevel::Verify, None);
        let name = ServerName::try_from("mx.test").unwrap();
        assert_eq!(trust_of(&a, &name, None), (Trust::Untrusted, false));
        if let Ok(b) = b {
            assert_eq!(trust_of(&b, &name, None), (Trust::Verified, true));
        }
        let foreign = Arc::new((*a).clone());
        assert_eq!(trust_of(&foreign, &name, None), (Trust::Untrusted, false));
    }
}
