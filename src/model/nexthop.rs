//! Next hops in Postfix's syntax: `[host]:port` (no MX lookup), `host`
//! (MX lookup), `host:port`, IP literals.

use std::fmt;
use std::net::IpAddr;

/// Where mail for a destination goes next.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Nexthop {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// TCP port (25 unless given).
    pub port: u16,
    /// True when `host` names a domain whose MX records must be looked up;
    /// false for `[host]` and for IP addresses.
    pub mx_lookup: bool,
}

/// A next hop that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad next hop {input:?}: {reason} (expected host, [host], [host]:port or an IP address)")]
pub struct BadNexthop {
    /// What was given.
    pub input: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl BadNexthop {
    /// Configuration errors do not go away by themselves.
    pub fn is_transient(&self) -> bool {
        false
    }
}

impl Nexthop {
    /// Parses Postfix's relayhost / transport next-hop syntax.
    pub fn parse(input: &str) -> Result<Nexthop, BadNexthop> {
        let bad = |reason| BadNexthop {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() || s.contains(char::is_whitespace) {
            return Err(bad("empty or contains spaces"));
        }
        let (host, port, bracketed) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ]"))?;
            let port = match after {
                "" => 25,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| bad("bad port after ]"))?,
            };
            (host.to_string(), port, true)
        } else if s.parse::<IpAddr>().is_ok() {
            (s.to_string(), 25, true)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| bad("bad port"))?,
                    false,
                ),
                None => (s.to_string(), 25, false),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if port == 0 {
            return Err(bad("port 0"));
        }
        let is_ip = host.parse::<IpAddr>().is_ok();
        if !is_ip
            && !host
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(bad("not a host name or IP address"));
        }
        Ok(Nexthop {
            host,
            port,
            mx_lookup: !bracketed && !is_ip,
        })
    }
}

impl fmt::Display for Nexthop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mx_lookup {
            if self.port == 25 {
                write!(f, "{}", self.host)
            } else {
                write!(f, "{}:{}", self.host, self.port)
            }
        } else {
            write!(f, "[{}]:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_forms() {
        let n = Nexthop::parse("[127.0.0.1]:2526").unwrap();
        assert_eq!(
            (n.host.as_str(), n.port, n.mx_lookup),
            ("127.0.0.1", 2526, false)
        );
        let n = Nexthop::parse("[mail.example.com]").unwrap();
        assert_eq!((n.port, n.mx_lookup), (25, false));
        let n = Nexthop::parse("example.com").unwrap();
        assert!(n.mx_lookup);
        let n = Nexthop::parse("example.com:587").unwrap();
        assert_eq!((n.port, n.mx_lookup), (587, true));
        let n = Nexthop::parse("[::1]:2525").unwrap();
        assert_eq!((n.host.as_str(), n.port), ("::1", 2525));
        assert!(!Nexthop::parse("127.0.0.1").unwrap().mx_lookup);
        assert_eq!(
            Nexthop::parse("[127.0.0.1]:2526").unwrap().to_string(),
            "[127.0.0.1]:2526"
        );
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "[127.0.0.1",
            "[x]:port",
            "a b",
            "host:0",
            "bad_host!",
            "[]:25",
        ] {
            assert!(Nexthop::parse(bad).is_err(), "{bad}");
        }
    }
}
