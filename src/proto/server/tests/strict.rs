//! Strict input: bare line ends, smuggling, control characters, talking
//! before the greeting, non-SMTP clients, commands behind the dot.

use super::*;

fn mode(line_ends: LineEnds) -> impl Fn() -> Harness {
    move || {
        let mut h = Harness::new(SessionConfig {
            line_ends,
            ..SessionConfig::default()
        });
        h.replies();
        h
    }
}

#[test]
fn bare_lf_commands() {
    let input = b"EHLO c\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\nQUIT\n";
    let mut h = Harness::every_split(mode(LineEnds::Normalize), input);
    assert_eq!(h.codes(), [250, 250, 250, 221]);
    assert_eq!(h.session.counters().bare_line_ends, 3);
    let mut h = Harness::every_split(mode(LineEnds::Lenient), input);
    assert_eq!(h.codes(), [250, 250, 250, 221]);
    assert_eq!(h.session.counters().bare_line_ends, 0);
    let mut h = Harness::every_split(mode(LineEnds::Reject), input);
    assert_eq!(h.replies(), "550 5.5.2 Error: bare <LF> received\r\n");
    assert!(h.closed);
}

#[test]
fn control_characters_in_commands() {
    let mut h = mode(LineEnds::Normalize)();
    h.send(b"NOOP a\rb\r\nNOOP \x00\r\nNOOP\ta\r\nNOOP \x7f\r\nNOOP\r\n");
    assert_eq!(h.codes(), [500, 500, 500, 500, 250]);
    let mut h = mode(LineEnds::Reject)();
    h.send(b"NOOP \x01\r\nNOOP a\rb\r\nNOOP\r\n");
    assert_eq!(
        h.replies(),
        "500 5.5.2 Error: control character in command\r\n\
         550 5.5.2 Error: bare <CR> received\r\n"
    );
}

/// A message with a smuggled second transaction behind a bare-LF end
/// marker, then the real end.
const SMUGGLE: &[u8] = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n\
Subject: one\r\n\r\nbody\n.\n\
MAIL FROM:<admin@bank.example>\r\nRCPT TO:<victim@x>\r\nDATA\r\nSubject: two\r\n\r\n\
.\r\n";

#[test]
fn smuggling_with_bare_lf_dots() {
    let h = Harness::every_split(mode(LineEnds::Normalize), SMUGGLE);
    assert_eq!(h.messages.len(), 1, "one message, not two");
    assert_eq!(h.messages[0].recipients, ["c@d"]);
    assert_eq!(
        h.messages[0].content,
        &b"Subject: one\r\n\r\nbody\r\n.\r\nMAIL FROM:<admin@bank.example>\r\n\
           RCPT TO:<victim@x>\r\nDATA\r\nSubject: two\r\n\r\n"[..]
    );
    let mut h = Harness::every_split(mode(LineEnds::Reject), SMUGGLE);
    assert!(h.messages.is_empty() && h.closed);
    assert!(h
        .replies()
        .ends_with("550 5.5.2 Error: bare <LF> received\r\n"));
    // Lenient (Postfix's `no`) is smuggled into: two messages.
    let h = Harness::every_split(mode(LineEnds::Lenient), SMUGGLE);
    assert_eq!(h.messages.len(), 2);
    assert_eq!(h.messages[1].sender, "admin@bank.example");
}

#[test]
fn bare_cr_in_data() {
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\na\rb\r\n.\r\n";
    let h = Harness::every_split(mode(LineEnds::Normalize), input);
    assert_eq!(h.messages[0].content, b"a\rb\r\n", "kept, as Postfix does");
    let mut h = Harness::every_split(mode(LineEnds::Reject), input);
    assert!(h
        .replies()
        .ends_with("550 5.5.2 Error: bare <CR> received\r\n"));
    assert!(h.closed && h.messages.is_empty());
}

#[test]
fn talking_before_the_greeting() {
    let mut h = Harness::ungreeted(SessionConfig::default());
    assert_eq!(h.session.stage(), Stage::Greeting);
    h.send(b"");
    assert!(!h.closed);
    h.send(b"EHLO early\r\n");
    assert_eq!(h.replies(), "521 5.5.1 Protocol error\r\n");
    assert!(h.closed && h.pending.is_empty());
    assert!(h.session.counters().pregreet);
    h.session.greeting(&mut h.out);
    assert!(h.replies().is_empty(), "no greeting after that");
    let h = Harness::ready();
    assert!(!h.session.counters().pregreet);
}

#[test]
fn non_smtp_clients_are_dropped() {
    for line in [
        &b"GET / HTTP/1.0\r\n"[..],
        b"POST /x HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\r\n",
    ] {
        let mut h = Harness::ready();
        h.send(line);
        assert_eq!(
            h.replies(),
            "221 2.7.0 Error: I can break rules, too. Goodbye.\r\n"
        );
        assert!(h.closed);
    }
    let mut h = Harness::new(SessionConfig {
        forbid_non_smtp: false,
        ..SessionConfig::default()
    });
    h.replies();
    h.send(b"GET / HTTP/1.0\r\n");
    assert_eq!(h.codes(), [502]);
}

#[test]
fn commands_behind_the_dot() {
    let strict = || {
        let mut h = Harness::new(SessionConfig {
            refuse_pipelined_after_data: true,
            ..SessionConfig::default()
        });
        h.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
        h.replies();
        h
    };
    let mut h = strict();
    h.send(b"x\r\n.\r\nMAIL FROM:<a@x>\r\nRCPT TO:<c@y>\r\n");
    assert_eq!(
        h.replies(),
        "250 2.0.0 Ok: queued as Q1\r\n\
         503 5.5.1 Bad sequence of commands - pipelined after end of DATA\r\n\
         503 5.5.1 Bad sequence of commands - pipelined after end of DATA\r\n"
    );
    assert_eq!(h.session.counters().pipelined_after_data, 2);
    h.send(b"MAIL FROM:<a@x>\r\n");
    assert_eq!(h.codes(), [250]);
}
