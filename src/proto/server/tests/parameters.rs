//! MAIL and RCPT parameters and addresses through the session.

use super::*;

#[test]
fn dsn_and_utf8_reach_the_message() {
    let mut h = Harness::ready();
    h.send(
        "EHLO c\r\n\
         MAIL FROM:<j\u{f6}rg@example.org> SMTPUTF8 RET=HDRS ENVID=QQ+2B1 SIZE=20\r\n\
         RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@example.net\r\n\
         RCPT TO:<\u{fc}@b\u{fc}cher.example>\r\n\
         DATA\r\nx\r\n.\r\n"
            .as_bytes(),
    );
    assert_eq!(h.codes(), [250, 250, 250, 250, 354, 250]);
    let m = &h.messages[0];
    assert_eq!(m.sender, "j\u{f6}rg@example.org");
    assert!(m.params.smtputf8);
    assert_eq!(m.dsn.ret, Some(DsnRet::Headers));
    assert_eq!(m.dsn.envid.as_deref(), Some("QQ+1"));
    assert_eq!(
        m.dsn.rcpts,
        [
            RcptDsn {
                notify: Notify::parse("SUCCESS,FAILURE").unwrap(),
                orcpt: Some("rfc822;b+x@example.net".into()),
            },
            RcptDsn::default(),
        ]
    );
}

#[test]
fn refusals() {
    let mut h = Harness::ready();
    h.send(b"HELO c\r\nMAIL FROM:<a@b> SIZE=5\r\nEHLO c\r\n");
    assert_eq!(h.codes(), [250, 555, 250]);
    for (mail, code) in [
        ("MAIL FROM:<a@b> SIZE=10240001", 552),
        ("MAIL FROM:<a@b> SIZE=x", 501),
        ("MAIL FROM:<a@b> BODY=BINARYMIME", 501),
        ("MAIL FROM:<a@b> FOO", 555),
        ("MAIL FROM:a@b", 501),
        ("MAIL FROM:<a b@c>", 501),
        ("MAIL FROM:<j\u{f6}rg@b>", 553),
        ("MAIL FROM:<a@b>\u{fc}", 501),
        ("MAIL FROM:<postmaster>", 501),
    ] {
        h.send(format!("{mail}\r\n").as_bytes());
        let r = h.replies();
        assert!(r.starts_with(&code.to_string()), "{mail}: {r}");
    }
    h.send(b"MAIL FROM:<a@b>\r\n");
    assert_eq!(h.codes(), [250]);
    for (rcpt, code) in [
        ("RCPT TO:<>", 501),
        ("RCPT TO:c@d", 501),
        ("RCPT TO:<c@d> NOTIFY=NEVER,DELAY", 501),
        ("RCPT TO:<c@d> SIZE=1", 555),
        ("RCPT TO:<\u{fc}@d>", 553),
        ("RCPT TO:<c@@d>", 501),
    ] {
        h.send(format!("{rcpt}\r\n").as_bytes());
        let r = h.replies();
        assert!(r.starts_with(&code.to_string()), "{rcpt}: {r}");
    }
    h.send(b"RCPT TO:<Postmaster>\r\nDATA\r\n.\r\n");
    assert_eq!(h.codes(), [250, 354, 250]);
    assert_eq!(h.messages[0].recipients, ["Postmaster"]);
    assert_eq!(h.session.command_counts().get(Verb::Mail), (1, 11));
}

#[test]
fn extensions_switched_off_refuse_their_parameters() {
    let mut h = Harness::new(SessionConfig {
        extensions: Extensions {
            dsn: false,
            smtputf8: false,
            eight_bit_mime: false,
            ..Extensions::default()
        },
        ..SessionConfig::default()
    });
    h.send(b"EHLO c\r\n");
    let ehlo = h.replies();
    assert!(!ehlo.contains("DSN") && !ehlo.contains("SMTPUTF8") && !ehlo.contains("8BITMIME"));
    h.send(b"MAIL FROM:<a@b> RET=FULL\r\nMAIL FROM:<a@b> SMTPUTF8\r\nMAIL FROM:<a@b> BODY=8BITMIME\r\n");
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d> NOTIFY=NEVER\r\n");
    assert_eq!(h.codes(), [555, 555, 555, 250, 555]);
}

#[test]
fn unqualified_addresses_get_the_origin_when_there_is_one() {
    let mut h = Harness::ready();
    h.send(b"EHLO c\r\nMAIL FROM:<joe>\r\nMAIL FROM:<joe@x>\r\nRCPT TO:<ann>\r\n");
    assert_eq!(h.codes(), [250, 501, 250, 501]);
    let mut h = Harness::new(SessionConfig {
        origin: Some("example.org".into()),
        ..SessionConfig::default()
    });
    h.send(b"EHLO c\r\nMAIL FROM:<joe>\r\nRCPT TO:<ann>\r\nRCPT TO:<postmaster>\r\nDATA\r\n.\r\n");
    let m = &h.messages[0];
    assert_eq!(m.sender, "joe@example.org");
    assert_eq!(m.recipients, ["ann@example.org", "postmaster@example.org"]);
}
