//! Haraka 3.3 (a real, strict receiver from the npm registry) takes 1,000
//! messages from the daemon over STARTTLS, at TLS levels `may` and
//! `encrypt`: every one arrives exactly once, byte for byte, none bounced
//! or deferred, although Haraka refuses every transaction chained behind a
//! final dot (`503 5.5.1 ... pipelined after end of DATA`). The daemon
//! learns that once and logs it once.
//!
//! Haraka is installed by `.ci/run` (`npm ci --prefix tests/haraka`); where
//! it is missing the test says so and skips, unless
//! `RINGMAIL_REQUIRE_HARAKA` is set (CI), where it fails.

mod common;

use std::collections::HashMap;
use std::fs;
use std::time::Duration;

use common::haraka::{haraka_or_skip, Haraka};
use common::*;

const N: usize = 1000;

/// Message `i`: a mix of shapes (dot lines, a long line, 8-bit text, an
/// empty body), each with its own Message-ID, already complete (Date,
/// From, Message-ID) so that cleanup adds nothing and the bytes Haraka
/// stores are the file's bytes with CRLF line ends.
fn message(tag: &str, i: usize) -> Vec<u8> {
    let body = match i % 5 {
        0 => format!("plain body {i}\n"),
        1 => format!(".leading dot\n..two dots\n.\nafter a lone dot {i}\n"),
        2 => format!("{}\nlong line {i}\n", "x".repeat(900)),
        3 => format!("8-bit: Grüße, ünïcödé {i}\n"),
        _ => String::new(),
    };
    format!(
        "Date: Sun, 06 Dec 2026 12:00:00 +0000\n\
         From: Bulk Sender <bulk@example.com>\n\
         To: r{i}@example.net\n\
         Subject: {tag} {i}\n\
         Message-ID: <{tag}.{i}@test.example>\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\
         \n\
         {body}"
    )
    .into_bytes()
}

/// The bytes a receiver must store for `file`: every LF becomes CRLF.
fn on_the_wire(file: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(file.len() + 64);
    for &b in file {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn message_id(content: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(content);
    text.lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .map(|s| s.trim().to_string())
}

fn through_haraka(io: &str, level: &str) {
    let Some(bin) = haraka_or_skip("through_haraka") else {
        return;
    };
    let sb = Sandbox::with(Settings {
        extra: String::new(),
        ..Settings::default()
    });
    let haraka = Haraka::start(&bin, sb.root());
    sb.write_config(&Settings {
        extra: format!(
            "minimal_backoff_time = 1\nmaximal_backoff_time = 2\n\
             smtp_tls_security_level = \"{level}\"\n\
             relayhost = \"[127.0.0.1]:{}\"\n",
            haraka.port
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    fs::create_dir_all(sb.pickup()).expect("mkdir pickup");
    let tag = format!("hk-{level}");
    let mut expected = HashMap::new();
    for i in 0..N {
        let file = message(&tag, i);
        expected.insert(format!("<{tag}.{i}@test.example>"), on_the_wire(&file));
        sb.drop_file(&format!("{tag}-{i:05}.eml"), &file);
    }
    let wait = Duration::from_secs(300);
    let start = std::time::Instant::now();
    while haraka.count() < N || !sb.queue_list().is_empty() {
        d.assert_running();
        assert!(
            start.elapsed() < wait,
            "{} of {N} at Haraka after {wait:?}; daemon log tail:\n{}\nharaka log tail:\n{}",
            haraka.count(),
            tail(&d.log(), 40),
            tail(&haraka.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    d.stop();
    let log = d.log();
    let got = haraka.messages();
    assert_eq!(got.len(), N, "every message once");
    let mut seen = HashMap::new();
    for m in &got {
        let id = message_id(&m.content).expect("a Message-ID");
        *seen.entry(id.clone()).or_insert(0) += 1;
        let want = expected
            .get(&id)
            .unwrap_or_else(|| panic!("unexpected {id}"));
        assert!(
            m.content == *want,
            "{id} not byte for byte:\n--- sent\n{}\n--- stored\n{}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(&m.content)
        );
        assert!(m.tls, "{id} came without TLS at level {level}");
        assert_eq!(m.mail_from, "bulk@example.com");
        assert_eq!(m.rcpt_to.len(), 1);
    }
    assert!(seen.values().all(|&n| n == 1), "duplicates: {seen:?}");
    assert_eq!(count_lines(&log, &["ringmail/smtp[", "status=sent"]), N);
    assert_eq!(
        count_lines(&log, &["status=bounced"]),
        0,
        "{}",
        tail(&log, 40)
    );
    assert_eq!(
        count_lines(&log, &["status=deferred"]),
        0,
        "{}",
        tail(&log, 40)
    );
    assert_eq!(
        count_lines(&log, &["no longer chaining transactions to"]),
        1,
        "the refusal is learnt and logged once:\n{}",
        tail(&log, 40)
    );
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn haraka_may(io: &str) {
    through_haraka(io, "may");
}
daemon_test!(haraka_may);

fn haraka_encrypt(io: &str) {
    through_haraka(io, "encrypt");
}
daemon_test!(haraka_encrypt);
