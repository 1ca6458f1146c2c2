//! `ringmail dkim keygen`: a new signing key, written readable by its owner
//! only, and the TXT record to publish.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine as _;
use mail_auth::common::crypto::Ed25519Key;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

use super::key::{PrivateKey, MAX_RSA_BITS, MIN_RSA_BITS};
use super::SignError;
use crate::config::DkimAlgorithm;

/// Generates a key: Ed25519, or RSA of `rsa_bits` bits. Returns its PEM
/// (PKCS#8, `BEGIN PRIVATE KEY`).
pub fn generate(algorithm: DkimAlgorithm, rsa_bits: usize) -> Result<String, SignError> {
    let failed = |e: String| SignError::Generate(e);
    match algorithm {
        DkimAlgorithm::Ed25519Sha256 => {
            let doc = Ed25519Key::generate_pkcs8().map_err(|e| failed(e.to_string()))?;
            Ok(pem("PRIVATE KEY", &doc))
        }
        DkimAlgorithm::RsaSha256 => {
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&rsa_bits) {
                return Err(failed(format!(
                    "RSA keys have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits, not {rsa_bits}"
                )));
            }
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, rsa_bits)
                .map_err(|e| failed(e.to_string()))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| failed(e.to_string()))?;
            Ok(pem.to_string())
        }
    }
}

/// Writes `pem` to `path`, created with mode 0600 (refusing to replace an
/// existing file), and returns the key it holds.
pub fn write_key(path: &Path, pem: &str) -> Result<PrivateKey, SignError> {
    let key = PrivateKey::from_pem(pem.as_bytes()).map_err(SignError::Generate)?;
    let io = |e: std::io::Error| SignError::KeyFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(pem.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(key)
}

/// The record as a zone file line: `SELECTOR._domainkey.DOMAIN. IN TXT
/// ("..." "...")`, the value split into strings of at most 255 bytes.
pub fn zone_line(domain: &str, selector: &str, record: &str) -> String {
    let strings: Vec<String> = record
        .as_bytes()
        .chunks(250)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!(
        "{selector}._domainkey.{}. IN TXT ( {} )",
        domain.trim_end_matches('.'),
        strings.join(" ")
    )
}

/// PEM armour around DER bytes, 64 columns.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_back_and_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for (alg, bits) in [
            (DkimAlgorithm::Ed25519Sha256, 0),
            (DkimAlgorithm::RsaSha256, 2048),
        ] {
            let path = dir.path().join(alg.as_str());
            let key = write_key(&path, &generate(alg, bits).unwrap()).unwrap();
            assert_eq!(key.algorithm(), alg);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let again = PrivateKey::load(&path).unwrap();
            assert_eq!(again.dns_record(), key.dns_record());
            // Never replaces a key.
            assert!(write_key(&path, &generate(alg, bits).unwrap()).is_err());
        }
    }

    #[test]
    fn rsa_sizes_outside_the_range_are_refused() {
        assert!(generate(DkimAlgorithm::RsaSha256, 1024).is_err());
        assert!(generate(DkimAlgorithm::RsaSha256, 8192).is_err());
    }

    #[test]
    fn long_records_are_split_for_the_zone_file() {
        let record = format!("v=DKIM1; k=rsa; p={}", "A".repeat(400));
        let line = zone_line("example.com", "s1", &record);
        assert!(line.starts_with("s1._domainkey.example.com. IN TXT ( \""));
        assert_eq!(line.matches('"').count(), 4);
    }
}
