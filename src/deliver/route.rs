//! Routing: which next hop a recipient's domain goes to (`[[route]]`
//! entries, then `relayhost`), and the addresses of that hop.

use std::net::{IpAddr, SocketAddr};

use crate::config::Config;
use crate::model::Nexthop;

/// Why a recipient has no usable next hop (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Neither a route nor a relay host covers the domain, and MX lookup is
    /// not available yet.
    #[error("no route to domain {0}: no [[route]] or relayhost matches and MX lookup is not implemented yet")]
    NoRoute(String),
    /// The next hop needs an MX lookup, which is not available yet.
    #[error(
        "next hop {0} needs an MX lookup, which is not implemented yet: write it as [host]:port"
    )]
    NeedsMx(String),
    /// The host name did not resolve.
    #[error("host or domain name not found: {host}: {detail}")]
    Resolve {
        /// The host.
        host: String,
        /// Resolver message.
        detail: String,
    },
}

impl RouteError {
    /// All of these may be fixed by configuration or DNS: defer, do not bounce.
    pub fn is_transient(&self) -> bool {
        true
    }

    /// The enhanced status code for logs.
    pub fn dsn(&self) -> &'static str {
        match self {
            RouteError::NoRoute(_) | RouteError::NeedsMx(_) => "4.4.3",
            RouteError::Resolve { .. } => "4.4.4",
        }
    }
}

/// Maps recipient domains to next hops.
#[derive(Clone, Debug)]
pub struct Router {
    routes: Vec<(String, Nexthop)>,
    relayhost: Option<Nexthop>,
}

impl Router {
    /// The router for a configuration (validated, so hops parse).
    pub fn from_config(c: &Config) -> Router {
        Router {
            routes: c
                .route
                .iter()
                .filter_map(|r| {
                    Nexthop::parse(&r.nexthop)
                        .ok()
                        .map(|h| (r.domain.to_ascii_lowercase(), h))
                })
                .collect(),
            relayhost: if c.relayhost.is_empty() {
                None
            } else {
                Nexthop::parse(&c.relayhost).ok()
            },
        }
    }

    /// The next hop for a recipient address: the first `[[route]]` whose
    /// domain equals the address's domain (or, written `.example.com`, is a
    /// parent of it), else `relayhost`.
    pub fn route(&self, recipient: &str) -> Result<&Nexthop, RouteError> {
        let domain = recipient
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or("")
            .to_ascii_lowercase();
        for (d, hop) in &self.routes {
            let hit = if let Some(suffix) = d.strip_prefix('.') {
                domain.ends_with(&format!(".{suffix}"))
            } else {
                *d == domain
            };
            if hit {
                return Ok(hop);
            }
        }
        self.relayhost.as_ref().ok_or(RouteError::NoRoute(domain))
    }
}

/// The socket addresses of a next hop that needs no MX lookup.
pub async fn resolve(hop: &Nexthop) -> Result<Vec<SocketAddr>, RouteError> {
    if hop.mx_lookup {
        return Err(RouteError::NeedsMx(hop.to_string()));
    }
    if let Ok(ip) = hop.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, hop.port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((hop.host.as_str(), hop.port))
        .await
        .map_err(|e| RouteError::Resolve {
            host: hop.host.clone(),
            detail: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(RouteError::Resolve {
            host: hop.host.clone(),
            detail: "no addresses".into(),
        });
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteConfig;

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
            },
            RouteConfig {
                domain: ".sub.example".into(),
                nexthop: "[127.0.0.3]:25".into(),
            },
        ];
        let r = Router::from_config(&c);
        assert_eq!(r.route("a@Special.Example").unwrap().host, "127.0.0.2");
        assert_eq!(r.route("a@x.sub.example").unwrap().host, "127.0.0.3");
        assert_eq!(r.route("a@sub.example").unwrap().host, "127.0.0.1");
        assert_eq!(r.route("a@other.example").unwrap().host, "127.0.0.1");
        c.relayhost.clear();
        let r = Router::from_config(&c);
        assert!(matches!(
            r.route("a@other.example"),
            Err(RouteError::NoRoute(_))
        ));
    }
}
