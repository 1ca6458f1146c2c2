//! The sink's STARTTLS and AUTH over real loopback sockets, spoken by hand:
//! plain SMTP over std's `TcpStream`, then rustls's blocking
//! `StreamOwned` after STARTTLS.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::certs::{self, Pki};
use ringmail::sink::{self, Faults, SinkConfig, SinkHandle};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;

/// The socket, before or after STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A hand-driven SMTP client.
struct Client {
    stream: Option<Stream>,
    /// Bytes read but not yet returned as reply lines.
    buf: Vec<u8>,
}

impl Client {
    /// Connects and reads the 220 greeting.
    fn greeted(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).expect("connect to the sink");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut c = Client {
            stream: Some(Stream::Plain(tcp)),
            buf: Vec::new(),
        };
        c.expect("220");
        c
    }

    fn stream(&mut self) -> &mut Stream {
        self.stream.as_mut().expect("connection in use")
    }

    fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let s = self.stream();
        s.write_all(bytes.as_ref()).unwrap();
        s.flush().unwrap();
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = String::from_utf8(line).unwrap();
                assert!(line.ends_with("\r\n"), "line without CRLF: {line:?}");
                return line;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream().read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed; unread: {:?}", self.buf);
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One whole reply (all lines of a multi-line one), CRLF kept.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let line = self.line();
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    fn expect(&mut self, code: &str) -> String {
        let r = self.reply();
        assert!(r.starts_with(code), "expected {code}, got {r:?}");
        r
    }

    fn cmd(&mut self, line: &str, code: &str) -> String {
        self.send(format!("{line}\r\n"));
        self.expect(code)
    }

    /// STARTTLS (expecting 220), then the TLS handshake for `name`. What
    /// the server sent after its 220 is dropped (RFC 3207 section 6).
    fn starttls(&mut self, config: Arc<ClientConfig>, name: &str) -> io::Result<()> {
        self.cmd("STARTTLS", "220 2.0.0 Ready to start TLS");
        self.buf.clear();
        self.handshake(config, name)
    }

    fn handshake(&mut self, config: Arc<ClientConfig>, name: &str) -> io::Result<()> {
        let Some(Stream::Plain(mut tcp)) = self.stream.take() else {
            panic!("TLS already active");
        };
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut tls = ClientConnection::new(config, name).map_err(io::Error::other)?;
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp)?;
        }
        self.stream = Some(Stream::Tls(Box::new(StreamOwned::new(tls, tcp))));
        Ok(())
    }

    /// A complete transaction, one command at a time.
    fn transaction(&mut self, from: &str, rcpts: &[&str], body: &str) -> String {
        self.cmd(&format!("MAIL FROM:<{from}>"), "250");
        for r in rcpts {
            self.cmd(&format!("RCPT TO:<{r}>"), "250");
        }
        self.cmd("DATA", "354");
        self.send(body);
        self.send(".\r\n");
        self.expect("250")
    }
}

fn message(id: &str) -> String {
    format!("Message-ID: <{id}@test>\r\nSubject: tls\r\n\r\nbody\r\n")
}

/// A CA, a certificate for `mx.test` and `localhost`, and its files.
fn pki(dir: &std::path::Path) -> Pki {
    certs::write_pki(dir, &["mx.test", "localhost"])
}

fn start(config: SinkConfig) -> SinkHandle {
    sink::start(config).expect("start the sink")
}

fn envelope(dir: &std::path::Path, n: u64) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(format!("{n}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn starttls_then_a_message_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let dump = dir.path().join("dump");
    let h = start(SinkConfig {
        tls: Some(sink::tls_server_config(&pki.cert_file, &pki.key_file).unwrap()),
        dump_dir: Some(dump.clone()),
        ..SinkConfig::default()
    });
    let mut c = Client::greeted(h.local_addr);
    let ehlo = c.cmd("EHLO plain.test", "250");
    assert!(ehlo.contains("250-STARTTLS\r\n"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    c.transaction("a@x", &["b@y"], &message("plain"));
    c.starttls(pki.ca.client_config(), "mx.test").unwrap();
    let ehlo = c.cmd("EHLO secure.test", "250");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    c.cmd("STARTTLS", "554 5.5.1");
    c.transaction("a@x", &["b@y"], &message("tls"));
    // Larger than a TLS record and the sink's read buffer.
    let mut big = message("big");
    for i in 0..5000 {
        big.push_str(&format!(
            "line {i} of a message spanning many TLS records\r\n"
        ));
    }
    c.transaction("a@x", &["c@y"], &big);
    c.cmd("QUIT", "221");
    let s = h.shutdown();
    assert_eq!((s.messages, s.tls_sessions), (3, 1));
    assert_eq!(envelope(&dump, 1)["tls"], false);
    let e = envelope(&dump, 2);
    assert_eq!(e["tls"], true);
    assert_eq!(e["auth"], serde_json::Value::Null);
    assert_eq!(e["helo"], "secure.test");
    assert_eq!(std::fs::read(dump.join("3.eml")).unwrap(), big.as_bytes());
}

#[test]
fn commands_pipelined_after_starttls_are_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let h = start(SinkConfig {
        tls: Some(pki.server.server_config()),
        ..SinkConfig::default()
    });
    let mut c = Client::greeted(h.local_addr);
    c.cmd("EHLO c", "250");
    // The injection of CVE-2011-0411: a command after STARTTLS in the same
    // packet must not be executed as if it came over TLS.
    c.send("STARTTLS\r\nMAIL FROM:<evil@x>\r\n");
    c.expect("220");
    c.handshake(pki.ca.client_config(), "localhost").unwrap();
    c.cmd("NOOP", "250 2.0.0 Ok");
    c.cmd("MAIL FROM:<a@x>", "503 5.5.1 Error: send HELO/EHLO first");
    c.cmd("QUIT", "221");
    assert_eq!(h.shutdown().tls_sessions, 1);
}

#[test]
fn auth_plain_and_login_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let dump = dir.path().join("dump");
    let h = start(SinkConfig {
        tls: Some(pki.server.server_config()),
        auth: Some(("alice".into(), "s3cret".into())),
        dump_dir: Some(dump.clone()),
        ..SinkConfig::default()
    });
    let plain = |user: &str, password: &str| B64.encode(format!("\0{user}\0{password}"));

    let mut c = Client::greeted(h.local_addr);
    let ehlo = c.cmd("EHLO c", "250");
    assert!(!ehlo.contains("AUTH"), "not offered before TLS: {ehlo}");
    c.cmd(
        &format!("AUTH PLAIN {}", plain("alice", "s3cret")),
        "538 5.7.11 Encryption required for requested authentication mechanism",
    );
    c.cmd("MAIL FROM:<a@x>", "530 5.7.0 Authentication required");
    c.starttls(pki.ca.client_config(), "mx.test").unwrap();
    let ehlo = c.cmd("EHLO c", "250");
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN\r\n"), "{ehlo}");
    c.cmd("MAIL FROM:<a@x>", "530 5.7.0 Authentication required");
    c.cmd(
        &format!("AUTH PLAIN {}", plain("alice", "wrong")),
        "535 5.7.8 Authentication credentials invalid",
    );
    c.cmd("AUTH PLAIN", "334 ");
    c.cmd(
        &plain("alice", "s3cret"),
        "235 2.7.0 Authentication successful",
    );
    c.transaction("a@x", &["b@y"], &message("auth"));
    c.cmd("QUIT", "221");

    let mut c = Client::greeted(h.local_addr);
    c.cmd("EHLO c", "250");
    c.starttls(pki.ca.client_config(), "mx.test").unwrap();
    c.cmd("EHLO c", "250");
    c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6");
    c.cmd(&B64.encode("alice"), "334 UGFzc3dvcmQ6");
    c.cmd(&B64.encode("nope"), "535 5.7.8");
    c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6");
    c.cmd(&B64.encode("alice"), "334 UGFzc3dvcmQ6");
    c.cmd(&B64.encode("s3cret"), "235 2.7.0");
    c.cmd("AUTH LOGIN", "503 5.5.1");
    c.cmd("QUIT", "221");

    let s = h.shutdown();
    assert_eq!((s.tls_sessions, s.auth_ok, s.auth_failed), (2, 2, 2));
    let e = envelope(&dump, 1);
    assert_eq!(
        (e["tls"].clone(), e["auth"].clone()),
        (true.into(), "alice".into())
    );
}

#[test]
fn auth_in_plaintext_when_allowed() {
    let h = start(SinkConfig {
        auth: Some(("bob".into(), "pw:with:colons".into())),
        auth_plaintext: true,
        ..SinkConfig::default()
    });
    let mut c = Client::greeted(h.local_addr);
    let ehlo = c.cmd("EHLO c", "250");
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN\r\n") && !ehlo.contains("STARTTLS"));
    let token = B64.encode("\0bob\0pw:with:colons");
    c.cmd(&format!("AUTH PLAIN {token}"), "235");
    c.transaction("a@x", &["b@y"], &message("plaintext-auth"));
    c.cmd("QUIT", "221");
    assert_eq!(h.shutdown().auth_ok, 1);
}

#[test]
fn a_broken_starttls_fails_the_clients_handshake() {
    let ca = certs::test_ca();
    let h = start(SinkConfig {
        faults: Faults {
            tls_broken: true,
            ..Faults::default()
        },
        ..SinkConfig::default()
    });
    for keep_garbage in [false, true] {
        let mut c = Client::greeted(h.local_addr);
        let ehlo = c.cmd("EHLO c", "250");
        assert!(ehlo.contains("250-STARTTLS\r\n"), "{ehlo}");
        c.send("STARTTLS\r\n");
        c.expect("220");
        if keep_garbage {
            // A client that takes what followed the 220 as TLS sees garbage.
            let e = {
                let Some(Stream::Plain(tcp)) = c.stream.take() else {
                    unreachable!()
                };
                let name = ServerName::try_from("localhost").unwrap();
                let mut tls = ClientConnection::new(ca.client_config(), name).unwrap();
                let mut rd = &c.buf[..];
                let mut tcp = tcp;
                let mut result = Ok(());
                while tls.is_handshaking() && result.is_ok() {
                    result = if rd.is_empty() {
                        tls.complete_io(&mut tcp).map(|_| ())
                    } else {
                        tls.read_tls(&mut rd)
                            .and_then(|_| tls.process_new_packets().map_err(io::Error::other))
                            .map(|_| ())
                    };
                }
                result.unwrap_err()
            };
            let text = e.to_string().to_lowercase();
            assert!(text.contains("invalid") || text.contains("corrupt"), "{e}");
        } else {
            c.buf.clear();
            let e = c.handshake(ca.client_config(), "localhost").unwrap_err();
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::InvalidData
                        | io::ErrorKind::ConnectionReset
                ),
                "{e:?}"
            );
        }
    }
    let s = h.shutdown();
    assert_eq!((s.tls_sessions, s.disconnects), (0, 2));
}

#[test]
fn the_cli_flags() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut child = Command::new(common::BIN)
        .args(["sink", "--listen", "127.0.0.1:0", "--stats-every", "0"])
        .arg("--tls-cert")
        .arg(&pki.cert_file)
        .arg("--tls-key")
        .arg(&pki.key_file)
        .args(["--auth", "carol:pa:ss"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringmail sink");
    let mut stderr = child.stderr.take().unwrap();
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while !first.ends_with(b"\n") {
        assert_eq!(stderr.read(&mut byte).unwrap(), 1, "{first:?}");
        first.push(byte[0]);
    }
    let first = String::from_utf8(first).unwrap();
    let addr: SocketAddr = first
        .trim()
        .strip_prefix("ringmail sink: listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .parse()
        .unwrap();
    let mut c = Client::greeted(addr);
    c.cmd("EHLO c", "250-");
    c.starttls(pki.ca.client_config(), "localhost").unwrap();
    assert!(c.cmd("EHLO c", "250").contains("AUTH PLAIN LOGIN"));
    c.cmd(
        &format!("AUTH PLAIN {}", B64.encode("\0carol\0pa:ss")),
        "235",
    );
    c.cmd("QUIT", "221");
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (stats["tls_sessions"].as_u64(), stats["auth_ok"].as_u64()),
        (Some(1), Some(1))
    );

    // Bad flags are refused with a clear message.
    let out = Command::new(common::BIN)
        .args(["sink", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&pki.cert_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let missing = dir.path().join("missing.key");
    let out = Command::new(common::BIN)
        .args(["sink", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&pki.cert_file)
        .arg("--tls-key")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot load TLS certificate or key {}",
            missing.display()
        )),
        "{err}"
    );
    let out = Command::new(common::BIN)
        .args(["sink", "--listen", "127.0.0.1:0", "--auth", "nocolon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("USER:PASSWORD"));
}
