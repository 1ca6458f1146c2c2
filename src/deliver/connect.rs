//! Opening a session to a next hop: its hosts (MX records, or the host
//! itself), their addresses, one connection attempt after another until
//! one works, with the hop's TLS and AUTH policy.
//!
//! As Postfix: a connection failure, a refused greeting or a timeout moves
//! on to the next address, then to the next MX host; `inet_protocols = all`
//! tries a host's IPv6 addresses before its IPv4 ones, so an unreachable
//! IPv6 network costs one failed connect per host. Under TLS level `may`, a
//! failed handshake is retried at once on the same address in plaintext.
//! At most [`MAX_ADDRESSES`] addresses are tried per attempt
//! (`smtp_mx_address_limit`). Under `dane` and `dane-only` each host's
//! level comes from its TLSA records ([`super::dane`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{CertMatch, DaneInsecureMxPolicy, DnsSupportLevel, TlsSecurityLevel};
use crate::model::Nexthop;
use crate::rt::tls::dane::{dane_client_config, DaneVerifier};
use crate::rt::tls::names::{names_client_config, NamesAnchors, NamesVerifier};
use crate::rt::tls::{client_config, TlsLevel};

use super::dane::{self, DaneDns, DaneLookupError, HostPolicy};
use super::dns::{Dns, DnsError, MailHost};
use super::mta_sts::{Applied, MtaSts};
use super::route::HopPolicy;
use super::session::{Security, Session};
use super::tls_names;
use super::{DeliverError, DeliveryConfig};

/// Most addresses tried for one next hop in one attempt.
pub const MAX_ADDRESSES: usize = 5;

/// Opens sessions to next hops: one per shard, holding the shard's DNS
/// cache and TLS client configurations.
pub struct Connector {
    dns: Result<Dns, DnsError>,
    ca_file: Option<PathBuf>,
    tls_configs: RefCell<HashMap<TlsSecurityLevel, Arc<rustls::ClientConfig>>>,
    sasl_plaintext: bool,
    /// DNSSEC-aware lookups, at `smtp_dns_support_level = dnssec`.
    dane: Option<Result<DaneDns, DaneLookupError>>,
    /// A DANE level without `dnssec` was reported.
    dane_warned: Cell<bool>,
    /// `smtp_tls_dane_insecure_mx_policy`.
    dane_insecure_mx: DaneInsecureMxPolicy,
    /// `smtp_tls_verify_cert_match`, `smtp_tls_secure_cert_match`.
    verify_cert_match: Vec<CertMatch>,
    secure_cert_match: Vec<CertMatch>,
    /// The trust anchors of name lists, loaded at their first use.
    names_anchors: RefCell<Option<NamesAnchors>>,
    mta_sts: MtaSts,
}

impl Connector {
    /// A connector for `cfg`. Must be called inside the shard's runtime
    /// (the resolver's tasks run there). A resolver that cannot be set up
    /// (unreadable resolv.conf) defers MX delivery with that reason.
    pub fn new(cfg: &DeliveryConfig) -> Connector {
        let dns = Dns::new(&cfg.dns, cfg.inet_protocols);
        if let Err(e) = &dns {
            tracing::warn!(target: "smtp", "{e}");
        }
        Connector {
            dns,
            ca_file: cfg.tls_ca_file.clone(),
            tls_configs: RefCell::new(HashMap::new()),
            sasl_plaintext: cfg.sasl_plaintext,
            mta_sts: MtaSts::new(&cfg.mta_sts),
            dane: (cfg.dns_support_level == DnsSupportLevel::Dnssec)
                .then(|| DaneDns::new(&cfg.dns)),
            dane_warned: Cell::new(false),
            dane_insecure_mx: cfg.dane_insecure_mx,
            verify_cert_match: cfg.verify_cert_match.clone(),
            secure_cert_match: cfg.secure_cert_match.clone(),
            names_anchors: RefCell::new(None),
        }
    }

    /// The MX host names of `domain` (the domain itself for an implicit
    /// MX), for naming its shaping site; `None` when the lookup fails.
    pub async fn mx_names(&self, domain: &str) -> Option<Vec<String>> {
        let dns = self.dns.as_ref().ok()?;
        let hosts = dns.mail_hosts(domain).await.ok()?;
        Some(hosts.into_iter().map(|h| h.name).collect())
    }

    /// The DNSSEC-aware resolver when `level` is a DANE level and
    /// `smtp_dns_support_level = dnssec`; without `dnssec`, DANE levels
    /// act as `may` (warned once).
    fn dane_dns(&self, level: TlsSecurityLevel) -> Result<Option<&DaneDns>, DeliverError> {
        if !level.is_dane() {
            return Ok(None);
        }
        match &self.dane {
            Some(Ok(d)) => Ok(Some(d)),
            Some(Err(e)) => Err(e.clone().into()),
            None => {
                if !self.dane_warned.replace(true) {
                    tracing::warn!(target: "smtp", "TLS level {level} needs smtp_dns_support_level = dnssec; using may");
                }
                Ok(None)
            }
        }
    }

    /// The TLS client configuration for `level`, built once.
    fn tls_config(
        &self,
        level: TlsSecurityLevel,
    ) -> Result<Option<Arc<rustls::ClientConfig>>, DeliverError> {
        let rt_level = match level {
            TlsSecurityLevel::None => return Ok(None),
            // Without DNSSEC support, DANE levels act as `may`.
            TlsSecurityLevel::May | TlsSecurityLevel::Dane | TlsSecurityLevel::DaneOnly => {
                TlsLevel::May
            }
            TlsSecurityLevel::Encrypt => TlsLevel::Encrypt,
            // `secure` gets a configuration per host (`names_tls`); as a
            // plain level it is at least `verify`.
            TlsSecurityLevel::Verify | TlsSecurityLevel::Secure => TlsLevel::Verify,
        };
        if let Some(c) = self.tls_configs.borrow().get(&level) {
            return Ok(Some(Arc::clone(c)));
        }
        let c = client_config(rt_level, self.ca_file.as_deref()).map_err(|e| {
            DeliverError::TlsHandshake {
                peer: "any".into(),
                detail: e.to_string(),
            }
        })?;
        self.tls_configs.borrow_mut().insert(level, Arc::clone(&c));
        Ok(Some(c))
    }

    /// The hosts to try for `hop`, best first.
    pub(super) async fn hosts(&self, hop: &Nexthop) -> Result<Vec<MailHost>, DeliverError> {
        if !hop.mx_lookup {
            return Ok(vec![MailHost {
                name: hop.host.clone(),
                preference: 0,
            }]);
        }
        let dns = self
            .dns
            .as_ref()
            .map_err(|e| DeliverError::Dns(e.clone()))?;
        Ok(dns.mail_hosts(&hop.host).await?)
    }

    /// The MTA-STS policy for a connection to `hop` (see `mta_sts`).
    pub(super) async fn mta_sts(&self, hop: &Nexthop, policy: &HopPolicy) -> Option<Applied> {
        let dns = self.dns.as_ref().ok()?;
        self.mta_sts.applied(dns, hop, policy).await
    }

    /// Opens a session to the first host and address of `hop` that works.
    pub async fn open(
        &self,
        hop: &Nexthop,
        policy: &HopPolicy,
        cfg: &DeliveryConfig,
    ) -> Result<Session, DeliverError> {
        let hosts = self.hosts(hop).await?;
        // MTA-STS may narrow the hosts and raise the level to `verify`.
        let sts = self.mta_sts(hop, policy).await;
        let (hosts, level) = match &sts {
            Some(a) => (a.hosts(hosts)?, a.tls_level(policy.tls)),
            None => (hosts, policy.tls),
        };
        // A name list of the configured level, unless MTA-STS changed the
        // level (its `verify` checks the MX host's name, RFC 8461).
        let names = (level == policy.tls)
            .then(|| self.name_list(policy))
            .flatten();
        // Where DANE applies it decides per host, before MTA-STS (RFC 8461
        // section 2: MTA-STS must not override a failing DANE check).
        let plan = match (self.dane_dns(policy.tls)?, names) {
            (Some(d), _) => TlsPlan::Dane(d, d.mx_secure(hop).await?),
            (None, Some(list)) => TlsPlan::Names(list),
            (None, None) => TlsPlan::Fixed(self.level_tls(level)?),
        };
        let mut tried = 0;
        let mut failures = Failures::default();
        for host in hosts {
            if tried >= MAX_ADDRESSES {
                break;
            }
            let addrs = match &self.dns {
                Ok(dns) => dns.addresses(&host.name).await,
                Err(e) => match host.name.parse() {
                    Ok(ip) => Ok(vec![ip]),
                    Err(_) => Err(e.clone()),
                },
            };
            let addrs = match addrs {
                Ok(a) => a,
                Err(e) => {
                    failures.add(DeliverError::Dns(e));
                    continue;
                }
            };
            let host_tls = match &plan {
                TlsPlan::Fixed(t) => t.clone(),
                TlsPlan::Names(list) => match self.names_tls(list, &host.name, hop) {
                    Ok(t) => t,
                    Err(e) => {
                        failures.add(e);
                        continue;
                    }
                },
                TlsPlan::Dane(d, mx_secure) => {
                    match self
                        .dane_tls(d, *mx_secure, &host, hop, policy, sts.as_ref())
                        .await
                    {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::info!(target: "smtp", "{e}");
                            failures.add(e);
                            continue;
                        }
                    }
                }
            };
            for ip in addrs {
                if tried >= MAX_ADDRESSES {
                    break;
                }
                if policy
                    .source
                    .as_ref()
                    .is_some_and(|src| src.address.is_ipv4() != ip.is_ipv4())
                {
                    // A source of the other address family cannot reach it.
                    continue;
                }
                tried += 1;
                let addr = SocketAddr::new(ip, hop.port);
                let security = Security {
                    tls: host_tls.config.clone(),
                    tls_required: host_tls.required,
                    server_name: host_tls.sni.clone().unwrap_or_else(|| host.name.clone()),
                    sasl: policy.sasl.clone(),
                    sasl_plaintext: self.sasl_plaintext,
                    source: policy.source.clone(),
                };
                let opened = Session::open(&host.name, addr, cfg, &security).await;
                let opened = match (&host_tls.dane, &host_tls.names) {
                    (Some((verifier, name)), _) => {
                        opened.map_err(|e| dane::explain(e, verifier, name))
                    }
                    (None, Some(verifier)) => opened.map_err(|e| tls_names::explain(e, verifier)),
                    (None, None) => opened,
                };
                match opened {
                    Ok(s) => {
                        if let Some(a) = &sts {
                            a.check_session(&s);
                        }
                        return Ok(s);
                    }
                    Err(e @ DeliverError::TlsHandshake { .. }) if !security.tls_required => {
                        // `may`: the same server again, in plaintext.
                        tracing::info!(target: "smtp", "{e}; trying again without TLS");
                        let plain = Security {
                            tls: None,
                            ..security
                        };
                        match Session::open(&host.name, addr, cfg, &plain).await {
                            Ok(s) => {
                                if let Some(a) = &sts {
                                    a.check_session(&s);
                                }
                                return Ok(s);
                            }
                            Err(e) => failures.add(e),
                        }
                    }
                    Err(e) => {
                        if matches!(e, DeliverError::Connect { .. }) {
                            tracing::info!(target: "smtp", "{e}");
                        }
                        failures.add(e);
                    }
                }
            }
        }
        let e = failures.result(hop);
        Err(match &sts {
            Some(a) => a.explain(e),
            None => e,
        })
    }
}

/// The TLS settings of one host.
#[derive(Clone)]
struct HostTls {
    config: Option<Arc<rustls::ClientConfig>>,
    required: bool,
    /// The name to send as SNI instead of the host's (a DANE base domain).
    sni: Option<String>,
    /// Under DANE with usable records: the verifier and the TLSA owner.
    dane: Option<(Arc<DaneVerifier>, String)>,
    /// At `verify` or `secure` with a name list: its verifier.
    names: Option<Arc<NamesVerifier>>,
}

/// How the hosts of one next hop get their TLS settings.
enum TlsPlan<'a> {
    /// All alike, from the hop's level.
    Fixed(HostTls),
    /// `verify` or `secure` with this name list, resolved per host.
    Names(&'a [CertMatch]),
    /// Each from its TLSA records; whether the MX RRset is authenticated.
    Dane(&'a DaneDns, bool),
}

impl Connector {
    /// The TLS settings of a (non-DANE) level.
    fn level_tls(&self, level: TlsSecurityLevel) -> Result<HostTls, DeliverError> {
        Ok(HostTls {
            config: self.tls_config(level)?,
            required: matches!(
                level,
                TlsSecurityLevel::Encrypt | TlsSecurityLevel::Verify | TlsSecurityLevel::Secure
            ),
            sni: None,
            dane: None,
            names: None,
        })
    }

    /// The certificate name list `policy`'s level checks: `secure`, or
    /// `verify` beyond the host's own name (see [`tls_names::list_for`]).
    fn name_list<'a>(&'a self, policy: &'a HopPolicy) -> Option<&'a [CertMatch]> {
        tls_names::list_for(
            policy.tls,
            policy.cert_match.as_deref(),
            &self.verify_cert_match,
            &self.secure_cert_match,
        )
    }

    /// True when `policy`'s level checks a list of certificate names.
    pub(super) fn checks_names(&self, policy: &HopPolicy) -> bool {
        self.name_list(policy).is_some()
    }

    /// The TLS settings for `host` of `hop` at `verify` or `secure` with
    /// the name list `list`: TLS required, the chain verified to the trust
    /// anchors and one of the list's names presented.
    fn names_tls(
        &self,
        list: &[CertMatch],
        host: &str,
        hop: &Nexthop,
    ) -> Result<HostTls, DeliverError> {
        let rules = tls_names::rules(list, host, hop);
        let failed = |e: crate::rt::tls::TlsError| DeliverError::TlsHandshake {
            peer: host.to_string(),
            detail: e.to_string(),
        };
        let cached = self.names_anchors.borrow().clone();
        let anchors = match cached {
            Some(a) => a,
            None => {
                let a = NamesAnchors::load(self.ca_file.as_deref()).map_err(failed)?;
                *self.names_anchors.borrow_mut() = Some(a.clone());
                a
            }
        };
        let (config, verifier) = names_client_config(&anchors, rules).map_err(failed)?;
        Ok(HostTls {
            config: Some(config),
            required: true,
            sni: None,
            dane: None,
            names: Some(verifier),
        })
    }

    /// The TLS settings for `host` of `hop` under `dane` or `dane-only`:
    /// what its TLSA records make of the level. For a host that is an
    /// alias, the records at the name it leads to come first, then those
    /// at its own name (RFC 7672 section 2.2.2); the one that has records
    /// is the TLSA base domain, sent as SNI and checked by DANE-TA. Where
    /// the records leave a plain level, an MTA-STS policy may raise it.
    async fn dane_tls(
        &self,
        dane_dns: &DaneDns,
        mx_secure: bool,
        host: &MailHost,
        hop: &Nexthop,
        policy: &HopPolicy,
        sts: Option<&Applied>,
    ) -> Result<HostTls, DeliverError> {
        let mut base = host.name.clone();
        let found = if !mx_secure && !dane::looks_up_insecure_mx(policy.tls, self.dane_insecure_mx)
        {
            dane::Found::InsecureMx
        } else {
            match dane_dns.host_bases(&host.name).await? {
                None => dane::Found::InsecureHost,
                Some(bases) => {
                    let mut found = dane::Found::NoTlsa;
                    for b in bases {
                        found = dane_dns.tlsa(&dane::tlsa_name(&b, hop.port)).await;
                        base = b;
                        if !matches!(found, dane::Found::NoTlsa | dane::Found::InsecureTlsa) {
                            break;
                        }
                    }
                    found
                }
            }
        };
        let name = dane::tlsa_name(&base, hop.port);
        let decided = if mx_secure {
            dane::decide(policy.tls, &host.name, &name, found)?
        } else {
            dane::decide_insecure_mx(policy.tls, self.dane_insecure_mx, &host.name, &name, found)?
        };
        match decided {
            HostPolicy::Level(level) => self.level_tls(sts.map_or(level, |a| a.tls_level(level))),
            HostPolicy::Dane(records) | HostPolicy::DaneInsecureMx(records) => {
                let others = [host.name.as_str(), hop.host.as_str()];
                let dc = dane_client_config(&records, &base, &others, mx_secure).map_err(|e| {
                    DeliverError::TlsHandshake {
                        peer: host.name.clone(),
                        detail: e.to_string(),
                    }
                })?;
                Ok(HostTls {
                    config: Some(dc.config),
                    required: true,
                    sni: Some(base),
                    dane: Some((dc.verifier, name)),
                    names: None,
                })
            }
        }
    }
}

/// The failures of one attempt: the result is the last temporary one if
/// any (one host failing for good while another failed only for now means
/// retry later), else the last one.
#[derive(Default)]
struct Failures {
    last: Option<DeliverError>,
    last_transient: Option<DeliverError>,
}

impl Failures {
    fn add(&mut self, e: DeliverError) {
        if e.is_transient() {
            self.last_transient = Some(e);
        } else {
            self.last = Some(e);
        }
    }

    fn result(self, hop: &Nexthop) -> DeliverError {
        self.last_transient.or(self.last).unwrap_or_else(|| {
            DeliverError::Dns(DnsError::NoAddress {
                name: hop.host.clone(),
                rtype: "A/AAAA",
            })
        })
    }
}
