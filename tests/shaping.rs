//! Shaping in the running daemon (docs/SHAPING.md): two recipient domains
//! whose MX hosts roll up into one site share that site's connection limit
//! (checked at the sink: most connections it served at once), and a
//! throttle reply matched by an automation rule suspends the site, so the
//! rest of its mail waits untried. DNS is the loopback test server; every
//! MX host is 127.0.0.1.

mod common;

use std::fs;
use std::net::Ipv4Addr;
use std::time::Duration;

use common::dns::{DnsServer, Zone};
use common::*;
use ringmail::sink::{self, Faults, Latency, SinkConfig};

fn zone() -> Zone {
    Zone::new()
        .mx("a.example", 10, "mx1.gsite.test")
        .mx("b.example", 10, "mx2.gsite.test")
        .a("mx1.gsite.test", Ipv4Addr::LOCALHOST)
        .a("mx2.gsite.test", Ipv4Addr::LOCALHOST)
}

/// A sandbox delivering by MX through `dns` to port `smtp_port`, with
/// `rules` as its shaping file.
fn sandbox(dns: &DnsServer, smtp_port: u16, rules: &str) -> Sandbox {
    sandbox_with(dns, smtp_port, rules, "")
}

/// [`sandbox`] with `more` configuration appended (top-level keys first,
/// then tables).
fn sandbox_with(dns: &DnsServer, smtp_port: u16, rules: &str, more: &str) -> Sandbox {
    let rules_dir = tempfile::tempdir().expect("dir").keep();
    let rules_file = rules_dir.join("shaping.toml");
    fs::write(&rules_file, rules).expect("write rules");
    Sandbox::with(Settings {
        dns_servers: vec![dns.addr.to_string()],
        extra: format!(
            "smtp_port = {smtp_port}\nsmtp_mta_sts = false\n\
             default_destination_concurrency_limit = 20\ninitial_destination_concurrency = 20\n\
             shaping_file = {rules_file:?}\n{more}"
        ),
        ..Settings::default()
    })
}

fn drop_messages(sb: &Sandbox, n: usize) {
    for i in 0..n {
        let domain = if i % 2 == 0 { "a.example" } else { "b.example" };
        drop_file(
            &sb.pickup(),
            &format!("m{i}"),
            format!(
                "X-Sender: s@sender.example\nX-Receiver: r{i}@{domain}\nSubject: {i}\n\nbody\n"
            )
            .as_bytes(),
        );
    }
}

#[test]
fn two_domains_of_one_site_share_its_connection_limit() {
    let dns = DnsServer::start(zone());
    let sink = sink::start(SinkConfig {
        latency: Latency::Fixed(Duration::from_millis(40)),
        ..SinkConfig::default()
    })
    .expect("sink");
    let sb = sandbox(
        &dns,
        sink.local_addr.port(),
        "[[site]]\nname = \"gsite\"\nmx = [\"*.gsite.test\"]\nmax_connections = 2\n",
    );
    let mut d = sb.start_daemon("uring");
    let n = 40;
    drop_messages(&sb, n);
    d.wait_until("every message delivered", || {
        sink.stats().messages >= n as u64
    });
    let stats = sink.stats();
    assert!(
        stats.max_concurrent_connections <= 2,
        "the site's limit of 2 connections held over both domains and both shards: {} at once",
        stats.max_concurrent_connections
    );
    assert!(stats.max_concurrent_connections >= 1);
    d.wait_until("the queue is empty", || sb.queue_list().is_empty());
    d.stop();
}

#[test]
fn a_matched_throttle_reply_suspends_the_site() {
    let dns = DnsServer::start(zone());
    let sink = sink::start(SinkConfig {
        faults: Faults {
            rcpt_tempfail: 1.0,
            ..Faults::default()
        },
        ..SinkConfig::default()
    })
    .expect("sink");
    let sb = sandbox(
        &dns,
        sink.local_addr.port(),
        "[[site]]\nname = \"gsite\"\nmx = [\"*.gsite.test\"]\nmax_connections = 1\n\
         [[site.automation]]\ncode = 451\ntext = \"injected fault\"\naction = \"suspend\"\nduration = \"1h\"\n",
    );
    let mut d = sb.start_daemon("epoll");
    drop_messages(&sb, 20);
    d.wait_for_log("gsite: suspended for 1h");
    // `queue sites` shows the automation's suspension, up to an hour on.
    let g = site_entry(&sb, "gsite").expect("gsite is listed");
    let now = chrono::Utc::now().timestamp();
    let until = g["suspended_until"].as_i64().expect("suspended");
    assert!(until > now && until <= now + 3601, "{g}");
    assert_eq!(g["next_change"].as_i64(), Some(until), "{g}");
    // Whatever was not tried before the suspension stays untried, through
    // a flush too: it is not counted as an attempt.
    ok_flush(&sb);
    std::thread::sleep(Duration::from_millis(1500));
    let listed = sb.queue_list();
    assert_eq!(listed.len(), 20, "nothing lost, nothing bounced");
    let pending = listed
        .iter()
        .flat_map(|m| m.recipients.iter())
        .filter(|r| r.status == "pending")
        .count();
    assert!(
        pending > 0,
        "the site's remaining mail waits untried: {listed:?}"
    );
    let deferred_lines = count_lines(&d.log(), &["status=deferred"]);
    assert!(
        deferred_lines < 20,
        "attempts stopped at the suspension ({deferred_lines} deferrals)"
    );
    d.stop();
}

/// `ringmail queue sites --json`: the daemon's sites.
fn queue_sites(sb: &Sandbox) -> Vec<serde_json::Value> {
    let out = sb
        .cmd()
        .args(["queue", "sites", "--json", "--config"])
        .arg(&sb.config)
        .output()
        .expect("ringmail queue sites");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON array")
}

/// The entry of `site` in `queue sites --json`.
fn site_entry(sb: &Sandbox, site: &str) -> Option<serde_json::Value> {
    queue_sites(sb).into_iter().find(|s| s["site"] == site)
}

fn ok_flush(sb: &Sandbox) {
    let out = sb.flush();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every dumped message: (sender, HELO name).
fn dumped(dir: &std::path::Path) -> Vec<(String, String)> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.ends_with(".json"))
        .filter_map(|n| fs::read_to_string(dir.join(n)).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|v| {
            (
                v["mail_from"].as_str().unwrap_or("").to_string(),
                v["helo"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn pools_pick_sources_by_sender_domain_and_warm_up_caps_hold() {
    let dns = DnsServer::start(zone());
    let dump = tempfile::tempdir().expect("dir");
    let sink = sink::start(SinkConfig {
        dump_dir: Some(dump.path().to_path_buf()),
        ..SinkConfig::default()
    })
    .expect("sink");
    let today = chrono::Utc::now().format("%Y-%m-%d");
    let sb = sandbox(&dns, sink.local_addr.port(), "");
    let mut config = fs::read_to_string(&sb.config).expect("config");
    config = config.replace(
        "shaping_file",
        &format!(
            "[[source]]\nname = \"src-a\"\naddress = \"127.0.0.2\"\nehlo_name = \"a.src.test\"\n\
             [[source]]\nname = \"src-b\"\naddress = \"127.0.0.3\"\nehlo_name = \"b.src.test\"\n\
             warmup_start = \"{today}\"\nwarmup = [{{ day = 1, per_site = 3 }}]\n\
             [[pool]]\nname = \"default\"\nsources = [\"src-a\"]\n\
             [[pool]]\nname = \"news\"\nsources = [\"src-b\"]\n\
             [[pool_rule]]\npool = \"news\"\nsender_domain = \"news.example\"\n\
             #shaping_file"
        ),
    );
    // Tables must come after the top-level keys.
    let (top, tables): (Vec<&str>, Vec<&str>) = {
        let lines: Vec<&str> = config.lines().collect();
        let first_table = lines
            .iter()
            .position(|l| l.starts_with('['))
            .unwrap_or(lines.len());
        (lines[..first_table].to_vec(), lines[first_table..].to_vec())
    };
    fs::write(
        &sb.config,
        format!("{}\n{}\n", top.join("\n"), tables.join("\n")),
    )
    .expect("config");
    let mut d = sb.start_daemon("uring");
    for i in 0..5 {
        sb.sendmail_ok(
            &["-f", "n@news.example", &format!("n{i}@a.example")],
            b"Subject: n\n\nx\n",
        );
        sb.sendmail_ok(
            &["-f", "o@other.example", &format!("o{i}@b.example")],
            b"Subject: o\n\nx\n",
        );
    }
    d.wait_until(
        "the default pool's mail and the warm-up cap's worth",
        || dumped(dump.path()).len() >= 8,
    );
    std::thread::sleep(Duration::from_millis(1500));
    let got = dumped(dump.path());
    let news: Vec<&(String, String)> = got.iter().filter(|(f, _)| f == "n@news.example").collect();
    let other: Vec<&(String, String)> =
        got.iter().filter(|(f, _)| f == "o@other.example").collect();
    assert_eq!(other.len(), 5, "{got:?}");
    assert!(
        other.iter().all(|(_, h)| h == "a.src.test"),
        "default pool, source a: {got:?}"
    );
    assert_eq!(
        news.len(),
        3,
        "source b's warm-up cap of 3 a day for the site: {got:?}"
    );
    assert!(
        news.iter().all(|(_, h)| h == "b.src.test"),
        "news pool, source b: {got:?}"
    );
    // Over the cap the mail waits: queued, not failed.
    let listed = sb.queue_list();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed
        .iter()
        .flat_map(|m| m.recipients.iter())
        .all(|r| r.status == "pending"));
    d.stop();
}

#[test]
fn an_administrator_suspends_and_resumes_a_site() {
    let dns = DnsServer::start(zone());
    let sink = sink::start(SinkConfig::default()).expect("sink");
    let sb = sandbox(
        &dns,
        sink.local_addr.port(),
        "[[site]]\nname = \"gsite\"\nmx = [\"*.gsite.test\"]\n",
    );
    let mut d = sb.start_daemon("uring");
    let queue = |args: &[&str]| {
        let out = sb
            .cmd()
            .arg("queue")
            .args(args)
            .arg("--config")
            .arg(&sb.config)
            .output()
            .expect("ringmail queue");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    queue(&["suspend", "gsite", "--for", "2h"]);
    d.wait_for_log("site gsite: suspended for 2h by the administrator");
    let g = site_entry(&sb, "gsite").expect("gsite is listed");
    assert!(g["suspended_until"].is_i64(), "{g}");
    assert_eq!(g["connections"], 0, "{g}");
    assert_eq!(g["connection_factor"], 1.0, "{g}");
    let table = sb
        .cmd()
        .args(["queue", "sites", "--config"])
        .arg(&sb.config)
        .output()
        .expect("ringmail queue sites");
    let text = String::from_utf8_lossy(&table.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("gsite "))
        .unwrap_or_else(|| panic!("no gsite line: {text}"));
    assert!(line.contains("(in 1h") || line.contains("(in 2h"), "{line}");
    drop_messages(&sb, 6);
    d.wait_until("all six queued", || sb.queue_list().len() == 6);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.stats().messages, 0, "nothing goes to a suspended site");
    assert!(sb
        .queue_list()
        .iter()
        .flat_map(|m| m.recipients.iter())
        .all(|r| r.status == "pending"));
    // The queue commands select by site too.
    let dry = sb
        .cmd()
        .args([
            "queue",
            "delete",
            "--site",
            "gsite",
            "--dry-run",
            "--config",
        ])
        .arg(&sb.config)
        .output()
        .expect("ringmail queue delete --site");
    let said = String::from_utf8_lossy(&dry.stderr);
    assert!(said.contains("dry run: 6 messages selected"), "{said}");
    let other = sb
        .cmd()
        .args([
            "queue",
            "delete",
            "--site",
            "elsewhere",
            "--dry-run",
            "--config",
        ])
        .arg(&sb.config)
        .output()
        .expect("ringmail queue delete --site");
    let said = String::from_utf8_lossy(&other.stderr);
    assert!(said.contains("dry run: 0 messages selected"), "{said}");
    queue(&["resume", "gsite"]);
    let g = site_entry(&sb, "gsite").expect("gsite is still known");
    assert!(g["suspended_until"].is_null(), "resumed: {g}");
    d.wait_until("delivered after the resume", || sink.stats().messages >= 6);
    d.stop();
}

/// The recipient's first log line with `status=STATUS`, once there is one.
fn status_line(d: &Daemon, rcpt: &str, status: &str) -> String {
    let needle = format!("to=<{rcpt}>");
    let word = format!("status={status}");
    let find = || {
        d.log()
            .lines()
            .find(|l| l.contains(&needle) && l.contains(&word))
            .map(str::to_string)
    };
    wait_until(&format!("{rcpt} {status}"), Duration::from_secs(30), || {
        find().is_some()
    });
    find().unwrap_or_default()
}

/// Sends one message to each of `rcpts` by the pickup directory.
fn drop_to(sb: &Sandbox, rcpts: &[&str]) {
    for (i, rcpt) in rcpts.iter().enumerate() {
        drop_file(
            &sb.pickup(),
            &format!("t{i}"),
            format!("X-Sender: s@sender.example\nX-Receiver: {rcpt}\nSubject: tls\n\nbody\n")
                .as_bytes(),
        );
    }
}

/// A site rule `tls = "encrypt"` against a receiver without STARTTLS:
/// the mail waits (deferred, 4.7.4), it is neither sent in plaintext nor
/// bounced. A `[[tls_policy]]` entry for one domain of the site wins over
/// the rule: that domain's mail goes out.
#[test]
fn a_site_rules_tls_level_applies_unless_a_tls_policy_says_otherwise() {
    let dns = DnsServer::start(zone());
    let sink = sink::start(SinkConfig::default()).expect("sink");
    let sb = sandbox_with(
        &dns,
        sink.local_addr.port(),
        "[[site]]\nname = \"gsite\"\nmx = [\"*.gsite.test\"]\ntls = \"encrypt\"\n",
        "smtp_tls_security_level = \"may\"\n\
         [[tls_policy]]\ndomain = \"a.example\"\nlevel = \"may\"\n",
    );
    let mut d = sb.start_daemon("epoll");
    drop_to(&sb, &["r@a.example", "r@b.example"]);
    let line = status_line(&d, "r@b.example", "deferred");
    assert!(line.contains("dsn=4.7.4"), "{line}");
    assert!(
        line.contains("TLS is required, but was not offered"),
        "{line}"
    );
    status_line(&d, "r@a.example", "sent");
    d.wait_until("a.example's message at the sink", || {
        sink.stats().messages >= 1
    });
    let listed = sb.queue_list();
    assert_eq!(listed.len(), 1, "b.example's message waits: {listed:?}");
    assert!(listed[0].recipients.iter().all(|r| r.status == "deferred"));
    assert_eq!(count_lines(&d.log(), &["status=bounced"]), 0);
    d.stop();
    assert_eq!(
        sink.stats().messages,
        1,
        "nothing sent in plaintext to b.example"
    );
}

/// A site rule's `tls` wins over `smtp_tls_security_level` the other way
/// too: `tls = "none"` delivers to a receiver without STARTTLS although
/// the configuration says `encrypt`.
#[test]
fn a_site_rules_tls_none_delivers_without_starttls() {
    let dns = DnsServer::start(zone());
    let sink = sink::start(SinkConfig::default()).expect("sink");
    let sb = sandbox_with(
        &dns,
        sink.local_addr.port(),
        "[[site]]\nname = \"gsite\"\nmx = [\"*.gsite.test\"]\ntls = \"none\"\n",
        "smtp_tls_security_level = \"encrypt\"\n",
    );
    let mut d = sb.start_daemon("uring");
    drop_to(&sb, &["r@a.example", "r@b.example"]);
    d.wait_until("both delivered", || sink.stats().messages >= 2);
    d.wait_until("the queue is empty", || sb.queue_list().is_empty());
    assert_eq!(count_lines(&d.log(), &["status=deferred"]), 0);
    d.stop();
}
