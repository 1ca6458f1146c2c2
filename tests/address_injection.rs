//! Issue 12, item 2: no injection through the addresses `sendmail` is
//! given. A control character in any address argument (`-f`, `-r`,
//! recipients), in an `X-Sender:`/`X-Receiver:` line or in a `sendmail -bs`
//! MAIL FROM / RCPT TO refuses it; text outside angle brackets never picks
//! the address unless it is a plain display name. Every case runs the real
//! binary.

mod common;

use std::process::Output;

use common::*;

const MSG: &[u8] = b"Subject: injection\n\nbody\n";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `sendmail args` must exit with `code`, say `needle` on stderr, and
/// leave nothing in `maildrop/`.
fn refused(sb: &Sandbox, args: &[&str], code: i32, needle: &str) {
    let out = sb.sendmail(args, MSG);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?} must be refused with {code}; stderr: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(needle),
        "{args:?}: stderr should say {needle:?}: {}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains('\r'),
        "{args:?}: the message must not echo a raw CR: {:?}",
        stderr(&out)
    );
    let left = names_in(&sb.maildrop());
    assert!(
        left.is_empty(),
        "{args:?}: a refused message was written: {left:?}"
    );
}

/// The envelope lines of the only maildrop file (removed afterwards).
fn dropped_envelope(sb: &Sandbox) -> (String, Vec<String>) {
    let names = names_in(&sb.maildrop());
    assert_eq!(names.len(), 1, "{names:?}");
    let path = sb.maildrop().join(&names[0]);
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    std::fs::remove_file(&path).unwrap();
    let head = text.split("\n\n").next().unwrap_or_default();
    let mut sender = String::new();
    let mut rcpts = Vec::new();
    for line in head.lines() {
        if let Some(s) = line.strip_prefix("sender ") {
            sender = s.to_string();
        } else if let Some(r) = line.strip_prefix("rcpt ") {
            rcpts.push(r.to_string());
        }
    }
    (sender, rcpts)
}

#[test]
fn control_characters_in_sendmail_addresses_are_refused() {
    let sb = Sandbox::new();
    sb.make_maildrop();
    let crlf_rcpt = "a@b.c\r\nRCPT TO:<evil@x.test>";
    // The two commands of the issue.
    refused(
        &sb,
        &["-f", crlf_rcpt, "good@example.net"],
        67,
        "control character",
    );
    refused(
        &sb,
        &["good@example.net\r\nRCPT TO:<evil@x.test>"],
        67,
        "control character",
    );
    // -r is -f; attached values; a bare CR, LF, TAB, NUL-free C0, DEL.
    refused(
        &sb,
        &["-r", crlf_rcpt, "good@example.net"],
        67,
        "control character",
    );
    refused(
        &sb,
        &[&format!("-f{crlf_rcpt}"), "good@example.net"],
        67,
        "control character",
    );
    for bad in [
        "good@example.net\r<evil@x.test>",
        "good@example.net\n<evil@x.test>",
        "good@example.net\t<evil@x.test>",
        "good@example.net\u{b}<evil@x.test>",
        "good@example.net\u{7f}",
        "good@example.net\n",
        "ok@example.net,\r\nRCPT TO:<evil@x.test>",
    ] {
        refused(&sb, &[bad], 67, "control character");
        refused(
            &sb,
            &["-f", bad, "good@example.net"],
            67,
            "control character",
        );
    }
    // Also when only verifying (-bv).
    let out = sb.sendmail(&["-bv", "good@example.net\r\nRCPT TO:<evil@x.test>"], b"");
    assert_eq!(out.status.code(), Some(67), "{}", stderr(&out));
    // -R and -V take no control characters either (usage error, 64).
    refused(&sb, &["-R", "full\r\n", "good@example.net"], 64, "-R");
    refused(
        &sb,
        &["-V", "id\r\nRCPT TO:<evil@x.test>", "good@example.net"],
        64,
        "-V",
    );
    refused(&sb, &["-N", "never\r\n", "good@example.net"], 64, "-N");
}

#[test]
fn only_a_plain_display_name_may_surround_the_address() {
    let sb = Sandbox::new();
    sb.make_maildrop();
    // Text before `<` that is not a display name: refused, not skipped.
    for bad in [
        "evil@x.test <good@example.net>",
        "good@example.net <evil@x.test>",
        "RCPT TO:<evil@x.test>",
        "<good@example.net> <evil@x.test>",
        "<good@example.net> trailing text",
    ] {
        refused(&sb, &[bad], 67, "");
        refused(&sb, &["-f", bad, "good@example.net"], 67, "");
    }
    refused(
        &sb,
        &["ok@example.net, evil@x.test <good@example.net>"],
        67,
        "",
    );
    // A plain display name is allowed, and the angle address is the one
    // used, even when the name looks like an address (it is quoted).
    sb.sendmail_ok(
        &[
            "-f",
            "\"evil@x.test\" <good@example.com>",
            "\"evil@x.test\" <good@example.net>",
        ],
        MSG,
    );
    assert_eq!(
        dropped_envelope(&sb),
        (
            "good@example.com".to_string(),
            vec!["good@example.net".to_string()]
        )
    );
    sb.sendmail_ok(
        &[
            "-f",
            "Jane Q. Doe <jane@example.com>",
            "Bob (work) <bob@example.net>, c@example.net",
        ],
        MSG,
    );
    assert_eq!(
        dropped_envelope(&sb),
        (
            "jane@example.com".to_string(),
            vec!["bob@example.net".to_string(), "c@example.net".to_string()]
        )
    );
}

/// `sendmail -bs`: MAIL FROM / RCPT TO with control characters or a
/// display name get a 5xx and nothing is queued. A command line with a
/// control character is refused whole by the shared server session with
/// `500 5.5.2` (as the listener does); a display name is a path syntax
/// error, `501`; DATA without an accepted recipient `503 5.5.1` (Postfix's
/// "need RCPT command").
#[test]
fn bs_refuses_control_characters_in_mail_and_rcpt() {
    let sb = Sandbox::new();
    sb.make_maildrop();
    let dialogue = b"EHLO client.example\r\n\
MAIL FROM:a@b.c\t<evil@x.test>\r\n\
MAIL FROM:a@b.c\x0b<evil@x.test>\r\n\
MAIL FROM:<a@b.c>\rRCPT TO:<evil@x.test>\r\n\
MAIL FROM:Name<evil@x.test>\r\n\
MAIL FROM:<app@example.com>\r\n\
RCPT TO:good@example.net\r<evil@x.test>\r\n\
RCPT TO:good@example.net\t<evil@x.test>\r\n\
RCPT TO:Bob<evil@x.test>\r\n\
DATA\r\n\
QUIT\r\n";
    let out = sb.sendmail(&["-bs"], dialogue);
    assert!(out.status.success(), "{out:?}");
    let replies = String::from_utf8_lossy(&out.stdout).into_owned();
    let codes: Vec<&str> = replies
        .lines()
        .filter(|l| !l.starts_with("250-"))
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        ["220", "250", "500", "500", "500", "501", "250", "500", "500", "501", "503", "221"],
        "{replies}"
    );
    assert_eq!(replies.matches("500 5.5.2 ").count(), 5, "{replies}");
    assert!(
        !replies.contains("250 2.1.5"),
        "no recipient accepted: {replies}"
    );
    assert_eq!(count_in(&sb.maildrop()), 0);
}

/// An `X-Receiver:` line with a CR in it (a .NET application writing user
/// input) is quarantined, never delivered to the address after the CR; a
/// clean file beside it is queued.
#[test]
fn x_receiver_with_a_cr_is_quarantined() {
    let sb = Sandbox::new();
    let mut d = sb.start_daemon("auto");
    sb.drop_file(
        "evil.eml",
        b"X-Sender: app@example.com\r\n\
X-Receiver: good@example.net\rRCPT TO:<evil@x.test>\r\n\
Subject: x\r\n\r\nbody\r\n",
    );
    sb.drop_file(
        "display.eml",
        b"X-Sender: app@example.com\r\n\
X-Receiver: evil@x.test <good@example.net>\r\n\
Subject: y\r\n\r\nbody\r\n",
    );
    sb.drop_file(
        "clean.eml",
        b"X-Sender: app@example.com\r\nX-Receiver: ok@example.net\r\nSubject: z\r\n\r\nbody\r\n",
    );
    d.wait_until("all three files handled", || count_in(&sb.pickup()) == 0);
    d.wait_until("clean file queued", || sb.queue_list().len() == 1);
    let listed = sb.queue_list();
    assert_eq!(listed[0].addresses(), ["ok@example.net"]);
    d.stop();
    let corrupt = names_in(&sb.corrupt());
    assert_eq!(corrupt.len(), 4, "{corrupt:?}");
    let reason_of = |name: &str| {
        let file = corrupt
            .iter()
            .find(|n| n.ends_with(&format!("{name}.reason")))
            .unwrap_or_else(|| panic!("{name} not quarantined: {corrupt:?}"));
        std::fs::read_to_string(sb.corrupt().join(file)).unwrap()
    };
    let reason = reason_of("evil.eml");
    assert!(reason.contains("control character"), "{reason}");
    let reason = reason_of("display.eml");
    assert!(reason.contains("display name"), "{reason}");
    assert!(!sb.recipient_counts().contains_key("evil@x.test"));
}
