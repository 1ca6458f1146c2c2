//! `sendmail` through the running daemon (issue 13, item 6): with the
//! daemon up, `ringmail sendmail` hands the message over `submit.sock`
//! and exits 0 only after the daemon's group commit; nothing is written to
//! `maildrop/`; the submitter's uid comes from the socket (SO_PEERCRED);
//! concurrent submissions share commits; without a daemon it falls back
//! to `maildrop/`.

mod common;

use std::fs;
use std::net::TcpListener;
use std::time::Duration;

use common::*;
use ringmail::sink::{self, SinkConfig};

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: a@example.com\nTo: r{i}@example.net\nSubject: {i}\nMessage-ID: <sd.{i}@test.example>\n\nbody {i}\n"
    )
    .into_bytes()
}

/// After a kill -9 of a daemon whose relay host (port `dead`) was down:
/// points the relay host at a new sink, starts the daemon again and waits
/// until `n` messages arrived there; returns the sink.
fn restart_with_sink(sb: &Sandbox, io: &str, dead: u16, n: u64) -> sink::SinkHandle {
    let sink = sink::start(SinkConfig::default()).expect("sink");
    let cfg = fs::read_to_string(&sb.config).expect("config");
    fs::write(
        &sb.config,
        cfg.replace(
            &format!("]:{dead}"),
            &format!("]:{}", sink.local_addr.port()),
        ),
    )
    .expect("config");
    let mut d = sb.start_daemon_nth(io, 1);
    let stats = sink.counters();
    d.wait_until(&format!("{n} messages delivered after the restart"), || {
        stats.snapshot().messages >= n
    });
    d.stop();
    sink
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// 16 concurrent `sendmail -t` with the relay host down: each exits 0 with
/// `maildrop/` left empty, a kill -9 right after loses nothing (all 16 are
/// delivered after a restart with the relay host up), and the queued lines
/// name the submitter's uid.
fn committed_through_the_daemon(io: &str) {
    let dead = free_port();
    let sb = Sandbox::with(Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{dead}\"\nminimal_backoff_time = 1\nmaximal_backoff_time = 2\n"
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_recovered(2);
    let socket = sb.spool.join("submit.sock");
    d.wait_until("submit.sock", || socket.exists());
    std::thread::scope(|scope| {
        let sb = &sb;
        let runs: Vec<_> = (0..16)
            .map(|i| scope.spawn(move || sb.sendmail(&["-t", "-i", "-v"], &message(i))))
            .collect();
        for r in runs {
            let out = r.join().expect("sendmail thread");
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("queued as "), "{err}");
        }
    });
    assert_eq!(
        count_in(&sb.maildrop()),
        0,
        "nothing went through maildrop/"
    );
    // The queued lines name the submitter's uid (read before the kill:
    // the log writer may not have written the last ones yet).
    let uid = format!(": uid={} from=<", rustix::process::geteuid().as_raw());
    let log_file = sb.root().join("daemon-0.log");
    d.wait_until("16 uid lines", || {
        let log = fs::read_to_string(&log_file).unwrap_or_default();
        count_lines(&log, &["ringmail/pickup[", &uid]) == 16
    });
    d.kill9();
    let sink = restart_with_sink(&sb, io, dead, 16);
    let counts = sink.message_id_counts();
    for i in 0..16 {
        assert_eq!(
            counts.get(&format!("<sd.{i}@test.example>")),
            Some(&1),
            "message {i}"
        );
    }
}
daemon_test!(committed_through_the_daemon);

/// A malformed message is refused at once (exit 65) instead of being
/// quarantined later, and without a daemon `sendmail` writes `maildrop/`.
fn refusal_and_fallback(io: &str) {
    let sb = Sandbox::new();
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    let big = vec![b'x'; 11_000_000];
    let out = sb.sendmail(&["a@example.net"], &big);
    assert_eq!(
        out.status.code(),
        Some(65),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.stop();
    assert!(!sb.spool.join("submit.sock").exists(), "removed at stop");
    sb.sendmail_ok(&["-t"], &message(1));
    assert_eq!(count_in(&sb.maildrop()), 1, "fell back to maildrop/");
    std::thread::sleep(Duration::from_millis(10));
}
daemon_test!(refusal_and_fallback);

/// `ringmail-sendmail -C <config> <args>` (the lean sendmail binary) with
/// `stdin` as input.
fn lean_sendmail(sb: &Sandbox, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ringmail-sendmail"));
    c.env_remove("RINGMAIL_CONFIG")
        .env_remove("RINGMAIL_IO")
        .arg("-C")
        .arg(&sb.config)
        .args(args);
    run_with_stdin(c, stdin)
}

/// The lean `ringmail-sendmail` binary queues through the running daemon
/// (durable before exit 0: delivered after a kill -9 and a restart), hands
/// the other modes to the full binary (`-bp` lists the queue as `ringmail
/// sendmail -bp` does), refuses a bad flag with 64, and without a daemon
/// writes `maildrop/` as `ringmail sendmail` does.
fn lean_binary(io: &str) {
    let dead = free_port();
    let sb = Sandbox::with(Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{dead}\"\nminimal_backoff_time = 1\nmaximal_backoff_time = 2\n"
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon_nth(io, 0);
    d.wait_recovered(2);
    let socket = sb.spool.join("submit.sock");
    d.wait_until("submit.sock", || socket.exists());
    for i in 0..4 {
        let out = lean_sendmail(&sb, &["-t", "-i", "-v"], &message(i));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(err.contains("queued as "), "{err}");
    }
    assert_eq!(count_in(&sb.maildrop()), 0, "committed by the daemon");
    // `-bp` is the full binary's mailq (deferral reasons may appear
    // between two listings, so the format is checked, not the bytes).
    let listed = lean_sendmail(&sb, &["-bp"], b"");
    assert_eq!(listed.status.code(), Some(0), "{listed:?}");
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(listed.starts_with("-Queue ID-  --Size--"), "{listed}");
    assert!(listed.contains("in 4 Requests."), "{listed}");
    for i in 0..4 {
        assert!(listed.contains(&format!("r{i}@example.net")), "{listed}");
    }
    // Linked as `mailq`, it lists the queue (through the full binary,
    // started as `mailq`).
    let links = tempfile::tempdir().expect("dir");
    let mailq = links.path().join("mailq");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ringmail-sendmail"), &mailq).expect("symlink");
    let mut c = std::process::Command::new(&mailq);
    c.env_remove("RINGMAIL_CONFIG").arg("-C").arg(&sb.config);
    let listed = run_with_stdin(c, b"");
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(listed.contains("in 4 Requests."), "mailq: {listed}");
    let bad = lean_sendmail(&sb, &["-X"], b"");
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
    d.kill9();
    let _sink = restart_with_sink(&sb, io, dead, 4);
    let out = lean_sendmail(&sb, &["-t"], &message(9));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(count_in(&sb.maildrop()), 1, "fell back to maildrop/");
}
daemon_test!(lean_binary);
