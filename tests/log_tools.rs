//! The log is Postfix's, line for line, so Postfix's log tools read it:
//! with `syslog_name = "postfix"`, Debian's `pflogsumm` counts the mail
//! the daemon delivered and bounced, without being told about ringmail.
//! Skipped (with a message) where pflogsumm is not installed;
//! `tools/test.sh` installs it.

mod common;

use std::fs;
use std::process::Command;

use common::*;
use ringmail::sink::{self, Faults, SinkConfig};

fn message(i: usize, to: &str) -> Vec<u8> {
    format!("From: Bulk Sender <bulk@example.com>\nTo: {to}\nSubject: {i}\n\nbody {i}\n")
        .into_bytes()
}

fn pflogsumm_counts(io: &str) {
    if Command::new("pflogsumm").arg("--help").output().is_err() {
        eprintln!("pflogsumm_counts: skipped: pflogsumm is not installed");
        return;
    }
    const SENT: usize = 20;
    const BOUNCED: usize = 3;
    let ok = sink::start(SinkConfig::default()).expect("sink");
    let refusing = sink::start(SinkConfig {
        faults: Faults {
            rcpt_permfail: 1.0,
            ..Faults::default()
        },
        ..SinkConfig::default()
    })
    .expect("refusing sink");
    let sb = Sandbox::new();
    let log_file = sb.root().join("mail.log");
    sb.write_config(&Settings {
        extra: format!(
            "syslog_name = \"postfix\"\nlog_file = {:?}\nrelayhost = \"[127.0.0.1]:{}\"\n\
             [[route]]\ndomain = \"bad.test\"\nnexthop = \"[127.0.0.1]:{}\"\n\
             [[route]]\ndomain = \"example.com\"\nnexthop = \"[127.0.0.1]:{}\"\n",
            log_file.display().to_string(),
            ok.local_addr.port(),
            refusing.local_addr.port(),
            ok.local_addr.port(),
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon(io);
    fs::create_dir_all(sb.pickup()).expect("mkdir pickup");
    for i in 0..SENT {
        sb.drop_file(&format!("ok-{i}.eml"), &message(i, &rcpt(i)));
    }
    for i in 0..BOUNCED {
        sb.drop_file(
            &format!("bad-{i}.eml"),
            &message(i, &format!("x{i}@bad.test")),
        );
    }
    d.wait_until("every message and notice handled", || {
        sb.queue_list().is_empty() && ok.stats().messages >= (SENT + BOUNCED) as u64
    });
    d.stop();
    let log = fs::read_to_string(&log_file).expect("log file");
    assert!(
        log.contains(" postfix/smtp["),
        "syslog_name is used:\n{log}"
    );
    assert!(!log.contains(" ringmail/"), "{log}");
    assert!(log.contains("said: 550 5.1.1"), "{log}");
    for line in log.lines().filter(|l| l.contains(" said: ")) {
        let host = line.split("(host ").nth(1).unwrap_or("");
        let name = host.split(" said:").next().unwrap_or("");
        assert!(
            name.ends_with(']'),
            "no port after the host name, as Postfix: {line}"
        );
    }
    let out = Command::new("pflogsumm")
        .arg(&log_file)
        .output()
        .expect("run pflogsumm");
    let report = String::from_utf8_lossy(&out.stdout);
    let count = |what: &str| -> Option<usize> {
        report.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            let n = words.next()?.parse().ok()?;
            (words.next()? == what).then_some(n)
        })
    };
    // The originals and the notices are delivered; the bad.test
    // recipients bounce.
    assert_eq!(count("delivered"), Some(SENT + BOUNCED), "{report}");
    assert_eq!(count("bounced"), Some(BOUNCED), "{report}");
}
daemon_test!(pflogsumm_counts);
