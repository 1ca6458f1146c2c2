//! Internet delivery (issue 4), end to end on loopback: MX resolution
//! through a real DNS server on 127.0.0.1 (`common::dns`), bounces (DSN)
//! parsed back with mail-parser, rate limits, STARTTLS levels and AUTH
//! against the bundled sink with generated certificates, and a real
//! Postfix as the receiving MX.
//!
//! Every MX record points at a loopback address; `smtp_port` moves MX
//! delivery to the port of the receiver the test started. Nothing asserts on
//! speed; waits poll with generous deadlines.

mod common;

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::certs;
use common::dns::{DnsServer, Zone};
use common::*;
use mail_parser::MimeHeaders;
use ringmail::sink::{self, Faults, SinkConfig, SinkHandle};

const DEADLINE: Duration = Duration::from_secs(60);
const FAST_RETRY: &str = "minimal_backoff_time = 1\nmaximal_backoff_time = 2\n";
const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn start_sink(config: SinkConfig) -> SinkHandle {
    sink::start(config).expect("start the bundled sink")
}

/// A sink on 127.0.0.1 writing every message to `dump`.
fn dumping_sink(dump: &Path) -> SinkHandle {
    fs::create_dir_all(dump).expect("mkdir dump");
    start_sink(SinkConfig {
        dump_dir: Some(dump.to_path_buf()),
        ..SinkConfig::default()
    })
}

/// A sandbox whose DNS is `dns`, MX delivery on `port`, with `extra` keys
/// (tables last).
fn sandbox(dns: &DnsServer, port: u16, extra: &str) -> Sandbox {
    Sandbox::with(Settings {
        dns_servers: vec![dns.addr.to_string()],
        extra: format!("smtp_port = {port}\n{FAST_RETRY}{extra}"),
        ..Settings::default()
    })
}

/// A pickup file from `from` to `to` with Message-ID `<tag@test.example>`.
fn message(tag: &str, from: &str, to: &str) -> Vec<u8> {
    format!(
        "X-Sender: {from}\nX-Receiver: {to}\nFrom: Sender <{from}>\nTo: {to}\nSubject: test {tag}\n\
         Message-ID: <{tag}@test.example>\n\nbody of {tag}\n.leading dot line\n"
    )
    .into_bytes()
}

fn drop_message(sb: &Sandbox, tag: &str, from: &str, to: &str) {
    fs::create_dir_all(sb.pickup()).expect("mkdir pickup");
    sb.drop_file(&format!("{tag}.eml"), &message(tag, from, to));
}

/// The `smtp` log lines for recipient `addr`.
fn lines_for(log: &str, addr: &str) -> Vec<String> {
    let needle = format!("to=<{addr}>");
    log.lines()
        .filter(|l| l.contains("ringmail/smtp[") && l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Waits for a `status=WORD` line for `addr`; returns it.
fn wait_status(d: &mut Daemon, addr: &str, word: &str) -> String {
    let needle = format!("status={word}");
    let mut found = String::new();
    d.wait_until(&format!("{addr} {needle}"), || {
        match lines_for(&d_log_now(), addr)
            .into_iter()
            .find(|l| l.contains(&needle))
        {
            Some(l) => {
                found = l;
                true
            }
            None => false,
        }
    });
    found
}

thread_local! {
    static LOG_PATH: std::cell::RefCell<Option<std::path::PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// The current daemon log of this test thread (set by [`start`]).
fn d_log_now() -> String {
    LOG_PATH.with(|p| {
        p.borrow()
            .as_ref()
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    })
}

/// Starts the daemon of `sb` and waits until its shards are up.
fn start(sb: &Sandbox) -> Daemon {
    LOG_PATH.with(|p| *p.borrow_mut() = Some(sb.root().join("daemon-0.log")));
    let mut d = sb.start_daemon_nth("auto", 0);
    d.wait_recovered(2);
    d
}

/// Every complete message in a sink dump directory: (envelope JSON, body).
fn dumps(dir: &Path) -> Vec<(serde_json::Value, Vec<u8>)> {
    let mut out = Vec::new();
    for name in names_in(dir) {
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.join(&name)).expect("json"))
                .expect("dump json");
        let eml = fs::read(dir.join(format!("{stem}.eml"))).expect("eml");
        out.push((json, eml));
    }
    out
}

// ---------------------------------------------------------------------------
// MX resolution
// ---------------------------------------------------------------------------

/// Two MX hosts: the preferred one refuses connections (nothing listens on
/// 127.0.0.2), so the second gets the mail; the failed connect is logged
/// as Postfix does.
#[test]
fn second_mx_gets_the_mail_when_the_first_refuses() {
    let sink = start_sink(SinkConfig::default());
    let port = sink.local_addr.port();
    let dns = DnsServer::start(
        Zone::new()
            .mx("two.test", 10, "a.two.test")
            .mx("two.test", 20, "b.two.test")
            .a("a.two.test", Ipv4Addr::new(127, 0, 0, 2))
            .a("b.two.test", LOCAL),
    );
    let sb = sandbox(&dns, port, "inet_protocols = \"ipv4\"\n");
    let mut d = start(&sb);
    drop_message(&sb, "mx2", "s@sender.test", "u@two.test");
    let line = wait_status(&mut d, "u@two.test", "sent");
    assert!(
        line.contains(&format!("relay=b.two.test[127.0.0.1]:{port}")),
        "{line}"
    );
    let log = d.log();
    assert!(
        log.contains(&format!(
            "connect to a.two.test[127.0.0.2]:{port}: Connection refused"
        )),
        "{log}"
    );
    d.stop();
    assert_eq!(sink.message_id_counts().get("<mx2@test.example>"), Some(&1));
}

/// No MX record: the domain's own A record is the mail host (implicit MX).
/// Equal preferences: either host may take the mail.
#[test]
fn implicit_mx_and_equal_preferences() {
    let sink = start_sink(SinkConfig::default());
    let port = sink.local_addr.port();
    let dns = DnsServer::start(
        Zone::new()
            .a("plain.test", LOCAL)
            .mx("eq.test", 10, "x.eq.test")
            .mx("eq.test", 10, "y.eq.test")
            .a("x.eq.test", LOCAL)
            .a("y.eq.test", LOCAL),
    );
    let sb = sandbox(&dns, port, "");
    let mut d = start(&sb);
    drop_message(&sb, "implicit", "s@sender.test", "u@plain.test");
    drop_message(&sb, "equal", "s@sender.test", "u@eq.test");
    let line = wait_status(&mut d, "u@plain.test", "sent");
    assert!(
        line.contains(&format!("relay=plain.test[127.0.0.1]:{port}")),
        "{line}"
    );
    let line = wait_status(&mut d, "u@eq.test", "sent");
    assert!(
        line.contains("relay=x.eq.test[") || line.contains("relay=y.eq.test["),
        "{line}"
    );
    d.stop();
    let asked = dns.queries();
    assert!(
        asked
            .iter()
            .any(|(n, t)| n.starts_with("plain.test") && t.to_string() == "MX"),
        "{asked:?}"
    );
}

/// Null MX (RFC 7505) bounces at once with 5.1.10, NXDOMAIN with 5.1.2;
/// SERVFAIL defers (4.4.3) and the message stays queued.
#[test]
fn null_mx_and_nxdomain_bounce_servfail_defers() {
    let sink = start_sink(SinkConfig::default());
    let port = sink.local_addr.port();
    let dns = DnsServer::start(
        Zone::new()
            .null_mx("null.test")
            .servfail("sf.test")
            .mx("sender.test", 10, "mx.sender.test")
            .a("mx.sender.test", LOCAL),
    );
    let sb = sandbox(&dns, port, "");
    let mut d = start(&sb);
    drop_message(&sb, "null", "s@sender.test", "u@null.test");
    drop_message(&sb, "nx", "s@sender.test", "u@nx.test");
    drop_message(&sb, "sf", "s@sender.test", "u@sf.test");
    let null = wait_status(&mut d, "u@null.test", "bounced");
    assert!(null.contains("dsn=5.1.10"), "{null}");
    assert!(null.contains("null MX"), "{null}");
    let nx = wait_status(&mut d, "u@nx.test", "bounced");
    assert!(nx.contains("dsn=5.1.2"), "{nx}");
    assert!(nx.contains("Host not found"), "{nx}");
    let sf = wait_status(&mut d, "u@sf.test", "deferred");
    assert!(sf.contains("dsn=4.4.3"), "{sf}");
    let listed = sb.queue_list();
    let sf_rcpt = listed
        .iter()
        .flat_map(|l| l.recipients.iter())
        .find(|r| r.address == "u@sf.test")
        .expect("the SERVFAIL message stays queued");
    assert_eq!(sf_rcpt.status, "deferred");
    // Both bounces produce a notice to s@sender.test, delivered to the sink.
    let mut d2 = d;
    d2.wait_until("two notices delivered", || {
        count_lines(&d_log_now(), &["to=<s@sender.test>", "status=sent"]) >= 2
    });
    d2.stop();
    assert_eq!(sink.stats().messages, 2);
}

/// A host with only an IPv6 address on ::1 gets the mail over IPv6; a host
/// with both, whose IPv6 address refuses, gets it over IPv4 after one
/// failed IPv6 connect; with `inet_protocols = "ipv4"` IPv6 is not tried.
#[test]
fn ipv6_first_then_ipv4_and_aaaa_only() {
    let sink4 = start_sink(SinkConfig::default());
    let port = sink4.local_addr.port();
    let sink6 = match sink::start(SinkConfig {
        listen: SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
        ..SinkConfig::default()
    }) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("no sink on [::1]:{port} ({e}): the AAAA-only part is skipped");
            None
        }
    };
    let dns = DnsServer::start(
        Zone::new()
            .mx("v6.test", 10, "h.v6.test")
            .aaaa("h.v6.test", Ipv6Addr::LOCALHOST)
            .mx("dual.test", 10, "h.dual.test")
            .aaaa("h.dual.test", "::1".parse().expect("ip"))
            .a("h.dual.test", LOCAL),
    );
    // Dual stack: IPv6 first. Only when no sink listens on [::1]:port does
    // the IPv6 attempt fail; then the fallback to IPv4 is what we check.
    let sb = sandbox(&dns, port, "");
    let mut d = start(&sb);
    drop_message(&sb, "dual", "s@sender.test", "u@dual.test");
    if sink6.is_some() {
        drop_message(&sb, "v6only", "s@sender.test", "u@v6.test");
        let line = wait_status(&mut d, "u@v6.test", "sent");
        assert!(
            line.contains(&format!("relay=h.v6.test[::1]:{port}")),
            "{line}"
        );
        let line = wait_status(&mut d, "u@dual.test", "sent");
        assert!(
            line.contains("relay=h.dual.test[::1]"),
            "IPv6 first: {line}"
        );
    } else {
        let line = wait_status(&mut d, "u@dual.test", "sent");
        assert!(line.contains("relay=h.dual.test[127.0.0.1]"), "{line}");
        assert!(d
            .log()
            .contains(&format!("connect to h.dual.test[::1]:{port}")));
    }
    d.stop();
    drop(sink6);
    // Now nothing listens on ::1: IPv6 refuses, IPv4 takes the mail.
    let sb = sandbox(&dns, port, "");
    let mut d = start(&sb);
    drop_message(&sb, "fallback", "s@sender.test", "w@dual.test");
    let line = wait_status(&mut d, "w@dual.test", "sent");
    assert!(line.contains("relay=h.dual.test[127.0.0.1]"), "{line}");
    assert!(
        d.log().contains(&format!(
            "connect to h.dual.test[::1]:{port}: Connection refused"
        )),
        "{}",
        d.log()
    );
    d.stop();
    // IPv4 only: no IPv6 attempt at all.
    let sb = sandbox(&dns, port, "inet_protocols = \"ipv4\"\n");
    let mut d = start(&sb);
    drop_message(&sb, "v4only", "s@sender.test", "x@dual.test");
    wait_status(&mut d, "x@dual.test", "sent");
    assert!(!d.log().contains("[::1]"), "{}", d.log());
    d.stop();
}

// ---------------------------------------------------------------------------
// Bounces
// ---------------------------------------------------------------------------

/// A 5xx at RCPT for two recipients of one message: one notice goes back
/// to the sender's domain (MX through the test DNS to the dumping sink),
/// listing both, as multipart/report with the original attached. A message
/// with the null sender that bounces produces no notice.
#[test]
fn bounce_notice_reaches_the_sender_and_is_a_proper_dsn() {
    let rejecting = start_sink(SinkConfig {
        faults: Faults {
            rcpt_permfail: 1.0,
            ..Faults::default()
        },
        ..SinkConfig::default()
    });
    let dump_dir = tempfile::tempdir().expect("tmp");
    let good = dumping_sink(dump_dir.path());
    let dns = DnsServer::start(
        Zone::new()
            .mx("sender.test", 10, "mx.sender.test")
            .a("mx.sender.test", LOCAL),
    );
    let sb = sandbox(
        &dns,
        good.local_addr.port(),
        &format!(
            "[[route]]\ndomain = \"reject.test\"\nnexthop = \"[127.0.0.1]:{}\"\n",
            rejecting.local_addr.port()
        ),
    );
    let mut d = start(&sb);
    fs::create_dir_all(sb.pickup()).expect("pickup");
    sb.drop_file(
        "two.eml",
        b"X-Sender: alice@sender.test\nX-Receiver: a@reject.test\nX-Receiver: b@reject.test\n\
          From: Alice <alice@sender.test>\nTo: a@reject.test, b@reject.test\n\
          Subject: quarterly report\nMessage-ID: <orig@test.example>\n\nhello\n",
    );
    wait_status(&mut d, "a@reject.test", "bounced");
    wait_status(&mut d, "b@reject.test", "bounced");
    let notice = wait_status(&mut d, "alice@sender.test", "sent");
    assert!(
        notice.contains("relay=mx.sender.test[127.0.0.1]"),
        "{notice}"
    );
    // A null-sender message that bounces: no notice.
    let out = sb.sendmail(
        &["-f", "<>", "c@reject.test"],
        b"Subject: x\n\nnull sender\n",
    );
    assert!(out.status.success(), "{out:?}");
    wait_status(&mut d, "c@reject.test", "bounced");
    d.wait_until("the null-sender message removed", || {
        sb.queue_list().is_empty()
    });
    d.stop();
    let log = d.log();
    assert_eq!(
        count_lines(&log, &["sender non-delivery notification"]),
        1,
        "{log}"
    );
    let got = dumps(dump_dir.path());
    assert_eq!(got.len(), 1, "exactly one notice");
    let (env, eml) = &got[0];
    assert_eq!(env["mail_from"], "", "sent with the null sender");
    assert_eq!(env["rcpt_to"][0], "alice@sender.test");
    let msg = mail_parser::MessageParser::default()
        .parse(eml.as_slice())
        .expect("the notice parses");
    let ct = msg.content_type().expect("content type");
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert!(msg
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .is_some_and(|a| a.starts_with("MAILER-DAEMON@")));
    let text = String::from_utf8_lossy(eml);
    for rcpt in ["a@reject.test", "b@reject.test"] {
        assert!(
            text.contains(&format!("Final-Recipient: rfc822; {rcpt}")),
            "{text}"
        );
    }
    assert!(text.contains("Action: failed"), "{text}");
    assert!(text.contains("Status: 5.1.1"), "{text}");
    assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1"), "{text}");
    assert!(text.contains("Remote-MTA: dns; 127.0.0.1"), "{text}");
    assert!(
        text.contains("Subject: quarterly report"),
        "original attached: {text}"
    );
    assert!(text.contains("Message-ID: <orig@test.example>"), "{text}");
}

/// A sandbox where `slow.test` always answers SERVFAIL (its mail is
/// deferred for ever) and the sender's domain `sender.test` leads to a
/// dumping sink: (dump dir, sink, DNS server, sandbox).
fn never_resolving(extra: &str) -> (tempfile::TempDir, SinkHandle, DnsServer, Sandbox) {
    let dump_dir = tempfile::tempdir().expect("tmp");
    let sink = dumping_sink(dump_dir.path());
    let dns = DnsServer::start(
        Zone::new()
            .mx("sender.test", 10, "mx.sender.test")
            .a("mx.sender.test", LOCAL)
            .servfail("slow.test"),
    );
    let sb = sandbox(&dns, sink.local_addr.port(), extra);
    (dump_dir, sink, dns, sb)
}

/// Expiry: mail that cannot be delivered before `maximal_queue_lifetime`
/// is returned with a notice saying so.
#[test]
fn expired_mail_is_returned() {
    let (dump_dir, _sink, _dns, sb) = never_resolving("maximal_queue_lifetime = 2\n");
    let mut d = start(&sb);
    drop_message(&sb, "exp", "s@sender.test", "u@slow.test");
    let line = wait_status(&mut d, "u@slow.test", "expired");
    assert!(line.contains("dsn=4.4.7"), "{line}");
    wait_status(&mut d, "s@sender.test", "sent");
    d.stop();
    let got = dumps(dump_dir.path());
    assert_eq!(got.len(), 1);
    let text = String::from_utf8_lossy(&got[0].1);
    assert!(
        text.contains("Final-Recipient: rfc822; u@slow.test"),
        "{text}"
    );
    assert!(text.contains("Status: 4.4.7"), "{text}");
}

/// `delay_warning_time`: the sender of mail still deferred after that long
/// gets one delay notice (`Action: delayed`, headers only), and the mail
/// stays queued.
#[test]
fn delay_warning_once_while_still_retrying() {
    let (dump_dir, _sink, _dns, sb) = never_resolving("delay_warning_time = 1\n");
    let mut d = start(&sb);
    drop_message(&sb, "late", "s@sender.test", "u@slow.test");
    wait_status(&mut d, "s@sender.test", "sent");
    // Further retries happen, but no second warning.
    d.wait_until("two more deferrals", || {
        count_lines(&d_log_now(), &["to=<u@slow.test>", "status=deferred"]) >= 3
    });
    d.stop();
    let log = d.log();
    assert_eq!(
        count_lines(&log, &["sender delay notification"]),
        1,
        "{log}"
    );
    assert_eq!(sb.queue_list().len(), 1, "the original is still queued");
    let got = dumps(dump_dir.path());
    assert_eq!(got.len(), 1);
    let text = String::from_utf8_lossy(&got[0].1);
    assert!(text.contains("Action: delayed"), "{text}");
    assert!(
        text.contains("Final-Recipient: rfc822; u@slow.test"),
        "{text}"
    );
    assert!(text.contains("text/rfc822-headers"), "headers only: {text}");
    assert!(!text.contains("body of late"), "{text}");
}

// ---------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------

/// `[[rate_limit]]` 4/s for a destination: 20 messages take at least four
/// seconds from the first to the last delivery (the bucket starts with 4
/// tokens, then one every 250 ms); the log's whole-second stamps show at
/// least three. A lower bound only: a slow machine makes it longer, never
/// shorter.
#[test]
fn rate_limit_spaces_deliveries() {
    let sink = start_sink(SinkConfig::default());
    let port = sink.local_addr.port();
    let dns = DnsServer::start(
        Zone::new()
            .mx("rl.test", 10, "mx.rl.test")
            .a("mx.rl.test", LOCAL),
    );
    let sb = sandbox(
        &dns,
        port,
        "[[rate_limit]]\ndestination = \"rl.test\"\nrate = \"4/s\"\n",
    );
    let mut d = start(&sb);
    for i in 0..20 {
        drop_message(
            &sb,
            &format!("rl{i}"),
            "s@sender.test",
            &format!("u{i}@rl.test"),
        );
    }
    d.wait_until("20 messages sent", || {
        count_lines(&d_log_now(), &["@rl.test>", "status=sent"]) >= 20
    });
    d.stop();
    let stamps: Vec<chrono::NaiveTime> = d
        .log()
        .lines()
        .filter(|l| l.contains("@rl.test>") && l.contains("status=sent"))
        .filter_map(|l| {
            let t = l.split_whitespace().nth(2)?;
            chrono::NaiveTime::parse_from_str(t, "%H:%M:%S").ok()
        })
        .collect();
    assert_eq!(stamps.len(), 20, "timestamps parse: {}", d.log());
    let first = stamps.iter().min().expect("first");
    let last = stamps.iter().max().expect("last");
    let span = (*last - *first).num_milliseconds();
    assert!(span >= 3000, "20 messages at 4/s took only {span} ms");
}

// ---------------------------------------------------------------------------
// STARTTLS
// ---------------------------------------------------------------------------

/// A zone with `tls.test` MX `mx.tls.test` on 127.0.0.1, and the sender's
/// domain for notices.
fn tls_zone() -> DnsServer {
    DnsServer::start(
        Zone::new()
            .mx("tls.test", 10, "mx.tls.test")
            .a("mx.tls.test", LOCAL)
            .mx("hosted.test", 10, "mx.tls.test")
            .mx("sender.test", 10, "mx.sender.test")
            .a("mx.sender.test", LOCAL),
    )
}

/// A sink offering STARTTLS with a certificate for `mx.tls.test` signed by
/// a fresh test CA (written into `dir`).
fn tls_sink(dir: &Path, faults: Faults) -> (SinkHandle, certs::Pki) {
    let pki = certs::write_pki(dir, &["mx.tls.test"]);
    let sink = start_sink(SinkConfig {
        tls: Some(pki.server.server_config()),
        dump_dir: Some(dir.join("dump")),
        faults,
        ..SinkConfig::default()
    });
    fs::create_dir_all(dir.join("dump")).expect("mkdir dump");
    (sink, pki)
}

/// Level `may` (the default): the session is encrypted, the certificate
/// is not checked, and the TLS line is logged as Postfix logs it.
#[test]
fn tls_may_encrypts_without_verification() {
    let dir = tempfile::tempdir().expect("tmp");
    let (sink, _pki) = tls_sink(dir.path(), Faults::default());
    let port = sink.local_addr.port();
    let dns = tls_zone();
    let sb = sandbox(&dns, port, "");
    let mut d = start(&sb);
    drop_message(&sb, "may", "s@sender.test", "u@tls.test");
    wait_status(&mut d, "u@tls.test", "sent");
    d.stop();
    let log = d.log();
    assert!(
        log.contains(&format!(
            "Untrusted TLS connection established to mx.tls.test[127.0.0.1]:{port}: TLSv1.3 with cipher TLS_"
        )),
        "{log}"
    );
    let got = dumps(&dir.path().join("dump"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0["tls"], true, "{:?}", got[0].0);
    let body = String::from_utf8_lossy(&got[0].1).to_string();
    assert!(body.contains("\r\n.leading dot line\r\n"), "{body}");
}

/// A server that announces STARTTLS and then breaks the handshake: under
/// `may` the same server is tried again at once in plaintext and gets the
/// mail; under `encrypt` the mail is deferred (4.7.5) and stays queued.
#[test]
fn broken_handshake_falls_back_under_may_and_defers_under_encrypt() {
    let dir = tempfile::tempdir().expect("tmp");
    let faults = Faults {
        tls_broken: true,
        ..Faults::default()
    };
    let (sink, _pki) = tls_sink(dir.path(), faults);
    let port = sink.local_addr.port();
    let dns = tls_zone();
    let sb = sandbox(&dns, port, "");
    let mut d = start(&sb);
    drop_message(&sb, "fallback", "s@sender.test", "u@tls.test");
    wait_status(&mut d, "u@tls.test", "sent");
    d.stop();
    assert!(d.log().contains("trying again without TLS"), "{}", d.log());
    let got = dumps(&dir.path().join("dump"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0["tls"], false);

    let sb = sandbox(
        &dns,
        port,
        "[[tls_policy]]\ndomain = \"tls.test\"\nlevel = \"encrypt\"\n",
    );
    let mut d = start(&sb);
    drop_message(&sb, "required", "s@sender.test", "v@tls.test");
    let line = wait_status(&mut d, "v@tls.test", "deferred");
    assert!(line.contains("dsn=4.7.5"), "{line}");
    assert!(line.contains("Cannot start TLS"), "{line}");
    let listed = sb.queue_list();
    assert_eq!(listed.len(), 1, "still queued: {listed:?}");
    d.stop();
    assert_eq!(
        dumps(&dir.path().join("dump")).len(),
        1,
        "nothing sent in plaintext"
    );
}

/// `verify`: an untrusted certificate defers; with the test CA configured
/// (`smtp_tls_ca_file`) the certificate chains and names the MX host, the
/// mail goes out and the session is logged `Verified`.
#[test]
fn verify_needs_a_trusted_certificate_naming_the_mx_host() {
    let dir = tempfile::tempdir().expect("tmp");
    let (sink, pki) = tls_sink(dir.path(), Faults::default());
    let port = sink.local_addr.port();
    let dns = tls_zone();
    let sb = sandbox(&dns, port, "smtp_tls_security_level = \"verify\"\n");
    let mut d = start(&sb);
    drop_message(&sb, "untrusted", "s@sender.test", "u@tls.test");
    let line = wait_status(&mut d, "u@tls.test", "deferred");
    assert!(line.contains("Cannot start TLS"), "{line}");
    d.stop();
    assert!(dumps(&dir.path().join("dump")).is_empty());

    let sb = sandbox(
        &dns,
        port,
        &format!(
            "smtp_tls_security_level = \"verify\"\nsmtp_tls_CAfile = {:?}\n",
            pki.ca_file.display().to_string()
        ),
    );
    let mut d = start(&sb);
    drop_message(&sb, "verified", "s@sender.test", "w@tls.test");
    wait_status(&mut d, "w@tls.test", "sent");
    d.stop();
    assert!(
        d.log().contains(&format!(
            "Verified TLS connection established to mx.tls.test[127.0.0.1]:{port}"
        )),
        "{}",
        d.log()
    );
    // STARTTLS not offered at all under `encrypt`: deferred with 4.7.4.
    let plain = start_sink(SinkConfig::default());
    let sb = sandbox(
        &dns,
        plain.local_addr.port(),
        "smtp_tls_security_level = \"encrypt\"\n",
    );
    let mut d = start(&sb);
    drop_message(&sb, "notls", "s@sender.test", "x@tls.test");
    let line = wait_status(&mut d, "x@tls.test", "deferred");
    assert!(line.contains("dsn=4.7.4"), "{line}");
    assert!(
        line.contains("TLS is required, but was not offered"),
        "{line}"
    );
    d.stop();
    assert_eq!(plain.stats().messages, 0);
}

/// `secure` (Postfix's): the certificate must chain to a trusted root and
/// name the next-hop domain or a subdomain of it, whatever the MX answer
/// says. `tls.test`'s MX host `mx.tls.test` is below it: delivered and
/// logged `Verified`. `hosted.test`, whose MX is the same host, is
/// deferred with the names wanted and presented, and nothing is sent; a
/// `[[tls_policy]]` `match` naming the provider's domain lets it through,
/// and `verify` with `match = ["nexthop"]` wants `tls.test` itself.
/// Without a trusted root the chain itself is refused.
#[test]
fn secure_wants_the_next_hop_names_and_match_overrides_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let (sink, pki) = tls_sink(dir.path(), Faults::default());
    let port = sink.local_addr.port();
    let dns = tls_zone();
    let dump = dir.path().join("dump");
    let ca = format!(
        "smtp_tls_CAfile = {:?}\n",
        pki.ca_file.display().to_string()
    );
    let sb = sandbox(
        &dns,
        port,
        &format!("smtp_tls_security_level = \"secure\"\n{ca}"),
    );
    let mut d = start(&sb);
    drop_message(&sb, "secure", "s@sender.test", "u@tls.test");
    drop_message(&sb, "hosted", "s@sender.test", "h@hosted.test");
    wait_status(&mut d, "u@tls.test", "sent");
    let line = wait_status(&mut d, "h@hosted.test", "deferred");
    assert!(line.contains("dsn=4.7.5"), "{line}");
    assert!(
        line.contains(
            "server certificate names none of hosted.test, .hosted.test (it names mx.tls.test)"
        ),
        "{line}"
    );
    d.stop();
    let log = d.log();
    assert!(
        log.contains(&format!(
            "Verified TLS connection established to mx.tls.test[127.0.0.1]:{port}"
        )),
        "{log}"
    );
    assert_eq!(dumps(&dump).len(), 1, "only tls.test's message was sent");

    let sb = sandbox(
        &dns,
        port,
        &format!(
            "{ca}[[tls_policy]]\ndomain = \"hosted.test\"\nlevel = \"secure\"\n\
             match = [\"nexthop\", \".tls.test\"]\n\
             [[tls_policy]]\ndomain = \"tls.test\"\nlevel = \"verify\"\nmatch = [\"nexthop\"]\n"
        ),
    );
    let mut d = start(&sb);
    drop_message(&sb, "hosted-match", "s@sender.test", "h2@hosted.test");
    drop_message(&sb, "verify-nexthop", "s@sender.test", "v@tls.test");
    wait_status(&mut d, "h2@hosted.test", "sent");
    let line = wait_status(&mut d, "v@tls.test", "deferred");
    assert!(
        line.contains("server certificate names none of tls.test (it names mx.tls.test)"),
        "{line}"
    );
    d.stop();
    assert_eq!(dumps(&dump).len(), 2, "the hosted domain's message came");

    let sb = sandbox(&dns, port, "smtp_tls_security_level = \"secure\"\n");
    let mut d = start(&sb);
    drop_message(&sb, "untrusted", "s@sender.test", "x@tls.test");
    let line = wait_status(&mut d, "x@tls.test", "deferred");
    assert!(line.contains("Cannot start TLS"), "{line}");
    assert_eq!(sb.queue_list().len(), 1, "still queued");
    d.stop();
    assert_eq!(dumps(&dump).len(), 2, "nothing sent in plaintext");
}

// ---------------------------------------------------------------------------
// AUTH towards a relay host
// ---------------------------------------------------------------------------

fn auth_sink(tls: Option<Arc<rustls::ServerConfig>>, plaintext: bool) -> SinkHandle {
    start_sink(SinkConfig {
        tls,
        auth: Some(("relayuser".into(), "s3cret:pass".into())),
        auth_plaintext: plaintext,
        ..SinkConfig::default()
    })
}

fn auth_config(port: u16, password: &str) -> String {
    format!(
        "relayhost = \"[127.0.0.1]:{port}\"\n\
         [[smtp_sasl_password]]\nnexthop = \"[127.0.0.1]:{port}\"\nusername = \"relayuser\"\npassword = \"{password}\"\n"
    )
}

/// AUTH over STARTTLS with the configured credentials: delivered, and the
/// sink saw the user; a wrong password defers the mail.
#[test]
fn auth_over_tls_to_a_relay_host() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = certs::write_pki(dir.path(), &["relay.test"]);
    let sink = auth_sink(Some(pki.server.server_config()), false);
    let port = sink.local_addr.port();
    let dns = tls_zone();
    let sb = sandbox(&dns, port, &auth_config(port, "s3cret:pass"));
    let mut d = start(&sb);
    drop_message(&sb, "auth", "s@sender.test", "u@anywhere.test");
    wait_status(&mut d, "u@anywhere.test", "sent");
    d.stop();
    let stats = sink.stats();
    assert_eq!(stats.auth_ok, 1, "{stats:?}");
    assert_eq!(stats.messages, 1);

    let sb = sandbox(&dns, port, &auth_config(port, "wrong"));
    let mut d = start(&sb);
    drop_message(&sb, "badauth", "s@sender.test", "v@anywhere.test");
    let line = wait_status(&mut d, "v@anywhere.test", "deferred");
    assert!(line.contains("SASL authentication failed"), "{line}");
    assert!(line.contains("535"), "{line}");
    d.stop();
    assert_eq!(sink.stats().messages, 1);
}

/// A relay host that offers AUTH without TLS: the credentials are not sent
/// (deferred) unless `smtp_sasl_plaintext = true`.
#[test]
fn auth_is_refused_over_plaintext_unless_allowed() {
    let sink = auth_sink(None, true);
    let port = sink.local_addr.port();
    let dns = tls_zone();
    let sb = sandbox(&dns, port, &auth_config(port, "s3cret:pass"));
    let mut d = start(&sb);
    drop_message(&sb, "plain", "s@sender.test", "u@anywhere.test");
    let line = wait_status(&mut d, "u@anywhere.test", "deferred");
    assert!(line.contains("without TLS"), "{line}");
    d.stop();
    let stats = sink.stats();
    assert_eq!((stats.auth_ok, stats.auth_failed), (0, 0), "{stats:?}");

    let sb = sandbox(
        &dns,
        port,
        &format!(
            "smtp_sasl_plaintext = true\n{}",
            auth_config(port, "s3cret:pass")
        ),
    );
    let mut d = start(&sb);
    drop_message(&sb, "allowed", "s@sender.test", "v@anywhere.test");
    wait_status(&mut d, "v@anywhere.test", "sent");
    d.stop();
    assert_eq!(sink.stats().auth_ok, 1);
}

// ---------------------------------------------------------------------------
// A real Postfix as the receiving MX
// ---------------------------------------------------------------------------

/// ringmail finds Postfix through the test DNS, starts TLS with it and
/// delivers; the message arrives intact in Postfix's Maildir and Postfix
/// logs the TLS session.
#[test]
fn delivers_to_a_real_postfix_mx_over_tls() {
    let Some(pf) = common::postfix::PostfixReceiver::start(&["pf.test"]) else {
        return;
    };
    let dns = DnsServer::start(
        Zone::new()
            .mx("pf.test", 10, "mx.pf.test")
            .a("mx.pf.test", LOCAL),
    );
    let sb = sandbox(&dns, pf.addr.port(), "");
    let mut d = start(&sb);
    drop_message(&sb, "postfix", "s@sender.test", "user@pf.test");
    let line = wait_status(&mut d, "user@pf.test", "sent");
    assert!(
        line.contains(&format!("relay=mx.pf.test[127.0.0.1]:{}", pf.addr.port())),
        "{line}"
    );
    d.stop();
    assert!(
        d.log().contains("TLS connection established to mx.pf.test"),
        "{}",
        d.log()
    );
    let files = pf.wait_for_messages(1, DEADLINE);
    let got = fs::read_to_string(&files[0]).expect("delivered file");
    assert!(got.contains("Message-ID: <postfix@test.example>"), "{got}");
    assert!(got.contains("Subject: test postfix"), "{got}");
    assert!(got.contains("\nbody of postfix"), "{got}");
    assert!(
        got.contains("\n.leading dot line"),
        "dot-stuffing undone once: {got}"
    );
    let plog = pf.wait_for_log("TLS connection established from", DEADLINE);
    assert!(plog.contains("TLS connection established from"), "{plog}");
}
