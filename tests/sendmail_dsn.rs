//! Issue 12, item 7: `sendmail -N`, `-R`, `-V` and `-B` are stored with
//! the message and honoured, end to end: the real `sendmail` writes
//! `maildrop/`, the real daemon queues and delivers to bundled sinks on
//! 127.0.0.1 (one refusing every recipient, one accepting and dumping what
//! it gets, one deferring), and the notices it sends back are read from the
//! dump.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use ringmail::sink::{self, Faults, SinkConfig, SinkHandle};

/// Deferred mail comes back within a few seconds; a delay warning is due
/// after one second.
const FAST: &str = "minimal_backoff_time = 1\nmaximal_backoff_time = 2\ndelay_warning_time = 1\n";

fn route(domain: &str, sink: &SinkHandle) -> String {
    format!(
        "[[route]]\ndomain = \"{domain}\"\nnexthop = \"[127.0.0.1]:{}\"\n",
        sink.local_addr.port()
    )
}

/// One dumped message: its envelope JSON and its bytes.
struct Dumped {
    json: serde_json::Value,
    eml: String,
}

impl Dumped {
    fn rcpts(&self) -> Vec<String> {
        self.json["rcpt_to"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
    fn mail_params(&self) -> String {
        self.json["mail_params"].as_str().unwrap_or("").to_string()
    }
    fn is_to(&self, rcpt: &str) -> bool {
        self.rcpts().iter().any(|r| r == rcpt)
    }
}

fn dumps(dir: &Path) -> Vec<Dumped> {
    let mut out = Vec::new();
    for name in names_in(dir) {
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        // The sink writes `n.eml`, then `n.json`, neither atomically: a
        // file that does not parse yet is still being written.
        let Ok(json) = fs::read_to_string(dir.join(&name)) else {
            continue;
        };
        let Ok(json) = serde_json::from_str(&json) else {
            continue;
        };
        let eml = fs::read(dir.join(format!("{stem}.eml"))).expect("dump eml");
        out.push(Dumped {
            json,
            eml: String::from_utf8_lossy(&eml).into_owned(),
        });
    }
    out
}

/// A message whose body carries `marker`, 7-bit only.
fn message(marker: &str) -> Vec<u8> {
    format!("Subject: {marker}\n\nbody {marker}\n").into_bytes()
}

/// The queue ID the daemon gave the message from `sender` (its
/// `from=<sender>, size=` line).
fn queue_id_of(log: &str, sender: &str) -> Option<String> {
    let needle = format!(": from=<{sender}>, size=");
    log.lines().find_map(|l| {
        let at = l.find(&needle)?;
        let head = &l[..at];
        Some(head.rsplit(' ').next()?.to_string())
    })
}

fn dsn_end_to_end(io: &str) {
    let bad = sink::start(SinkConfig {
        faults: Faults {
            rcpt_permfail: 1.0,
            ..Faults::default()
        },
        ..SinkConfig::default()
    })
    .expect("refusing sink");
    let slow = sink::start(SinkConfig {
        faults: Faults {
            rcpt_tempfail: 1.0,
            ..Faults::default()
        },
        ..SinkConfig::default()
    })
    .expect("deferring sink");
    let root = tempfile::tempdir().unwrap();
    let dump = root.path().join("dump");
    let good = sink::start(SinkConfig {
        dump_dir: Some(dump.clone()),
        ..SinkConfig::default()
    })
    .expect("accepting sink");
    let sb = Sandbox::with(Settings {
        extra: format!(
            "{FAST}{}{}{}{}",
            route("bad.test", &bad),
            route("slow.test", &slow),
            route("good.test", &good),
            route("example.com", &good),
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    let send = |args: &[&str], marker: &str| sb.sendmail_ok(args, &message(marker));
    // A: -N never, refused with 5xx: no notice at all.
    send(
        &["-N", "never", "-f", "a@example.com", "a@bad.test"],
        "MARK-A",
    );
    // B: -N success: a success notice, with the ENVID.
    send(
        &[
            "-N",
            "success",
            "-V",
            "env-B",
            "-f",
            "b@example.com",
            "b@good.test",
        ],
        "MARK-B",
    );
    // C: -R hdrs: the failure notice carries only the header.
    send(
        &[
            "-R",
            "hdrs",
            "-V",
            "env C",
            "-f",
            "c@example.com",
            "c@bad.test",
        ],
        "MARK-C",
    );
    // D: no flags: the failure notice carries the whole message.
    send(&["-f", "d@example.com", "d@bad.test"], "MARK-D");
    // E: -B8BITMIME on a 7-bit body: BODY=8BITMIME all the same. F: not.
    send(
        &["-B8BITMIME", "-f", "e@example.com", "e@good.test"],
        "MARK-E",
    );
    send(&["-f", "f@example.com", "f@good.test"], "MARK-F");
    // G: -N failure, deferred: no delay warning. H: no flags: warned.
    send(
        &["-N", "failure", "-f", "g@example.com", "g@slow.test"],
        "MARK-G",
    );
    send(&["-f", "h@example.com", "h@slow.test"], "MARK-H");

    let got = |rcpt: &str| dumps(&dump).into_iter().find(|m| m.is_to(rcpt));
    d.wait_until("the expected messages and notices arrived", || {
        [
            "b@good.test",
            "e@good.test",
            "f@good.test",
            "b@example.com",
            "c@example.com",
            "d@example.com",
            "h@example.com",
        ]
        .iter()
        .all(|r| got(r).is_some())
    });
    // G's message has been deferred at least three times, so the pass
    // that would have warned (the second, after one second) is over.
    d.wait_until("g@slow.test deferred three times", || {
        let log = fs::read_to_string(sb.root().join("daemon-0.log")).unwrap_or_default();
        count_lines(&log, &["to=<g@slow.test>", "status=deferred"]) >= 3
    });
    d.stop();
    let log = d.log();

    // A: bounced, no notice queued, none delivered.
    let a = queue_id_of(&log, "a@example.com").expect("A queued");
    assert_eq!(count_lines(&log, &["to=<a@bad.test>", "status=bounced"]), 1);
    assert_eq!(count_lines(&log, &[&a, "notification"]), 0, "{log}");
    assert!(got("a@example.com").is_none(), "-N never: no notice");

    // B: success notice, RFC 3464 relayed, ENVID, headers only.
    let b = got("b@example.com").unwrap();
    assert_eq!(b.json["mail_from"], "", "notices come from <>");
    assert!(
        b.eml.contains("Subject: Successful Mail Delivery Report"),
        "{}",
        b.eml
    );
    assert!(
        b.eml.contains("Original-Envelope-Id: env-B\r\n"),
        "{}",
        b.eml
    );
    assert!(b.eml.contains("Action: relayed\r\n"), "{}", b.eml);
    assert!(b.eml.contains("Status: 2.0.0\r\n"), "{}", b.eml);
    assert!(
        b.eml.contains("Final-Recipient: rfc822; b@good.test\r\n"),
        "{}",
        b.eml
    );
    assert!(b.eml.contains("text/rfc822-headers"), "{}", b.eml);
    assert!(!b.eml.contains("body MARK-B"), "headers only: {}", b.eml);
    assert_eq!(count_lines(&log, &["to=<b@good.test>", "status=sent"]), 1);

    // C: failure notice with headers only and the ENVID.
    let c = got("c@example.com").unwrap();
    assert!(
        c.eml.contains("Original-Envelope-Id: env C\r\n"),
        "{}",
        c.eml
    );
    assert!(c.eml.contains("Action: failed\r\n"), "{}", c.eml);
    assert!(c.eml.contains("text/rfc822-headers"), "{}", c.eml);
    assert!(c.eml.contains("Subject: MARK-C"), "{}", c.eml);
    assert!(!c.eml.contains("body MARK-C"), "-R hdrs: {}", c.eml);
    // D: the default returns the whole message, and has no ENVID.
    let dn = got("d@example.com").unwrap();
    assert!(dn.eml.contains("message/rfc822"), "{}", dn.eml);
    assert!(dn.eml.contains("body MARK-D"), "{}", dn.eml);
    assert!(!dn.eml.contains("Original-Envelope-Id"), "{}", dn.eml);

    // E and F: BODY=8BITMIME as declared.
    let e = got("e@good.test").unwrap();
    assert!(e.mail_params().contains("BODY=8BITMIME"), "{:?}", e.json);
    let f = got("f@good.test").unwrap();
    assert!(!f.mail_params().contains("BODY="), "{:?}", f.json);

    // G: deferred but never warned; H warned once.
    let g = queue_id_of(&log, "g@example.com").expect("G queued");
    assert_eq!(count_lines(&log, &[&g, "notification"]), 0, "{log}");
    assert!(
        got("g@example.com").is_none(),
        "-N failure: no delay warning"
    );
    let h = got("h@example.com").unwrap();
    assert!(h.eml.contains("Action: delayed\r\n"), "{}", h.eml);
    drop((bad, slow, good));
}
daemon_test!(dsn_end_to_end);

/// What `sendmail -N/-R/-V/-B` and `sendmail -bs` with the RFC 3461
/// parameters write into `maildrop/` (format version 2), and that a plain
/// message still gets version 1.
#[test]
fn dsn_requests_are_written_to_the_maildrop_file() {
    let sb = Sandbox::new();
    sb.make_maildrop();
    let take = || -> String {
        let names = names_in(&sb.maildrop());
        assert_eq!(names.len(), 1, "{names:?}");
        let p = sb.maildrop().join(&names[0]);
        let text = String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned();
        fs::remove_file(p).unwrap();
        text.split("\n\n").next().unwrap_or_default().to_string()
    };
    sb.sendmail_ok(
        &[
            "-N",
            "delay,failure",
            "-R",
            "full",
            "-V",
            "x-1",
            "-B",
            "8bitmime",
            "-f",
            "s@example.com",
            "a@example.net",
            "b@example.net",
        ],
        b"Subject: s\n\nbody\n",
    );
    assert_eq!(
        take(),
        "RINGMAIL-MAILDROP 2\nuid ".to_string()
            + &current_uid()
            + "\nsender s@example.com\n\
         ret FULL\nenvid x-1\nbody 8BITMIME\nrcpt a@example.net\nnotify FAILURE,DELAY\n\
         rcpt b@example.net\nnotify FAILURE,DELAY"
    );
    sb.sendmail_ok(
        &["-f", "s@example.com", "a@example.net"],
        b"Subject: s\n\nbody\n",
    );
    assert!(take().starts_with("RINGMAIL-MAILDROP 1\n"));

    let dialogue = b"EHLO c\r\nMAIL FROM:<s@example.com> RET=HDRS ENVID=id+2B1\r\n\
RCPT TO:<a@example.net> NOTIFY=NEVER\r\nRCPT TO:<b@example.net> NOTIFY=SUCCESS ORCPT=rfc822;B+40example.net\r\n\
DATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n";
    let out = sb.sendmail(&["-bs"], dialogue);
    assert!(out.status.success(), "{out:?}");
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(replies.contains("250-DSN\r\n"), "{replies}");
    assert!(replies.contains("queued as"), "{replies}");
    let head = take();
    assert!(head.starts_with("RINGMAIL-MAILDROP 2\n"), "{head}");
    assert!(
        head.ends_with(
            "ret HDRS\nenvid id+1\nrcpt a@example.net\nnotify NEVER\n\
             rcpt b@example.net\nnotify SUCCESS\norcpt rfc822;B@example.net"
        ),
        "{head}"
    );
    // In -bs mode the SMTP client says it: the flags are refused.
    let out = sb.sendmail(&["-bs", "-N", "never"], b"QUIT\r\n");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-N cannot be used with -bs"));
}

/// The uid sendmail writes: the invoking user's.
fn current_uid() -> String {
    // std has no getuid: read it from /proc.
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .expect("Uid line")
        .to_string()
}

/// A next hop that announces DSN gets the requests with the message
/// (`RET`/`ENVID` on MAIL, `NOTIFY` on RCPT), and then reports success
/// itself: ringmail sends no "relayed" notice of its own (RFC 3461
/// section 6.2.2), as it does to a next hop without DSN.
fn dsn_passed_to_the_next_hop(io: &str) {
    let root = tempfile::tempdir().unwrap();
    let dump = root.path().join("dump");
    let dsn_hop = sink::start(SinkConfig {
        dump_dir: Some(dump.clone()),
        dsn: true,
        ..SinkConfig::default()
    })
    .expect("DSN sink");
    let sb = Sandbox::with(Settings {
        extra: format!(
            "{FAST}{}{}",
            route("dsn.test", &dsn_hop),
            route("example.com", &dsn_hop)
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    sb.sendmail_ok(
        &[
            "-N",
            "success,failure",
            "-R",
            "hdrs",
            "-V",
            "env+id",
            "-f",
            "p@example.com",
            "p@dsn.test",
        ],
        &message("passed"),
    );
    d.wait_until("the message delivered", || {
        dumps(&dump).iter().any(|m| m.is_to("p@dsn.test"))
    });
    d.wait_until("the queue empty", || sb.queue_list().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(300));
    d.stop();
    let all = dumps(&dump);
    let m = all
        .iter()
        .find(|m| m.is_to("p@dsn.test"))
        .expect("delivered");
    let params = m.mail_params();
    assert!(params.contains("RET=HDRS"), "{params}");
    assert!(params.contains("ENVID=env+2Bid"), "{params}");
    assert!(
        !all.iter().any(|m| m.is_to("p@example.com")),
        "no relayed notice from ringmail when the next hop took NOTIFY"
    );
    let log = d.log();
    assert_eq!(
        count_lines(&log, &["ringmail/bounce[", " notification: "]),
        0,
        "{log}"
    );
}
daemon_test!(dsn_passed_to_the_next_hop);
