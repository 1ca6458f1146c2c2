//! DMARC (RFC 7489): a record at `_dmarc.FROM`, or at the organisational
//! domain's `_dmarc` when the `From:` domain has none, and identifier
//! alignment: the DKIM signing domain (`d=`) or the envelope (bounce)
//! domain must align with the `From:` domain, relaxed or strict as the
//! record's `adkim=` / `aspf=` say.
//!
//! The organisational domain is the registrable domain by the Public
//! Suffix List (RFC 7489 section 3.2, through the `psl` crate, whose list
//! is compiled in): `news.example.co.uk` belongs to `example.co.uk`. With
//! only the last two labels, every domain under `co.uk` would have been
//! "aligned" with every other.

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::dmarc::{Alignment, Dmarc, Policy};

use super::resolver::canonical;
use super::{CheckError, CheckKind, CheckOptions, CheckResolver, Finding, Status};

const DMARC: CheckKind = CheckKind::Dmarc;

/// The organisational domain of `domain`: its registrable domain by the
/// Public Suffix List (a name under an unlisted top-level domain keeps its
/// last two labels, the list's default rule); a public suffix itself, or a
/// single label, is its own.
pub fn organisational(domain: &str) -> String {
    let d = canonical(domain);
    match psl::domain_str(&d) {
        Some(registrable) => registrable.to_string(),
        None => d,
    }
}

/// True when `a` aligns with `b`: equal (strict), or the same
/// organisational domain (relaxed).
pub fn aligned(a: &str, b: &str, mode: Alignment) -> bool {
    match mode {
        Alignment::Strict => canonical(a) == canonical(b),
        Alignment::Relaxed => organisational(a) == organisational(b),
    }
}

/// True when a TXT record is a DMARC record (`v=DMARC1` first).
pub fn is_dmarc(record: &str) -> bool {
    record
        .trim_start()
        .get(..8)
        .is_some_and(|v| v.eq_ignore_ascii_case("v=DMARC1"))
}

fn policy_word(p: Policy) -> &'static str {
    match p {
        Policy::None => "none",
        Policy::Quarantine => "quarantine",
        Policy::Reject => "reject",
        Policy::Unspecified => "unspecified",
    }
}

fn mode_word(a: Alignment) -> &'static str {
    match a {
        Alignment::Relaxed => "relaxed",
        Alignment::Strict => "strict",
    }
}

/// A DMARC record found for the `From:` domain.
#[derive(Debug)]
struct Found {
    /// `_dmarc.DOMAIN` where it was found.
    owner: String,
    /// True when found at the organisational domain, not the `From:` one.
    inherited: bool,
    /// The DMARC records there (more than one is an error).
    records: Vec<String>,
}

/// The DMARC records of `from`, or of its organisational domain.
async fn find(resolver: &CheckResolver, from: &str) -> Result<Option<Found>, CheckError> {
    let mut names = vec![(format!("_dmarc.{from}"), false)];
    let org = organisational(from);
    if org != from {
        names.push((format!("_dmarc.{org}"), true));
    }
    for (owner, inherited) in names {
        let records: Vec<String> = resolver
            .txt(&owner)
            .await?
            .into_iter()
            .filter(|r| is_dmarc(r))
            .collect();
        if !records.is_empty() {
            return Ok(Some(Found {
                owner,
                inherited,
                records,
            }));
        }
    }
    Ok(None)
}

/// The check. `dkim_domains` are the `d=` of the working keys that sign
/// the `From:` domain.
pub async fn check(
    resolver: &CheckResolver,
    opts: &CheckOptions,
    dkim_domains: &[String],
) -> Finding {
    let from = canonical(&opts.from_domain);
    let found = match find(resolver, &from).await {
        Ok(f) => f,
        Err(e) => return e.finding(DMARC),
    };
    let publish = format!(
        "publish TXT at _dmarc.{from}: \"v=DMARC1; p=none; rua=mailto:dmarc-reports@{from}\", then raise p= to quarantine"
    );
    let Some(found) = found else {
        return Finding::fail(DMARC, format!("_dmarc.{from}: no record"), publish);
    };
    if found.records.len() > 1 {
        return Finding::fail(
            DMARC,
            format!(
                "{}: {} DMARC records (receivers apply none of them)",
                found.owner,
                found.records.len()
            ),
            "keep one record",
        );
    }
    let text = &found.records[0];
    let record = match Dmarc::parse(text.as_bytes()) {
        Ok(r) => r,
        Err(e) => {
            return Finding::fail(
                DMARC,
                format!("{}: not a valid DMARC record ({e}): {text}", found.owner),
                publish,
            )
        }
    };
    judge(&record, &found, &from, &opts.bounce_domain, dkim_domains)
}

/// The finding for `record`: its policy and the alignment of `from` with
/// the DKIM domains and the bounce domain.
fn judge(
    record: &Dmarc,
    found: &Found,
    from: &str,
    bounce: &str,
    dkim_domains: &[String],
) -> Finding {
    // A subdomain under its organisational domain's record gets `sp=`.
    let policy = if found.inherited && record.sp != Policy::Unspecified {
        record.sp
    } else {
        record.p
    };
    let mut what = format!("p={}", policy_word(policy));
    if policy == Policy::None {
        what.push_str(" (monitoring only)");
    }
    if found.inherited {
        what.push_str(&format!(" from {}", found.owner));
    }
    let dkim: Vec<&String> = dkim_domains
        .iter()
        .filter(|d| aligned(d, from, record.adkim))
        .collect();
    let spf = aligned(bounce, from, record.aspf);
    let dkim_text = |list: &[&String]| {
        list.iter()
            .map(|d| format!("d={d}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (dkim.is_empty(), spf) {
        (false, true) => Finding::pass(
            DMARC,
            format!(
                "{what}, aligned with From: {from} (DKIM {}, SPF {bounce})",
                dkim_text(&dkim)
            ),
        ),
        (false, false) => Finding::pass(
            DMARC,
            format!(
                "{what}, aligned with From: {from} (DKIM {}; the bounce domain {bounce} is not)",
                dkim_text(&dkim)
            ),
        ),
        (true, true) => Finding::new(
            DMARC,
            Status::Warn,
            format!("{what}, aligned with From: {from} through SPF ({bounce}) only: forwarded mail fails DMARC"),
        )
        .with_fix(format!("sign with a working [[dkim]] key for {from} (see the DKIM line)")),
        (true, false) => {
            let all: Vec<&String> = dkim_domains.iter().collect();
            let signed = if all.is_empty() {
                "a working DKIM key".to_string()
            } else {
                format!("DKIM {}", dkim_text(&all))
            };
            Finding::fail(
                DMARC,
                format!(
                    "{what}, but From: {from} aligns with neither {signed} (adkim={}) nor the bounce domain {bounce} (aspf={})",
                    mode_word(record.adkim),
                    mode_word(record.aspf)
                ),
                format!("sign with a [[dkim]] key for {from}, or send with --bounce-domain under {from}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Dmarc {
        Dmarc::parse(text.as_bytes()).unwrap()
    }

    fn found(owner: &str, inherited: bool) -> Found {
        Found {
            owner: owner.into(),
            inherited,
            records: vec![],
        }
    }

    #[test]
    fn organisational_domains_follow_the_public_suffix_list() {
        assert_eq!(organisational("news.Example.com."), "example.com");
        assert_eq!(organisational("example.com"), "example.com");
        // An unlisted top-level domain: the last two labels.
        assert_eq!(organisational("a.b.c.example"), "c.example");
        // Multi-label suffixes.
        assert_eq!(organisational("news.example.co.uk"), "example.co.uk");
        assert_eq!(organisational("a.b.example.com.au"), "example.com.au");
        // A public suffix is its own.
        assert_eq!(organisational("co.uk"), "co.uk");
    }

    #[test]
    fn domains_under_one_public_suffix_do_not_align() {
        assert!(aligned(
            "news.example.co.uk",
            "example.co.uk",
            Alignment::Relaxed
        ));
        assert!(!aligned(
            "news.example.co.uk",
            "other.co.uk",
            Alignment::Relaxed
        ));
    }

    #[test]
    fn alignment_is_relaxed_or_strict() {
        assert!(aligned(
            "news.example.com",
            "example.com",
            Alignment::Relaxed
        ));
        assert!(!aligned(
            "news.example.com",
            "example.com",
            Alignment::Strict
        ));
        assert!(aligned("Example.com", "example.com.", Alignment::Strict));
        assert!(!aligned("example.net", "example.com", Alignment::Relaxed));
    }

    #[test]
    fn dmarc_records_are_recognised() {
        assert!(is_dmarc("v=DMARC1; p=none"));
        assert!(!is_dmarc("v=spf1 -all"));
        assert!(!is_dmarc("v=DMARC"));
    }

    #[test]
    fn aligned_by_dkim_and_spf_passes_with_the_policy() {
        let r = parse("v=DMARC1; p=quarantine");
        let f = judge(
            &r,
            &found("_dmarc.example.com", false),
            "example.com",
            "example.com",
            &["example.com".into()],
        );
        assert_eq!(f.status, Status::Pass);
        assert!(
            f.detail
                .starts_with("p=quarantine, aligned with From: example.com"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn strict_alignment_refuses_a_subdomain() {
        let r = parse("v=DMARC1; p=reject; adkim=s; aspf=s");
        let f = judge(
            &r,
            &found("_dmarc.example.com", false),
            "example.com",
            "bounce.example.com",
            &["mail.example.com".into()],
        );
        assert_eq!(f.status, Status::Fail);
        assert!(f.detail.contains("adkim=strict"), "{}", f.detail);
        let r = parse("v=DMARC1; p=reject");
        let f = judge(
            &r,
            &found("_dmarc.example.com", false),
            "example.com",
            "bounce.example.com",
            &["mail.example.com".into()],
        );
        assert_eq!(f.status, Status::Pass, "{}", f.detail);
    }

    #[test]
    fn spf_alone_warns_and_nothing_fails() {
        let r = parse("v=DMARC1; p=none");
        let f = judge(
            &r,
            &found("_dmarc.example.com", false),
            "example.com",
            "example.com",
            &[],
        );
        assert_eq!(f.status, Status::Warn);
        assert!(f.detail.contains("monitoring only"), "{}", f.detail);
        let f = judge(
            &r,
            &found("_dmarc.example.com", false),
            "example.com",
            "example.net",
            &[],
        );
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.detail.contains("neither a working DKIM key"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn an_inherited_record_applies_its_subdomain_policy() {
        let r = parse("v=DMARC1; p=reject; sp=quarantine");
        let f = judge(
            &r,
            &found("_dmarc.example.com", true),
            "news.example.com",
            "news.example.com",
            &["example.com".into()],
        );
        assert_eq!(f.status, Status::Pass);
        assert!(
            f.detail.starts_with("p=quarantine from _dmarc.example.com"),
            "{}",
            f.detail
        );
    }
}
