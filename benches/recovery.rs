//! Recovery time and index memory for a large queue: appends N small
//! messages (default 1,000,000; `RINGMAIL_BENCH_MESSAGES` overrides) with a
//! group commit every 1,000, then reopens the store and reports how long
//! recovery took and how many anonymous resident bytes the index costs per
//! message (RssAnon from /proc/self/status; file-backed mapped pages are
//! not counted). Run: `cargo bench --bench recovery`. With
//! `RINGMAIL_BENCH_KEEP=1` the queue is kept and its path printed (a spool's
//! `queue/` for timing `ringmail queue shape` and `queue list`).

use std::time::Instant;

use ringmail::model::{Envelope, MessageFlags, Source, Submission};
use ringmail::queue::Store;

fn rss_anon_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // special: keep that run tiny so test runs stay fast.
    let under_test = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("RINGMAIL_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if under_test { 1000 } else { 1_000_000 });
    let dir = tempfile::Builder::new()
        .prefix("ringmail-recovery-bench")
        .tempdir_in(std::env::var("RINGMAIL_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .expect("temp dir");
    let mut sub = Submission {
        envelope: Envelope {
            sender: "sender@example.com".into(),
            recipients: vec![String::new()],
        },
        wire: b"From: sender@example.com\r\nSubject: small\r\n\r\nhello\r\n".to_vec(),
        flags: MessageFlags::default(),
        dsn: Default::default(),
        message_id: "bench@host.example".into(),
        arrival_micros: 1,
        uid: 0,
        source: Source::Internal(0),
        origin: Default::default(),
        file_identity: None,
        campaign: None,
    };
    let t = Instant::now();
    {
        let (mut store, _) = Store::open(dir.path(), 0, 1, 64 << 20).expect("open");
        for i in 0..n {
            sub.envelope.recipients[0] = format!("user{i}@example.net");
            store.append(&sub).expect("append");
            if i % 1000 == 999 {
                for f in store.take_dirty().unwrap() {
                    f.sync_data().expect("fdatasync");
                }
            }
        }
        for f in store.take_dirty().unwrap() {
            f.sync_data().expect("fdatasync");
        }
    }
    let fill = t.elapsed();
    // Cold start: with RINGMAIL_BENCH_DROP_CACHES=1 (root only), recovery
    // reads the segments from the disk rather than the page cache.
    let cold = std::env::var("RINGMAIL_BENCH_DROP_CACHES").is_ok_and(|v| v == "1")
        && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    let before = rss_anon_bytes();
    let t = Instant::now();
    let (store, report) = Store::open(dir.path(), 0, 1, 64 << 20).expect("recover");
    let recovery = t.elapsed();
    let after = rss_anon_bytes();
    assert_eq!(report.messages, n, "every message recovered");
    println!("messages:              {n}");
    println!(
        "fill (append+commit):  {:.2} s ({:.0} msg/s)",
        fill.as_secs_f64(),
        n as f64 / fill.as_secs_f64()
    );
    println!(
        "recovery:              {:.3} s ({} segments, page cache {})",
        recovery.as_secs_f64(),
        report.segments,
        if cold { "dropped first" } else { "warm" }
    );
    println!(
        "index RssAnon/message: {:.1} bytes (index capacity estimate {:.1} bytes)",
        after.saturating_sub(before) as f64 / n as f64,
        store.index_bytes() as f64 / n as f64
    );
    if std::env::var("RINGMAIL_BENCH_KEEP").is_ok_and(|v| v == "1") {
        drop(store);
        println!("kept queue:            {}", dir.keep().display());
    }
}
