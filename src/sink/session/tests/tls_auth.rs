//! STARTTLS and AUTH in the state machine (the handshake itself is the
//! socket loop's: the harness only "runs" it).

use super::*;
use crate::sink::auth::encode;

/// A server configuration with a self-signed certificate.
fn server_tls() -> Arc<rustls::ServerConfig> {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)
    .unwrap();
    Arc::new(config)
}

fn with_tls() -> SinkConfig {
    SinkConfig {
        tls: Some(server_tls()),
        ..SinkConfig::default()
    }
}

fn with_auth(tls: bool, plaintext: bool) -> SinkConfig {
    SinkConfig {
        tls: tls.then(server_tls),
        auth: Some(("alice".into(), "s3cret".into())),
        auth_plaintext: plaintext,
        ..SinkConfig::default()
    }
}

fn plain(authzid: &str, user: &str, password: &str) -> String {
    encode(format!("{authzid}\0{user}\0{password}").as_bytes())
}

const EHLO_TAIL: &str = "250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n";

/// Greeted with EHLO, replies emptied.
fn ready(config: &SinkConfig) -> Harness {
    let mut h = Harness::new(config);
    h.send(b"EHLO c\r\n");
    h.replies();
    h
}

/// [`ready`], then STARTTLS and EHLO again.
fn over_tls(config: &SinkConfig) -> Harness {
    let mut h = ready(config);
    h.send(b"STARTTLS\r\n");
    assert_eq!(h.replies(), "220 2.0.0 Ready to start TLS\r\n");
    h.send(b"EHLO c\r\n");
    h.replies();
    h
}

#[test]
fn starttls_is_announced_only_before_tls() {
    let mut h = Harness::new(&with_tls());
    h.replies();
    h.send(b"EHLO c\r\n");
    assert_eq!(
        h.replies(),
        format!("250-localhost\r\n250-PIPELINING\r\n250-SIZE\r\n250-STARTTLS\r\n{EHLO_TAIL}")
    );
    h.send(b"STARTTLS\r\n");
    assert_eq!(h.replies(), "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!((h.tls_starts, h.session.is_tls()), (1, true));
    h.send(b"EHLO c\r\n");
    assert_eq!(
        h.replies(),
        format!("250-localhost\r\n250-PIPELINING\r\n250-SIZE\r\n{EHLO_TAIL}")
    );
    h.send(b"STARTTLS\r\n");
    assert_eq!(h.replies(), "554 5.5.1 Error: TLS already active\r\n");
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(h.codes(), ["250", "250", "354", "250"]);
    assert_eq!(h.origins, [(true, None)]);
}

#[test]
fn starttls_forgets_the_session_and_drops_pipelined_commands() {
    let mut h = ready(&with_tls());
    h.send(b"STARTTLS\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<evil@y>\r\n");
    assert_eq!(h.codes(), ["220"], "nothing after STARTTLS is answered");
    assert!(h.pending.is_empty());
    // The EHLO before TLS no longer counts.
    h.send(b"MAIL FROM:<a@b>\r\n");
    assert_eq!(h.codes(), ["503"]);
    h.send(b"HELO again\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(h.codes(), ["250", "250", "250", "354", "250"]);
    assert_eq!(h.messages[0].0, "a@b");
}

#[test]
fn starttls_refusals() {
    let mut h = Harness::new(&with_tls());
    h.replies();
    h.send(b"STARTTLS\r\nEHLO c\r\nSTARTTLS now\r\nMAIL FROM:<a@b>\r\nSTARTTLS\r\n");
    assert_eq!(h.codes(), ["503", "250", "501", "250", "503"]);
    assert_eq!(h.tls_starts, 0);
    // Without TLS configured, or without ESMTP, STARTTLS is unknown.
    let mut h = ready(&SinkConfig::default());
    h.send(b"STARTTLS\r\n");
    assert_eq!(h.codes(), ["502"]);
    let mut h = Harness::new(&SinkConfig {
        esmtp: false,
        ..with_tls()
    });
    h.replies();
    h.send(b"HELO c\r\nSTARTTLS\r\n");
    assert_eq!(h.codes(), ["250", "502"]);
}

#[test]
fn broken_tls_answers_220_then_garbage_and_closes() {
    let config = SinkConfig {
        faults: Faults {
            tls_broken: true,
            ..Faults::default()
        },
        ..SinkConfig::default()
    };
    let mut h = Harness::new(&config);
    h.replies();
    h.send(b"EHLO c\r\n");
    assert!(h.replies().contains("250-STARTTLS\r\n"));
    h.send(b"STARTTLS\r\n");
    let r = h.replies();
    assert!(r.starts_with("220 2.0.0 Ready to start TLS\r\nringmail-sink: this is not"));
    assert!(h.closed);
    assert_eq!(h.tls_starts, 0);
    assert_eq!(h.session.take_tally().injected_disconnects, 1);
}

#[test]
fn auth_is_offered_and_accepted_only_over_tls() {
    let config = with_auth(true, false);
    let mut h = ready(&config);
    h.send(b"EHLO c\r\n");
    assert!(!h.replies().contains("AUTH"));
    h.send(format!("AUTH PLAIN {}\r\n", plain("", "alice", "s3cret")).as_bytes());
    assert_eq!(
        h.replies(),
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    );
    h.send(b"MAIL FROM:<a@b>\r\n");
    assert_eq!(h.replies(), "530 5.7.0 Authentication required\r\n");
    h.send(b"STARTTLS\r\n");
    h.send(b"EHLO c\r\n");
    let r = h.replies();
    assert!(
        r.contains("250-AUTH PLAIN LOGIN\r\n") && !r.contains("STARTTLS"),
        "{r}"
    );
    h.send(b"MAIL FROM:<a@b>\r\n");
    assert_eq!(h.codes(), ["530"]);
    h.send(format!("AUTH PLAIN {}\r\n", plain("", "alice", "wrong")).as_bytes());
    assert_eq!(
        h.replies(),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    h.send(format!("AUTH PLAIN {}\r\n", plain("alice", "alice", "s3cret")).as_bytes());
    assert_eq!(h.replies(), "235 2.7.0 Authentication successful\r\n");
    h.send(b"AUTH LOGIN\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(h.codes(), ["503", "250", "250", "354", "250"]);
    assert_eq!(h.origins, [(true, Some("alice".to_string()))]);
    let t = h.session.take_tally();
    assert_eq!((t.auth_ok, t.auth_failed), (1, 1));
}

#[test]
fn plain_and_login_with_and_without_initial_responses() {
    let config = with_auth(true, false);
    let user = encode(b"alice");
    let password = encode(b"s3cret");
    let conversations: [(String, &[&str]); 5] = [
        (
            format!("AUTH PLAIN\r\n{}\r\n", plain("", "alice", "s3cret")),
            &["334 \r\n", "235 2.7.0 Authentication successful\r\n"],
        ),
        (
            format!("AUTH LOGIN\r\n{user}\r\n{password}\r\n"),
            &[
                "334 VXNlcm5hbWU6\r\n",
                "334 UGFzc3dvcmQ6\r\n",
                "235 2.7.0 Authentication successful\r\n",
            ],
        ),
        (
            format!("auth login {user}\r\n{password}\r\n"),
            &[
                "334 UGFzc3dvcmQ6\r\n",
                "235 2.7.0 Authentication successful\r\n",
            ],
        ),
        (
            format!("AUTH LOGIN {user}\r\n{}\r\n", encode(b"nope")),
            &[
                "334 UGFzc3dvcmQ6\r\n",
                "535 5.7.8 Authentication credentials invalid\r\n",
            ],
        ),
        (
            "AUTH PLAIN\r\n=\r\n".to_string(),
            &[
                "334 \r\n",
                "535 5.7.8 Authentication credentials invalid\r\n",
            ],
        ),
    ];
    for (input, expected) in conversations {
        let whole = {
            let mut h = over_tls(&config);
            h.send(input.as_bytes());
            h.replies()
        };
        assert_eq!(whole, expected.concat(), "{input:?}");
        // The same at every split of the input.
        for i in 0..=input.len() {
            let mut h = over_tls(&config);
            h.send(&input.as_bytes()[..i]);
            h.send(&input.as_bytes()[i..]);
            assert_eq!(h.replies(), whole, "{input:?} split at {i}");
        }
    }
}

#[test]
fn auth_errors() {
    let config = with_auth(true, false);
    let mut h = over_tls(&config);
    h.send(b"AUTH CRAM-MD5\r\nAUTH\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n!!!\r\n");
    assert_eq!(
        h.replies(),
        "504 5.5.4 Error: unsupported authentication mechanism\r\n\
         501 5.5.4 Syntax: AUTH mechanism\r\n\
         334 \r\n501 5.7.0 Authentication aborted\r\n\
         334 VXNlcm5hbWU6\r\n501 5.5.2 Error: cannot decode response\r\n"
    );
    h.send(b"AUTH PLAIN\r\n");
    h.send(&vec![b'A'; MAX_LINE + 10]);
    h.send(b"\r\nNOOP\r\n");
    assert_eq!(
        h.codes(),
        ["334", "500", "250"],
        "an overlong response ends AUTH"
    );
    assert_eq!(h.session.take_tally().auth_failed, 3);
    // AUTH before HELO.
    let mut h = Harness::new(&config);
    h.replies();
    h.send(b"AUTH PLAIN\r\n");
    assert_eq!(h.codes(), ["503"]);
    // Without AUTH configured, AUTH is unknown.
    let mut h = over_tls(&with_tls());
    h.send(b"AUTH PLAIN\r\n");
    assert_eq!(h.codes(), ["502"]);
}

#[test]
fn auth_in_plaintext_when_allowed_and_forgotten_after_starttls() {
    let config = with_auth(true, true);
    let mut h = Harness::new(&config);
    h.replies();
    h.send(b"EHLO c\r\n");
    let r = h.replies();
    assert!(
        r.contains("250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n"),
        "{r}"
    );
    h.send(format!("AUTH PLAIN {}\r\n", plain("", "alice", "s3cret")).as_bytes());
    assert_eq!(h.codes(), ["235"]);
    h.send(b"MAIL FROM:<a@b>\r\nAUTH PLAIN\r\nRSET\r\n");
    assert_eq!(h.codes(), ["250", "503", "250"], "no AUTH in a transaction");
    h.send(b"STARTTLS\r\n");
    h.send(b"EHLO c\r\n");
    h.replies();
    h.send(b"MAIL FROM:<a@b>\r\n");
    assert_eq!(h.codes(), ["530"], "AUTH before TLS no longer counts");
    // Plaintext only, no TLS at all.
    let mut h = ready(&with_auth(false, true));
    h.send(b"EHLO c\r\n");
    let r = h.replies();
    assert!(r.contains("250-AUTH PLAIN LOGIN\r\n") && !r.contains("STARTTLS"));
    h.send(
        format!(
            "AUTH LOGIN {}\r\n{}\r\n",
            encode(b"alice"),
            encode(b"s3cret")
        )
        .as_bytes(),
    );
    assert_eq!(h.codes(), ["334", "235"]);
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(h.origins, [(false, Some("alice".to_string()))]);
}
