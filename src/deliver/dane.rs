//! DANE on delivery (RFC 7672), as Postfix's `smtp_tls_security_level =
//! dane` with `smtp_dns_support_level = dnssec`: which MX hosts must show a
//! certificate matching their TLSA records, found through the configured
//! resolver's DNSSEC verdict (the AD bit).
//!
//! ringmail does not validate DNSSEC itself. Like Postfix, it trusts the AD
//! bit of the answers of the resolver it is configured to ask (`[dns]`
//! `servers` or /etc/resolv.conf), which must validate and be reached over
//! a trusted path (a resolver on the same host). Its queries set the AD bit
//! and EDNS's DO bit, so the resolver reports what it validated.
//!
//! The decision for one MX host ([`decide`], and [`decide_insecure_mx`]
//! when the MX RRset is not authenticated):
//!
//! | what DNS says | `dane` | `dane-only` |
//! |---|---|---|
//! | MX RRset (or the host's address, without MX) not authenticated | the rows below, a match logged `Trusted` (`smtp_tls_dane_insecure_mx_policy = dane`, the default); usable records mean `encrypt` (`= encrypt`); `may` (`= may`) | defer |
//! | the MX host's address records not authenticated | `may` | defer |
//! | no TLSA records (NXDOMAIN or NODATA) | `may` | defer |
//! | TLSA records, not authenticated | `may` | defer |
//! | TLSA lookup failed (SERVFAIL, timeout) | skip the host (defer) | skip the host (defer) |
//! | authenticated TLSA records, none usable | `encrypt` | defer |
//! | authenticated usable TLSA records | TLS required, chain matched | same |
//!
//! A TLSA lookup failure skips the host rather than downgrading (RFC 7672
//! section 2.2: an attacker could otherwise make the lookup fail); a server
//! whose certificate matches no usable record, or that offers no STARTTLS,
//! defers the mail with a `DANE:` reason and never gets it in plaintext.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, NameServerConfigGroup, ResolverOpts};
use hickory_resolver::name_server::{NameServerPool, TokioConnectionProvider};
use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::{
    DnsHandle, DnsRequest, DnsRequestOptions, FirstAnswer, Protocol,
};
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::Name;

use crate::config::{DaneInsecureMxPolicy, DnsConfig, TlsSecurityLevel};
use crate::model::Nexthop;
use crate::rt::tls::dane::{DaneVerifier, Tlsa};

use super::DeliverError;

/// Longest time an answer is kept, whatever its TTL.
const MAX_CACHE_TTL: Duration = Duration::from_secs(300);

/// How long a negative answer (NXDOMAIN, NODATA) is kept.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);

/// Most answers kept; the cache is emptied when it is full.
const CACHE_SIZE: usize = 4096;

/// Why DANE stops delivery to a host or a next hop. Every one is
/// temporary: DANE defers, it never bounces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaneLookupError {
    /// The TLSA lookup of a host with an authenticated MX RRset failed.
    #[error("DANE: TLSA lookup error for {name}: {detail}")]
    TlsaLookup {
        /// `_PORT._tcp.HOST`.
        name: String,
        /// What the resolver said.
        detail: String,
    },
    /// The DNSSEC status of the next hop's MX RRset (or address) could not
    /// be learnt.
    #[error("DANE: DNSSEC status lookup error for {name} type={rtype}: {detail}")]
    Lookup {
        /// The name asked for.
        name: String,
        /// The record type asked for.
        rtype: &'static str,
        /// What the resolver said.
        detail: String,
    },
    /// `dane-only`: the host has no usable authenticated TLSA records.
    #[error("DANE: TLS level dane-only, but {host} has {why}")]
    Required {
        /// The MX host.
        host: String,
        /// `no DNSSEC-validated MX RRset`, `no TLSA records`, ...
        why: &'static str,
    },
    /// The host has usable TLSA records but does not offer STARTTLS (or
    /// refused it).
    #[error("DANE: {name} has usable TLSA records, so TLS is required, but {what} host {peer}")]
    TlsRequired {
        /// `_PORT._tcp.HOST`.
        name: String,
        /// `was not offered by` or `refused STARTTLS at`.
        what: &'static str,
        /// `host[ip]`.
        peer: String,
    },
    /// The server's certificate chain matches none of the usable records.
    #[error("Cannot start TLS: handshake failure with {peer}: {reason}")]
    NotVerified {
        /// `host[ip]`.
        peer: String,
        /// The verifier's reason (begins with `DANE:`).
        reason: String,
    },
    /// The resolver for DNSSEC lookups could not be set up.
    #[error("DANE: cannot set up the DNSSEC resolver: {0}")]
    Setup(String),
}

impl DaneLookupError {
    /// Always true: DANE failures defer (RFC 7672 section 2.2); the DNS or
    /// the server may be fixed.
    pub fn is_transient(&self) -> bool {
        true
    }

    /// The enhanced status code: 4.7.4 when STARTTLS is missing, 4.7.5 for
    /// the rest (as Postfix's TLS failures).
    pub fn dsn(&self) -> &'static str {
        match self {
            DaneLookupError::TlsRequired { .. } => "4.7.4",
            _ => "4.7.5",
        }
    }
}

/// What DNS says about one MX host, for [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// The MX RRset (or, without MX, the host's address) is not
    /// authenticated: TLSA records were not looked up.
    InsecureMx,
    /// The MX RRset is authenticated, the host's address records are not:
    /// TLSA records were not looked up.
    InsecureHost,
    /// No TLSA records (NXDOMAIN or NODATA).
    NoTlsa,
    /// TLSA records, but the answer was not authenticated.
    InsecureTlsa,
    /// Authenticated TLSA records (usable or not).
    Tlsa(Vec<Tlsa>),
    /// The TLSA lookup failed (SERVFAIL, timeout, ...).
    LookupFailed(String),
}

/// The TLS policy of one MX host under `dane` or `dane-only`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPolicy {
    /// A plain level: `may` or `encrypt`.
    Level(TlsSecurityLevel),
    /// TLS required, and the chain must match one of these usable records.
    Dane(Vec<Tlsa>),
    /// As [`HostPolicy::Dane`], at a host from an MX RRset DNSSEC did not
    /// authenticate (`smtp_tls_dane_insecure_mx_policy = dane`): a match is
    /// `Trusted`, not `Verified`, as the host name could have been forged.
    DaneInsecureMx(Vec<Tlsa>),
}

/// The policy of MX host `host` (TLSA owner `tlsa_name`) at `level`
/// (`dane` or `dane-only`; other levels are returned unchanged), given
/// what DNS found (the table at the top of this module).
pub fn decide(
    level: TlsSecurityLevel,
    host: &str,
    tlsa_name: &str,
    found: Found,
) -> Result<HostPolicy, DaneLookupError> {
    if !level.is_dane() {
        return Ok(HostPolicy::Level(level));
    }
    let only = level == TlsSecurityLevel::DaneOnly;
    let may_or = |why: &'static str| {
        if only {
            Err(DaneLookupError::Required {
                host: host.to_string(),
                why,
            })
        } else {
            Ok(HostPolicy::Level(TlsSecurityLevel::May))
        }
    };
    match found {
        Found::InsecureMx => may_or("no DNSSEC-validated MX RRset"),
        Found::InsecureHost => may_or("no DNSSEC-validated address records"),
        Found::NoTlsa => may_or("no TLSA records"),
        Found::InsecureTlsa => may_or("no DNSSEC-validated TLSA records"),
        Found::LookupFailed(detail) => Err(DaneLookupError::TlsaLookup {
            name: tlsa_name.to_string(),
            detail,
        }),
        Found::Tlsa(records) => {
            let usable: Vec<Tlsa> = records.into_iter().filter(Tlsa::is_usable).collect();
            if !usable.is_empty() {
                Ok(HostPolicy::Dane(usable))
            } else if only {
                Err(DaneLookupError::Required {
                    host: host.to_string(),
                    why: "no usable TLSA records",
                })
            } else {
                Ok(HostPolicy::Level(TlsSecurityLevel::Encrypt))
            }
        }
    }
}

/// The policy of MX host `host` at `level` when the MX RRset that named
/// it is not authenticated: `found` is what DNS says about the host itself
/// (looked up only when [`looks_up_insecure_mx`] says so). `dane-only`
/// defers; `dane` follows `insecure_mx` (Postfix's
/// `smtp_tls_dane_insecure_mx_policy`): `may` ignores the records,
/// `encrypt` makes authenticated TLSA records require TLS, `dane` uses
/// them as with an authenticated MX RRset, reported
/// [`HostPolicy::DaneInsecureMx`].
pub fn decide_insecure_mx(
    level: TlsSecurityLevel,
    insecure_mx: DaneInsecureMxPolicy,
    host: &str,
    tlsa_name: &str,
    found: Found,
) -> Result<HostPolicy, DaneLookupError> {
    if !looks_up_insecure_mx(level, insecure_mx) {
        return decide(level, host, tlsa_name, Found::InsecureMx);
    }
    match decide(level, host, tlsa_name, found)? {
        HostPolicy::Dane(records) | HostPolicy::DaneInsecureMx(records) => Ok(match insecure_mx {
            DaneInsecureMxPolicy::Dane => HostPolicy::DaneInsecureMx(records),
            _ => HostPolicy::Level(TlsSecurityLevel::Encrypt),
        }),
        level => Ok(level),
    }
}

/// True when a host from an unauthenticated MX RRset has its own address
/// and TLSA records looked up at `level`: `dane` with an insecure-MX
/// policy other than `may`.
pub fn looks_up_insecure_mx(level: TlsSecurityLevel, insecure_mx: DaneInsecureMxPolicy) -> bool {
    level == TlsSecurityLevel::Dane && insecure_mx != DaneInsecureMxPolicy::May
}

/// `_PORT._tcp.HOST`, the owner of a host's TLSA records.
pub fn tlsa_name(host: &str, port: u16) -> String {
    format!("_{port}._tcp.{}", host.trim_end_matches('.'))
}

/// A session failure at a host with usable TLSA records, said in DANE's
/// words: a refused chain gets the verifier's reason, a missing STARTTLS
/// names the records that require it. Other failures are unchanged.
pub fn explain(e: DeliverError, verifier: &DaneVerifier, tlsa_name: &str) -> DeliverError {
    match e {
        DeliverError::TlsHandshake { peer, detail } => match verifier.take_refusal() {
            Some(reason) => {
                let reason = reason.to_string();
                tracing::info!(target: "smtp", "{peer}: {reason}");
                DeliverError::Dane(DaneLookupError::NotVerified { peer, reason })
            }
            None => DeliverError::TlsHandshake { peer, detail },
        },
        DeliverError::TlsRequired { peer, what } => {
            DeliverError::Dane(DaneLookupError::TlsRequired {
                name: tlsa_name.to_string(),
                what,
                peer,
            })
        }
        other => other,
    }
}

/// One answer, as far as DANE cares.
#[derive(Clone, Debug)]
enum Answer {
    /// Records of the type asked for (after CNAMEs), the AD bit, and
    /// the name the CNAME chain ended at, if there was one.
    Records {
        tlsa: Vec<Tlsa>,
        authentic: bool,
        canonical: Option<String>,
    },
    /// The name exists without records of the type.
    NoData,
    /// The name does not exist.
    NxDomain,
}

/// DNS lookups that report the resolver's DNSSEC verdict: one per shard,
/// with a small cache of its own (hickory's lookups drop the AD bit).
pub struct DaneDns {
    pool: NameServerPool<TokioConnectionProvider>,
    cache: RefCell<HashMap<(String, RecordType), (Instant, Answer)>>,
}

impl DaneDns {
    /// Asks `config`'s servers, or those of /etc/resolv.conf when none
    /// are given (the same servers as the other lookups).
    pub fn new(config: &DnsConfig) -> Result<DaneDns, DaneLookupError> {
        let servers = config.server_addrs().map_err(DaneLookupError::Setup)?;
        let mut group = NameServerConfigGroup::new();
        if servers.is_empty() {
            let (system, _) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| DaneLookupError::Setup(e.to_string()))?;
            for ns in system.name_servers() {
                group.push(ns.clone());
            }
        } else {
            for addr in servers {
                group.push(NameServerConfig::new(addr, Protocol::Udp));
                group.push(NameServerConfig::new(addr, Protocol::Tcp));
            }
        }
        let mut opts = ResolverOpts::default();
        opts.timeout = config.timeout();
        opts.attempts = config.attempts;
        Ok(DaneDns {
            pool: NameServerPool::from_config(group, opts, TokioConnectionProvider::default()),
            cache: RefCell::new(HashMap::new()),
        })
    }

    /// True when the resolver authenticated what names `hop`'s hosts: the
    /// MX RRset; without MX records, the domain's address records; for a
    /// next hop without MX lookup, the host's address records (never for
    /// an IP address).
    pub async fn mx_secure(&self, hop: &Nexthop) -> Result<bool, DaneLookupError> {
        if hop.host.parse::<IpAddr>().is_ok() {
            return Ok(false);
        }
        if hop.mx_lookup {
            match self.query(&hop.host, RecordType::MX).await? {
                Answer::Records { authentic, .. } => return Ok(authentic),
                Answer::NxDomain => return Ok(false),
                Answer::NoData => {}
            }
        }
        Ok(self.host_bases(&hop.host).await?.is_some())
    }

    /// The TLSA base domains of MX host `host` (RFC 7672 section 2.2.2),
    /// or `None` when the resolver did not authenticate its address
    /// records (its A records, or without them its AAAA records): TLSA
    /// records are looked up only for hosts with secure addresses, as
    /// Postfix does. A host that is an alias (CNAME) has two bases, the
    /// name the chain ends at first, then the host's own name.
    pub async fn host_bases(&self, host: &str) -> Result<Option<Vec<String>>, DaneLookupError> {
        if host.parse::<IpAddr>().is_ok() {
            return Ok(None);
        }
        let answer = match self.query(host, RecordType::A).await? {
            a @ Answer::Records { .. } => a,
            _ => self.query(host, RecordType::AAAA).await?,
        };
        let own = canon(host);
        Ok(match answer {
            Answer::Records {
                authentic: true,
                canonical: Some(target),
                ..
            } if target != own => Some(vec![target, own]),
            Answer::Records {
                authentic: true, ..
            } => Some(vec![own]),
            _ => None,
        })
    }

    /// The TLSA records at `name` (`_PORT._tcp.HOST`).
    pub async fn tlsa(&self, name: &str) -> Found {
        match self.query(name, RecordType::TLSA).await {
            Ok(Answer::Records {
                tlsa, authentic, ..
            }) => {
                if !authentic {
                    Found::InsecureTlsa
                } else if tlsa.is_empty() {
                    Found::NoTlsa
                } else {
                    Found::Tlsa(tlsa)
                }
            }
            Ok(Answer::NoData | Answer::NxDomain) => Found::NoTlsa,
            Err(DaneLookupError::Lookup { detail, .. }) => Found::LookupFailed(detail),
            Err(e) => Found::LookupFailed(e.to_string()),
        }
    }

    /// One query with AD and DO set, through the cache.
    async fn query(&self, name: &str, rtype: RecordType) -> Result<Answer, DaneLookupError> {
        let key = (name.trim_end_matches('.').to_ascii_lowercase(), rtype);
        let now = Instant::now();
        if let Some((until, answer)) = self.cache.borrow().get(&key) {
            if *until > now {
                return Ok(answer.clone());
            }
        }
        let (answer, ttl) = self.ask(&key.0, rtype).await?;
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= CACHE_SIZE {
            cache.clear();
        }
        cache.insert(key, (now + ttl.min(MAX_CACHE_TTL), answer.clone()));
        Ok(answer)
    }

    async fn ask(
        &self,
        name: &str,
        rtype: RecordType,
    ) -> Result<(Answer, Duration), DaneLookupError> {
        let failed = |detail: String| DaneLookupError::Lookup {
            name: name.to_string(),
            rtype: rtype_name(rtype),
            detail,
        };
        let msg = query_message(name, rtype).map_err(failed)?;
        let request = DnsRequest::new(msg, DnsRequestOptions::default());
        match self.pool.send(request).first_answer().await {
            Ok(response) => {
                let authentic = response.authentic_data();
                let mut tlsa = Vec::new();
                let mut any = false;
                let mut ttl = MAX_CACHE_TTL;
                let mut aliases = HashMap::new();
                for r in response.answers() {
                    if let RData::CNAME(target) = r.data() {
                        aliases.insert(canon(&r.name().to_ascii()), canon(&target.0.to_ascii()));
                    }
                    if r.record_type() != rtype {
                        continue;
                    }
                    any = true;
                    ttl = ttl.min(Duration::from_secs(u64::from(r.ttl())));
                    if let RData::TLSA(t) = r.data() {
                        tlsa.push(Tlsa {
                            usage: u8::from(t.cert_usage()),
                            selector: u8::from(t.selector()),
                            matching: u8::from(t.matching()),
                            data: t.cert_data().to_vec(),
                        });
                    }
                }
                if !any {
                    return Ok((Answer::NoData, NEGATIVE_TTL));
                }
                let canonical = follow(&aliases, name);
                Ok((
                    Answer::Records {
                        tlsa,
                        authentic,
                        canonical,
                    },
                    ttl,
                ))
            }
            Err(e) => match e.kind() {
                ProtoErrorKind::NoRecordsFound { response_code, .. } => match *response_code {
                    ResponseCode::NXDomain => Ok((Answer::NxDomain, NEGATIVE_TTL)),
                    ResponseCode::NoError => Ok((Answer::NoData, NEGATIVE_TTL)),
                    code => Err(failed(format!("server answered {code}"))),
                },
                _ => Err(failed(e.to_string())),
            },
        }
    }
}

/// A name in lower case without the final dot.
fn canon(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Where the CNAME chain `aliases` (alias → target, canonical names)
/// leads from `name`, if anywhere (at most 8 links; a loop ends it).
fn follow(aliases: &HashMap<String, String>, name: &str) -> Option<String> {
    let mut at = canon(name);
    let mut moved = false;
    for _ in 0..8 {
        match aliases.get(&at) {
            Some(next) if *next != at => {
                at = next.clone();
                moved = true;
            }
            _ => break,
        }
    }
    moved.then_some(at)
}

/// A recursive query for `name` (absolute) and `rtype` with the AD bit
/// and EDNS's DO bit set (RFC 6840 section 5.7, RFC 3225), so that a
/// validating resolver reports whether it authenticated the answer.
fn query_message(name: &str, rtype: RecordType) -> Result<Message, String> {
    let mut qname = Name::from_utf8(name).map_err(|e| format!("bad name: {e}"))?;
    qname.set_fqdn(true);
    let mut msg = Message::new();
    msg.set_id(fastrand::u16(..))
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_authentic_data(true)
        .add_query(Query::query(qname, rtype));
    let mut edns = Edns::new();
    edns.set_dnssec_ok(true).set_max_payload(1232);
    msg.set_edns(edns);
    Ok(msg)
}

fn rtype_name(rtype: RecordType) -> &'static str {
    match rtype {
        RecordType::MX => "MX",
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::TLSA => "TLSA",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(usage: u8, selector: u8, matching: u8) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data: vec![7; 32],
        }
    }

    const NAME: &str = "_25._tcp.mx.test";

    fn dane(found: Found) -> Result<HostPolicy, DaneLookupError> {
        decide(TlsSecurityLevel::Dane, "mx.test", NAME, found)
    }

    fn only(found: Found) -> Result<HostPolicy, DaneLookupError> {
        decide(TlsSecurityLevel::DaneOnly, "mx.test", NAME, found)
    }

    const MAY: HostPolicy = HostPolicy::Level(TlsSecurityLevel::May);

    #[test]
    fn dane_level_decision_table() {
        assert_eq!(dane(Found::InsecureMx), Ok(MAY));
        assert_eq!(dane(Found::InsecureHost), Ok(MAY));
        assert_eq!(dane(Found::NoTlsa), Ok(MAY));
        assert_eq!(dane(Found::InsecureTlsa), Ok(MAY));
        let e = dane(Found::LookupFailed("server answered SERVFAIL".into())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "DANE: TLSA lookup error for _25._tcp.mx.test: server answered SERVFAIL"
        );
        assert!(e.is_transient());
        assert_eq!(e.dsn(), "4.7.5");
        assert_eq!(
            dane(Found::Tlsa(vec![rec(1, 1, 1), rec(0, 0, 1)])),
            Ok(HostPolicy::Level(TlsSecurityLevel::Encrypt)),
            "only unusable records: encrypt"
        );
        assert_eq!(
            dane(Found::Tlsa(vec![rec(1, 1, 1), rec(3, 1, 1), rec(2, 0, 1)])),
            Ok(HostPolicy::Dane(vec![rec(3, 1, 1), rec(2, 0, 1)])),
            "the usable records only"
        );
    }

    #[test]
    fn dane_only_defers_where_dane_downgrades() {
        for found in [
            Found::InsecureMx,
            Found::InsecureHost,
            Found::NoTlsa,
            Found::InsecureTlsa,
            Found::Tlsa(vec![rec(0, 1, 1)]),
        ] {
            let e = only(found.clone()).unwrap_err();
            assert!(matches!(e, DaneLookupError::Required { .. }), "{found:?}");
            assert!(e
                .to_string()
                .starts_with("DANE: TLS level dane-only, but mx.test has "));
        }
        assert_eq!(
            only(Found::Tlsa(vec![rec(3, 1, 1)])),
            Ok(HostPolicy::Dane(vec![rec(3, 1, 1)]))
        );
    }

    #[test]
    fn insecure_mx_follows_its_policy() {
        let usable = || Found::Tlsa(vec![rec(1, 1, 1), rec(3, 1, 1)]);
        let insecure = |policy, found| {
            decide_insecure_mx(TlsSecurityLevel::Dane, policy, "mx.test", NAME, found)
        };
        // Postfix's default: the host's own authenticated records count,
        // the match is reported as such (Trusted).
        assert_eq!(
            insecure(DaneInsecureMxPolicy::Dane, usable()),
            Ok(HostPolicy::DaneInsecureMx(vec![rec(3, 1, 1)]))
        );
        assert_eq!(
            insecure(DaneInsecureMxPolicy::Encrypt, usable()),
            Ok(HostPolicy::Level(TlsSecurityLevel::Encrypt))
        );
        assert_eq!(insecure(DaneInsecureMxPolicy::May, usable()), Ok(MAY));
        // What the host's own records say otherwise applies as it would.
        for policy in [DaneInsecureMxPolicy::Dane, DaneInsecureMxPolicy::Encrypt] {
            assert_eq!(insecure(policy, Found::InsecureHost), Ok(MAY));
            assert_eq!(insecure(policy, Found::NoTlsa), Ok(MAY));
            assert_eq!(insecure(policy, Found::InsecureTlsa), Ok(MAY));
            assert_eq!(
                insecure(policy, Found::Tlsa(vec![rec(0, 1, 1)])),
                Ok(HostPolicy::Level(TlsSecurityLevel::Encrypt))
            );
            assert!(insecure(policy, Found::LookupFailed("SERVFAIL".into())).is_err());
            assert!(looks_up_insecure_mx(TlsSecurityLevel::Dane, policy));
        }
        assert!(!looks_up_insecure_mx(
            TlsSecurityLevel::Dane,
            DaneInsecureMxPolicy::May
        ));
        // dane-only never takes a host of an unauthenticated MX RRset.
        assert!(!looks_up_insecure_mx(
            TlsSecurityLevel::DaneOnly,
            DaneInsecureMxPolicy::Dane
        ));
        let e = decide_insecure_mx(
            TlsSecurityLevel::DaneOnly,
            DaneInsecureMxPolicy::Dane,
            "mx.test",
            NAME,
            usable(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("no DNSSEC-validated MX RRset"),
            "{e}"
        );
    }

    #[test]
    fn other_levels_pass_through() {
        for level in [
            TlsSecurityLevel::None,
            TlsSecurityLevel::May,
            TlsSecurityLevel::Encrypt,
            TlsSecurityLevel::Verify,
        ] {
            assert_eq!(
                decide(level, "mx.test", NAME, Found::LookupFailed("x".into())),
                Ok(HostPolicy::Level(level))
            );
        }
        assert_eq!(tlsa_name("mx.test.", 25), NAME);
    }

    #[test]
    fn queries_ask_for_the_dnssec_verdict() {
        let m = query_message("_25._tcp.MX.test", RecordType::TLSA).unwrap();
        assert!(m.authentic_data() && m.recursion_desired());
        let edns = m.extensions().as_ref().unwrap();
        assert!(edns.flags().dnssec_ok);
        assert_eq!(m.queries()[0].name().to_ascii(), "_25._tcp.mx.test.");
        assert_eq!(m.queries()[0].query_type(), RecordType::TLSA);
        // The bytes on the wire carry both bits.
        let wire = m.to_vec().unwrap();
        let back = Message::from_vec(&wire).unwrap();
        assert!(back.authentic_data());
        assert!(back.extensions().as_ref().unwrap().flags().dnssec_ok);
        assert!(query_message("bad..name", RecordType::MX).is_err());
    }

    #[test]
    fn cname_chains_are_followed() {
        let aliases: HashMap<String, String> = [
            ("mx.test".to_string(), "a.test".to_string()),
            ("a.test".to_string(), "b.test".to_string()),
            ("loop.test".to_string(), "loop2.test".to_string()),
            ("loop2.test".to_string(), "loop.test".to_string()),
        ]
        .into_iter()
        .collect();
        assert_eq!(follow(&aliases, "MX.test."), Some("b.test".into()));
        assert_eq!(follow(&aliases, "b.test"), None);
        assert_eq!(follow(&aliases, "other.test"), None);
        // A loop ends after a bounded number of links.
        assert!(follow(&aliases, "loop.test").is_some());
    }

    #[test]
    fn missing_starttls_is_said_in_dane_words() {
        let dc = crate::rt::tls::dane::dane_client_config(&[rec(3, 1, 1)], "mx.test", &[], true)
            .unwrap();
        let e = explain(
            DeliverError::TlsRequired {
                peer: "mx.test[127.0.0.1]".into(),
                what: "was not offered by",
            },
            &dc.verifier,
            NAME,
        );
        assert_eq!(
            e.to_string(),
            "DANE: _25._tcp.mx.test has usable TLSA records, so TLS is required, \
             but was not offered by host mx.test[127.0.0.1]"
        );
        assert_eq!(e.dsn(), "4.7.4");
        assert!(e.is_transient());
        // A handshake failure without a refusal by the verifier stays as is.
        let e = explain(
            DeliverError::TlsHandshake {
                peer: "mx.test[127.0.0.1]".into(),
                detail: "timed out".into(),
            },
            &dc.verifier,
            NAME,
        );
        assert!(matches!(e, DeliverError::TlsHandshake { .. }));
    }
}
