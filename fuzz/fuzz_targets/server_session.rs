//! Client bytes from the fuzzer for the shared SMTP server session
//! (`proto::server`), either raw or drawn from an SMTP command alphabet.
//! The session must never panic; it must give the same replies and
//! messages however the input is split into reads; every reply must be a
//! well-formed line; it must never keep more than a line of input; and
//! every message must keep the invariants of its configuration (a
//! recipient, the size limit, CRLF line ends unless lenient).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use ringmail::proto::server::{
    AcceptAll, AuthConfig, Capture, Extensions, LineEnds, Limits, Progress, Reply, Session,
    SessionConfig, SessionParams,
};

/// Pieces of SMTP a client might send; the alphabet mode strings them.
const ALPHABET: &[&[u8]] = &[
    b"EHLO c\r\n",
    b"HELO c\r\n",
    b"MAIL FROM:<a@b.example>",
    b"MAIL FROM:<>",
    b"RCPT TO:<c@d.example>",
    b"RCPT TO:<postmaster>",
    b"RCPT TO:<joe>",
    b" SIZE=20",
    b" BODY=8BITMIME",
    b" SMTPUTF8",
    b" RET=HDRS",
    b" ENVID=x+2By",
    b" NOTIFY=SUCCESS,DELAY",
    b" ORCPT=rfc822;a+40b",
    b" AUTH=<>",
    b"DATA\r\n",
    b"BDAT ",
    b"0",
    b"3",
    b"17",
    b" LAST",
    b"\r\n",
    b"\n",
    b"\r",
    b".",
    b"\r\n.\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY x\r\n",
    b"HELP\r\n",
    b"QUIT\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN",
    b" AGFsaWNlAHMzY3JldA==",
    b"AUTH LOGIN\r\n",
    b"YWxpY2U=\r\n",
    b"czNjcmV0\r\n",
    b"*\r\n",
    b"=\r\n",
    b"Subject: x\r\n",
    b"x",
    b" ",
    b"<",
    b">",
    b"@",
    b"\"",
    b"\xc3\xbc",
    b"\x00",
    b"GET / HTTP/1.0\r\n",
];

/// The configuration chosen by the first byte (and one bit of the
/// second: an origin for unqualified addresses).
fn config(b: u8, origin: bool) -> SessionConfig {
    SessionConfig {
        origin: origin.then(|| "example.org".to_string()),
        esmtp: b & 0x80 == 0,
        extensions: Extensions {
            pipelining: true,
            chunking: b & 0x40 == 0,
            dsn: b & 0x20 == 0,
            ..Extensions::default()
        },
        starttls: true,
        auth: Some(AuthConfig {
            plaintext: b & 0x10 == 0,
            required: b & 0x08 != 0,
        }),
        line_ends: match b & 0x03 {
            0 => LineEnds::Lenient,
            1 | 2 => LineEnds::Normalize,
            _ => LineEnds::Reject,
        },
        capture: if b & 0x04 == 0 {
            Capture::Whole
        } else {
            Capture::Head
        },
        limits: Limits {
            max_line: 64,
            max_recipients: 3,
            max_message_size: Some(100),
            hard_error_limit: Some(20),
            junk_command_limit: Some(5),
            max_commands: Some(200),
        },
        ..SessionConfig::default()
    }
}

/// What a run produced: the output and, per message, its envelope and
/// content.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    out: Vec<u8>,
    messages: Vec<(String, Vec<String>, Vec<u8>)>,
    summary: String,
}

/// Drives a session over `input` read in pieces of the sizes `sizes`
/// yields, checking the invariants on the way.
fn run(config: &SessionConfig, input: &[u8], mut sizes: impl FnMut() -> usize) -> Run {
    let params = Arc::new(SessionParams::new(config.clone()));
    let mut s = Session::new(params, None);
    let mut out = Vec::new();
    s.greeting(&mut out);
    let mut messages = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut at = 0;
    let mut closed = false;
    while at < input.len() && !closed {
        let n = sizes().clamp(1, input.len() - at);
        pending.extend_from_slice(&input[at..at + n]);
        at += n;
        loop {
            let (used, progress) = s.feed(&pending, &mut out, &mut AcceptAll);
            assert!(used <= pending.len());
            pending.drain(..used);
            match progress {
                Progress::NeedInput => break,
                Progress::Close => {
                    closed = true;
                    break;
                }
                // Go on with the same input: a deterministic stand-in for
                // the handshake (a real driver drops the pending input).
                Progress::StartTls => s.tls_started(),
                Progress::Auth => {
                    let ok = s.pending_auth().is_some_and(|r| r.user == "alice");
                    s.auth_result(ok, &mut out);
                }
                Progress::Message => {
                    let m = s.pending_message().expect("a pending message");
                    check_message(config, &m);
                    messages.push((
                        m.sender.to_string(),
                        m.recipients.to_vec(),
                        m.content.to_vec(),
                    ));
                    if m.recipients.len() % 2 == 0 {
                        s.finish_message(Ok("Q1"), &mut out);
                    } else {
                        s.finish_message(Err(Reply::fixed(451, "4.3.0", "no")), &mut out);
                    }
                }
            }
        }
        if !closed {
            assert!(pending.len() <= config.limits.max_line + 1, "kept {}", pending.len());
        }
    }
    check_replies(&out);
    Run {
        out,
        messages,
        summary: s.command_counts().to_string(),
    }
}

fn check_message(config: &SessionConfig, m: &ringmail::proto::server::PendingMessage<'_>) {
    assert!(!m.recipients.is_empty());
    assert!(m.recipients.len() <= config.limits.max_recipients);
    assert_eq!(m.recipients.len(), m.rcpt_dsn.len());
    assert!(m.size <= config.limits.max_message_size.unwrap_or(u64::MAX));
    if config.capture == Capture::Whole {
        assert_eq!(m.size, m.content.len() as u64);
    }
    for a in m.recipients.iter().map(String::as_str).chain([m.sender]) {
        assert!(!a.bytes().any(|b| b.is_ascii_control()), "{a:?}");
        assert!(a.is_ascii() || m.params.smtputf8, "{a:?}");
    }
    if config.line_ends != LineEnds::Lenient && config.capture == Capture::Whole {
        for (i, &b) in m.content.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && m.content[i - 1] == b'\r', "bare LF in {:?}", m.content);
            }
            if b == b'\r' && config.line_ends == LineEnds::Reject {
                assert_eq!(m.content.get(i + 1), Some(&b'\n'), "bare CR");
            }
        }
    }
}

/// Every reply line: three digits, a space or dash, no CR or LF inside,
/// CRLF at the end.
fn check_replies(out: &[u8]) {
    assert!(out.is_empty() || out.ends_with(b"\r\n"));
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").expect("CRLF");
        assert!(line.len() >= 4, "{line:?}");
        assert!(line[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        assert!(line[3] == b' ' || line[3] == b'-', "{line:?}");
        assert!(!line.contains(&b'\r'), "{line:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    let config = config(*mode, seed & 2 != 0);
    let input: Vec<u8> = if seed & 1 == 0 {
        rest.to_vec()
    } else {
        rest.iter()
            .flat_map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()].iter().copied())
            .collect()
    };
    let whole = run(&config, &input, || usize::MAX);
    let mut state = u32::from(*seed) | 1;
    let chunked = run(&config, &input, || {
        // xorshift: read sizes from 1 to 16.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 16) as usize + 1
    });
    assert_eq!(whole, chunked, "the result depends on the read sizes");
    let bytes = run(&config, &input, || 1);
    assert_eq!(whole, bytes, "byte by byte differs");
});
