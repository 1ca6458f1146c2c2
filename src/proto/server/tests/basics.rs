//! The commands, a whole transaction, replies and counts.

use super::*;

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
fn greeting_and_full_transaction_at_every_split() {
    let mut h = Harness::every_split(|| Harness::new(SessionConfig::default()), TRANSACTION);
    assert_eq!(
        h.replies(),
        "220 localhost ESMTP ringmail\r\n\
         250-localhost\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250-DSN\r\n\
         250-SMTPUTF8\r\n250-CHUNKING\r\n250 ENHANCEDSTATUSCODES\r\n\
         250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n\
         250 2.0.0 Ok: queued as Q1\r\n\
         221 2.0.0 Bye\r\n"
    );
    assert!(h.closed);
    let m = &h.messages[0];
    assert_eq!(m.sender, "a@example.com");
    assert_eq!(m.recipients, ["b@example.net", "c@example.net"]);
    assert_eq!(
        m.content,
        b"Message-ID: <1@example.com>\r\nSubject: hi\r\n\r\n.dot\r\nbody\r\n"
    );
    assert_eq!(m.params.size, Some(100));
    assert_eq!(m.dsn.body, Some(BodyType::EightBitMime));
    assert_eq!(m.transfer, Transfer::Data);
    assert_eq!(
        h.session.command_counts().to_string(),
        "ehlo=1 mail=1 rcpt=2 data=1 quit=1 commands=6"
    );
    let c = h.session.counters();
    assert_eq!((c.replies, c.errors, c.messages), (8, 0, 1));
    assert_eq!(h.session.stage(), Stage::Closed);
}

#[test]
fn many_transactions_and_the_null_sender() {
    let mut h = Harness::ready();
    h.send(b"HELO c\r\n");
    for i in 0..3 {
        let t = format!(
            "MAIL FROM:<>\r\nRCPT TO:<x@y>\r\nDATA\r\nMessage-ID: <{i}@z>\r\n\r\nx\r\n.\r\n"
        );
        h.send(t.as_bytes());
    }
    h.send(b"RSET\r\nNOOP\r\nVRFY x\r\nHELP\r\n");
    assert_eq!(
        h.codes(),
        [250, 250, 250, 354, 250, 250, 250, 354, 250, 250, 250, 354, 250, 250, 250, 252, 214]
    );
    assert_eq!(h.messages.len(), 3);
    assert_eq!(h.messages[0].sender, "");
    assert!(!h.closed);
    assert_eq!(
        h.session.command_counts().to_string(),
        "helo=1 mail=3 rcpt=3 data=3 rset=1 noop=1 vrfy=1 help=1 commands=14"
    );
}

#[test]
fn out_of_sequence_and_unknown() {
    let mut h = Harness::ready();
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSTARTTLS\r\nAUTH PLAIN\r\nBDAT 1\r\n\r\nEXPN x\r\n");
    assert_eq!(h.codes(), [503, 503, 503, 502, 502, 503, 500, 502]);
    // (BDAT without MAIL still reads its one byte: the CR of the empty
    // line, whose bare LF is then taken as a line end.)
    h.send(b"XHELO c\r\nRCPT TO:<c@d>\r\nDATA\r\nMAIL FROM:<a@b>\r\nDATA\r\nMAIL FROM:<a@b>\r\n");
    assert_eq!(h.codes(), [502, 503, 503, 503, 503, 503]);
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nDATA\r\nMAIL FROM:<a@b>\r\nRSET\r\nRCPT TO:<c@d>\r\n");
    assert_eq!(h.codes(), [250, 250, 503, 503, 250, 503]);
    h.send(b"RSET x\r\nQUIT now\r\nVRFY\r\n");
    assert_eq!(h.codes(), [501, 501, 501]);
    assert_eq!(h.session.counters().errors, 20);
}

#[test]
fn helo_only_server() {
    let mut h = Harness::new(SessionConfig {
        esmtp: false,
        ..SessionConfig::default()
    });
    h.replies();
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nHELO c\r\nMAIL FROM:<a@b> SIZE=1\r\n");
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1 LAST\r\nDATA\r\nx\r\n.\r\nQUIT\r\n");
    assert_eq!(
        h.replies(),
        "502 Error: command not implemented\r\n503 Error: send HELO/EHLO first\r\n\
         250 localhost\r\n555 Error: parameters need EHLO\r\n250 Ok\r\n250 Ok\r\n\
         502 Error: command not recognized\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n250 Ok: queued as Q1\r\n221 Bye\r\n"
    );
}

#[test]
fn store_failure_and_taking_the_content() {
    let params = Arc::new(SessionParams::new(SessionConfig::default()));
    let mut s = Session::new(params, None);
    let mut out = Vec::new();
    s.greeting(&mut out);
    let input = b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n";
    let (n, p) = s.feed(input, &mut out, &mut AcceptAll);
    assert_eq!(p, Progress::Message);
    assert_eq!(s.stage(), Stage::Driver);
    // Feeding again without finishing consumes nothing.
    assert_eq!(
        s.feed(&input[n..], &mut out, &mut AcceptAll),
        (0, Progress::Message)
    );
    assert_eq!(s.take_content(), b"x\r\n");
    assert_eq!(s.pending_message().unwrap().content, b"");
    assert_eq!(s.pending_message().unwrap().size, 3);
    let fail = Reply::fixed(451, "4.3.0", "Error: queue file write error");
    s.finish_message(Err(fail), &mut out);
    assert!(s.pending_message().is_none());
    assert!(s.take_content().is_empty());
    let (m, p) = s.feed(&input[n..], &mut out, &mut AcceptAll);
    assert_eq!((n + m, p), (input.len(), Progress::NeedInput));
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.ends_with("451 4.3.0 Error: queue file write error\r\n250 2.0.0 Ok\r\n"),
        "{text}"
    );
    let c = s.counters();
    assert_eq!((c.messages_refused, c.errors), (1, 0));
    assert_eq!(s.command_counts().get(Verb::Data), (0, 1));
}

#[test]
fn timeout_and_shutdown_replies() {
    let mut h = Harness::new(SessionConfig {
        hostname: "mx.test".into(),
        ..SessionConfig::default()
    });
    h.replies();
    h.session.timeout(&mut h.out);
    assert_eq!(h.replies(), "421 4.4.2 mx.test Error: timeout exceeded\r\n");
    assert_eq!(h.session.stage(), Stage::Closed);
    let mut h = Harness::ready();
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    assert_eq!(h.session.stage(), Stage::Data);
    h.replies();
    h.session.shutting_down(&mut h.out);
    assert_eq!(h.replies(), "421 4.3.2 localhost Service shutting down\r\n");
    h.send(b"");
    assert!(h.closed);
    assert!(h.messages.is_empty());
}

#[test]
fn the_policy_decides() {
    let mut h = Harness::ready();
    h.policy.refuse_rcpt = Some("outside");
    h.policy.refuse_content = Some("SPAM");
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@outside.example>\r\nRCPT TO:<y@in>\r\n");
    h.send(b"DATA\r\nSPAM\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@outside>\r\nDATA\r\n");
    assert_eq!(h.codes(), [250, 250, 554, 250, 354, 554, 250, 554, 554]);
    assert!(h.messages.is_empty());
    assert_eq!(
        h.policy.seen,
        [
            "Some(192.0.2.7) Some(\"c\") false None Some(\"a@b\") 0",
            "Some(192.0.2.7) Some(\"c\") false None Some(\"a@b\") 0",
            "Some(192.0.2.7) Some(\"c\") false None Some(\"a@b\") 0",
        ]
    );
    assert_eq!(h.session.counters().messages_refused, 1);
    h.policy.drop_sender = Some("bad");
    h.send(b"RSET\r\nMAIL FROM:<bad@x>\r\nNOOP\r\n");
    assert_eq!(h.replies(), "250 2.0.0 Ok\r\n421 4.7.0 go away\r\n");
    assert!(h.closed);
}

#[test]
fn starttls_forgets_the_session() {
    let config = || SessionConfig {
        starttls: true,
        ..SessionConfig::default()
    };
    let mut h = Harness::new(config());
    h.replies();
    h.send(b"STARTTLS\r\nEHLO c\r\nSTARTTLS now\r\nMAIL FROM:<a@b>\r\nSTARTTLS\r\nRSET\r\n");
    assert_eq!(h.codes(), [503, 250, 501, 250, 503, 250]);
    h.send(b"STARTTLS\r\nMAIL FROM:<evil@x>\r\n");
    assert_eq!(h.codes(), [220]);
    assert_eq!((h.tls_starts, h.session.is_tls()), (1, true));
    assert!(h.pending.is_empty());
    h.send(b"MAIL FROM:<a@b>\r\nEHLO c\r\n");
    let r = h.replies();
    assert!(
        r.starts_with("503 5.5.1 Error: send HELO/EHLO first\r\n"),
        "{r}"
    );
    assert!(!r.contains("STARTTLS"), "{r}");
    h.send(b"STARTTLS\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(h.codes(), [554, 250, 250, 354, 250]);
    assert!(h.messages[0].tls);
    assert_eq!(h.session.command_counts().get(Verb::StartTls), (1, 5));
}

#[test]
fn no_valid_recipients() {
    let mut h = Harness::ready();
    h.policy.refuse_rcpt = Some("@");
    h.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nBDAT 3 LAST\r\nabc");
    let r = h.replies();
    assert!(
        r.ends_with("554 5.7.1 Relay access denied\r\n554 5.5.1 Error: no valid recipients\r\n554 5.5.1 Error: no valid recipients\r\n"),
        "{r}"
    );
    assert_eq!(h.session.command_counts().get(Verb::Rcpt), (0, 1));
}
