//! The state machine driven with byte strings, split every which way.

use super::*;
use crate::sink::config::{Faults, SinkConfig};

mod tls_auth;

/// (mail_from, rcpts, content, message_id) of an accepted message.
type Got = (String, Vec<String>, Vec<u8>, Option<String>);

/// Drives a session the way the socket loop does.
struct Harness {
    session: Session,
    pending: Vec<u8>,
    out: Vec<u8>,
    next: u64,
    messages: Vec<Got>,
    /// Per message: (over TLS, authenticated user).
    origins: Vec<(bool, Option<String>)>,
    /// STARTTLS handshakes "run".
    tls_starts: u32,
    closed: bool,
    keep_all: bool,
}

impl Harness {
    fn new(config: &SinkConfig) -> Self {
        let params = Arc::new(SessionParams::new(config));
        let mut session = Session::new(params, Rng::with_seed(config.seed.unwrap_or(1)));
        let mut out = Vec::new();
        session.greeting(&mut out);
        Harness {
            session,
            pending: Vec::new(),
            out,
            next: 1,
            messages: Vec::new(),
            origins: Vec::new(),
            tls_starts: 0,
            closed: false,
            keep_all: config.dump_dir.is_some(),
        }
    }

    fn dump() -> SinkConfig {
        SinkConfig {
            dump_dir: Some("unused".into()),
            ..SinkConfig::default()
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        assert!(!self.closed || bytes.is_empty(), "sent after close");
        self.pending.extend_from_slice(bytes);
        loop {
            let (n, progress) = self.session.feed(&self.pending, &mut self.out);
            self.pending.drain(..n);
            match progress {
                Progress::NeedInput => break,
                Progress::Close => {
                    self.closed = true;
                    break;
                }
                Progress::StartTls => {
                    // As the socket loop does: drop the unread plaintext,
                    // "handshake", go on.
                    self.pending.clear();
                    self.session.tls_started();
                    self.tls_starts += 1;
                    break;
                }
                Progress::Message => {
                    let m = self.session.pending_message().unwrap();
                    if self.keep_all {
                        assert_eq!(m.size, m.content.len() as u64);
                    }
                    self.messages.push((
                        m.mail_from.to_string(),
                        m.rcpt_to.to_vec(),
                        m.content.to_vec(),
                        m.message_id().map(Cow::into_owned),
                    ));
                    self.origins.push((m.tls, m.auth.map(str::to_string)));
                    self.session.finish_message(Some(self.next), &mut self.out);
                    self.next += 1;
                }
            }
        }
        assert!(self.pending.len() <= MAX_LINE);
    }

    /// The replies so far as text, emptied.
    fn replies(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.out)).unwrap()
    }

    /// The reply codes so far (one per reply, multi-line replies once).
    fn codes(&mut self) -> Vec<String> {
        self.replies()
            .split("\r\n")
            .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
            .map(|l| l[..3].to_string())
            .collect()
    }
}

const TRANSACTION: &[u8] = b"EHLO client.example\r\n\
MAIL FROM:<a@example.com> SIZE=100 BODY=8BITMIME\r\n\
RCPT TO:<b@example.net>\r\n\
RCPT TO:<c@example.net>\r\n\
DATA\r\n\
Message-ID: <1@example.com>\r\n\
Subject: hi\r\n\
\r\n\
..dot\r\n\
body\r\n\
.\r\n\
QUIT\r\n";

#[test]
fn greeting_and_full_transaction() {
    let mut h = Harness::new(&Harness::dump());
    assert_eq!(h.replies(), "220 localhost ESMTP ringmail-sink\r\n");
    h.send(TRANSACTION);
    assert_eq!(
        h.replies(),
        "250-localhost\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
         250 ENHANCEDSTATUSCODES\r\n\
         250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n\
         250 2.0.0 Ok: queued as 1\r\n\
         221 2.0.0 Bye\r\n"
    );
    assert!(h.closed);
    let (from, rcpts, content, id) = &h.messages[0];
    assert_eq!(from, "a@example.com");
    assert_eq!(rcpts, &["b@example.net", "c@example.net"]);
    assert_eq!(
        content.as_slice(),
        b"Message-ID: <1@example.com>\r\nSubject: hi\r\n\r\n.dot\r\nbody\r\n"
    );
    assert_eq!(id.as_deref(), Some("<1@example.com>"));
    let t = h.session.take_tally();
    assert_eq!(t.replies, 8);
    assert_eq!(h.session.take_tally(), Tally::default());
}

#[test]
fn same_replies_at_every_split() {
    let mut whole = Harness::new(&Harness::dump());
    whole.send(TRANSACTION);
    let expected = whole.replies();
    for i in 0..=TRANSACTION.len() {
        let mut h = Harness::new(&Harness::dump());
        h.send(&TRANSACTION[..i]);
        h.send(&TRANSACTION[i..]);
        assert_eq!(h.replies(), expected, "split at {i}");
        assert_eq!(h.messages, whole.messages);
    }
    let mut h = Harness::new(&Harness::dump());
    for b in TRANSACTION.chunks(1) {
        h.send(b);
    }
    assert_eq!(h.replies(), expected);
}

#[test]
fn without_dump_only_the_head_is_kept() {
    let mut h = Harness::new(&SinkConfig::default());
    h.send(TRANSACTION);
    let (_, _, content, id) = &h.messages[0];
    assert_eq!(
        content.as_slice(),
        b"Message-ID: <1@example.com>\r\nSubject: hi\r\n\r\n"
    );
    assert_eq!(id.as_deref(), Some("<1@example.com>"));
}

#[test]
fn many_transactions_on_one_connection() {
    let mut h = Harness::new(&SinkConfig::default());
    h.send(b"HELO c\r\n");
    for i in 0..3 {
        let t = format!(
            "MAIL FROM:<>\r\nRCPT TO:<x@y>\r\nDATA\r\nMessage-ID: <{i}@z>\r\n\r\nx\r\n.\r\n"
        );
        h.send(t.as_bytes());
    }
    h.send(b"RSET\r\nNOOP\r\n");
    assert_eq!(
        h.codes(),
        [
            "220", "250", "250", "250", "354", "250", "250", "250", "354", "250", "250", "250",
            "354", "250", "250", "250"
        ]
    );
    assert_eq!(h.messages.len(), 3);
    assert_eq!(h.messages[2].3.as_deref(), Some("<2@z>"));
    assert_eq!(h.messages[0].0, "");
    assert!(!h.closed);
}

#[test]
fn bare_lf_and_lowercase_commands() {
    let mut h = Harness::new(&SinkConfig::default());
    h.send(b"ehlo c\nmail from:<a@b>\nrcpt to:<c@d>\ndata\nx\n.\nquit\n");
    assert_eq!(h.codes(), ["220", "250", "250", "250", "354", "250", "221"]);
    assert_eq!(h.messages[0].2, b"x\n");
}

#[test]
fn out_of_sequence_and_unknown() {
    let mut h = Harness::new(&SinkConfig::default());
    h.replies();
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSTARTTLS\r\n\r\n");
    // (STARTTLS is unknown without a TLS configuration.)
    assert_eq!(h.codes(), ["503", "503", "503", "502", "500"]);
    h.send(b"HELO c\r\nRCPT TO:<c@d>\r\nDATA\r\nMAIL FROM:<a@b>\r\nDATA\r\nMAIL FROM:<a@b>\r\n");
    assert_eq!(h.codes(), ["250", "503", "503", "250", "503", "503"]);
    h.send(b"VRFY x\r\nRSET\r\nRCPT TO:<c@d>\r\n");
    assert_eq!(h.codes(), ["252", "250", "503"]);
}

#[test]
fn no_valid_recipients() {
    let config = SinkConfig {
        faults: Faults {
            rcpt_permfail: 1.0,
            ..Faults::default()
        },
        ..SinkConfig::default()
    };
    let mut h = Harness::new(&config);
    h.replies();
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    let r = h.replies();
    assert!(r.ends_with("550 5.1.1 Error: recipient rejected (injected fault)\r\n554 5.5.1 Error: no valid recipients\r\n"), "{r}");
    assert_eq!(h.session.take_tally().rejected_rcpt, 1);
}

#[test]
fn helo_only_server() {
    let config = SinkConfig {
        esmtp: false,
        ..SinkConfig::default()
    };
    let mut h = Harness::new(&config);
    h.replies();
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nHELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n");
    assert_eq!(
        h.replies(),
        "502 Error: command not implemented\r\n503 Error: send HELO/EHLO first\r\n\
         250 localhost\r\n250 Ok\r\n250 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n\
         250 Ok: queued as 1\r\n221 Bye\r\n"
    );
}

#[test]
fn parameters() {
    let config = SinkConfig {
        max_message_size: Some(10),
        ..SinkConfig::default()
    };
    let mut h = Harness::new(&config);
    h.replies();
    h.send(b"HELO c\r\nMAIL FROM:<a@b> SIZE=5\r\n");
    assert_eq!(h.codes(), ["250", "555"], "parameters need EHLO");
    h.send(b"EHLO c\r\n");
    assert!(h.replies().contains("250-SIZE 10\r\n"));
    for (params, code) in [
        ("SIZE=11", "552"),
        ("SIZE=x", "501"),
        ("SIZE", "501"),
        ("BODY=BINARYMIME", "501"),
        ("RET=FULL", "555"),
        ("SMTPUTF8=yes", "555"),
    ] {
        h.send(format!("MAIL FROM:<a@b> {params}\r\n").as_bytes());
        assert_eq!(h.codes(), [code], "{params}");
    }
    h.send(b"MAIL FROM:<a@b> size=10 body=7bit smtputf8\r\nRCPT TO:<c@d> NOTIFY=NEVER\r\n");
    assert_eq!(h.codes(), ["250", "555"]);
    let t = h.session.take_tally();
    assert_eq!((t.rejected_mail, t.rejected_rcpt), (7, 1));
}

#[test]
fn size_limit_on_the_message() {
    let config = SinkConfig {
        max_message_size: Some(10),
        ..SinkConfig::default()
    };
    let mut h = Harness::new(&config);
    h.replies();
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n0123456789\r\n.\r\n");
    assert_eq!(h.codes(), ["250", "250", "250", "354", "552"]);
    assert!(h.messages.is_empty());
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n01234567\r\n.\r\n");
    assert_eq!(h.codes(), ["250", "250", "354", "250"]);
    assert_eq!(h.session.take_tally().rejected_data, 1);
}

#[test]
fn recipient_limit() {
    let mut h = Harness::new(&SinkConfig::default());
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\n");
    h.replies();
    let rcpts: String = (0..=MAX_RECIPIENTS)
        .map(|i| format!("RCPT TO:<r{i}@d>\r\n"))
        .collect();
    h.send(rcpts.as_bytes());
    let codes = h.codes();
    assert_eq!(codes.len(), MAX_RECIPIENTS + 1);
    assert!(codes[..MAX_RECIPIENTS].iter().all(|c| c == "250"));
    assert_eq!(codes[MAX_RECIPIENTS], "452");
    h.send(b"DATA\r\nx\r\n.\r\n");
    assert_eq!(h.messages[0].1.len(), MAX_RECIPIENTS);
}

#[test]
fn each_fault() {
    let cases: [(Faults, &str); 5] = [
        (
            Faults {
                rcpt_tempfail: 1.0,
                ..Faults::default()
            },
            "451 4.3.0",
        ),
        (
            Faults {
                rcpt_permfail: 1.0,
                ..Faults::default()
            },
            "550 5.1.1",
        ),
        (
            Faults {
                data_tempfail: 1.0,
                ..Faults::default()
            },
            "451 4.3.0",
        ),
        (
            Faults {
                data_permfail: 1.0,
                ..Faults::default()
            },
            "554 5.6.0",
        ),
        (
            Faults {
                disconnect_421: 1.0,
                ..Faults::default()
            },
            "421 4.4.2",
        ),
    ];
    for (faults, expect) in cases {
        let config = SinkConfig {
            faults,
            ..SinkConfig::default()
        };
        let mut h = Harness::new(&config);
        h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
        let r = h.replies();
        assert!(r.contains(expect), "{faults:?}: {r}");
        assert!(h.messages.is_empty(), "{faults:?}");
        let t = h.session.take_tally();
        if faults.disconnect_421 > 0.0 {
            assert!(h.closed);
            assert!(
                r.ends_with("421 4.4.2 localhost Error: closing connection (injected fault)\r\n")
            );
            assert_eq!(t.injected_disconnects, 1);
        } else if faults.rcpt_tempfail + faults.rcpt_permfail > 0.0 {
            assert_eq!(t.rejected_rcpt, 1);
        } else {
            assert_eq!(t.rejected_data, 1);
            assert!(r.ends_with(&format!(
                "{expect} Error: {}\r\n",
                if expect.starts_with('4') {
                    "temporary failure (injected fault)"
                } else {
                    "message rejected (injected fault)"
                }
            )));
        }
    }
}

#[test]
fn seeded_faults_are_reproducible() {
    let config = SinkConfig {
        faults: Faults {
            rcpt_tempfail: 0.3,
            rcpt_permfail: 0.3,
            ..Faults::default()
        },
        seed: Some(99),
        ..SinkConfig::default()
    };
    let run = || {
        let mut h = Harness::new(&config);
        h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\n");
        for _ in 0..200 {
            h.send(b"RCPT TO:<c@d>\r\n");
        }
        h.codes()
    };
    let a = run();
    assert_eq!(a, run());
    for code in ["250", "451", "550"] {
        assert!(
            a.iter().filter(|c| *c == code).count() > 20,
            "{code}: {a:?}"
        );
    }
}

#[test]
fn overlong_lines_are_discarded() {
    let mut h = Harness::new(&SinkConfig::default());
    h.replies();
    let long = vec![b'x'; MAX_LINE * 3];
    h.send(b"NOOP ");
    h.send(&long);
    assert!(h.pending.is_empty());
    h.send(b"\r\nNOOP\r\n");
    let mut line = b"NOOP ".to_vec();
    line.extend_from_slice(&long[..MAX_LINE]);
    line.extend_from_slice(b"\r\n");
    h.send(&line);
    assert_eq!(h.codes(), ["500", "250", "500"]);
}

#[test]
fn store_failure_is_a_temporary_error() {
    let params = Arc::new(SessionParams::new(&SinkConfig::default()));
    let mut s = Session::new(params, Rng::with_seed(1));
    let mut out = Vec::new();
    let input = b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n";
    let (n, p) = s.feed(input, &mut out);
    assert_eq!(p, Progress::Message);
    assert!(s.pending_message().is_some());
    // Feeding again without finishing consumes nothing.
    assert_eq!(s.feed(&input[n..], &mut out), (0, Progress::Message));
    s.finish_message(None, &mut out);
    assert!(s.pending_message().is_none());
    let (m, p) = s.feed(&input[n..], &mut out);
    assert_eq!((n + m, p), (input.len(), Progress::NeedInput));
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.ends_with("451 4.3.0 Error: cannot store message\r\n250 2.0.0 Ok\r\n"),
        "{text}"
    );
    assert_eq!(s.take_tally().rejected_data, 1);
}

#[test]
fn connection_level_replies() {
    let config = SinkConfig {
        hostname: "mx.test".into(),
        ..SinkConfig::default()
    };
    let p = SessionParams::new(&config);
    let mut out = Vec::new();
    p.too_many_connections(&mut out);
    p.shutting_down(&mut out);
    assert_eq!(
        out,
        b"421 4.7.0 mx.test too many connections\r\n421 4.3.2 mx.test Service shutting down\r\n"
    );
}

/// `--strict-pipelining`: commands that arrive with the final dot (before
/// its reply was written) get 503 each and are not carried out, as Haraka
/// answers them; the same commands sent after the reply are served.
#[test]
fn strict_pipelining_refuses_commands_behind_the_dot() {
    let strict = SinkConfig {
        strict_pipelining: true,
        ..SinkConfig::default()
    };
    let mut h = Harness::new(&strict);
    h.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
    h.replies();
    h.send(b"Message-ID: <1@z>\r\n\r\nx\r\n.\r\nMAIL FROM:<a@x>\r\nRCPT TO:<c@y>\r\nDATA\r\n");
    assert_eq!(
        h.replies(),
        "250 2.0.0 Ok: queued as 1\r\n\
         503 5.5.1 Bad sequence of commands - pipelined after end of DATA\r\n\
         503 5.5.1 Bad sequence of commands - pipelined after end of DATA\r\n\
         503 5.5.1 Bad sequence of commands - pipelined after end of DATA\r\n"
    );
    assert_eq!(h.session.take_tally().pipelined_after_data, 3);
    // After the reply: an ordinary transaction (pipelined within itself).
    h.send(b"MAIL FROM:<a@x>\r\nRCPT TO:<c@y>\r\nDATA\r\n");
    assert_eq!(h.codes(), ["250", "250", "354"]);
    h.send(b"Message-ID: <2@z>\r\n\r\ny\r\n.\r\n");
    assert_eq!(h.codes(), ["250"]);
    assert_eq!(h.messages.len(), 2);

    // Without the option the chained transaction is served.
    let mut h = Harness::new(&SinkConfig::default());
    h.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
    h.replies();
    h.send(b"Message-ID: <1@z>\r\n\r\nx\r\n.\r\nMAIL FROM:<a@x>\r\nRCPT TO:<c@y>\r\nDATA\r\n");
    assert_eq!(h.codes(), ["250", "250", "250", "354"]);
}

/// A provider's throttle: the configured connection-cap reply, and a MAIL
/// over the rate answered with the configured reply (a 421 closes; another
/// code refuses the MAIL and the session goes on), counted apart from other
/// refused MAILs. The bucket is shared by every session of the listener.
#[test]
fn throttle_replies_and_counts() {
    use crate::sink::config::RateLimit;
    let config = |reply: &str| SinkConfig {
        connection_cap_reply: Some("421 4.3.2 busy, try later".into()),
        rate_limit: Some(RateLimit {
            // One token now, the next in 1000 s: the second MAIL is over.
            per_second: 0.001,
            burst: 1.0,
            reply: reply.into(),
        }),
        ..SinkConfig::default()
    };
    let c = config("451 4.7.650 rate limited (S775)");
    let p = SessionParams::new(&c);
    let mut out = Vec::new();
    p.too_many_connections(&mut out);
    assert_eq!(out, b"421 4.3.2 busy, try later\r\n");

    let mut h = Harness::new(&c);
    h.replies();
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRSET\r\nMAIL FROM:<a@b>\r\n");
    let text = h.replies();
    assert!(
        text.ends_with("250 2.0.0 Ok\r\n451 4.7.650 rate limited (S775)\r\n"),
        "{text}"
    );
    assert!(!h.closed);
    let t = h.session.take_tally();
    assert_eq!((t.throttled, t.rejected_mail), (1, 0));

    let mut h = Harness::new(&config("421 4.7.28 unusual rate of unsolicited mail"));
    h.replies();
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRSET\r\nMAIL FROM:<a@b>\r\n");
    assert!(h
        .replies()
        .ends_with("421 4.7.28 unusual rate of unsolicited mail\r\n"));
    assert!(h.closed);
    assert_eq!(h.session.take_tally().throttled, 1);
}
