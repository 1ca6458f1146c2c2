//! DANE (RFC 6698, RFC 7672) on the client side: TLSA records, which of
//! them SMTP can use, matching a certificate against them, and the rustls
//! verifier that accepts a server only when its chain matches.
//!
//! What SMTP uses (RFC 7672 section 3.1):
//! - **DANE-EE(3)**: the server's own certificate (selector 0) or public
//!   key (selector 1) matches the record, exactly (matching type 0) or by
//!   SHA-256 (1) or SHA-512 (2) digest. Neither the name nor the expiry
//!   date of the certificate is checked (section 3.1.1).
//! - **DANE-TA(2)**: a certificate of the presented chain (or, for
//!   `2 0 0`, the certificate in the record) matches; it becomes the only
//!   trust anchor, and the chain must verify up to it with webpki, for the
//!   MX host name (section 3.1.2). For `2 1 0` the record holds the
//!   anchor's public key itself, so the server may leave the anchor's
//!   certificate out of its chain (RFC 7671 section 5.2.2): the key becomes
//!   an anchor named after the issuer of a presented certificate, and the
//!   chain must verify up to it in the same way.
//! - PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (section 3.1.3), as
//!   are unknown selectors and matching types and digests of the wrong
//!   length.
//!
//! The handshake signatures are checked with the provider's algorithms
//! whatever the records say, as in [`super::client_config`]'s verifiers.

use std::fmt;
use std::sync::Arc;

use ring::digest;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, Der, ServerName, TrustAnchor, UnixTime};

use super::verifier::{one_connection_config, ChainCheck, CheckedVerifier};

/// Why a TLSA record is unusable or a certificate could not be matched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaneError {
    /// The certificate is not DER the walk understands (no
    /// subjectPublicKeyInfo could be found in it).
    #[error("malformed certificate: {0}")]
    BadCertificate(&'static str),
    /// No usable record matched the presented chain.
    #[error("DANE: no TLSA record for {base} matches the server certificate chain ({records})")]
    NoMatch {
        /// The TLSA base domain (the MX host).
        base: String,
        /// The usable records, as `usage selector matching digest…`.
        records: String,
    },
    /// A DANE-TA record matched a certificate of the chain, but the chain
    /// does not verify up to it (or not for the host name).
    #[error(
        "DANE: TLSA trust anchor for {base} matched, but the chain does not verify to it: {detail}"
    )]
    ChainInvalid {
        /// The TLSA base domain.
        base: String,
        /// webpki's reason.
        detail: String,
    },
    /// The verifier could not be built.
    #[error("DANE: cannot build the TLS configuration: {0}")]
    Config(String),
}

impl DaneError {
    /// Always true: a certificate that does not match defers (the server
    /// or its TLSA records may be fixed); DANE never bounces mail.
    pub fn is_transient(&self) -> bool {
        true
    }
}

/// One TLSA record: certificate usage, selector, matching type and the
/// association data.
#[derive(Clone, PartialEq, Eq)]
pub struct Tlsa {
    /// 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
    pub usage: u8,
    /// 0 the full certificate, 1 its subjectPublicKeyInfo.
    pub selector: u8,
    /// 0 exact, 1 SHA-256, 2 SHA-512.
    pub matching: u8,
    /// The certificate association data.
    pub data: Vec<u8>,
}

/// DANE-TA(2).
pub const USAGE_DANE_TA: u8 = 2;
/// DANE-EE(3).
pub const USAGE_DANE_EE: u8 = 3;

impl Tlsa {
    /// True when SMTP can use the record (RFC 7672 section 3.1): usage
    /// DANE-TA or DANE-EE, selector 0 or 1, matching type 0, 1 or 2 with
    /// data of the digest's length (any non-empty data for type 0).
    pub fn is_usable(&self) -> bool {
        let usage = matches!(self.usage, USAGE_DANE_TA | USAGE_DANE_EE);
        let selector = matches!(self.selector, 0 | 1);
        let data = match self.matching {
            0 => !self.data.is_empty(),
            1 => self.data.len() == 32,
            2 => self.data.len() == 64,
            _ => false,
        };
        usage && selector && data
    }

    /// True when `cert` (DER) matches the record's selector, matching
    /// type and data. The usage is not looked at. A certificate whose
    /// public key cannot be found matches no selector-1 record.
    pub fn matches(&self, cert: &[u8]) -> bool {
        let selected = match self.selector {
            0 => cert,
            1 => match spki(cert) {
                Ok(s) => s,
                Err(_) => return false,
            },
            _ => return false,
        };
        match self.matching {
            0 => selected == self.data.as_slice(),
            1 => digest::digest(&digest::SHA256, selected).as_ref() == self.data.as_slice(),
            2 => digest::digest(&digest::SHA512, selected).as_ref() == self.data.as_slice(),
            _ => false,
        }
    }
}

impl fmt::Display for Tlsa {
    /// `3 1 1 0123abcd…`: the digest in hex, cut after 16 bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} ", self.usage, self.selector, self.matching)?;
        for b in self.data.iter().take(16) {
            write!(f, "{b:02x}")?;
        }
        if self.data.len() > 16 {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Tlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One DER element: its tag, its contents, the whole element, and what
/// follows it.
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
    whole: &'a [u8],
    rest: &'a [u8],
}

/// Reads one DER element (single-byte tags, definite lengths of at most
/// four length bytes, as X.509 certificates use).
fn tlv(input: &[u8]) -> Result<Tlv<'_>, DaneError> {
    let short = DaneError::BadCertificate("truncated DER");
    let (&tag, after_tag) = input.split_first().ok_or(short.clone())?;
    if tag & 0x1f == 0x1f {
        return Err(DaneError::BadCertificate("multi-byte DER tag"));
    }
    let (&first, mut after_len) = after_tag.split_first().ok_or(short.clone())?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(DaneError::BadCertificate("unsupported DER length"));
        }
        if after_len.len() < n {
            return Err(short);
        }
        let mut len = 0usize;
        for &b in &after_len[..n] {
            len = (len << 8) | usize::from(b);
        }
        after_len = &after_len[n..];
        len
    };
    if after_len.len() < len {
        return Err(short);
    }
    let header = input.len() - after_len.len();
    Ok(Tlv {
        tag,
        contents: &after_len[..len],
        whole: &input[..header + len],
        rest: &after_len[len..],
    })
}

/// Reads one element that must have tag `tag`.
fn expect<'a>(input: &'a [u8], tag: u8, what: &'static str) -> Result<Tlv<'a>, DaneError> {
    let t = tlv(input)?;
    if t.tag != tag {
        return Err(DaneError::BadCertificate(what));
    }
    Ok(t)
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;

/// The fields of an X.509 certificate's tbsCertificate from its signature
/// algorithm on (RFC 5280 section 4.1): Certificate → tbsCertificate →
/// (version), serialNumber, then what is returned.
fn after_serial(cert: &[u8]) -> Result<&[u8], DaneError> {
    let certificate = expect(cert, SEQUENCE, "not a certificate")?;
    let tbs = expect(certificate.contents, SEQUENCE, "no tbsCertificate")?;
    let mut rest = tbs.contents;
    let first = tlv(rest)?;
    if first.tag == VERSION {
        rest = first.rest;
    }
    Ok(expect(rest, INTEGER, "no serial number")?.rest)
}

/// The DER subjectPublicKeyInfo of an X.509 certificate: after the serial
/// number come signature, issuer, validity, subject, subjectPublicKeyInfo.
pub fn spki(cert: &[u8]) -> Result<&[u8], DaneError> {
    let mut rest = after_serial(cert)?;
    for what in [
        "no signature algorithm",
        "no issuer",
        "no validity",
        "no subject",
    ] {
        rest = expect(rest, SEQUENCE, what)?.rest;
    }
    Ok(expect(rest, SEQUENCE, "no subjectPublicKeyInfo")?.whole)
}

/// The contents of an X.509 certificate's issuer name (without its
/// SEQUENCE header, as webpki compares names).
fn issuer(cert: &[u8]) -> Result<&[u8], DaneError> {
    let rest = after_serial(cert)?;
    let rest = expect(rest, SEQUENCE, "no signature algorithm")?.rest;
    Ok(expect(rest, SEQUENCE, "no issuer")?.contents)
}

/// Which record made a chain acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaneMatch {
    /// A DANE-EE record matched the server's certificate.
    EndEntity,
    /// A DANE-TA record matched a trust anchor and the chain verified.
    TrustAnchor,
}

/// Checks a presented chain against usable records, without the
/// handshake: the logic of [`DaneVerifier`], for tests and callers that
/// have the chain at hand. `base` is the TLSA base domain (for messages),
/// `names` the names a DANE-TA chain may be issued for (the MX host first).
pub fn check_chain(
    records: &[Tlsa],
    base: &str,
    names: &[ServerName<'static>],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    provider: &Arc<CryptoProvider>,
) -> Result<DaneMatch, DaneError> {
    let usable: Vec<&Tlsa> = records.iter().filter(|r| r.is_usable()).collect();
    if usable
        .iter()
        .any(|r| r.usage == USAGE_DANE_EE && r.matches(end_entity))
    {
        return Ok(DaneMatch::EndEntity);
    }
    let mut anchor_failure = None;
    for r in usable.iter().filter(|r| r.usage == USAGE_DANE_TA) {
        let mut anchors: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .filter(|c| r.matches(c))
            .cloned()
            .collect();
        if r.selector == 0 && r.matching == 0 {
            // `2 0 0`: the record holds the anchor itself.
            anchors.push(CertificateDer::from(r.data.as_slice()));
        }
        let bare_key = r.selector == 1 && r.matching == 0 && anchors.is_empty();
        for anchor in anchors {
            let mut roots = RootCertStore::empty();
            if let Err(e) = roots.add(anchor.into_owned()) {
                anchor_failure = Some(format!("unusable trust anchor: {e}"));
                continue;
            }
            match chain_to(roots, names, end_entity, intermediates, now, provider) {
                Ok(()) => return Ok(DaneMatch::TrustAnchor),
                Err(detail) => anchor_failure = Some(detail),
            }
        }
        if bare_key {
            // `2 1 0` whose key signed no certificate the server sent: the
            // key is the anchor, named after the issuer of one of them.
            let Ok(key) = expect(&r.data, SEQUENCE, "not a public key") else {
                continue;
            };
            for roots in key_anchors(key.contents, end_entity, intermediates) {
                match chain_to(roots, names, end_entity, intermediates, now, provider) {
                    Ok(()) => return Ok(DaneMatch::TrustAnchor),
                    Err(detail) => anchor_failure = Some(detail),
                }
            }
        }
    }
    if let Some(detail) = anchor_failure {
        return Err(DaneError::ChainInvalid {
            base: base.to_string(),
            detail,
        });
    }
    Err(DaneError::NoMatch {
        base: base.to_string(),
        records: usable
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// One trust-anchor set per distinct issuer among the presented
/// certificates, each holding the public key `key` (the contents of a
/// subjectPublicKeyInfo) under that issuer's name: webpki then tries the
/// key on whichever certificate names it as issuer. Certificates whose
/// issuer cannot be read are skipped (the chain check fails on them
/// anyway).
fn key_anchors(
    key: &[u8],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Vec<RootCertStore> {
    let mut issuers: Vec<&[u8]> = Vec::new();
    for cert in std::iter::once(end_entity).chain(intermediates) {
        if let Ok(name) = issuer(cert) {
            if !issuers.contains(&name) {
                issuers.push(name);
            }
        }
    }
    issuers
        .into_iter()
        .map(|name| RootCertStore {
            roots: vec![TrustAnchor {
                subject: Der::from(name.to_vec()),
                subject_public_key_info: Der::from(key.to_vec()),
                name_constraints: None,
            }],
        })
        .collect()
}

/// Verifies `end_entity` through `intermediates` up to `roots` (the only
/// trust anchor) for one of `names`.
fn chain_to(
    roots: RootCertStore,
    names: &[ServerName<'static>],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    provider: &Arc<CryptoProvider>,
) -> Result<(), String> {
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| e.to_string())?;
    let mut last = "no name to check".to_string();
    for name in names {
        match webpki.verify_server_cert(end_entity, intermediates, name, &[], now) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// The chain check of one connection to a host with usable TLSA records.
#[derive(Debug)]
pub struct DaneCheck {
    records: Vec<Tlsa>,
    base: String,
    names: Vec<ServerName<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ChainCheck for DaneCheck {
    type Refusal = DaneError;

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), DaneError> {
        check_chain(
            &self.records,
            &self.base,
            &self.names,
            end_entity,
            intermediates,
            now,
            &self.provider,
        )
        .map(|_| ())
    }
}

/// The rustls verifier of one connection to a host with usable TLSA
/// records; `take_refusal` says why it refused a chain.
pub type DaneVerifier = CheckedVerifier<DaneCheck>;

/// A client configuration for one connection to a host with usable TLSA
/// `records` (unusable ones are ignored), and its verifier.
pub struct DaneConfig {
    /// The configuration to STARTTLS with: sessions are not resumed, so
    /// every handshake is verified; a finished handshake is reported
    /// [`super::Trust::Verified`] (Postfix logs DANE matches as
    /// `Verified TLS connection established`).
    pub config: Arc<ClientConfig>,
    /// Its verifier, to ask why a handshake was refused.
    pub verifier: Arc<DaneVerifier>,
}

/// Builds the configuration for `host` (the TLSA base domain, also the
/// first name a DANE-TA chain may name; the SNI sent is the caller's
/// server name) and `extra_names` (the next-hop domain, RFC 7672 section
/// 3.2.2). `mx_authenticated`: the MX RRset that named the host was
/// DNSSEC-authenticated, so a match is reported `Verified`; otherwise
/// `Trusted` (the name itself could have been forged).
pub fn dane_client_config(
    records: &[Tlsa],
    host: &str,
    extra_names: &[&str],
    mx_authenticated: bool,
) -> Result<DaneConfig, DaneError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let names = std::iter::once(host)
        .chain(extra_names.iter().copied())
        .filter_map(|n| ServerName::try_from(n.trim_end_matches('.').to_string()).ok())
        .collect();
    let check = DaneCheck {
        records: records.iter().filter(|r| r.is_usable()).cloned().collect(),
        base: host.to_string(),
        names,
        provider: Arc::clone(&provider),
    };
    let verifier = Arc::new(CheckedVerifier::new(check, &provider));
    // Only a matching chain finishes the handshake: Verified, or Trusted
    // when the host's name came from an unauthenticated MX RRset.
    let config = one_connection_config(
        Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>,
        provider,
        mx_authenticated,
    )
    .map_err(|e| DaneError::Config(e.to_string()))?;
    Ok(DaneConfig { config, verifier })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

    fn sha256(b: &[u8]) -> Vec<u8> {
        digest::digest(&digest::SHA256, b).as_ref().to_vec()
    }

    fn sha512(b: &[u8]) -> Vec<u8> {
        digest::digest(&digest::SHA512, b).as_ref().to_vec()
    }

    fn rec(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data,
        }
    }

    struct Chain {
        ca: CertificateDer<'static>,
        ca_spki: Vec<u8>,
        leaf: CertificateDer<'static>,
        leaf_spki: Vec<u8>,
    }

    /// The parameters of a CA certificate named `common_name`.
    fn ca_params(common_name: &str) -> CertificateParams {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, common_name);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        ca
    }

    fn chain(names: &[&str]) -> Chain {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = ca_params("dane TA");
        ca.key_usages.push(KeyUsagePurpose::CrlSign);
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        Chain {
            ca: ca.der().clone(),
            ca_spki: ca_key.public_key_der(),
            leaf: leaf.der().clone(),
            leaf_spki: key.public_key_der(),
        }
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn name(n: &str) -> ServerName<'static> {
        ServerName::try_from(n.to_string()).unwrap()
    }

    #[test]
    fn spki_is_found_in_certificates() {
        let c = chain(&["mx.test"]);
        assert_eq!(spki(&c.leaf).unwrap(), c.leaf_spki.as_slice());
        assert_eq!(spki(&c.ca).unwrap(), c.ca_spki.as_slice());
    }

    #[test]
    fn der_walk_refuses_garbage_without_panicking() {
        let c = chain(&["mx.test"]);
        // Every truncation and a flipped byte at every position: an error
        // or some slice inside the input, never a panic.
        for n in 0..c.leaf.len() {
            let _ = spki(&c.leaf[..n]);
        }
        for i in 0..c.leaf.len() {
            let mut bad = c.leaf.to_vec();
            bad[i] ^= 0xff;
            if let Ok(s) = spki(&bad) {
                assert!(s.len() <= bad.len());
            }
        }
        assert!(spki(&[]).is_err());
        assert!(spki(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(spki(&[0x30, 0x80, 0, 0]).is_err(), "indefinite length");
        assert!(spki(&[0x1f, 0x01, 0x00]).is_err());
        assert!(spki(&[0x30, 0x02, 0x02, 0x00]).is_err());
    }

    #[test]
    fn usability_follows_rfc_7672() {
        assert!(rec(3, 1, 1, vec![0; 32]).is_usable());
        assert!(rec(2, 0, 2, vec![0; 64]).is_usable());
        assert!(rec(3, 0, 0, vec![1]).is_usable());
        assert!(!rec(0, 1, 1, vec![0; 32]).is_usable(), "PKIX-TA");
        assert!(!rec(1, 1, 1, vec![0; 32]).is_usable(), "PKIX-EE");
        assert!(!rec(3, 2, 1, vec![0; 32]).is_usable(), "selector");
        assert!(!rec(3, 1, 3, vec![0; 32]).is_usable(), "matching");
        assert!(!rec(3, 1, 1, vec![0; 31]).is_usable(), "short digest");
        assert!(!rec(3, 1, 2, vec![0; 32]).is_usable(), "SHA-512 length");
        assert!(!rec(3, 0, 0, vec![]).is_usable());
    }

    #[test]
    fn matching_by_selector_and_type() {
        let c = chain(&["mx.test"]);
        for (r, want) in [
            (rec(3, 1, 1, sha256(&c.leaf_spki)), true),
            (rec(3, 1, 2, sha512(&c.leaf_spki)), true),
            (rec(3, 1, 0, c.leaf_spki.clone()), true),
            (rec(3, 0, 1, sha256(&c.leaf)), true),
            (rec(3, 0, 2, sha512(&c.leaf)), true),
            (rec(3, 0, 0, c.leaf.to_vec()), true),
            (rec(3, 1, 1, sha256(&c.leaf)), false),
            (rec(3, 0, 1, sha256(&c.leaf_spki)), false),
            (rec(3, 1, 1, sha256(&c.ca_spki)), false),
        ] {
            assert_eq!(r.matches(&c.leaf), want, "{r}");
        }
    }

    #[test]
    fn dane_ee_ignores_name_and_chain() {
        let c = chain(&["other.name"]);
        let now = UnixTime::now();
        let records = [rec(3, 1, 1, sha256(&c.leaf_spki))];
        let got = check_chain(
            &records,
            "mx.test",
            &[name("mx.test")],
            &c.leaf,
            &[],
            now,
            &provider(),
        );
        assert_eq!(got, Ok(DaneMatch::EndEntity));
        // Far in the future: the certificate has expired, DANE-EE does
        // not care (RFC 7672 section 3.1.1).
        let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(4_000_000_000));
        let got = check_chain(
            &records,
            "mx.test",
            &[name("mx.test")],
            &c.leaf,
            &[],
            later,
            &provider(),
        );
        assert_eq!(got, Ok(DaneMatch::EndEntity));
    }

    #[test]
    fn dane_ta_needs_the_chain_and_the_name() {
        let c = chain(&["mx.test"]);
        let now = UnixTime::now();
        let p = provider();
        let ta = [rec(2, 1, 1, sha256(&c.ca_spki))];
        let inter = [c.ca.clone()];
        let names = [name("mx.test")];
        assert_eq!(
            check_chain(&ta, "mx.test", &names, &c.leaf, &inter, now, &p),
            Ok(DaneMatch::TrustAnchor)
        );
        // The anchor is not in the chain: nothing to match.
        let e = check_chain(&ta, "mx.test", &names, &c.leaf, &[], now, &p).unwrap_err();
        assert!(matches!(e, DaneError::NoMatch { .. }), "{e}");
        // `2 0 0`: the record holds the anchor.
        let full = [rec(2, 0, 0, c.ca.to_vec())];
        assert_eq!(
            check_chain(&full, "mx.test", &names, &c.leaf, &[], now, &p),
            Ok(DaneMatch::TrustAnchor)
        );
        // The chain verifies, but not for this host.
        let other = [name("mx.other")];
        let e = check_chain(&ta, "mx.other", &other, &c.leaf, &inter, now, &p).unwrap_err();
        assert!(matches!(e, DaneError::ChainInvalid { .. }), "{e}");
        assert!(e.to_string().starts_with("DANE: "), "{e}");
        // The next-hop domain as a second name.
        let both = [name("mx.other"), name("mx.test")];
        assert_eq!(
            check_chain(&ta, "mx.other", &both, &c.leaf, &inter, now, &p),
            Ok(DaneMatch::TrustAnchor)
        );
        // A DANE-TA record never matches the end entity as DANE-EE.
        let leaf_as_ta = [rec(2, 1, 1, sha256(&c.leaf_spki))];
        assert!(check_chain(&leaf_as_ta, "mx.test", &names, &c.leaf, &inter, now, &p).is_err());
    }

    #[test]
    fn dane_ta_bare_key_needs_no_anchor_certificate() {
        let c = chain(&["mx.test"]);
        let (now, p) = (UnixTime::now(), provider());
        let names = [name("mx.test")];
        let key = [rec(2, 1, 0, c.ca_spki.clone())];
        // The server sends only its own certificate.
        assert_eq!(
            check_chain(&key, "mx.test", &names, &c.leaf, &[], now, &p),
            Ok(DaneMatch::TrustAnchor)
        );
        // Or the anchor's certificate too.
        assert_eq!(
            check_chain(
                &key,
                "mx.test",
                &names,
                &c.leaf,
                std::slice::from_ref(&c.ca),
                now,
                &p
            ),
            Ok(DaneMatch::TrustAnchor)
        );
        // Another CA of the same name: its key did not sign the leaf.
        let other = chain(&["mx.test"]);
        let wrong = [rec(2, 1, 0, other.ca_spki.clone())];
        let e = check_chain(&wrong, "mx.test", &names, &c.leaf, &[], now, &p).unwrap_err();
        assert!(matches!(e, DaneError::ChainInvalid { .. }), "{e}");
        // The right key, but the certificate is not for this host.
        let e =
            check_chain(&key, "mx.other", &[name("mx.other")], &c.leaf, &[], now, &p).unwrap_err();
        assert!(matches!(e, DaneError::ChainInvalid { .. }), "{e}");
        // The leaf's own key as DANE-TA: the leaf is not a CA.
        let leaf_key = [rec(2, 1, 0, c.leaf_spki.clone())];
        assert!(check_chain(&leaf_key, "mx.test", &names, &c.leaf, &[], now, &p).is_err());
        // Not a public key at all: no match, no panic.
        for junk in [
            vec![0x30, 0x03, 1, 2, 3],
            vec![0x04, 0x01, 0],
            vec![0xff; 40],
        ] {
            let r = [rec(2, 1, 0, junk)];
            assert!(check_chain(&r, "mx.test", &names, &c.leaf, &[], now, &p).is_err());
        }
    }

    #[test]
    fn dane_ta_bare_key_of_a_root_above_an_intermediate() {
        let root_key = KeyPair::generate().unwrap();
        let root = ca_params("dane root").self_signed(&root_key).unwrap();
        let mid_key = KeyPair::generate().unwrap();
        let mid = ca_params("dane intermediate")
            .signed_by(&mid_key, &root, &root_key)
            .unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["mx.test".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &mid, &mid_key)
            .unwrap();
        let (now, p) = (UnixTime::now(), provider());
        let names = [name("mx.test")];
        let key = [rec(2, 1, 0, root_key.public_key_der())];
        let leaf = leaf.der().clone();
        assert_eq!(
            check_chain(
                &key,
                "mx.test",
                &names,
                &leaf,
                &[mid.der().clone()],
                now,
                &p
            ),
            Ok(DaneMatch::TrustAnchor)
        );
        // Without the intermediate the path to the root's key is broken.
        assert!(check_chain(&key, "mx.test", &names, &leaf, &[], now, &p).is_err());
    }

    #[test]
    fn mismatch_names_the_records_and_unusable_ones_never_match() {
        let c = chain(&["mx.test"]);
        let p = provider();
        let records = [
            rec(3, 1, 1, vec![0xab; 32]),
            rec(1, 1, 1, sha256(&c.leaf_spki)),
        ];
        let e = check_chain(
            &records,
            "mx.test",
            &[name("mx.test")],
            &c.leaf,
            &[],
            UnixTime::now(),
            &p,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "DANE: no TLSA record for mx.test matches the server certificate chain \
             (3 1 1 abababababababababababababababab…)"
        );
        assert!(e.is_transient());
    }

    #[test]
    fn verifier_remembers_its_refusal() {
        let c = chain(&["mx.test"]);
        let dc = dane_client_config(&[rec(3, 1, 1, vec![0; 32])], "mx.test", &[], true).unwrap();
        let got =
            dc.verifier
                .verify_server_cert(&c.leaf, &[], &name("mx.test"), &[], UnixTime::now());
        assert!(got.is_err());
        assert!(matches!(
            dc.verifier.take_refusal(),
            Some(DaneError::NoMatch { .. })
        ));
        assert_eq!(dc.verifier.take_refusal(), None, "taken once");
        let ok = dane_client_config(&[rec(3, 1, 1, sha256(&c.leaf_spki))], "mx.test", &[], true)
            .unwrap();
        assert!(ok
            .verifier
            .verify_server_cert(&c.leaf, &[], &name("mx.test"), &[], UnixTime::now())
            .is_ok());
        assert_eq!(ok.verifier.take_refusal(), None);
    }
}
