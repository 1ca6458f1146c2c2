//! Tests of [`build`](super::build) as a whole: the notices are parsed back
//! with `mail-parser` after undoing the dot-stuffing.

use chrono::{Local, TimeZone};
use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::*;
use crate::cleanup::date::rfc5322_date;

const HOST: &str = "mx.example";
const QID: &str = "3F2A1C0B9D1E";
const SENDER: &str = "alice@sender.example";

/// An original as the queue holds it, from text with LF line ends.
fn queued(text: &str) -> Vec<u8> {
    let mut wire = Vec::new();
    crate::cleanup::wire::push_lines(&mut wire, text.as_bytes());
    wire
}

fn original() -> Vec<u8> {
    queued(
        "From: Alice <alice@sender.example>\n\
         To: bob@rcpt.example, carol@rcpt.example\n\
         Subject: Quarterly report\n\
         Message-ID: <orig.1@sender.example>\n\
         \n\
         Hello,\n\
         .\n\
         ..two dots\n\
         .one dot\n\
         -- \n\
         Alice\n",
    )
}

fn rcpt(address: &str, status: &str) -> FailedRecipient {
    FailedRecipient {
        address: address.to_string(),
        original_recipient: None,
        status: status.to_string(),
        diagnostic: Some(format!("550 {status} <{address}>: Recipient address rejected: User unknown in virtual mailbox table")),
        remote_mta: Some("mx1.rcpt.example".to_string()),
        reason: format!("host mx1.rcpt.example[192.0.2.1] said: 550 {status} <{address}>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)"),
    }
}

fn request<'a>(wire: &'a [u8], recipients: &'a [FailedRecipient]) -> BounceRequest<'a> {
    BounceRequest {
        kind: NoticeKind::Failure,
        queue_id: QID,
        envid: None,
        original_sender: SENDER,
        original_wire: wire,
        arrival: Local.with_ymd_and_hms(2026, 11, 28, 4, 53, 11).unwrap(),
        recipients,
        myhostname: HOST,
        now: Local.with_ymd_and_hms(2026, 11, 28, 5, 0, 0).unwrap(),
        return_full_message: true,
        bounce_size_limit: DEFAULT_BOUNCE_SIZE_LIMIT,
    }
}

fn build_ok(req: &BounceRequest<'_>) -> Bounce {
    match build(req) {
        Ok(Some(b)) => b,
        other => panic!("expected a notice, got {other:?}"),
    }
}

/// Undoes the dot-stuffing (independently of the module's own function).
fn unstuffed(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in wire.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

fn parse(raw: &[u8]) -> Message<'_> {
    match MessageParser::default().parse(raw) {
        Some(m) => m,
        None => panic!(
            "mail-parser could not parse:\n{}",
            String::from_utf8_lossy(raw)
        ),
    }
}

/// The body parts under the root multipart.
fn parts<'m>(msg: &'m Message<'_>) -> Vec<&'m MessagePart<'m>> {
    let PartType::Multipart(ids) = &msg.root_part().body else {
        panic!("not multipart: {:?}", msg.root_part().body)
    };
    ids.iter().map(|&id| &msg.parts[id as usize]).collect()
}

fn mime_type(part: &MessagePart<'_>) -> String {
    let ct = part.content_type().expect("content type");
    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
}

/// The raw bytes of a part's body.
fn body_raw<'r>(raw: &'r [u8], part: &MessagePart<'_>) -> &'r [u8] {
    &raw[part.offset_body as usize..part.offset_end as usize]
}

/// The groups of the delivery-status body: unfolded `(name, value)` pairs.
fn status_groups(body: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).expect("delivery-status is ASCII");
    assert!(text.is_ascii(), "{text}");
    text.split("\r\n\r\n")
        .filter(|g| !g.trim().is_empty())
        .map(|group| {
            group
                .replace("\r\n ", " ")
                .replace("\r\n\t", "\t")
                .lines()
                .map(|l| {
                    let (n, v) = l
                        .split_once(':')
                        .unwrap_or_else(|| panic!("not a field: {l:?}"));
                    (n.to_string(), v.trim().to_string())
                })
                .collect()
        })
        .collect()
}

fn get<'g>(group: &'g [(String, String)], name: &str) -> Option<&'g str> {
    group
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The bodies (after the part headers) of the parts of `raw` delimited by
/// `boundary`, cut at the delimiter lines (RFC 2046 5.1.1).
fn by_boundary<'r>(raw: &'r [u8], boundary: &str) -> Vec<&'r [u8]> {
    let delimiter = format!("\r\n--{boundary}");
    let d = delimiter.as_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + d.len() <= raw.len() {
        if &raw[i..i + d.len()] == d {
            starts.push(i);
            i += d.len();
        } else {
            i += 1;
        }
    }
    assert!(raw[starts[starts.len() - 1] + d.len()..].starts_with(b"--\r\n"));
    starts
        .windows(2)
        .map(|w| {
            let part = &raw[w[0] + d.len() + 2..w[1]];
            let body = part
                .windows(4)
                .position(|x| x == b"\r\n\r\n")
                .expect("part header");
            &part[body + 4..]
        })
        .collect()
}

/// Byte equality, shown as text when it fails.
fn assert_same(got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "got:\n{}\nwant:\n{}",
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(want)
    );
}

/// Every line ends in CRLF, CR and LF appear only there, and no line,
/// un-stuffed, is over 998 octets.
fn assert_lines_ok(wire: &[u8]) {
    assert!(wire.ends_with(b"\r\n"));
    // What delivery asserts before sending a body.
    assert_eq!(crate::mail::line::check_wire_form(wire), Ok(()));
    for (i, &b) in wire.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && wire[i - 1] == b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(wire.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    assert!(
        !wire.windows(5).any(|w| w == b"\r\n.\r\n"),
        "end-of-data line"
    );
    for line in unstuffed(wire).split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "line of {} octets", line.len()); // 998 + CR
    }
}

#[test]
fn failure_notice_is_a_three_part_report() {
    let wire = original();
    let rcpts = [rcpt("bob@rcpt.example", "5.1.1")];
    let bounce = build_ok(&request(&wire, &rcpts));
    assert_eq!(bounce.sender, "");
    assert_eq!(bounce.recipient, SENDER);
    assert_eq!(bounce.envelope().recipients, vec![SENDER.to_string()]);
    assert_eq!(bounce.flags, MessageFlags::default());
    assert_lines_ok(&bounce.wire);

    let raw = unstuffed(&bounce.wire);
    let msg = parse(&raw);
    assert_eq!(
        msg.header_raw("From").map(str::trim),
        Some("MAILER-DAEMON@mx.example (Mail Delivery System)")
    );
    assert_eq!(
        msg.header_raw("To").map(str::trim),
        Some("<alice@sender.example>")
    );
    assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
    assert_eq!(
        msg.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    assert_eq!(msg.header_raw("MIME-Version").map(str::trim), Some("1.0"));
    assert_eq!(msg.message_id(), Some(bounce.message_id.as_str()));
    assert!(bounce
        .message_id
        .starts_with("20261128050000.3F2A1C0B9D1E."));
    assert!(bounce.message_id.ends_with("@mx.example"));
    assert_eq!(
        msg.header_raw("Date").map(str::trim),
        Some(rfc5322_date(&request(&wire, &rcpts).now).as_str())
    );
    let ct = msg.content_type().expect("content type");
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));

    let parts = parts(&msg);
    assert_eq!(parts.len(), 3);
    assert_eq!(mime_type(parts[0]), "text/plain");
    assert_eq!(mime_type(parts[1]), "message/delivery-status");
    assert_eq!(mime_type(parts[2]), "message/rfc822");
    let text = parts[0].text_contents().expect("text");
    assert!(
        text.starts_with("This is the mail system at host mx.example."),
        "{text}"
    );
    assert!(text.contains("<bob@rcpt.example>: host mx1.rcpt.example[192.0.2.1] said:"));
    let PartType::Message(attached) = &parts[2].body else {
        panic!("part 3 is not a message")
    };
    assert_eq!(attached.subject(), Some("Quarterly report"));
    assert_eq!(attached.message_id(), Some("orig.1@sender.example"));
}

#[test]
fn delivery_status_has_the_fields_of_every_recipient() {
    let wire = original();
    let mut third = rcpt("dave@other.example", "5.7.1");
    third.diagnostic = None;
    third.remote_mta = None;
    third.reason = "connect to other.example[192.0.2.9]:25: Connection refused".to_string();
    let rcpts = [
        rcpt("bob@rcpt.example", "5.1.1"),
        rcpt("carol@rcpt.example", "5.2.2"),
        third,
    ];
    let bounce = build_ok(&request(&wire, &rcpts));
    let raw = unstuffed(&bounce.wire);
    let msg = parse(&raw);
    let parts = parts(&msg);
    let groups = status_groups(body_raw(&raw, parts[1]));
    assert_eq!(groups.len(), 4, "{groups:?}");

    let m = &groups[0];
    assert_eq!(get(m, "Reporting-MTA"), Some("dns; mx.example"));
    assert_eq!(get(m, "X-Ringmail-Queue-ID"), Some(QID));
    assert_eq!(
        get(m, "X-Ringmail-Sender"),
        Some("rfc822; alice@sender.example")
    );
    assert_eq!(
        get(m, "Arrival-Date"),
        Some(rfc5322_date(&request(&wire, &rcpts).arrival).as_str())
    );

    for (group, r) in groups[1..].iter().zip(&rcpts) {
        let typed = format!("rfc822; {}", r.address);
        assert_eq!(get(group, "Final-Recipient"), Some(typed.as_str()));
        assert_eq!(get(group, "Original-Recipient"), Some(typed.as_str()));
        assert_eq!(get(group, "Action"), Some("failed"));
        assert_eq!(get(group, "Status"), Some(r.status.as_str()));
        match &r.diagnostic {
            Some(d) => {
                assert_eq!(get(group, "Remote-MTA"), Some("dns; mx1.rcpt.example"));
                assert_eq!(
                    get(group, "Diagnostic-Code"),
                    Some(format!("smtp; {d}").as_str())
                );
            }
            None => {
                assert_eq!(get(group, "Remote-MTA"), None);
                assert_eq!(
                    get(group, "Diagnostic-Code"),
                    Some(format!("X-Ringmail; {}", r.reason).as_str())
                );
            }
        }
    }

    let text = parts[0].text_contents().expect("text");
    for r in &rcpts {
        assert!(text.contains(&format!("<{}>: ", r.address)), "{text}");
    }
}

#[test]
fn full_original_under_the_limit_headers_only_over_it() {
    let wire = original();
    let size = unstuffed(&wire).len();
    let rcpts = [rcpt("bob@rcpt.example", "5.1.1")];

    let mut req = request(&wire, &rcpts);
    req.bounce_size_limit = size;
    let bounce = build_ok(&req);
    let raw = unstuffed(&bounce.wire);
    let msg = parse(&raw);
    let part = parts(&msg)[2];
    assert_eq!(mime_type(part), "message/rfc822");
    assert_eq!(part.content_description(), Some("Undelivered Message"));
    assert_same(body_raw(&raw, part), &unstuffed(&wire));

    req.bounce_size_limit = size - 1;
    let bounce = build_ok(&req);
    let raw = unstuffed(&bounce.wire);
    let msg = parse(&raw);
    let part = parts(&msg)[2];
    assert_eq!(mime_type(part), "text/rfc822-headers");
    assert_eq!(
        part.content_description(),
        Some("Undelivered Message Headers")
    );
    let headers = std::str::from_utf8(body_raw(&raw, part)).expect("ASCII");
    assert!(
        headers.contains("Subject: Quarterly report\r\n"),
        "{headers}"
    );
    assert!(!headers.contains("Hello"), "{headers}");
    let attached = parse(headers.as_bytes());
    assert_eq!(attached.subject(), Some("Quarterly report"));
    let text = parts(&msg)[0].text_contents().expect("text");
    assert!(text.contains(&format!("{size} bytes")), "{text}");

    req.bounce_size_limit = DEFAULT_BOUNCE_SIZE_LIMIT;
    req.return_full_message = false;
    let raw = unstuffed(&build_ok(&req).wire);
    let msg = parse(&raw);
    assert_eq!(mime_type(parts(&msg)[2]), "text/rfc822-headers");
}

#[test]
fn null_sender_gets_no_notice() {
    let wire = original();
    let rcpts = [rcpt("bob@rcpt.example", "5.1.1")];
    for sender in ["", "<>"] {
        let mut req = request(&wire, &rcpts);
        req.original_sender = sender;
        assert_eq!(build(&req), Ok(None));
        req.recipients = &[];
        assert_eq!(build(&req), Ok(None), "checked before anything else");
    }
}

#[test]
fn boundary_is_absent_from_the_content() {
    // An original full of MIME delimiters, some built like ours.
    let mut text = String::from("Subject: tricky\nContent-Type: multipart/mixed; boundary=x\n\n");
    for i in 0..200 {
        text.push_str(&format!(
            "--{QID}.{}/{i:016X}\n--x\n",
            request(&[], &[]).now.timestamp()
        ));
    }
    let wire = queued(&text);
    let rcpts = [rcpt("bob@rcpt.example", "5.1.1")];
    for _ in 0..20 {
        let bounce = build_ok(&request(&wire, &rcpts));
        let raw = unstuffed(&bounce.wire);
        let msg = parse(&raw);
        let boundary = msg
            .content_type()
            .and_then(|ct| ct.attribute("boundary"))
            .expect("boundary")
            .to_string();
        assert!(boundary.len() <= 70, "{boundary}");
        assert!(!text.contains(&boundary), "{boundary}");
        // mail-parser lets the attached multipart (it has no closing
        // delimiter) run to the end, so cut the parts by hand.
        let cut = by_boundary(&raw, &boundary);
        assert_eq!(cut.len(), 3);
        assert_same(cut[2], &unstuffed(&wire));
    }
}

#[test]
fn lines_are_crlf_and_at_most_998_octets() {
    let long_line = "x".repeat(998);
    let wire = queued(&format!("Subject: long\n\n{long_line}\nshort\n"));
    let mut r = rcpt("bob@rcpt.example", "5.1.1");
    r.diagnostic = Some(format!(
        "550 5.1.1 {}\r\n{}",
        "y".repeat(3000),
        "z ".repeat(800)
    ));
    r.reason = format!("said: {} {}", "w".repeat(2500), "v ".repeat(500));
    r.remote_mta = Some("m".repeat(300));
    let rcpts = [r];
    let bounce = build_ok(&request(&wire, &rcpts));
    assert_lines_ok(&bounce.wire);
    let raw = unstuffed(&bounce.wire);
    let msg = parse(&raw);
    let parts = parts(&msg);
    // A 998-octet line is still returned whole.
    assert_eq!(mime_type(parts[2]), "message/rfc822");
    let groups = status_groups(body_raw(&raw, parts[1]));
    assert_eq!(get(&groups[1], "Remote-MTA"), None, "over 255 octets");
    let diag = get(&groups[1], "Diagnostic-Code").expect("diagnostic");
    assert!(diag.starts_with("smtp; 550 5.1.1 yyy"), "{diag}");
    assert_eq!(diag.matches('y').count(), 3000);

    // One octet more and only the header is returned.
    let wire = queued(&format!("Subject: longer\n\n{long_line}x\n"));
    let bounce = build_ok(&request(&wire, &rcpts));
    assert_lines_ok(&bounce.wire);
    let raw = unstuffed(&bounce.wire);
    let msg = parse(&raw);
    assert_eq!(mime_type(parts_of(&msg, 2)), "text/rfc822-headers");
}

fn parts_of<'m>(msg: &'m Message<'_>, i: usize) -> &'m MessagePart<'m> {
    parts(msg)[i]
}

#[test]
fn dot_stuffing_round_trips_byte_for_byte() {
    let wire = queued("Subject: dots\n.leading: header\n\n.\n..\n...\n.x\n. \nx.\n\n.");
    // The queue form really is stuffed.
    assert!(wire.windows(7).any(|w| w == b"\r\n...\r\n"));
    let rcpts = [rcpt("bob@rcpt.example", "5.1.1")];
    let bounce = build_ok(&request(&wire, &rcpts));
    assert_lines_ok(&bounce.wire);
    let raw = unstuffed(&bounce.wire);
    let msg = parse(&raw);
    let part = parts_of(&msg, 2);
    assert_eq!(mime_type(part), "message/rfc822");
    let expected: &[u8] =
        b"Subject: dots\r\n.leading: header\r\n\r\n.\r\n..\r\n...\r\n.x\r\n. \r\nx.\r\n\r\n.\r\n";
    assert_eq!(unstuffed(&wire), expected);
    assert_same(body_raw(&raw, part), expected);

    // Headers only: the header field that starts with a dot is returned un-stuffed.
    let mut req = request(&wire, &rcpts);
    req.return_full_message = false;
    let raw = unstuffed(&build_ok(&req).wire);
    let msg = parse(&raw);
    let part = parts_of(&msg, 2);
    assert_same(
        body_raw(&raw, part),
        b"Subject: dots\r\n.leading: header\r\n",
    );
}

#[test]
fn delay_warning_says_delayed_and_returns_headers() {
    let wire = original();
    let mut r = rcpt("bob@rcpt.example", "4.4.1");
    r.diagnostic = None;
    r.remote_mta = None;
    r.reason = "connect to mx1.rcpt.example[192.0.2.1]:25: Connection timed out".into();
    let mut r2 = rcpt("carol@rcpt.example", "4.2.2");
    r2.status = "5.2.2".into(); // wrong class for a delay
    let rcpts = [r, r2];
    let mut req = request(&wire, &rcpts);
    req.kind = NoticeKind::Delay;
    let bounce = build_ok(&req);
    assert_lines_ok(&bounce.wire);
    let raw = unstuffed(&bounce.wire);
    let msg = parse(&raw);
    assert_eq!(msg.subject(), Some("Delayed Mail (still being retried)"));
    let parts = parts(&msg);
    assert_eq!(parts.len(), 3);
    let text = parts[0].text_contents().expect("text");
    assert!(text.contains("only a warning"), "{text}");
    let groups = status_groups(body_raw(&raw, parts[1]));
    assert_eq!(groups.len(), 3);
    assert_eq!(get(&groups[1], "Action"), Some("delayed"));
    assert_eq!(get(&groups[1], "Status"), Some("4.4.1"));
    assert_eq!(get(&groups[2], "Action"), Some("delayed"));
    assert_eq!(get(&groups[2], "Status"), Some("4.0.0"));
    assert_eq!(mime_type(parts[2]), "text/rfc822-headers");
    assert_eq!(
        parts[2].content_description(),
        Some("Delayed Message Headers")
    );
}

#[test]
fn expired_failure_keeps_its_temporary_status() {
    let wire = original();
    let rcpts = [rcpt("bob@rcpt.example", "4.4.7")];
    let raw = unstuffed(&build_ok(&request(&wire, &rcpts)).wire);
    let msg = parse(&raw);
    let groups = status_groups(body_raw(&raw, parts_of(&msg, 1)));
    assert_eq!(get(&groups[1], "Action"), Some("failed"));
    assert_eq!(get(&groups[1], "Status"), Some("4.4.7"));
}

#[test]
fn utf8_addresses_are_typed_utf8_and_flagged() {
    let wire = original();
    let rcpts = [rcpt("jörg@bücher.example", "5.1.1")];
    let mut req = request(&wire, &rcpts);
    req.original_sender = "ålice@sender.example";
    let bounce = build_ok(&req);
    assert!(bounce.flags.has(MessageFlags::SMTPUTF8));
    assert!(bounce.flags.has(MessageFlags::HEADERS_8BIT));
    assert!(bounce.flags.has(MessageFlags::BODY_8BIT));
    assert_eq!(bounce.recipient, "ålice@sender.example");
    assert_lines_ok(&bounce.wire);
    let raw = unstuffed(&bounce.wire);
    let msg = parse(&raw);
    let parts = parts(&msg);
    let groups = status_groups(body_raw(&raw, parts[1]));
    assert_eq!(
        get(&groups[0], "X-Ringmail-Sender"),
        Some("utf-8; \\x{E5}lice@sender.example")
    );
    assert_eq!(
        get(&groups[1], "Final-Recipient"),
        Some("utf-8; j\\x{F6}rg@b\\x{FC}cher.example")
    );
    let ct = parts[0].content_type().expect("content type");
    assert_eq!(ct.attribute("charset"), Some("utf-8"));
    assert!(parts[0]
        .text_contents()
        .expect("text")
        .contains("<jörg@bücher.example>"));

    // ASCII addresses: only the 8-bit original sets a flag.
    let wire = queued("Subject: caf\u{e9}\n\nna\u{ef}ve\n");
    let rcpts = [rcpt("bob@rcpt.example", "5.1.1")];
    let bounce = build_ok(&request(&wire, &rcpts));
    assert_eq!(bounce.flags, MessageFlags(MessageFlags::BODY_8BIT));
    let raw = unstuffed(&bounce.wire);
    let msg = parse(&raw);
    let part = parts_of(&msg, 2);
    assert_eq!(mime_type(part), "message/global");
    assert_eq!(part.content_transfer_encoding(), Some("8bit"));
    assert_same(body_raw(&raw, part), &unstuffed(&wire));

    let wire = queued("Subject: plain\n\nna\u{ef}ve\n");
    let raw = unstuffed(&build_ok(&request(&wire, &rcpts)).wire);
    let msg = parse(&raw);
    assert_eq!(mime_type(parts_of(&msg, 2)), "message/rfc822");
}

/// A request and a test of the error it must give.
type RefusalCase<'a> = (BounceRequest<'a>, fn(&BounceError) -> bool);

#[test]
fn bad_requests_are_refused() {
    let wire = original();
    let rcpts = [rcpt("bob@rcpt.example", "5.1.1")];
    let cases: Vec<RefusalCase<'_>> = vec![
        (
            BounceRequest {
                myhostname: "",
                ..request(&wire, &rcpts)
            },
            |e| matches!(e, BounceError::BadHostname(_)),
        ),
        (
            BounceRequest {
                myhostname: "mx.example\r\nBcc: x",
                ..request(&wire, &rcpts)
            },
            |e| matches!(e, BounceError::BadHostname(_)),
        ),
        (
            BounceRequest {
                queue_id: "",
                ..request(&wire, &rcpts)
            },
            |e| matches!(e, BounceError::BadQueueId(_)),
        ),
        (
            BounceRequest {
                queue_id: "3F2A/1C",
                ..request(&wire, &rcpts)
            },
            |e| matches!(e, BounceError::BadQueueId(_)),
        ),
        (
            BounceRequest {
                recipients: &[],
                ..request(&wire, &rcpts)
            },
            |e| matches!(e, BounceError::NoRecipients),
        ),
        (
            BounceRequest {
                original_sender: "a@x\r\nBcc: y@z",
                ..request(&wire, &rcpts)
            },
            |e| matches!(e, BounceError::BadAddress { .. }),
        ),
    ];
    for (req, expected) in cases {
        let e = build(&req).expect_err("refused");
        assert!(expected(&e), "{e:?}");
        assert!(!e.is_transient());
        assert!(!e.to_string().is_empty());
    }
    let bad_rcpt = [rcpt("", "5.1.1")];
    assert!(matches!(
        build(&request(&wire, &bad_rcpt)),
        Err(BounceError::BadAddress { .. })
    ));
    assert!(BounceError::NoBoundary.is_transient());
}

#[test]
fn message_ids_and_boundaries_differ_between_notices() {
    let wire = original();
    let rcpts = [rcpt("bob@rcpt.example", "5.1.1")];
    let a = build_ok(&request(&wire, &rcpts));
    let b = build_ok(&request(&wire, &rcpts));
    assert_ne!(a.message_id, b.message_id);
    assert_ne!(a.wire, b.wire);
}

#[test]
fn arbitrary_originals_never_break_the_notice() {
    let rcpts = [rcpt("bob@rcpt.example", "5.1.1")];
    let mut rng = fastrand::Rng::with_seed(7);
    let alphabet = b"\r\n.:- aZ\0\x80\xff\t";
    for round in 0..300 {
        let len = rng.usize(0..400);
        let data: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.usize(0..alphabet.len())])
            .collect();
        let mut req = request(&data, &rcpts);
        req.return_full_message = round % 3 != 0;
        req.bounce_size_limit = rng.usize(0..500);
        let bounce = build_ok(&req);
        assert_lines_ok(&bounce.wire);
        let raw = unstuffed(&bounce.wire);
        let msg = parse(&raw);
        assert!(
            matches!(parts(&msg).len(), 2 | 3),
            "{}",
            String::from_utf8_lossy(&raw)
        );
    }
}

#[test]
fn success_notice_says_relayed_and_returns_headers() {
    let wire = original();
    let mut r = rcpt("bob@rcpt.example", "2.0.0");
    r.diagnostic = Some("250 2.0.0 Ok: queued as 4711".into());
    r.reason = "delivery via mx1.rcpt.example[192.0.2.1]:25: 250 2.0.0 Ok: queued as 4711".into();
    let mut r2 = rcpt("carol@rcpt.example", "5.1.1"); // wrong class for a success
    r2.original_recipient = Some("rfc822;Carol@Rcpt.Example".into());
    let rcpts = [r, r2];
    let mut req = request(&wire, &rcpts);
    req.kind = NoticeKind::Success;
    req.envid = Some("campaign 7 / 42");
    // RET=FULL is about failures: a success returns the header only.
    req.return_full_message = true;
    let bounce = build_ok(&req);
    assert_lines_ok(&bounce.wire);
    let raw = unstuffed(&bounce.wire);
    let msg = parse(&raw);
    assert_eq!(msg.subject(), Some("Successful Mail Delivery Report"));
    let parts = parts(&msg);
    assert_eq!(parts.len(), 3);
    let text = parts[0].text_contents().expect("text");
    assert!(text.contains("successfully delivered"), "{text}");
    assert!(text.contains("delivery via mx1.rcpt.example"), "{text}");
    let groups = status_groups(body_raw(&raw, parts[1]));
    assert_eq!(groups[0][0].0, "Original-Envelope-Id", "first field");
    assert_eq!(
        get(&groups[0], "Original-Envelope-Id"),
        Some("campaign 7 / 42")
    );
    assert_eq!(get(&groups[1], "Action"), Some("relayed"));
    assert_eq!(get(&groups[1], "Status"), Some("2.0.0"));
    assert_eq!(
        get(&groups[1], "Diagnostic-Code"),
        Some("smtp; 250 2.0.0 Ok: queued as 4711")
    );
    assert_eq!(
        get(&groups[1], "Original-Recipient"),
        Some("rfc822; bob@rcpt.example")
    );
    assert_eq!(get(&groups[2], "Status"), Some("2.0.0"));
    assert_eq!(
        get(&groups[2], "Original-Recipient"),
        Some("rfc822; Carol@Rcpt.Example"),
        "ORCPT, not the final recipient"
    );
    assert_eq!(mime_type(parts[2]), "text/rfc822-headers");
}

#[test]
fn envid_and_ret_hdrs_in_a_failure() {
    let wire = original();
    let rcpts = [rcpt("bob@rcpt.example", "5.1.1")];
    let mut req = request(&wire, &rcpts);
    req.envid = Some("id-1");
    req.return_full_message = false;
    let raw = unstuffed(&build_ok(&req).wire);
    let msg = parse(&raw);
    let groups = status_groups(body_raw(&raw, parts_of(&msg, 1)));
    assert_eq!(get(&groups[0], "Original-Envelope-Id"), Some("id-1"));
    assert_eq!(mime_type(parts_of(&msg, 2)), "text/rfc822-headers");
    // Without an ENVID there is no such field.
    let raw = unstuffed(&build_ok(&request(&wire, &rcpts)).wire);
    assert!(!raw.windows(20).any(|w| w == b"Original-Envelope-Id"));
    // An ENVID that would break the field is refused.
    for bad in ["", "a\r\nX-Evil: 1", "\u{e9}"] {
        let mut req = request(&wire, &rcpts);
        req.envid = Some(bad);
        assert!(
            matches!(build(&req), Err(BounceError::BadEnvid(_))),
            "{bad:?}"
        );
    }
}
