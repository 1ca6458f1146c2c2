//! The certificate names of levels `verify` and `secure` for one host:
//! a configured name list (`smtp_tls_verify_cert_match`,
//! `smtp_tls_secure_cert_match`, a `[[tls_policy]]` entry's `match`)
//! resolved against the host connected to and the next hop, and the
//! reason a handshake failed on them.

use crate::config::{CertMatch, TlsSecurityLevel};
use crate::model::Nexthop;
use crate::rt::tls::names::{NameRule, NamesVerifier};

use super::DeliverError;

/// The name list a connection at `level` checks, or `None` when the level
/// checks no names or only the host's own (the plain `verify` path):
/// `secure` always has one; `verify` when its list is not just
/// `hostname`, from the policy entry (`entry`) or the configuration.
pub fn list_for<'a>(
    level: TlsSecurityLevel,
    entry: Option<&'a [CertMatch]>,
    verify_default: &'a [CertMatch],
    secure_default: &'a [CertMatch],
) -> Option<&'a [CertMatch]> {
    match level {
        TlsSecurityLevel::Secure => Some(entry.unwrap_or(secure_default)),
        TlsSecurityLevel::Verify => {
            let list = entry.unwrap_or(verify_default);
            (list != [CertMatch::Hostname]).then_some(list)
        }
        _ => None,
    }
}

/// `list` resolved for a connection to `host` for next hop `hop` (names
/// in lower-case A-labels, as certificates hold them).
pub fn rules(list: &[CertMatch], host: &str, hop: &Nexthop) -> Vec<NameRule> {
    let clean = |n: &str| {
        let n = n.trim_end_matches('.');
        // A name IDNA cannot convert stays as it is: it matches nothing.
        idna::domain_to_ascii(n).unwrap_or_else(|_| n.to_ascii_lowercase())
    };
    list.iter()
        .map(|m| match m {
            CertMatch::Hostname => NameRule::Exact(clean(host)),
            CertMatch::Nexthop => NameRule::Exact(clean(&hop.host)),
            CertMatch::DotNexthop => NameRule::Subdomain(clean(&hop.host)),
            CertMatch::Name(n) => NameRule::Exact(n.clone()),
            CertMatch::Subdomain(d) => NameRule::Subdomain(d.clone()),
        })
        .collect()
}

/// A handshake failure with the reason the verifier gave, when it refused
/// the certificate.
pub fn explain(e: DeliverError, verifier: &NamesVerifier) -> DeliverError {
    match e {
        DeliverError::TlsHandshake { peer, detail } => DeliverError::TlsHandshake {
            peer,
            detail: verifier.take_refusal().map_or(detail, |r| r.to_string()),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(host: &str) -> Nexthop {
        Nexthop {
            host: host.into(),
            port: 25,
            mx_lookup: true,
        }
    }

    #[test]
    fn secure_always_checks_names_and_verify_only_beyond_the_hostname() {
        let verify = [CertMatch::Hostname];
        let secure = [CertMatch::Nexthop, CertMatch::DotNexthop];
        let pinned = [CertMatch::Subdomain("example.net".into())];
        let l = |level, entry| list_for(level, entry, &verify, &secure);
        assert_eq!(l(TlsSecurityLevel::Secure, None), Some(&secure[..]));
        assert_eq!(
            l(TlsSecurityLevel::Secure, Some(&pinned[..])),
            Some(&pinned[..])
        );
        assert_eq!(l(TlsSecurityLevel::Verify, None), None);
        assert_eq!(
            l(TlsSecurityLevel::Verify, Some(&pinned[..])),
            Some(&pinned[..])
        );
        assert_eq!(l(TlsSecurityLevel::Encrypt, Some(&pinned[..])), None);
        let wider = [CertMatch::Hostname, CertMatch::Nexthop];
        assert_eq!(
            list_for(TlsSecurityLevel::Verify, None, &wider, &secure),
            Some(&wider[..])
        );
    }

    #[test]
    fn international_names_are_matched_as_a_labels() {
        assert_eq!(
            rules(
                &[CertMatch::Nexthop, CertMatch::DotNexthop],
                "mx",
                &hop("Bücher.example")
            ),
            [
                NameRule::Exact("xn--bcher-kva.example".into()),
                NameRule::Subdomain("xn--bcher-kva.example".into()),
            ]
        );
    }

    #[test]
    fn rules_resolve_against_the_host_and_the_next_hop() {
        let list = [
            CertMatch::Hostname,
            CertMatch::Nexthop,
            CertMatch::DotNexthop,
            CertMatch::Name("mx.example.org".into()),
            CertMatch::Subdomain("example.net".into()),
        ];
        assert_eq!(
            rules(&list, "MX1.Example.com.", &hop("Example.COM")),
            [
                NameRule::Exact("mx1.example.com".into()),
                NameRule::Exact("example.com".into()),
                NameRule::Subdomain("example.com".into()),
                NameRule::Exact("mx.example.org".into()),
                NameRule::Subdomain("example.net".into()),
            ]
        );
    }
}
