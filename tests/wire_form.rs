//! Bare CR and bare LF never reach the wire (RFC 5321 2.3.8; the SMTP
//! smuggling family): on every intake path a message whose body holds
//! `x\r.\rMAIL FROM:<evil@x.test>\r…` is delivered with CRLF line ends
//! only, the `.` line that the bare CRs made is dot-stuffed, and the
//! smuggled commands arrive as body text of the one transaction.
//!
//! The receiver is a small scripted SMTP server on 127.0.0.1 written here,
//! which keeps the DATA bytes exactly as they came over the socket (the
//! bundled sink un-stuffs them) and ends the data only at CRLF.CRLF, as
//! RFC 5321 says. Each transaction is also read the way a lenient receiver
//! would read it (a bare CR or LF ends a line): no line may be a lone `.`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;

/// The body every test submits: bare CRs around a `.` and a whole second
/// transaction, then a bare LF.
const SMUGGLING_BODY: &[u8] =
    b"x\r.\rMAIL FROM:<evil@x.test>\rRCPT TO:<victim@x.test>\rDATA\rsmuggled\r.\rlast\nline\n";

/// The body lines the receiver must see (un-stuffed), in order.
const BODY_LINES: [&str; 9] = [
    "x",
    ".",
    "MAIL FROM:<evil@x.test>",
    "RCPT TO:<victim@x.test>",
    "DATA",
    "smuggled",
    ".",
    "last",
    "line",
];

/// One transaction the scripted server accepted.
#[derive(Clone, Debug)]
struct Received {
    mail_from: String,
    rcpts: Vec<String>,
    /// The DATA bytes as sent, without the final `.` CRLF.
    data: Vec<u8>,
}

/// A scripted SMTP server: accepts everything except recipients whose
/// local part starts with `refused`, which get a 550 reply with a bare CR
/// in its text.
struct Scripted {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// Every MAIL FROM argument seen, accepted transaction or not.
    mail_froms: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Scripted {
    fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let mail_froms = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, m, s) = (received.clone(), mail_froms.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (r, m) = (r.clone(), m.clone());
                        std::thread::spawn(move || {
                            let _ = serve_connection(conn, &r, &m);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Scripted {
            addr,
            received,
            mail_froms,
            stop,
            thread: Some(thread),
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits until a transaction for `rcpt` arrived; returns it.
    fn wait_for(&self, d: &mut Daemon, rcpt: &str) -> Received {
        let mut found = None;
        d.wait_until(&format!("a transaction for {rcpt}"), || {
            found = self
                .received()
                .into_iter()
                .find(|t| t.rcpts.iter().any(|r| r == rcpt));
            found.is_some()
        });
        found.expect("found")
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One SMTP connection, no extensions announced (so no pipelining).
fn serve_connection(
    conn: TcpStream,
    received: &Mutex<Vec<Received>>,
    mail_froms: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut out = conn.try_clone()?;
    let mut input = BufReader::new(conn);
    out.write_all(b"220 scripted ESMTP\r\n")?;
    let mut mail_from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = text.to_ascii_uppercase();
        let arg = |prefix: &str| {
            text[prefix.len()..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or_default()
                .to_string()
        };
        let reply: Vec<u8> = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250 scripted\r\n".to_vec()
        } else if upper.starts_with("MAIL FROM:") {
            let from = arg("MAIL FROM:");
            mail_froms.lock().expect("lock").push(from.clone());
            mail_from = Some(from);
            rcpts.clear();
            b"250 2.1.0 Ok\r\n".to_vec()
        } else if upper.starts_with("RCPT TO:") {
            let to = arg("RCPT TO:");
            if to.starts_with("refused") {
                format!("550 5.1.1 <{to}>: no such user\rMAIL FROM:<smuggled@x.test>\r\n")
                    .into_bytes()
            } else {
                rcpts.push(to);
                b"250 2.1.5 Ok\r\n".to_vec()
            }
        } else if upper == "DATA" {
            if mail_from.is_none() || rcpts.is_empty() {
                b"503 5.5.1 no valid recipients\r\n".to_vec()
            } else {
                out.write_all(b"354 go ahead\r\n")?;
                let mut data = Vec::new();
                // Only CRLF.CRLF ends the data (RFC 5321 4.1.1.4).
                while !(data == b".\r\n" || data.ends_with(b"\r\n.\r\n")) {
                    if input.read_until(b'\n', &mut data)? == 0 {
                        return Ok(());
                    }
                }
                data.truncate(data.len() - 3);
                received.lock().expect("lock").push(Received {
                    mail_from: mail_from.take().unwrap_or_default(),
                    rcpts: std::mem::take(&mut rcpts),
                    data,
                });
                b"250 2.0.0 Ok: queued\r\n".to_vec()
            }
        } else if upper == "RSET" {
            mail_from = None;
            rcpts.clear();
            b"250 2.0.0 Ok\r\n".to_vec()
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else if upper == "NOOP" {
            b"250 2.0.0 Ok\r\n".to_vec()
        } else {
            b"502 5.5.2 command not recognized\r\n".to_vec()
        };
        out.write_all(&reply)?;
    }
}

/// A sandbox relaying everything to `server`, with its daemon started.
fn start(server: &Scripted) -> (Sandbox, Daemon) {
    let sb = Sandbox::with(Settings {
        extra: format!("relayhost = \"[127.0.0.1]:{}\"\n", server.addr.port()),
        ..Settings::default()
    });
    let d = sb.start_daemon("epoll");
    (sb, d)
}

/// A whole message for `rcpt` with the smuggling body.
fn message(rcpt: &str, tag: &str) -> Vec<u8> {
    [
        format!(
            "From: Sender <sender@example.org>\n\
             To: {rcpt}\n\
             Subject: smuggling {tag}\n\
             Message-ID: <{tag}@example.org>\n\
             \n"
        )
        .as_bytes(),
        SMUGGLING_BODY,
    ]
    .concat()
}

/// Panics unless every CR in `data` is followed by LF and every LF is
/// preceded by CR.
fn assert_crlf_only(data: &[u8], what: &str) {
    for (i, &b) in data.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(
                data.get(i + 1),
                Some(&b'\n'),
                "{what}: bare CR at byte {i} on the wire: {:?}",
                String::from_utf8_lossy(data)
            );
        }
        if b == b'\n' {
            assert!(
                i > 0 && data[i - 1] == b'\r',
                "{what}: bare LF at byte {i} on the wire: {:?}",
                String::from_utf8_lossy(data)
            );
        }
    }
    assert!(data.ends_with(b"\r\n"), "{what}: no CRLF at the end");
}

/// The lines of `data` as a lenient receiver reads them: CRLF, a bare CR
/// and a bare LF each end a line.
fn lenient_lines(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        out.push(&rest[..end]);
        let skip = match &rest[end..] {
            [b'\r', b'\n', ..] => 2,
            [] => 0,
            _ => 1,
        };
        rest = &rest[end + skip..];
    }
    out
}

/// Checks one delivered transaction: CRLF only, no line that would end
/// the data early on any receiver, and the smuggled commands present as
/// (stuffed) body text in order.
fn assert_smuggling_defused(t: &Received, what: &str) {
    assert_crlf_only(&t.data, what);
    let lines = lenient_lines(&t.data);
    assert!(
        !lines.iter().any(|l| *l == b"."),
        "{what}: a lone `.` line would end the data: {:?}",
        String::from_utf8_lossy(&t.data)
    );
    let unstuffed: Vec<String> = lines
        .iter()
        .map(|l| String::from_utf8_lossy(l.strip_prefix(b".").unwrap_or(l)).into_owned())
        .collect();
    let body_start = unstuffed
        .iter()
        .position(|l| l == "x")
        .unwrap_or_else(|| panic!("{what}: body not found in {unstuffed:?}"));
    assert_eq!(
        &unstuffed[body_start..body_start + BODY_LINES.len()],
        &BODY_LINES,
        "{what}: body lines"
    );
}

/// Nothing but the expected senders ever reached MAIL FROM.
fn assert_no_smuggled_transaction(server: &Scripted) {
    let froms = server.mail_froms.lock().expect("lock").clone();
    assert!(
        !froms
            .iter()
            .any(|f| f.contains("evil") || f.contains("smuggled")),
        "a smuggled MAIL FROM reached the server: {froms:?}"
    );
    for t in server.received() {
        assert!(
            !t.rcpts.iter().any(|r| r.contains("victim")),
            "a smuggled RCPT TO reached the server: {t:?}"
        );
    }
}

#[test]
fn sendmail_body_is_crlf_only_on_the_wire() {
    let server = Scripted::start();
    let (sb, mut d) = start(&server);
    let rcpt = "via-sendmail@example.net";
    sb.sendmail_ok(
        &["-f", "sender@example.org", rcpt],
        &message(rcpt, "sendmail"),
    );
    let t = server.wait_for(&mut d, rcpt);
    d.stop();
    assert_eq!(t.mail_from, "sender@example.org");
    assert_eq!(t.rcpts, [rcpt]);
    assert_smuggling_defused(&t, "sendmail");
    assert_no_smuggled_transaction(&server);
    assert_eq!(server.received().len(), 1);
}

#[test]
fn sendmail_bs_body_is_crlf_only_on_the_wire() {
    let server = Scripted::start();
    let (sb, mut d) = start(&server);
    let rcpt = "via-bs@example.net";
    let mut dialogue =
        format!("EHLO client\r\nMAIL FROM:<sender@example.org>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n")
            .into_bytes();
    // The message, each line (by LF) sent with CRLF: the bare CRs stay
    // inside the lines.
    let msg = message(rcpt, "bs");
    for line in msg.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        dialogue.extend_from_slice(line);
        dialogue.extend_from_slice(b"\r\n");
    }
    dialogue.extend_from_slice(b".\r\nQUIT\r\n");
    let mut c = sb.cmd();
    c.arg("sendmail").arg("-C").arg(&sb.config).arg("-bs");
    let out = run_with_stdin(c, &dialogue);
    let replies = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{replies}");
    assert!(replies.contains("250 2.0.0 Ok: queued as"), "{replies}");
    let t = server.wait_for(&mut d, rcpt);
    d.stop();
    assert_smuggling_defused(&t, "sendmail -bs");
    assert_no_smuggled_transaction(&server);
}

#[test]
fn pickup_file_body_is_crlf_only_on_the_wire() {
    let server = Scripted::start();
    let (sb, mut d) = start(&server);
    let rcpt = "via-pickup@example.net";
    sb.drop_file("smuggle", &message(rcpt, "pickup"));
    let t = server.wait_for(&mut d, rcpt);
    d.stop();
    assert_eq!(t.mail_from, "sender@example.org");
    assert_smuggling_defused(&t, "pickup file");
    assert_no_smuggled_transaction(&server);
}

#[test]
fn x_sender_pickup_file_body_is_crlf_only_on_the_wire() {
    let server = Scripted::start();
    let (sb, mut d) = start(&server);
    let rcpt = "via-x-receiver@example.net";
    let file = [
        format!("X-Sender: app@example.org\r\nX-Receiver: <{rcpt}>\r\n").as_bytes(),
        &message("someone-else@example.net", "x-sender"),
    ]
    .concat();
    sb.drop_file("smuggle-x", &file);
    let t = server.wait_for(&mut d, rcpt);
    d.stop();
    assert_eq!(t.mail_from, "app@example.org");
    assert_eq!(t.rcpts, [rcpt]);
    assert_smuggling_defused(&t, "X-Sender pickup file");
    assert_no_smuggled_transaction(&server);
}

#[test]
fn bounce_notice_is_crlf_only_on_the_wire() {
    let server = Scripted::start();
    let (sb, mut d) = start(&server);
    // The receiver refuses the recipient with a reply holding a bare CR;
    // the notice goes back to the sender through the same server.
    let sender = "bounce-owner@example.org";
    let msg = message("refused@example.net", "bounce");
    let msg = String::from_utf8_lossy(&msg).replace("sender@example.org", sender);
    sb.drop_file("bounces", msg.as_bytes());
    let notice = server.wait_for(&mut d, sender);
    d.stop();
    assert_eq!(notice.mail_from, "", "a notice is sent from <>");
    assert_crlf_only(&notice.data, "bounce notice");
    assert!(
        !lenient_lines(&notice.data).iter().any(|l| *l == b"."),
        "a lone `.` line in the notice"
    );
    let text = String::from_utf8_lossy(&notice.data);
    assert!(text.contains("refused@example.net"), "{text}");
    assert_no_smuggled_transaction(&server);
}
