//! `ringmail check-domain`: will mail from this domain authenticate? The
//! checks a receiver such as Gmail or Yahoo makes, asked through the
//! configured `[dns]` servers before anything is sent
//! (docs/AUTHENTICATION.md, "check-domain"):
//!
//! - [`spf`]: the envelope (bounce) domain's SPF policy passes for the
//!   sending IP (evaluated by mail-auth).
//! - [`dkim`]: each configured key for the `From:` domain has its record
//!   at `SELECTOR._domainkey.DOMAIN`, and the record matches the key: a
//!   test message signed with the key verifies through the resolver.
//! - [`dmarc`]: `_dmarc.FROM` (or its organisational domain) exists and
//!   the `From:` domain aligns with the DKIM domain or the envelope domain.
//! - [`ptr`]: the sending IP has reverse DNS that resolves back to it.
//! - [`mx`]: the bounce domain receives mail (MX, or A/AAAA).
//! - HELO ([`spf::check_helo`]): the EHLO name's SPF policy passes for the
//!   sending IP (what receivers check for bounces); a warning otherwise.
//!
//! Each check returns [`Finding`]s, values gathered in a [`Report`]
//! ([`report`]: table, JSON, exit code); [`resolver`] is the only part
//! that does I/O. A DNS failure (SERVFAIL, timeout) is a `temperror`
//! finding, never a `FAIL`.

pub mod dkim;
pub mod dmarc;
pub mod mx;
pub mod ptr;
pub mod report;
pub mod resolver;
pub mod spf;

use std::net::IpAddr;

pub use report::{CheckKind, Finding, Report, Status};
pub use resolver::CheckResolver;

use crate::config::DkimKeyConfig;

/// Why a lookup or the resolver failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// A lookup failed for a reason other than "no such record":
    /// SERVFAIL, REFUSED, a timeout, no server reachable.
    #[error("DNS lookup of {name} {rtype} failed: {detail}")]
    Dns {
        /// The name asked for.
        name: String,
        /// The record type asked for.
        rtype: &'static str,
        /// What the resolver said.
        detail: String,
    },
    /// The resolver could not be set up (an unreadable /etc/resolv.conf).
    #[error("cannot set up the DNS resolver: {0}")]
    Setup(String),
    /// The `[dns]` servers are not addresses.
    #[error("[dns]: {0}")]
    Config(String),
    /// A name to look up is not a domain name.
    #[error("bad domain name {0:?}")]
    BadName(String),
}

impl CheckError {
    /// True when asking again later may succeed (exit 75, `temperror`).
    pub fn is_transient(&self) -> bool {
        matches!(self, CheckError::Dns { .. } | CheckError::Setup(_))
    }

    /// The finding for a check that could not be made because of `self`:
    /// `temperror` when transient, else `FAIL`.
    pub fn finding(&self, check: CheckKind) -> Finding {
        if self.is_transient() {
            Finding::new(check, Status::TempError, self.to_string())
                .with_fix("try again; if it persists, check the [dns] servers")
        } else {
            Finding::fail(check, self.to_string(), "check the domain name")
        }
    }
}

/// What to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// The domain named on the command line.
    pub domain: String,
    /// The `From:` domain (DKIM keys, DMARC); usually `domain`.
    pub from_domain: String,
    /// The envelope sender's domain, where VERP bounces go (SPF, DMARC's
    /// SPF alignment, MX); usually `domain`.
    pub bounce_domain: String,
    /// The sending IP (SPF, PTR); both are skipped without it.
    pub ip: Option<IpAddr>,
    /// The name ringmail gives in EHLO (`myhostname`), for SPF macros.
    pub helo: String,
}

impl CheckOptions {
    /// Options for `domain` as both `From:` and bounce domain.
    pub fn new(domain: &str, helo: &str) -> CheckOptions {
        let domain = resolver::canonical(domain);
        CheckOptions {
            from_domain: domain.clone(),
            bounce_domain: domain.clone(),
            domain,
            ip: None,
            helo: helo.to_string(),
        }
    }
}

/// Runs every check (concurrently) and gathers the findings in the order
/// SPF, DKIM (one per key), DMARC, PTR, MX, and HELO (with an IP only).
/// DMARC's DKIM alignment counts only the keys whose check did not fail (a
/// key whose record is missing signs nothing a receiver can verify).
pub async fn check_domain(
    resolver: &CheckResolver,
    opts: &CheckOptions,
    keys: &[DkimKeyConfig],
) -> Report {
    let dkim_then_dmarc = async {
        let dkim = dkim::check(resolver, &opts.from_domain, keys).await;
        let working: Vec<String> = dkim::keys_for(keys, &opts.from_domain)
            .iter()
            .zip(&dkim)
            .filter(|(_, f)| f.status != Status::Fail)
            .map(|(k, _)| resolver::canonical(&k.domain))
            .collect();
        let dmarc = dmarc::check(resolver, opts, &working).await;
        (dkim, dmarc)
    };
    let (spf, (dkim, dmarc), ptr, mx, helo) = tokio::join!(
        spf::check(resolver, opts),
        dkim_then_dmarc,
        ptr::check(resolver, opts.ip, &opts.domain),
        mx::check(resolver, &opts.bounce_domain),
        spf::check_helo(resolver, opts),
    );
    let mut findings = vec![spf];
    findings.extend(dkim);
    findings.extend([dmarc, ptr, mx]);
    findings.extend(helo);
    Report {
        domain: opts.domain.clone(),
        from_domain: opts.from_domain.clone(),
        bounce_domain: opts.bounce_domain.clone(),
        ip: opts.ip,
        findings,
    }
}

pub use crate::mail::address::is_domain_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_failures_are_temperrors_and_bad_names_failures() {
        let e = CheckError::Dns {
            name: "example.com".into(),
            rtype: "TXT",
            detail: "SERVFAIL".into(),
        };
        assert!(e.is_transient());
        let f = e.finding(CheckKind::Spf);
        assert_eq!(f.status, Status::TempError);
        assert!(f.detail.contains("example.com TXT"), "{}", f.detail);
        let f = CheckError::BadName("a..b".into()).finding(CheckKind::Mx);
        assert_eq!(f.status, Status::Fail);
        assert!(!CheckError::Config("x".into()).is_transient());
    }

    #[test]
    fn domain_names_are_checked_and_options_lower_cased() {
        assert!(is_domain_name("Example.COM."));
        assert!(is_domain_name("_dmarc.example.com"));
        assert!(!is_domain_name(""));
        assert!(!is_domain_name("a..b"));
        assert!(!is_domain_name("a b.example"));
        let o = CheckOptions::new("Example.COM.", "mx.example.org");
        assert_eq!(o.domain, "example.com");
        assert_eq!(o.from_domain, "example.com");
        assert_eq!(o.bounce_domain, "example.com");
        assert_eq!(o.ip, None);
    }
}
