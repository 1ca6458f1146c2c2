//! Connection reuse across the recipient domains of one shaping site
//! (docs/SHAPING.md, issue 16): twenty domains whose MX host is the same
//! share the site's one connection instead of opening one each, while a
//! domain of the site with another MX host, and a domain whose TLS level
//! (`verify`) the cached connection does not meet, connect for themselves.
//! DNS is the loopback test server; every MX host is 127.0.0.1, where a
//! sink with a self-signed certificate (TLS "Untrusted") listens.

mod common;

use std::fs;
use std::net::Ipv4Addr;
use std::time::Duration;

use common::dns::{DnsServer, Zone};
use common::*;
use ringmail::sink::{self, SinkConfig};

const DOMAINS: usize = 20;

fn zone() -> Zone {
    let mut z = Zone::new()
        .mx("other.example", 10, "mx2.gsite.test")
        .mx("v.example", 10, "mx1.gsite.test")
        .a("mx1.gsite.test", Ipv4Addr::LOCALHOST)
        .a("mx2.gsite.test", Ipv4Addr::LOCALHOST);
    for i in 0..DOMAINS {
        z = z.mx(&format!("d{i}.example"), 10, "mx1.gsite.test");
    }
    z
}

fn message(n: usize, rcpt: &str) -> Vec<u8> {
    format!("X-Sender: s@sender.example\nX-Receiver: {rcpt}\nSubject: {n}\n\nbody {n}\n")
        .into_bytes()
}

/// The `relay=` host names of the log's delivery lines for `rcpt`.
fn relays(log: &str, rcpt: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(&format!("to=<{rcpt}>")))
        .filter_map(|l| l.split("relay=").nth(1))
        .map(|r| r.split('[').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn domains_of_a_site_share_its_connection_when_it_suits_them() {
    let dns = DnsServer::start(zone());
    let cert = certs::self_signed(&["mx1.gsite.test", "mx2.gsite.test"]);
    let sink = sink::start(SinkConfig {
        tls: Some(cert.server_config()),
        ..SinkConfig::default()
    })
    .expect("sink");
    let rules_dir = tempfile::tempdir().expect("dir");
    let rules = rules_dir.path().join("shaping.toml");
    fs::write(
        &rules,
        "[[site]]\nname = \"gsite\"\nmx = [\"*.gsite.test\"]\nmax_connections = 1\n\
         max_deliveries_per_connection = 0\n",
    )
    .expect("write rules");
    let sb = Sandbox::with(Settings {
        shards: 1,
        dns_servers: vec![dns.addr.to_string()],
        extra: format!(
            "smtp_port = {}\nsmtp_mta_sts = false\nsmtp_connection_cache_time_limit = 30\n\
             shaping_file = {rules:?}\n\
             [[tls_policy]]\ndomain = \"v.example\"\nlevel = \"verify\"\n",
            sink.local_addr.port()
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon("uring");

    // Twenty domains, two messages each, behind one MX host of a site
    // that allows one connection.
    let n = 2 * DOMAINS;
    for i in 0..n {
        let rcpt = format!("r{i}@d{}.example", i % DOMAINS);
        drop_file(&sb.pickup(), &format!("m{i}"), &message(i, &rcpt));
    }
    let log_path_wait = |d: &Daemon| count_lines(&d.log(), &["status=sent"]) >= n;
    wait_until(
        "every message delivered and logged",
        Duration::from_secs(60),
        || sink.stats().messages >= n as u64 && log_path_wait(&d),
    );
    let stats = sink.stats();
    assert!(
        stats.max_concurrent_connections <= 1,
        "the site's limit held: {} at once",
        stats.max_concurrent_connections
    );
    assert!(
        stats.connections <= 3,
        "{DOMAINS} domains shared the site's connection: {} connections for {n} messages \
         (one per domain without reuse across them)",
        stats.connections
    );
    assert!(stats.tls_sessions >= 1, "the connection used STARTTLS");
    let log = d.log();
    for i in 0..n {
        let rcpt = format!("r{i}@d{}.example", i % DOMAINS);
        assert_eq!(relays(&log, &rcpt), ["mx1.gsite.test"], "{rcpt}");
    }

    // The cached connection (to mx1, unverified TLS) is not for a domain
    // whose MX host is mx2, nor for one that asks for verified TLS.
    let before = sink.stats().connections;
    drop_file(&sb.pickup(), "other", &message(100, "r@other.example"));
    drop_file(&sb.pickup(), "verify", &message(101, "r@v.example"));
    wait_until(
        "other.example delivered, v.example deferred",
        Duration::from_secs(30),
        || {
            let log = d.log();
            count_lines(&log, &["to=<r@other.example>", "status=sent"]) == 1
                && count_lines(&log, &["to=<r@v.example>", "status=deferred"]) >= 1
        },
    );
    let log = d.log();
    assert_eq!(
        relays(&log, "r@other.example"),
        ["mx2.gsite.test"],
        "other.example went to its own MX host"
    );
    assert_eq!(
        count_lines(&log, &["to=<r@v.example>", "status=sent"]),
        0,
        "v.example's mail never went over the unverified connection"
    );
    assert!(
        sink.stats().connections > before,
        "other.example opened a connection of its own"
    );
    assert_eq!(sink.stats().messages, n as u64 + 1);
    d.stop();
}

/// A destination found dead (its MX host refuses every connection, at a
/// window of one) takes the other domains of its site behind the same
/// hosts with it: their mail is deferred at once ("delivery temporarily
/// suspended"), without a connection of their own; a domain of the site
/// with another MX host still tries for itself.
#[test]
fn a_dead_site_defers_its_other_domains_behind_the_same_hosts() {
    let zone = Zone::new()
        .mx("a.example", 10, "mx1.gsite.test")
        .mx("b.example", 10, "mx1.gsite.test")
        .mx("other.example", 10, "mx2.gsite.test")
        .a("mx1.gsite.test", Ipv4Addr::LOCALHOST)
        .a("mx2.gsite.test", Ipv4Addr::LOCALHOST);
    let dns = DnsServer::start(zone);
    // Every connection but the one the test holds is greeted with 421 (a
    // site that is down).
    let sink = sink::start(SinkConfig {
        max_connections: Some(1),
        ..SinkConfig::default()
    })
    .expect("sink");
    let mut held = std::net::TcpStream::connect(sink.local_addr).expect("hold the one slot");
    let mut greeting = [0u8; 3];
    std::io::Read::read_exact(&mut held, &mut greeting).expect("greeting");
    assert_eq!(&greeting, b"220");
    let rules_dir = tempfile::tempdir().expect("dir");
    let rules = rules_dir.path().join("shaping.toml");
    fs::write(
        &rules,
        "[[site]]\nname = \"gsite\"\nmx = [\"*.gsite.test\"]\ninitial_connections = 1\n",
    )
    .expect("write rules");
    let sb = Sandbox::with(Settings {
        shards: 1,
        dns_servers: vec![dns.addr.to_string()],
        extra: format!(
            "smtp_port = {}\nsmtp_mta_sts = false\nminimal_backoff_time = 600\n\
             maximal_backoff_time = 1200\ninitial_destination_concurrency = 1\n\
             shaping_file = {rules:?}\n",
            sink.local_addr.port()
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon("epoll");
    drop_file(&sb.pickup(), "a", &message(0, "r@a.example"));
    d.wait_for_log("destination a.example");
    d.wait_for_log("marked dead");
    let before = sink.stats().connections;
    assert!(before >= 2, "a.example tried");
    for i in 1..=3 {
        drop_file(
            &sb.pickup(),
            &format!("b{i}"),
            &message(i, &format!("r{i}@b.example")),
        );
    }
    drop_file(&sb.pickup(), "other", &message(9, "r@other.example"));
    wait_until(
        "b.example and other.example deferred",
        Duration::from_secs(30),
        || {
            let log = d.log();
            count_lines(&log, &["@b.example>", "status=deferred"]) == 3
                && count_lines(&log, &["to=<r@other.example>", "status=deferred"]) == 1
        },
    );
    let log = d.log();
    assert_eq!(
        count_lines(
            &log,
            &[
                "@b.example>",
                "status=deferred",
                "delivery temporarily suspended"
            ]
        ),
        3,
        "b.example's mail waits with the site:\n{log}"
    );
    assert_eq!(
        count_lines(
            &log,
            &["to=<r@other.example>", "delivery temporarily suspended"]
        ),
        0,
        "other.example's hosts are not the dead ones:\n{log}"
    );
    assert_eq!(
        sink.stats().connections,
        before + 1,
        "only other.example connected after the site died"
    );
    assert_eq!(sb.queue_list().len(), 5, "nothing lost or bounced");
    d.stop();
    drop(held);
}

/// Mail arriving a message at a time from concurrent submitters (as from
/// eight `sendmail` processes) to one destination over two shards: a job
/// goes to a worker lingering on its open connection, not to a new worker
/// with a new connection, and a shard's own refused slot does not make it
/// close its idle connections. Before, one connection was opened per two
/// or three messages.
#[test]
fn concurrent_submissions_to_one_destination_reuse_connections() {
    let sink = sink::start(SinkConfig::default()).expect("sink");
    let sb = Sandbox::with(Settings {
        shards: 2,
        extra: format!(
            "relayhost = \"[127.0.0.1]:{}\"\nsmtp_connection_cache_time_limit = 30\n",
            sink.local_addr.port()
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon("uring");
    const SUBMITTERS: usize = 8;
    const EACH: usize = 30;
    std::thread::scope(|s| {
        for t in 0..SUBMITTERS {
            let sb = &sb;
            s.spawn(move || {
                for i in 0..EACH {
                    let n = t * EACH + i;
                    let msg = format!("To: r{n}@example.net\nSubject: {n}\n\nbody {n}\n");
                    sb.sendmail_ok(&["-t", "-i"], msg.as_bytes());
                }
            });
        }
    });
    let n = SUBMITTERS * EACH;
    wait_until("every message delivered", Duration::from_secs(60), || {
        sink.stats().messages >= n as u64
    });
    let stats = sink.stats();
    // Kept and reused: about as many opened as were ever open at once (a
    // few more if the site's 20 slots filled and one shard gave some up
    // to the other). Before, 55-64 opened for at most 7-8 at once.
    assert!(
        stats.connections <= stats.max_concurrent_connections + 5,
        "{} connections for {n} messages from {SUBMITTERS} submitters, at most {} at \
         once: connections were closed and opened again",
        stats.connections,
        stats.max_concurrent_connections
    );
    // Postfix's `conn_use=N` from a connection's second transaction on:
    // the lines without it are the connections' first transactions.
    wait_until("every delivery logged", Duration::from_secs(30), || {
        count_lines(&d.log(), &["status=sent"]) >= n
    });
    let log = d.log();
    let reused = count_lines(&log, &["status=sent", ", conn_use="]);
    assert_eq!(
        (n - reused) as u64,
        stats.connections,
        "one delivery line without conn_use= per connection"
    );
    let relay = format!(
        "relay=127.0.0.1[127.0.0.1]:{}, conn_use=2, delay=",
        sink.local_addr.port()
    );
    assert!(
        count_lines(&log, &[&relay]) >= 1,
        "conn_use= comes after relay=, as Postfix writes it"
    );
    d.stop();
}
