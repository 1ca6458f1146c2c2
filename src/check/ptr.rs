//! Reverse DNS of the sending IP, forward-confirmed (FCrDNS): a PTR record
//! names a host whose A/AAAA records include the IP again. Receivers such
//! as Gmail refuse or distrust mail from an IP without it.

use std::net::IpAddr;

use super::{CheckKind, CheckResolver, Finding, Status};

const PTR: CheckKind = CheckKind::Ptr;

/// What the forward lookup of one PTR name gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// The name's addresses.
    Addresses(Vec<IpAddr>),
    /// The lookup failed (transient); the text says why.
    Trouble(String),
}

/// The check; skipped without an IP. `domain` only shapes the advice.
pub async fn check(resolver: &CheckResolver, ip: Option<IpAddr>, domain: &str) -> Finding {
    let Some(ip) = ip else {
        return Finding::new(PTR, Status::Skip, "no --ip given: reverse DNS not checked");
    };
    let names = match resolver.ptr(ip).await {
        Ok(n) => n,
        Err(e) => return e.finding(PTR),
    };
    let mut forward = Vec::with_capacity(names.len());
    for name in names {
        let f = match resolver.addresses(&name).await {
            Ok(a) => Forward::Addresses(a),
            Err(e) => Forward::Trouble(e.to_string()),
        };
        forward.push((name, f));
    }
    judge(ip, &forward, domain)
}

/// The finding for the PTR names of `ip` and their forward lookups.
pub fn judge(ip: IpAddr, forward: &[(String, Forward)], domain: &str) -> Finding {
    let rtype = if ip.is_ipv4() { "A" } else { "AAAA" };
    if forward.is_empty() {
        return Finding::fail(
            PTR,
            format!("{ip}: no PTR record"),
            format!(
                "ask whoever runs {ip} (the hosting provider) to set its reverse DNS to a name \
                 with an {rtype} record back to it, e.g. mail.{domain}"
            ),
        );
    }
    if let Some((name, _)) = forward
        .iter()
        .find(|(_, f)| matches!(f, Forward::Addresses(a) if a.contains(&ip)))
    {
        return Finding::pass(PTR, format!("{ip} -> {name} -> {ip}"));
    }
    if let Some((_, Forward::Trouble(why))) = forward
        .iter()
        .find(|(_, f)| matches!(f, Forward::Trouble(_)))
    {
        return Finding::new(PTR, Status::TempError, why.clone()).with_fix("try again");
    }
    let (name, f) = &forward[0];
    let to = match f {
        Forward::Addresses(a) if !a.is_empty() => a
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        _ => "no address".to_string(),
    };
    Finding::fail(
        PTR,
        format!("{ip} -> {name} -> {to}: not forward-confirmed"),
        format!("add the {rtype} record {name} -> {ip}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_name_that_resolves_back_passes() {
        let f = judge(
            ip("203.0.113.5"),
            &[
                ("other.example.com".into(), Forward::Addresses(vec![])),
                (
                    "mail.example.com".into(),
                    Forward::Addresses(vec![ip("203.0.113.9"), ip("203.0.113.5")]),
                ),
            ],
            "example.com",
        );
        assert_eq!(f.status, Status::Pass);
        assert_eq!(f.detail, "203.0.113.5 -> mail.example.com -> 203.0.113.5");
    }

    #[test]
    fn no_ptr_or_no_way_back_fails_with_advice() {
        let f = judge(ip("203.0.113.5"), &[], "example.com");
        assert_eq!(f.status, Status::Fail);
        assert!(f.fix.unwrap().contains("mail.example.com"));
        let f = judge(
            ip("2001:db8::5"),
            &[(
                "mail.example.com".into(),
                Forward::Addresses(vec![ip("2001:db8::6")]),
            )],
            "example.com",
        );
        assert_eq!(f.status, Status::Fail);
        assert_eq!(
            f.detail,
            "2001:db8::5 -> mail.example.com -> 2001:db8::6: not forward-confirmed"
        );
        assert_eq!(
            f.fix.as_deref(),
            Some("add the AAAA record mail.example.com -> 2001:db8::5")
        );
    }

    #[test]
    fn dns_trouble_on_the_way_back_is_a_temperror() {
        let f = judge(
            ip("203.0.113.5"),
            &[(
                "mail.example.com".into(),
                Forward::Trouble("SERVFAIL".into()),
            )],
            "example.com",
        );
        assert_eq!(f.status, Status::TempError);
    }
}
