//! MTA-STS (RFC 8461) on delivery, end to end on loopback: the test DNS
//! server publishes `_mta-sts.sts.test` TXT and points `mta-sts.sts.test`
//! and the MX hosts at 127.0.0.1; a small HTTPS server (certificate from a
//! test CA, which the daemon trusts through `smtp_tls_CAfile`) serves the
//! policy on the port given by `smtp_mta_sts_port`; the bundled sink,
//! with STARTTLS, is the MX.
//!
//! Nothing connects beyond 127.0.0.1. Nothing asserts on speed.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::certs;
use common::dns::{DnsServer, Zone};
use common::*;
use hickory_proto::rr::RecordType;
use ringmail::sink::{self, SinkConfig, SinkHandle};

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;
const FAST_RETRY: &str = "minimal_backoff_time = 1\nmaximal_backoff_time = 2\n";

// ---------------------------------------------------------------------------
// The policy server
// ---------------------------------------------------------------------------

/// What the policy server answers.
#[derive(Clone)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// A one-thread HTTPS server on 127.0.0.1 answering every request with
/// the current [`Answer`]; it records each request's first line and Host.
struct PolicyServer {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PolicyServer {
    fn start(config: Arc<rustls::ServerConfig>, body: &str) -> PolicyServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the policy server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local address");
        let answer = Arc::new(Mutex::new(Answer {
            status: 200,
            content_type: "text/plain; charset=utf-8".into(),
            body: body.to_string(),
        }));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (answer, requests, stop) = (answer.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((tcp, _)) => serve(tcp, &config, &answer, &requests),
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        PolicyServer {
            addr,
            answer,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn set_body(&self, body: &str) {
        self.answer.lock().unwrap().body = body.to_string();
    }

    fn set_content_type(&self, content_type: &str) {
        self.answer.lock().unwrap().content_type = content_type.to_string();
    }

    /// The requests answered so far: (request line, Host header).
    fn requests(&self) -> Vec<(String, String)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one connection: TLS, one request, the answer, close.
fn serve(
    tcp: std::net::TcpStream,
    config: &Arc<rustls::ServerConfig>,
    answer: &Mutex<Answer>,
    requests: &Mutex<Vec<(String, String)>>,
) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let conn = rustls::ServerConnection::new(Arc::clone(config)).expect("server connection");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let line = head.lines().next().unwrap_or_default().to_string();
    let host = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    requests.lock().unwrap().push((line, host));
    let a = answer.lock().unwrap().clone();
    let response = format!(
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        a.status,
        a.content_type,
        a.body.len(),
        a.body
    );
    let _ = tls.write_all(response.as_bytes());
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// A policy file.
fn policy(mode: &str, mx: &[&str]) -> String {
    let mut p = format!("version: STSv1\r\nmode: {mode}\r\n");
    for m in mx {
        p.push_str(&format!("mx: {m}\r\n"));
    }
    p.push_str("max_age: 86400\r\n");
    p
}

// ---------------------------------------------------------------------------
// The world of one test
// ---------------------------------------------------------------------------

/// The zone: `sts.test` MX `mx` (127.0.0.1), the TXT record with `id`,
/// `mta-sts.sts.test` on 127.0.0.1, and the sender's domain.
fn zone(id: &str, mx: &str) -> DnsServer {
    DnsServer::start(
        Zone::new()
            .mx("sts.test", 10, mx)
            .a(mx, LOCAL)
            .txt("_mta-sts.sts.test", &format!("v=STSv1; id={id};"))
            .a("mta-sts.sts.test", LOCAL)
            .mx("sender.test", 10, "mx.sender.test")
            .a("mx.sender.test", LOCAL),
    )
}

/// A test CA (its PEM file in `dir`), the policy server's certificate and
/// the MX's.
struct Pki {
    ca_file: PathBuf,
    https: certs::ServerCert,
    mx: certs::ServerCert,
}

fn pki(dir: &Path) -> Pki {
    let ca = certs::test_ca();
    Pki {
        ca_file: ca.write_pem(dir),
        https: ca.server_cert(&["mta-sts.sts.test"]),
        mx: ca.server_cert(&["mx.sts.test", "mx2.sts.test"]),
    }
}

/// A sink offering STARTTLS with `cert`.
fn tls_sink(cert: &certs::ServerCert) -> SinkHandle {
    sink::start(SinkConfig {
        tls: Some(cert.server_config()),
        ..SinkConfig::default()
    })
    .expect("start the sink")
}

/// The settings: one shard (so each fetch is counted once), `dns`, MX
/// delivery to `smtp_port`, policies from `https_port`, the test CA.
fn settings(dns: &DnsServer, smtp_port: u16, https_port: u16, ca: &Path, extra: &str) -> Settings {
    Settings {
        shards: 1,
        dns_servers: vec![dns.addr.to_string()],
        extra: format!(
            "smtp_port = {smtp_port}\nsmtp_mta_sts_port = {https_port}\n\
             smtp_tls_CAfile = {:?}\n{FAST_RETRY}{extra}",
            ca.display().to_string()
        ),
        ..Settings::default()
    }
}

fn drop_message(sb: &Sandbox, tag: &str, to: &str) {
    std::fs::create_dir_all(sb.pickup()).expect("mkdir pickup");
    let text = format!(
        "X-Sender: s@sender.test\nX-Receiver: {to}\nFrom: <s@sender.test>\nTo: {to}\n\
         Subject: {tag}\nMessage-ID: <{tag}@test.example>\n\nbody of {tag}\n"
    );
    sb.drop_file(&format!("{tag}.eml"), text.as_bytes());
}

/// Starts run `run` of the daemon and waits for its shard.
fn start(sb: &Sandbox, io: &str, run: usize) -> Daemon {
    let mut d = sb.start_daemon_nth(io, run);
    d.wait_recovered(1);
    d
}

/// Waits for a log line of this run matching `pred`; returns it.
fn wait_line(d: &mut Daemon, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        if let Some(l) = d.log().lines().find(|l| pred(l)) {
            return l.to_string();
        }
        d.assert_running();
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the `status=WORD` line of recipient `to`; returns it.
fn wait_status(d: &mut Daemon, to: &str, word: &str) -> String {
    let (rcpt, status) = (format!("to=<{to}>"), format!("status={word}"));
    wait_line(d, &format!("{to} {status}"), |l| {
        l.contains("ringmail/smtp[") && l.contains(&rcpt) && l.contains(&status)
    })
}

/// The durable copy of the policy of `sts.test`.
fn cached_file(sb: &Sandbox) -> PathBuf {
    sb.spool.join("mta-sts").join("sts.test.json")
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// `enforce` with an MX host matching the policy's wildcard: the policy is
/// fetched once over verified HTTPS (Host `mta-sts.sts.test:PORT`), kept
/// on disk, and the mail goes out over TLS verified for the MX name.
fn enforce_with_a_matching_mx_delivers_over_verified_tls(io: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let https = PolicyServer::start(
        pki.https.server_config(),
        &policy("enforce", &["*.sts.test"]),
    );
    let sink = tls_sink(&pki.mx);
    let port = sink.local_addr.port();
    let dns = zone("20260101T000000", "mx.sts.test");
    let sb = Sandbox::with(settings(&dns, port, https.addr.port(), &pki.ca_file, ""));
    let mut d = start(&sb, io, 0);
    drop_message(&sb, "match", "u@sts.test");
    let line = wait_status(&mut d, "u@sts.test", "sent");
    assert!(
        line.contains(&format!("relay=mx.sts.test[127.0.0.1]:{port}")),
        "{line}"
    );
    d.stop();
    let log = d.log();
    assert!(
        log.contains(&format!(
            "Verified TLS connection established to mx.sts.test[127.0.0.1]:{port}"
        )),
        "{log}"
    );
    assert!(
        log.contains(
            "MTA-STS policy of sts.test (id 20260101T000000): mode enforce, mx *.sts.test, max_age 86400"
        ),
        "{log}"
    );
    assert_eq!(
        https.requests(),
        [(
            "GET /.well-known/mta-sts.txt HTTP/1.1".to_string(),
            format!("mta-sts.sts.test:{}", https.addr.port())
        )]
    );
    assert_eq!(sink.stats().messages, 1);
    let cached = std::fs::read_to_string(cached_file(&sb)).expect("the policy is kept on disk");
    assert!(cached.contains("mode: enforce"), "{cached}");
    assert!(cached.contains("20260101T000000"), "{cached}");
}
daemon_test!(enforce_with_a_matching_mx_delivers_over_verified_tls);

/// `enforce` where no MX host matches: deferred with 4.7.5 and the
/// policy named, nothing sent, the mail still queued.
#[test]
fn enforce_without_a_matching_mx_defers() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let https = PolicyServer::start(
        pki.https.server_config(),
        &policy("enforce", &["mx.elsewhere.test"]),
    );
    let sink = tls_sink(&pki.mx);
    let dns = zone("1", "mx.sts.test");
    let sb = Sandbox::with(settings(
        &dns,
        sink.local_addr.port(),
        https.addr.port(),
        &pki.ca_file,
        "",
    ));
    let mut d = start(&sb, "auto", 0);
    drop_message(&sb, "nomatch", "u@sts.test");
    let line = wait_status(&mut d, "u@sts.test", "deferred");
    assert!(line.contains("dsn=4.7.5"), "{line}");
    assert!(
        line.contains(
            "MTA-STS policy: no MX host matches the policy of sts.test \
             (MX: mx.sts.test; policy mx: mx.elsewhere.test)"
        ),
        "{line}"
    );
    let listed = sb.queue_list();
    assert_eq!(listed.len(), 1, "still queued: {listed:?}");
    d.stop();
    assert_eq!(sink.stats().messages, 0, "nothing delivered");
    assert_eq!(sink.stats().connections, 0, "the MX was not even contacted");
}

/// `enforce` with a matching MX whose certificate nobody trusts (under
/// the default level `may` it would be delivered): deferred, nothing sent
/// in plaintext.
#[test]
fn enforce_refuses_an_unverified_certificate() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let https = PolicyServer::start(
        pki.https.server_config(),
        &policy("enforce", &["mx.sts.test"]),
    );
    let sink = tls_sink(&certs::self_signed(&["mx.sts.test"]));
    let dns = zone("1", "mx.sts.test");
    let sb = Sandbox::with(settings(
        &dns,
        sink.local_addr.port(),
        https.addr.port(),
        &pki.ca_file,
        "",
    ));
    let mut d = start(&sb, "auto", 0);
    drop_message(&sb, "untrusted", "u@sts.test");
    let line = wait_status(&mut d, "u@sts.test", "deferred");
    assert!(line.contains("dsn=4.7.5"), "{line}");
    assert!(
        line.contains("MTA-STS policy of sts.test requires verified TLS: Cannot start TLS"),
        "{line}"
    );
    d.stop();
    assert_eq!(sink.stats().messages, 0, "nothing delivered");
}

/// `testing`: an MX that does not match and a certificate nobody trusts;
/// the mail goes out and both findings are logged.
#[test]
fn testing_mode_delivers_and_logs() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let https = PolicyServer::start(
        pki.https.server_config(),
        &policy("testing", &["mx.elsewhere.test"]),
    );
    let sink = tls_sink(&certs::self_signed(&["mx.sts.test"]));
    let port = sink.local_addr.port();
    let dns = zone("1", "mx.sts.test");
    let sb = Sandbox::with(settings(&dns, port, https.addr.port(), &pki.ca_file, ""));
    let mut d = start(&sb, "auto", 0);
    drop_message(&sb, "testing", "u@sts.test");
    wait_status(&mut d, "u@sts.test", "sent");
    d.stop();
    let log = d.log();
    assert!(
        log.contains(
            "MTA-STS testing: sts.test: MX host mx.sts.test does not match the policy \
             (mx mx.elsewhere.test); enforce would skip it (delivering anyway)"
        ),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "MTA-STS testing: sts.test: Untrusted TLS with mx.sts.test[127.0.0.1]:{port}; \
             enforce would defer (delivering anyway)"
        )),
        "{log}"
    );
    assert_eq!(sink.stats().messages, 1);
    assert_eq!(https.requests().len(), 1);
}

/// The policy survives a restart: with the policy server gone and the MX
/// moved to a host the policy does not name, the restarted daemon still
/// enforces the cached policy; with a new TXT id it tries to fetch, fails,
/// and keeps enforcing the cached one (RFC 8461 section 5.1).
#[test]
fn cached_policy_is_used_after_a_restart_when_the_policy_server_is_down() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let https = PolicyServer::start(
        pki.https.server_config(),
        &policy("enforce", &["mx.sts.test"]),
    );
    let https_port = https.addr.port();
    let sink = tls_sink(&pki.mx);
    let port = sink.local_addr.port();
    let dns = zone("1", "mx.sts.test");
    let sb = Sandbox::with(settings(&dns, port, https_port, &pki.ca_file, ""));
    let mut d = start(&sb, "auto", 0);
    drop_message(&sb, "first", "u@sts.test");
    wait_status(&mut d, "u@sts.test", "sent");
    d.stop();
    assert_eq!(https.requests().len(), 1);
    drop(https);

    // Same id, the MX renamed: the cached policy refuses it, no fetch.
    let dns = zone("1", "mx2.sts.test");
    sb.write_config(&settings(&dns, port, https_port, &pki.ca_file, ""));
    let mut d = start(&sb, "auto", 1);
    drop_message(&sb, "second", "v@sts.test");
    let line = wait_status(&mut d, "v@sts.test", "deferred");
    assert!(
        line.contains(
            "MTA-STS policy: no MX host matches the policy of sts.test (MX: mx2.sts.test"
        ),
        "{line}"
    );
    d.stop();
    assert!(!d.log().contains("cannot fetch"), "{}", d.log());

    // A new id while the server is down: the fetch fails, the cached
    // policy stays in force.
    let dns = zone("2", "mx2.sts.test");
    sb.write_config(&settings(&dns, port, https_port, &pki.ca_file, ""));
    let mut d = start(&sb, "auto", 2);
    let line = wait_status(&mut d, "v@sts.test", "deferred");
    assert!(
        line.contains("MTA-STS policy: no MX host matches"),
        "{line}"
    );
    d.stop();
    assert!(
        d.log().contains(
            "MTA-STS: cannot fetch the policy of sts.test (id 2): connect to mta-sts.sts.test[127.0.0.1]"
        ),
        "{}",
        d.log()
    );
    assert!(
        d.log()
            .contains("using the cached policy (id 1, mode enforce)"),
        "{}",
        d.log()
    );
    assert_eq!(sink.stats().messages, 1, "only the first message went out");
    assert_eq!(sb.queue_list().len(), 1);
}

/// A restart with the same TXT id reuses the policy on disk (no fetch); a
/// new id fetches the new policy, which then applies.
#[test]
fn a_new_txt_id_fetches_the_new_policy() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let https = PolicyServer::start(
        pki.https.server_config(),
        &policy("enforce", &["mx.sts.test"]),
    );
    let sink = tls_sink(&pki.mx);
    let port = sink.local_addr.port();
    let dns = zone("1", "mx.sts.test");
    let sb = Sandbox::with(settings(&dns, port, https.addr.port(), &pki.ca_file, ""));
    let mut d = start(&sb, "auto", 0);
    drop_message(&sb, "one", "u@sts.test");
    wait_status(&mut d, "u@sts.test", "sent");
    d.stop();
    assert_eq!(https.requests().len(), 1);

    let mut d = start(&sb, "auto", 1);
    drop_message(&sb, "two", "v@sts.test");
    wait_status(&mut d, "v@sts.test", "sent");
    d.stop();
    assert_eq!(https.requests().len(), 1, "same id: the policy on disk");

    https.set_body(&policy("enforce", &["mx.elsewhere.test"]));
    let dns = zone("2", "mx.sts.test");
    sb.write_config(&settings(&dns, port, https.addr.port(), &pki.ca_file, ""));
    let mut d = start(&sb, "auto", 2);
    drop_message(&sb, "three", "w@sts.test");
    let line = wait_status(&mut d, "w@sts.test", "deferred");
    assert!(
        line.contains("policy mx: mx.elsewhere.test"),
        "the new policy applies: {line}"
    );
    d.stop();
    assert_eq!(https.requests().len(), 2, "fetched again for the new id");
    let cached = std::fs::read_to_string(cached_file(&sb)).expect("cached policy");
    assert!(cached.contains("mx.elsewhere.test"), "{cached}");
    assert_eq!(sink.stats().messages, 2);
}

/// `mta_sts = false` in a `[[tls_policy]]` entry: the policy is not even
/// looked up, and mail goes out as without MTA-STS.
#[test]
fn a_destination_can_turn_mta_sts_off() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let https = PolicyServer::start(
        pki.https.server_config(),
        &policy("enforce", &["mx.elsewhere.test"]),
    );
    let sink = tls_sink(&pki.mx);
    let dns = zone("1", "mx.sts.test");
    let sb = Sandbox::with(settings(
        &dns,
        sink.local_addr.port(),
        https.addr.port(),
        &pki.ca_file,
        "[[tls_policy]]\ndomain = \"sts.test\"\nmta_sts = false\n",
    ));
    let mut d = start(&sb, "auto", 0);
    drop_message(&sb, "off", "u@sts.test");
    wait_status(&mut d, "u@sts.test", "sent");
    d.stop();
    assert_eq!(sink.stats().messages, 1);
    assert!(https.requests().is_empty());
    assert!(
        !dns.queries()
            .iter()
            .any(|(name, t)| name == "_mta-sts.sts.test" && *t == RecordType::TXT),
        "{:?}",
        dns.queries()
    );
}

/// A policy served as `text/html` is no policy (RFC 8461 section 3.3): the
/// fetch is refused with a warning, nothing is cached, and the mail goes
/// out as without MTA-STS although the policy would not allow its MX.
#[test]
fn a_policy_not_served_as_text_plain_is_ignored() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let https = PolicyServer::start(
        pki.https.server_config(),
        &policy("enforce", &["mx.elsewhere.test"]),
    );
    https.set_content_type("text/html");
    let sink = tls_sink(&pki.mx);
    let dns = zone("1", "mx.sts.test");
    let sb = Sandbox::with(settings(
        &dns,
        sink.local_addr.port(),
        https.addr.port(),
        &pki.ca_file,
        "",
    ));
    let mut d = start(&sb, "auto", 0);
    drop_message(&sb, "html", "u@sts.test");
    wait_status(&mut d, "u@sts.test", "sent");
    d.stop();
    assert!(
        d.log().contains(
            "MTA-STS: cannot fetch the policy of sts.test (id 1): mta-sts.sts.test served \
             content type \"text/html\", not text/plain; no policy applies"
        ),
        "{}",
        d.log()
    );
    assert_eq!(https.requests().len(), 1);
    assert!(!cached_file(&sb).exists());
    assert_eq!(sink.stats().messages, 1);
}

/// The policy server's certificate must verify: one that nobody trusts
/// gives no policy (a warning), so an attacker on the path cannot serve
/// one; the mail goes out as without MTA-STS.
#[test]
fn a_policy_server_with_an_untrusted_certificate_gives_no_policy() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let https = PolicyServer::start(
        certs::self_signed(&["mta-sts.sts.test"]).server_config(),
        &policy("enforce", &["mx.elsewhere.test"]),
    );
    let sink = tls_sink(&pki.mx);
    let dns = zone("1", "mx.sts.test");
    let sb = Sandbox::with(settings(
        &dns,
        sink.local_addr.port(),
        https.addr.port(),
        &pki.ca_file,
        "",
    ));
    let mut d = start(&sb, "auto", 0);
    drop_message(&sb, "selfsigned", "u@sts.test");
    wait_status(&mut d, "u@sts.test", "sent");
    d.stop();
    let log = d.log();
    assert!(
        log.contains(&format!(
            "MTA-STS: cannot fetch the policy of sts.test (id 1): TLS handshake with \
             mta-sts.sts.test[127.0.0.1]:{}: invalid peer certificate",
            https.addr.port()
        )),
        "{log}"
    );
    assert!(log.contains("no policy applies"), "{log}");
    assert!(
        https.requests().is_empty(),
        "no request over an unverified connection"
    );
    assert_eq!(sink.stats().messages, 1);
}
