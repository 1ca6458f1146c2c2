//! DKIM private keys: reading a key file (PEM, PKCS#1 or PKCS#8, RSA or
//! Ed25519), refusing one that others may read, and the public key as the
//! DNS record publishes it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use mail_auth::common::crypto::{RsaKey, Sha256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use super::ed25519::Ed25519Signing;
use super::SignError;
use crate::config::DkimAlgorithm;

/// Smallest RSA modulus accepted for signing. RFC 8301 allows 1024 bits
/// and recommends 2048; ring signs with 2048 bits or more only, and Gmail
/// and Yahoo ask bulk senders for 2048.
pub const MIN_RSA_BITS: usize = 2048;

/// Largest RSA modulus accepted for signing.
pub const MAX_RSA_BITS: usize = 4096;

/// A private key ready to sign.
pub enum PrivateKey {
    /// RSA, with its modulus size in bits.
    Rsa(RsaKey<Sha256>, usize),
    /// Ed25519.
    Ed25519(Ed25519Signing),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrivateKey::Rsa(_, bits) => write!(f, "PrivateKey::Rsa({bits} bits)"),
            PrivateKey::Ed25519(_) => f.write_str("PrivateKey::Ed25519"),
        }
    }
}

impl PrivateKey {
    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> DkimAlgorithm {
        match self {
            PrivateKey::Rsa(..) => DkimAlgorithm::RsaSha256,
            PrivateKey::Ed25519(_) => DkimAlgorithm::Ed25519Sha256,
        }
    }

    /// The `p=` value of the key's DNS record: the base64 of the
    /// SubjectPublicKeyInfo for RSA (as `openssl rsa -pubout` writes it),
    /// of the 32 raw bytes for Ed25519 (RFC 8463).
    pub fn public_key_base64(&self) -> String {
        let raw = match self {
            PrivateKey::Rsa(k, _) => rsa_spki(&k.public_key()),
            PrivateKey::Ed25519(k) => k.public_key(),
        };
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    /// The TXT record to publish at `SELECTOR._domainkey.DOMAIN`.
    pub fn dns_record(&self) -> String {
        let k = match self {
            PrivateKey::Rsa(..) => "rsa",
            PrivateKey::Ed25519(_) => "ed25519",
        };
        format!("v=DKIM1; k={k}; p={}", self.public_key_base64())
    }

    /// Reads `path`: PEM (PKCS#1 or PKCS#8) holding an RSA or Ed25519 key.
    /// Refuses a file that its group may write or others may read, as
    /// OpenDKIM's `RequireSafeKeys` does.
    pub fn load(path: &Path) -> Result<PrivateKey, SignError> {
        let file = |reason: String| SignError::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| file(e.to_string()))?;
        let mode = meta.mode() & 0o777;
        if mode & 0o027 != 0 {
            return Err(SignError::LooseMode {
                path: path.to_path_buf(),
                mode,
            });
        }
        let pem = std::fs::read(path).map_err(|e| file(e.to_string()))?;
        PrivateKey::from_pem(&pem).map_err(file)
    }

    /// Parses PEM text (the first private key in it).
    pub fn from_pem(pem: &[u8]) -> Result<PrivateKey, String> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
            format!("no private key in PEM form ({e}); expected BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY")
        })?;
        match der {
            PrivateKeyDer::Pkcs1(_) => rsa_key(der),
            PrivateKeyDer::Pkcs8(p8) => {
                // An Ed25519 PKCS#8 (v1 from openssl, v2 from ring) or RSA.
                if let Ok(k) = Ed25519Signing::from_pkcs8_der(p8.secret_pkcs8_der()) {
                    return Ok(PrivateKey::Ed25519(k));
                }
                rsa_key(PrivateKeyDer::Pkcs8(p8))
            }
            PrivateKeyDer::Sec1(_) => {
                Err("an EC (SEC1) key: DKIM signs with RSA or Ed25519 only".into())
            }
            _ => Err("unsupported key format".into()),
        }
    }
}

fn rsa_key(der: PrivateKeyDer<'_>) -> Result<PrivateKey, String> {
    let key = RsaKey::<Sha256>::from_key_der(der)
        .map_err(|e| format!("not a usable RSA or Ed25519 key: {e}"))?;
    let bits = rsa_modulus_bits(&key.public_key()).unwrap_or(0);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "RSA key of {bits} bits: DKIM keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS}"
        ));
    }
    Ok(PrivateKey::Rsa(key, bits))
}

/// Where a configured key's file is and what it signs, for error messages.
#[derive(Clone, Debug)]
pub struct KeyOrigin {
    /// `d=`.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// The key file.
    pub path: PathBuf,
}

// --- DER, just enough for an RSA public key ---

/// One DER length.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo.
fn rsa_spki(rsa_public_key: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8];
    bits.extend_from_slice(rsa_public_key);
    let mut content = ALG.to_vec();
    content.extend(der(0x03, &bits));
    der(0x30, &content)
}

/// Reads one DER header at `at`: (tag, content start, content length).
fn der_header(buf: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let tag = *buf.get(at)?;
    let first = *buf.get(at + 1)?;
    if first < 0x80 {
        return Some((tag, at + 2, first as usize));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *buf.get(at + 2 + i)? as usize;
    }
    Some((tag, at + 2 + n, len))
}

/// The modulus size in bits of a PKCS#1 RSAPublicKey.
fn rsa_modulus_bits(rsa_public_key: &[u8]) -> Option<usize> {
    let (tag, start, _) = der_header(rsa_public_key, 0)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, m_start, m_len) = der_header(rsa_public_key, start)?;
    if tag != 0x02 {
        return None;
    }
    let modulus = rsa_public_key.get(m_start..m_start + m_len)?;
    let skip = modulus.iter().take_while(|&&b| b == 0).count();
    let modulus = &modulus[skip..];
    let first = *modulus.first()?;
    Some(modulus.len() * 8 - first.leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_are_short_or_long_form() {
        let mut v = Vec::new();
        der_len(5, &mut v);
        assert_eq!(v, [5]);
        v.clear();
        der_len(270, &mut v);
        assert_eq!(v, [0x82, 0x01, 0x0e]);
        assert_eq!(
            der_header(&[0x30, 0x82, 0x01, 0x0e], 0),
            Some((0x30, 4, 270))
        );
    }

    #[test]
    fn an_ed25519_key_gives_its_record() {
        let doc = mail_auth::common::crypto::Ed25519Key::generate_pkcs8().unwrap();
        let text = crate::sign::keygen::pem("PRIVATE KEY", &doc);
        let key = PrivateKey::from_pem(text.as_bytes()).unwrap();
        assert_eq!(key.algorithm(), DkimAlgorithm::Ed25519Sha256);
        let record = key.dns_record();
        assert!(record.starts_with("v=DKIM1; k=ed25519; p="), "{record}");
        let p = record.rsplit_once("p=").unwrap().1;
        let raw = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
        assert_eq!(raw.len(), 32);
    }

    #[test]
    fn an_openssl_ed25519_key_loads_with_its_public_key() {
        // `openssl genpkey -algorithm ed25519` (PKCS#8 v1, seed only; a
        // throwaway test key), and its public key from `openssl pkey
        // -pubout -outform DER | tail -c 32 | base64`.
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEIAFEzr1W+QUirc8h1zEGkH4/Dr0eO/qxdX6k0f+9dYwm\n\
                   -----END PRIVATE KEY-----\n";
        let key = PrivateKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(key.algorithm(), DkimAlgorithm::Ed25519Sha256);
        assert_eq!(
            key.public_key_base64(),
            "SVFxR1Lx3huurM60EhFVm8uHqUHI9Lm6RtICjiZCRss="
        );
    }

    #[test]
    fn garbage_and_ec_keys_are_refused_with_a_reason() {
        let e = PrivateKey::from_pem(b"hello").unwrap_err();
        assert!(e.contains("PEM"), "{e}");
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let e = PrivateKey::from_pem(ec.serialize_pem().as_bytes()).unwrap_err();
        assert!(e.contains("RSA or Ed25519"), "{e}");
    }

    #[test]
    fn loose_permissions_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let doc = mail_auth::common::crypto::Ed25519Key::generate_pkcs8().unwrap();
        std::fs::write(&path, crate::sign::keygen::pem("PRIVATE KEY", &doc)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = PrivateKey::load(&path).unwrap_err();
        assert!(matches!(e, SignError::LooseMode { mode: 0o644, .. }), "{e}");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(PrivateKey::load(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(PrivateKey::load(&path).is_ok(), "group-readable is allowed");
    }
}
