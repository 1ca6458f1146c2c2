//! The bundled sink over real loopback sockets: raw SMTP written by hand
//! with std's blocking `TcpStream`, checked reply by reply.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringmail::sink::{self, Faults, Latency, SinkConfig, SinkError, SinkHandle};

/// A hand-driven SMTP client.
struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to the sink");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// Connects and reads the 220 greeting.
    fn greeted(addr: SocketAddr) -> Self {
        let mut c = Client::connect(addr);
        c.expect("220");
        c
    }

    fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.writer.write_all(bytes.as_ref()).unwrap();
    }

    /// One whole reply (all lines of a multi-line one), CRLF kept.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "connection closed; reply so far: {all:?}");
            assert!(line.ends_with("\r\n"), "line without CRLF: {line:?}");
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    /// Reads a reply and checks its code; returns it.
    fn expect(&mut self, code: &str) -> String {
        let r = self.reply();
        assert!(r.starts_with(code), "expected {code}, got {r:?}");
        r
    }

    /// Sends one command and checks the reply code.
    fn cmd(&mut self, line: &str, code: &str) -> String {
        self.send(format!("{line}\r\n"));
        self.expect(code)
    }

    /// True when the server closed the connection (nothing more to read).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            Err(e) => panic!("reading to the end: {e}"),
        }
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

fn start(config: SinkConfig) -> SinkHandle {
    sink::start(config).expect("start the sink")
}

fn message(id: &str, text: &str) -> String {
    format!("Message-ID: {id}\r\nSubject: test\r\n\r\n{text}\r\n")
}

#[test]
fn transaction_one_command_at_a_time() {
    let h = start(SinkConfig {
        pipelining: false,
        hostname: "sink.test".into(),
        ..SinkConfig::default()
    });
    assert!(h.local_addr.ip().is_loopback());
    assert_ne!(h.local_addr.port(), 0);
    let mut c = Client::connect(h.local_addr);
    assert_eq!(c.reply(), "220 sink.test ESMTP ringmail-sink\r\n");
    let ehlo = c.cmd("EHLO client.test", "250");
    assert_eq!(
        ehlo,
        "250-sink.test\r\n250-SIZE\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n"
    );
    c.cmd(
        "MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8",
        "250 2.1.0",
    );
    c.cmd("RCPT TO:<b@example.net>", "250 2.1.5");
    c.cmd("RCPT TO:<c@example.net>", "250 2.1.5");
    c.cmd("DATA", "354");
    let body = message("<one@example.com>", "hello");
    c.send(&body);
    c.send(".\r\n");
    assert_eq!(c.reply(), "250 2.0.0 Ok: queued as 1\r\n");
    c.cmd("NOOP", "250 2.0.0");
    c.cmd("VRFY bob", "252");
    c.cmd("RSET", "250");
    c.cmd("QUIT", "221 2.0.0");
    assert!(c.closed());

    let s = h.shutdown();
    assert_eq!(s.connections, 1);
    assert_eq!(s.messages, 1);
    assert_eq!(s.recipients, 2);
    assert_eq!(s.bytes, body.len() as u64);
    assert_eq!(s.unique_message_ids, 1);
    assert_eq!(s.duplicate_message_ids, 0);
    assert_eq!(s.open_connections, 0);
}

#[test]
fn pipelined_session_in_one_write() {
    let h = start(SinkConfig::default());
    let mut c = Client::connect(h.local_addr);
    let mut all = String::from("EHLO client.test\r\nMAIL FROM:<a@example.com> SIZE=200\r\n");
    all.push_str("RCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n");
    all.push_str(&message("<p1@example.com>", "first"));
    all.push_str(".\r\nMAIL FROM:<>\r\nRCPT TO:<d@example.net>\r\nDATA\r\n");
    all.push_str(&message("<p2@example.com>", "second"));
    all.push_str(".\r\nQUIT\r\n");
    c.send(&all);
    c.expect("220");
    assert!(c.expect("250-").contains("250-PIPELINING\r\n"));
    for code in ["250", "250", "250", "354", "250 2.0.0 Ok: queued as 1"] {
        c.expect(code);
    }
    for code in ["250", "250", "354", "250 2.0.0 Ok: queued as 2", "221"] {
        c.expect(code);
    }
    assert!(c.closed());
    let s = h.shutdown();
    assert_eq!((s.messages, s.recipients, s.unique_message_ids), (2, 3, 2));
}

#[test]
fn dot_unstuffing_and_end_marker_split_across_writes() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(SinkConfig {
        dump_dir: Some(dir.path().to_path_buf()),
        ..SinkConfig::default()
    });
    let mut c = Client::greeted(h.local_addr);
    c.cmd("EHLO c", "250");
    c.cmd("MAIL FROM:<a@b>", "250");
    c.cmd("RCPT TO:<c@d>", "250");
    c.cmd("DATA", "354");
    let pieces: [&[u8]; 9] = [
        b"Message-ID: <dots@x>\r\n\r\n",
        b"..starts with a dot\r\n",
        b".",
        b".\r\n",
        b"middle\r",
        b"\n",
        b".",
        b"\r",
        b"\n",
    ];
    for p in pieces {
        c.send(p);
        // Give each piece its own segment and read.
        std::thread::sleep(Duration::from_millis(15));
    }
    c.expect("250 2.0.0 Ok: queued as 1");
    c.cmd("QUIT", "221");
    let got = std::fs::read(dir.path().join("1.eml")).unwrap();
    assert_eq!(
        got,
        b"Message-ID: <dots@x>\r\n\r\n.starts with a dot\r\n.\r\nmiddle\r\n"
    );
    assert_eq!(h.shutdown().bytes, got.len() as u64);
}

#[test]
fn message_ids_are_counted() {
    let h = start(SinkConfig::default());
    let mut c = Client::greeted(h.local_addr);
    c.cmd("EHLO c", "250");
    c.transaction("a@b", &["r@d"], &message("<same@x>", "1"));
    c.transaction("a@b", &["r@d"], &message("<same@x>", "2"));
    c.transaction("a@b", &["r@d", "s@d"], &message("<other@x>", "3"));
    c.transaction("a@b", &["r@d"], "Subject: no id\r\n\r\nx\r\n");
    c.cmd("QUIT", "221");
    let counts = h.message_id_counts();
    assert_eq!(counts.get("<same@x>"), Some(&2));
    assert_eq!(counts.get("<other@x>"), Some(&1));
    assert_eq!(counts.len(), 2);
    let s = h.shutdown();
    assert_eq!(s.messages, 4);
    assert_eq!(s.unique_message_ids, 2);
    assert_eq!(s.duplicate_message_ids, 1);
    assert_eq!(s.duplicate_deliveries, 1);
    assert_eq!(s.missing_message_ids, 1);
    assert_eq!(s.recipients, 5);
}

#[test]
fn connections_beyond_the_limit_get_421() {
    let h = start(SinkConfig {
        max_connections: Some(2),
        ..SinkConfig::default()
    });
    let mut a = Client::greeted(h.local_addr);
    let mut b = Client::greeted(h.local_addr);
    let mut extra = Client::connect(h.local_addr);
    assert_eq!(
        extra.reply(),
        "421 4.7.0 localhost too many connections\r\n"
    );
    assert!(extra.closed());
    a.cmd("QUIT", "221");
    assert!(a.closed());
    drop(a);
    // `extra` is still open on our side, but refused connections do not
    // count against the limit.
    let (s, ok) = h.wait_for(Duration::from_secs(10), |s| s.open_connections == 2);
    assert!(ok, "{s:?}");
    let mut again = Client::greeted(h.local_addr);
    again.cmd("QUIT", "221");
    b.cmd("QUIT", "221");
    drop(extra);
    let s = h.shutdown();
    assert_eq!(s.connections, 4);
    assert_eq!(s.refused_connections, 1);
    assert_eq!(s.max_concurrent_connections, 3);
}

#[test]
fn max_concurrent_connections_is_recorded() {
    let h = start(SinkConfig::default());
    let clients: Vec<Client> = (0..5).map(|_| Client::greeted(h.local_addr)).collect();
    assert_eq!(h.stats().open_connections, 5);
    drop(clients);
    let (s, ok) = h.wait_for(Duration::from_secs(10), |s| s.open_connections == 0);
    assert!(ok, "{s:?}");
    assert_eq!(s.max_concurrent_connections, 5);
}

#[test]
fn without_esmtp_only_helo_works() {
    let h = start(SinkConfig {
        esmtp: false,
        ..SinkConfig::default()
    });
    let mut c = Client::greeted(h.local_addr);
    assert_eq!(
        c.cmd("EHLO client.test", "502"),
        "502 Error: command not implemented\r\n"
    );
    assert_eq!(c.cmd("HELO client.test", "250"), "250 localhost\r\n");
    c.cmd("MAIL FROM:<a@b> SIZE=10", "555");
    assert_eq!(
        c.transaction("a@b", &["c@d"], &message("<h@x>", "x")),
        "250 Ok: queued as 1\r\n"
    );
    c.cmd("QUIT", "221");
    assert_eq!(h.shutdown().messages, 1);
}

/// A sink whose one fault has probability 1.
fn faulty(faults: Faults) -> SinkHandle {
    start(SinkConfig {
        faults,
        seed: Some(7),
        ..SinkConfig::default()
    })
}

#[test]
fn rcpt_faults() {
    for (faults, code) in [
        (
            Faults {
                rcpt_tempfail: 1.0,
                ..Faults::default()
            },
            "451 4.3.0",
        ),
        (
            Faults {
                rcpt_permfail: 1.0,
                ..Faults::default()
            },
            "550 5.1.1",
        ),
    ] {
        let h = faulty(faults);
        let mut c = Client::greeted(h.local_addr);
        c.cmd("EHLO c", "250");
        c.cmd("MAIL FROM:<a@b>", "250");
        c.cmd("RCPT TO:<c@d>", code);
        c.cmd("RCPT TO:<e@d>", code);
        c.cmd("DATA", "554 5.5.1");
        c.cmd("QUIT", "221");
        let s = h.shutdown();
        assert_eq!((s.rejected_rcpt, s.messages), (2, 0), "{faults:?}");
    }
}

#[test]
fn data_faults() {
    for (faults, code) in [
        (
            Faults {
                data_tempfail: 1.0,
                ..Faults::default()
            },
            "451 4.3.0",
        ),
        (
            Faults {
                data_permfail: 1.0,
                ..Faults::default()
            },
            "554 5.6.0",
        ),
    ] {
        let h = faulty(faults);
        let mut c = Client::greeted(h.local_addr);
        c.cmd("EHLO c", "250");
        c.cmd("MAIL FROM:<a@b>", "250");
        c.cmd("RCPT TO:<c@d>", "250");
        c.cmd("DATA", "354");
        c.send(message("<f@x>", "x"));
        c.send(".\r\n");
        c.expect(code);
        // The transaction is over; a new one may start.
        c.cmd("MAIL FROM:<a@b>", "250");
        c.cmd("QUIT", "221");
        let s = h.shutdown();
        assert_eq!(
            (s.rejected_data, s.messages, s.unique_message_ids),
            (1, 0, 0)
        );
    }
}

#[test]
fn injected_421_disconnect() {
    let h = faulty(Faults {
        disconnect_421: 1.0,
        ..Faults::default()
    });
    let mut c = Client::greeted(h.local_addr);
    c.cmd("EHLO c", "250");
    // Pipelined: the 421 answers MAIL and nothing after it is answered.
    c.send("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    assert_eq!(
        c.reply(),
        "421 4.4.2 localhost Error: closing connection (injected fault)\r\n"
    );
    assert!(c.closed());
    let s = h.shutdown();
    assert_eq!((s.disconnects, s.messages), (1, 0));
}

#[test]
fn size_is_announced_and_enforced() {
    let h = start(SinkConfig {
        max_message_size: Some(1000),
        ..SinkConfig::default()
    });
    let mut c = Client::greeted(h.local_addr);
    assert!(c.cmd("EHLO c", "250").contains("250-SIZE 1000\r\n"));
    c.cmd("MAIL FROM:<a@b> SIZE=1001", "552 5.3.4");
    c.cmd("MAIL FROM:<a@b> SIZE=1000", "250");
    c.cmd("RCPT TO:<c@d>", "250");
    c.cmd("DATA", "354");
    let big = format!("{}\r\n", "x".repeat(1500));
    c.send(&big);
    c.send(".\r\n");
    c.expect("552 5.3.4");
    c.transaction("a@b", &["c@d"], &message("<small@x>", "fits"));
    c.cmd("QUIT", "221");
    let s = h.shutdown();
    assert_eq!((s.rejected_mail, s.rejected_data, s.messages), (1, 1, 1));
}

#[test]
fn dump_dir_holds_message_and_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("got");
    let h = start(SinkConfig {
        dump_dir: Some(dump.clone()),
        ..SinkConfig::default()
    });
    assert!(dump.is_dir(), "created at start");
    let mut c = Client::greeted(h.local_addr);
    c.cmd("EHLO client.test", "250");
    let first = message("<d1@x>", "..one");
    c.transaction("", &["r1@d", "r2@d"], &first);
    // A message larger than the sink's read buffer, with stuffed lines
    // falling on every kind of boundary.
    let mut big = String::from("Message-ID: <d2@x>\r\n\r\n");
    for i in 0..20_000 {
        big.push_str(&format!(".{i} line of the big message\r\n"));
    }
    c.send("MAIL FROM:<s@x> SIZE=999999\r\n");
    c.expect("250");
    c.cmd("RCPT TO:<r3@d>", "250");
    c.cmd("DATA", "354");
    c.send(big.replace("\r\n.", "\r\n.."));
    c.send(".\r\n");
    c.expect("250 2.0.0 Ok: queued as 2");
    c.cmd("QUIT", "221");
    let s = h.shutdown();

    let eml1 = std::fs::read_to_string(dump.join("1.eml")).unwrap();
    assert_eq!(eml1, first.replacen("\r\n..", "\r\n.", 1));
    let env1: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dump.join("1.json")).unwrap()).unwrap();
    assert_eq!(env1["number"], 1);
    assert_eq!(env1["mail_from"], "");
    assert_eq!(env1["rcpt_to"], serde_json::json!(["r1@d", "r2@d"]));
    assert_eq!(env1["message_id"], "<d1@x>");
    assert_eq!(env1["helo"], "client.test");
    assert_eq!(env1["size"], eml1.len());

    let eml2 = std::fs::read(dump.join("2.eml")).unwrap();
    assert_eq!(eml2, big.as_bytes());
    let env2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dump.join("2.json")).unwrap()).unwrap();
    assert_eq!(env2["mail_params"], "SIZE=999999");
    assert_eq!(s.bytes, (eml1.len() + eml2.len()) as u64);
    let mut names: Vec<_> = std::fs::read_dir(&dump)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["1.eml", "1.json", "2.eml", "2.json"]);
}

#[test]
fn out_of_sequence_unknown_and_bare_lf() {
    let h = start(SinkConfig::default());
    let mut c = Client::greeted(h.local_addr);
    c.cmd("MAIL FROM:<a@b>", "503 5.5.1");
    c.cmd("EHLO c", "250");
    c.cmd("RCPT TO:<c@d>", "503");
    c.cmd("DATA", "503");
    c.cmd("FROB", "502 5.5.2");
    c.send("MAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\nx\n.\nQUIT\n");
    for code in ["250", "250", "354", "250", "221"] {
        c.expect(code);
    }
    assert!(c.closed());
    assert_eq!(h.shutdown().messages, 1);
}

#[test]
fn reply_latency() {
    let h = start(SinkConfig {
        latency: Latency::Fixed(Duration::from_millis(40)),
        ..SinkConfig::default()
    });
    let t = Instant::now();
    let mut c = Client::greeted(h.local_addr);
    c.cmd("EHLO c", "250");
    c.cmd("QUIT", "221");
    assert!(
        t.elapsed() >= Duration::from_millis(120),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn accept_hook_and_many_parallel_clients() {
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    let h = start(SinkConfig {
        threads: 2,
        on_accept: Some(Arc::new(move |m| {
            assert!(m.message_id.is_some_and(|id| id.starts_with("<par")));
            assert!(m.head.starts_with(b"Message-ID: "));
            counter.fetch_add(1, Ordering::Relaxed);
        })),
        ..SinkConfig::default()
    });
    let addr = h.local_addr;
    let clients: Vec<_> = (0..6)
        .map(|k| {
            std::thread::spawn(move || {
                let mut c = Client::greeted(addr);
                c.cmd("EHLO c", "250");
                let mut batch = String::new();
                for i in 0..50 {
                    batch.push_str("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
                    batch.push_str(&message(&format!("<par{k}.{i}@x>"), "x"));
                    batch.push_str(".\r\n");
                }
                batch.push_str("QUIT\r\n");
                c.send(&batch);
                for _ in 0..50 {
                    for code in ["250", "250", "354", "250"] {
                        c.expect(code);
                    }
                }
                c.expect("221");
            })
        })
        .collect();
    for t in clients {
        t.join().unwrap();
    }
    let s = h.shutdown();
    assert_eq!(s.messages, 300);
    assert_eq!(s.unique_message_ids, 300);
    assert_eq!(s.duplicate_message_ids, 0);
    assert_eq!(seen.load(Ordering::Relaxed), 300);
    assert!((1..=6).contains(&s.max_concurrent_connections));
}

#[test]
fn shutdown_closes_open_connections() {
    let h = start(SinkConfig::default());
    let mut c = Client::greeted(h.local_addr);
    c.cmd("EHLO c", "250");
    let stopper = std::thread::spawn(move || h.shutdown());
    assert_eq!(c.reply(), "421 4.3.2 localhost Service shutting down\r\n");
    assert!(c.closed());
    drop(c);
    let s = stopper.join().unwrap();
    assert_eq!((s.connections, s.open_connections), (1, 0));
}

#[test]
fn errors_are_reported() {
    let h = start(SinkConfig::default());
    let e = sink::start(SinkConfig {
        listen: h.local_addr,
        ..SinkConfig::default()
    })
    .unwrap_err();
    assert!(matches!(e, SinkError::Bind { .. }), "{e}");
    assert!(e.is_transient());
    let e = sink::start(SinkConfig {
        faults: Faults {
            data_permfail: 2.0,
            ..Faults::default()
        },
        ..SinkConfig::default()
    })
    .unwrap_err();
    assert!(
        matches!(e, SinkError::Config(_)) && !e.is_transient(),
        "{e}"
    );
}
