//! Line length, recipients, message size, errors, junk and commands per
//! session.

use super::*;

fn limited(limits: Limits) -> Harness {
    let mut h = Harness::new(SessionConfig {
        limits,
        ..SessionConfig::default()
    });
    h.replies();
    h
}

#[test]
fn overlong_lines_are_discarded() {
    let mut h = Harness::ready();
    let long = vec![b'x'; 2048 * 3];
    h.send(b"NOOP ");
    h.send(&long);
    assert!(h.pending.is_empty());
    h.send(b"\r\nNOOP\r\n");
    // 2048 bytes before the CRLF are allowed, 2049 are not.
    for n in [2043, 2044] {
        let mut line = b"NOOP ".to_vec();
        line.extend_from_slice(&long[..n]);
        line.extend_from_slice(b"\r\n");
        h.send(&line);
    }
    assert_eq!(h.codes(), [500, 250, 250, 500]);
}

#[test]
fn recipient_limit() {
    let mut h = Harness::ready();
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\n");
    h.replies();
    let rcpts: String = (0..=1000)
        .map(|i| format!("RCPT TO:<r{i}@d>\r\n"))
        .collect();
    h.send(rcpts.as_bytes());
    let codes = h.codes();
    assert_eq!(codes.len(), 1001);
    assert!(codes[..1000].iter().all(|&c| c == 250));
    assert_eq!(codes[1000], 452);
    h.send(b"DATA\r\nx\r\n.\r\n");
    assert_eq!(h.messages[0].recipients.len(), 1000);
}

#[test]
fn message_size() {
    let mut h = limited(Limits {
        max_message_size: Some(10),
        ..Limits::default()
    });
    h.send(b"EHLO c\r\n");
    assert!(h.replies().contains("250-SIZE 10\r\n"));
    h.send(b"MAIL FROM:<a@b> SIZE=11\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n0123456789\r\n.\r\n");
    assert_eq!(h.codes(), [552, 250, 250, 354, 552]);
    assert!(h.messages.is_empty());
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n01234567\r\n.\r\n");
    assert_eq!(h.codes(), [250, 250, 354, 250]);
    assert_eq!(h.session.counters().messages_refused, 1);
}

#[test]
fn hard_error_limit_closes_with_421() {
    let mut h = limited(Limits {
        hard_error_limit: Some(3),
        ..Limits::default()
    });
    h.send(b"FOO\r\nBAR\r\nNOOP\r\nBAZ\r\nNOOP\r\nNOOP\r\n");
    assert_eq!(
        h.replies(),
        "502 5.5.2 Error: command not recognized\r\n\
         502 5.5.2 Error: command not recognized\r\n\
         250 2.0.0 Ok\r\n\
         502 5.5.2 Error: command not recognized\r\n\
         421 4.7.0 localhost Error: too many errors\r\n"
    );
    assert!(h.closed);
    // The default is Postfix's 20.
    let mut h = Harness::ready();
    h.send(&b"X\r\n".repeat(20));
    assert!(!h.closed);
    h.send(b"NOOP\r\n");
    assert!(h.closed);
}

#[test]
fn junk_commands_count_as_errors_beyond_the_limit() {
    let mut h = limited(Limits {
        junk_command_limit: Some(2),
        hard_error_limit: Some(2),
        ..Limits::default()
    });
    h.send(b"NOOP\r\nRSET\r\nVRFY a\r\nHELP\r\nNOOP\r\n");
    assert_eq!(h.codes(), [250, 250, 252, 214, 421]);
}

#[test]
fn commands_per_session() {
    let mut h = limited(Limits {
        max_commands: Some(3),
        ..Limits::default()
    });
    h.send(b"EHLO c\r\nNOOP\r\nNOOP\r\nNOOP\r\n");
    let r = h.replies();
    assert!(
        r.ends_with("250 2.0.0 Ok\r\n421 4.7.0 localhost Error: too many commands\r\n"),
        "{r}"
    );
    assert!(h.closed);
    assert_eq!(h.session.command_counts().commands(), (3, 3));
}

#[test]
fn no_limits() {
    let mut h = limited(Limits {
        max_line: 4096,
        max_recipients: 5,
        max_message_size: None,
        hard_error_limit: None,
        junk_command_limit: None,
        max_commands: None,
    });
    h.send(&b"X\r\nNOOP\r\n".repeat(200));
    assert!(!h.closed);
    h.send(b"EHLO c\r\n");
    assert!(h.replies().contains("250-SIZE\r\n"));
}
