//! The bounce domain receives mail: bounces and feedback go to VERP
//! addresses at the envelope domain, so it needs an MX whose host has an
//! address, or (implicit MX, RFC 5321 section 5.1) an A/AAAA record. A
//! null MX (RFC 7505) refuses all mail.

use std::net::IpAddr;

use super::{CheckKind, CheckResolver, Finding, Status};

const MX: CheckKind = CheckKind::Mx;

/// What the DNS says about a bounce domain, for [`judge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Receiving {
    /// MX records: (preference, exchange, the exchange's addresses).
    Mx(Vec<(u16, String, Vec<IpAddr>)>),
    /// A null MX (`0 .`).
    NullMx,
    /// No MX; the domain's own addresses (empty: none).
    Implicit(Vec<IpAddr>),
}

/// The check.
pub async fn check(resolver: &CheckResolver, domain: &str) -> Finding {
    let mx = match resolver.mx(domain).await {
        Ok(m) => m,
        Err(e) => return e.finding(MX),
    };
    let receiving = if mx.iter().any(|(_, host)| host.is_empty()) {
        Receiving::NullMx
    } else if mx.is_empty() {
        match resolver.addresses(domain).await {
            Ok(a) => Receiving::Implicit(a),
            Err(e) => return e.finding(MX),
        }
    } else {
        let mut hosts = Vec::with_capacity(mx.len());
        for (pref, host) in mx {
            match resolver.addresses(&host).await {
                Ok(a) => hosts.push((pref, host, a)),
                Err(e) => return e.finding(MX),
            }
        }
        Receiving::Mx(hosts)
    };
    judge(domain, &receiving)
}

/// The finding for what `domain` publishes.
pub fn judge(domain: &str, receiving: &Receiving) -> Finding {
    let publish =
        format!("publish an MX record for {domain} pointing at a host that accepts its bounces");
    match receiving {
        Receiving::NullMx => Finding::fail(
            MX,
            format!("{domain}: null MX: it accepts no mail, so bounces to it are lost"),
            publish,
        ),
        Receiving::Implicit(addrs) if addrs.is_empty() => Finding::fail(
            MX,
            format!("{domain}: no MX and no A/AAAA record: bounces cannot be delivered"),
            publish,
        ),
        Receiving::Implicit(addrs) => Finding::pass(
            MX,
            format!(
                "{domain}: no MX, its address {} receives (implicit MX)",
                addrs[0]
            ),
        ),
        Receiving::Mx(hosts) => {
            let list = hosts
                .iter()
                .map(|(p, h, _)| format!("{p} {h}"))
                .collect::<Vec<_>>()
                .join(", ");
            if hosts.iter().any(|(_, _, a)| !a.is_empty()) {
                Finding::pass(MX, format!("{domain}: MX {list}"))
            } else {
                Finding::new(
                    MX,
                    Status::Fail,
                    format!("{domain}: MX {list}, but no MX host has an address"),
                )
                .with_fix("add A/AAAA records for the MX hosts")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mx_hosts_with_addresses_pass() {
        let f = judge(
            "example.com",
            &Receiving::Mx(vec![
                (
                    10,
                    "mx1.example.com".into(),
                    vec!["192.0.2.1".parse().unwrap()],
                ),
                (20, "mx2.example.com".into(), vec![]),
            ]),
        );
        assert_eq!(f.status, Status::Pass);
        assert_eq!(
            f.detail,
            "example.com: MX 10 mx1.example.com, 20 mx2.example.com"
        );
        let f = judge(
            "example.com",
            &Receiving::Mx(vec![(10, "mx1.example.com".into(), vec![])]),
        );
        assert_eq!(f.status, Status::Fail);
    }

    #[test]
    fn implicit_mx_passes_and_nothing_or_null_mx_fails() {
        let f = judge(
            "example.com",
            &Receiving::Implicit(vec!["192.0.2.1".parse().unwrap()]),
        );
        assert_eq!(f.status, Status::Pass);
        assert!(f.detail.contains("implicit MX"));
        let f = judge("example.com", &Receiving::Implicit(vec![]));
        assert_eq!(f.status, Status::Fail);
        assert!(f.fix.is_some());
        let f = judge("example.com", &Receiving::NullMx);
        assert_eq!(f.status, Status::Fail);
        assert!(f.detail.contains("null MX"));
    }
}
