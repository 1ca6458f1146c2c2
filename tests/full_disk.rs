//! A full disk (issue 12, item 6): the daemon starts on a full file
//! system, delivers the queue it finds, refuses new mail with a temporary
//! error (pickup files stay where they are, `sendmail` exits 75 and leaves
//! nothing), says so once instead of once per message, starts again while
//! the disk is still full, and takes new mail again by itself once there is
//! room: room made by someone else, or by its own deliveries deleting
//! segments.
//!
//! The spool lives on a small ext4 file system in a loop-mounted image
//! file (`mkfs.ext4` from e2fsprogs, `mount -o loop`), unmounted by a drop
//! guard even when a test fails. The tests skip, saying why, where that is
//! not allowed (not root, no `/dev/loop-control`, mount refused).

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ringmail::sink::{self, SinkConfig, SinkHandle};

/// A small ext4 file system mounted from an image file; unmounted (and the
/// image removed) when dropped.
struct LoopFs {
    mnt: PathBuf,
    /// Holds the image and the mount point.
    _dir: tempfile::TempDir,
}

impl LoopFs {
    /// Makes and mounts a `mib` MiB ext4 file system with no blocks
    /// reserved for root (the tests run as root, and "full" must mean
    /// full). `None` (after printing why) where loop mounts are not
    /// allowed.
    fn new(mib: u64) -> Option<LoopFs> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: loop mounts need root");
            return None;
        }
        if !Path::new("/dev/loop-control").exists() {
            eprintln!("skipped: no /dev/loop-control (no loop devices here)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("ringmail-fulldisk-")
            .tempdir()
            .expect("temp dir");
        let image = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).expect("mkdir mount point");
        File::create(&image)
            .and_then(|f| f.set_len(mib << 20))
            .expect("create the image file");
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mkfs.ext4 ({e}): install e2fsprogs"));
        assert!(
            mkfs.status.success(),
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&mkfs.stderr)
        );
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount ({e}): install util-linux"));
        if !mount.status.success() {
            eprintln!(
                "skipped: loop mount not allowed here: {}",
                String::from_utf8_lossy(&mount.stderr).trim()
            );
            return None;
        }
        Some(LoopFs { mnt, _dir: dir })
    }

    /// Fills the file system with `mnt/filler` until a write fails with
    /// ENOSPC, and makes it durable.
    fn fill(&self) {
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(self.filler())
            .expect("create filler");
        for chunk in [1 << 20, 4096, 512] {
            let buf = vec![0x5a; chunk];
            loop {
                match f.write_all(&buf) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(28) => break,
                    Err(e) => panic!("filling the disk: {e}"),
                }
            }
        }
        // Delayed allocation may have given some back: make it take it.
        let _ = f.sync_all();
        let buf = vec![0x5a; 4096];
        while f.write_all(&buf).is_ok() {}
        let _ = f.sync_all();
        // Not even a 64 KiB file fits now.
        let probe = self.mnt.join("probe");
        let fits = fs::write(&probe, vec![1u8; 64 << 10]).is_ok();
        let _ = fs::remove_file(&probe);
        assert!(!fits, "the file system is not full");
    }

    /// Makes room again.
    fn unfill(&self) {
        fs::remove_file(self.filler()).expect("remove filler");
    }

    fn filler(&self) -> PathBuf {
        self.mnt.join("filler")
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // A daemon killed by the test's own drop guards may take a moment
        // to let go of its files.
        for _ in 0..50 {
            let out = Command::new("umount").arg(&self.mnt).output();
            if out.is_ok_and(|o| o.status.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// A sandbox whose spool is on `fs`, with one shard (so which segment
/// takes which message is known) and `extra` configuration lines.
fn sandbox_on(fs: &LoopFs, extra: &str) -> (Sandbox, Settings) {
    let settings = Settings {
        shards: 1,
        extra: extra.to_string(),
        ..Settings::default()
    };
    let mut sb = Sandbox::with(settings.clone());
    sb.spool = fs.mnt.join("spool");
    sb.write_config(&settings);
    (sb, settings)
}

/// `relayhost` pointing at a loopback port where nothing listens.
fn closed_relay() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port();
    format!("relayhost = \"[127.0.0.1]:{port}\"\n")
}

fn sink_relay(sink: &SinkHandle) -> String {
    format!("relayhost = \"[127.0.0.1]:{}\"\n", sink.local_addr.port())
}

fn mid(tag: &str, i: usize) -> String {
    format!("<{tag}.{i}@test.example>")
}

/// A pickup file of about `size` bytes with our own Message-ID.
fn message(tag: &str, i: usize, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Bulk Sender <bulk@example.com>\n\
         To: {}\n\
         Subject: {tag} {i}\n\
         Message-ID: {}\n\
         \n",
        rcpt(i),
        mid(tag, i)
    )
    .into_bytes();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

fn drop_messages(sb: &Sandbox, tag: &str, range: std::ops::Range<usize>, size: usize) {
    fs::create_dir_all(sb.pickup()).expect("mkdir pickup");
    for i in range {
        sb.drop_file(&format!("{tag}-{i:04}.eml"), &message(tag, i, size));
    }
}

/// Polls `cond` every 50 ms (with the daemon's log on failure).
fn wait(d: &mut Daemon, what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        d.assert_running();
        if start.elapsed() > deadline {
            panic!("timed out waiting for: {what}; daemon log:\n{}", d.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_delivered(d: &mut Daemon, sink: &SinkHandle, ids: &[String]) {
    let what = format!("{} messages at the sink", ids.len());
    wait(d, &what, DEADLINE, || {
        let counts = sink.message_id_counts();
        ids.iter().all(|id| counts.contains_key(id))
    });
}

/// Queues `n` small messages tagged `backlog` while nothing can be
/// delivered, and stops the daemon: the queue a full disk finds.
fn queue_backlog(sb: &Sandbox, settings: &Settings, io: &str, n: usize, size: usize) {
    sb.write_config(&Settings {
        extra: format!("{}{}", settings.extra, closed_relay()),
        ..settings.clone()
    });
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_recovered(1);
    drop_messages(sb, "backlog", 0..n, size);
    wait(&mut d, "the backlog queued", DEADLINE, || {
        count_in(&sb.pickup()) == 0 && sb.queue_list().len() == n
    });
    d.stop();
}

/// Lines saying that no segment can be created, and lines saying that a
/// file was not queued: each once a minute at most.
fn assert_said_once(log: &str, since: Instant) {
    let minutes = 1 + since.elapsed().as_secs() as usize / 60;
    let no_room = count_lines(log, &["ringmail/qmgr[", "no room for a new queue segment"]);
    let retry = count_lines(log, &["ringmail/pickup[", "not queued, will retry"]);
    assert!(
        (1..=minutes).contains(&no_room),
        "{no_room} no-room lines in {minutes} minutes:\n{log}"
    );
    assert!(
        retry <= minutes,
        "{retry} not-queued lines in {minutes} minutes:\n{log}"
    );
    assert_eq!(count_lines(log, &["cannot queue message"]), 0, "{log}");
    assert_no_panic(log);
}

fn assert_no_panic(log: &str) {
    assert!(!log.contains("panicked"), "{log}");
}

/// The daemon starts on a full disk, delivers its queue, keeps new mail
/// out while a message does not fit (files stay in `pickup/`, `sendmail`
/// exits 75 and leaves nothing behind), says so once, starts again while
/// still full, and queues the waiting files by itself once there is room.
fn start_and_deliver_on_a_full_disk(io: &str) {
    let Some(fs) = LoopFs::new(64) else { return };
    let sink = sink::start(SinkConfig::default()).expect("start the sink");
    let (sb, settings) = sandbox_on(&fs, "");
    const BACKLOG: usize = 50;
    queue_backlog(&sb, &settings, io, BACKLOG, 1200);
    // Waiting to be picked up: small files that fit in the room left in
    // the queue's open segment (sorted first), and files too big for it.
    const SMALL: usize = 3;
    const BIG: usize = 3;
    drop_messages(&sb, "a-small", 0..SMALL, 2000);
    drop_messages(&sb, "b-big", 0..BIG, 800_000);
    fs.fill();

    // sendmail: a temporary failure, and nothing left in maildrop/.
    let out = sb.sendmail(
        &["-f", "full@example.com", "someone@example.net"],
        b"Subject: disk full\n\nbody\n",
    );
    assert_eq!(
        out.status.code(),
        Some(75),
        "sendmail on a full disk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<_> = fs::read_dir(sb.maildrop())
        .expect("maildrop")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "sendmail left {left:?}");

    // The start: the backlog is delivered.
    let with_sink = Settings {
        extra: format!("{}{}", settings.extra, sink_relay(&sink)),
        ..settings.clone()
    };
    sb.write_config(&with_sink);
    let started = Instant::now();
    let mut d = sb.start_daemon_nth(io, 1);
    let rec = d.wait_recovered(1);
    assert_eq!(rec[0].messages, BACKLOG, "{rec:?}");
    let backlog: Vec<String> = (0..BACKLOG).map(|i| mid("backlog", i)).collect();
    wait_delivered(&mut d, &sink, &backlog);
    // The small files went into the open segment; the big ones wait.
    let small: Vec<String> = (0..SMALL).map(|i| mid("a-small", i)).collect();
    wait_delivered(&mut d, &sink, &small);
    d.wait_for_log("no room for a new queue segment");
    d.wait_for_log("not queued, will retry");
    // Let pickup try again a few times (every 5 × 50 ms) and the queue
    // try to create a segment (at most once a second).
    std::thread::sleep(Duration::from_secs(3));
    d.assert_running();
    let big_files: Vec<String> = (0..BIG).map(|i| format!("b-big-{i:04}.eml")).collect();
    assert_eq!(
        names_in(&sb.pickup()),
        big_files,
        "left in place while full"
    );
    let log = d.log();
    assert_said_once(&log, started);
    assert!(log.contains("No space left on device"), "{log}");

    // A restart while still full: starts, and still keeps them out.
    d.stop();
    let restarted = Instant::now();
    let mut d = sb.start_daemon_nth(io, 2);
    let rec = d.wait_recovered(1);
    assert_eq!(rec[0].messages, 0, "{rec:?}");
    d.wait_for_log("not queued, will retry");
    assert_eq!(
        names_in(&sb.pickup()),
        big_files,
        "left in place while full"
    );
    assert_said_once(&d.log(), restarted);

    // Room again: new mail is taken by itself.
    fs.unfill();
    let big: Vec<String> = (0..BIG).map(|i| mid("b-big", i)).collect();
    wait_delivered(&mut d, &sink, &big);
    wait(&mut d, "pickup/ empty", DEADLINE, || {
        count_in(&sb.pickup()) == 0
    });
    d.wait_for_log("new mail is accepted again");
    sb.sendmail_ok(
        &["-f", "room@example.com", "someone@example.net"],
        b"Subject: room again\nMessage-ID: <room@test.example>\n\nbody\n",
    );
    wait_delivered(&mut d, &sink, &["<room@test.example>".to_string()]);
    wait(&mut d, "the queue empty", DEADLINE, || {
        sb.queue_list().is_empty()
    });
    d.stop();
    assert_no_panic(&d.log());

    let counts = sink.message_id_counts();
    for id in backlog.iter().chain(&small).chain(&big) {
        assert_eq!(counts.get(id), Some(&1), "{id} not delivered exactly once");
    }
}
daemon_test!(start_and_deliver_on_a_full_disk);

/// The backlog on a full disk spans several segments: delivering it
/// deletes them, and that room is enough for new mail to be taken again
/// without anyone freeing anything.
fn delivering_the_backlog_makes_room(io: &str) {
    let Some(fs) = LoopFs::new(64) else { return };
    let sink = sink::start(SinkConfig::default()).expect("start the sink");
    let (sb, settings) = sandbox_on(&fs, "");
    // About 3 MB: at least three 1 MiB segments.
    const BACKLOG: usize = 30;
    queue_backlog(&sb, &settings, io, BACKLOG, 100_000);
    assert!(sb.segment_files().len() >= 3, "{:?}", sb.segment_files());
    const BIG: usize = 2;
    drop_messages(&sb, "big", 0..BIG, 800_000);
    fs.fill();

    sb.write_config(&Settings {
        extra: format!("{}{}", settings.extra, sink_relay(&sink)),
        ..settings.clone()
    });
    let mut d = sb.start_daemon_nth(io, 1);
    let rec = d.wait_recovered(1);
    assert_eq!(rec[0].messages, BACKLOG, "{rec:?}");
    let backlog: Vec<String> = (0..BACKLOG).map(|i| mid("backlog", i)).collect();
    wait_delivered(&mut d, &sink, &backlog);
    let big: Vec<String> = (0..BIG).map(|i| mid("big", i)).collect();
    wait_delivered(&mut d, &sink, &big);
    wait(&mut d, "pickup/ empty", DEADLINE, || {
        count_in(&sb.pickup()) == 0
    });
    wait(&mut d, "the queue empty", DEADLINE, || {
        sb.queue_list().is_empty()
    });
    d.stop();
    assert!(fs.filler().exists(), "the room came from the queue itself");
    assert_no_panic(&d.log());
    let counts = sink.message_id_counts();
    for id in backlog.iter().chain(&big) {
        assert_eq!(counts.get(id), Some(&1), "{id} not delivered exactly once");
    }
}
daemon_test!(delivering_the_backlog_makes_room);

/// A shard that cannot start is named in the error (it was always
/// "shard 0").
#[test]
fn the_start_error_names_the_shard_that_failed() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.queue()).expect("mkdir queue");
    // Shard 1's queue directory cannot be created: a file is in the way.
    fs::write(sb.queue().join("1"), b"in the way").expect("write");
    let err = match sb.try_start_daemon("epoll", 0) {
        Ok(mut d) => {
            let st = d.wait_exit(EXIT_DEADLINE);
            (st, d.log())
        }
        Err(e) => e,
    };
    let (status, log) = err;
    assert_eq!(status.code(), Some(75), "{log}");
    assert!(log.contains("shard 1 failed to start"), "{log}");
    assert!(!log.contains("shard 0 failed"), "{log}");
}
