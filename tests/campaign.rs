//! Newsletter campaigns (issue 14), end to end with the real daemon and
//! the bundled sink on loopback:
//!
//! - `campaign send` queues a template and a CSV list once; every good
//!   recipient gets exactly one message, rendered with its own fields, its
//!   own Message-ID, a VERP envelope sender and the unsubscribe fields; the
//!   messages are parsed back with mail-parser;
//! - bad rows and duplicates are reported and never sent; `campaign show`
//!   and `campaign report` count exactly;
//! - kill -9 in the middle of a campaign, restart: every recipient ends
//!   with one outcome, none sent twice beyond the messages in flight;
//! - pause stops every shard, resume sends the rest, cancel drops it;
//! - a bad template or list is refused with nothing queued, and without a
//!   daemon `campaign send` says so.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use ringmail::sink::{self, Latency, SinkConfig, SinkHandle};

const TEMPLATE: &str = "From: \"Example News\" <news@example.com>\n\
To: \"{{ name }}\" <{{ email }}>\n\
Subject: {{ name }}, issue {{ issue }}\n\
MIME-Version: 1.0\n\
Content-Type: multipart/alternative; boundary=\"alt\"\n\
\n\
--alt\n\
Content-Type: text/plain; charset=utf-8\n\
\n\
Hello {{ name }} in {{ city }}!\n\
Unsubscribe: {{ unsubscribe_url }}\n\
--alt\n\
Content-Type: text/html; charset=utf-8\n\
\n\
<p>Hello <b>{{ name }}</b> in {{ city }}!</p>\n\
--alt--\n";

fn sink_with(dump: &Path, latency: Latency) -> SinkHandle {
    sink::start(SinkConfig {
        dump_dir: Some(dump.to_path_buf()),
        latency,
        ..SinkConfig::default()
    })
    .expect("sink")
}

fn sandbox(relay: u16) -> Sandbox {
    Sandbox::with(Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{relay}\"\nminimal_backoff_time = 1\nmaximal_backoff_time = 2\n\
             smtpd_passwd_file = \"/nonexistent/ringmail-passwd\"\n"
        ),
        ..Settings::default()
    })
}

/// Writes the template and a list of `n` recipients (`r{i}@example.net`,
/// name `Näme {i}`), plus one bad row and one duplicate.
fn write_inputs(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let template = dir.join("issue.eml");
    fs::write(&template, TEMPLATE).expect("template");
    let mut csv = String::from("email,name,city,issue\n");
    for i in 0..n {
        csv.push_str(&format!("r{i}@example.net,Näme {i},\"Town, {i}\",42\n"));
    }
    csv.push_str("not-an-address,Bad,Nowhere,42\n");
    csv.push_str("R0@example.net,Dup,Again,42\n");
    let list = dir.join("list.csv");
    fs::write(&list, csv).expect("list");
    (template, list)
}

fn campaign(sb: &Sandbox, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("campaign")
        .args(args)
        .arg("--config")
        .arg(&sb.config)
        .output()
        .expect("ringmail campaign")
}

/// `campaign send --template T --recipients L` with `extra` flags.
fn send_with(sb: &Sandbox, template: &Path, list: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "send",
        "--template",
        template.to_str().unwrap(),
        "--recipients",
        list.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    campaign(sb, &args)
}

fn send(sb: &Sandbox, template: &Path, list: &Path) -> u64 {
    let out = send_with(
        sb,
        template,
        list,
        &[
            "--unsubscribe",
            "https://news.example.com",
            "--bounce-domain",
            "bounce.example.com",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("not-an-address"),
        "the bad row is reported: {text}"
    );
    text.split_whitespace()
        .skip_while(|w| *w != "campaign")
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no campaign ID in {text}"))
}

fn show(sb: &Sandbox, id: u64) -> serde_json::Value {
    let out = campaign(sb, &["show", "--json", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("show --json")
}

/// The dumped messages: recipient -> (envelope sender, parsed message bytes).
fn dumped(dump: &Path) -> HashMap<String, Vec<(String, Vec<u8>)>> {
    let mut out: HashMap<String, Vec<(String, Vec<u8>)>> = HashMap::new();
    for entry in fs::read_dir(dump).expect("dump dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        // A message being written right now is read at the next look.
        let Ok(meta) = serde_json::from_slice::<serde_json::Value>(&fs::read(&path).expect("json"))
        else {
            continue;
        };
        let Ok(eml) = fs::read(path.with_extension("eml")) else {
            continue;
        };
        let from = meta["mail_from"].as_str().unwrap_or("").to_string();
        for r in meta["rcpt_to"].as_array().expect("rcpt_to") {
            out.entry(r.as_str().unwrap_or("").to_string())
                .or_default()
                .push((from.clone(), eml.clone()));
        }
    }
    out
}

/// 2,500 recipients over two shards: each gets exactly one message with
/// its own fields, headers and VERP sender; counts and report are exact.
fn campaign_renders_each_recipient_once(io: &str) {
    let sb0 = tempfile::tempdir().expect("dir");
    let dump = sb0.path().join("dump");
    let sink = sink_with(&dump, Latency::None);
    let sb = sandbox(sink.local_addr.port());
    let (template, list) = write_inputs(sb.root(), 2500);
    let mut d = sb.start_daemon(io);
    d.wait_for_log("accepting campaigns on");
    let id = send(&sb, &template, &list);
    let stats = sink.counters();
    d.wait_until("2,500 messages at the sink", || {
        stats.snapshot().messages >= 2500
    });
    d.wait_until("every outcome recorded", || show(&sb, id)["sent"] == 2500);
    let s = show(&sb, id);
    assert_eq!(s["recipients"], 2500);
    assert_eq!(
        (s["refused"].as_u64(), s["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (s["pending"].as_u64(), s["bounced"].as_u64()),
        (Some(0), Some(0))
    );
    d.stop();
    let got = dumped(&dump);
    assert_eq!(got.len(), 2500, "one entry per recipient");
    let mut message_ids = std::collections::HashSet::new();
    for i in [0usize, 1, 1023, 1024, 2499] {
        let msgs = &got[&format!("r{i}@example.net")];
        assert_eq!(msgs.len(), 1, "r{i} got {} messages", msgs.len());
        let (from, eml) = &msgs[0];
        assert!(
            from.starts_with("bounces+") && from.ends_with("@bounce.example.com"),
            "{from}"
        );
        let m = mail_parser::MessageParser::default()
            .parse(eml.as_slice())
            .expect("parse");
        assert_eq!(m.subject(), Some(format!("Näme {i}, issue 42").as_str()));
        let text = m.body_text(0).expect("text part");
        assert!(
            text.contains(&format!("Hello Näme {i} in Town, {i}!")),
            "{text}"
        );
        let html = m.body_html(0).expect("html part");
        assert!(html.contains(&format!("<b>Näme {i}</b>")), "{html}");
        let raw = String::from_utf8_lossy(eml);
        assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        assert!(raw.contains("<https://news.example.com/u/"), "{raw}");
        assert!(raw.contains("<mailto:unsubscribe+"), "{raw}");
        assert!(raw.lines().all(|l| l.len() <= 998));
        assert!(message_ids.insert(m.message_id().expect("Message-ID").to_string()));
    }
    assert!(!got.contains_key("not-an-address"));
    // R0 (a duplicate of r0, case aside) got nothing more.
    assert_eq!(got["r0@example.net"].len(), 1);
    let report = campaign(&sb, &["report", &id.to_string()]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert_eq!(
        text.lines().count(),
        2501,
        "header and one line per recipient"
    );
    assert!(text
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("0,r0@example.net,sent,2.0.0,"));
    let log = d.log();
    assert!(log.contains(&format!("campaign {id} accepted: name=issue.eml, recipients=2500, refused=1, duplicates=1, slices=3")), "{log}");
}
daemon_test!(campaign_renders_each_recipient_once);

/// kill -9 while a slow receiver takes the campaign; after a restart every
/// recipient has one outcome, the sink got each at least once and at most
/// the in-flight ones twice.
fn campaign_survives_kill9(io: &str) {
    let sb0 = tempfile::tempdir().expect("dir");
    let dump = sb0.path().join("dump");
    let sink = sink_with(&dump, Latency::Fixed(Duration::from_millis(2)));
    let sb = sandbox(sink.local_addr.port());
    let (template, list) = write_inputs(sb.root(), 1500);
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_for_log("accepting campaigns on");
    let id = send(&sb, &template, &list);
    let stats = sink.counters();
    d.wait_until("some messages at the sink", || {
        stats.snapshot().messages >= 200
    });
    d.kill9();
    let at_kill = stats.snapshot().messages;
    assert!(
        at_kill < 1500,
        "the campaign was not finished before the kill"
    );
    let mut d = sb.start_daemon_nth(io, 1);
    d.wait_until("every recipient delivered", || dumped(&dump).len() >= 1500);
    d.wait_until("every outcome recorded", || show(&sb, id)["sent"] == 1500);
    d.stop();
    let got = dumped(&dump);
    let twice = got.values().filter(|v| v.len() > 1).count();
    assert!(got.values().all(|v| !v.is_empty()));
    // In flight at the kill: at most the connections' worth (20 per shard
    // by default) of messages whose status byte was not yet committed.
    assert!(twice <= 100, "{twice} recipients got two messages");
    let s = show(&sb, id);
    assert_eq!(
        (s["pending"].as_u64(), s["sent"].as_u64()),
        (Some(0), Some(1500))
    );
}
daemon_test!(campaign_survives_kill9);

/// Pause holds every shard (nothing sent while paused), resume sends the
/// rest, and cancel of a second campaign drops all of it.
fn pause_resume_cancel(io: &str) {
    let sb0 = tempfile::tempdir().expect("dir");
    let dump = sb0.path().join("dump");
    let sink = sink_with(&dump, Latency::Fixed(Duration::from_millis(1)));
    let sb = sandbox(sink.local_addr.port());
    let (template, list) = write_inputs(sb.root(), 3000);
    let mut d = sb.start_daemon(io);
    d.wait_for_log("accepting campaigns on");
    let id = send(&sb, &template, &list);
    let stats = sink.counters();
    d.wait_until("some messages sent", || stats.snapshot().messages >= 100);
    let out = campaign(&sb, &["pause", &id.to_string()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("paused (was running)"));
    // Whatever was in flight lands within a second or two; then nothing.
    std::thread::sleep(Duration::from_secs(2));
    let held = stats.snapshot().messages;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stats.snapshot().messages, held, "nothing sent while paused");
    assert!(held < 3000);
    assert_eq!(show(&sb, id)["state"], "paused");
    // The report has every recipient: those not sent yet are pending.
    let report = campaign(&sb, &["report", &id.to_string()]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert_eq!(text.lines().count(), 3001, "header and 3,000 recipients");
    assert!(text.lines().filter(|l| l.contains(",pending,")).count() as u64 >= 3000 - held);
    campaign(&sb, &["resume", &id.to_string()]);
    d.wait_until("the rest sent after resume", || {
        stats.snapshot().messages >= 3000
    });
    // A second campaign, cancelled while paused: nothing of it is sent.
    let second = send(&sb, &template, &list);
    campaign(&sb, &["pause", &second.to_string()]);
    let before = stats.snapshot().messages;
    let out = campaign(&sb, &["cancel", &second.to_string()]);
    assert!(out.status.success());
    d.wait_until("the second campaign cancelled", || {
        show(&sb, second)["cancelled"].as_u64().unwrap_or(0)
            + show(&sb, second)["sent"].as_u64().unwrap_or(0)
            == 3000
    });
    let s = show(&sb, second);
    assert_eq!(s["state"], "cancelled");
    assert_eq!(
        s["sent"].as_u64().unwrap_or(0) + before,
        stats.snapshot().messages,
        "only what was in flight before the pause is sent"
    );
    d.stop();
    assert!(d.log().contains("status=cancelled (campaign"));
    let got = dumped(&dump);
    assert!(got.values().all(|v| !v.is_empty()));
}
daemon_test!(pause_resume_cancel);

/// Refusals: a template with a syntax error and a list without an email
/// column are refused (65) with nothing queued; without a daemon, 69.
fn bad_input_is_refused(io: &str) {
    let sink = sink::start(SinkConfig::default()).expect("sink");
    let sb = sandbox(sink.local_addr.port());
    let (template, list) = write_inputs(sb.root(), 3);
    let out = send_with(&sb, &template, &list, &[]);
    assert_eq!(out.status.code(), Some(69), "no daemon");
    let mut d = sb.start_daemon(io);
    d.wait_for_log("accepting campaigns on");
    let bad_template = sb.root().join("bad.eml");
    fs::write(
        &bad_template,
        "From: a@example.com\nSubject: {{ oops\n\nx\n",
    )
    .expect("write");
    let out = send_with(&sb, &bad_template, &list, &[]);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("header Subject"));
    let bad_list = sb.root().join("bad.csv");
    fs::write(&bad_list, "name,address\nx,y@example.net\n").expect("write");
    let out = send_with(
        &sb,
        &template,
        &bad_list,
        &["--unsubscribe", "https://u.example.com"],
    );
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `email` column"));
    // A merge field the list does not have, and a template that needs an
    // unsubscribe URL without one: refused as a whole.
    let out = send_with(&sb, &template, &list, &[]);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--unsubscribe"));
    let short_list = sb.root().join("short.csv");
    fs::write(&short_list, "email,name\na@example.net,A\n").expect("write");
    let out = send_with(
        &sb,
        &template,
        &short_list,
        &["--unsubscribe", "https://u.example.com"],
    );
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("{{ city }}") && err.contains("no such column"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(500));
    d.stop();
    assert_eq!(sink.stats().messages, 0);
    let list_out = campaign(&sb, &["list"]);
    assert!(String::from_utf8_lossy(&list_out.stdout).contains("no campaigns"));
}
daemon_test!(bad_input_is_refused);

/// `campaign check` reads the whole list and renders the first rows
/// without a daemon; `--show` prints a message mail-parser reads.
#[test]
fn check_reports_problems_without_queueing() {
    let sb = Sandbox::new();
    let (template, list) = write_inputs(sb.root(), 20);
    let out = Command::new(BIN)
        .args([
            "campaign",
            "check",
            "--show",
            "--unsubscribe",
            "https://u.example.com",
            "--template",
        ])
        .arg(&template)
        .arg("--recipients")
        .arg(&list)
        .arg("--config")
        .arg(&sb.config)
        .output()
        .expect("check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(65),
        "the bad row is a problem: {text}"
    );
    assert!(
        text.contains("22 rows, 20 recipients, 1 refused, 1 duplicates"),
        "{text}"
    );
    assert!(text.contains("line 22: not-an-address"), "{text}");
    assert!(
        text.contains("rendered the first 10: 10 ok, 0 failed"),
        "{text}"
    );
    let at = text.find("Date: ").expect("the shown message");
    let m = mail_parser::MessageParser::default()
        .parse(text[at..].as_bytes())
        .expect("parse");
    assert_eq!(m.subject(), Some("Näme 0, issue 42"));
    assert!(!sb.spool.join("queue").exists(), "nothing queued");
}

fn suppress(sb: &Sandbox, args: &[&str]) {
    let out = Command::new(BIN)
        .arg("suppress")
        .args(args)
        .arg("--config")
        .arg(&sb.config)
        .output()
        .expect("ringmail suppress");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Addresses on the suppression list are not sent to, including one added
/// while the campaign is paused (the daemon sees the CLI's change);
/// recipients a receiver refuses with 5.1.1 are added to the list.
fn suppressed_recipients_are_skipped(io: &str) {
    let sb0 = tempfile::tempdir().expect("dir");
    let dump = sb0.path().join("dump");
    let sink = sink_with(&dump, Latency::Fixed(Duration::from_millis(1)));
    let sb = sandbox(sink.local_addr.port());
    let (template, list) = write_inputs(sb.root(), 2000);
    suppress(&sb, &["add", "r5@example.net", "R1500@Example.NET"]);
    let mut d = sb.start_daemon(io);
    d.wait_for_log("accepting campaigns on");
    let id = send(&sb, &template, &list);
    campaign(&sb, &["pause", &id.to_string()]);
    suppress(
        &sb,
        &["add", "r1999@example.net", "--reason", "asked by phone"],
    );
    std::thread::sleep(Duration::from_millis(1500));
    campaign(&sb, &["resume", &id.to_string()]);
    d.wait_until("every outcome recorded", || {
        let s = show(&sb, id);
        s["pending"] == 0 && s["deferred"] == 0
    });
    let s = show(&sb, id);
    assert_eq!(
        (s["suppressed"].as_u64(), s["sent"].as_u64()),
        (Some(3), Some(1997))
    );
    let got = dumped(&dump);
    for a in ["r5@example.net", "r1500@example.net", "r1999@example.net"] {
        assert!(!got.contains_key(a), "{a} was sent to");
    }
    assert_eq!(got.len(), 1997);
    d.stop();
    assert_eq!(
        count_lines(&d.log(), &["status=suppressed (on the suppression list"]),
        3
    );

    // A receiver that refuses every recipient with 550 5.1.1: each ends
    // bounced and on the list.
    let refusing = sink::start(SinkConfig {
        faults: ringmail::sink::Faults {
            rcpt_permfail: 1.0,
            ..Default::default()
        },
        ..SinkConfig::default()
    })
    .expect("sink");
    let sb2 = sandbox(refusing.local_addr.port());
    let (template, list) = write_inputs(sb2.root(), 5);
    let mut d = sb2.start_daemon(io);
    d.wait_for_log("accepting campaigns on");
    let id = send(&sb2, &template, &list);
    d.wait_until("all five bounced", || show(&sb2, id)["bounced"] == 5);
    d.stop();
    let out = Command::new(BIN)
        .args(["suppress", "list", "--config"])
        .arg(&sb2.config)
        .output()
        .expect("suppress list");
    let listed = String::from_utf8_lossy(&out.stdout);
    for i in 0..5 {
        assert!(listed.contains(&format!("r{i}@example.net")), "{listed}");
    }
    assert!(listed.contains("bounce"), "{listed}");
}
daemon_test!(suppressed_recipients_are_skipped);

/// Sends `message` from `source` (an address on loopback) to `rcpt`
/// through the listener on `port` with Python's smtplib, MAIL FROM:<>;
/// prints `OK` or the refusal.
fn smtplib_send(port: u16, source: &str, rcpt: &str, message: &str) -> String {
    let script = r#"
import smtplib, sys
port, source, rcpt, msg = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30)
s.ehlo("mx.remote.test")
try:
    s.sendmail("", [rcpt], msg.encode())
    print("OK")
except smtplib.SMTPRecipientsRefused as e:
    print("REFUSED", e.recipients)
except smtplib.SMTPException as e:
    print("ERROR", e)
s.quit()
"#;
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string(), source, rcpt, message])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A bounce report to a recipient's VERP address and a mail to its
/// List-Unsubscribe mailto, both from outside `mynetworks`, are taken by
/// the listener (not relayed): the bounced recipient is counted bounced and
/// suppressed, the other suppressed; an address with a forged token is
/// refused as any relay attempt.
fn verp_bounce_and_mailto_unsubscribe(io: &str) {
    let sb0 = tempfile::tempdir().expect("dir");
    let dump = sb0.path().join("dump");
    let sink = sink_with(&dump, Latency::None);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let sb = Sandbox::with(Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{}\"\nsmtpd_passwd_file = \"/nonexistent/p\"\n\
             mynetworks = [\"127.0.0.1/32\"]\n[[listener]]\naddress = \"127.0.0.1:{port}\"\n",
            sink.local_addr.port()
        ),
        ..Settings::default()
    });
    let (template, list) = write_inputs(sb.root(), 20);
    let mut d = sb.start_daemon(io);
    d.wait_for_log("accepting campaigns on");
    d.wait_for_log("listening on 127.0.0.1:");
    let id = send(&sb, &template, &list);
    d.wait_until("all sent", || show(&sb, id)["sent"] == 20);
    let got = dumped(&dump);
    let (verp, _) = &got["r3@example.net"][0];
    let (_, eml) = &got["r4@example.net"][0];
    let raw = String::from_utf8_lossy(eml);
    let mailto = raw
        .split("<mailto:")
        .nth(1)
        .and_then(|s| s.split('>').next())
        .expect("mailto")
        .to_string();
    let report = format!(
        "From: MAILER-DAEMON@mx.remote.test\r\nTo: {verp}\r\nSubject: Undelivered Mail\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n\
         --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.remote.test\r\n\r\n\
         Final-Recipient: rfc822; r3@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <r3@example.net>: user unknown\r\n\r\n--b--\r\n"
    );
    let out = smtplib_send(port, "127.0.0.2", verp, &report);
    assert!(out.starts_with("OK"), "{out}");
    let out = smtplib_send(
        port,
        "127.0.0.2",
        &mailto,
        "Subject: unsubscribe\r\n\r\nplease\r\n",
    );
    assert!(out.starts_with("OK"), "{out}");
    let forged = "bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@bounce.example.com";
    let out = smtplib_send(port, "127.0.0.2", forged, "Subject: x\r\n\r\ny\r\n");
    assert!(out.contains("REFUSED") && out.contains("554"), "{out}");
    let s = show(&sb, id);
    assert_eq!(
        (s["sent"].as_u64(), s["bounced"].as_u64()),
        (Some(19), Some(1))
    );
    d.stop();
    assert_eq!(sink.stats().messages, 20, "nothing relayed");
    let out = Command::new(BIN)
        .args(["suppress", "list", "--config"])
        .arg(&sb.config)
        .output()
        .expect("suppress list");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("r3@example.net") && listed.contains("bounce"),
        "{listed}"
    );
    assert!(
        listed.contains("r4@example.net") && listed.contains("unsubscribe"),
        "{listed}"
    );
    let report = campaign(&sb, &["report", &id.to_string()]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("3,r3@example.net,bounced,5.1.1,"), "{text}");
    let log = d.log();
    assert!(
        log.contains("<r3@example.net>: bounced later (dsn=5.1.1"),
        "{log}"
    );
    assert!(
        log.contains("<r4@example.net>: unsubscribed (mailto"),
        "{log}"
    );
}
daemon_test!(verp_bounce_and_mailto_unsubscribe);

/// `--at` holds a campaign until its start time, and `--rate` spreads it:
/// 60 messages at 20/s cannot all arrive in less than three seconds (a
/// lower bound only, which a slow machine cannot break).
fn start_time_and_rate(io: &str) {
    let sb0 = tempfile::tempdir().expect("dir");
    let dump = sb0.path().join("dump");
    let sink = sink_with(&dump, Latency::None);
    let sb = sandbox(sink.local_addr.port());
    let (template, list) = write_inputs(sb.root(), 60);
    let mut d = sb.start_daemon(io);
    d.wait_for_log("accepting campaigns on");
    let out = send_with(
        &sb,
        &template,
        &list,
        &[
            "--unsubscribe",
            "https://news.example.com",
            "--at",
            "+4s",
            "--rate",
            "20/s",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent_at = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let stats = sink.counters();
    assert_eq!(
        stats.snapshot().messages,
        0,
        "nothing before the start time"
    );
    d.wait_until("the first message", || stats.snapshot().messages >= 1);
    let first = std::time::Instant::now();
    d.wait_until("all 60", || stats.snapshot().messages >= 60);
    assert!(first.duration_since(sent_at) >= Duration::from_secs(2));
    assert!(
        first.elapsed() >= Duration::from_millis(2500),
        "60 messages at 20/s took {:?}",
        first.elapsed()
    );
    let bad = send_with(
        &sb,
        &template,
        &list,
        &[
            "--unsubscribe",
            "https://news.example.com",
            "--rate",
            "fast",
        ],
    );
    assert_eq!(bad.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad rate"));
    d.stop();
}
daemon_test!(start_time_and_rate);

/// Bytes the campaign records and slices take in the queue, read from the
/// segment files.
fn campaign_queue_bytes(queue_root: &Path) -> u64 {
    use ringmail::queue::record::{record_len, Kind};
    let mut total = 0;
    for shard in fs::read_dir(queue_root).expect("queue dir") {
        let shard = shard.expect("entry").path();
        for seg in fs::read_dir(&shard).expect("shard dir") {
            let path = seg.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("seg") {
                continue;
            }
            let file = fs::File::open(&path).expect("segment");
            let map = ringmail::queue::segment::map_ro(&file).expect("map");
            for found in ringmail::queue::recovery::Records::new(&map) {
                if matches!(found.kind, Kind::Campaign | Kind::Recipients) {
                    total += record_len(found.payload.len(), found.aux.len()) as u64;
                }
            }
        }
    }
    total
}

/// A large campaign: `n` recipients queued once (at most 64 queue bytes
/// per recipient beyond its own fields), every one delivered exactly once,
/// counted exactly, with the daemon's memory bounded.
fn large_campaign(n: usize) {
    let sink = sink::start(SinkConfig::default()).expect("sink");
    let sb = sandbox(sink.local_addr.port());
    let template = sb.root().join("t.eml");
    fs::write(
        &template,
        "From: News <news@example.com>\nTo: <{{ email }}>\nSubject: {{ name }}, issue {{ code }}\n\n\
         Hello {{ name }} in {{ city }}.\nUnsubscribe: {{ unsubscribe_url }}\n",
    )
    .expect("template");
    let list = sb.root().join("big.csv");
    let mut csv = String::with_capacity(n * 48);
    csv.push_str("email,name,city,code\n");
    let mut own = 0usize;
    for i in 0..n {
        let row = (
            format!("u{i}@example.net"),
            format!("Name {i}"),
            format!("City {}", i % 97),
            format!("{:06x}", i),
        );
        own += row.0.len() + row.1.len() + row.2.len() + row.3.len();
        csv.push_str(&format!("{},{},{},{}\n", row.0, row.1, row.2, row.3));
    }
    fs::write(&list, csv).expect("list");
    let mut d = sb.start_daemon("uring");
    d.wait_for_log("accepting campaigns on");
    let out = send_with(
        &sb,
        &template,
        &list,
        &["--unsubscribe", "https://news.example.com"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "campaign")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .expect("campaign id");
    let bytes = campaign_queue_bytes(&sb.queue());
    let overhead = (bytes as f64 - own as f64) / n as f64;
    assert!(
        overhead <= 64.0,
        "{overhead:.1} queue bytes per recipient beyond its fields"
    );
    let stats = sink.counters();
    wait_until(
        "every recipient at the sink",
        Duration::from_secs(600),
        || stats.snapshot().messages >= n as u64,
    );
    wait_until("every outcome counted", Duration::from_secs(60), || {
        show(&sb, id)["sent"] == n as u64
    });
    let rss_mb = fs::read_to_string(format!("/proc/{}/status", d.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .expect("VmHWM");
    d.stop();
    // Each recipient once: the recipient index is the Message-ID's second part.
    let mut per_index = vec![0u32; n];
    for (mid, count) in sink.message_id_counts() {
        let idx: usize = mid
            .trim_matches(|c| c == '<' || c == '>')
            .split('.')
            .nth(1)
            .and_then(|i| i.parse().ok())
            .expect("campaign Message-ID");
        per_index[idx] += count;
    }
    assert!(
        per_index.iter().all(|&c| c == 1),
        "a recipient got none or two"
    );
    assert!(rss_mb < 300.0, "daemon peak RSS {rss_mb:.0} MB");
    eprintln!("{n} recipients: {overhead:.1} queue bytes per recipient beyond its fields, peak RSS {rss_mb:.0} MB");
}

/// 100,000 recipients (in CI).
#[test]
fn campaign_of_100_000() {
    large_campaign(100_000);
}

/// 1,000,000 recipients: `cargo nextest run --release --test campaign
/// --run-ignored only` (too long for CI's debug build).
#[test]
#[ignore]
fn campaign_of_1_000_000() {
    large_campaign(1_000_000);
}
