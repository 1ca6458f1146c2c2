//! The pickup side of the daemon: mail submitted while it is down, bulk
//! drops into `pickup/`, files written in place, and malformed input moved
//! to `corrupt/` without loss.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use common::*;

/// Mail submitted with `sendmail` while the daemon is down waits in
/// `maildrop/` and is queued when the daemon starts.
fn daemon_down_then_queued(io: &str) {
    let sb = Sandbox::new();
    // Start the daemon once to create the spool, as the docs say, then stop it.
    let mut d = sb.start_daemon_nth(io, 0);
    d.stop();
    assert!(sb.maildrop().is_dir());

    sb.sendmail_ok(
        &["-f", "ops@example.com", "a@example.net", "b@example.net"],
        b"Subject: one\n\nfirst\n",
    );
    sb.sendmail_ok(
        &["-t", "-f", "cron@example.com"],
        b"To: c@example.net\nSubject: two\n\nsecond\n",
    );
    let files = names_in(&sb.maildrop());
    assert_eq!(files.len(), 2, "both messages wait in maildrop/: {files:?}");
    for f in &files {
        let text = std::fs::read_to_string(sb.maildrop().join(f)).unwrap();
        assert!(text.starts_with("RINGMAIL-MAILDROP 1\n"), "{text}");
    }
    assert!(sb.queue_list().is_empty(), "nothing is queued yet");

    let mut d = sb.start_daemon_nth(io, 1);
    d.wait_until("maildrop/ empty", || count_in(&sb.maildrop()) == 0);
    let mut listed = sb.queue_list();
    listed.sort_by(|a, b| a.sender.cmp(&b.sender));
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0].sender, "cron@example.com");
    assert_eq!(listed[0].addresses(), ["c@example.net"]);
    assert_eq!(listed[1].sender, "ops@example.com");
    assert_eq!(listed[1].addresses(), ["a@example.net", "b@example.net"]);
    for l in &listed {
        // No relay host in this sandbox: once the queue manager has looked at
        // the message it is deferred (the sandbox's DNS server does not answer),
        // never lost.
        assert!(
            l.recipients.iter().all(|r| r.status == "pending"
                || (r.status == "deferred"
                    && r.reason
                        .as_deref()
                        .is_some_and(|x| x.contains("Name service error")))),
            "{:?}",
            l.recipients
        );
        assert_eq!(l.queue_id.len(), 12);
        assert!(l.queue_id.chars().all(|c| c.is_ascii_hexdigit()));
        // Postfix-shaped log line for each message.
        d.wait_for_log(&format!(
            "{}: from=<{}>, size={}, nrcpt={} (queue active)",
            l.queue_id,
            l.sender,
            l.size,
            l.recipients.len()
        ));
    }
    assert_eq!(names_in(&sb.corrupt()), Vec::<String>::new());
    d.stop();
    // Still there after a clean restart.
    let mut d = sb.start_daemon_nth(io, 2);
    let rec = d.wait_recovered(2);
    assert_eq!(rec.iter().map(|r| r.messages).sum::<usize>(), 2, "{rec:?}");
    assert_eq!(sb.queue_list().len(), 2);
    d.stop();
}
daemon_test!(daemon_down_then_queued);

/// 10,000 files dropped into `pickup/` (dot-name, then rename) while the
/// daemon runs are all queued, each exactly once, and `pickup/` empties.
fn ten_thousand_files(io: &str) {
    const N: usize = 10_000;
    let sb = Sandbox::new();
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    for i in 0..N {
        sb.drop_file(&format!("m{i:05}.eml"), &pickup_message(i));
    }
    d.wait_until("pickup/ empty", || count_in(&sb.pickup()) == 0);
    let listed = sb.queue_list();
    assert_eq!(listed.len(), N, "every file is one queued message");
    let counts = recipient_counts(&listed);
    assert_eq!(counts.len(), N, "one distinct recipient per file");
    for i in 0..N {
        assert_eq!(
            counts.get(&rcpt(i)),
            Some(&1),
            "{} not queued exactly once",
            rcpt(i)
        );
    }
    assert!(listed
        .iter()
        .all(|l| l.sender == "bulk@example.com" && l.recipients.len() == 1));
    let mut ids: Vec<&str> = listed.iter().map(|l| l.queue_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), N, "queue IDs are unique");
    assert_eq!(count_in(&sb.corrupt()), 0);
    d.stop();
    assert!(
        d.log().contains(&format!("stopped: {N} messages queued")),
        "{}",
        d.log().lines().last().unwrap_or_default()
    );
}
daemon_test!(ten_thousand_files);

/// A file written in place (no temporary name, no rename), slowly, is read
/// only once it is complete: not quarantined half-way, queued whole.
fn in_place_write(io: &str) {
    let sb = Sandbox::with(Settings {
        pickup_settle_ms: 3000,
        ..Settings::default()
    });
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    // Written so that any prefix is either unqueueable (no recipient yet:
    // it would be quarantined) or visibly incomplete (missing lines).
    let mut chunks: Vec<String> = vec![
        "Subject: written in place\n".into(),
        "From: writer@example.com\n".into(),
        "To: inplace@example.net\n".into(),
        "\n".into(),
    ];
    for i in 0..10 {
        chunks.push(format!("body line {i}\n"));
    }
    chunks.push("END-OF-MESSAGE\n".into());
    let path = sb.pickup().join("inplace.eml");
    let mut f = std::fs::File::create(&path).unwrap();
    for c in &chunks {
        f.write_all(c.as_bytes()).unwrap();
        // Pacing only: each write refreshes the file's mtime.
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(f);
    d.wait_until("inplace.eml picked up", || !path.exists());
    assert_eq!(
        names_in(&sb.corrupt()),
        Vec::<String>::new(),
        "a file being written must not be read half-way"
    );
    let listed = sb.queue_list();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].addresses(), ["inplace@example.net"]);
    assert_eq!(listed[0].sender, "writer@example.com");
    let records = sb.segment_messages();
    assert_eq!(records.len(), 1);
    let wire = &records[0].wire;
    for i in 0..10 {
        assert!(contains(wire, format!("body line {i}\r\n").as_bytes()));
    }
    assert!(
        wire.ends_with(b"\r\nEND-OF-MESSAGE\r\n"),
        "queued message is complete:\n{}",
        String::from_utf8_lossy(wire)
    );
    d.stop();
}
daemon_test!(in_place_write);

/// Malformed files in `pickup/` move to `corrupt/` with a `.reason` saying
/// why; nothing is lost; the daemon keeps running and queues good files.
fn malformed_inputs_quarantined(io: &str) {
    const LIMIT: u64 = 100_000;
    let sb = Sandbox::with(Settings {
        message_size_limit: LIMIT,
        ..Settings::default()
    });
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);

    let mut garbage = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..4096 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        garbage.push((x >> 24) as u8);
    }
    garbage[10] = 0;
    let mut huge = b"To: big@example.net\nSubject: huge\n\n".to_vec();
    huge.resize(3 * LIMIT as usize, b'z');
    let mut over = b"To: over@example.net\nSubject: just over\n\n".to_vec();
    over.resize(LIMIT as usize + 10, b'o');
    let long_header = format!(
        "To: long@example.net\nSubject: {}\n\nbody\n",
        "s".repeat(1200)
    );

    // (file name, contents, words the reason must contain)
    let bad: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "no-rcpt.eml",
            b"From: a@example.com\nSubject: nobody\n\nbody\n".to_vec(),
            &["no recipients"],
        ),
        ("garbage.bin", garbage, &["NUL"]),
        ("huge.eml", huge, &["too large"]),
        ("just-over.eml", over, &["too large"]),
        ("long-header.eml", long_header.into_bytes(), &["998"]),
        (
            "bad-xrcpt.eml",
            b"X-Sender: app@example.com\nX-Receiver: not an@@address\nSubject: x\n\nbody\n"
                .to_vec(),
            &["X-Receiver", "not an@@address"],
        ),
    ];
    for (name, data, _) in &bad {
        sb.drop_file(name, data);
    }
    // A file in maildrop/ that sendmail did not write.
    let foreign = b"To: x@example.net\nSubject: not from sendmail\n\nbody\n";
    drop_file(&sb.maildrop(), "foreign", foreign);
    d.wait_until("all bad files quarantined", || {
        count_in(&sb.corrupt()) == 2 * (bad.len() + 1)
    });
    assert_eq!(count_in(&sb.maildrop()), 0);
    let names = names_in(&sb.corrupt());
    let moved = names
        .iter()
        .find(|n| n.ends_with(".foreign"))
        .expect("maildrop file quarantined");
    assert_eq!(std::fs::read(sb.corrupt().join(moved)).unwrap(), foreign);
    let reason = std::fs::read_to_string(sb.corrupt().join(format!("{moved}.reason"))).unwrap();
    assert!(reason.contains("not a maildrop file"), "{reason}");
    assert_eq!(count_in(&sb.pickup()), 0);

    let names = names_in(&sb.corrupt());
    let mut by_orig: BTreeMap<&str, String> = BTreeMap::new();
    for (orig, _, _) in &bad {
        let moved: Vec<&String> = names
            .iter()
            .filter(|n| n.ends_with(&format!(".{orig}")))
            .collect();
        assert_eq!(moved.len(), 1, "{orig}: quarantined once: {names:?}");
        by_orig.insert(orig, moved[0].clone());
    }
    for (orig, data, words) in &bad {
        let moved = &by_orig[orig];
        let kept = std::fs::read(sb.corrupt().join(moved)).unwrap();
        assert!(
            kept == *data,
            "{orig}: quarantined file differs from the original"
        );
        let reason_path = sb.corrupt().join(format!("{moved}.reason"));
        let reason = std::fs::read_to_string(&reason_path)
            .unwrap_or_else(|e| panic!("{orig}: no .reason file: {e}"));
        for w in *words {
            assert!(
                reason.contains(w),
                "{orig}: reason should mention {w:?}: {reason}"
            );
        }
        assert!(
            reason.contains(orig),
            "{orig}: reason names the file: {reason}"
        );
        d.wait_for_log(&format!("{orig}: moved to"));
    }
    assert!(sb.queue_list().is_empty(), "no bad file was queued");

    // Still running, still queueing.
    d.assert_running();
    sb.drop_file("good.eml", &pickup_message(7));
    d.wait_until("good.eml queued", || count_in(&sb.pickup()) == 0);
    let listed = sb.queue_list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].addresses(), [rcpt(7)]);
    assert_eq!(count_in(&sb.corrupt()), 2 * (bad.len() + 1));
    d.stop();
    assert!(
        d.log()
            .contains(&format!("{} files quarantined", bad.len() + 1)),
        "{}",
        d.log()
    );
}
daemon_test!(malformed_inputs_quarantined);

/// A symbolic link and a FIFO in `pickup/` are not read (a link could point
/// anywhere; opening a FIFO would block pickup): both move to `corrupt/`
/// with a reason, the link's target is untouched, and a good file dropped
/// after them is still queued.
fn links_and_fifos_are_not_read(io: &str) {
    let sb = Sandbox::new();
    let mut d = sb.start_daemon(io);
    d.wait_recovered(2);
    let target = sb.root().join("elsewhere.eml");
    std::fs::write(&target, pickup_message(1)).unwrap();
    std::os::unix::fs::symlink(&target, sb.pickup().join("link.eml")).unwrap();
    let fifo = sb.pickup().join("pipe.eml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    d.wait_until("link and FIFO quarantined", || count_in(&sb.corrupt()) == 4);
    for (name, words) in [
        ("link.eml", "symbolic link"),
        ("pipe.eml", "not a regular file"),
    ] {
        let names = names_in(&sb.corrupt());
        let reason = names
            .iter()
            .find(|n| n.ends_with(&format!(".{name}.reason")))
            .unwrap_or_else(|| panic!("{name} quarantined: {names:?}"));
        let text = std::fs::read_to_string(sb.corrupt().join(reason)).unwrap();
        assert!(text.contains(words), "{name}: {text}");
    }
    assert_eq!(std::fs::read(&target).unwrap(), pickup_message(1));
    sb.drop_file("good.eml", &pickup_message(2));
    d.wait_until("good.eml queued", || count_in(&sb.pickup()) == 0);
    let listed = sb.queue_list();
    assert_eq!(listed.len(), 1, "only the good file: {listed:?}");
    assert_eq!(listed[0].addresses(), [rcpt(2)]);
    d.stop();
}
daemon_test!(links_and_fifos_are_not_read);
