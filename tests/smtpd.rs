//! SMTP injection (issue 13), end to end with real clients: Python's
//! smtplib and swaks talk to `[[listener]]`s of the real daemon, which
//! relays to the bundled sink, all on loopback.
//!
//! - a relay listener takes mail from `mynetworks`, and its `250` comes
//!   only after the group commit (kill -9 after the replies, restart, every
//!   message is delivered);
//! - a client outside `mynetworks` gets `554 5.7.1` at RCPT, nothing is
//!   queued, the attempt is logged;
//! - a submission listener wants STARTTLS then AUTH (swaks), refuses wrong
//!   passwords, and logs `sasl_username`;
//! - a smuggling attempt with bare-LF dots and a client gone mid-DATA
//!   queue nothing they should not.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use ringmail::sink::{self, SinkConfig, SinkHandle};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Runs a Python script (stdin) with `args`; its output.
fn python(script: &str, args: &[&str]) -> Output {
    let mut child = Command::new("python3")
        .arg("-")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");
    child.wait_with_output().expect("python3 output")
}

/// Sends `n` messages over one connection to `port` (bound to `source`),
/// `b{i}@example.net`, Message-ID `<tag.i@test.example>`; prints each reply.
const SEND: &str = r#"
import smtplib, sys
port, source, tag, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
s = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30)
s.ehlo("client.test")
for i in range(n):
    msg = ("From: a@example.com\r\nTo: b%d@example.net\r\nSubject: %s %d\r\n"
           "Message-ID: <%s.%d@test.example>\r\n\r\nbody %d\r\n.dot line\r\n") % (i, tag, i, tag, i, i)
    try:
        refused = s.sendmail("a@example.com", ["b%d@example.net" % i], msg)
        print("OK", i, refused)
    except smtplib.SMTPRecipientsRefused as e:
        print("REFUSED", i, e.recipients)
    except smtplib.SMTPException as e:
        print("ERROR", i, e)
s.quit()
"#;

fn listener_sandbox(extra: &str, relay: u16) -> (Sandbox, u16) {
    let port = free_port();
    let sb = Sandbox::with(Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{relay}\"\nminimal_backoff_time = 1\nmaximal_backoff_time = 2\n\
             smtpd_passwd_file = \"/nonexistent/ringmail-passwd\"\n{extra}\n\
             [[listener]]\naddress = \"127.0.0.1:{port}\"\n"
        ),
        ..Settings::default()
    });
    (sb, port)
}

fn start_sink() -> SinkHandle {
    sink::start(SinkConfig::default()).expect("sink")
}

/// Python's smtplib sends 50 messages through a relay listener; all are
/// delivered once, each `250` says `queued as` the queue ID the daemon
/// logged, and the smtpd lines are Postfix's.
fn relay_from_mynetworks(io: &str) {
    let sink = start_sink();
    let (sb, port) = listener_sandbox("", sink.local_addr.port());
    let mut d = sb.start_daemon(io);
    d.wait_for_log("listening on 127.0.0.1:");
    let out = python(SEND, &[&port.to_string(), "127.0.0.1", "relay", "50"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("OK")).count(),
        50,
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = sink.counters();
    d.wait_until("50 messages at the sink", || {
        stats.snapshot().messages >= 50
    });
    d.wait_until("the queue empty", || sb.queue_list().is_empty());
    d.stop();
    let counts = sink.message_id_counts();
    for i in 0..50 {
        assert_eq!(counts.get(&format!("<relay.{i}@test.example>")), Some(&1));
    }
    let log = d.log();
    assert_eq!(
        count_lines(
            &log,
            &["ringmail/smtpd[", "connect from unknown[127.0.0.1]"]
        ),
        2,
        "{log}"
    );
    assert_eq!(
        count_lines(&log, &["ringmail/smtpd[", ": client=unknown[127.0.0.1]"]),
        50
    );
    assert!(
        log.contains(
            "disconnect from unknown[127.0.0.1] ehlo=1 mail=50 rcpt=50 data=50 quit=1 commands=152"
        ),
        "{log}"
    );
    assert_eq!(count_lines(&log, &["status=sent"]), 50);
    // The Received field and the body as sent, dot line included.
    let snap = sink.stats();
    assert_eq!(snap.duplicate_message_ids, 0);
}
daemon_test!(relay_from_mynetworks);

/// A client at 127.0.0.2 with `mynetworks = 127.0.0.1/32` may not relay:
/// `554 5.7.1` at RCPT, logged, nothing queued or delivered.
fn outsider_may_not_relay(io: &str) {
    let sink = start_sink();
    let (sb, port) = listener_sandbox("mynetworks = [\"127.0.0.1/32\"]", sink.local_addr.port());
    let mut d = sb.start_daemon(io);
    d.wait_for_log("listening on 127.0.0.1:");
    let out = python(SEND, &[&port.to_string(), "127.0.0.2", "outside", "3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("REFUSED")).count(),
        3,
        "{text}"
    );
    assert!(
        text.contains("554") && text.contains("Relay access denied"),
        "{text}"
    );
    // The same client from inside mynetworks is served.
    let out = python(SEND, &[&port.to_string(), "127.0.0.1", "inside", "1"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK 0"));
    let stats = sink.counters();
    d.wait_until("the inside message delivered", || {
        stats.snapshot().messages >= 1
    });
    d.stop();
    let log = d.log();
    assert_eq!(
        count_lines(
            &log,
            &[
                "NOQUEUE: reject: RCPT from unknown[127.0.0.2]",
                "Relay access denied"
            ]
        ),
        3,
        "{log}"
    );
    assert_eq!(sink.stats().messages, 1, "only the inside message");
    assert_eq!(count_lines(&log, &[": client=unknown[127.0.0.2]"]), 0);
}
daemon_test!(outsider_may_not_relay);

/// The `250` is the commit: 30 messages are answered while the relay host
/// is down, the daemon is killed with SIGKILL at once, and after a restart
/// with the relay host up every one of them is delivered.
fn acknowledged_mail_survives_kill9(io: &str) {
    let dead = free_port();
    let (sb, port) = listener_sandbox("", dead);
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_for_log("listening on 127.0.0.1:");
    let out = python(SEND, &[&port.to_string(), "127.0.0.1", "durable", "30"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("OK")).count(),
        30,
        "{text}"
    );
    d.kill9();
    let sink = start_sink();
    let cfg = fs::read_to_string(&sb.config).expect("config");
    fs::write(
        &sb.config,
        cfg.replace(
            &format!("127.0.0.1]:{dead}"),
            &format!("127.0.0.1]:{}", sink.local_addr.port()),
        ),
    )
    .expect("rewrite config");
    let mut d = sb.start_daemon_nth(io, 1);
    let stats = sink.counters();
    d.wait_until("30 messages delivered after the restart", || {
        stats.snapshot().messages >= 30
    });
    d.stop();
    let counts = sink.message_id_counts();
    for i in 0..30 {
        assert!(
            counts.contains_key(&format!("<durable.{i}@test.example>")),
            "message {i} lost"
        );
    }
}
daemon_test!(acknowledged_mail_survives_kill9);

/// Talks SMTP by hand: `script` is sent in one write after the greeting;
/// returns everything the server said until it closed or 3 s passed.
fn raw_session(port: u16, script: &[u8]) -> String {
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut greeting = [0u8; 512];
    let n = s.read(&mut greeting).expect("greeting");
    assert!(greeting[..n].starts_with(b"220"));
    s.write_all(script).expect("write");
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        if all.ends_with(b"\r\n") && String::from_utf8_lossy(&all).contains("221 ") {
            break;
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// SMTP smuggling with bare-LF dots is not a second message, and a client
/// that disconnects mid-DATA leaves nothing queued.
fn smuggling_and_disconnects(io: &str) {
    let sink = start_sink();
    let (sb, port) = listener_sandbox("", sink.local_addr.port());
    let mut d = sb.start_daemon(io);
    d.wait_for_log("listening on 127.0.0.1:");
    let replies = raw_session(
        port,
        b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n\
          Message-ID: <outer@test.example>\r\n\r\nbody\n.\nMAIL FROM:<evil@example.com>\nRCPT TO:<victim@example.net>\nDATA\nMessage-ID: <smuggled@test.example>\n\nx\r\n.\r\nQUIT\r\n",
    );
    assert!(replies.contains("250 2.0.0 Ok: queued as"), "{replies}");
    // A client gone in the middle of DATA.
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
    s.write_all(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<gone@example.net>\r\nDATA\r\nMessage-ID: <gone@test.example>\r\n\r\nhalf")
        .expect("write");
    std::thread::sleep(Duration::from_millis(300));
    drop(s);
    let stats = sink.counters();
    d.wait_until("the outer message delivered", || {
        stats.snapshot().messages >= 1
    });
    std::thread::sleep(Duration::from_millis(500));
    d.stop();
    let counts = sink.message_id_counts();
    assert_eq!(counts.get("<outer@test.example>"), Some(&1));
    assert!(
        !counts.contains_key("<smuggled@test.example>"),
        "{counts:?}"
    );
    assert!(!counts.contains_key("<gone@test.example>"), "{counts:?}");
    assert_eq!(sink.stats().messages, 1);
    let log = d.log();
    assert!(!log.contains("victim@example.net"), "{log}");
}
daemon_test!(smuggling_and_disconnects);

/// A stop reaches every open session: the daemon exits cleanly, each idle
/// session gets `421 4.3.2` first, and the message answered `250` before
/// the stop is delivered (now, or after the restart).
fn stop_answers_every_session(io: &str) {
    let sink = start_sink();
    let (sb, port) = listener_sandbox("", sink.local_addr.port());
    let mut d = sb.start_daemon(io);
    d.wait_for_log("listening on 127.0.0.1:");
    let mut sessions: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s =
                TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).expect("greeting");
            assert!(buf[..n].starts_with(b"220"), "{:?}", &buf[..n]);
            s.write_all(b"EHLO c\r\n").expect("ehlo");
            let said = read_reply(&mut s);
            assert!(said.contains("250 "), "{said}");
            s
        })
        .collect();
    sessions[1]
        .write_all(
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n\
Subject: before the stop\r\nMessage-ID: <stop.1@test.example>\r\n\r\nbody\r\n.\r\n",
        )
        .expect("message");
    let mut said = String::new();
    while !said.contains("queued as") {
        let more = read_reply(&mut sessions[1]);
        assert!(!more.is_empty(), "closed before the 250: {said}");
        said.push_str(&more);
    }
    d.stop();
    for (i, s) in sessions.iter_mut().enumerate() {
        let said = read_until_closed(s);
        assert!(said.contains("421 4.3.2"), "session {i}: {said:?}");
    }
    let mut d = sb.start_daemon_nth(io, 1);
    let stats = sink.counters();
    d.wait_until("the message delivered", || stats.snapshot().messages >= 1);
    d.stop();
    assert_eq!(
        sink.message_id_counts().get("<stop.1@test.example>"),
        Some(&1)
    );
}
daemon_test!(stop_answers_every_session);

/// What the server says next (one read).
fn read_reply(s: &mut TcpStream) -> String {
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(_) => String::new(),
    }
}

/// Reads from `s` until it closes (or 10 s pass); everything it said.
fn read_until_closed(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Each stage has its own timeout: an idle client gets `421 4.4.2` after
/// `smtpd_timeout`, a client that stalls inside DATA is cut off after
/// `smtpd_data_timeout` with nothing queued, and a client that never
/// finishes the handshake after STARTTLS is dropped after
/// `smtpd_starttls_timeout`; each is logged as Postfix does.
fn stage_timeouts(io: &str) {
    let sink = start_sink();
    let sb = Sandbox::new();
    let port = free_port();
    let certs = certs::write_pki(sb.root(), &["localhost"]);
    sb.write_config(&Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{}\"\nsmtpd_passwd_file = \"/nonexistent/p\"\n\
             smtpd_timeout = 1\nsmtpd_data_timeout = 2\nsmtpd_starttls_timeout = 1\n\
             [[listener]]\naddress = \"127.0.0.1:{port}\"\n\
             tls_cert = {:?}\ntls_key = {:?}\n",
            sink.local_addr.port(),
            certs.cert_file.display().to_string(),
            certs.key_file.display().to_string(),
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon(io);
    d.wait_for_log("listening on 127.0.0.1:");
    // Connects and reads the greeting (nothing may be sent before it).
    let connect = || {
        let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
        let mut greeting = [0u8; 512];
        let n = s.read(&mut greeting).expect("greeting");
        assert!(greeting[..n].starts_with(b"220"));
        s
    };
    // Idle after EHLO.
    let mut idle = connect();
    idle.write_all(b"EHLO c\r\n").expect("write");
    let said = read_until_closed(&mut idle);
    assert!(said.contains("421 4.4.2"), "{said}");
    // Stalled inside DATA: more than smtpd_timeout (1 s) between pieces is
    // fine, more than smtpd_data_timeout (2 s) is not.
    let mut slow = connect();
    slow.write_all(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nMessage-ID: <slow@test.example>\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_millis(1500));
    slow.write_all(b"\r\nstill here\r\n").expect("write");
    let said = read_until_closed(&mut slow);
    assert!(said.contains("354"), "{said}");
    assert!(said.contains("421 4.4.2"), "{said}");
    assert!(!said.contains("queued as"), "{said}");
    // STARTTLS, then silence.
    let mut tls = connect();
    tls.write_all(b"EHLO c\r\nSTARTTLS\r\n").expect("write");
    let said = read_until_closed(&mut tls);
    assert!(said.contains("220 2.0.0"), "{said}");
    // The listener still serves.
    let out = python(SEND, &[&port.to_string(), "127.0.0.1", "after", "1"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK 0"));
    let stats = sink.counters();
    d.wait_until("the last message delivered", || {
        stats.snapshot().messages >= 1
    });
    d.stop();
    let counts = sink.message_id_counts();
    assert!(!counts.contains_key("<slow@test.example>"), "{counts:?}");
    assert_eq!(sink.stats().messages, 1);
    let log = d.log();
    assert!(
        log.contains("timeout after EHLO from unknown[127.0.0.1]"),
        "{log}"
    );
    assert!(log.contains("timeout after DATA"), "{log}");
    assert!(log.contains("timeout after STARTTLS"), "{log}");
}
daemon_test!(stage_timeouts);

/// A submission listener (STARTTLS, then AUTH required) with swaks: the
/// right password delivers and logs sasl_username; a wrong one is refused
/// (535); without AUTH, MAIL is refused (530).
fn submission_with_swaks(io: &str) {
    if Command::new("swaks").arg("--version").output().is_err() {
        eprintln!("submission_with_swaks: skipped: swaks is not installed");
        return;
    }
    let sb = Sandbox::new();
    let dump = sb.root().join("dump");
    let sink = sink::start(SinkConfig {
        dump_dir: Some(dump.clone()),
        ..SinkConfig::default()
    })
    .expect("sink");
    let port = free_port();
    let passwd = sb.root().join("passwd");
    let certs = certs::write_pki(sb.root(), &["localhost"]);
    sb.write_config(&Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{}\"\nsmtpd_passwd_file = {:?}\n\
             [[listener]]\naddress = \"127.0.0.1:{port}\"\nkind = \"submission\"\n\
             tls_cert = {:?}\ntls_key = {:?}\n",
            sink.local_addr.port(),
            passwd.display().to_string(),
            certs.cert_file.display().to_string(),
            certs.key_file.display().to_string(),
        ),
        ..Settings::default()
    });
    let add = Command::new(BIN)
        .args(["passwd", "add", "newsletter", "--config"])
        .arg(&sb.config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(b"s3cret-pass\n")?;
            c.wait_with_output()
        })
        .expect("ringmail passwd add");
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let mut d = sb.start_daemon(io);
    d.wait_for_log("listening on 127.0.0.1:");
    let swaks = |extra: &[&str], id: &str| {
        let header = format!("Subject: {id}");
        Command::new("swaks")
            .args([
                "--server",
                &format!("127.0.0.1:{port}"),
                "--to",
                "x@example.net",
            ])
            .args([
                "--from",
                "news@example.com",
                "--header",
                &header,
                "--timeout",
                "20",
            ])
            .args(extra)
            .output()
            .expect("swaks")
    };
    let ok = swaks(
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "newsletter",
            "--auth-password",
            "s3cret-pass",
        ],
        "authed",
    );
    let ok_text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{ok_text}");
    let bad = swaks(
        &[
            "--tls",
            "--auth",
            "LOGIN",
            "--auth-user",
            "newsletter",
            "--auth-password",
            "wrong",
        ],
        "wrong",
    );
    let bad_text = String::from_utf8_lossy(&bad.stdout);
    assert!(
        !bad.status.success() && bad_text.contains("535"),
        "{bad_text}"
    );
    let none = swaks(&["--tls"], "noauth");
    let none_text = String::from_utf8_lossy(&none.stdout);
    assert!(
        !none.status.success() && none_text.contains("530"),
        "{none_text}"
    );
    let plain = swaks(
        &[
            "--auth",
            "PLAIN",
            "--auth-user",
            "newsletter",
            "--auth-password",
            "s3cret-pass",
        ],
        "plain",
    );
    assert!(
        !plain.status.success(),
        "AUTH is not offered without TLS: {}",
        String::from_utf8_lossy(&plain.stdout)
    );
    let stats = sink.counters();
    d.wait_until("the authenticated message delivered", || {
        stats.snapshot().messages >= 1
    });
    d.stop();
    assert_eq!(sink.stats().messages, 1, "only the authenticated message");
    // The Received field names the TLS session and ESMTPSA (RFC 3848).
    let eml = fs::read_dir(&dump)
        .expect("dump dir")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".eml"))
        .map(|e| fs::read_to_string(e.path()).expect("read dump"))
        .expect("a dumped message");
    assert!(eml.starts_with("Received: from "), "{eml}");
    assert!(eml.contains("(using TLSv1."), "{eml}");
    assert!(eml.contains("with ESMTPSA;"), "{eml}");
    let log = d.log();
    assert!(
        log.contains("sasl_method=PLAIN, sasl_username=newsletter"),
        "{log}"
    );
    assert!(log.contains("authentication failed"), "{log}");
}
daemon_test!(submission_with_swaks);

/// Postfix's smtp-source, 20 sessions at once, 400 messages: every one is
/// answered and delivered once (smtp-source's messages carry no
/// Message-ID; cleanup adds one each).
fn smtp_source_many_sessions(io: &str) {
    if Command::new("smtp-source").output().is_err() {
        eprintln!("smtp_source_many_sessions: skipped: smtp-source (postfix) is not installed");
        return;
    }
    let sink = start_sink();
    let (sb, port) = listener_sandbox("", sink.local_addr.port());
    let mut d = sb.start_daemon(io);
    d.wait_for_log("listening on 127.0.0.1:");
    let out = Command::new("smtp-source")
        .args([
            "-s",
            "20",
            "-m",
            "400",
            "-l",
            "2048",
            "-f",
            "src@example.com",
        ])
        .args(["-t", "dst@example.net", "-M", "client.test"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .expect("smtp-source");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = sink.counters();
    d.wait_until("400 messages at the sink", || {
        stats.snapshot().messages >= 400
    });
    d.wait_until("the queue empty", || sb.queue_list().is_empty());
    d.stop();
    let snap = sink.stats();
    assert_eq!(snap.messages, 400, "{snap:?}");
    assert_eq!(snap.duplicate_message_ids, 0, "{snap:?}");
    let log = d.log();
    assert_eq!(
        count_lines(&log, &["ringmail/smtpd[", ": client=unknown[127.0.0.1]"]),
        400
    );
}
daemon_test!(smtp_source_many_sessions);

/// 60 idle connections against `smtpd_client_connection_limit = 50`: the
/// ten beyond get `421 4.7.0`, the first fifty their greeting, and once
/// they are closed a new one is served again.
fn connection_limit_per_client(io: &str) {
    let sink = start_sink();
    let (sb, port) = listener_sandbox("", sink.local_addr.port());
    let mut d = sb.start_daemon(io);
    d.wait_for_log("listening on 127.0.0.1:");
    let (open, greeted, refused) = open_idle(port, 60);
    assert_eq!((greeted, refused), (50, 10));
    drop(open);
    served_after_closing(&mut d, &sb, port, 50);
    d.stop();
    assert!(d.log().contains("too many connections from 127.0.0.1"));
}
daemon_test!(connection_limit_per_client);

/// Postfix's smtp client as the peer: a private Postfix instance relays 30
/// messages into ringmail's listener (its pipelining, its STARTTLS with
/// `smtp_tls_security_level = may`), and ringmail delivers each once.
fn postfix_relays_into_ringmail(io: &str) {
    let sink = start_sink();
    let sb = Sandbox::new();
    let port = free_port();
    let certs = certs::write_pki(sb.root(), &["localhost"]);
    sb.write_config(&Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{}\"\nsmtpd_passwd_file = \"/nonexistent/ringmail-passwd\"\n\
             [[listener]]\naddress = \"127.0.0.1:{port}\"\ntls_cert = {:?}\ntls_key = {:?}\n",
            sink.local_addr.port(),
            certs.cert_file.display().to_string(),
            certs.key_file.display().to_string(),
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon(io);
    d.wait_for_log("listening on 127.0.0.1:");
    let relay = format!("[127.0.0.1]:{port}");
    let Some(postfix) = postfix::PostfixReceiver::start_with(
        &["local.test"],
        &[
            ("default_transport", "smtp"),
            ("relay_transport", "smtp"),
            ("relayhost", relay.as_str()),
            ("smtpd_relay_restrictions", "permit_mynetworks, reject"),
            ("smtp_tls_security_level", "may"),
            ("smtp_tls_loglevel", "1"),
        ],
    ) else {
        return;
    };
    let out = python(
        SEND,
        &[&postfix.addr.port().to_string(), "127.0.0.1", "viapf", "30"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("OK")).count(),
        30,
        "{text}\n{}",
        postfix.log()
    );
    let stats = sink.counters();
    let start = std::time::Instant::now();
    while stats.snapshot().messages < 30 {
        d.assert_running();
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} of 30 relayed; postfix log:\n{}",
            stats.snapshot().messages,
            postfix.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    d.stop();
    let counts = sink.message_id_counts();
    for i in 0..30 {
        assert_eq!(counts.get(&format!("<viapf.{i}@test.example>")), Some(&1));
    }
    let pf = postfix.log();
    assert!(
        pf.contains("TLS connection established to 127.0.0.1"),
        "{pf}"
    );
    assert_eq!(
        count_lines(&pf, &["relay=127.0.0.1[127.0.0.1]", "status=sent"]),
        30,
        "{pf}"
    );
}
daemon_test!(postfix_relays_into_ringmail);

/// 2,000 idle connections against `smtpd_max_connections = 1000`: the
/// first thousand are greeted, the others get `421 4.7.0` at once, and the
/// listener serves mail again once they are closed.
fn two_thousand_idle_connections(io: &str) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.unwrap_or(u64::MAX) < 5000 {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_err() || limit.maximum.is_some_and(|m| m < 5000) {
            eprintln!("two_thousand_idle_connections: skipped: too few file descriptors");
            return;
        }
    }
    let sink = start_sink();
    let (sb, port) = listener_sandbox(
        "smtpd_max_connections = 1000\nsmtpd_client_connection_limit = 5000",
        sink.local_addr.port(),
    );
    let mut d = sb.start_daemon(io);
    d.wait_for_log("listening on 127.0.0.1:");
    let (open, greeted, refused) = open_idle(port, 2000);
    assert_eq!((greeted, refused), (1000, 1000));
    drop(open);
    served_after_closing(&mut d, &sb, port, 1000);
    d.stop();
}
daemon_test!(two_thousand_idle_connections);

/// Opens `n` connections to `port` and reads each one's first reply;
/// returns them (still open) with the counts of `220` and `421`.
fn open_idle(port: u16, n: usize) -> (Vec<TcpStream>, usize, usize) {
    let mut open = Vec::new();
    let (mut greeted, mut refused) = (0, 0);
    for _ in 0..n {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        let got = s.read(&mut buf).expect("first reply");
        match &buf[..3.min(got)] {
            b"220" => greeted += 1,
            b"421" => refused += 1,
            other => panic!("{:?}", String::from_utf8_lossy(other)),
        }
        open.push(s);
    }
    (open, greeted, refused)
}

/// Once `closed` sessions have ended (their `disconnect` lines), a new
/// client is served again.
fn served_after_closing(d: &mut Daemon, sb: &Sandbox, port: u16, closed: usize) {
    let log_file = sb.root().join("daemon-0.log");
    d.wait_until("the closed connections counted out", || {
        let log = fs::read_to_string(&log_file).unwrap_or_default();
        count_lines(&log, &["disconnect from unknown[127.0.0.1]"]) >= closed
    });
    let out = python(SEND, &[&port.to_string(), "127.0.0.1", "after", "1"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK 0"));
}
