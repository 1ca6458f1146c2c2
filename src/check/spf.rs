//! SPF (RFC 7208): does the envelope (bounce) domain's policy pass for the
//! sending IP? The record is read to show it; mail-auth evaluates it
//! (includes, redirects, macros, the ten-lookup limit) through the same
//! resolver, for the MAIL FROM identity `postmaster@BOUNCE_DOMAIN`.

use std::net::IpAddr;

use mail_auth::spf::verify::SpfParameters;
use mail_auth::{Parameters, SpfResult};

use super::{CheckKind, CheckOptions, CheckResolver, Finding, Status};

const SPF: CheckKind = CheckKind::Spf;
const HELO: CheckKind = CheckKind::Helo;

/// True when a TXT record is an SPF policy (`v=spf1`, then a space or the
/// end).
pub fn is_spf(record: &str) -> bool {
    let r = record.trim_start();
    match (r.get(..6), r.get(6..)) {
        (Some(v), Some(rest)) => {
            v.eq_ignore_ascii_case("v=spf1") && (rest.is_empty() || rest.starts_with(' '))
        }
        _ => false,
    }
}

/// The mechanism that authorises `ip` alone: `ip4:203.0.113.5` or `ip6:...`.
pub fn mechanism(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip4:{v4}"),
        IpAddr::V6(v6) => format!("ip6:{v6}"),
    }
}

/// The check. Without an IP it only reports the record (skip).
pub async fn check(resolver: &CheckResolver, opts: &CheckOptions) -> Finding {
    let domain = opts.bounce_domain.as_str();
    let records = match resolver.txt(domain).await {
        Ok(r) => r,
        Err(e) => return e.finding(SPF),
    };
    let spf: Vec<&String> = records.iter().filter(|r| is_spf(r)).collect();
    let Some(ip) = opts.ip else {
        let what = match spf.first() {
            Some(r) => (*r).clone(),
            None => format!("{domain}: no SPF record"),
        };
        return Finding::new(
            SPF,
            Status::Skip,
            format!("{what}; give --ip to evaluate it"),
        );
    };
    let publish = |how: &str| format!("{how} TXT at {domain}: \"v=spf1 {} -all\"", mechanism(ip));
    let record = match spf.as_slice() {
        [] => {
            return Finding::fail(SPF, format!("{domain}: no SPF record"), publish("publish"));
        }
        [one] => (*one).clone(),
        many => {
            return Finding::fail(
                SPF,
                format!(
                    "{domain}: {} SPF records (permerror: receivers ignore them all)",
                    many.len()
                ),
                "merge them into one record",
            );
        }
    };
    let sender = format!("postmaster@{domain}");
    let out = resolver
        .authenticator()
        .verify_spf(Parameters::new(SpfParameters::verify_mail_from(
            ip, &opts.helo, &opts.helo, &sender,
        )))
        .await;
    judge(out.result(), &record, domain, ip)
}

/// The SPF policy of the EHLO name for the sending IP: receivers evaluate
/// it for mail whose envelope sender is empty (RFC 7208 section 2.3), that
/// is for ringmail's bounces and delay notices. `None` without an IP.
/// Never a failure of the domain itself: a missing or failing HELO policy
/// is a warning with the record to publish.
pub async fn check_helo(resolver: &CheckResolver, opts: &CheckOptions) -> Option<Finding> {
    let ip = opts.ip?;
    let helo = opts.helo.as_str();
    let records =
        match resolver.txt(helo).await {
            Ok(r) => r,
            Err(e) if e.is_transient() => return Some(e.finding(HELO)),
            // Not a domain name (a bare host name as myhostname): a warning,
            // like a missing record, never a failure of the domain checked.
            Err(e) => return Some(
                Finding::new(
                    HELO,
                    Status::Warn,
                    format!("{e}; bounces are checked against the EHLO name"),
                )
                .with_fix(
                    "set myhostname to a fully qualified name with an A record and an SPF policy",
                ),
            ),
        };
    let record = records
        .iter()
        .find(|r| is_spf(r))
        .cloned()
        .unwrap_or_default();
    let out = resolver
        .authenticator()
        .verify_spf(Parameters::new(SpfParameters::verify_ehlo(ip, helo, helo)))
        .await;
    Some(judge_helo(out.result(), &record, helo, ip))
}

/// The finding for mail-auth's result on the HELO name's `record`.
pub fn judge_helo(result: SpfResult, record: &str, helo: &str, ip: IpAddr) -> Finding {
    let why = "bounces (MAIL FROM:<>) are checked against it";
    let publish = format!("publish TXT at {helo}: \"v=spf1 {} -all\"", mechanism(ip));
    match result {
        SpfResult::Pass => Finding::pass(HELO, format!("{helo}: {record}")),
        SpfResult::None => {
            Finding::new(HELO, Status::Warn, format!("{helo}: no SPF record; {why}"))
                .with_fix(publish)
        }
        SpfResult::TempError => Finding::new(
            HELO,
            Status::TempError,
            format!("{helo}: temperror (a DNS lookup of the policy failed)"),
        )
        .with_fix("try again; if it persists, check the names the record includes"),
        other => Finding::new(
            HELO,
            Status::Warn,
            format!(
                "{helo}: {record}: {} for {ip}; {why}",
                other.to_string().to_ascii_lowercase()
            ),
        )
        .with_fix(format!(
            "add {} to the SPF record of {helo}, or {publish}",
            mechanism(ip)
        )),
    }
}

/// The finding for mail-auth's result on `record` of `domain`.
pub fn judge(result: SpfResult, record: &str, domain: &str, ip: IpAddr) -> Finding {
    let add = || {
        format!(
            "add {} to the SPF record of {domain} before its all",
            mechanism(ip)
        )
    };
    let word = |r: SpfResult| r.to_string().to_ascii_lowercase();
    match result {
        SpfResult::Pass => Finding::pass(SPF, record),
        SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => {
            Finding::fail(SPF, format!("{record}: {} for {ip}", word(result)), add())
        }
        SpfResult::None => Finding::fail(
            SPF,
            format!("{domain}: no SPF record"),
            format!("publish TXT at {domain}: \"v=spf1 {} -all\"", mechanism(ip)),
        ),
        SpfResult::PermError => Finding::fail(
            SPF,
            format!("{record}: permerror (a syntax error, or more than 10 DNS lookups)"),
            "fix the record; receivers treat it as no policy",
        ),
        SpfResult::TempError => Finding::new(
            SPF,
            Status::TempError,
            format!("{record}: temperror (a DNS lookup of the policy failed)"),
        )
        .with_fix("try again; if it persists, check the names the record includes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 5));

    #[test]
    fn spf_records_are_recognised() {
        assert!(is_spf("v=spf1 -all"));
        assert!(is_spf("V=SPF1 ip4:1.2.3.4 -all"));
        assert!(is_spf("v=spf1"));
        assert!(!is_spf("v=spf10 -all"));
        assert!(!is_spf("v=DKIM1; p=abc"));
        assert!(!is_spf("google-site-verification=x"));
    }

    #[test]
    fn results_become_findings_with_fixes() {
        let rec = "v=spf1 ip4:198.51.100.1 -all";
        let f = judge(
            SpfResult::Pass,
            "v=spf1 ip4:203.0.113.5 -all",
            "example.com",
            IP,
        );
        assert_eq!(f.status, Status::Pass);
        assert_eq!(f.detail, "v=spf1 ip4:203.0.113.5 -all");
        let f = judge(SpfResult::SoftFail, rec, "example.com", IP);
        assert_eq!(f.status, Status::Fail);
        assert_eq!(f.detail, format!("{rec}: softfail for 203.0.113.5"));
        assert!(f.fix.unwrap().contains("add ip4:203.0.113.5"));
        let f = judge(SpfResult::TempError, rec, "example.com", IP);
        assert_eq!(f.status, Status::TempError);
        let f = judge(SpfResult::PermError, rec, "example.com", IP);
        assert_eq!(f.status, Status::Fail);
        let v6: IpAddr = "2001:db8::25".parse().unwrap();
        assert_eq!(mechanism(v6), "ip6:2001:db8::25");
    }

    #[test]
    fn a_missing_or_failing_helo_policy_warns_with_the_record_to_publish() {
        let rec = "v=spf1 ip4:203.0.113.5 -all";
        let f = judge_helo(SpfResult::Pass, rec, "mx.example.com", IP);
        assert_eq!(f.status, Status::Pass);
        assert_eq!(f.detail, format!("mx.example.com: {rec}"));
        let f = judge_helo(SpfResult::None, "", "mx.example.com", IP);
        assert_eq!(f.status, Status::Warn);
        assert!(f.detail.contains("bounces"), "{}", f.detail);
        let fix = f.fix.unwrap();
        assert!(
            fix.contains("TXT at mx.example.com: \"v=spf1 ip4:203.0.113.5 -all\""),
            "{fix}"
        );
        let f = judge_helo(SpfResult::Fail, "v=spf1 -all", "mx.example.com", IP);
        assert_eq!(f.status, Status::Warn);
        assert!(f.detail.contains("fail for 203.0.113.5"), "{}", f.detail);
        let f = judge_helo(SpfResult::TempError, rec, "mx.example.com", IP);
        assert_eq!(f.status, Status::TempError);
    }
}
