//! SMTP delivery (issue 3), end to end: the real daemon delivers to the
//! bundled sink (`ringmail::sink`), to Postfix's `smtp-sink`, and to tiny
//! misbehaving servers written here, all on 127.0.0.1.
//!
//! Every test injects mail through `pickup/`, with a `Message-ID` chosen
//! by the test so the sink's Message-ID ledger tells which message arrived
//! how often. Retries are made fast (`minimal_backoff_time = 1`,
//! `maximal_backoff_time = 2`) except where a test needs `queue flush` to be
//! the only thing that can bring a retry about. Nothing asserts on timing:
//! every wait polls with a generous deadline.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use ringmail::sink::{self, Faults, Latency, SinkConfig, SinkHandle};
use serde::Deserialize;

/// Deferred mail comes back within a few seconds.
const FAST_RETRY: &str = "minimal_backoff_time = 1\nmaximal_backoff_time = 2\n";

/// Deadline for the bulk tests (10,000 and 20,000 messages, debug build,
/// two shared cores). The small tests use [`DEADLINE`] (60 s).
const BULK_DEADLINE: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `relayhost = "[127.0.0.1]:PORT"`.
fn relay(addr: SocketAddr) -> String {
    format!("relayhost = \"[127.0.0.1]:{}\"\n", addr.port())
}

/// `[[route]]` for `domain` to `[127.0.0.1]:PORT`. Must come after every
/// top-level key (TOML).
fn route(domain: &str, addr: SocketAddr) -> String {
    format!(
        "[[route]]\ndomain = \"{domain}\"\nnexthop = \"[127.0.0.1]:{}\"\n",
        addr.port()
    )
}

/// A sandbox with two shards and `extra` configuration lines.
fn sandbox(extra: &str) -> Sandbox {
    Sandbox::with(Settings {
        extra: extra.to_string(),
        ..Settings::default()
    })
}

fn start_sink(config: SinkConfig) -> SinkHandle {
    sink::start(config).expect("start the bundled sink")
}

/// The Message-ID of test message `i` tagged `tag`.
fn mid(tag: &str, i: usize) -> String {
    format!("<{tag}.{i}@test.example>")
}

/// A pickup file: recipients from `To:`, our own Message-ID.
fn message(tag: &str, i: usize, to: &str) -> Vec<u8> {
    format!(
        "From: Bulk Sender <bulk@example.com>\n\
         To: {to}\n\
         Subject: {tag} {i}\n\
         Message-ID: {}\n\
         \n\
         body of {tag} message {i}\n",
        mid(tag, i)
    )
    .into_bytes()
}

/// Drops messages `range` into `pickup/`, message `i` to `to(i)`.
fn drop_messages(
    sb: &Sandbox,
    tag: &str,
    range: std::ops::Range<usize>,
    to: impl Fn(usize) -> String,
) {
    fs::create_dir_all(sb.pickup()).expect("mkdir pickup");
    for i in range {
        sb.drop_file(&format!("{tag}-{i:06}.eml"), &message(tag, i, &to(i)));
    }
}

/// `r{i}@example.net`: routed to the relay host in every test.
fn to_net(i: usize) -> String {
    rcpt(i)
}

/// The log of run `n` of the daemon in `sb` (the file `start_daemon_nth`
/// writes), for polling while the `Daemon` is mutably borrowed.
fn d_log(sb: &Sandbox, n: usize) -> String {
    fs::read_to_string(sb.root().join(format!("daemon-{n}.log"))).unwrap_or_default()
}

/// Polls `cond` every `every` until it holds; panics (with the daemon log)
/// after `deadline` or when the daemon dies. For conditions too costly to
/// test every 10 ms (a queue listing of thousands of messages, a big log).
fn wait_every(
    d: &mut Daemon,
    what: &str,
    every: Duration,
    deadline: Duration,
    mut cond: impl FnMut() -> bool,
) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        d.assert_running();
        if start.elapsed() > deadline {
            let log = d.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            panic!(
                "timed out after {deadline:?} waiting for: {what}; last daemon log lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(every);
    }
}

/// Waits until the sink has accepted every Message-ID in `ids` at least once.
fn wait_delivered(d: &mut Daemon, sink: &SinkHandle, ids: &[String], deadline: Duration) {
    let what = format!("{} messages accepted by the sink", ids.len());
    wait_every(d, &what, Duration::from_millis(50), deadline, || {
        let counts = sink.message_id_counts();
        ids.iter().all(|id| counts.contains_key(id))
    });
}

/// Waits until `queue list` shows nothing.
fn wait_queue_empty(d: &mut Daemon, sb: &Sandbox, deadline: Duration) {
    wait_every(
        d,
        "the queue to be empty",
        Duration::from_millis(200),
        deadline,
        || sb.queue_list().is_empty(),
    );
}

/// Dot-unstuffing as a receiver does it: a `.` at the start of a line (after
/// CRLF, or at the very start) is removed. The queue stores the wire form
/// dot-stuffed; the sink stores what the client meant.
fn unstuff(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut line_start = true;
    for (i, &b) in wire.iter().enumerate() {
        if line_start && b == b'.' {
            line_start = false;
            continue;
        }
        out.push(b);
        line_start = b == b'\n' && i > 0 && wire[i - 1] == b'\r';
    }
    out
}

/// One `n.json` of the bundled sink's dump directory.
#[derive(Clone, Debug, Deserialize)]
struct DumpEnvelope {
    number: u64,
    mail_from: String,
    mail_params: String,
    rcpt_to: Vec<String>,
    size: u64,
    message_id: Option<String>,
    helo: String,
}

/// Every complete dumped message (`n.json` present) with its `n.eml`.
fn read_dumps(dir: &Path) -> Vec<(DumpEnvelope, Vec<u8>)> {
    let mut out = Vec::new();
    for name in names_in(dir) {
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let json = fs::read_to_string(dir.join(&name)).expect("read dump json");
        let env: DumpEnvelope = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("bad dump envelope {name}: {e}: {json}"));
        let eml = fs::read(dir.join(format!("{stem}.eml"))).expect("read dump eml");
        out.push((env, eml));
    }
    out.sort_by_key(|(e, _)| e.number);
    out
}

/// Sum over Message-IDs of (count - 1).
fn duplicates(counts: &HashMap<String, u32>) -> u64 {
    counts
        .values()
        .map(|&n| u64::from(n.saturating_sub(1)))
        .sum()
}

/// The `smtp` log lines for recipient `addr`.
fn lines_for<'a>(log: &'a str, addr: &str) -> Vec<&'a str> {
    let needle = format!("to=<{addr}>");
    log.lines()
        .filter(|l| l.contains("ringmail/smtp[") && l.contains(&needle))
        .collect()
}

/// The recipient `addr` in a queue listing.
fn listed_rcpt<'a>(listed: &'a [Listed], addr: &str) -> Option<&'a ListedRcpt> {
    listed
        .iter()
        .flat_map(|l| l.recipients.iter())
        .find(|r| r.address == addr)
}

/// `relay=127.0.0.1[127.0.0.1]:PORT` as logged for a sink at `addr`.
fn relay_field(addr: SocketAddr) -> String {
    format!("relay=127.0.0.1[127.0.0.1]:{}", addr.port())
}

/// Checks the shape of a Postfix-style delivery line: `delay=T`,
/// `delays=a/b/c/d` (four numbers), `dsn=X.Y.Z`.
fn assert_delivery_line_shape(line: &str) {
    let field = |name: &str| -> &str {
        let at = line
            .find(&format!(" {name}="))
            .unwrap_or_else(|| panic!("no {name}= in {line:?}"));
        let rest = &line[at + name.len() + 2..];
        rest.split(',').next().unwrap_or_default()
    };
    let number = |s: &str| s.parse::<f64>().is_ok_and(|x| x >= 0.0);
    assert!(number(field("delay")), "delay= is not a number: {line}");
    let delays: Vec<&str> = field("delays").split('/').collect();
    assert_eq!(delays.len(), 4, "delays=a/b/c/d: {line}");
    assert!(delays.iter().all(|x| number(x)), "delays: {line}");
    let dsn: Vec<&str> = field("dsn").split('.').collect();
    assert!(
        dsn.len() == 3 && dsn.iter().all(|p| p.parse::<u16>().is_ok()),
        "dsn=X.Y.Z: {line}"
    );
}

// ---------------------------------------------------------------------------
// Bulk: 10,000 messages exactly once; a byte-for-byte subset
// ---------------------------------------------------------------------------

/// 10,000 messages to the bundled sink: each Message-ID arrives exactly
/// once, the queue empties, every recipient is logged `status=sent` and
/// every message `removed`, and a restart finds nothing left to deliver
/// (the sent status is on disk).
fn ten_thousand_exactly_once(io: &str) {
    const N: usize = 10_000;
    let sink = start_sink(SinkConfig::default());
    let sb = sandbox(&format!("{FAST_RETRY}{}", relay(sink.local_addr)));
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_recovered(2);
    drop_messages(&sb, "bulk", 0..N, to_net);
    let ids: Vec<String> = (0..N).map(|i| mid("bulk", i)).collect();
    wait_delivered(&mut d, &sink, &ids, BULK_DEADLINE);
    wait_queue_empty(&mut d, &sb, BULK_DEADLINE);
    wait_every(
        &mut d,
        "a removed line per message",
        Duration::from_millis(200),
        BULK_DEADLINE,
        || count_lines(&d_log(&sb, 0), &["ringmail/qmgr[", ": removed"]) >= N,
    );
    d.stop();

    let counts = sink.message_id_counts();
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "{id} not delivered exactly once");
    }
    assert_eq!(counts.len(), N, "no Message-ID from nowhere");
    let stats = sink.stats();
    assert_eq!(stats.messages, N as u64, "{stats:?}");
    assert_eq!(stats.duplicate_message_ids, 0, "{stats:?}");
    assert_eq!(stats.duplicate_deliveries, 0, "{stats:?}");

    let log = d.log();
    let sent: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ringmail/smtp[") && l.contains("status=sent"))
        .collect();
    assert_eq!(sent.len(), N, "one status=sent line per recipient");
    let relay = relay_field(sink.local_addr);
    for l in &sent {
        assert!(l.contains(&relay), "{l}");
        assert!(l.contains("dsn=2.0.0"), "{l}");
        assert_delivery_line_shape(l);
    }
    for i in [0, N / 2, N - 1] {
        let lines = lines_for(&log, &rcpt(i));
        assert_eq!(lines.len(), 1, "{}: {lines:?}", rcpt(i));
    }
    assert_eq!(
        count_lines(&log, &["ringmail/qmgr[", ": removed"]),
        N,
        "one removed line per message"
    );
    assert_eq!(count_lines(&log, &["status=deferred"]), 0);
    assert_eq!(count_lines(&log, &["status=bounced"]), 0);

    // Nothing is delivered again after a restart.
    let mut d = sb.start_daemon_nth(io, 1);
    let rec = d.wait_recovered(2);
    assert_eq!(
        rec.iter().map(|r| r.messages).sum::<usize>(),
        0,
        "delivered mail came back after a restart: {rec:?}"
    );
    d.stop();
    assert_eq!(sink.stats().messages, N as u64);
}
daemon_test!(ten_thousand_exactly_once);

/// The bodies of the byte-for-byte test: dots at line starts, a lone dot, 8-bit
/// text, bare LF input without a final newline, several recipients, a big
/// message.
fn odd_message(i: usize) -> (Vec<u8>, Vec<String>) {
    let id = mid("exact", i);
    let one = vec![format!("x{i}@example.net")];
    match i % 5 {
        0 => (
            format!(
                "From: a@example.com\r\nTo: x{i}@example.net\r\nMessage-ID: {id}\r\nSubject: dots\r\n\r\n\
                 .\r\n..\r\n.leading dot\r\n...three\r\nnot. a dot\r\n.\r\n"
            )
            .into_bytes(),
            one,
        ),
        1 => (
            format!(
                "From: a@example.com\nTo: x{i}@example.net\nMessage-ID: {id}\nSubject: 8bit\n\
                 Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n\
                 Grüße aus Köln, ½ € ✓\n.Punkt am Anfang\n"
            )
            .into_bytes(),
            one,
        ),
        2 => (
            format!(
                "From: a@example.com\nTo: x{i}@example.net\nMessage-ID: {id}\nSubject: no final newline\n\n\
                 line one\n\nline three after an empty line\n.last line without newline"
            )
            .into_bytes(),
            one,
        ),
        3 => {
            let rcpts: Vec<String> = (0..3).map(|k| format!("m{i}.{k}@example.net")).collect();
            (
                format!(
                    "From: a@example.com\nTo: {}\nMessage-ID: {id}\nSubject: three recipients\n\nhello all\n",
                    rcpts.join(", ")
                )
                .into_bytes(),
                rcpts,
            )
        }
        _ => {
            let mut m = format!(
                "From: a@example.com\nTo: x{i}@example.net\nMessage-ID: {id}\nSubject: big\n\n"
            )
            .into_bytes();
            for k in 0..3000 {
                if k % 7 == 0 {
                    m.extend_from_slice(format!(".line {k} starts with a dot\n").as_bytes());
                } else {
                    m.extend_from_slice(format!("line {k} of a larger message body\n").as_bytes());
                }
            }
            (m, one)
        }
    }
}

/// 50 varied messages are queued first (no route yet), their wire forms read
/// from the segment files; then the relay host is configured and the daemon
/// restarted: each message the sink dumps equals its queued wire form,
/// dot-unstuffed, byte for byte, with the queued envelope. The queue empties
/// and the log has `status=sent` and `removed` for all.
fn byte_for_byte(io: &str) {
    const N: usize = 50;
    let sb = sandbox(FAST_RETRY);
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_recovered(2);
    let mut all_rcpts = 0;
    for i in 0..N {
        let (m, rcpts) = odd_message(i);
        all_rcpts += rcpts.len();
        sb.drop_file(&format!("exact-{i:03}.eml"), &m);
    }
    d.wait_until("50 messages queued", || {
        count_in(&sb.pickup()) == 0 && sb.queue_list().len() == N
    });
    d.stop();
    // The queued wire forms, by Message-ID.
    let mut queued: BTreeMap<String, Record> = BTreeMap::new();
    for r in sb.segment_messages() {
        assert!(r.crc_ok);
        let key = format!("<{}>", r.message_id.trim_matches(|c| c == '<' || c == '>'));
        assert!(queued.insert(key, r).is_none(), "Message-ID queued twice");
    }
    assert_eq!(queued.len(), N);

    let dump = sb.root().join("dump");
    let sink = start_sink(SinkConfig {
        dump_dir: Some(dump.clone()),
        ..SinkConfig::default()
    });
    sb.write_config(&Settings {
        extra: format!("{FAST_RETRY}{}", relay(sink.local_addr)),
        ..Settings::default()
    });
    let mut d = sb.start_daemon_nth(io, 1);
    let ids: Vec<String> = queued.keys().cloned().collect();
    wait_delivered(&mut d, &sink, &ids, DEADLINE);
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.wait_until("a removed line per message", || {
        count_lines(&d_log(&sb, 1), &[": removed"]) >= N
    });
    d.stop();

    let dumps = read_dumps(&dump);
    assert_eq!(dumps.len(), N, "one transaction per message");
    let mut seen = BTreeSet::new();
    for (env, eml) in &dumps {
        let id = env
            .message_id
            .clone()
            .expect("dumped message has a Message-ID");
        let rec = queued
            .get(&id)
            .unwrap_or_else(|| panic!("dumped {id} was never queued"));
        assert!(seen.insert(id.clone()), "{id} dumped twice");
        let want = unstuff(&rec.wire);
        if *eml != want {
            let at = eml
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(eml.len().min(want.len()));
            panic!(
                "{id}: dumped message differs from the queued wire form at byte {at} \
                 (dumped {} bytes, queued {} bytes unstuffed)\n dumped: {:?}\n queued: {:?}",
                eml.len(),
                want.len(),
                String::from_utf8_lossy(&eml[at.saturating_sub(40)..(at + 40).min(eml.len())]),
                String::from_utf8_lossy(&want[at.saturating_sub(40)..(at + 40).min(want.len())]),
            );
        }
        assert_eq!(env.size, eml.len() as u64);
        assert_eq!(env.mail_from, rec.sender, "{id}: envelope sender");
        assert_eq!(env.rcpt_to, rec.recipients, "{id}: envelope recipients");
        assert_eq!(env.helo, "mx.example.org", "EHLO name is myhostname");
        assert!(
            env.mail_params
                .contains(&format!("SIZE={}", rec.wire.len())),
            "{id}: SIZE is the wire form's size: {:?}",
            env.mail_params
        );
        // The 8-bit message says so.
        if eml.iter().any(|b| *b >= 0x80) {
            assert!(
                env.mail_params.contains("BODY=8BITMIME"),
                "{id}: 8-bit body without BODY=8BITMIME: {:?}",
                env.mail_params
            );
        }
    }
    let log = d.log();
    assert_eq!(
        count_lines(&log, &["ringmail/smtp[", "status=sent"]),
        all_rcpts
    );
    assert_eq!(count_lines(&log, &["ringmail/qmgr[", ": removed"]), N);
    assert!(sb.queue_list().is_empty());
}
daemon_test!(byte_for_byte);

// ---------------------------------------------------------------------------
// Receivers with fewer features
// ---------------------------------------------------------------------------

/// Delivers `n` messages to a sink configured by `config`; returns the dumps.
fn deliver_to(io: &str, tag: &str, n: usize, config: SinkConfig) -> Vec<(DumpEnvelope, Vec<u8>)> {
    let sb = sandbox(FAST_RETRY);
    let dump = sb.root().join("dump");
    let sink = start_sink(SinkConfig {
        dump_dir: Some(dump.clone()),
        ..config
    });
    sb.write_config(&Settings {
        extra: format!("{FAST_RETRY}{}", relay(sink.local_addr)),
        ..Settings::default()
    });
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    drop_messages(&sb, tag, 0..n, to_net);
    let ids: Vec<String> = (0..n).map(|i| mid(tag, i)).collect();
    wait_delivered(&mut d, &sink, &ids, DEADLINE);
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.stop();
    let stats = sink.stats();
    assert_eq!(stats.messages, n as u64, "{stats:?}");
    assert_eq!(stats.duplicate_message_ids, 0, "{stats:?}");
    let log = d.log();
    assert_eq!(count_lines(&log, &["ringmail/smtp[", "status=sent"]), n);
    assert_eq!(count_lines(&log, &["status=deferred"]), 0, "{log}");
    read_dumps(&dump)
}

/// A receiver that does not announce PIPELINING gets the mail.
fn without_pipelining(io: &str) {
    let dumps = deliver_to(
        io,
        "nopipe",
        20,
        SinkConfig {
            pipelining: false,
            ..SinkConfig::default()
        },
    );
    assert_eq!(dumps.len(), 20);
    for (env, _) in &dumps {
        assert!(env.mail_params.contains("SIZE="), "still ESMTP: {env:?}");
    }
}
daemon_test!(without_pipelining);

/// A receiver that answers EHLO with 502 (HELO only) gets the mail; no
/// ESMTP parameters are sent to it.
fn helo_only(io: &str) {
    let dumps = deliver_to(
        io,
        "helo",
        20,
        SinkConfig {
            esmtp: false,
            ..SinkConfig::default()
        },
    );
    assert_eq!(dumps.len(), 20);
    for (env, _) in &dumps {
        assert_eq!(
            env.mail_params, "",
            "no MAIL parameters after HELO: {env:?}"
        );
        assert_eq!(env.helo, "mx.example.org");
    }
}
daemon_test!(helo_only);

// ---------------------------------------------------------------------------
// Temporary and permanent failures
// ---------------------------------------------------------------------------

/// What brings the retry after a 4xx about.
#[derive(Clone, Copy, Debug)]
enum Retry {
    /// Wait for the (short) backoff to bring the retry about.
    Backoff,
    /// Backoff of an hour; only `queue flush` can bring the retry about.
    Flush,
}

/// A first sink fails every delivery with 4xx (`faults`); the messages are
/// deferred: logged `status=deferred` with the reply and `(in reply to
/// {stage})`, listed as deferred with that reason. Then the sink is replaced
/// by a good one on the same port and the messages are delivered on retry,
/// once each.
fn tempfail_then_delivered(io: &str, faults: Faults, stage: &str, retry: Retry) {
    const N: usize = 3;
    let bad = start_sink(SinkConfig {
        faults,
        ..SinkConfig::default()
    });
    let addr = bad.local_addr;
    let backoff = match retry {
        Retry::Backoff => FAST_RETRY.to_string(),
        // No connection is cached (one transaction per connection), so the
        // retry cannot meet a stale connection to the failing sink; see
        // `stale_cached_connection_not_charged` for that case.
        Retry::Flush => "minimal_backoff_time = 3600\nmaximal_backoff_time = 3600\n\
                         smtp_connection_reuse_count_limit = 1\n"
            .to_string(),
    };
    let sb = sandbox(&format!("{backoff}{}", relay(addr)));
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    drop_messages(&sb, "temp", 0..N, to_net);
    d.wait_until("every recipient deferred once", || {
        let log = d_log(&sb, 0);
        (0..N).all(|i| {
            lines_for(&log, &rcpt(i))
                .iter()
                .any(|l| l.contains("status=deferred"))
        })
    });
    let log = d.log();
    let relay_f = relay_field(addr);
    for i in 0..N {
        let lines = lines_for(&log, &rcpt(i));
        let l = lines
            .iter()
            .find(|l| l.contains("status=deferred"))
            .expect("deferred line");
        assert!(l.contains(&relay_f), "{l}");
        assert!(l.contains("dsn=4.3.0"), "{l}");
        assert!(
            l.contains("451 4.3.0 Error: temporary failure (injected fault)")
                && l.contains(&format!("(in reply to {stage})")),
            "{l}"
        );
        assert_delivery_line_shape(l);
        assert!(!lines.iter().any(|l| l.contains("status=sent")), "{l}");
    }
    d.wait_until("the deferral reasons in the queue listing", || {
        let listed = sb.queue_list();
        (0..N).all(|i| {
            listed_rcpt(&listed, &rcpt(i)).is_some_and(|r| {
                r.status == "deferred"
                    && r.reason
                        .as_deref()
                        .is_some_and(|x| x.contains("451 4.3.0") && x.contains(stage))
            })
        })
    });
    let listed = sb.queue_list();
    assert_eq!(listed.len(), N, "{listed:?}");
    let before = bad.shutdown();
    assert_eq!(before.messages, 0, "the failing sink accepted nothing");

    // A good sink on the same port.
    let good = start_sink(SinkConfig {
        listen: addr,
        ..SinkConfig::default()
    });
    if let Retry::Flush = retry {
        let out = sb.flush();
        assert!(
            out.status.success(),
            "queue flush: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ids: Vec<String> = (0..N).map(|i| mid("temp", i)).collect();
    wait_delivered(&mut d, &good, &ids, DEADLINE);
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.wait_until("removed lines", || {
        count_lines(&d_log(&sb, 0), &[": removed"]) >= N
    });
    d.stop();
    let log = d.log();
    for i in 0..N {
        let lines = lines_for(&log, &rcpt(i));
        assert_eq!(
            lines.iter().filter(|l| l.contains("status=sent")).count(),
            1,
            "{lines:#?}"
        );
    }
    let counts = good.message_id_counts();
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "{id}");
    }
}

/// 451 at RCPT: deferred, then delivered when the backoff (1–2 s) expires.
fn rcpt_4xx_deferred_then_delivered(io: &str) {
    tempfail_then_delivered(
        io,
        Faults {
            rcpt_tempfail: 1.0,
            ..Faults::default()
        },
        "RCPT TO command",
        Retry::Backoff,
    );
}
daemon_test!(rcpt_4xx_deferred_then_delivered);

/// 451 after DATA: deferred, then delivered when the backoff expires.
fn data_4xx_deferred_then_delivered(io: &str) {
    tempfail_then_delivered(
        io,
        Faults {
            data_tempfail: 1.0,
            ..Faults::default()
        },
        "end of DATA command",
        Retry::Backoff,
    );
}
daemon_test!(data_4xx_deferred_then_delivered);

/// 451 at RCPT with an hour of backoff: `ringmail queue flush` retries now.
fn rcpt_4xx_then_flush(io: &str) {
    tempfail_then_delivered(
        io,
        Faults {
            rcpt_tempfail: 1.0,
            ..Faults::default()
        },
        "RCPT TO command",
        Retry::Flush,
    );
}
daemon_test!(rcpt_4xx_then_flush);

/// 451 after DATA with an hour of backoff: `ringmail queue flush` retries now.
fn data_4xx_then_flush(io: &str) {
    tempfail_then_delivered(
        io,
        Faults {
            data_tempfail: 1.0,
            ..Faults::default()
        },
        "end of DATA command",
        Retry::Flush,
    );
}
daemon_test!(data_4xx_then_flush);

/// Every recipient is refused permanently: logged `status=bounced` with the
/// 5.x.x code and the reply, `removed`, gone from the queue, never retried
/// (a restart recovers nothing).
fn permfail_bounced(io: &str, faults: Faults, reply: &str, dsn: &str, stage: &str) {
    const N: usize = 3;
    let sink = start_sink(SinkConfig {
        faults,
        ..SinkConfig::default()
    });
    let sb = sandbox(&format!("{FAST_RETRY}{}", relay(sink.local_addr)));
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_recovered(2);
    drop_messages(&sb, "perm", 0..N, to_net);
    // Each original bounces, and so does its notice (the sink refuses
    // everything); a notice is never bounced: 2N removals in all.
    d.wait_until("every message and notice removed", || {
        count_lines(&d_log(&sb, 0), &[": removed"]) >= 2 * N
    });
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.stop();
    let log = d.log();
    for i in 0..N {
        let lines = lines_for(&log, &rcpt(i));
        assert_eq!(lines.len(), 1, "one attempt, no retry: {lines:#?}");
        let l = lines[0];
        assert!(l.contains("status=bounced"), "{l}");
        assert!(l.contains(&format!("dsn={dsn}")), "{l}");
        assert!(l.contains(reply), "{l}");
        assert!(l.contains(&format!("(in reply to {stage})")), "{l}");
        assert!(l.contains(&relay_field(sink.local_addr)), "{l}");
        assert_delivery_line_shape(l);
    }
    assert_eq!(count_lines(&log, &["ringmail/qmgr[", ": removed"]), 2 * N);
    assert_eq!(
        count_lines(
            &log,
            &["ringmail/bounce[", "sender non-delivery notification: "]
        ),
        N,
        "one notice per bounced message, none for a bounced notice"
    );
    assert_eq!(
        count_lines(&log, &["from=<>, size=", "nrcpt=1 (queue active)"]),
        N
    );
    assert_eq!(sink.stats().messages, 0);
    let mut d = sb.start_daemon_nth(io, 1);
    let rec = d.wait_recovered(2);
    assert_eq!(rec.iter().map(|r| r.messages).sum::<usize>(), 0, "{rec:?}");
    d.stop();
}

/// 550 at RCPT: bounced, dsn=5.1.1.
fn rcpt_5xx_bounced(io: &str) {
    permfail_bounced(
        io,
        Faults {
            rcpt_permfail: 1.0,
            ..Faults::default()
        },
        "550 5.1.1 Error: recipient rejected (injected fault)",
        "5.1.1",
        "RCPT TO command",
    );
}
daemon_test!(rcpt_5xx_bounced);

/// 554 after DATA: bounced, dsn=5.6.0.
fn data_5xx_bounced(io: &str) {
    permfail_bounced(
        io,
        Faults {
            data_permfail: 1.0,
            ..Faults::default()
        },
        "554 5.6.0 Error: message rejected (injected fault)",
        "5.6.0",
        "end of DATA command",
    );
}
daemon_test!(data_5xx_bounced);

/// The sink answers MAIL with `421` and closes the connection in 30 % of
/// transactions (seeded): every message is still delivered, and exactly
/// once, since a 421 at MAIL comes before any message was accepted.
fn disconnect_421_mid_session(io: &str) {
    const N: usize = 200;
    let sink = start_sink(SinkConfig {
        faults: Faults {
            disconnect_421: 0.3,
            ..Faults::default()
        },
        seed: Some(421),
        ..SinkConfig::default()
    });
    let sb = sandbox(&format!("{FAST_RETRY}{}", relay(sink.local_addr)));
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    drop_messages(&sb, "drop", 0..N, to_net);
    let ids: Vec<String> = (0..N).map(|i| mid("drop", i)).collect();
    wait_delivered(&mut d, &sink, &ids, DEADLINE);
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.stop();
    let stats = sink.stats();
    eprintln!(
        "421 test ({io}): {} injected disconnects over {} connections",
        stats.disconnects, stats.connections
    );
    assert!(stats.disconnects > 0, "the fault was injected: {stats:?}");
    assert!(
        stats.connections > stats.disconnects,
        "reconnected after each 421: {stats:?}"
    );
    let counts = sink.message_id_counts();
    assert_eq!(duplicates(&counts), 0, "a 421 at MAIL caused a duplicate");
    assert_eq!(stats.messages, N as u64);
    let log = d.log();
    let deferred: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ringmail/smtp[") && l.contains("status=deferred"))
        .collect();
    assert!(!deferred.is_empty(), "a 421 defers the transaction");
    for l in &deferred {
        assert!(l.contains("421"), "deferral not caused by the 421: {l}");
        assert!(l.contains("dsn=4."), "{l}");
    }
    assert_eq!(count_lines(&log, &["ringmail/smtp[", "status=sent"]), N);
}
daemon_test!(disconnect_421_mid_session);

/// A cached idle connection that the server has closed meanwhile (here
/// with `421 4.3.2 Service shutting down`, as a restarting server does) is
/// not the next message's problem: as Postfix, which probes a cached
/// connection with RSET before reusing it, the daemon must notice the dead
/// connection and open a new one instead of deferring the message with the
/// stale 421. One shard, so both messages meet the same connection cache.
fn stale_cached_connection_not_charged(io: &str) {
    let a = start_sink(SinkConfig::default());
    let addr = a.local_addr;
    let sb = Sandbox::with(Settings {
        shards: 1,
        extra: format!(
            "{FAST_RETRY}smtp_connection_cache_time_limit = 60\n{}",
            relay(addr)
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon(io);
    d.wait_recovered(1);
    drop_messages(&sb, "stale", 0..1, to_net);
    wait_delivered(&mut d, &a, &[mid("stale", 0)], DEADLINE);
    // The connection is idle in the cache now; the server goes away (421 to
    // open connections) and a new one listens on the same port.
    let before = a.shutdown();
    assert_eq!(before.messages, 1);
    let b = start_sink(SinkConfig {
        listen: addr,
        ..SinkConfig::default()
    });
    drop_messages(&sb, "stale", 1..2, to_net);
    wait_delivered(&mut d, &b, &[mid("stale", 1)], DEADLINE);
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.stop();
    let log = d.log();
    let lines = lines_for(&log, &rcpt(1));
    assert!(
        !lines.iter().any(|l| l.contains("status=deferred")),
        "the second message was deferred because of the closed cached connection:\n{}",
        lines.join("\n")
    );
    assert_eq!(b.stats().messages, 1);
}
daemon_test!(stale_cached_connection_not_charged);

// ---------------------------------------------------------------------------
// Misbehaving servers
// ---------------------------------------------------------------------------

/// How a [`FakeServer`] misbehaves.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Greets with `220 ok`, then answers every command with `xyz`.
    Garbage,
    /// Greets, waits for the client's EHLO and closes the socket without
    /// reading it (the kernel answers with a reset).
    Reset,
    /// Greets, then never says anything again.
    Stall,
}

/// A tiny blocking TCP server on 127.0.0.1 that misbehaves.
struct FakeServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start(kind: Misbehaviour) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let thread = {
            let stop = Arc::clone(&stop);
            let connections = Arc::clone(&connections);
            std::thread::spawn(move || {
                let mut handlers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            let stop = Arc::clone(&stop);
                            handlers.push(std::thread::spawn(move || serve_badly(s, kind, &stop)));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
                for h in handlers {
                    let _ = h.join();
                }
            })
        };
        FakeServer {
            addr,
            stop,
            connections,
            thread: Some(thread),
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_badly(mut s: TcpStream, kind: Misbehaviour, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    if s.write_all(b"220 ok\r\n").is_err() {
        return;
    }
    let waiting =
        |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    let mut buf = [0u8; 4096];
    match kind {
        Misbehaviour::Garbage => {
            while !stop.load(Ordering::Relaxed) {
                match s.read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => {
                        if s.write_all(b"xyz\r\n").is_err() {
                            return;
                        }
                    }
                    Err(e) if waiting(&e) => {}
                    Err(_) => return,
                }
            }
        }
        Misbehaviour::Reset => {
            while !stop.load(Ordering::Relaxed) {
                match s.peek(&mut buf) {
                    Ok(_) => break,
                    Err(e) if waiting(&e) => {}
                    Err(_) => return,
                }
            }
            // Unread data in the receive buffer: close sends RST.
            drop(s);
        }
        Misbehaviour::Stall => {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Mail for `bad.test` is routed to a misbehaving server, everything else
/// to a good sink. The bad delivery is deferred with a reason that says
/// what went wrong (`expect`), stays queued, and the daemon carries on: a
/// message to the good sink sent afterwards is delivered in the same run.
fn bad_server(io: &str, kind: Misbehaviour, expect: &[&str], dsn: &str) {
    let fake = FakeServer::start(kind);
    let good = start_sink(SinkConfig::default());
    let timeouts = "smtp_connect_timeout = 2\nsmtp_helo_timeout = 2\nsmtp_mail_timeout = 2\n\
                    smtp_rcpt_timeout = 2\nsmtp_data_init_timeout = 2\nsmtp_data_xfer_timeout = 2\n\
                    smtp_data_done_timeout = 2\nsmtp_quit_timeout = 2\n";
    let sb = sandbox(&format!(
        "{FAST_RETRY}{timeouts}{}{}",
        relay(good.local_addr),
        route("bad.test", fake.addr)
    ));
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    drop_messages(&sb, "bad", 0..1, |_| "victim@bad.test".into());
    d.wait_until("the bad delivery deferred", || {
        lines_for(&d_log(&sb, 0), "victim@bad.test")
            .iter()
            .any(|l| l.contains("status=deferred"))
    });
    let log = d.log();
    let lines = lines_for(&log, "victim@bad.test");
    let l = lines
        .iter()
        .find(|l| l.contains("status=deferred"))
        .expect("deferred");
    for e in expect {
        assert!(l.contains(e), "{kind:?}: expected {e:?} in: {l}");
    }
    assert!(l.contains(&format!("dsn={dsn}")), "{kind:?}: {l}");
    // As Postfix: the reason names the peer as host[ip], without the port
    // (only relay= carries it).
    let reason = l.split("status=deferred").nth(1).unwrap_or("");
    assert!(
        reason.contains("127.0.0.1[127.0.0.1]")
            && !reason.contains(&format!("127.0.0.1[127.0.0.1]:{}", fake.addr.port())),
        "the reason names the peer: {l}"
    );
    assert!(!lines.iter().any(|l| l.contains("status=sent")));
    assert!(fake.connections() >= 1);

    // The daemon carries on.
    drop_messages(&sb, "good", 0..1, to_net);
    wait_delivered(&mut d, &good, &[mid("good", 0)], DEADLINE);
    d.wait_until("the bad message listed as deferred with the reason", || {
        let listed = sb.queue_list();
        listed.len() == 1
            && listed_rcpt(&listed, "victim@bad.test").is_some_and(|r| {
                r.status == "deferred"
                    && r.reason
                        .as_deref()
                        .is_some_and(|x| expect.iter().all(|e| x.contains(e)))
            })
    });
    d.assert_running();
    d.stop();
    assert_eq!(
        good.stats().messages,
        1,
        "only the good message reached the sink"
    );
    assert_eq!(
        good.counters().message_id_count(&mid("bad", 0)),
        0,
        "the bad-route message went to the relay host"
    );
}

/// Garbage instead of an EHLO reply: deferred as a protocol error.
fn garbage_reply_deferred(io: &str) {
    bad_server(io, Misbehaviour::Garbage, &["protocol error"], "4.5.0");
}
daemon_test!(garbage_reply_deferred);

/// The connection is reset after the greeting: deferred as a lost connection.
fn reset_connection_deferred(io: &str) {
    bad_server(io, Misbehaviour::Reset, &["lost connection"], "4.4.2");
}
daemon_test!(reset_connection_deferred);

/// No reply to EHLO within `smtp_helo_timeout` (2 s): deferred as a timeout.
fn stall_past_timeout_deferred(io: &str) {
    bad_server(io, Misbehaviour::Stall, &["timed out", "EHLO"], "4.4.2");
}
daemon_test!(stall_past_timeout_deferred);

/// A peer that greets and then never answers, with Postfix's default 300 s
/// EHLO timeout: SIGTERM still stops the daemon promptly with status 0 (the
/// contract is 5 s; the poll allows 20 s on a loaded machine, and the log
/// shows the shutdown), and the message stays queued for the next run.
fn sigterm_with_a_stuck_delivery(io: &str) {
    let bad = FakeServer::start(Misbehaviour::Stall);
    let sb = sandbox(&format!(
        "smtp_helo_timeout = 300
{}",
        relay(bad.addr)
    ));
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    drop_messages(&sb, "stuck", 0..1, to_net);
    d.wait_until("the delivery is in progress", || bad.connections() >= 1);
    d.stop();
    let listed = sb.queue_list();
    assert_eq!(listed.len(), 1, "the message stays queued: {listed:?}");
}
daemon_test!(sigterm_with_a_stuck_delivery);

/// Nothing listens at the relay host: deferred with the connect error; the
/// destination is marked dead; once a sink listens there, `queue flush`
/// delivers at once (an hour of backoff otherwise).
fn connection_refused_then_flush(io: &str) {
    // A port nobody listens on (bound, then released).
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let sb = sandbox(&format!(
        "minimal_backoff_time = 3600\nmaximal_backoff_time = 3600\n{}",
        relay(addr)
    ));
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    drop_messages(&sb, "refused", 0..3, to_net);
    d.wait_until("all three deferred", || {
        let log = d_log(&sb, 0);
        (0..3).all(|i| {
            lines_for(&log, &rcpt(i))
                .iter()
                .any(|l| l.contains("status=deferred"))
        })
    });
    let log = d.log();
    for i in 0..3 {
        let lines = lines_for(&log, &rcpt(i));
        let l = lines[0];
        assert!(l.contains("status=deferred") && l.contains("dsn=4."), "{l}");
        assert!(
            l.contains("connect to") || l.contains("suspended"),
            "the reason is the failed connection: {l}"
        );
    }
    let sink = start_sink(SinkConfig {
        listen: addr,
        ..SinkConfig::default()
    });
    let out = sb.flush();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = (0..3).map(|i| mid("refused", i)).collect();
    wait_delivered(&mut d, &sink, &ids, DEADLINE);
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.stop();
    assert_eq!(duplicates(&sink.message_id_counts()), 0);
}
daemon_test!(connection_refused_then_flush);

// ---------------------------------------------------------------------------
// Concurrency, connection reuse, recipient limit
// ---------------------------------------------------------------------------

/// With `default_destination_concurrency_limit = limit`, `shards` shards and
/// a slow sink (so connections overlap), the sink never sees more than
/// `limit` connections at once; the mail all arrives once.
fn concurrency_holds(io: &str, limit: usize, shards: usize) {
    const N: usize = 400;
    let sink = start_sink(SinkConfig {
        latency: Latency::Fixed(Duration::from_millis(5)),
        ..SinkConfig::default()
    });
    let sb = Sandbox::with(Settings {
        shards,
        extra: format!(
            "{FAST_RETRY}default_destination_concurrency_limit = {limit}\n{}",
            relay(sink.local_addr)
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon(io);
    d.wait_recovered(shards);
    drop_messages(&sb, "conc", 0..N, to_net);
    let ids: Vec<String> = (0..N).map(|i| mid("conc", i)).collect();
    wait_delivered(&mut d, &sink, &ids, BULK_DEADLINE);
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.stop();
    let stats = sink.stats();
    eprintln!(
        "concurrency ({io}, limit {limit}, {shards} shards): at most {} connections at once, {} connections in all, {} messages",
        stats.max_concurrent_connections, stats.connections, stats.messages
    );
    assert!(
        stats.max_concurrent_connections <= limit as u64,
        "default_destination_concurrency_limit = {limit} over {shards} shards, but the sink saw {} connections at once",
        stats.max_concurrent_connections
    );
    assert_eq!(duplicates(&sink.message_id_counts()), 0);
    // Connections are reused: far fewer connections than transactions.
    assert!(
        stats.connections <= (N / 4) as u64,
        "{} connections for {N} messages: connections are not reused",
        stats.connections
    );
}

/// Limit 4 over 2 shards (2 each).
fn concurrency_limit_holds(io: &str) {
    concurrency_holds(io, 4, 2);
}
daemon_test!(concurrency_limit_holds);

/// Limit 3 over 2 shards: the global limit must still hold (a per-shard
/// share rounded up would allow 2 + 2 = 4).
fn concurrency_limit_odd_over_shards(io: &str) {
    concurrency_holds(io, 3, 2);
}
daemon_test!(concurrency_limit_odd_over_shards);

/// Slow start acts on mail that is already queued: 300 messages are queued
/// first (no route), then the daemon restarts with a relay host, a limit of
/// 8 and an initial concurrency of 2 (one connection per shard). Each
/// success widens the window (Postfix's positive feedback), so more
/// connections must open while the queue is still long; the slow sink
/// (5 ms per reply) keeps transactions overlapping. Staying at the initial
/// two connections for all 300 messages means the wider window is never
/// used.
fn slow_start_raises_concurrency(io: &str) {
    const N: usize = 300;
    let base = format!(
        "{FAST_RETRY}default_destination_concurrency_limit = 8\ninitial_destination_concurrency = 2\n"
    );
    let sb = sandbox(&base);
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_recovered(2);
    drop_messages(&sb, "slow", 0..N, to_net);
    d.wait_until("300 messages queued", || {
        count_in(&sb.pickup()) == 0 && sb.queue_list().len() == N
    });
    d.stop();
    let sink = start_sink(SinkConfig {
        latency: Latency::Fixed(Duration::from_millis(5)),
        ..SinkConfig::default()
    });
    sb.write_config(&Settings {
        extra: format!("{base}{}", relay(sink.local_addr)),
        ..Settings::default()
    });
    let mut d = sb.start_daemon_nth(io, 1);
    let ids: Vec<String> = (0..N).map(|i| mid("slow", i)).collect();
    wait_delivered(&mut d, &sink, &ids, BULK_DEADLINE);
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.stop();
    let stats = sink.stats();
    eprintln!(
        "slow start ({io}): at most {} connections at once (initial 2, limit 8)",
        stats.max_concurrent_connections
    );
    assert!(
        stats.max_concurrent_connections <= 8,
        "limit exceeded: {stats:?}"
    );
    assert!(
        stats.max_concurrent_connections > 2,
        "{N} queued messages were delivered over the initial 2 connections only: \
         the concurrency window grew but no worker was started for it"
    );
}
daemon_test!(slow_start_raises_concurrency);

/// `smtp_connection_reuse_count_limit = 3`: no connection carries more than
/// three transactions, so 30 messages need at least 10 connections.
fn reuse_count_limit(io: &str) {
    const N: usize = 30;
    let sink = start_sink(SinkConfig::default());
    let sb = sandbox(&format!(
        "{FAST_RETRY}smtp_connection_reuse_count_limit = 3\n{}",
        relay(sink.local_addr)
    ));
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    drop_messages(&sb, "reuse", 0..N, to_net);
    let ids: Vec<String> = (0..N).map(|i| mid("reuse", i)).collect();
    wait_delivered(&mut d, &sink, &ids, DEADLINE);
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.stop();
    let stats = sink.stats();
    assert!(
        stats.connections >= (N / 3) as u64,
        "{} connections carried {N} transactions with a reuse count limit of 3",
        stats.connections
    );
    assert_eq!(stats.messages, N as u64);
}
daemon_test!(reuse_count_limit);

/// `default_destination_recipient_limit = 2`: a message to five recipients
/// goes out in three transactions (2 + 2 + 1), each recipient once.
fn recipient_limit_splits_transactions(io: &str) {
    let sink_dump = tempfile::tempdir().expect("tempdir");
    let sink = start_sink(SinkConfig {
        dump_dir: Some(sink_dump.path().to_path_buf()),
        ..SinkConfig::default()
    });
    let sb = sandbox(&format!(
        "{FAST_RETRY}default_destination_recipient_limit = 2\n{}",
        relay(sink.local_addr)
    ));
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    let rcpts: Vec<String> = (0..5).map(|k| format!("split{k}@example.net")).collect();
    drop_messages(&sb, "split", 0..1, |_| rcpts.join(", "));
    d.wait_until("three transactions", || sink.stats().messages >= 3);
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.stop();
    let dumps = read_dumps(sink_dump.path());
    let mut sizes: Vec<usize> = dumps.iter().map(|(e, _)| e.rcpt_to.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 2, 2], "{dumps:?}");
    let mut got: Vec<String> = dumps.iter().flat_map(|(e, _)| e.rcpt_to.clone()).collect();
    got.sort();
    assert_eq!(got, rcpts);
    assert_eq!(sink.stats().duplicate_deliveries, 0);
    let log = d.log();
    assert_eq!(count_lines(&log, &["ringmail/smtp[", "status=sent"]), 5);
    assert_eq!(count_lines(&log, &["ringmail/qmgr[", ": removed"]), 1);
}
daemon_test!(recipient_limit_splits_transactions);

// ---------------------------------------------------------------------------
// kill -9 while delivering
// ---------------------------------------------------------------------------

/// 20,000 messages are queued first (no route yet). Then the daemon runs
/// with the relay host set to a slow sink A and is killed with SIGKILL once
/// A has accepted half of them (but not all); a restarted daemon delivers the rest to
/// a fast sink B on the same port.
///
/// Every message must arrive at least once (A and B together). A message
/// arrives twice only if A accepted it but the daemon had not yet recorded
/// the `sent` status when it died. Status bytes are written through the
/// shared mapping as soon as the 250 is read, so they survive a SIGKILL;
/// the window is therefore the transactions in flight at the kill. Each
/// connection has at most one message whose body is out and whose final
/// reply is not yet recorded (chaining sends the next envelope early, never
/// the next body: that waits for its 354, which follows the previous
/// final reply), each transaction here
/// carries one message (one recipient each), and at most
/// `default_destination_concurrency_limit` connections are open: so
/// duplicates <= LIMIT, and <= the most connections sink A saw at once.
/// (Queuing happens before phase 2, so pickup's own duplicate window, an
/// input file not yet unlinked at the kill, plays no part here.)
fn kill9_mid_delivery(io: &str) {
    const N: usize = 20_000;
    const LIMIT: usize = 20;
    let common_extra = format!("{FAST_RETRY}default_destination_concurrency_limit = {LIMIT}\n");
    let ids: Vec<String> = (0..N).map(|i| mid("k9", i)).collect();
    for (attempt, latency_ms) in [1u64, 5, 20].into_iter().enumerate() {
        let sb = sandbox(&common_extra);
        // Phase 1: queue everything; no route yet, so nothing is sent.
        let mut d = sb.start_daemon_nth(io, 0);
        d.wait_recovered(2);
        drop_messages(&sb, "k9", 0..N, to_net);
        wait_every(
            &mut d,
            "20,000 messages queued",
            Duration::from_millis(500),
            BULK_DEADLINE,
            || count_in(&sb.pickup()) == 0 && sb.queue_list().len() == N,
        );
        d.stop();

        // Phase 2: deliver to slow sink A; kill -9 mid-way.
        let sink_a = start_sink(SinkConfig {
            latency: Latency::Fixed(Duration::from_millis(latency_ms)),
            ..SinkConfig::default()
        });
        let addr = sink_a.local_addr;
        sb.write_config(&Settings {
            extra: format!("{common_extra}{}", relay(addr)),
            ..Settings::default()
        });
        let mut d = sb.start_daemon_nth(io, 1);
        wait_every(
            &mut d,
            "half the messages at sink A",
            Duration::from_millis(5),
            BULK_DEADLINE,
            || sink_a.stats().messages as usize >= N / 2,
        );
        d.kill9();
        let a_ledger = sink_a.counters();
        let a = sink_a.shutdown();
        if a.messages as usize >= N {
            eprintln!(
                "attempt {}: sink A got all {N} messages before the kill (latency {latency_ms} ms); again, slower",
                attempt + 1
            );
            continue;
        }
        let a_counts = a_ledger.message_id_counts();
        eprintln!(
            "kill -9 ({io}): sink A accepted {} messages before the kill, at most {} connections at once",
            a.messages, a.max_concurrent_connections
        );
        assert_eq!(duplicates(&a_counts), 0, "duplicates before the kill");

        // Phase 3: restart; the rest goes to sink B on the same port.
        let sink_b = start_sink(SinkConfig {
            listen: addr,
            ..SinkConfig::default()
        });
        let mut d = sb.start_daemon_nth(io, 2);
        let rec = d.wait_recovered(2);
        let recovered: usize = rec.iter().map(|r| r.messages).sum();
        wait_every(
            &mut d,
            "every message delivered to A or B",
            Duration::from_millis(100),
            BULK_DEADLINE,
            || {
                let b = sink_b.message_id_counts();
                ids.iter()
                    .all(|id| a_counts.contains_key(id) || b.contains_key(id))
            },
        );
        wait_queue_empty(&mut d, &sb, BULK_DEADLINE);
        d.stop();
        let b_ledger = sink_b.counters();
        let b = sink_b.shutdown();
        let b_counts = b_ledger.message_id_counts();

        let mut total: HashMap<String, u32> = a_counts.clone();
        for (id, n) in &b_counts {
            *total.entry(id.clone()).or_insert(0) += n;
        }
        for id in &ids {
            assert!(total.get(id).copied().unwrap_or(0) >= 1, "{id} lost");
        }
        assert_eq!(total.len(), N, "no Message-ID from nowhere");
        let dups = duplicates(&total);
        eprintln!(
            "kill -9 ({io}): {} messages delivered before the kill, {recovered} recovered and {} delivered after the restart, {dups} duplicates (bound {LIMIT})",
            a.messages, b.messages
        );
        assert_eq!(duplicates(&b_counts), 0, "duplicates after the restart");
        assert_eq!(
            b.messages as usize, recovered,
            "each message recovered after the kill is delivered once, and only those"
        );
        assert!(
            dups <= LIMIT as u64,
            "{dups} duplicates, more than the {LIMIT} transactions that can be in flight"
        );
        assert!(
            dups <= a.max_concurrent_connections,
            "{dups} duplicates, more than the {} connections open at once",
            a.max_concurrent_connections
        );
        return;
    }
    panic!("sink A received all {N} messages before the kill in every attempt");
}
daemon_test!(kill9_mid_delivery);

/// Sets or clears the append-only attribute of directory `dir` (`chattr`):
/// names can be added to an append-only directory but not removed, even by
/// root, and the files in it keep their ctime. Returns chattr's complaint
/// when it fails.
fn set_append_only(dir: &Path, on: bool) -> Result<(), String> {
    let flag = if on { "+a" } else { "-a" };
    let out = Command::new("chattr")
        .arg(flag)
        .arg(dir)
        .output()
        .map_err(|e| format!("run chattr (e2fsprogs): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "chattr {flag} {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Clears the append-only attribute when dropped, so a failing test does
/// not leave a directory behind that even root cannot empty.
struct AppendOnly(PathBuf);

impl Drop for AppendOnly {
    fn drop(&mut self) {
        let _ = set_append_only(&self.0, false);
    }
}

/// Spool files whose messages were delivered but which could not be
/// unlinked (their directory made append-only) keep their queue records,
/// even once the segments holding them are sealed and every message in
/// them delivered: after a kill -9 and a restart the files are recognised
/// and removed, not delivered a second time, and only then (pickup's
/// releases reaching the shard) are those segments deleted. Before records
/// were held until their file's unlink was durable, the segments went with
/// the last delivery and the files were queued and delivered again.
fn undeletable_files_are_not_delivered_twice_after_a_crash(io: &str) {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: chattr +a needs root");
        return;
    }
    // About 3 MB: three 1 MiB segments on the one shard.
    const N: usize = 100;
    let sink = start_sink(SinkConfig::default());
    let sb = Sandbox::with(Settings {
        shards: 1,
        extra: format!("{FAST_RETRY}{}", relay(sink.local_addr)),
        ..Settings::default()
    });
    let pad = "x".repeat(30_000);
    fs::create_dir_all(sb.pickup()).unwrap();
    for i in 0..N {
        let mut m = message("stuck", i, &to_net(i));
        m.extend_from_slice(pad.as_bytes());
        m.extend_from_slice(b"\n");
        sb.drop_file(&format!("stuck-{i:06}.eml"), &m);
    }
    if let Err(e) = set_append_only(&sb.pickup(), true) {
        eprintln!("skipped: this file system has no append-only directories: {e}");
        return;
    }
    let append_only = AppendOnly(sb.pickup());
    let ids: Vec<String> = (0..N).map(|i| mid("stuck", i)).collect();
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_recovered(1);
    wait_delivered(&mut d, &sink, &ids, DEADLINE);
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.wait_until("every failed unlink logged", || {
        count_lines(&d_log(&sb, 0), &["queued but cannot unlink"]) == N
    });
    // Two sealed segments full of delivered messages, and the active one.
    let held = sb.segment_files().len();
    assert!(
        held >= 3,
        "every segment kept while its files exist: {held} segment files"
    );
    d.kill9();

    drop(append_only);
    let mut d = sb.start_daemon_nth(io, 1);
    d.wait_recovered(1);
    d.wait_until("every file recognised as queued already", || {
        count_lines(&d_log(&sb, 1), &["queued already as"]) == N
            || d_log(&sb, 1).contains("status=sent")
    });
    d.wait_until("the files removed", || count_in(&sb.pickup()) == 0);
    d.wait_until("the held segments deleted once released", || {
        sb.segment_files().len() == 1
    });
    // A wrongly re-queued copy would be delivered within a second or two.
    std::thread::sleep(Duration::from_secs(2));
    d.stop();
    assert_eq!(
        count_lines(&d_log(&sb, 1), &["status=sent"]),
        0,
        "the restarted daemon sent nothing"
    );
    let counts = sink.message_id_counts();
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "{id} delivered once");
    }
}
daemon_test!(undeletable_files_are_not_delivered_twice_after_a_crash);

// ---------------------------------------------------------------------------
// Postfix's smtp-sink as the receiver
// ---------------------------------------------------------------------------

/// Debian's postfix package installs it; `.ci/run` installs postfix.
const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// A running `smtp-sink -c -d DIR/msg. 127.0.0.1:PORT 100`, killed on drop.
struct PostfixSink {
    child: Child,
    addr: SocketAddr,
    dump: tempfile::TempDir,
    out: PathBuf,
    err: PathBuf,
}

impl PostfixSink {
    fn start() -> PostfixSink {
        // A free port: bound, then released for smtp-sink.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let dump = tempfile::Builder::new()
            .prefix("ringmail-smtp-sink-")
            .tempdir()
            .expect("dump dir");
        let logs = tempfile::Builder::new()
            .prefix("ringmail-smtp-sink-out-")
            .tempdir()
            .expect("log dir")
            .keep();
        let out = logs.join("stdout");
        let err = logs.join("stderr");
        let mut cmd = Command::new(SMTP_SINK);
        cmd.arg("-c");
        if rustix::process::geteuid().is_root() {
            // smtp-sink refuses to keep root privileges; the dump directory
            // must then be writable by the user it switches to.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dump.path(), fs::Permissions::from_mode(0o777))
                .expect("chmod dump dir");
            cmd.args(["-u", "nobody"]);
        }
        cmd.arg("-d")
            .arg(format!("{}/msg.", dump.path().display()))
            .arg(format!("127.0.0.1:{}", addr.port()))
            .arg("100")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).expect("stdout file"))
            .stderr(fs::File::create(&err).expect("stderr file"));
        let mut child = cmd.spawn().expect("spawn smtp-sink");
        let start = Instant::now();
        loop {
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            if let Some(st) = child.try_wait().expect("try_wait smtp-sink") {
                panic!(
                    "smtp-sink exited with {st}: {}",
                    fs::read_to_string(&err).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "smtp-sink does not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PostfixSink {
            child,
            addr,
            dump,
            out,
            err,
        }
    }

    /// The contents of every dump file.
    fn dumps(&self) -> Vec<String> {
        names_in(self.dump.path())
            .iter()
            .map(|n| {
                String::from_utf8_lossy(&fs::read(self.dump.path().join(n)).expect("read dump"))
                    .into_owned()
            })
            .collect()
    }

    /// The last `mesg=N` counter printed with `-c`, if any.
    fn message_counter(&self) -> Option<u64> {
        let out = fs::read_to_string(&self.out).unwrap_or_default();
        out.split(['\r', '\n', ' '])
            .filter_map(|w| w.strip_prefix("mesg="))
            .filter_map(|n| n.parse().ok())
            .next_back()
    }
}

impl Drop for PostfixSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- smtp-sink stderr ----\n{}",
                fs::read_to_string(&self.err).unwrap_or_default()
            );
        }
        if let Some(dir) = self.out.parent() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// 100 messages to Postfix's `smtp-sink` (not only our own sink): each
/// arrives once with its envelope (MAIL, RCPT, the EHLO name) and body, the
/// log says `status=sent` with smtp-sink's address, and the queue empties.
/// Skipped, loudly, where smtp-sink is not installed; a failure when `CI`
/// is set.
fn postfix_smtp_sink(io: &str) {
    const N: usize = 100;
    if !Path::new(SMTP_SINK).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{SMTP_SINK} is not installed but CI is set: .ci/run must install postfix"
        );
        eprintln!(
            "SKIP postfix_smtp_sink::{io}: {SMTP_SINK} is not installed (Debian: apt-get install postfix); \
             delivery to Postfix's receiver NOT tested"
        );
        return;
    }
    let ps = PostfixSink::start();
    let sb = sandbox(&format!("{FAST_RETRY}{}", relay(ps.addr)));
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    drop_messages(&sb, "pfx", 0..N, to_net);
    wait_every(
        &mut d,
        "a status=sent line per message",
        Duration::from_millis(100),
        DEADLINE,
        || count_lines(&d_log(&sb, 0), &["ringmail/smtp[", "status=sent"]) >= N,
    );
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.stop();
    let log = d.log();
    let relay_f = format!("relay=127.0.0.1[127.0.0.1]:{}", ps.addr.port());
    assert_eq!(
        count_lines(&log, &["ringmail/smtp[", "status=sent", &relay_f, "dsn=2."]),
        N
    );
    assert_eq!(count_lines(&log, &["status=deferred"]), 0);
    assert_eq!(count_lines(&log, &["ringmail/qmgr[", ": removed"]), N);

    let dumps = ps.dumps();
    assert_eq!(dumps.len(), N, "one smtp-sink dump per message");
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for text in &dumps {
        let header = |name: &str| -> Vec<&str> {
            text.lines()
                .filter_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .collect()
        };
        let id = header("Message-ID:");
        assert_eq!(id.len(), 1, "{text}");
        let i: usize = id[0]
            .strip_prefix("<pfx.")
            .and_then(|x| x.strip_suffix("@test.example>"))
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("unexpected Message-ID {:?}", id[0]));
        *seen.entry(i).or_insert(0) += 1;
        assert_eq!(header("X-Rcpt-Args:"), [format!("<{}>", rcpt(i))], "{text}");
        let mail = header("X-Mail-Args:");
        assert!(
            mail.len() == 1 && mail[0].starts_with("<bulk@example.com>"),
            "{text}"
        );
        assert_eq!(header("X-Helo-Args:"), ["mx.example.org"], "{text}");
        assert_eq!(header("X-Client-Proto:"), ["ESMTP"], "{text}");
        assert!(
            text.contains(&format!("\nbody of pfx message {i}\n")),
            "{text}"
        );
    }
    assert_eq!(seen.len(), N, "every message arrived");
    assert!(seen.values().all(|&n| n == 1), "duplicates: {seen:?}");
    if let Some(n) = ps.message_counter() {
        assert!(n >= N as u64, "smtp-sink counted {n} messages");
    }
}
daemon_test!(postfix_smtp_sink);

// ---------------------------------------------------------------------------
// Configuration edge cases of delivery
// ---------------------------------------------------------------------------

/// Fails at once (instead of at the deadline) when a daemon thread panicked.
fn assert_no_panic(log: &str) {
    assert!(
        !log.contains("panicked"),
        "a daemon thread panicked:\n{log}"
    );
}

/// `default_destination_recipient_limit = 0`: the daemon either refuses the
/// configuration at start, naming the key, or delivers the mail. It must not
/// start and then lose a shard thread on the first message.
fn recipient_limit_zero(io: &str) {
    let sink = start_sink(SinkConfig::default());
    let sb = sandbox(&format!(
        "{FAST_RETRY}default_destination_recipient_limit = 0\n{}",
        relay(sink.local_addr)
    ));
    let mut d = match sb.try_start_daemon(io, 0) {
        Ok(d) => d,
        Err((status, log)) => {
            assert!(!status.success(), "{log}");
            assert!(
                log.contains("default_destination_recipient_limit"),
                "refused without naming the key: {log}"
            );
            return;
        }
    };
    d.wait_recovered(2);
    drop_messages(&sb, "rl0", 0..2, to_net);
    wait_every(
        &mut d,
        "both messages delivered",
        Duration::from_millis(50),
        DEADLINE,
        || {
            assert_no_panic(&d_log(&sb, 0));
            let c = sink.message_id_counts();
            c.contains_key(&mid("rl0", 0)) && c.contains_key(&mid("rl0", 1))
        },
    );
    wait_queue_empty(&mut d, &sb, DEADLINE);
    d.stop();
    assert_no_panic(&d.log());
}
daemon_test!(recipient_limit_zero);

/// A `[[route]]` whose nexthop does not parse: the daemon either refuses the
/// configuration at start, naming it, or keeps that domain's mail away from
/// the relay host (deferred). It must not drop the route silently and send
/// the domain's mail to `relayhost`.
fn bad_route_nexthop_not_ignored(io: &str) {
    let sink = start_sink(SinkConfig::default());
    let sb = sandbox(&format!(
        "{FAST_RETRY}{}[[route]]\ndomain = \"special.test\"\nnexthop = \"[127.0.0.1]:notaport\"\n",
        relay(sink.local_addr)
    ));
    let mut d = match sb.try_start_daemon(io, 0) {
        Ok(d) => d,
        Err((status, log)) => {
            assert!(!status.success(), "{log}");
            assert!(
                log.contains("route") || log.contains("nexthop"),
                "refused without naming the route: {log}"
            );
            return;
        }
    };
    d.wait_recovered(2);
    drop_messages(&sb, "special", 0..1, |_| "x@special.test".into());
    drop_messages(&sb, "plain", 0..1, to_net);
    wait_delivered(&mut d, &sink, &[mid("plain", 0)], DEADLINE);
    d.wait_until("the special.test message handled", || {
        !lines_for(&d_log(&sb, 0), "x@special.test").is_empty()
    });
    d.stop();
    let log = d.log();
    let lines = lines_for(&log, "x@special.test");
    assert_eq!(
        sink.counters().message_id_count(&mid("special", 0)),
        0,
        "mail for special.test, whose [[route]] nexthop is invalid, went to the relay host: {lines:?}"
    );
    assert!(
        lines.iter().all(|l| l.contains("status=deferred")),
        "{lines:?}"
    );
}
daemon_test!(bad_route_nexthop_not_ignored);
