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

/// The daemon's CPU is reported by thread group: the shard threads are
/// one group, and the groups (with `exited` for threads gone since) cover the total.
/// (Per-thread times are in clock ticks, each rounded, so the sum may pass
/// the total by a few ticks; it never falls short of it.)
#[test]
fn cpu_by_thread_group_adds_up() {
    let r = bench(&[]);
    check(&r, 1);
    let Some(groups) = r["daemon_cpu_by_thread"].as_object() else {
        panic!("no daemon_cpu_by_thread: {r}");
    };
    let secs = |c: &serde_json::Value| c["user"].as_f64().unwrap() + c["system"].as_f64().unwrap();
    // 300 messages are a few clock ticks of CPU: the group is there, its
    // time may round to zero.
    assert!(groups.contains_key("shard"), "{r}");
    let sum: f64 = groups.values().map(secs).sum();
    let total = secs(&r["daemon_cpu"]);
    assert!(
        sum >= total - 1e-9,
        "groups {sum} against total {total}: {r}"
    );
    assert!(
        groups
            .keys()
            .all(|g| !g.is_empty() && !g.ends_with(|c: char| c.is_ascii_digit())),
        "{r}"
    );
    assert!(
        (total - r["daemon_cpu_seconds"].as_f64().unwrap()).abs() < 1e-9,
        "{r}"
    );
}

/// `--compare-backends` runs each backend `--rounds` times and reports
/// both, each run clean.
#[test]
fn compare_backends_runs_both() {
    let r = bench(&["--compare-backends", "--rounds", "2"]);
    let Some(backends) = r["backends"].as_array() else {
        panic!("no backends: {r}");
    };
    let names: Vec<&str> = backends.iter().filter_map(|b| b["name"].as_str()).collect();
    assert_eq!(names, ["uring", "epoll"], "{r}");
    for b in backends {
        assert_eq!(
            b["messages_per_second"].as_array().map(Vec::len),
            Some(2),
            "{r}"
        );
        assert!(
            b["median_cpu_micros_per_message"]
                .as_f64()
                .is_some_and(|v| v > 0.0),
            "{r}"
        );
        assert!(
            b["median_thread_micros_per_message"]["shard"]
                .as_f64()
                .is_some(),
            "{r}"
        );
    }
    assert!(r["uring_cpu_saving"].as_f64().is_some(), "{r}");
}
