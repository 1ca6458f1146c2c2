//! `ringmail check-domain` against the loopback test DNS server
//! (`tests/common/dns.rs`): zones that pass and fail each check (SPF,
//! DKIM, DMARC, PTR, MX), the table, `--json`, the exit codes (0, 1, 75),
//! and the check `campaign send` makes (warnings, `--strict`).
//!
//! The configuration's `[dns]` always points at the test server; the
//! documentation addresses (203.0.113.0/24, 198.51.100.0/24) are only
//! values in records, never connected to.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::dns::{DnsServer, Zone};
use common::{Sandbox, Settings};
use hickory_proto::rr::RecordType;

const IP: &str = "203.0.113.5";

fn ip() -> std::net::IpAddr {
    IP.parse().unwrap()
}

/// `ringmail dkim keygen` (Ed25519) into the sandbox: the key file and the
/// TXT record it prints.
fn keygen(sb: &Sandbox, domain: &str, selector: &str, file: &str) -> (PathBuf, String) {
    keygen_alg(sb, domain, selector, file, "ed25519")
}

/// `ringmail dkim keygen --algorithm ALG`: the key file and its record.
fn keygen_alg(
    sb: &Sandbox,
    domain: &str,
    selector: &str,
    file: &str,
    alg: &str,
) -> (PathBuf, String) {
    let path = sb.root().join(file);
    let out = sb
        .cmd()
        .args(["dkim", "keygen", "--domain", domain, "--selector", selector])
        .args(["--algorithm", alg, "--out"])
        .arg(&path)
        .output()
        .expect("ringmail dkim keygen");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "keygen: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("._domainkey."))
        .unwrap_or_else(|| panic!("no zone line in {text}"));
    // `S._domainkey.D. IN TXT ( "part" "part" )`: the quoted parts, joined.
    let record: String = line.split('"').skip(1).step_by(2).collect();
    assert!(
        record.starts_with(&format!("v=DKIM1; k={alg}; p=")),
        "{record}"
    );
    (path, record)
}

/// A sandbox whose `[dns]` is `dns` and whose `[[dkim]]` are `keys`
/// (domain, selector, key file).
fn sandbox_with(dns: &DnsServer, keys: &[(&str, &str, &Path)]) -> Sandbox {
    let sb = Sandbox::new();
    write_config(&sb, dns, keys);
    sb
}

fn write_config(sb: &Sandbox, dns: &DnsServer, keys: &[(&str, &str, &Path)]) {
    let mut extra = String::new();
    for (domain, selector, file) in keys {
        extra.push_str(&format!(
            "[[dkim]]\ndomain = \"{domain}\"\nselector = \"{selector}\"\nkey_file = {:?}\n",
            file.display().to_string()
        ));
    }
    sb.write_config(&Settings {
        dns_servers: vec![dns.addr.to_string()],
        extra,
        ..Settings::default()
    });
}

/// Runs `ringmail check-domain ARGS --config C`.
fn check(sb: &Sandbox, args: &[&str]) -> Output {
    sb.cmd()
        .arg("check-domain")
        .args(args)
        .arg("--config")
        .arg(&sb.config)
        .output()
        .expect("ringmail check-domain")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The table line of `check` (the first one), or a panic showing all.
fn line<'a>(table: &'a str, check: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(check))
        .unwrap_or_else(|| panic!("no {check} line in:\n{table}"))
}

/// Everything example.com needs to pass every check with the key `record`
/// at `s2026._domainkey.example.com`, but a DMARC record.
fn zone_without_dmarc(record: &str) -> Zone {
    Zone::new()
        .txt("example.com", "v=spf1 ip4:203.0.113.5 -all")
        .txt("example.com", "google-site-verification=abc")
        .txt("s2026._domainkey.example.com", record)
        .ptr(ip(), "mail.example.com")
        .a("mail.example.com", IP.parse().unwrap())
        .mx("example.com", 10, "mail.example.com")
}

/// Everything example.com needs to pass every check.
fn good_zone(record: &str) -> Zone {
    zone_without_dmarc(record).txt(
        "_dmarc.example.com",
        "v=DMARC1; p=quarantine; rua=mailto:d@example.com",
    )
}

/// A sandbox with a fresh key for example.com/s2026, and the key's record.
fn keyed_sandbox() -> (Sandbox, PathBuf, String) {
    let sb = Sandbox::new();
    let (key, record) = keygen(&sb, "example.com", "s2026", "s2026.pem");
    (sb, key, record)
}

#[test]
fn a_well_configured_domain_passes_every_check() {
    let (sb, key, record) = keyed_sandbox();
    // The EHLO name (the sandbox's myhostname) has its own SPF policy.
    let dns =
        DnsServer::start(good_zone(&record).txt("mx.example.org", "v=spf1 a ip4:203.0.113.5 -all"));
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{t}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        line(&t, "SPF"),
        "  SPF    pass   v=spf1 ip4:203.0.113.5 -all"
    );
    assert_eq!(
        line(&t, "DKIM"),
        "  DKIM   pass   s2026._domainkey.example.com: ed25519-sha256 key matches the record"
    );
    assert!(
        line(&t, "DMARC")
            .starts_with("  DMARC  pass   p=quarantine, aligned with From: example.com"),
        "{t}"
    );
    assert_eq!(
        line(&t, "PTR"),
        "  PTR    pass   203.0.113.5 -> mail.example.com -> 203.0.113.5"
    );
    assert_eq!(
        line(&t, "MX"),
        "  MX     pass   example.com: MX 10 mail.example.com"
    );
    assert_eq!(
        line(&t, "HELO"),
        "  HELO   pass   mx.example.org: v=spf1 a ip4:203.0.113.5 -all"
    );
    assert_eq!(t.lines().count(), 6, "{t}");
    // The key was looked up through the configured (test) server.
    assert!(dns
        .queries()
        .contains(&("s2026._domainkey.example.com".into(), RecordType::TXT)));
}

#[test]
fn a_missing_dkim_record_fails_with_the_record_to_publish() {
    let (sb, key, record) = keyed_sandbox();
    let zone = Zone::new()
        .txt("example.com", "v=spf1 ip4:203.0.113.5 -all")
        .txt("_dmarc.example.com", "v=DMARC1; p=quarantine")
        .mx("example.com", 10, "mail.example.com")
        .a("mail.example.com", IP.parse().unwrap());
    let dns = DnsServer::start(zone);
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["example.com"]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert_eq!(
        line(&t, "DKIM"),
        format!("  DKIM   FAIL   s2026._domainkey.example.com: no record (publish: \"{record}\")")
    );
}

#[test]
fn a_record_of_another_key_fails() {
    let (sb, key, record) = keyed_sandbox();
    let (_, other) = keygen(&sb, "example.com", "s2026", "other.pem");
    let dns = DnsServer::start(good_zone(&other));
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let l = line(&t, "DKIM");
    assert!(l.contains("FAIL"), "{t}");
    assert!(l.contains("the record does not match the key"), "{l}");
    // The fix is the record of the configured key, not the published one.
    assert!(l.ends_with(&format!("(publish: \"{record}\")")), "{l}");
    assert!(!l.contains(&other), "{l}");
    // A key receivers cannot verify does not align for DMARC: only SPF
    // does.
    assert!(line(&t, "DMARC").contains("warn"), "{t}");
    assert!(
        line(&t, "DMARC").contains("through SPF (example.com) only"),
        "{t}"
    );
    // Everything else still passes.
    assert!(line(&t, "SPF").contains("pass"), "{t}");
}

#[test]
fn a_revoked_or_broken_key_record_fails() {
    let (sb, key, record) = keyed_sandbox();
    for (published, why) in [
        ("v=DKIM1; k=ed25519; p=", "revoked"),
        (&record.replace("k=ed25519", "k=rsa")[..], "does not match"),
    ] {
        let dns = DnsServer::start(
            zone_without_dmarc(published).txt("_dmarc.example.com", "v=DMARC1; p=reject"),
        );
        write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
        let out = check(&sb, &["example.com", "--ip", IP]);
        let t = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{published}: {t}");
        let l = line(&t, "DKIM");
        assert!(l.contains("FAIL") && l.contains(why), "{published}: {l}");
        assert!(l.ends_with(&format!("(publish: \"{record}\")")), "{l}");
    }
}

#[test]
fn dual_keys_are_each_checked() {
    let (sb, key, record) = keyed_sandbox();
    let (key2, _) = keygen(&sb, "example.com", "s2027", "s2027.pem");
    let dns = DnsServer::start(good_zone(&record));
    write_config(
        &sb,
        &dns,
        &[
            ("example.com", "s2026", &key),
            ("example.com", "s2027", &key2),
        ],
    );
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let dkim: Vec<&str> = t
        .lines()
        .filter(|l| l.trim_start().starts_with("DKIM"))
        .collect();
    assert_eq!(dkim.len(), 2, "{t}");
    assert!(dkim[0].contains("pass") && dkim[0].contains("s2026"), "{t}");
    assert!(
        dkim[1].contains("FAIL") && dkim[1].contains("s2027._domainkey.example.com: no record"),
        "{t}"
    );
}

#[test]
fn an_rsa_key_beside_an_ed25519_key_passes_with_its_long_record() {
    let (sb, key, record) = keyed_sandbox();
    let (rsa, rsa_record) = keygen_alg(&sb, "example.com", "r2026", "r2026.pem", "rsa");
    // Longer than one TXT character-string: published as several.
    assert!(rsa_record.len() > 255, "{rsa_record}");
    let dns = DnsServer::start(good_zone(&record).txt("r2026._domainkey.example.com", &rsa_record));
    write_config(
        &sb,
        &dns,
        &[
            ("example.com", "s2026", &key),
            ("example.com", "r2026", &rsa),
        ],
    );
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let dkim: Vec<&str> = t
        .lines()
        .filter(|l| l.trim_start().starts_with("DKIM"))
        .collect();
    assert_eq!(
        dkim,
        [
            "  DKIM   pass   s2026._domainkey.example.com: ed25519-sha256 key matches the record",
            "  DKIM   pass   r2026._domainkey.example.com: rsa-sha256 key matches the record",
        ],
        "{t}"
    );
}

#[test]
fn no_configured_key_fails_and_says_how_to_make_one() {
    let dns = DnsServer::start(good_zone("v=DKIM1; k=ed25519; p=AAAA"));
    let sb = sandbox_with(&dns, &[]);
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        line(&t, "DKIM").contains(
            "FAIL   no [[dkim]] key configured for example.com; run ringmail dkim keygen"
        ),
        "{t}"
    );
    // Without a key DMARC can align through SPF only: a warning.
    assert!(line(&t, "DMARC").contains("warn"), "{t}");
}

#[test]
fn spf_must_pass_for_the_sending_ip() {
    let (sb, key, record) = keyed_sandbox();
    let zone = |spf: Option<&str>| {
        let z = Zone::new()
            .txt("s2026._domainkey.example.com", &record)
            .txt("_dmarc.example.com", "v=DMARC1; p=reject")
            .txt("_spf.example.net", "v=spf1 ip4:203.0.113.0/24 -all")
            .mx("example.com", 10, "mail.example.com")
            .a("mail.example.com", IP.parse().unwrap())
            .ptr(ip(), "mail.example.com");
        match spf {
            Some(s) => z.txt("example.com", s),
            None => z.txt("example.com", "unrelated=1"),
        }
    };
    // Not listed: fail, with the mechanism to add.
    let dns = DnsServer::start(zone(Some("v=spf1 ip4:198.51.100.1 -all")));
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert_eq!(
        line(&t, "SPF"),
        "  SPF    FAIL   v=spf1 ip4:198.51.100.1 -all: fail for 203.0.113.5 \
         (add ip4:203.0.113.5 to the SPF record of example.com before its all)"
    );
    drop(dns);
    // Through an include: evaluated, passes.
    let dns = DnsServer::start(zone(Some("v=spf1 include:_spf.example.net ~all")));
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(
        line(&t, "SPF"),
        "  SPF    pass   v=spf1 include:_spf.example.net ~all"
    );
    drop(dns);
    // No record at all.
    let dns = DnsServer::start(zone(None));
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        line(&t, "SPF").contains(
            "FAIL   example.com: no SPF record (publish TXT at example.com: \"v=spf1 ip4:203.0.113.5 -all\")"
        ),
        "{t}"
    );
}

#[test]
fn without_an_ip_spf_and_ptr_are_skipped() {
    let (sb, key, record) = keyed_sandbox();
    let dns = DnsServer::start(good_zone(&record));
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["example.com"]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(
        line(&t, "SPF"),
        "  SPF    skip   v=spf1 ip4:203.0.113.5 -all; give --ip to evaluate it"
    );
    assert_eq!(
        line(&t, "PTR"),
        "  PTR    skip   no --ip given: reverse DNS not checked"
    );
    assert!(!dns.queries().iter().any(|(_, t)| *t == RecordType::PTR));
}

#[test]
fn dmarc_missing_misaligned_and_inherited() {
    let (sb, key, record) = keyed_sandbox();
    // No record anywhere.
    let dns = DnsServer::start(
        Zone::new()
            .txt("s2026._domainkey.example.com", &record)
            .mx("example.com", 10, "mail.example.com")
            .a("mail.example.com", IP.parse().unwrap()),
    );
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["example.com"]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        line(&t, "DMARC")
            .contains("FAIL   _dmarc.example.com: no record (publish TXT at _dmarc.example.com"),
        "{t}"
    );
    drop(dns);

    // From: news.example.com inherits example.com's record (sp=), and the
    // example.com key signs it (relaxed alignment).
    let dns = DnsServer::start(
        zone_without_dmarc(&record).txt("_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine"),
    );
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["news.example.com", "--bounce-domain", "example.com"]);
    let t = stdout(&out);
    assert!(
        line(&t, "DMARC").contains(
            "pass   p=quarantine from _dmarc.example.com, aligned with From: news.example.com"
        ),
        "{t}"
    );
    assert!(line(&t, "DKIM").contains("pass"), "{t}");

    // Strict alignment: neither d=example.com nor the bounce domain
    // bounces.example.com is exactly news.example.com.
    drop(dns);
    let dns = DnsServer::start(
        good_zone(&record)
            .txt(
                "_dmarc.news.example.com",
                "v=DMARC1; p=reject; adkim=s; aspf=s",
            )
            .mx("bounces.example.com", 10, "mail.example.com"),
    );
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(
        &sb,
        &[
            "example.com",
            "--from",
            "news.example.com",
            "--bounce-domain",
            "bounces.example.com",
        ],
    );
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let l = line(&t, "DMARC");
    assert!(
        l.contains("FAIL   p=reject, but From: news.example.com aligns with neither"),
        "{l}"
    );
    assert!(l.contains("adkim=strict"), "{l}");
}

#[test]
fn ptr_must_exist_and_resolve_back() {
    let (sb, key, record) = keyed_sandbox();
    let base = || {
        Zone::new()
            .txt("example.com", "v=spf1 ip4:203.0.113.5 -all")
            .txt("s2026._domainkey.example.com", &record)
            .txt("_dmarc.example.com", "v=DMARC1; p=none")
            .mx("example.com", 10, "mx.example.com")
            .a("mx.example.com", "198.51.100.25".parse().unwrap())
    };
    let dns = DnsServer::start(base());
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        line(&t, "PTR").contains("FAIL   203.0.113.5: no PTR record"),
        "{t}"
    );
    drop(dns);

    let dns = DnsServer::start(
        base()
            .ptr(ip(), "host.example.net")
            .a("host.example.net", "198.51.100.7".parse().unwrap()),
    );
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert_eq!(
        line(&t, "PTR"),
        "  PTR    FAIL   203.0.113.5 -> host.example.net -> 198.51.100.7: not forward-confirmed \
         (add the A record host.example.net -> 203.0.113.5)"
    );
    // The rest passes: p=none is allowed.
    assert!(
        line(&t, "DMARC").contains("pass   p=none (monitoring only)"),
        "{t}"
    );
}

#[test]
fn the_bounce_domain_must_receive_mail() {
    let (sb, key, record) = keyed_sandbox();
    let zone = good_zone(&record)
        .txt("bounces.example.com", "v=spf1 ip4:203.0.113.5 -all")
        .null_mx("null.example.com")
        .txt("null.example.com", "v=spf1 ip4:203.0.113.5 -all")
        .a("plain.example.com", "198.51.100.30".parse().unwrap())
        .txt("plain.example.com", "v=spf1 ip4:203.0.113.5 -all");
    let dns = DnsServer::start(zone);
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    // bounces.example.com has an SPF record but no MX and no address.
    let out = check(
        &sb,
        &[
            "example.com",
            "--ip",
            IP,
            "--bounce-domain",
            "bounces.example.com",
        ],
    );
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(line(&t, "SPF").contains("pass"), "{t}");
    assert!(
        line(&t, "MX").contains("FAIL   bounces.example.com: no MX and no A/AAAA record"),
        "{t}"
    );
    let out = check(&sb, &["example.com", "--bounce-domain", "null.example.com"]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        line(&t, "MX").contains("FAIL   null.example.com: null MX"),
        "{t}"
    );
    let out = check(
        &sb,
        &["example.com", "--bounce-domain", "plain.example.com"],
    );
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        line(&t, "MX").contains("pass   plain.example.com: no MX, its address 198.51.100.30"),
        "{t}"
    );
}

#[test]
fn dns_trouble_is_a_temperror_with_exit_75() {
    let (sb, key, record) = keyed_sandbox();
    let dns = DnsServer::start(good_zone(&record).servfail("_dmarc.example.com"));
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(75), "{t}");
    assert!(line(&t, "DMARC").contains("temperror"), "{t}");
    assert!(line(&t, "DKIM").contains("pass"), "{t}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("try again"));
    drop(dns);
    // The key record answering SERVFAIL and the PTR name's address never
    // answered (a timeout) are DNS trouble too, not a missing record.
    let dns = DnsServer::start(
        good_zone(&record)
            .servfail("s2026._domainkey.example.com")
            .timeout("mail.example.com"),
    );
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(75), "{t}");
    assert!(
        line(&t, "DKIM")
            .contains("temperror   DNS lookup of s2026._domainkey.example.com TXT failed"),
        "{t}"
    );
    assert!(line(&t, "PTR").contains("temperror"), "{t}");
    assert!(line(&t, "SPF").contains("pass"), "{t}");
    // A failure wins over DNS trouble.
    let out = check(&sb, &["example.com", "--ip", "198.51.100.99"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

#[test]
fn json_output_has_every_finding_and_the_exit_code() {
    let (sb, key, record) = keyed_sandbox();
    let dns = DnsServer::start(good_zone(&record));
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(
        &sb,
        &[
            "example.com",
            "--ip",
            IP,
            "--json",
            "--bounce-domain",
            "nowhere.example.com",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["domain"], "example.com");
    assert_eq!(v["bounce_domain"], "nowhere.example.com");
    assert_eq!(v["ip"], IP);
    assert_eq!(v["exit"], 1);
    let findings = v["findings"].as_array().unwrap();
    let names: Vec<&str> = findings
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["SPF", "DKIM", "DMARC", "PTR", "MX", "HELO"]);
    let mx = &findings[4];
    assert_eq!(mx["status"], "fail");
    assert!(mx["fix"].as_str().unwrap().contains("publish an MX record"));
    assert_eq!(findings[1]["status"], "pass");
    assert!(findings[1].get("fix").is_none());
}

#[test]
fn bad_arguments_exit_64() {
    let dns = DnsServer::start(Zone::new());
    let sb = sandbox_with(&dns, &[]);
    let out = check(&sb, &["not a domain"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a domain name"));
    assert!(dns.queries().is_empty());
}

const TEMPLATE: &str = "From: News <news@example.com>\n\
To: <{{ email }}>\n\
Subject: issue {{ issue }}\n\
\n\
Hello.\n";

/// `campaign send` with no daemon running: the check runs first.
fn campaign_send(sb: &Sandbox, extra: &[&str]) -> Output {
    let template = sb.root().join("t.eml");
    fs::write(&template, TEMPLATE).unwrap();
    let list = sb.root().join("l.csv");
    fs::write(&list, "email,issue\na@example.net,1\n").unwrap();
    sb.cmd()
        .args(["campaign", "send", "--template"])
        .arg(&template)
        .arg("--recipients")
        .arg(&list)
        .args(["--unsubscribe", "https://news.example.com"])
        .args(extra)
        .arg("--config")
        .arg(&sb.config)
        .output()
        .expect("ringmail campaign send")
}

#[test]
fn campaign_send_warns_and_strict_refuses_to_start() {
    let (sb, key, _) = keyed_sandbox();
    // No DKIM record published: the check fails.
    let dns = DnsServer::start(
        Zone::new()
            .txt("_dmarc.example.com", "v=DMARC1; p=quarantine")
            .mx("example.com", 10, "mail.example.com")
            .a("mail.example.com", IP.parse().unwrap()),
    );
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = campaign_send(&sb, &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("warning: check-domain example.com"), "{err}");
    assert!(
        err.contains("DKIM   FAIL   s2026._domainkey.example.com: no record"),
        "{err}"
    );
    assert!(
        !err.contains("MX     pass"),
        "only problems are shown: {err}"
    );
    // Not strict: it goes on to the daemon, which does not run here.
    assert_eq!(out.status.code(), Some(69), "{err}");

    let out = campaign_send(&sb, &["--strict"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("campaign not started"), "{err}");
    assert!(!err.contains("no daemon"), "{err}");
}

#[test]
fn campaign_send_strict_starts_when_the_domain_passes() {
    let (sb, key, record) = keyed_sandbox();
    let dns =
        DnsServer::start(good_zone(&record).txt("mx.example.org", "v=spf1 ip4:203.0.113.5 -all"));
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = campaign_send(&sb, &["--strict", "--ip", IP]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("check-domain"), "{err}");
    // Past the check: only the missing daemon stops it.
    assert_eq!(out.status.code(), Some(69), "{err}");
    // With --ip the reverse DNS was checked too.
    assert!(dns
        .queries()
        .contains(&("5.113.0.203.in-addr.arpa".to_string(), RecordType::PTR)));
}

/// Under a multi-label public suffix (`co.uk`) the organisational domain
/// comes from the Public Suffix List: From: news.example.co.uk inherits
/// `_dmarc.example.co.uk` and the example.co.uk key aligns with it (with
/// the last two labels it would have looked for `_dmarc.co.uk`).
#[test]
fn dmarc_under_a_multi_label_public_suffix() {
    let sb = Sandbox::new();
    let (key, record) = keygen(&sb, "example.co.uk", "s2026", "uk.pem");
    let dns = DnsServer::start(
        Zone::new()
            .txt("example.co.uk", "v=spf1 ip4:203.0.113.5 -all")
            .txt("s2026._domainkey.example.co.uk", &record)
            .txt("_dmarc.example.co.uk", "v=DMARC1; p=reject; sp=quarantine")
            .txt("_dmarc.co.uk", "v=DMARC1; p=none")
            .mx("example.co.uk", 10, "mail.example.co.uk")
            .a("mail.example.co.uk", IP.parse().unwrap()),
    );
    write_config(&sb, &dns, &[("example.co.uk", "s2026", &key)]);
    let out = check(
        &sb,
        &["news.example.co.uk", "--bounce-domain", "example.co.uk"],
    );
    let t = stdout(&out);
    let l = line(&t, "DMARC");
    assert!(
        l.contains(
            "pass   p=quarantine from _dmarc.example.co.uk, aligned with From: news.example.co.uk"
        ),
        "{t}"
    );
}

/// The EHLO name without an SPF policy: a warning (bounces are checked
/// against it), with the record to publish; the exit code stays 0. Without
/// `--ip` there is no HELO line.
#[test]
fn a_helo_name_without_spf_warns() {
    let (sb, key, record) = keyed_sandbox();
    let dns = DnsServer::start(good_zone(&record));
    write_config(&sb, &dns, &[("example.com", "s2026", &key)]);
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let l = line(&t, "HELO");
    assert!(
        l.starts_with("  HELO   warn   mx.example.org: no SPF record; bounces"),
        "{l}"
    );
    assert!(
        l.contains("publish TXT at mx.example.org: \"v=spf1 ip4:203.0.113.5 -all\""),
        "{l}"
    );
    let out = check(&sb, &["example.com"]);
    assert!(!stdout(&out).contains("HELO"), "{}", stdout(&out));
    // A bare host name as myhostname (gethostname's, often): a warning
    // too, not a failure.
    let text = fs::read_to_string(&sb.config).expect("config");
    fs::write(
        &sb.config,
        text.replace("myhostname = \"mx.example.org\"", "myhostname = \"myhost\""),
    )
    .expect("config");
    let out = check(&sb, &["example.com", "--ip", IP]);
    let t = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{t}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = line(&t, "HELO");
    assert!(
        l.starts_with("  HELO   warn   myhost: no SPF record"),
        "{l}"
    );
}
