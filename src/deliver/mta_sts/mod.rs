//! MTA-STS (RFC 8461) on delivery: whether a recipient domain asks for
//! TLS with a verified certificate to one of its named MX hosts.
//!
//! For MX delivery to a domain (not a relay host or a `[[route]]`, and
//! not a destination with an explicit `[[tls_policy]]` level), the
//! connector asks [`MtaSts::applied`] before connecting:
//!
//! 1. The shard's memory, else the durable copy in `spool_dir/mta-sts/`
//!    ([`cache`]), gives the last policy fetched, if it has not expired.
//! 2. The `_mta-sts.DOMAIN` TXT record ([`record`]) is looked up, at most
//!    once per [`RECHECK`] per domain and shard. When its `id` differs from
//!    the cached policy's, or half the cached policy's `max_age` has
//!    passed, or nothing is cached, the policy is fetched over HTTPS from
//!    `mta-sts.DOMAIN` ([`fetch`]) and parsed ([`policy`]), unless another
//!    shard has just written that policy to disk.
//! 3. A failed fetch, a missing TXT record or a DNS failure leaves the
//!    cached policy in force until it expires (section 5.1); without one,
//!    no policy applies and mail goes out as before.
//!
//! Under `enforce` only MX hosts matching the policy are tried, with TLS
//! level `verify` for the MX host name; when none matches, or none can be
//! reached with verified TLS, the mail is deferred (4.7.5 / 4.7.4) with a
//! reason naming MTA-STS: never bounced because of a policy, never sent in
//! plaintext. Under `testing` mail goes out as usual and what enforce
//! would have refused is logged (`MTA-STS testing: ...`). Mode `none`
//! is no policy.

pub mod cache;
pub mod fetch;
pub mod policy;
pub mod record;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::TlsSecurityLevel;
use crate::model::Nexthop;
use crate::rt::tls::{client_config, TlsError, TlsLevel, Trust};

use super::dns::{Dns, DnsError, MailHost};
use super::route::HopPolicy;
use super::session::Session;
use super::DeliverError;

pub use cache::{CacheError, CachedPolicy, DiskCache};
pub use fetch::FetchError;
pub use policy::{Mode, MxPattern, Policy, PolicyError};
pub use record::{RecordError, StsRecord};

/// How long a shard trusts its last look at a domain's TXT record (and
/// the outcome of the fetch it led to) before looking again.
pub const RECHECK: Duration = Duration::from_secs(300);

/// Above this many domains in a shard's memory, those without a policy
/// are forgotten (they cost a TXT lookup when mail for them comes again).
const MAX_DOMAINS: usize = 50_000;

/// MTA-STS settings (the switch itself, `smtp_mta_sts` and the
/// per-destination `mta_sts`, is part of each hop's [`HopPolicy`]).
#[derive(Clone, Debug)]
pub struct MtaStsConfig {
    /// Where fetched policies are kept (`spool_dir/mta-sts`); `None`
    /// keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// The HTTPS port of policy hosts: 443 (`smtp_mta_sts_port`, for
    /// tests).
    pub port: u16,
    /// Limit for one policy fetch.
    pub timeout: Duration,
    /// Extra trusted CA certificates (`smtp_tls_CAfile`).
    pub ca_file: Option<PathBuf>,
}

impl Default for MtaStsConfig {
    fn default() -> MtaStsConfig {
        MtaStsConfig {
            cache_dir: None,
            port: 443,
            timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

/// Why delivery under a policy cannot go on now (always a deferral).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MtaStsError {
    /// Under `enforce`, none of the domain's MX hosts matches the policy.
    #[error("MTA-STS policy: no MX host matches the policy of {domain} (MX: {hosts}; policy mx: {patterns})")]
    NoMatchingMx {
        /// The policy domain.
        domain: String,
        /// The MX hosts, comma-separated.
        hosts: String,
        /// The policy's patterns, comma-separated.
        patterns: String,
    },
    /// Under `enforce`, no matching MX host could be reached with
    /// verified TLS.
    #[error("MTA-STS policy of {domain} requires verified TLS: {detail}")]
    Tls {
        /// The policy domain.
        domain: String,
        /// The last failure, as logged without a policy.
        detail: String,
        /// Its enhanced status code.
        dsn: String,
    },
}

impl MtaStsError {
    /// Always temporary: our policy state never bounces mail.
    pub fn is_transient(&self) -> bool {
        true
    }

    /// The enhanced status code.
    pub fn dsn(&self) -> String {
        match self {
            MtaStsError::NoMatchingMx { .. } => "4.7.5".into(),
            MtaStsError::Tls { dsn, .. } => dsn.clone(),
        }
    }
}

/// Why a policy could not be refreshed (logged; the cached one stays).
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// `mta-sts.DOMAIN` has no usable address.
    #[error("{0}")]
    Dns(#[from] DnsError),
    /// The verifying TLS configuration cannot be built.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The HTTPS fetch failed.
    #[error("{0}")]
    Fetch(#[from] FetchError),
    /// What was served is not a valid policy.
    #[error("invalid policy: {0}")]
    Policy(#[from] PolicyError),
}

impl RefreshError {
    /// A broken TLS setup does not heal itself; the rest may.
    pub fn is_transient(&self) -> bool {
        match self {
            RefreshError::Tls(e) => e.is_transient(),
            _ => true,
        }
    }
}

/// What one shard knows about one policy domain.
#[derive(Default)]
struct Slot {
    /// The durable copy was read (or there is none).
    loaded: bool,
    /// The policy in force, if any.
    cached: Option<Rc<CachedPolicy>>,
    /// When the TXT record was last looked at.
    checked: Option<Instant>,
    /// Held while the domain's policy is being looked up, so that the
    /// shard's connections to one domain fetch it once.
    lock: Rc<tokio::sync::Mutex<()>>,
}

/// The MTA-STS policies of one shard: memory, disk, fetching.
pub struct MtaSts {
    cfg: MtaStsConfig,
    disk: Option<DiskCache>,
    tls: RefCell<Option<Arc<rustls::ClientConfig>>>,
    domains: RefCell<HashMap<String, Slot>>,
}

impl MtaSts {
    /// The policies of a shard with settings `cfg`.
    pub fn new(cfg: &MtaStsConfig) -> MtaSts {
        MtaSts {
            disk: cfg.cache_dir.clone().map(DiskCache::new),
            cfg: cfg.clone(),
            tls: RefCell::new(None),
            domains: RefCell::new(HashMap::new()),
        }
    }

    /// The policy that applies to a connection to `hop`, if any: only
    /// for MX delivery with MTA-STS on for the hop, and a policy of mode
    /// `enforce` or `testing` in force.
    pub async fn applied(&self, dns: &Dns, hop: &Nexthop, policy: &HopPolicy) -> Option<Applied> {
        if !policy.mta_sts || !hop.mx_lookup {
            return None;
        }
        let domain = ascii_name(&hop.host);
        let p = self.policy(dns, &domain).await?;
        (p.policy.mode != Mode::None).then_some(Applied { domain, policy: p })
    }

    /// The policy in force for `domain` (any mode), refreshed as the
    /// module documentation says.
    pub async fn policy(&self, dns: &Dns, domain: &str) -> Option<Rc<CachedPolicy>> {
        let lock = {
            let mut d = self.domains.borrow_mut();
            if d.len() >= MAX_DOMAINS && !d.contains_key(domain) {
                // Keep policies and lookups in progress.
                d.retain(|_, s| s.cached.is_some() || Rc::strong_count(&s.lock) > 1);
            }
            Rc::clone(&d.entry(domain.to_string()).or_default().lock)
        };
        let _guard = lock.lock().await;
        let now = unix_now();
        let cached = {
            let mut d = self.domains.borrow_mut();
            let slot = d.entry(domain.to_string()).or_default();
            if !slot.loaded {
                slot.loaded = true;
                slot.cached = self.load(domain).map(Rc::new);
            }
            if slot.cached.as_ref().is_some_and(|p| p.is_expired(now)) {
                tracing::info!(target: "smtp", "MTA-STS policy of {domain} expired");
                slot.cached = None;
            }
            if slot.checked.is_some_and(|t| t.elapsed() < RECHECK) {
                return slot.cached.clone();
            }
            slot.cached.clone()
        };
        let fresh = self.check(dns, domain, cached, now).await;
        let mut d = self.domains.borrow_mut();
        let slot = d.entry(domain.to_string()).or_default();
        slot.cached = fresh.clone();
        slot.checked = Some(Instant::now());
        fresh
    }

    /// Looks at the TXT record and fetches when needed; returns the
    /// policy in force afterwards.
    async fn check(
        &self,
        dns: &Dns,
        domain: &str,
        cached: Option<Rc<CachedPolicy>>,
        now: u64,
    ) -> Option<Rc<CachedPolicy>> {
        let name = format!("_mta-sts.{domain}");
        let record = match dns.txt(&name).await {
            Ok(records) => match StsRecord::select(&records) {
                Ok(r) => Some(r),
                Err(RecordError::Missing) => None,
                Err(e) => {
                    tracing::info!(target: "smtp", "MTA-STS: {name}: {e}");
                    None
                }
            },
            Err(e) => {
                tracing::info!(target: "smtp", "MTA-STS: cannot look up {name}: {e}");
                None
            }
        };
        let record = match (next_step(record.as_ref(), cached.as_deref(), now), record) {
            (Next::Fetch, Some(record)) => record,
            _ => return cached,
        };
        // Another shard may have fetched this one already.
        if let Some(p) = self.load(domain) {
            if !p.is_expired(now) && next_step(Some(&record), Some(&p), now) == Next::Keep {
                return Some(Rc::new(p));
            }
        }
        match self.refresh(dns, domain, &record.id, now).await {
            Ok(p) => {
                tracing::info!(
                    target: "smtp",
                    "MTA-STS policy of {domain} (id {}): mode {}, mx {}, max_age {}",
                    p.id, p.policy.mode, p.policy.patterns(), p.policy.max_age
                );
                if let Some(disk) = &self.disk {
                    match disk.store(domain, &p) {
                        Ok(()) | Err(CacheError::BadName(_)) => {}
                        Err(e) => tracing::warn!(
                            target: "smtp",
                            "MTA-STS: cannot keep the policy of {domain} on disk: {e}"
                        ),
                    }
                }
                Some(Rc::new(p))
            }
            Err(e) => {
                match &cached {
                    Some(c) => tracing::warn!(
                        target: "smtp",
                        "MTA-STS: cannot fetch the policy of {domain} (id {}): {e}; \
                         using the cached policy (id {}, mode {})",
                        record.id, c.id, c.policy.mode
                    ),
                    None => tracing::warn!(
                        target: "smtp",
                        "MTA-STS: cannot fetch the policy of {domain} (id {}): {e}; \
                         no policy applies",
                        record.id
                    ),
                }
                cached
            }
        }
    }

    /// Fetches and parses the policy of `domain` for record id `id`.
    async fn refresh(
        &self,
        dns: &Dns,
        domain: &str,
        id: &str,
        now: u64,
    ) -> Result<CachedPolicy, RefreshError> {
        let host = format!("mta-sts.{domain}");
        let addrs = dns.addresses(&host).await?;
        let tls = self.tls_config()?;
        let text = fetch::fetch(&fetch::FetchRequest {
            host: &host,
            addrs: &addrs,
            port: self.cfg.port,
            tls,
            timeout: self.cfg.timeout,
        })
        .await?;
        Ok(CachedPolicy::new(id, text, now)?)
    }

    /// The verifying client configuration for policy hosts, built once.
    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        if let Some(c) = self.tls.borrow().as_ref() {
            return Ok(Arc::clone(c));
        }
        let c = client_config(TlsLevel::Verify, self.cfg.ca_file.as_deref())?;
        *self.tls.borrow_mut() = Some(Arc::clone(&c));
        Ok(c)
    }

    /// The durable copy of `domain`'s policy, if there is a readable one.
    fn load(&self, domain: &str) -> Option<CachedPolicy> {
        let disk = self.disk.as_ref()?;
        match disk.load(domain) {
            Ok(p) => p,
            Err(CacheError::BadName(_)) => None,
            Err(e) => {
                tracing::warn!(target: "smtp", "MTA-STS: {e}");
                None
            }
        }
    }
}

/// What to do once the TXT record has been looked at.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Keep the cached policy (or none): no record (RFC 8461 section 5.1:
    /// a cached policy stays in force until it expires), or the same id
    /// and the policy is not yet half way to its expiry.
    Keep,
    /// Fetch the policy: nothing cached, a new id, or time to refresh.
    Fetch,
}

fn next_step(record: Option<&StsRecord>, cached: Option<&CachedPolicy>, now: u64) -> Next {
    match (record, cached) {
        (None, _) => Next::Keep,
        (Some(r), Some(c)) if c.id == r.id && !c.wants_refresh(now) => Next::Keep,
        (Some(_), _) => Next::Fetch,
    }
}

/// A policy of mode `enforce` or `testing` applied to one connection
/// attempt.
#[derive(Clone, Debug)]
pub struct Applied {
    domain: String,
    policy: Rc<CachedPolicy>,
}

impl Applied {
    /// The policy's mode.
    pub fn mode(&self) -> Mode {
        self.policy.policy.mode
    }

    /// The hosts to try: under `enforce` those matching the policy (an
    /// error when none does); under `testing` all of them, each
    /// mismatch logged.
    pub fn hosts(&self, hosts: Vec<MailHost>) -> Result<Vec<MailHost>, MtaStsError> {
        select_hosts(&self.domain, &self.policy.policy, hosts)
    }

    /// The TLS level to connect with: `verify` under `enforce` (`secure`,
    /// which already verifies, stays).
    pub fn tls_level(&self, level: TlsSecurityLevel) -> TlsSecurityLevel {
        match self.mode() {
            Mode::Enforce if level == TlsSecurityLevel::Secure => level,
            Mode::Enforce => TlsSecurityLevel::Verify,
            Mode::Testing | Mode::None => level,
        }
    }

    /// After a session opened under `testing`: logs when enforce would
    /// have refused it (TLS not verified).
    pub fn check_session(&self, session: &Session) {
        if self.mode() != Mode::Testing {
            return;
        }
        let trust = session.tls().map(|t| t.trust);
        if trust != Some(Trust::Verified) {
            let what = match trust {
                Some(t) => format!("{t} TLS"),
                None => "no TLS".to_string(),
            };
            tracing::info!(
                target: "smtp",
                "MTA-STS testing: {}: {what} with {}; enforce would defer (delivering anyway)",
                self.domain,
                session.peer()
            );
        }
    }

    /// Under `enforce`, names the policy in a TLS failure's text.
    pub fn explain(&self, e: DeliverError) -> DeliverError {
        if self.mode() != Mode::Enforce {
            return e;
        }
        match e {
            DeliverError::TlsHandshake { .. } | DeliverError::TlsRequired { .. } => {
                DeliverError::MtaSts(MtaStsError::Tls {
                    domain: self.domain.clone(),
                    dsn: e.dsn(),
                    detail: e.to_string(),
                })
            }
            other => other,
        }
    }
}

/// The MX hosts of `domain` that `policy` lets delivery try: see
/// [`Applied::hosts`].
pub fn select_hosts(
    domain: &str,
    policy: &Policy,
    hosts: Vec<MailHost>,
) -> Result<Vec<MailHost>, MtaStsError> {
    match policy.mode {
        Mode::None => Ok(hosts),
        Mode::Testing => {
            for h in hosts
                .iter()
                .filter(|h| !policy.matches(&ascii_name(&h.name)))
            {
                tracing::info!(
                    target: "smtp",
                    "MTA-STS testing: {domain}: MX host {} does not match the policy (mx {}); \
                     enforce would skip it (delivering anyway)",
                    h.name,
                    policy.patterns()
                );
            }
            Ok(hosts)
        }
        Mode::Enforce => {
            let all: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
            let kept: Vec<MailHost> = hosts
                .into_iter()
                .filter(|h| policy.matches(&ascii_name(&h.name)))
                .collect();
            if kept.is_empty() {
                return Err(MtaStsError::NoMatchingMx {
                    domain: domain.to_string(),
                    hosts: all.join(", "),
                    patterns: policy.patterns(),
                });
            }
            for h in all.iter().filter(|h| !policy.matches(&ascii_name(h))) {
                tracing::info!(
                    target: "smtp",
                    "MTA-STS: {domain}: skipping MX host {h}: not in the policy (mx {})",
                    policy.patterns()
                );
            }
            Ok(kept)
        }
    }
}

/// `name` in lower-case ASCII (IDNA A-labels for an internationalised
/// name) without a final dot: the form of policy host names, cache file
/// names and the policy's `mx` patterns.
fn ascii_name(name: &str) -> String {
    let trimmed = name.trim_end_matches('.');
    match hickory_resolver::Name::from_utf8(trimmed) {
        Ok(n) => n.to_ascii().trim_end_matches('.').to_ascii_lowercase(),
        Err(_) => trimmed.to_ascii_lowercase(),
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, preference: u16) -> MailHost {
        MailHost {
            name: name.into(),
            preference,
        }
    }

    fn policy(text: &str) -> Policy {
        Policy::parse(text).unwrap()
    }

    #[test]
    fn enforce_keeps_matching_hosts_in_order() {
        let p = policy("version: STSv1\nmode: enforce\nmx: *.mail.example\nmax_age: 60\n");
        let hosts = vec![
            host("a.mail.example", 10),
            host("rogue.example", 10),
            host("b.mail.example", 20),
        ];
        let kept = select_hosts("example", &p, hosts).unwrap();
        let names: Vec<_> = kept.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["a.mail.example", "b.mail.example"]);
    }

    #[test]
    fn enforce_without_a_match_defers_with_the_reason() {
        let p = policy("version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 60\n");
        let e = select_hosts("example", &p, vec![host("other.example", 0)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MTA-STS policy: no MX host matches the policy of example \
             (MX: other.example; policy mx: mx.example)"
        );
        assert!(e.is_transient());
        assert_eq!(e.dsn(), "4.7.5");
        let de = DeliverError::MtaSts(e);
        assert!(de.is_transient());
        assert_eq!(de.dsn(), "4.7.5");
    }

    #[test]
    fn when_to_fetch() {
        let text = "version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 1000\n";
        let cached = CachedPolicy::new("a", text.into(), 10_000).unwrap();
        let rec = |id: &str| StsRecord { id: id.into() };
        assert_eq!(
            next_step(None, None, 0),
            Next::Keep,
            "no record, nothing cached"
        );
        assert_eq!(
            next_step(None, Some(&cached), 10_900),
            Next::Keep,
            "no record: cached"
        );
        assert_eq!(next_step(Some(&rec("a")), None, 0), Next::Fetch);
        assert_eq!(
            next_step(Some(&rec("a")), Some(&cached), 10_499),
            Next::Keep
        );
        assert_eq!(
            next_step(Some(&rec("a")), Some(&cached), 10_500),
            Next::Fetch,
            "half of max_age: refresh"
        );
        assert_eq!(
            next_step(Some(&rec("b")), Some(&cached), 10_001),
            Next::Fetch,
            "new id"
        );
    }

    #[test]
    fn internationalised_names_match_in_ascii() {
        assert_eq!(ascii_name("Bücher.Example."), "xn--bcher-kva.example");
        assert_eq!(ascii_name("MX.example"), "mx.example");
        let p = policy("version: STSv1\nmode: enforce\nmx: *.xn--bcher-kva.example\nmax_age: 60\n");
        let kept = select_hosts("bücher.example", &p, vec![host("mx.bücher.example", 0)]).unwrap();
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn testing_and_none_keep_every_host() {
        for mode in ["testing", "none"] {
            let p = policy(&format!(
                "version: STSv1\nmode: {mode}\nmx: mx.example\nmax_age: 60\n"
            ));
            let kept = select_hosts("example", &p, vec![host("other.example", 0)]).unwrap();
            assert_eq!(kept.len(), 1, "{mode}");
        }
    }

    #[test]
    fn enforce_requires_verify_and_names_the_policy_in_tls_failures() {
        let text = "version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 60\n";
        let a = Applied {
            domain: "example".into(),
            policy: Rc::new(CachedPolicy::new("1", text.into(), 0).unwrap()),
        };
        assert_eq!(a.tls_level(TlsSecurityLevel::May), TlsSecurityLevel::Verify);
        let e = a.explain(DeliverError::TlsHandshake {
            peer: "mx.example[127.0.0.1]:25".into(),
            detail: "invalid peer certificate: UnknownIssuer".into(),
        });
        assert_eq!(e.dsn(), "4.7.5");
        assert_eq!(
            e.to_string(),
            "MTA-STS policy of example requires verified TLS: Cannot start TLS: \
             handshake failure with mx.example[127.0.0.1]:25: invalid peer certificate: UnknownIssuer"
        );
        let e = a.explain(DeliverError::TlsRequired {
            peer: "mx.example[127.0.0.1]:25".into(),
            what: "was not offered by",
        });
        assert_eq!(e.dsn(), "4.7.4");
        assert!(e.to_string().starts_with("MTA-STS policy of example"));
        // Other failures keep their own text.
        let e = a.explain(DeliverError::Timeout {
            peer: "p".into(),
            stage: "x",
        });
        assert!(matches!(e, DeliverError::Timeout { .. }));
        let testing = Applied {
            domain: "example".into(),
            policy: Rc::new(CachedPolicy::new("1", text.replace("enforce", "testing"), 0).unwrap()),
        };
        assert_eq!(
            testing.tls_level(TlsSecurityLevel::May),
            TlsSecurityLevel::May
        );
    }
}
