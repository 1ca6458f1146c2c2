//! `ringmail shaping show` against the loopback test DNS server
//! (`tests/common/dns.rs`) and with `--mx`: the site a domain rolls up
//! into, each effective limit with the rule and source that set it, a
//! user's `shaping_file` overriding the shipped defaults, and the exit
//! codes for a bad rules file (78) and an unanswered DNS question (75).
//!
//! The configuration's `[dns]` points at the test server only; nothing is
//! ever connected to besides it.

mod common;

use std::process::Output;

use common::dns::{DnsServer, Zone};
use common::{Sandbox, Settings};

fn sandbox(dns: &[String], extra: &str) -> Sandbox {
    Sandbox::with(Settings {
        dns_servers: dns.to_vec(),
        extra: extra.to_string(),
        ..Settings::default()
    })
}

fn show(sb: &Sandbox, args: &[&str]) -> Output {
    sb.cmd()
        .args(["shaping", "show"])
        .args(args)
        .arg("--config")
        .arg(&sb.config)
        .output()
        .expect("ringmail shaping show")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The line for `field`, or a panic showing everything.
fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{name} = ")))
        .unwrap_or_else(|| panic!("no {name} line in:\n{out}"))
}

#[test]
fn a_workspace_domain_resolved_in_dns_rolls_up_into_google_with_sources() {
    let zone = Zone::new().mx("corp.example", 1, "aspmx.l.google.com").mx(
        "corp.example",
        5,
        "alt1.aspmx.l.google.com",
    );
    let dns = DnsServer::start(zone);
    let sb = sandbox(&[dns.addr.to_string()], "");
    let out = show(&sb, &["corp.example"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("mx      aspmx.l.google.com, alt1.aspmx.l.google.com (from DNS)"),
        "{t}"
    );
    assert!(
        t.contains("site    google   (matched by site google mx [*.google.com, *.googlemail.com]"),
        "{t}"
    );
    let line = field(&t, "max_connections");
    assert!(line.starts_with("max_connections = 5 "), "{line}");
    assert!(
        line.contains(
            "(site google, shipped default: https://support.google.com/mail/answer/81126"
        ),
        "{line}"
    );
    let line = field(&t, "max_recipients");
    assert!(
        line.contains("(ringmail.toml, `default_destination_recipient_limit`)"),
        "{line}"
    );
    assert!(
        t.contains("google#1       when code 421, enhanced 4.7.28: cut"),
        "{t}"
    );
    assert!(dns
        .queries()
        .iter()
        .any(|(name, _)| name.trim_end_matches('.') == "corp.example"));
}

#[test]
fn a_user_shaping_file_overrides_field_by_field_and_is_named() {
    let sb = sandbox(&["127.0.0.1:9".to_string()], "");
    let rules = sb.root().join("shaping.toml");
    std::fs::write(
        &rules,
        "# mine\n[[site]]\nname = \"yahoo\"\nmax_connections = 3\n\n\
         [[domain]]\ndomains = [\"aol.com\"]\nmax_recipients = 10\n",
    )
    .unwrap();
    let extra = format!(
        "shaping_file = {:?}\n[[source]]\nname = \"ip-a\"\naddress = \"192.0.2.10\"\nmessage_rate = \"20/s\"\n",
        rules.display().to_string()
    );
    sb.write_config(&Settings {
        extra,
        ..Settings::default()
    });
    let out = show(
        &sb,
        &[
            "aol.com",
            "--mx",
            "mx-aol.mail.gm0.yahoodns.net.",
            "--source",
            "ip-a",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("(from --mx)"), "{t}");
    let path = rules.display().to_string();
    assert!(
        field(&t, "max_connections").contains(&format!("(site yahoo, {path}:2)")),
        "{t}"
    );
    assert!(
        field(&t, "max_deliveries_per_connection")
            .contains("(site yahoo, shipped default: https://senders.yahooinc.com/best-practices"),
        "{t}"
    );
    assert!(
        field(&t, "max_recipients").contains(&format!("(domain aol.com, {path}:6)")),
        "{t}"
    );
    assert!(
        field(&t, "message_rate").contains("20/s")
            && t.contains("(source ip-a, ringmail.toml [[source]])"),
        "{t}"
    );
    // A domain no rule knows: its MX set is its site.
    let out = show(
        &sb,
        &[
            "small.example",
            "--mx",
            "mx2.host.example",
            "--mx",
            "mx1.host.example",
        ],
    );
    let t = text(&out);
    assert!(
        t.contains("site    mx1.host.example,mx2.host.example   (no site rule matched"),
        "{t}"
    );
}

#[test]
fn a_bad_rules_file_is_a_configuration_error_naming_line_and_field() {
    let sb = sandbox(&["127.0.0.1:9".to_string()], "");
    let rules = sb.root().join("shaping.toml");
    std::fs::write(&rules, "[[site]]\nname = \"g\"\nmax_connections = 0\n").unwrap();
    let extra = format!("shaping_file = {:?}\n", rules.display().to_string());
    let sb = sandbox(&["127.0.0.1:9".to_string()], &extra);
    let out = show(&sb, &["gmail.com", "--mx", "gmail-smtp-in.l.google.com"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(78), "{t}");
    assert!(
        t.contains(&format!(
            "{}:3: [[site]] g `max_connections`: must be at least 1",
            rules.display()
        )),
        "{t}"
    );
}

#[test]
fn an_unanswered_mx_question_exits_75() {
    let dns = DnsServer::start(Zone::new().servfail("broken.example"));
    let sb = sandbox(&[dns.addr.to_string()], "");
    let out = show(&sb, &["broken.example"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
}
