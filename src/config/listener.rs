//! SMTP injection settings: `[[listener]]` tables and `mynetworks`, the
//! client networks allowed to relay without authenticating.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// What a listener is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// Port 25 style relay for local applications: clients in
    /// `mynetworks` may send; others only after AUTH (when TLS and a
    /// password file make AUTH possible).
    #[default]
    Relay,
    /// Port 587 style submission (RFC 6409): AUTH is required before
    /// MAIL, from every client, and only over TLS unless
    /// `auth_plaintext` is set.
    Submission,
}

/// One `[[listener]]`: an address to accept SMTP on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `127.0.0.1:25`, `[::1]:587`, `0.0.0.0:587`.
    pub address: SocketAddr,
    /// `relay` (default) or `submission`.
    #[serde(default)]
    pub kind: ListenerKind,
    /// PEM certificate chain for STARTTLS (with `tls_key`); without it no
    /// STARTTLS is offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for STARTTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Offer and accept AUTH over a connection without TLS.
    #[serde(default)]
    pub auth_plaintext: bool,
}

/// The default `mynetworks`: loopback only.
pub fn default_mynetworks() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1/128".into()]
}

/// `mynetworks`, parsed: CIDR blocks, or single addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Networks(Vec<IpNet>);

impl Networks {
    /// Parses a list of `192.0.2.0/24`, `2001:db8::/32`, `127.0.0.1`.
    pub fn parse(list: &[String]) -> Result<Networks, String> {
        let mut nets = Vec::with_capacity(list.len());
        for item in list {
            let item = item.trim();
            let net = match item.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "{item:?} is not an address or a network (CIDR, e.g. 192.0.2.0/24)"
                        ))
                    }
                },
            };
            nets.push(net);
        }
        Ok(Networks(nets))
    }

    /// True when `ip` is in one of the networks (an IPv4-mapped IPv6
    /// address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_addresses_and_blocks() {
        let n = Networks::parse(&["127.0.0.1".into(), "192.0.2.0/24".into(), "::1/128".into()])
            .unwrap();
        assert!(n.contains("127.0.0.1".parse().unwrap()));
        assert!(!n.contains("127.0.0.2".parse().unwrap()));
        assert!(n.contains("192.0.2.77".parse().unwrap()));
        assert!(n.contains("::ffff:192.0.2.1".parse().unwrap()));
        assert!(n.contains("::1".parse().unwrap()));
        assert!(!n.contains("2001:db8::1".parse().unwrap()));
        // Host bits are ignored, as Postfix does with a warning.
        let n = Networks::parse(&["10.1.2.3/8".into()]).unwrap();
        assert!(n.contains("10.200.0.1".parse().unwrap()));
        assert!(Networks::parse(&["localhost".into()]).is_err());
        assert!(Networks::parse(&["10.0.0.0/33".into()]).is_err());
    }

    #[test]
    fn default_is_loopback_only() {
        let n = Networks::parse(&default_mynetworks()).unwrap();
        assert!(n.contains("127.9.9.9".parse().unwrap()));
        assert!(n.contains("::1".parse().unwrap()));
        assert!(!n.contains("192.168.1.1".parse().unwrap()));
    }
}
