//! The configured keys as one signer: which keys sign a message (by its
//! `From:` domain), and signing the queue's wire form in place of the
//! message as it will be received (dot-stuffing undone without a copy).

use std::sync::Arc;

use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};

use super::ed25519::Ed25519Signing;
use super::key::PrivateKey;
use super::SignError;
use crate::config::{DkimAlgorithm, DkimKeyConfig};
use crate::mail::{header_addresses, split_address, split_message};

/// One configured key, ready to sign.
enum KeySigner {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Signing, Done>),
}

/// One `[[dkim]]` entry, loaded.
struct Entry {
    config: DkimKeyConfig,
    signer: KeySigner,
}

/// The signing keys of the configuration, loaded once (and again on
/// SIGHUP, as a new `Signers`).
#[derive(Default)]
pub struct Signers {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Signers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| format!("{}/{}", e.config.domain, e.config.selector)),
            )
            .finish()
    }
}

/// What [`Signers::sign`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Signed {
    /// The `DKIM-Signature:` fields to put in front of the message (CRLF
    /// line ends), empty when no key signs its `From:` domain.
    pub fields: Vec<u8>,
    /// `d=`/`s=` of each signature, for the log.
    pub keys: Vec<String>,
}

impl Signers {
    /// Loads every key of `configs`. A key that cannot be used (missing,
    /// unreadable by others only, wrong algorithm) stops the load: a
    /// configuration that says "sign" must not silently send unsigned.
    pub fn load(configs: &[DkimKeyConfig]) -> Result<Signers, SignError> {
        let mut entries = Vec::with_capacity(configs.len());
        for c in configs {
            let key = PrivateKey::load(&c.key_file)?;
            entries.push(Entry {
                config: c.clone(),
                signer: build(c, key)?,
            });
        }
        Ok(Signers { entries })
    }

    /// Signers from keys already in memory (tests, benchmarks).
    pub fn from_keys(keys: Vec<(DkimKeyConfig, PrivateKey)>) -> Result<Signers, SignError> {
        let mut entries = Vec::with_capacity(keys.len());
        for (c, key) in keys {
            entries.push(Entry {
                signer: build(&c, key)?,
                config: c,
            });
        }
        Ok(Signers { entries })
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The algorithms of the keys that sign mail from `from_domain`.
    pub fn algorithms_for(&self, from_domain: &str) -> Vec<DkimAlgorithm> {
        self.entries_for(from_domain)
            .map(|e| match e.signer {
                KeySigner::Rsa(_) => DkimAlgorithm::RsaSha256,
                KeySigner::Ed25519(_) => DkimAlgorithm::Ed25519Sha256,
            })
            .collect()
    }

    /// The entries for the most specific configured domain that signs
    /// `from_domain` (several for dual signing).
    fn entries_for<'a>(&'a self, from_domain: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let best = self
            .entries
            .iter()
            .filter(|e| e.config.signs_for(from_domain))
            .map(|e| e.config.domain.len())
            .max();
        self.entries
            .iter()
            .filter(move |e| Some(e.config.domain.len()) == best && e.config.signs_for(from_domain))
    }

    /// Signs `wire` (the queue's form: CRLF, dot-stuffed, no final dot)
    /// with every key for its `From:` domain. A message without a `From:`
    /// address, or whose domain no key signs, gets no signature.
    pub fn sign(&self, wire: &[u8]) -> Result<Signed, SignError> {
        if self.entries.is_empty() {
            return Ok(Signed::default());
        }
        let Some(domain) = from_domain(wire) else {
            return Ok(Signed::default());
        };
        let mut signed = Signed::default();
        let pieces = unstuffed(wire);
        for e in self.entries_for(&domain) {
            let sig = match &e.signer {
                KeySigner::Rsa(s) => sign_pieces(s, &pieces),
                KeySigner::Ed25519(s) => sign_pieces(s, &pieces),
            }
            .map_err(|err| SignError::Sign {
                domain: e.config.domain.clone(),
                selector: e.config.selector.clone(),
                reason: err.to_string(),
            })?;
            let start = signed.fields.len();
            sig.write_header(&mut signed.fields);
            no_fold_before_end(&mut signed.fields, start);
            signed
                .keys
                .push(format!("{}/{}", e.config.domain, e.config.selector));
        }
        Ok(signed)
    }

    /// `wire` with its signatures in front: the form to queue or send.
    pub fn sign_wire(&self, wire: Vec<u8>) -> Result<(Vec<u8>, Vec<String>), SignError> {
        let mut signed = self.sign(&wire)?;
        let keys = std::mem::take(&mut signed.keys);
        Ok((signed.prepend_to(wire), keys))
    }
}

impl Signed {
    /// `wire` with these signature fields in front (unchanged without any).
    pub fn prepend_to(self, wire: Vec<u8>) -> Vec<u8> {
        if self.fields.is_empty() {
            return wire;
        }
        let mut out = self.fields;
        out.reserve(wire.len());
        out.extend_from_slice(&wire);
        out
    }
}

/// Signs `pieces` as one message with mail-auth's streaming signer (the
/// header section is gathered, the body hashed as it comes).
fn sign_pieces<T: mail_auth::common::crypto::SigningKey>(
    signer: &DkimSigner<T, Done>,
    pieces: &[&[u8]],
) -> mail_auth::Result<mail_auth::dkim::Signature> {
    let mut stream = signer.sign_streaming();
    for p in pieces {
        stream.write(p);
    }
    stream.finish()
}

/// A shared handle to the current keys.
pub type SharedSigners = Arc<Signers>;

fn build(c: &DkimKeyConfig, key: PrivateKey) -> Result<KeySigner, SignError> {
    if let Some(want) = c.algorithm {
        if want != key.algorithm() {
            return Err(SignError::KeyFile {
                path: c.key_file.clone(),
                reason: format!(
                    "holds an {} key but algorithm = {:?} is configured",
                    key.algorithm().as_str(),
                    want.as_str()
                ),
            });
        }
    }
    let canon = |relaxed: bool| {
        if relaxed {
            Canonicalization::Relaxed
        } else {
            Canonicalization::Simple
        }
    };
    let ch = canon(c.canonicalization.header_relaxed());
    let cb = canon(c.canonicalization.body_relaxed());
    let headers = c.signed_header_list();
    Ok(match key {
        PrivateKey::Rsa(k, _) => KeySigner::Rsa(
            DkimSigner::from_key(k)
                .domain(c.domain.to_ascii_lowercase())
                .selector(c.selector.clone())
                .headers(headers)
                .header_canonicalization(ch)
                .body_canonicalization(cb)
                .expiration(c.expire),
        ),
        PrivateKey::Ed25519(k) => KeySigner::Ed25519(
            DkimSigner::from_key(k)
                .domain(c.domain.to_ascii_lowercase())
                .selector(c.selector.clone())
                .headers(headers)
                .header_canonicalization(ch)
                .body_canonicalization(cb)
                .expiration(c.expire),
        ),
    })
}

/// mail-auth may fold the field right before its final `;` when the `b=`
/// value fills the line. RFC 6376 deletes that white space with the value
/// when verifying, but some verifiers (dkimpy) keep it and fail: write the
/// `;` on the value's line instead.
fn no_fold_before_end(fields: &mut Vec<u8>, start: usize) {
    for fold in [&b"\r\n\t;\r\n"[..], &b"\r\n ;\r\n"[..]] {
        if fields[start..].ends_with(fold) {
            let cut = fields.len() - fold.len();
            fields.truncate(cut);
            fields.extend_from_slice(b";\r\n");
            return;
        }
    }
}

/// The `s=` and `d=` of the DKIM-Signature fields at the very top of
/// `wire` (those the signing stage put there), for the log.
pub fn added_signatures(wire: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = wire;
    while let Some(after) = rest.strip_prefix(b"DKIM-Signature:".as_slice()) {
        // The field ends at a line end not followed by folding white space.
        let mut end = 0;
        while let Some(nl) = memchr::memchr(b'\n', &after[end..]) {
            end += nl + 1;
            if !matches!(after.get(end), Some(b' ' | b'\t')) {
                break;
            }
        }
        if end == 0 {
            break;
        }
        let field = String::from_utf8_lossy(&after[..end]).replace(['\r', '\n', '\t', ' '], "");
        let tag = |name: &str| {
            field
                .split(';')
                .find_map(|t| t.strip_prefix(name))
                .unwrap_or("")
                .to_string()
        };
        out.push((tag("s="), tag("d=")));
        rest = &after[end..];
    }
    out
}

/// The domain (lower case) of the first `From:` address of `wire`.
pub fn from_domain(wire: &[u8]) -> Option<String> {
    let parts = split_message(wire).ok()?;
    let field = parts.fields.iter().find(|f| f.is("From"))?;
    let first = header_addresses(&field.value(), "")
        .ok()?
        .into_iter()
        .next()?;
    let (_, domain) = split_address(&first)?;
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// The message as the receiver will see it, as slices of `wire`: the
/// first dot of every line that begins with one (dot-stuffing) left out.
pub fn unstuffed(wire: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    // A first line that begins with a dot was stuffed too.
    let mut start = usize::from(wire.starts_with(b".."));
    for at in memchr::memmem::find_iter(wire, b"\r\n.") {
        // `at + 2` is the stuffed dot: the piece ends before it.
        pieces.push(&wire[start..at + 2]);
        start = at + 3;
    }
    pieces.push(&wire[start..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::keygen;

    fn config(domain: &str, selector: &str) -> DkimKeyConfig {
        toml::from_str(&format!(
            "domain = \"{domain}\"\nselector = \"{selector}\"\nkey_file = \"unused\"\n"
        ))
        .unwrap()
    }

    fn ed_key() -> PrivateKey {
        let pem = keygen::generate(DkimAlgorithm::Ed25519Sha256, 0).unwrap();
        PrivateKey::from_pem(pem.as_bytes()).unwrap()
    }

    #[test]
    fn unstuffing_drops_one_dot_per_stuffed_line() {
        let wire = b"Subject: x\r\n\r\n..hidden\r\nplain\r\n...\r\n";
        let joined: Vec<u8> = unstuffed(wire).concat();
        assert_eq!(joined, b"Subject: x\r\n\r\n.hidden\r\nplain\r\n..\r\n");
        assert_eq!(unstuffed(b"a\r\n").concat(), b"a\r\n");
        assert_eq!(unstuffed(b"..x\r\n").concat(), b".x\r\n");
    }

    #[test]
    fn no_fold_is_left_before_the_final_semicolon() {
        let mut f = b"X: y\r\nDKIM-Signature: v=1; b=abc\r\n\t;\r\n".to_vec();
        no_fold_before_end(&mut f, 6);
        assert_eq!(f, b"X: y\r\nDKIM-Signature: v=1; b=abc;\r\n");
        let mut g = b"DKIM-Signature: v=1; b=abc;\r\n".to_vec();
        no_fold_before_end(&mut g, 0);
        assert_eq!(g, b"DKIM-Signature: v=1; b=abc;\r\n");
    }

    #[test]
    fn the_signatures_added_are_found_for_the_log() {
        let signers = Signers::from_keys(vec![
            (config("example.com", "a"), ed_key()),
            (config("example.com", "b"), ed_key()),
        ])
        .unwrap();
        let (wire, _) = signers
            .sign_wire(
                b"From: x@example.com\r\nDKIM-Signature: v=1; s=old; d=x.example\r\n\r\nhi\r\n"
                    .to_vec(),
            )
            .unwrap();
        assert_eq!(
            added_signatures(&wire),
            vec![
                ("a".to_string(), "example.com".to_string()),
                ("b".to_string(), "example.com".to_string())
            ],
            "only the fields at the top, not one the message already had below From"
        );
        assert!(added_signatures(b"From: x\r\n\r\n").is_empty());
    }

    #[test]
    fn the_from_domain_is_read_from_the_header() {
        let wire = b"To: b@x.example\r\nFrom: \"Jane\" <jane@News.Example.COM>\r\n\r\nhi\r\n";
        assert_eq!(from_domain(wire).as_deref(), Some("news.example.com"));
        assert_eq!(from_domain(b"Subject: none\r\n\r\nx\r\n"), None);
    }

    #[test]
    fn dual_signing_uses_every_key_of_the_most_specific_domain() {
        let signers = Signers::from_keys(vec![
            (config("example.com", "a"), ed_key()),
            (config("example.com", "b"), ed_key()),
            (config("news.example.com", "n"), ed_key()),
        ])
        .unwrap();
        let wire = b"From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n".to_vec();
        let s = signers.sign(&wire).unwrap();
        assert_eq!(s.keys, vec!["example.com/a", "example.com/b"]);
        let text = String::from_utf8(s.fields.clone()).unwrap();
        assert_eq!(text.matches("DKIM-Signature:").count(), 2);
        assert!(text.contains("d=example.com"));
        assert!(text.contains("c=relaxed/relaxed"));
        assert!(text.ends_with("\r\n"));
        // Every line of the fields is CRLF-terminated, continuation lines
        // start with white space, none with a dot.
        for line in text.split_terminator("\r\n").skip(1) {
            assert!(line.starts_with([' ', '\t']) || line.starts_with("DKIM-Signature:"));
        }
        let s = signers
            .sign(b"From: a@news.example.com\r\n\r\nx\r\n")
            .unwrap();
        assert_eq!(s.keys, vec!["news.example.com/n"]);
        let s = signers.sign(b"From: a@other.example\r\n\r\nx\r\n").unwrap();
        assert!(s.fields.is_empty() && s.keys.is_empty());
    }

    #[test]
    fn from_is_oversigned_and_list_unsubscribe_signed() {
        let signers = Signers::from_keys(vec![(config("example.com", "a"), ed_key())]).unwrap();
        let wire = b"From: a@example.com\r\nList-Unsubscribe: <https://u.example/x>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nbody\r\n";
        let s = signers.sign(wire).unwrap();
        let text = String::from_utf8(s.fields)
            .unwrap()
            .replace(['\r', '\n', '\t', ' '], "");
        let h = text
            .split(';')
            .find_map(|t| t.strip_prefix("h="))
            .unwrap()
            .to_ascii_lowercase();
        let names: Vec<&str> = h.split(':').collect();
        assert_eq!(names.iter().filter(|n| **n == "from").count(), 2, "{h}");
        assert!(names.contains(&"list-unsubscribe-post"), "{h}");
    }

    #[test]
    fn a_configured_algorithm_must_match_the_key() {
        let mut c = config("example.com", "a");
        c.algorithm = Some(DkimAlgorithm::RsaSha256);
        let e = Signers::from_keys(vec![(c, ed_key())]).unwrap_err();
        assert!(e.to_string().contains("ed25519-sha256"), "{e}");
    }
}
