//! Configuration for delivery to the internet: DNS, TLS policy, relay-host
//! credentials and per-destination rate limits. Plain values with serde
//! defaults; [`super::Config::validate`] checks them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which address families delivery uses (Postfix's `inet_protocols`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InetProtocols {
    /// IPv6 and IPv4; IPv6 addresses are tried first.
    #[default]
    All,
    /// IPv4 only.
    Ipv4,
    /// IPv6 only.
    Ipv6,
}

/// `smtp_transaction_chaining`: whether a connection's next transaction
/// (MAIL, RCPT, DATA) goes out in the same write as the previous message's
/// final dot, saving a round trip per message. Some receivers (Haraka
/// 3.3 and later) refuse commands pipelined after the end of DATA; a
/// chained transaction they refuse is sent again unchained on the same
/// connection, never bounced or deferred because of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TransactionChaining {
    /// Chain where the server offers PIPELINING; once a destination has
    /// refused a chained transaction (and taken it unchained right
    /// after), stop chaining there for the daemon's lifetime.
    #[default]
    Auto,
    /// Chain where PIPELINING is offered, even to destinations that
    /// refused before (each refusal costs a retry; for measurements).
    On,
    /// Never chain: each transaction waits for the previous final reply.
    Off,
}

/// `smtp_tls_security_level`, as Postfix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsSecurityLevel {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered, certificate not checked; plaintext when the
    /// handshake fails.
    #[default]
    May,
    /// TLS required, certificate not checked.
    Encrypt,
    /// TLS required; the certificate must chain to a trusted root and name
    /// the host (or what `smtp_tls_verify_cert_match` or the policy
    /// entry's `match` says).
    Verify,
    /// TLS required; the certificate must chain to a trusted root and name
    /// the next-hop domain or a subdomain of it (Postfix's `secure`: the
    /// names come from the destination, not from the MX answer, so a
    /// forged MX record cannot redirect the mail). The names are
    /// `smtp_tls_secure_cert_match` or the policy entry's `match`.
    Secure,
    /// DANE (RFC 7672) where DNSSEC allows it: with an authenticated MX
    /// RRset and usable authenticated TLSA records for the MX host, TLS is
    /// required and the certificate must match them; TLSA records that are
    /// all unusable make it `encrypt`; anything else is `may`. Needs
    /// `smtp_dns_support_level = "dnssec"` (else it acts as `may`).
    Dane,
    /// As `dane`, but mail is deferred unless the MX host has usable
    /// authenticated TLSA records (Postfix's `dane-only`).
    #[serde(rename = "dane-only")]
    DaneOnly,
}

impl TlsSecurityLevel {
    /// True for `dane` and `dane-only`.
    pub fn is_dane(self) -> bool {
        matches!(self, TlsSecurityLevel::Dane | TlsSecurityLevel::DaneOnly)
    }

    /// True for the levels that authenticate the server (`verify`,
    /// `secure`, `dane`, `dane-only`).
    pub fn authenticates(self) -> bool {
        matches!(
            self,
            TlsSecurityLevel::Verify
                | TlsSecurityLevel::Secure
                | TlsSecurityLevel::Dane
                | TlsSecurityLevel::DaneOnly
        )
    }
}

/// `smtp_tls_dane_insecure_mx_policy`, as Postfix (3.6 and later): what
/// TLS level `dane` does at an MX host that was found through an MX RRset
/// DNSSEC did not authenticate, while the host's own address and TLSA
/// records are authenticated (a signed hosting provider serving an
/// unsigned domain). `dane-only` defers at such hosts whatever this says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DaneInsecureMxPolicy {
    /// The TLSA records are ignored: `may`.
    May,
    /// The TLSA records make TLS required, without authentication.
    Encrypt,
    /// The TLSA records are used as with an authenticated MX RRset: TLS
    /// required and, with usable records, the chain must match them. A
    /// match is logged `Trusted`, not `Verified`, as the MX host name
    /// itself could have been forged.
    #[default]
    Dane,
}

/// `smtp_dns_support_level`, as Postfix: whether DNSSEC validation
/// results of the resolver are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DnsSupportLevel {
    /// DNS lookups without DNSSEC: the AD bit is never looked at, and
    /// TLS levels `dane` and `dane-only` act as `may`.
    #[default]
    Enabled,
    /// Trust the AD bit (authenticated data) of the configured resolver's
    /// answers, as Postfix does: the resolver must validate DNSSEC and be
    /// reached over a trusted path (loopback). Needed for DANE.
    Dnssec,
}

impl fmt::Display for TlsSecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsSecurityLevel::None => "none",
            TlsSecurityLevel::May => "may",
            TlsSecurityLevel::Encrypt => "encrypt",
            TlsSecurityLevel::Verify => "verify",
            TlsSecurityLevel::Secure => "secure",
            TlsSecurityLevel::Dane => "dane",
            TlsSecurityLevel::DaneOnly => "dane-only",
        })
    }
}

/// The `[dns]` table: which servers to ask instead of /etc/resolv.conf.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Name servers as `ip` or `ip:port`; empty means /etc/resolv.conf.
    pub servers: Vec<String>,
    /// Seconds to wait for one answer.
    pub timeout: u64,
    /// Tries per query.
    pub attempts: usize,
}

impl Default for DnsConfig {
    fn default() -> DnsConfig {
        DnsConfig {
            servers: Vec::new(),
            timeout: 5,
            attempts: 2,
        }
    }
}

impl DnsConfig {
    /// The configured servers as socket addresses (port 53 unless given).
    pub fn server_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        self.servers
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>()
                    .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| format!("bad DNS server {s:?}: expected ip or ip:port"))
            })
            .collect()
    }

    /// The per-query timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// One `[[tls_policy]]` entry: the TLS level for one destination, and
/// whether its MTA-STS policy is consulted. At least one of the two.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsPolicyConfig {
    /// Destination: a recipient domain (MX delivery) or a next-hop host;
    /// `.example.com` matches every subdomain.
    pub domain: String,
    /// The level for it; an explicit level also turns MTA-STS off for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<TlsSecurityLevel>,
    /// MTA-STS on or off for it, overriding `smtp_mta_sts` (only without
    /// `level`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mta_sts: Option<bool>,
    /// The names a certificate must present at level `verify` or
    /// `secure` (see [`CertMatch`]), instead of `smtp_tls_verify_cert_match`
    /// or `smtp_tls_secure_cert_match`.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub cert_match: Option<Vec<String>>,
}

/// One entry of a certificate name list (`smtp_tls_verify_cert_match`,
/// `smtp_tls_secure_cert_match`, a `[[tls_policy]]` entry's `match`), as
/// Postfix's `match=`: a certificate is accepted when one of its DNS
/// names matches one entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CertMatch {
    /// `hostname`: the name of the host connected to (the MX host).
    Hostname,
    /// `nexthop`: the next-hop domain (the recipient domain for MX
    /// delivery, the relay's name otherwise).
    Nexthop,
    /// `dot-nexthop`: any subdomain of the next-hop domain.
    DotNexthop,
    /// `example.com`: exactly this name.
    Name(String),
    /// `.example.com`: any subdomain of this name.
    Subdomain(String),
}

impl CertMatch {
    /// Parses one entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<CertMatch, String> {
        let e = entry.trim().trim_end_matches('.').to_ascii_lowercase();
        match e.as_str() {
            "hostname" => return Ok(CertMatch::Hostname),
            "nexthop" => return Ok(CertMatch::Nexthop),
            "dot-nexthop" => return Ok(CertMatch::DotNexthop),
            _ => {}
        }
        if e.parse::<IpAddr>().is_ok() {
            return Err(format!(
                "{entry:?} is an IP address; certificates are matched by DNS name only"
            ));
        }
        let (sub, name) = match e.strip_prefix('.') {
            Some(rest) => (true, rest),
            None => (false, e.as_str()),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !valid {
            return Err(format!(
                "{entry:?} is not hostname, nexthop, dot-nexthop, a domain name or .domain"
            ));
        }
        Ok(if sub {
            CertMatch::Subdomain(name.to_string())
        } else {
            CertMatch::Name(name.to_string())
        })
    }

    /// Parses a whole list; an empty list is refused (it would match
    /// nothing).
    pub fn parse_list(entries: &[String]) -> Result<Vec<CertMatch>, String> {
        if entries.is_empty() {
            return Err("an empty list matches no certificate".into());
        }
        entries.iter().map(|e| CertMatch::parse(e)).collect()
    }
}

/// Postfix's default `smtp_tls_verify_cert_match`.
pub fn default_verify_cert_match() -> Vec<String> {
    vec!["hostname".into()]
}

/// Postfix's default `smtp_tls_secure_cert_match`.
pub fn default_secure_cert_match() -> Vec<String> {
    vec!["nexthop".into(), "dot-nexthop".into()]
}

/// One `[[smtp_sasl_password]]` entry: credentials for a relay host
/// (Postfix's `smtp_sasl_password_maps`).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SaslPasswordConfig {
    /// The next hop exactly as written in `relayhost` or a route, e.g.
    /// `[smtp.example.com]:587`.
    pub nexthop: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for SaslPasswordConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslPasswordConfig")
            .field("nexthop", &self.nexthop)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// One `[[rate_limit]]` entry: most messages per interval to a destination.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Destination: a recipient domain (MX delivery) or a next-hop host;
    /// `.example.com` matches every subdomain.
    pub destination: String,
    /// `N/s`, `N/m` or `N/h`.
    pub rate: String,
}

/// A parsed rate: `count` messages per `per`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Messages allowed per interval.
    pub count: u32,
    /// The interval.
    pub per: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/m`, `N/h` (also `N/sec`, `N/min`, `N/hour`).
    pub fn parse(s: &str) -> Result<Rate, String> {
        let bad = || format!("bad rate {s:?}: expected N/s, N/m or N/h with N ≥ 1");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(bad());
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Rate { count, per })
    }

    /// Messages per second.
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.per.as_secs_f64()
    }
}

/// True when destination pattern `pattern` (`example.com` or
/// `.example.com`) covers `name`; case-insensitive.
pub fn domain_matches(pattern: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix('.') {
        Some(suffix) => name.len() > suffix.len() && name.ends_with(&format!(".{suffix}")),
        None => name == pattern,
    }
}

/// Where the CA file for `verify` is; `None` means the system roots only.
pub type CaFile = Option<PathBuf>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(
            Rate::parse("10/s").unwrap(),
            Rate {
                count: 10,
                per: Duration::from_secs(1)
            }
        );
        assert_eq!(Rate::parse(" 600 / m ").unwrap().per_second(), 10.0);
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("5").is_err());
        assert!(Rate::parse("5/d").is_err());
    }

    #[test]
    fn domain_patterns() {
        assert!(domain_matches("example.com", "Example.COM."));
        assert!(!domain_matches("example.com", "a.example.com"));
        assert!(domain_matches(".example.com", "a.example.com"));
        assert!(!domain_matches(".example.com", "example.com"));
    }

    #[test]
    fn dane_levels_and_dns_support_level_parse() {
        let c = crate::config::Config::parse(
            "smtp_dns_support_level = \"dnssec\"\nsmtp_tls_security_level = \"dane-only\"\n\
             [[tls_policy]]\ndomain = \"a.example\"\nlevel = \"dane\"\n",
            std::path::Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(c.smtp_dns_support_level, DnsSupportLevel::Dnssec);
        assert_eq!(c.smtp_tls_security_level, TlsSecurityLevel::DaneOnly);
        assert_eq!(c.tls_policy[0].level, Some(TlsSecurityLevel::Dane));
        assert!(TlsSecurityLevel::DaneOnly.is_dane() && !TlsSecurityLevel::Verify.is_dane());
        assert_eq!(TlsSecurityLevel::DaneOnly.to_string(), "dane-only");
        let d = crate::config::Config::default();
        assert_eq!(d.smtp_dns_support_level, DnsSupportLevel::Enabled);
        assert!(crate::config::Config::parse(
            "smtp_dns_support_level = \"validate\"\n",
            std::path::Path::new("c.toml")
        )
        .is_err());
    }

    #[test]
    fn dns_servers_parse() {
        let d = DnsConfig {
            servers: vec!["127.0.0.1:5353".into(), "::1".into()],
            ..DnsConfig::default()
        };
        let a = d.server_addrs().unwrap();
        assert_eq!(a[0].port(), 5353);
        assert_eq!(a[1].port(), 53);
        let bad = DnsConfig {
            servers: vec!["dns.example".into()],
            ..DnsConfig::default()
        };
        assert!(bad.server_addrs().is_err());
    }
}
