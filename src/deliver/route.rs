//! Routing: which next hop a recipient's domain goes to (`[[route]]`
//! entries, then `relayhost`, then the domain's MX hosts), and what policy
//! (TLS level, rate limit, credentials) applies to a next hop.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{domain_matches, CertMatch, Config, Rate, TlsSecurityLevel};
use crate::model::Nexthop;

/// Why a recipient has no usable next hop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The address has no domain part.
    #[error("no route to {0}: the address has no domain")]
    NoDomain(String),
    /// The address's domain is a malformed address literal.
    #[error("bad address literal {0}")]
    BadLiteral(String),
}

impl RouteError {
    /// A malformed address never routes: bounce.
    pub fn is_transient(&self) -> bool {
        false
    }

    /// The enhanced status code for logs and DSNs.
    pub fn dsn(&self) -> &'static str {
        match self {
            RouteError::NoDomain(_) => "5.1.3",
            RouteError::BadLiteral(_) => "5.1.2",
        }
    }
}

/// A configuration the router cannot use. `Config::load` validates every
/// value the router reads, so this means a configuration that skipped
/// validation; it fails the start instead of silently ignoring an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key `{key}`: {message}")]
pub struct RouterConfigError {
    /// The key of the unusable entry.
    pub key: &'static str,
    /// Why.
    pub message: String,
}

impl RouterConfigError {
    /// A bad configuration does not fix itself.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// What applies to one next hop besides its address: TLS level, rate limit,
/// relay credentials.
#[derive(Clone, Debug, PartialEq)]
pub struct HopPolicy {
    /// STARTTLS policy.
    pub tls: TlsSecurityLevel,
    /// `tls` was set for this hop: by its `[[route]]`'s `tls` or a
    /// `[[tls_policy]]` entry's `level` (false: `smtp_tls_security_level`,
    /// which a shaping rule's `tls` may replace).
    pub tls_explicit: bool,
    /// The certificate names of a `[[tls_policy]]` entry's `match` (with
    /// its level `verify` or `secure`); `None`: the configured defaults
    /// for the level.
    pub cert_match: Option<Arc<[CertMatch]>>,
    /// Most messages per interval, over all shards.
    pub rate: Option<Rate>,
    /// SASL user name and password for AUTH.
    pub sasl: Option<(String, String)>,
    /// Consult the destination's MTA-STS policy (RFC 8461): MX delivery of
    /// a recipient domain, neither a relay host nor a `[[route]]` next
    /// hop, no explicit TLS level, `smtp_mta_sts` or the `[[tls_policy]]`
    /// entry's `mta_sts` on.
    pub mta_sts: bool,
    /// The sending source connections to this hop bind to (set by the
    /// queue manager from the message's pool; none: the system's choice).
    pub source: Option<super::session::SourceBinding>,
}

/// One `[[tls_policy]]` entry, parsed.
#[derive(Clone, Debug)]
struct TlsPolicyEntry {
    domain: String,
    level: Option<TlsSecurityLevel>,
    mta_sts: Option<bool>,
    cert_match: Option<Arc<[CertMatch]>>,
}

/// Maps recipient domains to next hops, and next hops to their policies.
#[derive(Clone, Debug)]
pub struct Router {
    routes: Vec<(String, Nexthop)>,
    relayhost: Option<Nexthop>,
    smtp_port: u16,
    route_tls: HashMap<Nexthop, TlsSecurityLevel>,
    route_rate: HashMap<Nexthop, Rate>,
    tls_default: TlsSecurityLevel,
    tls_policy: Vec<TlsPolicyEntry>,
    mta_sts: bool,
    rate_default: Option<Rate>,
    rate_policy: Vec<(String, Rate)>,
    sasl: Vec<(Nexthop, String, String)>,
}

impl Router {
    /// The router for a configuration. Every next hop and rate must parse
    /// (validation has checked them); one that does not is an error, never
    /// dropped.
    pub fn from_config(c: &Config) -> Result<Router, RouterConfigError> {
        let bad = |key: &'static str| {
            move |e: &dyn std::fmt::Display| RouterConfigError {
                key,
                message: e.to_string(),
            }
        };
        let hop = |key: &'static str, text: &str| {
            Nexthop::parse(text).map_err(|e| bad(key)(&format!("{text:?}: {e}")))
        };
        let rate = |key: &'static str, text: &str| {
            Rate::parse(text).map_err(|e| bad(key)(&format!("{text:?}: {e}")))
        };
        let mut route_tls = HashMap::new();
        let mut route_rate = HashMap::new();
        let mut routes = Vec::new();
        for r in &c.route {
            let hop = hop("route", &r.nexthop)?;
            if let Some(level) = r.tls {
                route_tls.entry(hop.clone()).or_insert(level);
            }
            if let Some(text) = r.rate.as_deref() {
                route_rate
                    .entry(hop.clone())
                    .or_insert(rate("route", text)?);
            }
            routes.push((r.domain.to_ascii_lowercase(), hop));
        }
        let relayhost = if c.relayhost.is_empty() {
            None
        } else {
            Some(hop("relayhost", &c.relayhost)?)
        };
        let rate_default = if c.default_destination_rate_limit.is_empty() {
            None
        } else {
            Some(rate(
                "default_destination_rate_limit",
                &c.default_destination_rate_limit,
            )?)
        };
        let mut rate_policy = Vec::new();
        for r in &c.rate_limit {
            rate_policy.push((r.destination.clone(), rate("rate_limit", &r.rate)?));
        }
        let mut tls_policy = Vec::new();
        for p in &c.tls_policy {
            let cert_match = match &p.cert_match {
                Some(list) => Some(
                    CertMatch::parse_list(list)
                        .map_err(|e| bad("tls_policy")(&format!("{:?}: match: {e}", p.domain)))?
                        .into(),
                ),
                None => None,
            };
            tls_policy.push(TlsPolicyEntry {
                domain: p.domain.clone(),
                level: p.level,
                mta_sts: p.mta_sts,
                cert_match,
            });
        }
        let mut sasl = Vec::new();
        for a in &c.smtp_sasl_password {
            let h = hop("smtp_sasl_password", &a.nexthop)?;
            sasl.push((h, a.username.clone(), a.password.clone()));
        }
        Ok(Router {
            routes,
            relayhost,
            smtp_port: c.smtp_port,
            route_tls,
            route_rate,
            tls_default: c.smtp_tls_security_level,
            tls_policy,
            mta_sts: c.smtp_mta_sts,
            rate_default,
            rate_policy,
            sasl,
        })
    }

    /// The next hop for a recipient address: the first `[[route]]` whose
    /// domain equals the address's domain (or, written `.example.com`, is a
    /// parent of it), else `relayhost`, else the domain's MX hosts on
    /// `smtp_port`. An address literal (`user@[192.0.2.1]`) goes to that
    /// address.
    pub fn route(&self, recipient: &str) -> Result<Nexthop, RouteError> {
        let domain = recipient
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or("")
            .to_ascii_lowercase();
        if domain.is_empty() {
            return Err(RouteError::NoDomain(recipient.to_string()));
        }
        for (d, hop) in &self.routes {
            if domain_matches(d, &domain) {
                return Ok(hop.clone());
            }
        }
        if let Some(hop) = &self.relayhost {
            return Ok(hop.clone());
        }
        if let Some(lit) = domain.strip_prefix('[') {
            let lit = lit.strip_suffix(']').unwrap_or(lit);
            let ip = lit.strip_prefix("ipv6:").unwrap_or(lit);
            return match ip.parse::<IpAddr>() {
                Ok(ip) => Ok(Nexthop {
                    host: ip.to_string(),
                    port: self.smtp_port,
                    mx_lookup: false,
                }),
                Err(_) => Err(RouteError::BadLiteral(domain)),
            };
        }
        Ok(Nexthop {
            host: domain,
            port: self.smtp_port,
            mx_lookup: true,
        })
    }

    /// The policy for next hop `hop`: a route's `tls`/`rate` first, then
    /// `[[tls_policy]]`/`[[rate_limit]]` entries matching the hop's host
    /// (the recipient domain for MX delivery), then the defaults. MTA-STS
    /// applies to MX delivery without an explicit TLS level (an entry's
    /// `level` wins over it, as Postfix's `smtp_tls_policy_maps`).
    pub fn policy(&self, hop: &Nexthop) -> HopPolicy {
        let entry = self
            .tls_policy
            .iter()
            .find(|e| domain_matches(&e.domain, &hop.host));
        let route_level = self.route_tls.get(hop).copied();
        let explicit = route_level.or_else(|| entry.and_then(|e| e.level));
        // An entry's names go with its level, not with a route's.
        let cert_match = match (route_level, entry) {
            (None, Some(e)) => e.cert_match.clone(),
            _ => None,
        };
        let tls = explicit.unwrap_or(self.tls_default);
        let configured_hop =
            self.relayhost.as_ref() == Some(hop) || self.routes.iter().any(|(_, h)| h == hop);
        let mta_sts = hop.mx_lookup
            && !configured_hop
            && match entry {
                Some(TlsPolicyEntry { level: Some(_), .. }) => false,
                Some(TlsPolicyEntry { mta_sts: on, .. }) => on.unwrap_or(self.mta_sts),
                None => self.mta_sts,
            };
        let rate = self.route_rate.get(hop).copied().or_else(|| {
            self.rate_policy
                .iter()
                .find(|(d, _)| domain_matches(d, &hop.host))
                .map(|(_, r)| *r)
                .or(self.rate_default)
        });
        let sasl = self
            .sasl
            .iter()
            .find(|(h, _, _)| h == hop)
            .map(|(_, u, p)| (u.clone(), p.clone()));
        HopPolicy {
            tls,
            tls_explicit: explicit.is_some(),
            cert_match,
            rate,
            sasl,
            mta_sts,
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RouteConfig, TlsSecurityLevel};

    #[test]
    fn routes_before_relayhost_and_parent_domains() {
        let mut c = Config {
            relayhost: "[127.0.0.1]:2526".into(),
            ..Config::default()
        };
        c.route = vec![
            RouteConfig {
                domain: "special.example".into(),
                nexthop: "[127.0.0.2]:25".into(),
                tls: Some(TlsSecurityLevel::Encrypt),
                rate: Some("10/s".into()),
            },
            RouteConfig {
                domain: ".sub.example".into(),
                nexthop: "[127.0.0.3]:25".into(),
                tls: None,
                rate: None,
            },
        ];
        let r = Router::from_config(&c).unwrap();
        assert_eq!(r.route("a@Special.Example").unwrap().host, "127.0.0.2");
        assert_eq!(r.route("a@x.sub.example").unwrap().host, "127.0.0.3");
        assert_eq!(r.route("a@sub.example").unwrap().host, "127.0.0.1");
        assert_eq!(r.route("a@other.example").unwrap().host, "127.0.0.1");
        let special = r.route("a@special.example").unwrap();
        let p = r.policy(&special);
        assert_eq!(p.tls, TlsSecurityLevel::Encrypt);
        assert_eq!(p.rate.unwrap().count, 10);
        assert_eq!(
            r.policy(&r.route("a@x.sub.example").unwrap()).tls,
            TlsSecurityLevel::May
        );
        c.relayhost.clear();
        c.smtp_port = 2525;
        let r = Router::from_config(&c).unwrap();
        let mx = r.route("a@Other.Example").unwrap();
        assert_eq!(
            mx,
            Nexthop {
                host: "other.example".into(),
                port: 2525,
                mx_lookup: true
            }
        );
        let lit = r.route("a@[127.0.0.9]").unwrap();
        assert!(!lit.mx_lookup);
        assert_eq!(lit.host, "127.0.0.9");
        assert_eq!(r.route("a@[ipv6:::1]").unwrap().host, "::1");
        assert!(r.route("a@[nonsense]").is_err());
        assert!(matches!(r.route("nodomain"), Err(RouteError::NoDomain(_))));
    }

    #[test]
    fn policies_by_destination_and_credentials_by_nexthop() {
        let c = Config::parse(
            "smtp_tls_security_level = \"encrypt\"\n\
             default_destination_rate_limit = \"100/m\"\n\
             relayhost = \"[relay.example]:587\"\n\
             [[tls_policy]]\ndomain = \".lax.example\"\nlevel = \"may\"\n\
             [[rate_limit]]\ndestination = \"slow.example\"\nrate = \"1/s\"\n\
             [[smtp_sasl_password]]\nnexthop = \"[relay.example]:587\"\nusername = \"u\"\npassword = \"p\"\n",
            std::path::Path::new("c.toml"),
        )
        .unwrap();
        let r = Router::from_config(&c).unwrap();
        let relay = r.route("x@anything.example").unwrap();
        let p = r.policy(&relay);
        assert_eq!(p.tls, TlsSecurityLevel::Encrypt);
        assert_eq!(p.sasl, Some(("u".into(), "p".into())));
        assert_eq!(p.rate.unwrap().per_second(), 100.0 / 60.0);
        let mx = |h: &str| Nexthop {
            host: h.into(),
            port: 25,
            mx_lookup: true,
        };
        assert_eq!(r.policy(&mx("a.lax.example")).tls, TlsSecurityLevel::May);
        assert_eq!(r.policy(&mx("slow.example")).rate.unwrap().count, 1);
        assert_eq!(r.policy(&mx("slow.example")).sasl, None);
    }

    #[test]
    fn mta_sts_for_mx_delivery_unless_overridden() {
        let c = Config::parse(
            "[[route]]\ndomain = \"routed.example\"\nnexthop = \"relay.example\"\n\
             [[tls_policy]]\ndomain = \"off.example\"\nmta_sts = false\n\
             [[tls_policy]]\ndomain = \"pinned.example\"\nlevel = \"encrypt\"\n",
            std::path::Path::new("c.toml"),
        )
        .unwrap();
        assert!(c.smtp_mta_sts, "on by default");
        let r = Router::from_config(&c).unwrap();
        let p = |rcpt: &str| r.policy(&r.route(rcpt).unwrap());
        assert!(p("a@plain.example").mta_sts);
        assert!(!p("a@off.example").mta_sts);
        assert_eq!(p("a@off.example").tls, TlsSecurityLevel::May);
        assert!(!p("a@pinned.example").mta_sts, "an explicit level wins");
        assert_eq!(p("a@pinned.example").tls, TlsSecurityLevel::Encrypt);
        assert!(!p("a@routed.example").mta_sts, "a route's next hop");
        assert!(!p("a@[127.0.0.1]").mta_sts, "no MX lookup");

        let c = Config::parse(
            "smtp_mta_sts = false\nrelayhost = \"[127.0.0.1]:25\"\n\
             [[tls_policy]]\ndomain = \".on.example\"\nmta_sts = true\n",
            std::path::Path::new("c.toml"),
        )
        .unwrap();
        let r = Router::from_config(&c).unwrap();
        assert!(
            !r.policy(&r.route("a@x.on.example").unwrap()).mta_sts,
            "relayhost"
        );
        let mut c = c;
        c.relayhost.clear();
        let r = Router::from_config(&c).unwrap();
        assert!(r.policy(&r.route("a@x.on.example").unwrap()).mta_sts);
        assert!(!r.policy(&r.route("a@other.example").unwrap()).mta_sts);
    }
}
