//! Tests of [`cleanup`](super::cleanup) as a whole.

use chrono::{Local, TimeZone};

use super::*;

const FULL: &[u8] =
    b"Message-ID: <given@x.example>\nDate: Fri, 27 Nov 2026 01:00:00 +0000\nFrom: f@x.example\n";

fn opts() -> CleanupOptions<'static> {
    CleanupOptions {
        myhostname: "mx.example",
        message_size_limit: 1 << 20,
        full_name: None,
        now: Local.with_ymd_and_hms(2026, 11, 28, 4, 53, 11).unwrap(),
    }
}

fn env(sender: &str, recipients: &[&str]) -> Envelope {
    Envelope {
        sender: sender.to_string(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
    }
}

fn run(raw: &[u8]) -> Cleaned {
    cleanup(raw, &env("s@x.example", &["r@y.example"]), &opts()).unwrap()
}

/// Input with all three fixed fields present, so nothing is added.
fn with_full_header(rest: &[u8]) -> Vec<u8> {
    [FULL, rest].concat()
}

fn text(wire: &[u8]) -> &str {
    std::str::from_utf8(wire).unwrap()
}

#[test]
fn complete_message_is_only_converted_to_crlf() {
    let raw = with_full_header(b"Subject: s\n\nline 1\nline 2\n");
    let c = run(&raw);
    assert_eq!(
        text(&c.wire),
        "Message-ID: <given@x.example>\r\nDate: Fri, 27 Nov 2026 01:00:00 +0000\r\nFrom: f@x.example\r\nSubject: s\r\n\r\nline 1\r\nline 2\r\n"
    );
    assert_eq!(c.message_id, "given@x.example");
    assert_eq!(c.flags, MessageFlags::default());
}

#[test]
fn bcc_fields_are_removed_with_their_continuations() {
    let raw = with_full_header(b"To: a@y.example\nBcc: hidden@y.example,\n  other@y.example\nRESENT-BCC: r@y.example\nCc: c@y.example\n\nbody\n");
    let c = run(&raw);
    let t = text(&c.wire);
    assert!(!t.to_ascii_lowercase().contains("bcc"), "{t}");
    assert!(!t.contains("hidden") && !t.contains("other@"), "{t}");
    assert!(
        t.contains("To: a@y.example\r\nCc: c@y.example\r\n\r\nbody\r\n"),
        "{t}"
    );
}

#[test]
fn missing_fields_are_added_at_the_end_of_the_header() {
    let c = run(b"Subject: s\n\nbody\n");
    let t = text(&c.wire);
    let (header, body) = t.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "body\r\n");
    let lines: Vec<&str> = header.split("\r\n").collect();
    assert_eq!(lines[0], "Subject: s");
    assert_eq!(lines[1], format!("Message-ID: <{}>", c.message_id));
    assert!(c.message_id.starts_with("20261128045311.") && c.message_id.ends_with("@mx.example"));
    assert!(
        lines[2].starts_with("Date: Sat, 28 Nov 2026 04:53:11 "),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "From: s@x.example");
    assert_eq!(lines.len(), 4);
}

#[test]
fn present_fields_are_not_added_again() {
    let c = run(&with_full_header(b"\nbody"));
    let t = text(&c.wire);
    assert_eq!(t.matches("Message-ID:").count(), 1);
    assert_eq!(t.matches("Date:").count(), 1);
    assert_eq!(t.matches("From:").count(), 1);

    // Date present, the others missing.
    let c = run(b"DATE: Fri, 27 Nov 2026 01:00:00 +0000\n\n");
    let t = text(&c.wire);
    assert_eq!(t.to_ascii_lowercase().matches("date:").count(), 1);
    assert_eq!(t.matches("Message-ID:").count(), 1);
    assert_eq!(t.matches("From: s@x.example\r\n").count(), 1);
}

#[test]
fn added_from_uses_full_name_quoted_or_encoded() {
    let envelope = env("s@x.example", &["r@y.example"]);
    let mut o = opts();
    o.full_name = Some("Doe, Jane");
    let c = cleanup(b"Subject: s\n\n", &envelope, &o).unwrap();
    assert!(text(&c.wire).contains("\r\nFrom: \"Doe, Jane\" <s@x.example>\r\n"));
    o.full_name = Some("Zoë");
    let c = cleanup(b"Subject: s\n\n", &envelope, &o).unwrap();
    assert!(text(&c.wire).contains("\r\nFrom: =?UTF-8?B?Wm/Dqw==?= <s@x.example>\r\n"));
    assert!(!c.flags.has(MessageFlags::HEADERS_8BIT));

    let bounce = env("", &["r@y.example"]);
    let c = cleanup(b"Subject: s\n\n", &bounce, &opts()).unwrap();
    assert!(text(&c.wire).contains("\r\nFrom: MAILER-DAEMON@mx.example\r\n"));
}

#[test]
fn body_is_dot_stuffed_once_with_crlf_and_a_final_line_end() {
    let raw = with_full_header(b"\n.\n..x\n.hidden\r\nmid.dle\n.");
    let c = run(&raw);
    let t = text(&c.wire);
    let body = t.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(body, "..\r\n...x\r\n..hidden\r\nmid.dle\r\n..\r\n");
    assert!(!t.ends_with("\r\n.\r\n"));
}

#[test]
fn no_trailing_newline_and_no_separator_are_completed() {
    let c = run(&with_full_header(b"\nlast line"));
    assert!(text(&c.wire).ends_with("\r\n\r\nlast line\r\n"));

    // Header only, no line end at all.
    let c = run(b"Message-ID: <m@x>\nDate: d\nFrom: f@x");
    assert_eq!(
        text(&c.wire),
        "Message-ID: <m@x>\r\nDate: d\r\nFrom: f@x\r\n\r\n"
    );

    // A non-header line starts the body: the separator is inserted.
    let c = run(&with_full_header(b"just text\nmore\n"));
    assert!(text(&c.wire).ends_with("From: f@x.example\r\n\r\njust text\r\nmore\r\n"));
}

#[test]
fn bare_cr_and_bare_lf_become_crlf() {
    let c = run(&with_full_header(b"\na\rb\r\nc\nd"));
    assert!(c.wire.ends_with(b"\r\n\r\na\r\nb\r\nc\r\nd\r\n"));
}

#[test]
fn a_smuggled_transaction_is_stuffed_body_text() {
    let body = b"\nx\r.\rMAIL FROM:<evil@x.test>\rRCPT TO:<victim@y.test>\rDATA\r\n.\n";
    let c = run(&with_full_header(body));
    assert_eq!(crate::mail::line::check_wire_form(&c.wire), Ok(()));
    assert!(c.wire.ends_with(
        b"\r\n\r\nx\r\n..\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\n..\r\n"
    ));
}

#[test]
fn a_field_hidden_behind_a_bare_cr_is_a_field() {
    let raw = b"To: a@x.example\rBcc: hidden@y.example\nSubject: s\n\nbody\n";
    let c = run(raw);
    assert_eq!(crate::mail::line::check_wire_form(&c.wire), Ok(()));
    assert!(!text(&c.wire).contains("hidden"), "{}", text(&c.wire));
    assert!(text(&c.wire).starts_with("To: a@x.example\r\nSubject: s\r\n"));
}

#[test]
fn mbox_from_line_is_dropped() {
    let raw = with_full_header(b"\nbody\n");
    let raw = [
        &b"From someone@x.example Sat Nov 28 04:53:11 2026\n"[..],
        &raw,
    ]
    .concat();
    let c = run(&raw);
    assert!(text(&c.wire).starts_with("Message-ID: <given@x.example>\r\n"));
    assert!(!text(&c.wire).contains("someone"));
}

#[test]
fn malformed_messages_are_refused() {
    let e = cleanup(b"A: 1\n\nnul\0here", &env("s@x", &["r@y"]), &opts()).unwrap_err();
    assert_eq!(e, CleanupError::Header(HeaderError::NulByte { offset: 9 }));
    assert!(!e.is_transient());

    let ok = format!("X: {}\n\n", "a".repeat(995));
    assert!(cleanup(ok.as_bytes(), &env("s@x", &["r@y"]), &opts()).is_ok());
    let long = format!("X: {}\n\n", "a".repeat(996));
    let e = cleanup(long.as_bytes(), &env("s@x", &["r@y"]), &opts()).unwrap_err();
    assert_eq!(
        e,
        CleanupError::Header(HeaderError::LineTooLong {
            line: 1,
            length: 999
        })
    );
}

#[test]
fn size_limit_applies_to_the_message_as_submitted() {
    let mut o = opts();
    o.message_size_limit = 2000;
    let e = &env("s@x", &["r@y"]);
    let big = with_full_header(&[b"\n".as_slice(), &[b'x'; 2000]].concat());
    assert_eq!(
        cleanup(&big, e, &o).unwrap_err(),
        CleanupError::TooLarge {
            size: big.len() as u64,
            limit: 2000
        }
    );
    // Fits as submitted; every LF grows into CRLF, which must not make a
    // message that sendmail accepted fail later in the daemon.
    let lines = with_full_header(&b"\n".repeat(1000));
    assert!(lines.len() <= 2000);
    let cleaned = cleanup(&lines, e, &o).unwrap();
    assert!(cleaned.wire.len() > 2000);
    assert!(!CleanupError::TooLarge { size: 1, limit: 0 }.is_transient());
}

#[test]
fn flags_report_8bit_body_headers_and_utf8_envelope() {
    let c = run(&with_full_header(b"\ncaf\xc3\xa9\n"));
    assert!(c.flags.has(MessageFlags::BODY_8BIT));
    assert!(!c.flags.has(MessageFlags::HEADERS_8BIT));
    assert!(!c.flags.has(MessageFlags::SMTPUTF8));

    let c = run(&with_full_header("Subject: café\n\nplain\n".as_bytes()));
    assert!(c.flags.has(MessageFlags::HEADERS_8BIT));
    assert!(!c.flags.has(MessageFlags::BODY_8BIT));

    let utf8 = env("s@x.example", &["plain@y.example", "jürgen@y.example"]);
    let c = cleanup(&with_full_header(b"\n"), &utf8, &opts()).unwrap();
    assert!(c.flags.has(MessageFlags::SMTPUTF8));

    // A UTF-8 sender also makes the added From field 8-bit.
    let c = cleanup(b"Subject: s\n\n", &env("zoë@x.example", &["r@y"]), &opts()).unwrap();
    assert!(c.flags.has(MessageFlags::SMTPUTF8));
    assert!(c.flags.has(MessageFlags::HEADERS_8BIT));
}
