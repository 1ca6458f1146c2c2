//! `ringmail top` (issue 17 item 5) against the real daemon with its HTTP
//! server and a `read` token, delivering into the bundled sink: 6
//! messages through `sendmail` and a campaign of 20 recipients over the
//! API, all delivered, and one message for `closed.example`, routed to a
//! loopback port where nothing listens, deferred; then
//!
//! - the live view run in a detached tmux session (160x48): its screen
//!   (`capture-pane -p`) shows the four panels, a nonzero delivered total
//!   and the campaign at 100%; `p` pauses (the heading says so); `q`
//!   quits (the shell after it prints a marker);
//! - `--once` prints the same panels as text, with the delivered total,
//!   the campaign's progress, the deferred recipient's domain in the queue
//!   and its reason (`Connection refused`) counted once; without `--url`
//!   it finds the API at the configuration's `[http] listen`; a token the
//!   API refuses fails with the HTTP status.
//!
//! The tmux test is skipped, with a message, when tmux is missing.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use ringmail::sink::{self, SinkConfig, SinkHandle};

const READER: &str = "reader-token-0123456789";
const SENDER: &str = "sender-token-0123456789";

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The daemon, the sink it delivers to and the API's base URL, with 6
/// messages and a campaign of 20 delivered.
struct Setup {
    sb: Sandbox,
    _daemon: Daemon,
    _sink: SinkHandle,
    base: String,
    /// The port where nothing listens (closed.example's next hop).
    closed: u16,
}

fn setup() -> Setup {
    let sink = sink::start(SinkConfig::default()).expect("sink");
    let port = free_port();
    // Nothing listens there: mail for closed.example is deferred.
    let closed = free_port();
    let sb = Sandbox::with(Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{}\"\nminimal_backoff_time = 3600\nmaximal_backoff_time = 4000\n\
             [[route]]\ndomain = \"closed.example\"\nnexthop = \"[127.0.0.1]:{closed}\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n\
             tokens = [\n\
               {{ token = \"{SENDER}\", scopes = [\"inject\", \"read\"] }},\n\
               {{ token = \"{READER}\", scopes = [\"read\"] }},\n\
             ]\n",
            sink.local_addr.port()
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon("epoll");
    d.wait_for_log(&format!("listening on http://127.0.0.1:{port}"));
    d.wait_for_log("accepting campaigns on");
    let base = format!("http://127.0.0.1:{port}");
    for i in 0..6 {
        sb.sendmail_ok(
            &["-f", "from@example.com", &format!("to{i}@example.net")],
            format!("Subject: top {i}\n\nhello\n").as_bytes(),
        );
    }
    sb.sendmail_ok(
        &["-f", "from@example.com", "late@closed.example"],
        b"Subject: deferred\n\nhello\n",
    );
    post_campaign(sb.root(), &base);
    d.wait_until("26 recipients delivered", || delivered(&base) >= 26);
    d.wait_until("one recipient deferred with a reason", || {
        sb.queue_list()
            .iter()
            .flat_map(|m| &m.recipients)
            .any(|r| r.status == "deferred" && r.reason.is_some())
    });
    Setup {
        sb,
        _daemon: d,
        _sink: sink,
        base,
        closed,
    }
}

/// POSTs a campaign of 20 recipients.
fn post_campaign(dir: &Path, base: &str) {
    let recipients: Vec<serde_json::Value> = (0..20)
        .map(|i| serde_json::json!({ "email": format!("c{i}@example.net"), "name": "N" }))
        .collect();
    let body = serde_json::json!({
        "name": "top-test",
        "bounce_domain": "bounce.example.com",
        "unsubscribe": "https://news.example.com",
        "template": "From: <news@example.com>\nTo: <{{ email }}>\nSubject: hi\n\nHello {{ name }}\n{{ unsubscribe_url }}\n",
        "recipients": recipients,
    });
    let file = dir.join("campaign.json");
    std::fs::write(&file, body.to_string()).expect("write");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-H", &format!("Authorization: Bearer {SENDER}")])
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(format!("{base}/api/v1/campaigns"))
        .output()
        .expect("curl (apt-get install curl)");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "202");
}

/// `ringmail_recipients_total{outcome="delivered"}` from `/metrics`.
fn delivered(base: &str) -> u64 {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(["-H", &format!("Authorization: Bearer {READER}")])
        .arg(format!("{base}/metrics"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("ringmail_recipients_total{outcome=\"delivered\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The figure after `total` on the line of `label`.
fn total_on(screen: &str, label: &str) -> Option<u64> {
    let line = screen.lines().find(|l| l.contains(label))?;
    let after = line.split("total").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

const TITLES: [&str; 4] = [
    "Rates (per second, last 2 minutes)",
    "Queue by domain",
    "Campaigns",
    "Recent errors (top deferral reasons)",
];

#[test]
fn once_prints_a_snapshot() {
    let s = setup();
    let out =
        s.sb.cmd()
            .args(["top", "--once", "--interval-ms", "300", "--url", &s.base])
            .env("RINGMAIL_TOKEN", READER)
            .output()
            .expect("run top --once");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in TITLES {
        assert!(text.contains(t), "{t} missing:\n{text}");
    }
    assert_eq!(total_on(&text, "out (delivered)"), Some(26), "{text}");
    // 6 messages and the campaign's slices (one or more).
    let received = total_on(&text, "in (received)");
    assert!(received.is_some_and(|n| n >= 7), "{received:?}:\n{text}");
    let campaign = text
        .lines()
        .find(|l| l.contains("top-test"))
        .unwrap_or_else(|| panic!("no campaign:\n{text}"));
    assert!(
        campaign.contains("100%") && campaign.contains(" 20 "),
        "{campaign}"
    );
    // The deferred recipient: in the queue by domain, and its reason.
    let row = text
        .lines()
        .find(|l| l.contains("closed.example"))
        .unwrap_or_else(|| panic!("no closed.example row:\n{text}"));
    assert_eq!(row.split_whitespace().nth(1), Some("1"), "{row}");
    let reason = text
        .lines()
        .find(|l| l.contains("Connection refused"))
        .unwrap_or_else(|| panic!("no reason:\n{text}"));
    assert_eq!(reason.split_whitespace().next(), Some("1"), "{reason}");
    assert!(
        reason.contains(&format!("127.0.0.1[127.0.0.1]:{}", s.closed)),
        "{reason}"
    );

    // No --url: the configuration's [http] listen address.
    let out =
        s.sb.cmd()
            .args(["top", "--once", "--interval-ms", "100", "--config"])
            .arg(&s.sb.config)
            .env("RINGMAIL_TOKEN", READER)
            .output()
            .expect("run top --once");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with(&format!("ringmail top  {} ", s.base)),
        "{text}"
    );

    // A token the API does not know: the status, and a failure.
    let out =
        s.sb.cmd()
            .args([
                "top",
                "--once",
                "--url",
                &s.base,
                "--token",
                "wrong-token-0123456789",
            ])
            .output()
            .expect("run top --once");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HTTP 401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// tmux on its own socket in the sandbox, so no other tmux is touched.
fn tmux(sock: &Path, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .arg("-S")
        .arg(sock)
        .args(args)
        .output()
        .expect("run tmux");
    assert!(
        out.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn live_view_under_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: tmux is not installed (apt-get install tmux)");
        return;
    }
    let s = setup();
    let sock = s.sb.root().join("tmux.sock");
    let command = format!(
        "{BIN} top --url {} --token {READER} --interval-ms 300; echo TOP-EXITED-$?; sleep 60",
        s.base
    );
    tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "48",
            "-s",
            "top",
            &command,
        ],
    );
    let capture = || tmux(&sock, &["capture-pane", "-p", "-t", "top"]);
    let mut screen = String::new();
    wait_until(
        "the panels and a delivered total",
        Duration::from_secs(60),
        || {
            screen = capture();
            TITLES.iter().all(|t| screen.contains(t))
                && total_on(&screen, "out (delivered)").is_some_and(|n| n > 0)
        },
    );
    eprintln!("the screen:\n{screen}");
    assert_eq!(total_on(&screen, "out (delivered)"), Some(26), "{screen}");
    assert!(screen.contains("top-test"), "{screen}");
    assert!(screen.contains("100%"), "{screen}");

    tmux(&sock, &["send-keys", "-t", "top", "p"]);
    wait_until("paused", Duration::from_secs(30), || {
        capture().contains("[paused]")
    });
    tmux(&sock, &["send-keys", "-t", "top", "q"]);
    wait_until("top exits on q", Duration::from_secs(30), || {
        capture().contains("TOP-EXITED-0")
    });
    tmux(&sock, &["kill-server"]);
}
