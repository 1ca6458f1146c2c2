//! Durability across stops and crashes: kill -9 in the middle of a bulk
//! pickup, SIGTERM, a segment with a torn last record, and a change of the
//! shard count between runs.

mod common;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};

use common::*;

const N: usize = 10_000;

fn file_name(i: usize) -> String {
    format!("m{i:05}.eml")
}

/// Writes files `range` into `pickup/` (creating it), daemon running or not.
fn drop_range(sb: &Sandbox, range: std::ops::Range<usize>) {
    std::fs::create_dir_all(sb.pickup()).unwrap();
    for i in range {
        sb.drop_file(&file_name(i), &pickup_message(i));
    }
}

/// kill -9 while the daemon is picking up 10,000 files, then restart: a file
/// that was unlinked was queued (exactly once); a file still in `pickup/`
/// whose record was on disk is recognised by the restarted daemon (its
/// record keeps the file's identity) and removed, not queued again; any
/// other file still there is queued. Every message ends up queued exactly
/// once.
fn kill9_mid_pickup(io: &str) {
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        let sb = Sandbox::new();
        drop_range(&sb, 0..N);
        let mut d = sb.start_daemon_nth(io, 0);
        // Kill once at least 1,000 files are done, before all are.
        d.wait_until("1,000 files picked up", || {
            count_in(&sb.pickup()) <= N - 1000
        });
        d.kill9();
        let remaining: BTreeSet<String> = names_in(&sb.pickup()).into_iter().collect();
        if remaining.is_empty() {
            eprintln!(
                "attempt {attempt}: the daemon finished all {N} files before the kill; again"
            );
            continue;
        }
        assert!(
            !d.log().contains("terminating on signal"),
            "SIGKILL gives no chance to shut down cleanly"
        );
        // The control socket is left behind but nobody answers it.
        let out = sb.sendmail(&["-q"], b"");
        assert_eq!(out.status.code(), Some(69), "-q after kill -9");

        // What the queue holds right after the crash.
        let before = recipient_counts(&sb.queue_list());
        let listed_before: usize = before.values().sum();

        let mut d = sb.start_daemon_nth(io, 1);
        let rec = d.wait_recovered(2);
        let recovered: usize = rec.iter().map(|r| r.messages).sum();
        assert_eq!(
            recovered, listed_before,
            "recovery finds the messages the listing shows: {rec:?}"
        );
        d.wait_until("pickup/ empty after restart", || {
            count_in(&sb.pickup()) == 0
        });
        let listed_after = sb.queue_list();
        let after = recipient_counts(&listed_after);
        // Each message names the file it came from.
        for m in &listed_after {
            let addr = &m.recipients[0].address;
            let i: usize = addr[1..addr.find('@').unwrap()].parse().unwrap();
            let want = format!("pickup/{}", file_name(i));
            assert_eq!(m.source_file.as_deref(), Some(want.as_str()), "{m:?}");
        }

        let mut recognised = 0;
        for i in 0..N {
            let r = rcpt(i);
            let b = before.get(&r).copied().unwrap_or(0);
            let a = after.get(&r).copied().unwrap_or(0);
            if remaining.contains(&file_name(i)) {
                // Maybe on disk before the kill (not yet acknowledged or
                // not yet unlinked): then recognised, else queued now.
                assert!(b <= 1, "{r}: queued {b} times before the kill");
                assert_eq!(
                    a, 1,
                    "{r}: a file left behind is queued exactly once in all"
                );
                recognised += b;
            } else {
                assert_eq!(b, 1, "{r}: its file was unlinked, so it was queued (once)");
                assert_eq!(a, 1, "{r}: queued again although its file was gone");
            }
        }
        assert_eq!(after.len(), N, "no recipient from nowhere");
        eprintln!(
            "kill -9 ({io}): {} files unlinked before the kill, {} remained, {recognised} of those queued already and removed on restart",
            N - remaining.len(),
            remaining.len()
        );
        let log = d.log();
        assert_eq!(
            log.matches("before the restart; removing the file").count(),
            recognised,
            "one log line per file recognised"
        );
        if recognised > 0 {
            let line = format!(
                "{recognised} files left in the spool by the previous run are queued already"
            );
            assert!(log.contains(&line), "expected {line:?} in:\n{log}");
        }
        assert_eq!(count_in(&sb.corrupt()), 0);
        d.stop();
        return;
    }
    panic!("the daemon finished {N} files before the kill in all {ATTEMPTS} attempts");
}
daemon_test!(kill9_mid_pickup);

/// SIGTERM: exit status 0; everything acknowledged before (maildrop and
/// pickup files that are gone) is queued exactly once; files left in
/// `pickup/` are not queued yet (no duplicates after a clean stop) and are
/// queued by the next run.
fn sigterm_clean_stop(io: &str) {
    const M: usize = 3000;
    let sb = Sandbox::new();
    sb.make_maildrop();
    sb.sendmail_ok(
        &["-f", "ack@example.com", "acked@example.net"],
        b"Subject: acked\n\nbody\n",
    );
    drop_range(&sb, 0..M);
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_until("maildrop/ empty", || count_in(&sb.maildrop()) == 0);
    d.wait_until("500 files picked up", || count_in(&sb.pickup()) <= M - 500);
    d.stop();
    let log = d.log();
    assert!(log.contains("terminating on signal"), "{log}");

    let remaining: BTreeSet<String> = names_in(&sb.pickup()).into_iter().collect();
    eprintln!(
        "SIGTERM ({io}): {} of {M} files left in pickup/",
        remaining.len()
    );
    let listed = sb.queue_list();
    let counts = recipient_counts(&listed);
    assert_eq!(counts.get("acked@example.net"), Some(&1));
    for i in 0..M {
        let c = counts.get(&rcpt(i)).copied().unwrap_or(0);
        if remaining.contains(&file_name(i)) {
            assert_eq!(c, 0, "{}: file kept but also queued", rcpt(i));
        } else {
            assert_eq!(c, 1, "{}: file unlinked, so queued once", rcpt(i));
        }
    }
    let stopped = format!("stopped: {} messages queued", listed.len());
    assert!(log.contains(&stopped), "expected {stopped:?} in:\n{log}");

    let mut d = sb.start_daemon_nth(io, 1);
    let rec = d.wait_recovered(2);
    assert_eq!(
        rec.iter().map(|r| r.messages).sum::<usize>(),
        listed.len(),
        "{rec:?}"
    );
    assert!(
        rec.iter().all(|r| r.torn == 0),
        "a clean stop leaves no torn record: {rec:?}"
    );
    d.wait_until("pickup/ empty", || count_in(&sb.pickup()) == 0);
    let counts = sb.recipient_counts();
    assert_eq!(counts.len(), M + 1);
    assert!(
        counts.values().all(|&c| c == 1),
        "each message exactly once"
    );
    d.stop();
}
daemon_test!(sigterm_clean_stop);

#[derive(Clone, Copy, Debug)]
enum Cut {
    /// The second half of the last record is zeros (a write cut short in a
    /// preallocated file).
    Zeroed,
    /// The file ends in the middle of the last record.
    Truncated,
}

/// Queues messages, stops, damages the last record of the segment, and
/// restarts: the torn record is cut and reported, the others recovered.
fn torn_last_record(io: &str, cut: Cut) {
    const K: usize = 6;
    let sb = Sandbox::with(Settings {
        shards: 1,
        ..Settings::default()
    });
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_recovered(1);
    drop_range(&sb, 0..K);
    d.wait_until("pickup/ empty", || count_in(&sb.pickup()) == 0);
    d.stop();

    let segs: Vec<_> = sb
        .segment_files()
        .into_iter()
        .filter(|p| !read_records(p).records.is_empty())
        .collect();
    assert_eq!(segs.len(), 1, "one segment holds the messages: {segs:?}");
    let seg = &segs[0];
    let contents = read_records(seg);
    // Message records (kind 1); the queue manager may have appended defer
    // records (kind 2) after them, since this sandbox has no relay host.
    let messages: Vec<_> = contents.records.iter().filter(|r| r.kind == 1).collect();
    assert_eq!(messages.len(), K);
    assert!(contents.records.iter().all(|r| r.crc_ok));
    let last = (*messages.last().unwrap()).clone();
    let lost = last.recipients[0].clone();
    let cut_at = last.offset + last.len / 2;
    match cut {
        Cut::Zeroed => {
            let mut f = OpenOptions::new().write(true).open(seg).unwrap();
            f.seek(SeekFrom::Start(cut_at as u64)).unwrap();
            f.write_all(&vec![0u8; last.offset + last.len - cut_at])
                .unwrap();
        }
        Cut::Truncated => {
            let f = OpenOptions::new().write(true).open(seg).unwrap();
            f.set_len(cut_at as u64).unwrap();
        }
    }
    // The listing (daemon stopped) already skips the damaged record.
    let expected: BTreeSet<String> = (0..K).map(rcpt).filter(|r| *r != lost).collect();
    let listed: BTreeSet<String> = sb.recipient_counts().into_keys().collect();
    assert_eq!(listed, expected);

    let mut d = sb.start_daemon_nth(io, 1);
    let rec = d.wait_recovered(1);
    assert_eq!(rec[0].messages, K - 1, "{rec:?}");
    assert_eq!(rec[0].recipients, K - 1, "{rec:?}");
    assert_eq!(rec[0].torn, 1, "{rec:?}");
    let torn_line = format!("torn record at offset {} cut (", last.offset);
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains(&torn_line))
        .unwrap_or_else(|| panic!("no {torn_line:?} in:\n{log}"));
    assert!(line.contains("ringmail/qmgr["), "{line}");
    assert!(line.contains(&seg.display().to_string()), "{line}");
    let listed: BTreeSet<String> = sb.recipient_counts().into_keys().collect();
    assert_eq!(listed, expected, "(cut: {cut:?})");

    // The queue takes new mail after the cut.
    sb.drop_file("after.eml", &pickup_message(100));
    d.wait_until("after.eml queued", || count_in(&sb.pickup()) == 0);
    let counts = sb.recipient_counts();
    assert_eq!(counts.len(), K);
    assert_eq!(counts.get(&rcpt(100)), Some(&1));
    d.stop();

    // And a further restart recovers the same (the torn record stays cut).
    let mut d = sb.start_daemon_nth(io, 2);
    let rec = d.wait_recovered(1);
    assert_eq!(rec[0].messages, K, "{rec:?}");
    d.stop();
}

fn torn_record_zeroed(io: &str) {
    torn_last_record(io, Cut::Zeroed);
}
daemon_test!(torn_record_zeroed);

fn torn_record_truncated(io: &str) {
    torn_last_record(io, Cut::Truncated);
}
daemon_test!(torn_record_truncated);

/// Messages queued with shards = 2 are all still there, and reported by
/// recovery, after a restart with shards = 1 (and back to 2).
fn shard_count_change(io: &str) {
    let sb = Sandbox::with(Settings {
        shards: 2,
        ..Settings::default()
    });
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_recovered(2);
    let shard_has_mail = |shard: u32| {
        sb.segment_files().iter().any(|p| {
            let c = read_records(p);
            c.shard == shard && !c.records.is_empty()
        })
    };
    // Drop batches until both shards have queued something.
    let mut next = 0;
    while !(shard_has_mail(0) && shard_has_mail(1)) {
        assert!(next < 5000, "only one shard ever queued mail");
        drop_range(&sb, next..next + 100);
        next += 100;
        d.wait_until("pickup/ empty", || count_in(&sb.pickup()) == 0);
    }
    d.stop();
    let before = sb.queue_list();
    assert_eq!(before.len(), next);
    let ids: BTreeSet<String> = before.iter().map(|l| l.queue_id.clone()).collect();

    sb.write_config(&Settings {
        shards: 1,
        ..Settings::default()
    });
    let mut d = sb.start_daemon_nth(io, 1);
    let rec = d.wait_recovered(1);
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_eq!(rec[0].shard, 0);
    assert_eq!(
        rec[0].messages, next,
        "shard 0 adopts shard 1's queue: {rec:?}"
    );
    assert_eq!(rec[0].recipients, next);
    assert!(rec[0].segments >= 2, "{rec:?}");
    let listed = sb.queue_list();
    let now: BTreeSet<String> = listed.iter().map(|l| l.queue_id.clone()).collect();
    assert_eq!(now, ids, "the same messages, same queue IDs");
    // It still queues new mail.
    sb.drop_file("one-shard.eml", &pickup_message(next));
    d.wait_until("one-shard.eml queued", || count_in(&sb.pickup()) == 0);
    assert_eq!(sb.queue_list().len(), next + 1);
    d.stop();

    sb.write_config(&Settings {
        shards: 2,
        ..Settings::default()
    });
    let mut d = sb.start_daemon_nth(io, 2);
    let rec = d.wait_recovered(2);
    assert_eq!(
        rec.iter().map(|r| r.messages).sum::<usize>(),
        next + 1,
        "{rec:?}"
    );
    let counts = sb.recipient_counts();
    assert_eq!(counts.len(), next + 1);
    assert!(counts.values().all(|&c| c == 1));
    d.stop();
}
daemon_test!(shard_count_change);

/// A second daemon on the same spool is refused (the spool lock) and the
/// first one keeps working.
fn second_daemon_refused(io: &str) {
    let sb = Sandbox::new();
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    let mut second = sb
        .cmd()
        .args(["serve", "--config"])
        .arg(&sb.config)
        .env("RINGMAIL_IO", io)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = second.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > DEADLINE {
            let _ = second.kill();
            panic!("a second daemon on the same spool kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("another ringmail daemon is running") && err.contains(&d.pid().to_string()),
        "{err}"
    );
    d.assert_running();
    sb.drop_file("still.eml", &pickup_message(1));
    d.wait_until("still.eml queued", || count_in(&sb.pickup()) == 0);
    assert_eq!(sb.queue_list().len(), 1);
    // The control socket still belongs to the first daemon.
    let out = sb.sendmail(&["-q"], b"");
    assert_eq!(out.status.code(), Some(0));
    d.stop();
}
daemon_test!(second_daemon_refused);

/// A file in a queue directory that is not a segment of this format (foreign
/// bytes, or a newer format version) is logged, left untouched and skipped;
/// the real segments are recovered and new mail is queued.
fn foreign_segment_left_alone(io: &str) {
    let sb = Sandbox::with(Settings {
        shards: 1,
        ..Settings::default()
    });
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_recovered(1);
    drop_range(&sb, 0..3);
    d.wait_until("pickup/ empty", || count_in(&sb.pickup()) == 0);
    d.stop();

    let dir = sb.queue().join("0");
    let garbage_path = dir.join("0000000000000100.seg");
    let garbage = b"this is not a queue segment, but it is somebody's data\n".repeat(100);
    std::fs::write(&garbage_path, &garbage).unwrap();
    // A well-formed header of format version 5 (this code writes 4).
    let newer_path = dir.join("0000000000000101.seg");
    let mut newer = vec![0u8; 4096];
    newer[0..8].copy_from_slice(b"RMQSEG\r\n");
    newer[8..12].copy_from_slice(&5u32.to_le_bytes());
    newer[16..24].copy_from_slice(&0x101u64.to_le_bytes());
    newer[40..48].copy_from_slice(&4096u64.to_le_bytes());
    let crc = crc32c::crc32c(&newer[0..60]);
    newer[60..64].copy_from_slice(&crc.to_le_bytes());
    newer[64..80].copy_from_slice(&[7u8; 16]);
    std::fs::write(&newer_path, &newer).unwrap();

    let mut d = sb.start_daemon_nth(io, 1);
    let rec = d.wait_recovered(1);
    assert_eq!(rec[0].messages, 3, "{rec:?}");
    let log = d.log();
    for p in [&garbage_path, &newer_path] {
        let name = p.display().to_string();
        assert!(
            log.lines()
                .any(|l| l.contains(&name) && l.contains("not a ringmail queue segment")),
            "{name} should be reported:\n{log}"
        );
    }
    assert!(log.contains("format version 5"), "{log}");
    assert_eq!(sb.queue_list().len(), 3);
    sb.drop_file("new.eml", &pickup_message(3));
    d.wait_until("new.eml queued", || count_in(&sb.pickup()) == 0);
    assert_eq!(sb.queue_list().len(), 4);
    d.stop();
    assert_eq!(std::fs::read(&garbage_path).unwrap(), garbage);
    assert_eq!(std::fs::read(&newer_path).unwrap(), newer);
}
daemon_test!(foreign_segment_left_alone);
