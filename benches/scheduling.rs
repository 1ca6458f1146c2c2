//! Scheduling cost per message with many recipient domains (issue 16):
//! the queue manager plans N queued one-recipient messages (routing, a
//! destination per next hop, jobs) once with every recipient in one
//! domain and once with every recipient in a domain of its own
//! (default 100,000 messages and domains; `RINGMAIL_BENCH_MESSAGES`
//! overrides), and reports the time per message of each and their ratio.
//!
//! The queue manager is stopped before planning, so no worker starts and
//! nothing is looked up or connected: this is the cost of the scheduler's
//! own data structures, which is what grows with the number of domains
//! (MX lookups and connections grow with it anyway). Shaping is off (it
//! would look up each domain's MX hosts). Run: `cargo bench --bench
//! scheduling`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringmail::config::Config;
use ringmail::deliver::{DeliveryConfig, Router};
use ringmail::model::{Envelope, MessageFlags, QueueId, Source, Submission};
use ringmail::queue::Store;
use ringmail::rt::IoBackend;
use ringmail::sched::qmgr::{Qmgr, QmgrConfig};
use ringmail::sched::slots::DestinationSlots;

/// Appends `n` messages whose recipients spread over `domains` domains;
/// returns the store and the queue IDs.
fn queue(dir: &std::path::Path, n: usize, domains: usize) -> (Store, Vec<QueueId>) {
    let (mut store, _) = Store::open(dir, 0, 1, 64 << 20).expect("open the queue");
    let mut sub = Submission {
        envelope: Envelope {
            sender: "sender@example.com".into(),
            recipients: vec![String::new()],
        },
        wire: b"From: sender@example.com\r\nSubject: small\r\n\r\nhello\r\n".to_vec(),
        flags: MessageFlags::default(),
        dsn: Default::default(),
        message_id: "bench@host.example".into(),
        arrival_micros: ringmail::model::now_micros(),
        uid: 0,
        source: Source::Internal(0),
        origin: Default::default(),
        file_identity: None,
        campaign: None,
    };
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        sub.envelope.recipients[0] = format!("user{i}@d{}.example", i % domains);
        ids.push(store.append(&sub).expect("append"));
    }
    for f in store.take_dirty().expect("dirty segments") {
        f.sync_data().expect("fdatasync");
    }
    (store, ids)
}

/// Plans every message twice: the time per message of the first pass
/// (each new domain's destination is made) and of the second (every
/// destination exists: the steady state of a queue holding mail for all
/// those domains).
fn plan_all(n: usize, domains: usize) -> (Duration, Duration) {
    let dir = tempfile::Builder::new()
        .prefix("ringmail-scheduling-bench")
        .tempdir_in(std::env::var("RINGMAIL_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .expect("temp dir");
    let (store, ids) = queue(dir.path(), n, domains);
    let config = Config::default();
    let delivery = DeliveryConfig::from_config(&config, IoBackend::Epoll);
    let cfg = QmgrConfig::from_config(&config, 1, delivery);
    let router = Router::from_config(&config).expect("router");
    let qmgr = Qmgr::new(
        Rc::new(RefCell::new(store)),
        cfg,
        router,
        DestinationSlots::new(),
    );
    // No worker starts: planning only.
    qmgr.stop();
    let t = Instant::now();
    for id in &ids {
        qmgr.schedule(*id);
    }
    let first = t.elapsed() / n as u32;
    assert_eq!(qmgr.queued_messages(), n, "every message planned");
    let t = Instant::now();
    for id in &ids {
        qmgr.schedule(*id);
    }
    let again = t.elapsed() / n as u32;
    (first, again)
}

fn main() {
    // `cargo test --benches` runs this too: keep that run tiny.
    let under_test = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("RINGMAIL_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if under_test { 1000 } else { 100_000 });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut one = Vec::new();
        let mut many = Vec::new();
        // `RINGMAIL_BENCH_DOMAINS` overrides the number of domains of the
        // second case (default: one per message).
        let domains: usize = std::env::var("RINGMAIL_BENCH_DOMAINS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(n)
            .clamp(1, n);
        for _ in 0..3 {
            one.push(plan_all(n, 1));
            many.push(plan_all(n, domains));
        }
        let median = |runs: &[(Duration, Duration)],
                      pick: fn(&(Duration, Duration)) -> Duration| {
            let mut v: Vec<Duration> = runs.iter().map(pick).collect();
            v.sort();
            v[v.len() / 2]
        };
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("messages: {n} (medians of 3 passes, µs per message)");
        for (what, pick) in [
            (
                "first plan",
                (|r: &(Duration, Duration)| r.0) as fn(&(Duration, Duration)) -> Duration,
            ),
            ("planned again", |r: &(Duration, Duration)| r.1),
        ] {
            let (a, b) = (median(&one, pick), median(&many, pick));
            println!(
                "{what:<14} one domain {:.2}, {domains} domains {:.2}, ratio {:.2}",
                us(a),
                us(b),
                us(b) / us(a).max(1e-9)
            );
        }
    });
}
