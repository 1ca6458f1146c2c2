//! `ringmail queue list` (`mailq`, `sendmail -bp`) against Postfix's own
//! `postqueue -p` for the same queue contents (issue 17 item 6).
//!
//! Two private Postfix instances (`tests/common/postfix.rs`) on loopback:
//! R receives for `example.net` and answers `450 4.2.0` to recipients
//! whose local part starts with `defer` (and accepts the rest); Q is the
//! Postfix whose queue is listed: it relays everything to R
//! (`relayhost = [127.0.0.1]:R`). The same messages (same senders,
//! recipients and bodies) go into Q over SMTP and into a ringmail daemon
//! with the same relay host through its `sendmail`; both try them once,
//! R defers the `defer*` recipients with the same reply (a reason longer
//! than the 76 columns, so printed from column 0), and both route
//! `closed.example` to a loopback port where nothing listens (a short
//! `Connection refused` reason, right-aligned), so both queues
//! hold the same deferred recipients with their reasons; one message is
//! then put on hold in both (`postsuper -h`, `ringmail queue hold`).
//!
//! The listings are compared line by line after this normalisation, and
//! nothing else:
//! - the queue ID: Postfix's short IDs are 5 hex digits of microseconds
//!   and the queue file's inode number in hex (10 or 11 characters here),
//!   ringmail's 12. The message line is printf `"%-11s %7ld %20.20s %s"`,
//!   so the ID's width moves the padding. Each message line is checked to
//!   be exactly that printf of its own fields (the padding after the ID
//!   and marker and before the size is what printf makes of their
//!   widths), then re-made with the placeholder `QQQQQQQQQQQQ` (12
//!   characters) for the ID, the `!` / `*` marker kept;
//! - the arrival time: checked to be `asctime(3)` cut to 20 characters
//!   (`Mon Dec  7 03:14:50 `), replaced by 20 characters of `T`;
//! - the size: the comparison is size-aware: Postfix counts its queue
//!   file's message content (with the headers it adds), ringmail its wire
//!   form, so the values differ by a few hundred bytes; the bodies are
//!   made so that both have four digits (about 2,000 bytes), and each
//!   size's digits become as many `9`s: so the column's width and right
//!   alignment are compared, not the value; the Kbytes total likewise
//!   (about 8: one digit either way);
//! - the order of messages: Postfix lists by queue directory (deferred,
//!   then hold) in hash order, ringmail by arrival, so the blank-line
//!   separated message blocks are compared as sorted lists; the heading,
//!   the blank lines and the totals line are compared in place.
//!
//! Reason lines (right-aligned to column 78), recipient indentation
//! (column 41), the heading and the totals line are compared byte for
//! byte. Skipped, with a message, without Postfix or root.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::postfix::PostfixReceiver;
use common::*;

/// The messages: sender and recipients. `ok@` is accepted by R (so
/// delivered and not listed), `defer*@` deferred.
const MESSAGES: [(&str, &[&str]); 5] = [
    ("alice@example.com", &["defer-one@example.net"]),
    (
        "bob@example.com",
        &["defer-two@example.net", "defer-three@example.net"],
    ),
    (
        "a-rather-long-sender-address-for-the-sender-column@very-long-domain.example.com",
        &[
            "ok@example.net",
            "defer-long-recipient-address-for-the-column@example.net",
        ],
    ),
    ("carol@example.com", &["defer-held@example.net"]),
    (
        "dave@example.com",
        &["b@closed.example", "a@closed.example"],
    ),
];

/// The message put on hold (index into [`MESSAGES`]).
const HELD: usize = 3;

/// How many reason lines both listings hold: one per `defer*` recipient
/// (R names the address in its reply) and one for both `closed.example`
/// recipients (the same `Connection refused`, shown once).
const DEFERRED: usize = 6;

/// A message of about 2,000 bytes from `from`.
fn message(from: &str, i: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <{from}>\r\nTo: <list@example.net>\r\nSubject: mailq comparison {i}\r\n\
         Message-ID: <mailq-{i}@example.com>\r\nDate: Mon, 7 Dec 2026 03:00:00 +0000\r\n\r\n"
    );
    for l in 0..30 {
        m.push_str(&format!(
            "line {l:02} of the body, some text to make it larger\r\n"
        ));
    }
    m.into_bytes()
}

/// Sends `data` from `from` to `to` over SMTP to `addr`.
fn smtp_send(addr: SocketAddr, from: &str, to: &[&str], data: &[u8]) {
    let stream = TcpStream::connect(addr).expect("connect to Q");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    let mut reply = |expect: &str| loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("read reply");
        assert!(line.starts_with(expect), "expected {expect}: {line:?}");
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    };
    reply("220");
    let mut cmd = |c: String, expect: &str| {
        w.write_all(c.as_bytes()).expect("write");
        reply(expect);
    };
    cmd("EHLO client.test\r\n".into(), "250");
    cmd(format!("MAIL FROM:<{from}>\r\n"), "250");
    for t in to {
        cmd(format!("RCPT TO:<{t}>\r\n"), "250");
    }
    cmd("DATA\r\n".into(), "354");
    let mut body = data.to_vec();
    body.extend_from_slice(b".\r\n");
    cmd(String::from_utf8(body).expect("ASCII"), "250");
    cmd("QUIT\r\n".into(), "221");
}

/// `postqueue -c DIR -p`.
fn postqueue(q: &PostfixReceiver) -> String {
    let out = Command::new("/usr/sbin/postqueue")
        .arg("-c")
        .arg(q.config_dir())
        .arg("-p")
        .env_remove("MAIL_CONFIG")
        .output()
        .expect("run postqueue");
    assert!(
        out.status.success(),
        "postqueue -p: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// `ringmail queue list` (text).
fn ringmail_list(sb: &Sandbox) -> String {
    let out = sb
        .cmd()
        .args(["queue", "list", "--config"])
        .arg(&sb.config)
        .output()
        .expect("run queue list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// A listing settled: every message tried once (no `*`), `DEFERRED`
/// reasons, and the held message marked when `held`.
fn settled(listing: &str, held: bool) -> bool {
    let messages = listing
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_hexdigit()))
        .collect::<Vec<_>>();
    let reasons = listing
        .lines()
        .filter(|l| l.trim_start().starts_with('('))
        .count();
    messages.len() == MESSAGES.len()
        && !messages.iter().any(|l| l.contains('*'))
        && reasons == DEFERRED
        && messages.iter().filter(|l| l.contains('!')).count() == usize::from(held)
}

/// The queue ID of the message from `sender` in a listing.
fn id_of(listing: &str, sender: &str) -> String {
    listing
        .lines()
        .find(|l| l.ends_with(&format!(" {sender}")))
        .and_then(|l| l.split(' ').next())
        .map(|id| id.trim_end_matches(['*', '!']).to_string())
        .unwrap_or_else(|| panic!("no message from {sender} in\n{listing}"))
}

/// One message line normalised (see the file's comment): checked to be
/// printf `"%-11s %7ld %20.20s %s"` of its fields, then re-made with the
/// placeholders.
fn normalise_message_line(line: &str) -> String {
    let id_len = line
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or_else(|| panic!("no queue ID: {line:?}"));
    let rest = &line[id_len..];
    let marker: String = rest.chars().take_while(|c| "*!#".contains(*c)).collect();
    let rest = &rest[marker.len()..];
    let size_at = rest
        .find(|c: char| c != ' ')
        .unwrap_or_else(|| panic!("no size: {line:?}"));
    let size_len = rest[size_at..]
        .find(' ')
        .unwrap_or_else(|| panic!("no time: {line:?}"));
    let size = &rest[size_at..size_at + size_len];
    assert!(size.bytes().all(|b| b.is_ascii_digit()), "{line:?}");
    let time = &rest[size_at + size_len + 1..][..20];
    let sender = &rest[size_at + size_len + 1 + 20..];
    let sender = sender
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the sender: {line:?}"));
    let id_field = format!("{}{marker}", &line[..id_len]);
    assert_eq!(
        line,
        format!("{id_field:<11} {size:>7} {time:20.20} {sender}"),
        "not printf \"%-11s %7ld %20.20s %s\""
    );
    let b = time.as_bytes();
    assert!(
        time.len() == 20
            && b[3] == b' '
            && b[7] == b' '
            && (b[8] == b' ' || b[8].is_ascii_digit())
            && b[9].is_ascii_digit()
            && &time[10..11] == " "
            && &time[13..14] == ":"
            && &time[16..17] == ":"
            && b[19] == b' ',
        "not asctime cut to 20: {time:?}"
    );
    format!(
        "{:<11} {:>7} {} {sender}",
        format!("QQQQQQQQQQQQ{marker}"),
        "9".repeat(size.len()),
        "T".repeat(20)
    )
}

/// A whole listing normalised: heading, sorted message blocks, totals.
fn normalise(listing: &str) -> (String, Vec<Vec<String>>, String) {
    let lines: Vec<&str> = listing.lines().collect();
    assert!(lines.len() > 3, "{listing}");
    assert!(listing.ends_with('\n'));
    let heading = lines[0].to_string();
    let totals = lines[lines.len() - 1];
    assert_eq!(lines[lines.len() - 2], "", "blank line before the totals");
    let kbytes = totals
        .strip_prefix("-- ")
        .and_then(|t| t.split(' ').next())
        .unwrap_or_else(|| panic!("totals: {totals:?}"));
    let totals = totals.replacen(kbytes, &"9".repeat(kbytes.len()), 1);
    let mut blocks: Vec<Vec<String>> = lines[1..lines.len() - 2]
        .split(|l| l.is_empty())
        .map(|block| {
            let mut b = vec![normalise_message_line(block[0])];
            b.extend(block[1..].iter().map(|l| l.to_string()));
            b
        })
        .collect();
    blocks.sort();
    (heading, blocks, totals)
}

#[test]
fn ringmail_lists_the_queue_as_postfix_does() {
    let Some(r) = PostfixReceiver::start(&["example.net"]) else {
        return;
    };
    let relay = format!("[127.0.0.1]:{}", r.addr.port());
    // Nothing listens there (free when picked; nobody else binds it in
    // the test's few seconds, or the reasons would differ and say so).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let transport = format!("inline:{{ closed.example=smtp:[127.0.0.1]:{closed} }}");
    let Some(q) = PostfixReceiver::start_with(
        &["q.test"],
        &[
            ("relayhost", relay.as_str()),
            ("default_transport", "smtp"),
            ("relay_transport", "smtp"),
            ("smtp_tls_security_level", "none"),
            ("transport_maps", transport.as_str()),
            (
                "smtpd_relay_restrictions",
                "permit_mynetworks, reject_unauth_destination",
            ),
            ("smtpd_recipient_restrictions", "permit_mynetworks"),
            // Tried once, then left alone for the test's length.
            ("minimal_backoff_time", "3600s"),
            ("maximal_backoff_time", "4000s"),
            ("queue_run_delay", "3600s"),
        ],
    ) else {
        return;
    };

    let sb = Sandbox::with(Settings {
        extra: format!(
            "relayhost = \"{relay}\"\nminimal_backoff_time = 3600\nmaximal_backoff_time = 4000\n\
             [[route]]\ndomain = \"closed.example\"\nnexthop = \"[127.0.0.1]:{closed}\"\n"
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon("epoll");

    for (i, (from, to)) in MESSAGES.iter().enumerate() {
        let m = message(from, i);
        smtp_send(q.addr, from, to, &m);
        let mut args = vec!["-f", from];
        args.extend(to.iter().copied());
        sb.sendmail_ok(&args, &m);
    }

    wait_until(
        "Postfix tried every message once",
        Duration::from_secs(120),
        || settled(&postqueue(&q), false),
    );
    d.wait_until("ringmail tried every message once", || {
        settled(&ringmail_list(&sb), false)
    });

    let held_from = MESSAGES[HELD].0;
    let pf_id = id_of(&postqueue(&q), held_from);
    let out = Command::new("/usr/sbin/postsuper")
        .arg("-c")
        .arg(q.config_dir())
        .args(["-h", &pf_id])
        .env_remove("MAIL_CONFIG")
        .output()
        .expect("run postsuper");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rm_id = id_of(&ringmail_list(&sb), held_from);
    let out = sb
        .cmd()
        .args(["queue", "hold", &rm_id, "--config"])
        .arg(&sb.config)
        .output()
        .expect("run queue hold");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("Postfix holds one", Duration::from_secs(30), || {
        settled(&postqueue(&q), true)
    });
    d.wait_until("ringmail holds one", || settled(&ringmail_list(&sb), true));

    let postfix = postqueue(&q);
    let ours = ringmail_list(&sb);
    eprintln!("postqueue -p:\n{postfix}\nringmail queue list:\n{ours}");
    let (pf_head, pf_blocks, pf_totals) = normalise(&postfix);
    let (rm_head, rm_blocks, rm_totals) = normalise(&ours);
    assert_eq!(rm_head, pf_head, "heading");
    assert_eq!(rm_totals, pf_totals, "totals");
    assert_eq!(rm_blocks.len(), pf_blocks.len());
    for (ours, theirs) in rm_blocks.iter().zip(&pf_blocks) {
        assert_eq!(ours, theirs, "a message block");
    }
    assert_eq!(ours.lines().count(), postfix.lines().count());
    // The ok@ recipient was delivered by both and is listed by neither.
    assert!(!postfix.contains("ok@example.net") && !ours.contains("ok@example.net"));
}
