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
        "sum(ringmail_site_recipients_total{outcome=\"delivered\"})",
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
    prom.wait_for(
        "sum(ringmail_messages_completed_total)",
        (sent_by_sendmail + dropped) as f64,
    );
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

/// The value of the sample `name{labels}` in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The sum of every sample of `name` whose labels contain `label`.
fn sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const TEMPLATE: &str =
    "From: News <news@example.com>\nTo: <{{ email }}>\nSubject: issue\n\nHello\n";

/// Per-site counters with their deferral classes, TLS handshakes, the age
/// of the oldest queued message and a campaign's progress, read from the
/// raw exposition while mail is sent: 20 messages and a 30-recipient
/// campaign through a STARTTLS sink that tempfails 30 % of the RCPTs, and
/// one message routed to a closed port (it stays queued).
#[test]
fn sites_tls_queue_age_and_campaign_progress() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = certs::write_pki(dir.path(), &["localhost"]);
    let sink = sink::start(SinkConfig {
        tls: Some(sink::tls_server_config(&pki.cert_file, &pki.key_file).expect("tls")),
        faults: Faults {
            rcpt_tempfail: 0.3,
            ..Faults::default()
        },
        seed: Some(7),
        ..SinkConfig::default()
    })
    .expect("sink");
    let closed = free_port();
    let http = free_port();
    let sb = Sandbox::with(Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{}\"\nminimal_backoff_time = 1\nmaximal_backoff_time = 1\n\
             smtpd_passwd_file = \"/nonexistent/ringmail-passwd\"\n\
             [[route]]\ndomain = \"stuck.example\"\nnexthop = \"[127.0.0.1]:{closed}\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n",
            sink.local_addr.port()
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon("uring");
    d.wait_for_log("accepting campaigns on");
    for i in 0..20 {
        sb.sendmail_ok(
            &["-t"],
            format!("From: a@example.com\nTo: r{i}@example.net\nSubject: {i}\n\nbody\n").as_bytes(),
        );
    }
    sb.sendmail_ok(
        &["-t"],
        b"From: a@example.com\nTo: x@stuck.example\nSubject: stuck\n\nbody\n",
    );
    let template = sb.root().join("issue.eml");
    fs::write(&template, TEMPLATE).expect("template");
    let list = sb.root().join("list.csv");
    let mut csv = String::from("email\n");
    for i in 0..30 {
        csv.push_str(&format!("c{i}@example.org\n"));
    }
    fs::write(&list, csv).expect("list");
    let out = Command::new(BIN)
        .args(["campaign", "send", "--template"])
        .arg(&template)
        .arg("--recipients")
        .arg(&list)
        .args(["--unsubscribe", "https://news.example.com"])
        .arg("--config")
        .arg(&sb.config)
        .output()
        .expect("ringmail campaign send");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: u64 = said
        .split_whitespace()
        .skip_while(|w| *w != "campaign")
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no campaign ID in {said}"));

    let url = format!("http://127.0.0.1:{http}/metrics");
    let mut text = String::new();
    d.wait_until("50 recipients delivered, counted per site", || {
        text = curl(&url);
        sum(
            &text,
            "ringmail_site_recipients_total",
            "outcome=\"delivered\"",
        ) == 50.0
    });
    assert!(
        sum(&text, "ringmail_site_deferrals_total", "class=\"system\"") >= 1.0,
        "the sink's 451 4.3.0 counts as a system deferral:\n{text}"
    );
    d.wait_until("the closed port's deferral is counted as network", || {
        text = curl(&url);
        sum(&text, "ringmail_site_deferrals_total", "class=\"network\"") >= 1.0
    });
    assert_eq!(
        sum(
            &text,
            "ringmail_site_recipients_total",
            "outcome=\"deferred\""
        ),
        sum(&text, "ringmail_site_deferrals_total", ""),
        "every deferral has a class:\n{text}"
    );
    assert!(
        text.contains("# TYPE ringmail_site_connections gauge"),
        "{text}"
    );
    let tls = sample(
        &text,
        "ringmail_tls_handshakes_total{direction=\"outbound\",version=\"TLSv1.3\"}",
    )
    .unwrap_or(0.0);
    assert!(tls >= 1.0, "STARTTLS to the sink is counted:\n{text}");
    d.wait_until("the campaign's progress", || {
        text = curl(&url);
        sample(
            &text,
            &format!("ringmail_campaign_recipients{{campaign=\"{id}\",status=\"sent\"}}"),
        ) == Some(30.0)
    });
    assert_eq!(
        sample(
            &text,
            &format!("ringmail_campaign_progress_ratio{{campaign=\"{id}\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "ringmail_campaign_info{{campaign=\"{id}\",name=\"issue.eml\",state=\"running\"}} 1"
        )),
        "{text}"
    );
    d.wait_until("the stuck message's age", || {
        text = curl(&url);
        sample(&text, "ringmail_queue_oldest_message_age_seconds").is_some_and(|a| a >= 1.0)
    });
    d.stop();
}
