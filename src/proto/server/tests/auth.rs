//! AUTH PLAIN and LOGIN through the driver.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::*;

fn b64(text: &[u8]) -> String {
    STANDARD.encode(text)
}

fn plain(authzid: &str, user: &str, password: &str) -> String {
    b64(format!("{authzid}\0{user}\0{password}").as_bytes())
}

fn with_auth(plaintext: bool, required: bool) -> SessionConfig {
    SessionConfig {
        starttls: true,
        auth: Some(AuthConfig {
            plaintext,
            required,
        }),
        ..SessionConfig::default()
    }
}

/// Greeted, EHLO'd over TLS, replies emptied.
fn over_tls(config: SessionConfig) -> Harness {
    let mut h = Harness::new(config);
    h.send(b"EHLO c\r\nSTARTTLS\r\n");
    h.send(b"EHLO c\r\n");
    h.replies();
    h
}

#[test]
fn only_over_tls_unless_plaintext_is_allowed() {
    let mut h = Harness::new(with_auth(false, true));
    h.replies();
    h.send(b"AUTH PLAIN\r\nEHLO c\r\n");
    let r = h.replies();
    assert!(
        r.starts_with("503 5.5.1 Error: send HELO/EHLO first\r\n"),
        "{r}"
    );
    assert!(!r.contains("AUTH"), "{r}");
    h.send(
        format!(
            "AUTH PLAIN {}\r\nMAIL FROM:<a@b>\r\n",
            plain("", "alice", "s3cret")
        )
        .as_bytes(),
    );
    assert_eq!(
        h.replies(),
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n\
         530 5.7.0 Authentication required\r\n"
    );
    let mut h = over_tls(with_auth(false, true));
    h.send(format!("AUTH PLAIN {}\r\n", plain("alice", "alice", "s3cret")).as_bytes());
    assert_eq!(h.replies(), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(h.session.auth_mechanism(), Some(Mechanism::Plain));
    h.send(b"AUTH LOGIN\r\nMAIL FROM:<a@b> AUTH=<>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(h.codes(), [503, 250, 250, 354, 250]);
    assert_eq!(h.messages[0].auth.as_deref(), Some("alice"));
    // Plaintext allowed: offered and accepted before TLS; forgotten after.
    let mut h = Harness::new(with_auth(true, true));
    h.send(b"EHLO c\r\n");
    assert!(h
        .replies()
        .contains("250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n"));
    h.send(format!("AUTH LOGIN {}\r\n{}\r\n", b64(b"alice"), b64(b"s3cret")).as_bytes());
    assert_eq!(h.codes(), [334, 235]);
    assert_eq!(h.session.auth_user(), Some("alice"));
    h.send(b"STARTTLS\r\n");
    assert_eq!(h.session.auth_user(), None);
    // tls_required: no AUTH before TLS even when plaintext is allowed.
    let mut h = Harness::new(SessionConfig {
        tls_required: true,
        ..with_auth(true, false)
    });
    h.send(b"EHLO c\r\nAUTH PLAIN\r\nMAIL FROM:<a@b>\r\n");
    let r = h.replies();
    assert!(!r.contains("AUTH"), "{r}");
    assert!(r.ends_with("538 5.7.11 Encryption required for requested authentication mechanism\r\n530 5.7.0 Must issue a STARTTLS command first\r\n"), "{r}");
}

#[test]
fn conversations_at_every_split() {
    let user = b64(b"alice");
    let password = b64(b"s3cret");
    let conversations: [(String, &str); 7] = [
        (
            format!("AUTH PLAIN\r\n{}\r\n", plain("", "alice", "s3cret")),
            "334 \r\n235 2.7.0 Authentication successful\r\n",
        ),
        (
            format!("AUTH LOGIN\r\n{user}\r\n{password}\r\n"),
            "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n",
        ),
        (
            format!("auth login {user}\r\n{}\r\n", b64(b"nope")),
            "334 UGFzc3dvcmQ6\r\n535 5.7.8 Authentication credentials invalid\r\n",
        ),
        (
            "AUTH PLAIN\r\n=\r\n".to_string(),
            "334 \r\n535 5.7.8 Authentication credentials invalid\r\n",
        ),
        (
            format!("AUTH PLAIN {}\r\n", plain("bob", "alice", "s3cret")),
            "535 5.7.8 Authentication credentials invalid\r\n",
        ),
        (
            "AUTH CRAM-MD5\r\nAUTH\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n!!!\r\n".to_string(),
            "504 5.5.4 Error: unsupported authentication mechanism\r\n\
             501 5.5.4 Syntax: AUTH mechanism\r\n\
             334 \r\n501 5.7.0 Authentication aborted\r\n\
             334 VXNlcm5hbWU6\r\n501 5.5.2 Error: cannot decode response\r\n",
        ),
        (
            format!("AUTH LOGIN\r\n=\r\nAUTH LOGIN {user}\r\n\x01\r\nNOOP\r\n"),
            "334 VXNlcm5hbWU6\r\n535 5.7.8 Authentication credentials invalid\r\n\
             334 UGFzc3dvcmQ6\r\n500 5.5.2 Error: control character in command\r\n\
             250 2.0.0 Ok\r\n",
        ),
    ];
    for (input, expected) in conversations {
        let mut h = Harness::every_split(|| over_tls(with_auth(false, false)), input.as_bytes());
        assert_eq!(h.replies(), expected, "{input:?}");
    }
}

#[test]
fn failures_are_counted_and_a_long_response_ends_the_exchange() {
    let mut h = over_tls(with_auth(false, false));
    h.send(b"AUTH PLAIN\r\n*\r\n");
    h.send(format!("AUTH PLAIN {}\r\n", plain("", "alice", "bad")).as_bytes());
    h.send(b"AUTH PLAIN\r\n");
    h.send(&vec![b'A'; 5000]);
    h.send(b"\r\nNOOP\r\n");
    assert_eq!(h.codes(), [334, 501, 535, 334, 500, 250]);
    assert_eq!(h.session.counters().auth_failures, 3);
    assert_eq!(h.session.command_counts().get(Verb::Auth), (0, 3));
    assert!(h.session.pending_auth().is_none());
    h.session.auth_result(true, &mut h.out);
    assert!(h.replies().is_empty(), "no AUTH pending");
    assert_eq!(h.session.stage(), Stage::Command);
}

#[test]
fn the_driver_answers_when_it_is_ready() {
    let params = Arc::new(SessionParams::new(with_auth(true, false)));
    let mut s = Session::new(params, None);
    let mut out = Vec::new();
    s.greeting(&mut out);
    let input = format!("EHLO c\r\nAUTH PLAIN {}\r\nNOOP\r\n", plain("", "u", "p w"));
    let (n, p) = s.feed(input.as_bytes(), &mut out, &mut AcceptAll);
    assert_eq!(p, Progress::Auth);
    assert_eq!(s.stage(), Stage::Driver);
    let req = s.pending_auth().unwrap();
    assert_eq!(
        (req.mechanism, req.user, req.password),
        (Mechanism::Plain, "u", &b"p w"[..])
    );
    assert_eq!(req.mechanism.name(), "PLAIN");
    assert_eq!(
        s.feed(&input.as_bytes()[n..], &mut out, &mut AcceptAll),
        (0, Progress::Auth)
    );
    s.auth_result(false, &mut out);
    let (_, p) = s.feed(&input.as_bytes()[n..], &mut out, &mut AcceptAll);
    assert_eq!(p, Progress::NeedInput);
    assert!(String::from_utf8(out)
        .unwrap()
        .ends_with("535 5.7.8 Authentication credentials invalid\r\n250 2.0.0 Ok\r\n"));
    assert_eq!(s.counters().auth_failures, 1);
    assert_eq!(s.auth_user(), None);
}

#[test]
fn auth_is_unknown_unless_configured() {
    let mut h = Harness::ready();
    h.send(b"EHLO c\r\nAUTH PLAIN\r\nAUTH\r\nMAIL FROM:<a@b> AUTH=<>\r\n");
    assert_eq!(h.codes(), [250, 502, 502, 555]);
}
