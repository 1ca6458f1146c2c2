//! Self-tests of the private receiving Postfix (`tests/common/postfix.rs`):
//! mail delivered to it over plain SMTP from a std `TcpStream`, over
//! STARTTLS from a rustls client that verifies the instance's certificate,
//! and with `swaks --tls` when swaks (with TLS support) is installed.
//! Every test skips, with a message, only when Postfix is not installed
//! (or the tests do not run as root).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::postfix::{delivered_to, PostfixReceiver};

/// Generous: delivery takes milliseconds, CI machines are slow.
const DELIVERY: Duration = Duration::from_secs(60);

/// A minimal blocking SMTP client over any stream.
struct Smtp<S: Read + Write> {
    stream: S,
    /// The whole conversation, for failure messages.
    transcript: String,
}

impl<S: Read + Write> Smtp<S> {
    fn new(stream: S) -> Self {
        Smtp {
            stream,
            transcript: String::new(),
        }
    }

    /// Reads one line (up to CRLF), byte by byte so nothing is buffered
    /// past it (the stream changes hands at STARTTLS).
    fn line(&mut self) -> String {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            match self.stream.read(&mut byte) {
                Ok(1) => line.push(byte[0]),
                other => panic!("connection ended ({other:?}) after:\n{}", self.transcript),
            }
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        self.transcript.push_str("S: ");
        self.transcript.push_str(&line);
        line
    }

    /// Reads one (possibly multi-line) reply: its code and text lines.
    fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let line = self.line();
            assert!(
                line.len() >= 5,
                "short reply line {line:?}\n{}",
                self.transcript
            );
            text.push_str(&line[4..]);
            if line.as_bytes()[3] == b' ' {
                return (line[..3].parse().expect("a reply code"), text);
            }
        }
    }

    fn send(&mut self, data: &str) {
        self.transcript.push_str("C: ");
        self.transcript.push_str(data);
        self.stream
            .write_all(data.as_bytes())
            .expect("write to the server");
    }

    /// Sends a command line and reads the reply.
    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(&format!("{line}\r\n"));
        self.reply()
    }

    /// Sends a command and asserts the reply code.
    fn expect(&mut self, line: &str, code: u16) -> String {
        let (got, text) = self.cmd(line);
        assert_eq!(got, code, "{line}: {text}\n{}", self.transcript);
        text
    }

    /// One transaction: MAIL, RCPTs (each with its expected code), DATA.
    fn transaction(&mut self, from: &str, rcpts: &[(&str, u16)], message: &str) {
        self.expect(&format!("MAIL FROM:<{from}>"), 250);
        for (rcpt, code) in rcpts {
            self.expect(&format!("RCPT TO:<{rcpt}>"), *code);
        }
        self.expect("DATA", 354);
        self.send(message);
        let (code, text) = self.cmd(".");
        assert_eq!(code, 250, "end of data: {text}\n{}", self.transcript);
        assert!(text.contains("queued as"), "{text}");
    }
}

/// A message in wire form (CRLF, dot-stuffed), without the final dot.
fn message(subject: &str, marker: &str) -> String {
    format!(
        "From: Sender <sender@sender.test>\r\nTo: rcpt@example.net\r\nSubject: {subject}\r\n\
         Message-ID: <{marker}@sender.test>\r\n\r\nfirst body line {marker}\r\n\
         ..a line that starts with a dot\r\n\r\nlast line\r\n"
    )
}

/// The body a receiver stores for [`message`] (dot-stuffing undone).
fn body(marker: &str) -> String {
    format!("first body line {marker}\n.a line that starts with a dot\n\nlast line\n")
}

fn connect(addr: SocketAddr) -> Smtp<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect to the private Postfix");
    stream.set_read_timeout(Some(DELIVERY)).unwrap();
    let mut smtp = Smtp::new(stream);
    let (code, text) = smtp.reply();
    assert_eq!(code, 220, "{text}");
    smtp
}

/// The delivered file's header and body, with LF line ends as Maildir has.
fn split(path: &Path) -> (String, String) {
    let text = fs::read_to_string(path).expect("read a delivered message");
    let (head, body) = text.split_once("\n\n").expect("a header and a body");
    (head.to_string(), body.to_string())
}

#[test]
fn plain_delivery_to_two_recipients() {
    let Some(pf) = PostfixReceiver::start(&["example.net", "example.org"]) else {
        return;
    };
    let mut smtp = connect(pf.addr);
    let ehlo = smtp.expect("EHLO client.test", 250);
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(ehlo.contains("PIPELINING"), "{ehlo}");
    smtp.transaction(
        "sender@sender.test",
        &[
            ("bob@example.net", 250),
            ("Alice@Example.ORG", 250),
            ("reject-me@example.net", 550),
            ("defer-me@example.net", 450),
            ("someone@elsewhere.test", 554),
        ],
        &message("plain", "m-plain-1"),
    );
    smtp.expect("QUIT", 221);

    let files = pf.wait_for_messages(2, DELIVERY);
    assert_eq!(files.len(), 2, "{files:?}");
    let mut rcpts: Vec<String> = files
        .iter()
        .map(|f| delivered_to(f).expect("Delivered-To"))
        .collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        vec!["Alice@Example.ORG", "bob@example.net"],
        "the address as given at RCPT"
    );
    for f in &files {
        let (head, text) = split(f);
        assert!(head.contains("Return-Path: <sender@sender.test>"), "{head}");
        assert!(head.contains("Subject: plain"), "{head}");
        assert!(
            head.contains("Message-ID: <m-plain-1@sender.test>"),
            "{head}"
        );
        assert_eq!(text, body("m-plain-1"));
    }
    let log = pf.log();
    assert!(log.contains("status=sent (delivered to maildir)"), "{log}");
    assert!(!log.contains("TLS connection established"), "{log}");
}

#[test]
fn starttls_with_rustls_verifying_the_certificate() {
    let Some(pf) = PostfixReceiver::start(&["example.net"]) else {
        return;
    };
    let mut smtp = connect(pf.addr);
    smtp.expect("EHLO client.test", 250);
    smtp.expect("STARTTLS", 220);

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(pf.cert_der.clone()))
        .expect("the instance's certificate as a root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = Smtp::new(rustls::StreamOwned::new(conn, smtp.stream));
    tls.transcript = smtp.transcript;

    let ehlo = tls.expect("EHLO client.test", 250);
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    tls.transaction(
        "sender@sender.test",
        &[("carol@example.net", 250)],
        &message("tls", "m-tls-1"),
    );
    tls.expect("QUIT", 221);

    let files = pf.wait_for_messages(1, DELIVERY);
    assert_eq!(
        delivered_to(&files[0]).as_deref(),
        Some("carol@example.net")
    );
    assert_eq!(split(&files[0]).1, body("m-tls-1"));
    let log = pf.wait_for_log("Anonymous TLS connection established from", DELIVERY);
    assert!(log.contains("127.0.0.1"), "{log}");
}

/// Whether swaks is installed and can do TLS (it needs Net::SSLeay, only a
/// recommendation of the Debian package).
fn swaks_with_tls() -> bool {
    Command::new("swaks")
        .arg("--support")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("TLS supported"))
        .unwrap_or(false)
}

#[test]
fn starttls_with_swaks() {
    let Some(pf) = PostfixReceiver::start(&["example.net"]) else {
        return;
    };
    if !swaks_with_tls() {
        eprintln!("skipped: swaks is not installed or has no TLS support (libnet-ssleay-perl)");
        return;
    }
    let out = Command::new("swaks")
        .args([
            "--server",
            &pf.addr.to_string(),
            "--tls",
            "--helo",
            "client.test",
        ])
        .args(["--from", "sender@sender.test", "--to", "dave@example.net"])
        .args([
            "--header",
            "Subject: swaks",
            "--body",
            "swaks body m-swaks-1",
        ])
        .output()
        .expect("run swaks");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "swaks failed:\n{transcript}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let files = pf.wait_for_messages(1, DELIVERY);
    assert_eq!(delivered_to(&files[0]).as_deref(), Some("dave@example.net"));
    let (head, text) = split(&files[0]);
    assert!(head.contains("Subject: swaks"), "{head}");
    assert_eq!(text.trim_end(), "swaks body m-swaks-1");
    pf.wait_for_log("Anonymous TLS connection established from", DELIVERY);
}

#[test]
fn two_instances_at_once_without_tls() {
    let no_tls = [("smtpd_tls_security_level", "none")];
    let Some(a) = PostfixReceiver::start_with(&["a.test"], &no_tls) else {
        return;
    };
    let b = PostfixReceiver::start_with(&["b.test"], &no_tls).expect("a second instance");
    assert_ne!(a.addr, b.addr);
    assert_ne!(a.hostname, b.hostname);
    for (pf, rcpt, other) in [(&a, "x@a.test", "x@b.test"), (&b, "y@b.test", "y@a.test")] {
        let mut smtp = connect(pf.addr);
        let ehlo = smtp.expect("EHLO client.test", 250);
        assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
        smtp.transaction(
            "sender@sender.test",
            &[(rcpt, 250), (other, 554)],
            &message("two", rcpt),
        );
        smtp.expect("QUIT", 221);
    }
    for (pf, rcpt) in [(&a, "x@a.test"), (&b, "y@b.test")] {
        let files = pf.wait_for_messages(1, DELIVERY);
        assert_eq!(files.len(), 1);
        assert_eq!(delivered_to(&files[0]).as_deref(), Some(rcpt));
    }
}

#[test]
fn drop_stops_the_instance() {
    let Some(pf) = PostfixReceiver::start(&["example.net"]) else {
        return;
    };
    let (addr, hostname, maildir) = (pf.addr, pf.hostname.clone(), pf.maildir());
    let master = pf.master_pid().expect("the master's pid file");
    assert!(Path::new(&format!("/proc/{master}")).exists());
    drop(pf);
    // The master was reaped (by `postfix start-fg`, reaped by the harness).
    assert!(
        !Path::new(&format!("/proc/{master}")).exists(),
        "master {master} is gone"
    );
    // The port may serve another test's instance by now, not this one.
    if let Ok(stream) = TcpStream::connect(addr) {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut first = [0u8; 256];
        let n = (&stream).read(&mut first).unwrap_or(0);
        let banner = String::from_utf8_lossy(&first[..n]);
        assert!(!banner.contains(&hostname), "{banner}");
    }
    assert!(!maildir.exists(), "the instance's directory is removed");
}
