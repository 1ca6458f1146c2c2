//! CHUNKING (RFC 3030): BDAT chunks, LAST, refusals that still read the
//! chunk, and limits.

use super::*;

const CHUNKED: &[u8] = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n\
BDAT 12\r\nSubject: x\r\n\
BDAT 9\r\n\r\n.body\r\n\
BDAT 0 LAST\r\n\
QUIT\r\n";

#[test]
fn chunks_at_every_split() {
    let mut h = Harness::every_split(Harness::ready, CHUNKED);
    assert_eq!(
        h.codes(),
        [250, 250, 250, 250, 250, 250, 221],
        "EHLO, MAIL, RCPT, two chunks, LAST, QUIT"
    );
    let m = &h.messages[0];
    assert_eq!(
        m.content, b"Subject: x\r\n\r\n.body\r\n",
        "no dot-unstuffing in BDAT"
    );
    assert_eq!(m.transfer, Transfer::Bdat);
    assert_eq!(
        h.session.command_counts().to_string(),
        "ehlo=1 mail=1 rcpt=1 bdat=3 quit=1 commands=7"
    );
}

#[test]
fn chunk_replies() {
    let mut h = Harness::ready();
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    h.replies();
    h.send(b"BDAT 3\r\nabcBDAT 2 LAST\r\nde");
    assert_eq!(
        h.replies(),
        "250 2.0.0 Ok: 3 octets\r\n250 2.0.0 Ok: queued as Q1\r\n"
    );
    assert_eq!(h.messages[0].content, b"abcde");
    // A message in one chunk, with a bare LF made CRLF across chunks.
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 2\r\na\rBDAT 3 LAST\r\n\nb\n");
    assert_eq!(h.codes(), [250, 250, 250, 250]);
    assert_eq!(h.messages[1].content, b"a\r\nb\r\n");
}

#[test]
fn refused_chunks_are_read_and_dropped() {
    let mut h = Harness::ready();
    // Without MAIL, and with no valid recipient: the bytes, which look
    // like commands, are chunk data all the same.
    h.send(b"EHLO c\r\nBDAT 20\r\nMAIL FROM:<evil@x>\r\nNOOP\r\n");
    assert_eq!(h.codes(), [250, 503, 250]);
    h.policy.refuse_rcpt = Some("no");
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<no@x>\r\nBDAT 6 LAST\r\nRSET\r\nNOOP\r\n");
    assert_eq!(h.codes(), [250, 554, 554, 250]);
    // DATA after a chunk, RCPT after a chunk.
    h.send(b"RSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1\r\nxDATA\r\nRCPT TO:<e@f>\r\nBDAT 1 LAST\r\ny");
    assert_eq!(h.codes(), [250, 250, 250, 250, 503, 503, 250]);
    assert_eq!(h.messages[0].content, b"xy");
    assert_eq!(h.messages[0].recipients, ["c@d"]);
}

#[test]
fn a_bad_bdat_hangs_up() {
    for line in [&b"BDAT x\r\n"[..], b"BDAT 1 FIRST\r\n", b"BDAT\r\n"] {
        let mut h = Harness::ready();
        h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
        h.replies();
        h.send(line);
        assert_eq!(h.replies(), "501 5.5.4 Syntax: BDAT count [LAST]\r\n");
        assert!(h.closed);
    }
    // Not offered: unknown, and nothing is read as chunk data.
    let mut h = Harness::new(SessionConfig {
        extensions: Extensions {
            chunking: false,
            ..Extensions::default()
        },
        ..SessionConfig::default()
    });
    h.send(b"EHLO c\r\n");
    assert!(!h.replies().contains("CHUNKING"));
    h.send(b"BDAT 4\r\nNOOP\r\nBDAT x\r\n");
    assert_eq!(h.codes(), [502, 250, 502]);
}

#[test]
fn oversize_chunks() {
    let mut h = Harness::new(SessionConfig {
        limits: Limits {
            max_message_size: Some(5),
            ..Limits::default()
        },
        ..SessionConfig::default()
    });
    h.replies();
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 4\r\nabcdBDAT 4\r\nefgh");
    h.send(b"BDAT 1 LAST\r\nzNOOP\r\n");
    let r = h.replies();
    assert!(
        r.ends_with(
            "250 2.0.0 Ok: 4 octets\r\n552 5.3.4 Error: message size exceeds fixed limit\r\n\
         503 5.5.1 Error: need MAIL command\r\n250 2.0.0 Ok\r\n"
        ),
        "{r}"
    );
    assert!(h.messages.is_empty());
    assert_eq!(h.session.counters().messages_refused, 1);
    // A huge chunk is read to its end without being kept.
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 18446744073709551615 LAST\r\n");
    h.send(&[b'x'; 10_000]);
    assert_eq!(h.session.stage(), Stage::Data);
    assert!(h.pending.is_empty());
}

#[test]
fn reject_mode_checks_chunks_too() {
    let config = || SessionConfig {
        line_ends: LineEnds::Reject,
        ..SessionConfig::default()
    };
    for (chunks, reply) in [
        (
            &b"BDAT 3 LAST\r\na\nb"[..],
            "550 5.5.2 Error: bare <LF> received\r\n",
        ),
        (
            b"BDAT 2\r\na\rBDAT 1 LAST\r\nb",
            "550 5.5.2 Error: bare <CR> received\r\n",
        ),
        (
            b"BDAT 2 LAST\r\na\r",
            "550 5.5.2 Error: bare <CR> received\r\n",
        ),
    ] {
        let mut h = Harness::new(config());
        h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
        h.replies();
        h.send(chunks);
        let r = h.replies();
        assert!(r.ends_with(reply), "{chunks:?}: {r}");
        assert!(h.closed && h.messages.is_empty());
    }
    let mut h = Harness::new(config());
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 4 LAST\r\na\r\nb");
    assert_eq!(h.messages[0].content, b"a\r\nb");
}
