//! DKIM: each configured key that signs the `From:` domain has its record
//! at `SELECTOR._domainkey.DOMAIN`, and the record matches the key. The
//! match is checked the honest way: a small test message is signed with
//! the key exactly as ringmail signs mail (`sign::Signers`) and verified by
//! mail-auth through the same resolver, so a stale record, a wrong `k=`, a
//! truncated `p=` or a revoked key all show up. On failure the finding
//! gives the record to publish.

use mail_auth::{AuthenticatedMessage, DkimResult, Parameters};

use super::resolver::canonical;
use super::{CheckKind, CheckResolver, Finding, Status};
use crate::config::DkimKeyConfig;
use crate::sign::{PrivateKey, Signers};

const DKIM: CheckKind = CheckKind::Dkim;

/// The keys that sign mail from `from_domain`, as the signer picks them:
/// every entry of the most specific configured domain that signs it
/// (several for dual signing).
pub fn keys_for<'a>(keys: &'a [DkimKeyConfig], from_domain: &str) -> Vec<&'a DkimKeyConfig> {
    let from = canonical(from_domain);
    let best = keys
        .iter()
        .filter(|k| k.signs_for(&from))
        .map(|k| k.domain.len())
        .max();
    keys.iter()
        .filter(|k| Some(k.domain.len()) == best && k.signs_for(&from))
        .collect()
}

/// `SELECTOR._domainkey.DOMAIN` of a key.
pub fn record_name(key: &DkimKeyConfig) -> String {
    format!(
        "{}._domainkey.{}",
        key.selector.to_ascii_lowercase(),
        canonical(&key.domain)
    )
}

/// True when a TXT record looks like a DKIM key record (`v=DKIM1` or a
/// `p=` tag; `v=` is optional, RFC 6376 section 3.6.1).
pub fn is_key_record(record: &str) -> bool {
    let r = record.trim_start();
    r.get(..7)
        .is_some_and(|v| v.eq_ignore_ascii_case("v=DKIM1"))
        || r.split(';').any(|tag| tag.trim_start().starts_with("p="))
}

/// One finding per key for `from_domain`, or one `FAIL` when none is
/// configured.
pub async fn check(
    resolver: &CheckResolver,
    from_domain: &str,
    keys: &[DkimKeyConfig],
) -> Vec<Finding> {
    let mine = keys_for(keys, from_domain);
    if mine.is_empty() {
        return vec![Finding::fail(
            DKIM,
            format!("no [[dkim]] key configured for {from_domain}; run ringmail dkim keygen"),
            format!(
                "e.g. ringmail dkim keygen --domain {from_domain} --selector SELECTOR --algorithm ed25519; \
                 add the [[dkim]] entry it prints and publish its record"
            ),
        )];
    }
    let mut out = Vec::with_capacity(mine.len());
    for key in mine {
        out.push(check_key(resolver, from_domain, key).await);
    }
    out
}

/// Checks one key: record present, and a test signature verifies.
async fn check_key(resolver: &CheckResolver, from_domain: &str, config: &DkimKeyConfig) -> Finding {
    let owner = record_name(config);
    let key = match PrivateKey::load(&config.key_file) {
        Ok(k) => k,
        Err(e) => {
            return Finding::fail(
                DKIM,
                format!("{owner}: {e}"),
                "fix key_file, or make a key with ringmail dkim keygen",
            )
        }
    };
    let publish = format!("publish: \"{}\"", key.dns_record());
    let algorithm = key.algorithm().as_str();
    let records = match resolver.txt(&owner).await {
        Ok(r) => r,
        Err(e) => return e.finding(DKIM),
    };
    if !records.iter().any(|r| is_key_record(r)) {
        return Finding::fail(DKIM, format!("{owner}: no record"), publish);
    }
    let signers = match Signers::from_keys(vec![(config.clone(), key)]) {
        Ok(s) => s,
        Err(e) => return Finding::fail(DKIM, format!("{owner}: {e}"), "fix the [[dkim]] entry"),
    };
    let signed = match signers.sign_wire(test_message(from_domain)) {
        Ok((signed, keys)) if !keys.is_empty() => signed,
        Ok(_) => {
            return Finding::fail(
                DKIM,
                format!("{owner}: the key does not sign mail from {from_domain}"),
                "check from_domains of the [[dkim]] entry",
            )
        }
        Err(e) => return Finding::fail(DKIM, format!("{owner}: {e}"), "fix the key file"),
    };
    let Some(message) = AuthenticatedMessage::parse(&signed) else {
        // Our own signed test message always parses; say so if not.
        return Finding::fail(
            DKIM,
            format!("{owner}: the signed test message could not be read back"),
            "report this as a bug",
        );
    };
    let outputs = resolver
        .authenticator()
        .verify_dkim(Parameters::new(&message))
        .await;
    let result = outputs
        .first()
        .map(|o| o.result().clone())
        .unwrap_or(DkimResult::None);
    judge(&owner, algorithm, &result, &publish)
}

/// The finding for mail-auth's verification of the test signature.
pub fn judge(owner: &str, algorithm: &str, result: &DkimResult, publish: &str) -> Finding {
    match result {
        DkimResult::Pass => {
            Finding::pass(DKIM, format!("{owner}: {algorithm} key matches the record"))
        }
        DkimResult::TempError(e) => Finding::new(
            DKIM,
            Status::TempError,
            format!("{owner}: DNS trouble verifying the test signature: {e}"),
        )
        .with_fix("try again"),
        DkimResult::Fail(e) | DkimResult::PermError(e) | DkimResult::Neutral(e) => Finding::fail(
            DKIM,
            format!("{owner}: the record does not match the key ({e})"),
            publish,
        ),
        DkimResult::None => Finding::fail(
            DKIM,
            format!("{owner}: the test message was not signed"),
            publish,
        ),
    }
}

/// The message signed to test a key; never sent.
fn test_message(from_domain: &str) -> Vec<u8> {
    format!(
        "From: <postmaster@{from_domain}>\r\n\
         To: <postmaster@{from_domain}>\r\n\
         Subject: ringmail check-domain\r\n\
         Message-ID: <check-domain@{from_domain}>\r\n\
         \r\n\
         A test of the DKIM key, signed and verified locally; never sent.\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(domain: &str, selector: &str) -> DkimKeyConfig {
        toml::from_str(&format!(
            "domain = \"{domain}\"\nselector = \"{selector}\"\nkey_file = \"unused\"\n"
        ))
        .unwrap()
    }

    #[test]
    fn the_most_specific_domain_chooses_the_keys() {
        let keys = vec![
            entry("example.com", "a"),
            entry("example.com", "b"),
            entry("news.example.com", "n"),
            entry("other.example", "o"),
        ];
        let pick = |d: &str| -> Vec<String> {
            keys_for(&keys, d).iter().map(|k| record_name(k)).collect()
        };
        assert_eq!(
            pick("Example.com"),
            ["a._domainkey.example.com", "b._domainkey.example.com"]
        );
        assert_eq!(pick("news.example.com"), ["n._domainkey.news.example.com"]);
        assert_eq!(
            pick("shop.example.com"),
            ["a._domainkey.example.com", "b._domainkey.example.com"]
        );
        assert!(pick("example.net").is_empty());
    }

    #[test]
    fn key_records_are_recognised() {
        assert!(is_key_record("v=DKIM1; k=ed25519; p=abc"));
        assert!(is_key_record("k=rsa; p=MIIB"));
        assert!(!is_key_record("v=spf1 -all"));
    }

    #[test]
    fn verification_results_become_findings() {
        let f = judge(
            "s._domainkey.example.com",
            "ed25519-sha256",
            &DkimResult::Pass,
            "p",
        );
        assert_eq!(f.status, Status::Pass);
        let e =
            mail_auth::Error::Crypto(mail_auth::common::crypto::CryptoError::FailedVerification);
        let f = judge(
            "s._domainkey.example.com",
            "rsa-sha256",
            &DkimResult::Fail(e),
            "publish: \"v=DKIM1\"",
        );
        assert_eq!(f.status, Status::Fail);
        assert!(f.detail.contains("does not match"), "{}", f.detail);
        assert_eq!(f.fix.as_deref(), Some("publish: \"v=DKIM1\""));
        let e = mail_auth::Error::Dns(mail_auth::DnsError::Resolver("timeout".into()));
        let f = judge("s", "rsa-sha256", &DkimResult::TempError(e), "p");
        assert_eq!(f.status, Status::TempError);
    }

    #[test]
    fn the_test_message_is_signed_by_a_key_for_its_domain() {
        let pem =
            crate::sign::keygen::generate(crate::config::DkimAlgorithm::Ed25519Sha256, 0).unwrap();
        let key = PrivateKey::from_pem(pem.as_bytes()).unwrap();
        let signers = Signers::from_keys(vec![(entry("example.com", "s"), key)]).unwrap();
        let (signed, keys) = signers.sign_wire(test_message("example.com")).unwrap();
        assert_eq!(keys, ["example.com/s"]);
        assert!(AuthenticatedMessage::parse(&signed).is_some());
    }
}
