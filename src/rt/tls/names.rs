//! Levels `verify` and `secure` with a list of acceptable certificate
//! names (Postfix's `match=`): the chain must verify to a trusted root,
//! and the certificate must name one of the list's entries. An entry is
//! an exact name (the next-hop domain, the MX host, a configured name) or
//! every subdomain of a name (`dot-nexthop`, `.example.com`).
//!
//! Every name check is webpki's: the certificate's DNS names are only
//! read to find which of them could satisfy a subdomain entry, and each
//! such candidate is then verified by webpki as if it had been the name
//! asked for (a wildcard `*.example.com` through a name it covers).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::{CertificateError, ClientConfig};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::config::trust_anchors;
use super::verifier::{one_connection_config, ChainCheck, CheckedVerifier};
use super::TlsError;

/// A name a certificate may present, resolved for one connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NameRule {
    /// Exactly this DNS name.
    Exact(String),
    /// Any name strictly below this domain (`mx.example.com` for
    /// `example.com`; a wildcard `*.example.com` too).
    Subdomain(String),
}

impl fmt::Display for NameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameRule::Exact(n) => f.write_str(n),
            NameRule::Subdomain(d) => write!(f, ".{d}"),
        }
    }
}

/// Why a chain was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamesRefusal {
    /// The chain verified, but names none of the rules.
    NoName {
        /// The rules, as configured (`.domain` for subdomains).
        wanted: String,
        /// The certificate's DNS names.
        presented: String,
    },
    /// The chain itself did not verify.
    Chain(String),
}

impl fmt::Display for NamesRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamesRefusal::NoName { wanted, presented } => write!(
                f,
                "server certificate names none of {wanted} (it names {presented})"
            ),
            NamesRefusal::Chain(e) => write!(f, "server certificate not verified: {e}"),
        }
    }
}

/// The chain check of one connection at `verify` or `secure` with a name
/// list.
#[derive(Debug)]
pub struct NamesCheck {
    webpki: Arc<WebPkiServerVerifier>,
    rules: Vec<NameRule>,
}

/// The rustls verifier of one such connection; `take_refusal` says why it
/// refused a chain.
pub type NamesVerifier = CheckedVerifier<NamesCheck>;

impl ChainCheck for NamesCheck {
    type Refusal = NamesRefusal;

    /// Checks `end_entity` (through `intermediates`) against the roots and
    /// the rules.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), NamesRefusal> {
        let presented = presented_names(end_entity);
        let candidates = candidates(&self.rules, &presented);
        // With no candidate the chain is still checked, under a name no
        // certificate can hold, so a bad chain is reported as such.
        let probe = [ServerName::try_from("invalid.invalid")
            .map_err(|e| NamesRefusal::Chain(format!("internal: {e}")))?];
        let names: &[ServerName<'static>] = if candidates.is_empty() {
            &probe
        } else {
            &candidates
        };
        for name in names {
            match self
                .webpki
                .verify_server_cert(end_entity, intermediates, name, &[], now)
            {
                Ok(_) if !candidates.is_empty() => return Ok(()),
                // webpki checks the name only once the chain verified.
                Ok(_)
                | Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => {}
                Err(e) => return Err(NamesRefusal::Chain(e.to_string())),
            }
        }
        Err(NamesRefusal::NoName {
            wanted: self
                .rules
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            presented: if presented.is_empty() {
                "no DNS name".into()
            } else {
                presented.join(", ")
            },
        })
    }
}

/// The DNS names of a certificate's subjectAltName (empty when it does
/// not parse: webpki then refuses the chain anyway).
fn presented_names(end_entity: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(end_entity) {
        Ok(cert) => cert
            .valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The names to ask webpki about: each exact rule, and for each subdomain
/// rule the presented names below it (a wildcard through a name it would
/// cover). Duplicates removed, order kept.
fn candidates(rules: &[NameRule], presented: &[String]) -> Vec<ServerName<'static>> {
    let mut out: Vec<String> = Vec::new();
    for rule in rules {
        match rule {
            NameRule::Exact(n) => out.push(n.clone()),
            NameRule::Subdomain(d) => {
                for p in presented {
                    let name = match p.strip_prefix("*.") {
                        // `*.d` covers `x.d`, below `d`; `*.sub.d` too.
                        Some(base) if base == d || is_below(base, d) => {
                            format!("wildcard-match.{base}")
                        }
                        Some(_) => continue,
                        None if is_below(p, d) => p.clone(),
                        None => continue,
                    };
                    out.push(name);
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.into_iter()
        .filter(|n| seen.insert(n.clone()))
        .filter_map(|n| ServerName::try_from(n).ok())
        // DNS names only, as Postfix matches them: an IP-address next hop
        // (`[192.0.2.1]`) matches no certificate name.
        .filter(|n| matches!(n, ServerName::DnsName(_)))
        .collect()
}

/// True when `name` is strictly below `domain` (both lower case).
fn is_below(name: &str, domain: &str) -> bool {
    name.len() > domain.len() + 1
        && name.ends_with(domain)
        && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
}

/// The chain verifier of name lists: the trust anchors (the system's plus
/// `ca_file`), built once per connector and shared by its connections.
#[derive(Clone, Debug)]
pub struct NamesAnchors(Arc<WebPkiServerVerifier>);

impl NamesAnchors {
    /// The anchors of the system and `ca_file`; an error when there are
    /// none at all.
    pub fn load(ca_file: Option<&Path>) -> Result<NamesAnchors, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = trust_anchors(ca_file)?;
        if roots.is_empty() {
            return Err(TlsError::Config(super::config::NO_ROOTS.into()));
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(NamesAnchors(webpki))
    }
}

/// A client configuration for one connection whose certificate must
/// verify to `anchors` and name one of `rules`, and its verifier.
/// Sessions are not resumed (every handshake is verified against this
/// connection's rules); a finished handshake is reported
/// [`super::Trust::Verified`].
pub fn names_client_config(
    anchors: &NamesAnchors,
    rules: Vec<NameRule>,
) -> Result<(Arc<ClientConfig>, Arc<NamesVerifier>), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let check = NamesCheck {
        webpki: Arc::clone(&anchors.0),
        rules,
    };
    let verifier = Arc::new(CheckedVerifier::new(check, &provider));
    let config = one_connection_config(
        Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>,
        provider,
        true,
    )
    .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok((config, verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[ServerName<'static>]) -> Vec<String> {
        v.iter()
            .map(|n| match n {
                ServerName::DnsName(d) => d.as_ref().to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn subdomain_rules_pick_presented_names_below_the_domain() {
        let presented = vec![
            "mx1.example.com".to_string(),
            "example.com".to_string(),
            "*.mail.example.com".to_string(),
            "*.example.com".to_string(),
            "evil-example.com".to_string(),
            "mx.example.net".to_string(),
        ];
        let rules = [
            NameRule::Exact("example.com".into()),
            NameRule::Subdomain("example.com".into()),
        ];
        assert_eq!(
            names(&candidates(&rules, &presented)),
            [
                "example.com",
                "mx1.example.com",
                "wildcard-match.mail.example.com",
                "wildcard-match.example.com",
            ]
        );
        // The domain itself is not below itself; nothing else matches.
        let only_sub = [NameRule::Subdomain("example.net".into())];
        assert_eq!(
            names(&candidates(&only_sub, &presented)),
            ["mx.example.net"]
        );
        assert!(candidates(&[NameRule::Subdomain("other.org".into())], &presented).is_empty());
        // An IP-address next hop matches no certificate name.
        assert!(candidates(&[NameRule::Exact("192.0.2.1".into())], &presented).is_empty());
    }

    #[test]
    fn below_means_a_whole_label_below() {
        assert!(is_below("a.example.com", "example.com"));
        assert!(!is_below("example.com", "example.com"));
        assert!(!is_below("badexample.com", "example.com"));
        assert!(!is_below(".example.com", "example.com"));
    }

    #[test]
    fn refusals_say_what_was_wanted_and_what_was_presented() {
        let r = NamesRefusal::NoName {
            wanted: "example.com, .example.com".into(),
            presented: "mx.other.net".into(),
        };
        assert_eq!(
            r.to_string(),
            "server certificate names none of example.com, .example.com (it names mx.other.net)"
        );
    }
}
