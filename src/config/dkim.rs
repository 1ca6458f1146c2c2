//! The `[[dkim]]` tables: one signing key each (`docs/AUTHENTICATION.md`).
//!
//! Several entries with the same `domain` sign a message together (dual
//! signing, for example RSA and Ed25519). An entry signs mail whose `From:`
//! domain is its `domain` or a subdomain of it, or one of `from_domains`
//! when that mapping is given.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The header fields signed by default: those a receiver shows or acts on,
/// including RFC 8058's `List-Unsubscribe` pair.
pub const DEFAULT_SIGNED_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Sender",
];

/// The header fields signed once more than they occur by default
/// ("over-signed"), so that nobody can add another one after signing.
pub const DEFAULT_OVERSIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// The signature algorithm of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DkimAlgorithm {
    /// RSA with SHA-256 (RFC 6376), 1024 to 4096 bits.
    #[serde(rename = "rsa-sha256", alias = "rsa")]
    RsaSha256,
    /// Ed25519 with SHA-256 (RFC 8463).
    #[serde(rename = "ed25519-sha256", alias = "ed25519")]
    Ed25519Sha256,
}

impl DkimAlgorithm {
    /// The name in the `a=` tag of a signature.
    pub fn as_str(self) -> &'static str {
        match self {
            DkimAlgorithm::RsaSha256 => "rsa-sha256",
            DkimAlgorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
}

/// Header and body canonicalization (`c=`), RFC 6376 section 3.4.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DkimCanonicalization {
    /// `relaxed/relaxed`: survives the whitespace changes relays make.
    #[default]
    #[serde(rename = "relaxed/relaxed", alias = "relaxed")]
    RelaxedRelaxed,
    /// `relaxed/simple`.
    #[serde(rename = "relaxed/simple")]
    RelaxedSimple,
    /// `simple/relaxed`.
    #[serde(rename = "simple/relaxed")]
    SimpleRelaxed,
    /// `simple/simple`: the bytes exactly as sent.
    #[serde(rename = "simple/simple", alias = "simple")]
    SimpleSimple,
}

impl DkimCanonicalization {
    /// Header canonicalization is relaxed.
    pub fn header_relaxed(self) -> bool {
        matches!(
            self,
            DkimCanonicalization::RelaxedRelaxed | DkimCanonicalization::RelaxedSimple
        )
    }

    /// Body canonicalization is relaxed.
    pub fn body_relaxed(self) -> bool {
        matches!(
            self,
            DkimCanonicalization::RelaxedRelaxed | DkimCanonicalization::SimpleRelaxed
        )
    }
}

/// One `[[dkim]]` entry: a key and where it signs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DkimKeyConfig {
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`): the key's record is `SELECTOR._domainkey.DOMAIN`.
    pub selector: String,
    /// The private key: PEM, PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8
    /// (`BEGIN PRIVATE KEY`), as `opendkim-genkey`, `openssl genpkey` and
    /// `ringmail dkim keygen` write them. Readable by its owner only.
    pub key_file: PathBuf,
    /// The algorithm the key must be; read from the key when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<DkimAlgorithm>,
    /// The header fields to sign; [`DEFAULT_SIGNED_HEADERS`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<String>>,
    /// The header fields to over-sign; [`DEFAULT_OVERSIGNED_HEADERS`] when
    /// absent (an empty list over-signs nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversign_headers: Option<Vec<String>>,
    /// `c=`; `relaxed/relaxed` by default.
    #[serde(default)]
    pub canonicalization: DkimCanonicalization,
    /// The `From:` domains this key signs (`example.com` exactly,
    /// `.example.com` for its subdomains); when absent, `domain` and its
    /// subdomains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_domains: Option<Vec<String>>,
    /// Signature lifetime in seconds (`x=`); 0 (the default) sets none.
    #[serde(default)]
    pub expire: u64,
}

impl DkimKeyConfig {
    /// Checks what can be checked without reading the key file.
    pub fn check(&self) -> Result<(), String> {
        let label_ok = crate::mail::address::is_domain_name;
        if !label_ok(&self.domain) {
            return Err(format!("domain {:?} is not a domain name", self.domain));
        }
        if !label_ok(&self.selector) {
            return Err(format!("selector {:?} is not a DNS label", self.selector));
        }
        if self.key_file.as_os_str().is_empty() {
            return Err("key_file must not be empty".into());
        }
        if let Some(h) = &self.headers {
            if !h.iter().any(|n| n.eq_ignore_ascii_case("from")) {
                return Err("headers must include From (RFC 6376 section 5.4)".into());
            }
            if let Some(bad) = h.iter().find(|n| !field_name_ok(n)) {
                return Err(format!("headers: {bad:?} is not a header field name"));
            }
        }
        if let Some(bad) = self
            .oversign_headers
            .iter()
            .flatten()
            .find(|n| !field_name_ok(n))
        {
            return Err(format!(
                "oversign_headers: {bad:?} is not a header field name"
            ));
        }
        if let Some(bad) = self
            .from_domains
            .iter()
            .flatten()
            .find(|d| !label_ok(d.trim_start_matches('.')))
        {
            return Err(format!("from_domains: {bad:?} is not a domain name"));
        }
        Ok(())
    }

    /// The `h=` list to give the signer: the signed fields, then each
    /// over-signed field once more (a name listed beyond the fields present
    /// is signed as absent, RFC 6376 section 5.4.2).
    pub fn signed_header_list(&self) -> Vec<String> {
        let mut list: Vec<String> = match &self.headers {
            Some(h) => h.clone(),
            None => DEFAULT_SIGNED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let over: Vec<String> = match &self.oversign_headers {
            Some(h) => h.clone(),
            None => DEFAULT_OVERSIGNED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        for name in over {
            if !list.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                list.push(name.clone());
            }
            list.push(name);
        }
        list
    }

    /// True when this key signs mail whose `From:` domain is `from_domain`
    /// (lower case).
    pub fn signs_for(&self, from_domain: &str) -> bool {
        match &self.from_domains {
            Some(list) => list.iter().any(|d| domain_matches(d, from_domain)),
            None => {
                let own = self.domain.to_ascii_lowercase();
                from_domain == own || from_domain.ends_with(&format!(".{own}"))
            }
        }
    }
}

/// `example.com` matches exactly; `.example.com` matches its subdomains.
fn domain_matches(pattern: &str, domain: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix('.') {
        Some(parent) => domain.ends_with(&format!(".{parent}")),
        None => domain == pattern,
    }
}

/// RFC 5322 field-name: printable ASCII except colon.
fn field_name_ok(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> DkimKeyConfig {
        toml::from_str(
            r#"
            domain = "example.com"
            selector = "s2026"
            key_file = "/etc/ringmail/dkim.pem"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn defaults_sign_the_list_headers_and_oversign_from() {
        let e = entry();
        assert_eq!(e.canonicalization, DkimCanonicalization::RelaxedRelaxed);
        let h = e.signed_header_list();
        assert!(h.iter().any(|n| n == "List-Unsubscribe-Post"));
        assert_eq!(h.iter().filter(|n| *n == "From").count(), 2);
        assert_eq!(h.iter().filter(|n| *n == "Cc").count(), 1);
        assert!(e.check().is_ok());
    }

    #[test]
    fn the_from_domain_chooses_the_key() {
        let mut e = entry();
        assert!(e.signs_for("example.com"));
        assert!(e.signs_for("news.example.com"));
        assert!(!e.signs_for("badexample.com"));
        e.from_domains = Some(vec!["brand.example".into(), ".example.org".into()]);
        assert!(e.signs_for("brand.example"));
        assert!(e.signs_for("a.example.org"));
        assert!(!e.signs_for("example.org"));
        assert!(!e.signs_for("example.com"));
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        let mut e = entry();
        e.headers = Some(vec!["Subject".into()]);
        assert!(e.check().unwrap_err().contains("From"));
        let mut e = entry();
        e.selector = "bad selector".into();
        assert!(e.check().unwrap_err().contains("selector"));
        let parsed: Result<DkimKeyConfig, _> = toml::from_str(
            "domain = \"a.example\"\nselector = \"s\"\nkey_file = \"k\"\nalgorithm = \"dsa\"\n",
        );
        assert!(parsed.is_err());
        let parsed: DkimKeyConfig = toml::from_str(
            "domain = \"a.example\"\nselector = \"s\"\nkey_file = \"k\"\nalgorithm = \"ed25519\"\ncanonicalization = \"simple/simple\"\n",
        )
        .unwrap();
        assert_eq!(parsed.algorithm, Some(DkimAlgorithm::Ed25519Sha256));
        assert_eq!(parsed.canonicalization, DkimCanonicalization::SimpleSimple);
    }
}
