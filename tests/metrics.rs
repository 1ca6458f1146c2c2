//! Prometheus metrics (issue 17), end to end: the daemon sends mail to the
//! bundled sink on loopback while a real Prometheus server (Debian's
//! `prometheus`) scrapes `GET /metrics`; the test then asks Prometheus's
//! HTTP API, so the exposition is parsed by Prometheus itself, and checks
//! the counters against what was sent.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ringmail::sink::{self, Faults, SinkConfig};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn curl(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", url])
        .output()
        .expect("curl (apt-get install curl)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Prometheus server scraping `target` every 500 ms, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n\
                 scrape_configs:\n  - job_name: ringmail\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus.yml");
        let log = fs::File::create(dir.join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (apt-get install prometheus)");
        Prometheus { child, port }
    }

    /// The value of an instant query's single result, if there is one.
    fn query(&self, q: &str) -> Option<f64> {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={}",
            self.port,
            q.replace('"', "%22")
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace(' ', "%20")
                .replace('=', "%3D")
        );
        let body = curl(&url);
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        let first = result.first()?;
        first["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `q` evaluates to `want`.
    fn wait_for(&self, q: &str, want: f64) {
        let start = Instant::now();
        loop {
            let got = self.query(q);
            if got == Some(want) {
                return;
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("Prometheus: {q} is {got:?}, expected {want}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scraped_by_prometheus(io: &str) {
    let dump = tempfile::tempdir().expect("dir");
    let sink = sink::start(SinkConfig {
        dump_dir: Some(dump.path().to_path_buf()),
        faults: Faults::default(),
        ..SinkConfig::default()
    })
    .expect("sink");
    let http = free_port();
    let sb = Sandbox::with(Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{}\"\nsmtpd_passwd_file = \"/nonexistent/ringmail-passwd\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n",
            sink.local_addr.port()
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon(io);
    let prom = Prometheus::start(sb.root(), &format!("127.0.0.1:{http}"));
    let sent_by_sendmail = 30;
    for i in 0..sent_by_sendmail {
        sb.sendmail_ok(
            &["-t"],
            format!("From: a@example.com\nTo: r{i}@example.net, s{i}@example.net\nSubject: {i}\n\nbody\n")
                .as_bytes(),
        );
    }
    let dropped = 12;
    for i in 0..dropped {
        drop_file(
            &sb.pickup(),
            &format!("p{i}"),
            format!("X-Sender: a@example.com\nX-Receiver: p{i}@example.net\nSubject: p\n\nbody\n")
                .as_bytes(),
        );
    }
    let delivered = 2 * sent_by_sendmail + dropped;
    d.wait_until("every recipient delivered", || {
        d_count(dump.path()) >= sent_by_sendmail + dropped
    });
    prom.wait_for(
        "sum(ringmail_recipients_total{outcome=\"delivered\"})",
        delivered as f64,
    );
    prom.wait_for(
        "ringmail_messages_received_total{source=\"sendmail\"}",
        sent_by_sendmail as f64,
    );
    prom.wait_for(
        "ringmail_recipients_received_total{source=\"sendmail\"}",
        (2 * sent_by_sendmail) as f64,
    );
    prom.wait_for(
        "ringmail_messages_received_total{source=\"pickup\"}",
        dropped as f64,
    );
    prom.wait_for("ringmail_messages_received_total{source=\"smtp\"}", 0.0);
    prom.wait_for("ringmail_queue_messages", 0.0);
    let commits = prom
        .query("ringmail_commit_seconds_count")
        .expect("commit histogram");
    assert!(commits >= 1.0, "at least one group commit: {commits}");
    let batch = prom
        .query("ringmail_commit_batch_messages_sum")
        .expect("batch histogram");
    assert_eq!(
        batch,
        (sent_by_sendmail + dropped) as f64,
        "every message in one commit batch"
    );
    prom.wait_for(
        &format!(
            "count(ringmail_info{{io_backend=\"{}\"}})",
            if io == "epoll" { "epoll" } else { "io_uring" }
        ),
        1.0,
    );
    d.stop();
}

fn d_count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|r| {
            r.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn prometheus_scrapes_the_counters_uring() {
    scraped_by_prometheus("uring");
}

#[test]
fn prometheus_scrapes_the_counters_epoll() {
    scraped_by_prometheus("epoll");
}

/// `/metrics` needs no token, and the exposition has a TYPE for every
/// sample (checked by Prometheus above; here the raw text).
#[test]
fn metrics_need_no_token() {
    let http = free_port();
    let sb = Sandbox::with(Settings {
        extra: format!(
            "smtpd_passwd_file = \"/nonexistent/ringmail-passwd\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             tokens = [{{ token = \"0123456789abcdef0123\", scopes = [\"read\"] }}]\n"
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon("uring");
    let text = curl(&format!("http://127.0.0.1:{http}/metrics"));
    assert!(
        text.contains("# TYPE ringmail_recipients_total counter"),
        "{text}"
    );
    assert!(text.contains("ringmail_info{io_backend="), "{text}");
    let api = curl(&format!("http://127.0.0.1:{http}/api/v1/campaigns"));
    assert!(api.contains("error"), "the API still needs a token: {api}");
    d.stop();
}
