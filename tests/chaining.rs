//! Transaction chaining against a receiver that refuses commands pipelined
//! after the end of DATA (the bundled sink's `strict_pipelining`, which
//! answers as Haraka 3.3 does): nothing is bounced, deferred or delivered
//! twice because of our own protocol choice, bounce notices (null sender)
//! included, and the refusal is learnt and logged once.

mod common;

use std::collections::HashMap;
use std::fs;

use common::*;
use ringmail::sink::{self, Faults, SinkConfig, SinkHandle};

/// A pickup file to `to` with Message-ID `<tag.i@test.example>`.
fn message(tag: &str, i: usize, to: &str) -> Vec<u8> {
    format!(
        "From: Bulk Sender <bulk@example.com>\n\
         To: {to}\n\
         Subject: {tag} {i}\n\
         Message-ID: <{tag}.{i}@test.example>\n\
         \n\
         body of {tag} message {i}\n"
    )
    .into_bytes()
}

fn strict_sink() -> SinkHandle {
    sink::start(SinkConfig {
        strict_pipelining: true,
        ..SinkConfig::default()
    })
    .expect("start the strict sink")
}

/// Mail to `r{i}@example.net` goes to a strict relay host; mail to
/// `bad.test` goes to a second sink that refuses every recipient (550), so
/// each of those bounces and its notice (null sender) goes to the strict
/// relay host too. Every message and every notice must arrive exactly
/// once; only the `bad.test` recipients are bounced.
fn strict_receiver(io: &str, chaining: &str) {
    const N: usize = 120;
    const BAD: usize = 30;
    let strict = strict_sink();
    let refusing = sink::start(SinkConfig {
        faults: Faults {
            rcpt_permfail: 1.0,
            ..Faults::default()
        },
        ..SinkConfig::default()
    })
    .expect("start the refusing sink");
    let sb = Sandbox::with(Settings {
        extra: format!(
            "minimal_backoff_time = 1\nmaximal_backoff_time = 2\n\
             smtp_transaction_chaining = \"{chaining}\"\n\
             relayhost = \"[127.0.0.1]:{}\"\n\
             [[route]]\ndomain = \"bad.test\"\nnexthop = \"[127.0.0.1]:{}\"\n",
            strict.local_addr.port(),
            refusing.local_addr.port()
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    fs::create_dir_all(sb.pickup()).expect("mkdir pickup");
    for i in 0..N {
        sb.drop_file(&format!("ok-{i:04}.eml"), &message("ok", i, &rcpt(i)));
    }
    for i in 0..BAD {
        let to = format!("x{i}@bad.test");
        sb.drop_file(&format!("bad-{i:04}.eml"), &message("bad", i, &to));
    }
    let stats = strict.counters();
    d.wait_until("every message and notice at the strict sink", || {
        stats.snapshot().messages >= (N + BAD) as u64
    });
    d.wait_until("the queue to be empty", || sb.queue_list().is_empty());
    d.stop();
    let log = d.log();
    let snap = strict.stats();
    assert_eq!(snap.messages, (N + BAD) as u64, "{snap:?}\n{log}");
    let counts: HashMap<String, u32> = strict.message_id_counts();
    for i in 0..N {
        let id = format!("<ok.{i}@test.example>");
        assert_eq!(counts.get(&id), Some(&1), "{id} arrived once: {snap:?}");
    }
    assert_eq!(snap.duplicate_deliveries, 0, "{snap:?}");
    assert_eq!(
        count_lines(&log, &["ringmail/smtp[", "status=bounced"]),
        BAD,
        "only the bad.test recipients bounce:\n{log}"
    );
    assert_eq!(
        count_lines(&log, &["ringmail/smtp[", "status=deferred"]),
        0,
        "nothing is deferred because of chaining:\n{log}"
    );
    assert_eq!(
        count_lines(&log, &["ringmail/smtp[", "status=sent"]),
        N + BAD,
        "every original and every notice sent:\n{log}"
    );
    let learnt = count_lines(&log, &["no longer chaining transactions to"]);
    match chaining {
        "off" => {
            assert_eq!(snap.pipelined_after_data, 0, "nothing chained: {snap:?}");
            assert_eq!(learnt, 0, "{log}");
        }
        "auto" => {
            assert!(
                snap.pipelined_after_data >= 1,
                "a chain was tried: {snap:?}"
            );
            assert_eq!(learnt, 1, "learnt and logged once:\n{log}");
        }
        _ => {
            assert!(snap.pipelined_after_data >= 1, "{snap:?}");
            assert_eq!(learnt, 0, "`on` never stops chaining:\n{log}");
        }
    }
    assert!(!log.contains("panicked"), "{log}");
    eprintln!("{chaining}: {snap:?}");
}

fn strict_receiver_auto(io: &str) {
    strict_receiver(io, "auto");
}
daemon_test!(strict_receiver_auto);

fn strict_receiver_on(io: &str) {
    strict_receiver(io, "on");
}
daemon_test!(strict_receiver_on);

fn strict_receiver_off(io: &str) {
    strict_receiver(io, "off");
}
daemon_test!(strict_receiver_off);
