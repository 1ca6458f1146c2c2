//! The resolver `check-domain` asks: mail-auth's [`MessageAuthenticator`]
//! (hickory-resolver 0.26, re-exported by mail-auth; not the 0.25 one of
//! `deliver::dns`) built from the `[dns]` servers, or from
//! /etc/resolv.conf when none are configured. SPF and DKIM verification go
//! through it as mail-auth does them; the plain lookups below return the
//! records as text, "no such record" as an empty list, and every other
//! failure (SERVFAIL, REFUSED, timeout) as a transient [`CheckError::Dns`].

use std::net::IpAddr;

use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::lookup::Lookup;
use mail_auth::hickory_resolver::net::{DnsError, NetError};
use mail_auth::hickory_resolver::proto::rr::{Name, RData};
use mail_auth::hickory_resolver::system_conf::read_system_conf;
use mail_auth::MessageAuthenticator;

use super::CheckError;
use crate::config::DnsConfig;

/// The DNS view of the checks.
pub struct CheckResolver {
    auth: MessageAuthenticator,
}

impl std::fmt::Debug for CheckResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckResolver")
    }
}

impl CheckResolver {
    /// A resolver asking `config`'s servers (UDP, then TCP) with its
    /// timeout and attempts, or the system's when none are configured. No
    /// hosts file: the checks are about what the world sees. Needs a tokio
    /// runtime with I/O and time when its lookups run, not to be built.
    pub fn new(config: &DnsConfig) -> Result<CheckResolver, CheckError> {
        let servers = config.server_addrs().map_err(CheckError::Config)?;
        let (rc, mut opts) = if servers.is_empty() {
            read_system_conf().map_err(|e| CheckError::Setup(e.to_string()))?
        } else {
            let name_servers = servers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut opts = ResolverOpts::default();
            opts.timeout = config.timeout();
            opts.attempts = config.attempts;
            (ResolverConfig::from_name_servers(name_servers), opts)
        };
        opts.use_hosts_file = ResolveHosts::Never;
        // Names are always absolute: no search list.
        opts.ndots = 0;
        let auth =
            MessageAuthenticator::new(rc, opts).map_err(|e| CheckError::Setup(e.to_string()))?;
        Ok(CheckResolver { auth })
    }

    /// mail-auth's authenticator over the same resolver (SPF, DKIM).
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.auth
    }

    /// The TXT records at `name`, each record's strings joined.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, CheckError> {
        let lookup = self.auth.resolver().txt_lookup(fqdn(name)?).await;
        Ok(answers(name, "TXT", lookup)?
            .filter_map(|rd| match rd {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// The names the PTR records of `ip` point at (lower case, no final
    /// dot).
    pub async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, CheckError> {
        let lookup = self.auth.resolver().reverse_lookup(ip).await;
        let mut names: Vec<String> = answers(&ip.to_string(), "PTR", lookup)?
            .filter_map(|rd| match rd {
                RData::PTR(ptr) => Some(canonical(&ptr.0.to_ascii())),
                _ => None,
            })
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The A and AAAA addresses of `host` (IPv4 first).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, CheckError> {
        let name = fqdn(host)?;
        let resolver = self.auth.resolver();
        let (v4, v6) = tokio::join!(
            resolver.ipv4_lookup(name.clone()),
            resolver.ipv6_lookup(name)
        );
        let mut addrs: Vec<IpAddr> = answers(host, "A", v4)?
            .filter_map(|rd| match rd {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        addrs.extend(answers(host, "AAAA", v6)?.filter_map(|rd| match rd {
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        }));
        Ok(addrs)
    }

    /// The MX records of `domain`: (preference, exchange), by preference;
    /// a null MX (RFC 7505) has the exchange `""`.
    pub async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, CheckError> {
        let lookup = self.auth.resolver().mx_lookup(fqdn(domain)?).await;
        let mut mx: Vec<(u16, String)> = answers(domain, "MX", lookup)?
            .filter_map(|rd| match rd {
                RData::MX(mx) => Some((mx.preference, canonical(&mx.exchange.to_ascii()))),
                _ => None,
            })
            .collect();
        mx.sort();
        Ok(mx)
    }
}

/// The record data of a lookup: none when the name or the type does not
/// exist, a transient error for any other failure.
fn answers(
    name: &str,
    rtype: &'static str,
    lookup: Result<Lookup, NetError>,
) -> Result<impl Iterator<Item = RData>, CheckError> {
    let data: Vec<RData> = match lookup {
        Ok(l) => l.answers().iter().map(|r| r.data.clone()).collect(),
        Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Vec::new(),
        Err(e) => {
            return Err(CheckError::Dns {
                name: name.to_string(),
                rtype,
                detail: e.to_string(),
            })
        }
    };
    Ok(data.into_iter())
}

/// `name` as an absolute DNS name (underscores allowed: `_dmarc`,
/// `_domainkey`).
fn fqdn(name: &str) -> Result<Name, CheckError> {
    let canon = canonical(name);
    if canon.is_empty() {
        return Err(CheckError::BadName(name.to_string()));
    }
    Name::from_str_relaxed(format!("{canon}."))
        .map_err(|e| CheckError::BadName(format!("{name}: {e}")))
}

/// Lower case, no final dot.
pub fn canonical(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_absolute_and_checked() {
        assert_eq!(
            fqdn("_dmarc.Example.COM").unwrap().to_ascii(),
            "_dmarc.example.com."
        );
        assert_eq!(fqdn("a.example.").unwrap().to_ascii(), "a.example.");
        assert!(matches!(fqdn("."), Err(CheckError::BadName(_))));
        assert!(fqdn("a..b").is_err());
    }

    #[test]
    fn a_bad_server_address_is_a_config_error() {
        let config = DnsConfig {
            servers: vec!["not an address".into()],
            ..DnsConfig::default()
        };
        let e = CheckResolver::new(&config).unwrap_err();
        assert!(matches!(e, CheckError::Config(_)), "{e}");
        assert!(!e.is_transient());
    }
}
