//! The Ed25519 signing key (RFC 8463, `ed25519-sha256`) on ed25519-dalek.
//!
//! mail-auth signs through a [`SigningKey`]; its own Ed25519 key uses
//! ring, whose signature cost 25–29 µs on the benchmark machine against
//! 18–20 µs for ed25519-dalek (precomputed base-point tables): the
//! signature is most of what signing a 2 KB message costs (a quarter less
//! per signed message with dalek, docs/BENCHMARKS.md). Ed25519 signatures are deterministic (RFC 8032), so both give the
//! same bytes for the same key and input; a unit test checks that against
//! ring. RSA keys stay on ring.

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::Signer as _;
use mail_auth::common::crypto::{Algorithm, HashContext, HashImpl, Sha256, SigningKey};
use mail_auth::common::headers::Writable;

/// An Ed25519 private key that signs DKIM's header hash.
pub struct Ed25519Signing {
    key: ed25519_dalek::SigningKey,
}

impl Ed25519Signing {
    /// Reads a PKCS#8 document: v1 (seed only, as `openssl genpkey`
    /// writes it) or v2 (seed and public key, as ring writes it; a public
    /// key that does not belong to the seed is refused).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Ed25519Signing, String> {
        ed25519_dalek::SigningKey::from_pkcs8_der(der)
            .map(|key| Ed25519Signing { key })
            .map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))
    }

    /// The 32 raw bytes of the public key (the `p=` of RFC 8463's record).
    pub fn public_key(&self) -> Vec<u8> {
        self.key.verifying_key().to_bytes().to_vec()
    }
}

impl SigningKey for Ed25519Signing {
    type Hasher = Sha256;

    /// Signs the SHA-256 of the canonicalized header section, as RFC 8463
    /// section 3 says (the hash, not the data, is Ed25519's message).
    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        let mut hasher = <Sha256 as HashImpl>::hasher();
        input.write(&mut hasher);
        let digest = hasher.complete();
        Ok(self.key.sign(digest.as_ref()).to_bytes().to_vec())
    }

    fn algorithm(&self) -> Algorithm {
        Algorithm::Ed25519Sha256
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    #[test]
    fn signs_the_same_bytes_as_ring() {
        let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let ring_key = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let ours = Ed25519Signing::from_pkcs8_der(doc.as_ref()).unwrap();
        assert_eq!(ours.public_key(), ring_key.public_key().as_ref());
        for input in [&b""[..], b"from:a@example.com\r\n", &[0xffu8; 3000][..]] {
            let digest = ring::digest::digest(&ring::digest::SHA256, input);
            let theirs = ring_key.sign(digest.as_ref());
            assert_eq!(ours.sign(input).unwrap(), theirs.as_ref());
        }
    }

    #[test]
    fn reads_a_seed_only_key_as_openssl_writes_it() {
        // `openssl genpkey -algorithm ed25519 -outform DER`: PKCS#8 v1.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&[9u8; 32]);
        let key = Ed25519Signing::from_pkcs8_der(&der).unwrap();
        let ring_key = Ed25519KeyPair::from_seed_unchecked(&[9u8; 32]).unwrap();
        assert_eq!(key.public_key(), ring_key.public_key().as_ref());
    }

    #[test]
    fn refuses_a_public_key_of_another_seed() {
        let rng = ring::rand::SystemRandom::new();
        let a = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let b = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        // ring's v2 document ends with the public key: graft b's onto a.
        let mut mixed = a.as_ref().to_vec();
        let n = mixed.len();
        mixed[n - 32..].copy_from_slice(&b.as_ref()[n - 32..]);
        assert!(Ed25519Signing::from_pkcs8_der(&mixed).is_err());
        assert!(Ed25519Signing::from_pkcs8_der(b"not a key").is_err());
    }
}
