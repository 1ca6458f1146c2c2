//! `ringmail bench`, the README's main job, end to end at a small size:
//! the bundled sink, a temporary spool, the daemon, and the report. The
//! figures themselves are not asserted (shared machines are noisy); that
//! the run completes with nothing lost or duplicated is.

use std::process::Command;

fn bench(extra: &[&str]) -> serde_json::Value {
    let work = tempfile::tempdir().expect("work dir");
    let out = Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .args(["bench", "--messages", "300", "--json", "--workdir"])
        .arg(work.path())
        .args(extra)
        .output()
        .expect("run ringmail bench");
    assert!(
        out.status.success(),
        "bench failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

fn check(r: &serde_json::Value, recipients: u64) {
    assert_eq!(r["messages"], 300, "{r}");
    assert_eq!(r["recipients"], 300 * recipients, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["duplicates"], 0, "{r}");
    assert!(
        r["messages_per_second"].as_f64().is_some_and(|v| v > 0.0),
        "{r}"
    );
    assert!(r["latency_p99_ms"].as_f64().is_some(), "{r}");
    assert!(r["shards"].as_u64().is_some_and(|n| n >= 1), "{r}");
}

#[test]
fn spool_path_uring() {
    let r = bench(&["--io-backend", "uring"]);
    check(&r, 1);
}

#[test]
fn spool_path_epoll_with_several_recipients_and_domains() {
    let r = bench(&[
        "--io-backend",
        "epoll",
        "--recipients",
        "3",
        "--domains",
        "2",
    ]);
    check(&r, 3);
    assert_eq!(r["io_backend"], "epoll", "{r}");
}

#[test]
fn sendmail_path() {
    let r = bench(&["--via", "sendmail", "--sendmail-parallel", "4"]);
    check(&r, 1);
    assert_eq!(r["via"], "sendmail", "{r}");
}

/// The address is a documentation address (TEST-NET-1) and is never
/// connected to: the bench refuses it before opening any socket.
#[test]
fn refuses_a_sink_outside_loopback() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringmail"))
        .args(["bench", "--messages", "1", "--sink", "192.0.2.1:25"])
        .output()
        .expect("run ringmail bench");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}
