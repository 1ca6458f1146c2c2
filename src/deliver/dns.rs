//! MX resolution (RFC 5321 section 5.1) with hickory-resolver: which hosts
//! receive mail for a domain, in which order, and their addresses.
//!
//! - MX records sorted by preference, shuffled among equal preferences.
//! - No MX records (NODATA): the domain itself is the one host ("implicit
//!   MX").
//! - Null MX (RFC 7505: a single MX `0 .`): the domain accepts no mail;
//!   bounce at once with 5.1.10.
//! - NXDOMAIN: the domain does not exist; bounce with 5.1.2.
//! - SERVFAIL, timeouts and other failures: defer (4.4.3).
//!
//! Addresses follow `inet_protocols`: with `all`, a host's IPv6 addresses
//! come before its IPv4 ones, so an unreachable IPv6 network falls back to
//! IPv4 on the next address. Answers are cached by hickory for their TTL,
//! one cache per shard, shared by the shard's sessions.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, ResolveError, TokioResolver};

use crate::config::{DnsConfig, InetProtocols};

/// Why a name could not be resolved to mail hosts or addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The domain publishes a null MX: it accepts no mail.
    #[error("mail for {0} loops back to myself or the domain does not accept mail (null MX)")]
    NullMx(String),
    /// The name does not exist.
    #[error("Host or domain name not found. Name service error for name={name} type={rtype}: Host not found")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The record type asked for.
        rtype: &'static str,
    },
    /// The name exists but has no usable address (for this `inet_protocols`).
    #[error("Host or domain name not found. Name service error for name={name} type={rtype}: No address associated with hostname")]
    NoAddress {
        /// The host.
        name: String,
        /// `A`, `AAAA` or `A/AAAA`.
        rtype: &'static str,
    },
    /// A temporary failure: SERVFAIL, timeout, no server reachable.
    #[error("Host or domain name not found. Name service error for name={name} type={rtype}: Host not found, try again ({detail})")]
    Temporary {
        /// The name asked for.
        name: String,
        /// The record type asked for.
        rtype: &'static str,
        /// What the resolver said.
        detail: String,
    },
    /// The name is not a valid domain name.
    #[error("bad domain name {0:?}")]
    BadName(String),
    /// The resolver could not be set up (unreadable /etc/resolv.conf).
    #[error("cannot set up DNS resolver: {0}")]
    Setup(String),
}

impl DnsError {
    /// True when asking again later may succeed (defer, do not bounce).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DnsError::Temporary { .. } | DnsError::Setup(_) | DnsError::NoAddress { .. }
        )
    }

    /// The enhanced status code for logs and DSNs.
    pub fn dsn(&self) -> &'static str {
        match self {
            DnsError::NullMx(_) => "5.1.10",
            DnsError::NotFound { .. } => "5.1.2",
            DnsError::BadName(_) => "5.1.2",
            DnsError::NoAddress { .. } => "4.4.4",
            DnsError::Temporary { .. } => "4.4.3",
            DnsError::Setup(_) => "4.3.5",
        }
    }
}

/// One host that receives mail for a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailHost {
    /// Its name (the MX exchange, or the domain for an implicit MX).
    pub name: String,
    /// MX preference (0 for an implicit MX).
    pub preference: u16,
}

/// A DNS resolver for delivery: one per shard.
pub struct Dns {
    resolver: TokioResolver,
    protocols: InetProtocols,
}

impl Dns {
    /// A resolver asking `config`'s servers, or those of /etc/resolv.conf
    /// when none are given, for addresses of `protocols`.
    pub fn new(config: &DnsConfig, protocols: InetProtocols) -> Result<Dns, DnsError> {
        let servers = config.server_addrs().map_err(DnsError::Setup)?;
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DnsError::Setup(e.to_string()))?
        } else {
            let mut rc = ResolverConfig::new();
            for addr in servers {
                rc.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
                rc.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(rc, TokioConnectionProvider::default())
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = config.timeout();
        opts.attempts = config.attempts;
        opts.ndots = 0;
        opts.cache_size = 4096;
        // Keep negative answers briefly, so a fixed zone is seen soon.
        opts.negative_max_ttl = Some(Duration::from_secs(300));
        Ok(Dns {
            resolver: builder.build(),
            protocols,
        })
    }

    /// The hosts that receive mail for `domain`, best first: MX records by
    /// preference with equal preferences in random order, or the domain
    /// itself when it has no MX.
    pub async fn mail_hosts(&self, domain: &str) -> Result<Vec<MailHost>, DnsError> {
        let name = fqdn(domain)?;
        match self.resolver.mx_lookup(name).await {
            Ok(lookup) => {
                let mut hosts: Vec<MailHost> = lookup
                    .iter()
                    .map(|mx| MailHost {
                        name: mx.exchange().to_utf8().trim_end_matches('.').to_string(),
                        preference: mx.preference(),
                    })
                    .collect();
                if hosts.iter().any(|h| h.name.is_empty()) {
                    // RFC 7505: "0 ." means no mail; a null MX mixed with
                    // real ones is a misconfiguration, treated the same.
                    return Err(DnsError::NullMx(domain.to_string()));
                }
                if hosts.is_empty() {
                    return Ok(vec![implicit(domain)]);
                }
                order_by_preference(&mut hosts, fastrand::u64(..));
                Ok(hosts)
            }
            Err(e) => match classify(&e) {
                Answer::NoData => Ok(vec![implicit(domain)]),
                Answer::NxDomain => Err(DnsError::NotFound {
                    name: domain.to_string(),
                    rtype: "MX",
                }),
                Answer::Failed(detail) => Err(DnsError::Temporary {
                    name: domain.to_string(),
                    rtype: "MX",
                    detail,
                }),
            },
        }
    }

    /// The TXT records at `name`, each the concatenation of its
    /// character-strings (invalid UTF-8 replaced); none when the name or
    /// the type does not exist. Used for MTA-STS (`_mta-sts.DOMAIN`).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let fq = fqdn(name)?;
        match self.resolver.txt_lookup(fq).await {
            Ok(lookup) => Ok(lookup
                .iter()
                .map(|t| {
                    t.txt_data()
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<String>()
                })
                .collect()),
            Err(e) => match classify(&e) {
                Answer::NoData | Answer::NxDomain => Ok(Vec::new()),
                Answer::Failed(detail) => Err(DnsError::Temporary {
                    name: name.to_string(),
                    rtype: "TXT",
                    detail,
                }),
            },
        }
    }

    /// The addresses of `host` allowed by `inet_protocols`, IPv6 first.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let name = fqdn(host)?;
        let want6 = self.protocols != InetProtocols::Ipv4;
        let want4 = self.protocols != InetProtocols::Ipv6;
        let mut addrs = Vec::new();
        let mut nx = 0;
        let mut asked = 0;
        let mut failure = None;
        if want6 {
            asked += 1;
            match self.resolver.ipv6_lookup(name.clone()).await {
                Ok(l) => addrs.extend(l.iter().map(|a| IpAddr::V6(a.0))),
                Err(e) => match classify(&e) {
                    Answer::NoData => {}
                    Answer::NxDomain => nx += 1,
                    Answer::Failed(d) => failure = Some(("AAAA", d)),
                },
            }
        }
        if want4 {
            asked += 1;
            match self.resolver.ipv4_lookup(name).await {
                Ok(l) => addrs.extend(l.iter().map(|a| IpAddr::V4(a.0))),
                Err(e) => match classify(&e) {
                    Answer::NoData => {}
                    Answer::NxDomain => nx += 1,
                    Answer::Failed(d) => failure = Some(("A", d)),
                },
            }
        }
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        let rtype = match self.protocols {
            InetProtocols::All => "A/AAAA",
            InetProtocols::Ipv4 => "A",
            InetProtocols::Ipv6 => "AAAA",
        };
        if let Some((rtype, detail)) = failure {
            return Err(DnsError::Temporary {
                name: host.to_string(),
                rtype,
                detail,
            });
        }
        if nx == asked {
            return Err(DnsError::NotFound {
                name: host.to_string(),
                rtype,
            });
        }
        Err(DnsError::NoAddress {
            name: host.to_string(),
            rtype,
        })
    }
}

/// What a failed lookup means for mail.
enum Answer {
    /// The name exists but has no record of the type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// No usable answer: SERVFAIL, REFUSED, timeout, network error.
    Failed(String),
}

fn classify(e: &ResolveError) -> Answer {
    if let Some(p) = e.proto() {
        if let ProtoErrorKind::NoRecordsFound { response_code, .. } = p.kind() {
            return match *response_code {
                ResponseCode::NXDomain => Answer::NxDomain,
                ResponseCode::NoError => Answer::NoData,
                code => Answer::Failed(format!("server answered {code}")),
            };
        }
    }
    Answer::Failed(e.to_string())
}

fn implicit(domain: &str) -> MailHost {
    MailHost {
        name: domain.to_string(),
        preference: 0,
    }
}

/// `name` as an absolute DNS name (no search list), IDNA-encoded.
fn fqdn(name: &str) -> Result<Name, DnsError> {
    let trimmed = name.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(DnsError::BadName(name.to_string()));
    }
    let mut n = Name::from_utf8(trimmed).map_err(|_| DnsError::BadName(name.to_string()))?;
    n.set_fqdn(true);
    Ok(n)
}

/// Sorts by preference and shuffles each run of equal preferences, using
/// `seed` for the shuffle (RFC 5321 section 5.1: spread load over equals).
pub fn order_by_preference(hosts: &mut [MailHost], seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    hosts.sort_by_key(|h| h.preference);
    let mut start = 0;
    while start < hosts.len() {
        let pref = hosts[start].preference;
        let end = start
            + hosts[start..]
                .iter()
                .take_while(|h| h.preference == pref)
                .count();
        rng.shuffle(&mut hosts[start..end]);
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, preference: u16) -> MailHost {
        MailHost {
            name: name.into(),
            preference,
        }
    }

    #[test]
    fn preference_order_and_shuffled_equals() {
        let mut seen_first = std::collections::HashSet::new();
        for seed in 0..64 {
            let mut v = vec![
                h("c", 20),
                h("a", 10),
                h("b1", 15),
                h("b2", 15),
                h("b3", 15),
            ];
            order_by_preference(&mut v, seed);
            assert_eq!(v[0].name, "a");
            assert_eq!(v[4].name, "c");
            let mid: std::collections::BTreeSet<_> =
                v[1..4].iter().map(|h| h.name.clone()).collect();
            assert_eq!(mid.len(), 3);
            seen_first.insert(v[1].name.clone());
        }
        assert_eq!(seen_first.len(), 3, "equal preferences are shuffled");
    }

    #[test]
    fn error_classes() {
        assert!(!DnsError::NullMx("x".into()).is_transient());
        assert_eq!(DnsError::NullMx("x".into()).dsn(), "5.1.10");
        let nx = DnsError::NotFound {
            name: "x".into(),
            rtype: "MX",
        };
        assert!(!nx.is_transient());
        assert_eq!(nx.dsn(), "5.1.2");
        let t = DnsError::Temporary {
            name: "x".into(),
            rtype: "MX",
            detail: "SERVFAIL".into(),
        };
        assert!(t.is_transient());
        assert!(fqdn("").is_err());
        assert_eq!(fqdn("Example.com").unwrap().to_ascii(), "example.com.");
        assert_eq!(
            fqdn("bücher.example").unwrap().to_ascii(),
            "xn--bcher-kva.example."
        );
    }
}
