//! `ringmail queue hold|release|delete|requeue|bounce` against the running
//! daemon: what each does to the queue, that the result survives kill -9,
//! and the same commands while a bulk send to the bundled sink runs.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::*;
use ringmail::sink::{self, Latency, SinkConfig};

fn queue(sb: &Sandbox, args: &[&str]) -> Output {
    sb.cmd()
        .arg("queue")
        .args(args)
        .arg("--config")
        .arg(&sb.config)
        .output()
        .expect("ringmail queue")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Status of every listed recipient, by address (the last one listed wins).
fn statuses(sb: &Sandbox) -> HashMap<String, String> {
    sb.queue_list()
        .into_iter()
        .flat_map(|m| m.recipients)
        .map(|r| (r.address, r.status))
        .collect()
}

fn id_of(sb: &Sandbox, rcpt: &str) -> String {
    sb.queue_list()
        .into_iter()
        .find(|m| m.recipients.iter().any(|r| r.address == rcpt))
        .unwrap_or_else(|| panic!("{rcpt} is not queued"))
        .queue_id
}

#[test]
fn each_command_changes_the_queue_durably() {
    // No DNS answers in the sandbox: everything stays deferred.
    let sb = Sandbox::new();
    let mut d = sb.start_daemon("uring");
    sb.sendmail_ok(
        &["-f", "s@example.com", "a@hold.example"],
        b"Subject: 1\n\nx\n",
    );
    sb.sendmail_ok(
        &["-f", "s@example.com", "b@del.example"],
        b"Subject: 2\n\nx\n",
    );
    sb.sendmail_ok(
        &[
            "-f",
            "list@example.org",
            "c@bounce.example",
            "k@keep.example",
        ],
        b"Subject: 3\n\nx\n",
    );
    sb.sendmail_ok(
        &["-f", "s@example.com", "e@requeue.example"],
        b"Subject: 4\n\nx\n",
    );
    d.wait_until("every recipient deferred", || {
        statuses(&sb).values().filter(|s| *s == "deferred").count() == 5
    });

    // Nothing selected is refused; a dry run changes nothing.
    let empty = queue(&sb, &["hold"]);
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("--all"));
    let dry = ok(queue(&sb, &["delete", "--all", "--dry-run"]));
    assert!(dry.contains("dry run: 4 messages selected"), "{dry}");
    assert_eq!(sb.queue_list().len(), 4);

    let held = ok(queue(&sb, &["hold", "--domain", "hold.example"]));
    assert!(
        held.contains("postsuper: Placed on hold: 1 message"),
        "{held}"
    );
    let del_id = id_of(&sb, "b@del.example");
    let deleted = ok(queue(&sb, &["delete", &del_id]));
    assert!(deleted.contains("Deleted: 1 message"), "{deleted}");
    // Only the recipient at the domain is bounced, not the whole message.
    let bounced = ok(queue(
        &sb,
        &[
            "bounce",
            "--reason",
            "list closed",
            "--domain",
            "bounce.example",
        ],
    ));
    assert!(bounced.contains("Bounced: 1 message"), "{bounced}");

    let s = statuses(&sb);
    assert_eq!(s.get("a@hold.example").map(String::as_str), Some("held"));
    assert!(!s.contains_key("b@del.example"), "{s:?}");
    // Its message stays for the other recipient, with this one bounced.
    assert_eq!(
        s.get("c@bounce.example").map(String::as_str),
        Some("bounced")
    );
    assert_eq!(
        s.get("k@keep.example").map(String::as_str),
        Some("deferred")
    );
    // The sender got a notice saying why.
    d.wait_until("the notice is queued", || {
        sb.queue_list()
            .iter()
            .any(|m| m.sender.is_empty() && m.addresses() == ["list@example.org"])
    });
    let notice = sb
        .queue_list()
        .into_iter()
        .find(|m| m.sender.is_empty())
        .expect("notice");
    let shown = ok(queue(&sb, &["show", &notice.queue_id]));
    assert!(
        shown.contains("bounced by the administrator: list closed"),
        "{shown}"
    );
    assert!(shown.contains("c@bounce.example"), "{shown}");
    let mailq = ok(queue(&sb, &["list"]));
    let held_id = id_of(&sb, "a@hold.example");
    assert!(mailq.contains(&format!("{held_id}!")), "{mailq}");
    let log = d.log();
    assert!(
        log.contains("ringmail/postsuper[") && log.contains(&format!("{del_id}: removed")),
        "{log}"
    );
    assert!(log.contains(&format!("{held_id}: placed on hold")), "{log}");

    // A held recipient is not tried, even by a flush.
    let tries = |log: &str, rcpt: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("to=<{rcpt}>")) && l.contains("status=deferred"))
            .count()
    };
    let before = tries(&d.log(), "a@hold.example");
    let kept_before = tries(&d.log(), "k@keep.example");
    ok(sb.flush());
    wait_until(
        "the flush retried the others",
        Duration::from_secs(30),
        || tries(&d.log(), "k@keep.example") > kept_before,
    );
    assert_eq!(tries(&d.log(), "a@hold.example"), before);

    // Requeue makes a deferred message due now.
    let e_before = tries(&d.log(), "e@requeue.example");
    let rq = ok(queue(&sb, &["requeue", "--domain", "requeue.example"]));
    assert!(rq.contains("Requeued: 1 message"), "{rq}");
    wait_until(
        "the requeued message was tried",
        Duration::from_secs(30),
        || tries(&d.log(), "e@requeue.example") > e_before,
    );

    // kill -9: every change was durable when the command answered.
    d.kill9();
    let mut d = sb.start_daemon_nth("uring", 1);
    let s = statuses(&sb);
    assert_eq!(s.get("a@hold.example").map(String::as_str), Some("held"));
    assert!(!s.contains_key("b@del.example"), "{s:?}");
    // Its message stays for the other recipient, with this one bounced.
    assert_eq!(
        s.get("c@bounce.example").map(String::as_str),
        Some("bounced")
    );
    let released = ok(queue(&sb, &["release", &format!("{held_id}!")]));
    assert!(
        released.contains("Released from hold: 1 message"),
        "{released}"
    );
    wait_until(
        "the released recipient is tried again",
        Duration::from_secs(30),
        || tries(&d.log(), "a@hold.example") >= 1,
    );
    assert_ne!(
        statuses(&sb).get("a@hold.example").map(String::as_str),
        Some("held")
    );
    d.stop();
    // Without the daemon, a command says so.
    let down = queue(&sb, &["hold", "--all"]);
    assert!(!down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("not running"),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}

fn dumped_recipients(dir: &Path) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for name in names_in(dir) {
        if !name.ends_with(".json") {
            continue;
        }
        let Ok(text) = fs::read_to_string(dir.join(&name)) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        for r in v["rcpt_to"].as_array().into_iter().flatten() {
            if let Some(r) = r.as_str() {
                *out.entry(r.to_string()).or_insert(0) += 1;
            }
        }
    }
    out
}

#[test]
fn hold_and_delete_during_a_bulk_send_survive_kill9() {
    let dump = tempfile::tempdir().expect("dir");
    let sink = sink::start(SinkConfig {
        dump_dir: Some(dump.path().to_path_buf()),
        latency: Latency::Fixed(Duration::from_millis(30)),
        ..SinkConfig::default()
    })
    .expect("sink");
    let sb = Sandbox::with(Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{}\"\ndefault_destination_concurrency_limit = 2\n",
            sink.local_addr.port()
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon("epoll");
    let n = 200;
    for i in 0..n {
        let domain = if i % 2 == 0 {
            "held.example"
        } else {
            "gone.example"
        };
        drop_file(
            &sb.pickup(),
            &format!("m{i}"),
            format!("X-Sender: s@example.com\nX-Receiver: r{i}@{domain}\nSubject: {i}\n\nbody\n")
                .as_bytes(),
        );
    }
    d.wait_until("every file queued, the send under way", || {
        count_in(&sb.pickup()) == 0 && !dumped_recipients(dump.path()).is_empty()
    });
    assert!(
        sb.queue_list().len() > 50,
        "the sink is slow enough for the commands to find mail queued"
    );
    let held = ok(queue(&sb, &["hold", "--domain", "held.example"]));
    let deleted = ok(queue(&sb, &["delete", "--domain", "gone.example"]));
    assert!(held.contains("Placed on hold"), "{held}");
    assert!(deleted.contains("Deleted"), "{deleted}");
    d.kill9();
    // Whatever was still queued when the commands answered stays held or
    // deleted across the crash.
    let listed = sb.queue_list();
    for m in &listed {
        for r in &m.recipients {
            assert!(
                r.address.ends_with("@held.example") && r.status == "held",
                "after kill -9: {} is {}",
                r.address,
                r.status
            );
        }
    }
    let mut d = sb.start_daemon_nth("epoll", 1);
    std::thread::sleep(Duration::from_millis(500));
    let after_restart = dumped_recipients(dump.path());
    let gone_sent: usize = after_restart
        .keys()
        .filter(|a| a.ends_with("@gone.example"))
        .count();
    // Deleted mail is never sent after the restart.
    ok(sb.flush());
    std::thread::sleep(Duration::from_millis(500));
    let later = dumped_recipients(dump.path());
    assert_eq!(
        later
            .keys()
            .filter(|a| a.ends_with("@gone.example"))
            .count(),
        gone_sent,
        "deleted mail was sent after the restart"
    );
    // Released, every held recipient arrives: none was lost.
    ok(queue(&sb, &["release", "--all"]));
    d.wait_until("every held.example recipient delivered", || {
        let got = dumped_recipients(dump.path());
        (0..n)
            .filter(|i| i % 2 == 0)
            .all(|i| got.contains_key(&format!("r{i}@held.example")))
    });
    d.wait_until("the queue is empty", || sb.queue_list().is_empty());
    d.stop();
}
