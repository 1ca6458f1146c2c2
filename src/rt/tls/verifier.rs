//! The one rustls server-certificate verifier behind every client
//! configuration that does not use rustls's own: a [`ChainCheck`] decides
//! on the presented chain (anything at `may`, TLSA records under DANE, a
//! name list at `verify`/`secure`), and the handshake signatures are
//! checked with the provider's algorithms as rustls's verifier would.
//!
//! rustls reports a refusal only as a bare certificate error, so the
//! verifier keeps the check's reason until the connection code asks for
//! it ([`CheckedVerifier::take_refusal`]).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::config::{register, Classifier};
use super::TlsLevel;

/// A decision on a server's certificate chain.
pub trait ChainCheck: fmt::Debug + Send + Sync {
    /// Why a chain was refused.
    type Refusal: fmt::Debug + Send;

    /// Accepts or refuses `end_entity` presented with `intermediates`.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Self::Refusal>;
}

/// A rustls verifier that asks `C` about the chain and remembers why it
/// refused one.
#[derive(Debug)]
pub struct CheckedVerifier<C: ChainCheck> {
    check: C,
    algorithms: WebPkiSupportedAlgorithms,
    refusal: Mutex<Option<C::Refusal>>,
}

impl<C: ChainCheck> CheckedVerifier<C> {
    /// The verifier of `check`, with `provider`'s signature algorithms.
    pub fn new(check: C, provider: &CryptoProvider) -> CheckedVerifier<C> {
        CheckedVerifier {
            check,
            algorithms: provider.signature_verification_algorithms,
            refusal: Mutex::new(None),
        }
    }

    /// Why the last chain was refused, if it was; forgotten once taken, so
    /// a later handshake (the same host's next address) that fails for
    /// another reason is not blamed on it.
    pub fn take_refusal(&self) -> Option<C::Refusal> {
        self.refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl<C: ChainCheck> ServerCertVerifier for CheckedVerifier<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check.check(end_entity, intermediates, now) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(refusal) => {
                *self.refusal.lock().unwrap_or_else(PoisonError::into_inner) = Some(refusal);
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client configuration for one connection whose chain `verifier`
/// alone decides on: sessions are not resumed (every handshake is checked
/// against this connection's rules), and a finished handshake is reported
/// [`super::Trust::Verified`], or `Trusted` when `name_authenticated` is
/// false (DANE at a host named by an unauthenticated MX RRset).
pub(super) fn one_connection_config(
    verifier: Arc<dyn ServerCertVerifier>,
    provider: Arc<CryptoProvider>,
    name_authenticated: bool,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    let config = Arc::new(config);
    register(
        &config,
        Classifier {
            level: TlsLevel::Verify,
            webpki: None,
            name_authenticated,
            by_host_name: false,
        },
    );
    Ok(config)
}
