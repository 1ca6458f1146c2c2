//! DANE (RFC 7672) on delivery, end to end on loopback: the test DNS server
//! (`common::dns`) sets the AD bit for the names a test marks secure and
//! serves TLSA records for the MX host; the receiver is the bundled sink
//! with STARTTLS or a real Postfix smtpd, both with certificates made here
//! with rcgen. `smtp_port` moves delivery to the receiver's port, so the
//! TLSA owner is `_PORT._tcp.mx.dane.test`.
//!
//! Nothing connects outside 127.0.0.0/8; nothing asserts on time.

mod common;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::certs;
use common::dns::{DnsServer, Zone};
use common::postfix::PostfixReceiver;
use common::*;
use hickory_proto::rr::RecordType;
use ringmail::sink::{self, SinkConfig, SinkHandle};

const DEADLINE: Duration = Duration::from_secs(60);
const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;
const DOMAIN: &str = "dane.test";
const MX: &str = "mx.dane.test";

/// The top-level keys of every test: DNSSEC trusted, level `dane`.
const DANE: &str = "smtp_dns_support_level = \"dnssec\"\nsmtp_tls_security_level = \"dane\"\n";

fn sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

/// The DER subjectPublicKeyInfo of a server certificate's key, from rcgen
/// (independent of ringmail's DER walk).
fn spki_of(cert: &certs::ServerCert) -> Vec<u8> {
    rcgen::KeyPair::from_pem(&cert.key_pem())
        .expect("the key parses")
        .public_key_der()
}

/// The zone: `dane.test` MX `mx.dane.test` on 127.0.0.1, TLSA records at
/// `_PORT._tcp.mx.dane.test`, and the AD bit on the MX, the MX host's
/// address and the TLSA answers when `secure`.
fn zone(port: u16, tlsa: &[(u8, u8, u8, Vec<u8>)], secure: bool) -> Zone {
    let owner = format!("_{port}._tcp.{MX}");
    let mut z = Zone::new()
        .mx(DOMAIN, 10, MX)
        .a(MX, LOCAL)
        .mx("sender.test", 10, "mx.sender.test")
        .a("mx.sender.test", LOCAL);
    for (u, s, m, d) in tlsa {
        z = z.tlsa(&owner, *u, *s, *m, d);
    }
    if secure {
        z = z.secure(DOMAIN).secure(MX).secure(&owner);
    }
    z
}

fn sandbox(dns: &DnsServer, port: u16, extra: &str) -> Sandbox {
    Sandbox::with(Settings {
        dns_servers: vec![dns.addr.to_string()],
        extra: format!(
            "smtp_port = {port}\nminimal_backoff_time = 1\nmaximal_backoff_time = 2\n{extra}"
        ),
        ..Settings::default()
    })
}

fn drop_message(sb: &Sandbox, tag: &str, to: &str) {
    fs::create_dir_all(sb.pickup()).expect("mkdir pickup");
    let msg = format!(
        "X-Sender: s@sender.test\nX-Receiver: {to}\nFrom: <s@sender.test>\nTo: {to}\n\
         Subject: dane {tag}\nMessage-ID: <{tag}@test.example>\n\nbody of {tag}\n"
    );
    sb.drop_file(&format!("{tag}.eml"), msg.as_bytes());
}

/// Starts the daemon of `sb` and waits until its shards are up.
fn start(sb: &Sandbox) -> Daemon {
    let mut d = sb.start_daemon_nth("auto", 0);
    d.wait_recovered(2);
    d
}

/// Waits for the `ringmail/smtp` line with `status=WORD` for `to`.
fn wait_status(d: &mut Daemon, log: &Path, to: &str, word: &str) -> String {
    let rcpt = format!("to=<{to}>");
    let status = format!("status={word}");
    let find = || {
        fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("ringmail/smtp[") && l.contains(&rcpt) && l.contains(&status))
            .map(str::to_string)
    };
    d.wait_until(&format!("{to} {status}"), || find().is_some());
    find().unwrap_or_default()
}

/// Starts the daemon of `sb`, drops one message tagged `tag` for `to`,
/// waits for its `status=WORD` line (a deferred message must still be
/// queued), stops the daemon; the line and the daemon's log.
fn send_once(sb: &Sandbox, tag: &str, to: &str, word: &str) -> (String, String) {
    let mut d = start(sb);
    drop_message(sb, tag, to);
    let line = wait_status(&mut d, &log_path(sb), to, word);
    if word == "deferred" {
        let listed = sb.queue_list();
        assert_eq!(listed.len(), 1, "still queued: {listed:?}");
    }
    d.stop();
    (line, d.log())
}

/// The log line part of a TLS session with the MX at `port`: `kind` is
/// `Verified`, `Trusted` or `Untrusted`.
fn established(kind: &str, port: u16) -> String {
    format!("{kind} TLS connection established to {MX}[127.0.0.1]:{port}")
}

fn log_path(sb: &Sandbox) -> PathBuf {
    sb.root().join("daemon-0.log")
}

/// A certificate chain (server certificate for `names`, then its CA) and
/// key as PEM files in `dir`: `chain.pem`, `server.key`.
struct Chain {
    pki: certs::Pki,
    chain_file: PathBuf,
    ca_der: Vec<u8>,
}

fn chain(dir: &Path, names: &[&str]) -> Chain {
    let pki = certs::write_pki(dir, names);
    let chain_file = dir.join("chain.pem");
    fs::write(
        &chain_file,
        format!("{}{}", pki.server.cert_pem(), pki.ca.pem()),
    )
    .expect("chain");
    let ca_der = pki.ca.der().to_vec();
    Chain {
        pki,
        chain_file,
        ca_der,
    }
}

/// The bundled sink on 127.0.0.1 with STARTTLS presenting `chain`'s
/// certificate and CA, writing messages to `dir/dump`.
fn tls_sink(dir: &Path, c: &Chain) -> SinkHandle {
    let config =
        ringmail::rt::tls::server_config(&c.chain_file, &c.pki.key_file).expect("server config");
    plain_sink(dir, Some(config))
}

fn plain_sink(dir: &Path, tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> SinkHandle {
    fs::create_dir_all(dir.join("dump")).expect("mkdir dump");
    sink::start(SinkConfig {
        tls,
        dump_dir: Some(dir.join("dump")),
        ..SinkConfig::default()
    })
    .expect("start the sink")
}

/// DANE-EE(3) SPKI(1) SHA-256(1) matching the server's key: delivered over
/// TLS and logged `Verified`, although the certificate names another host
/// and chains to a CA nobody trusts (DANE-EE checks neither).
#[test]
fn dane_ee_spki_sha256_match_delivers_verified() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), &["not-the-mx.test"]);
    let sink = tls_sink(dir.path(), &c);
    let port = sink.local_addr.port();
    let tlsa = vec![(3, 1, 1, sha256(&spki_of(&c.pki.server)))];
    let dns = DnsServer::start(zone(port, &tlsa, true));
    let sb = sandbox(&dns, port, DANE);
    let (line, log) = send_once(&sb, "ee", "u@dane.test", "sent");
    assert!(
        line.contains(&format!("relay={MX}[127.0.0.1]:{port}")),
        "{line}"
    );
    assert!(
        log.contains(&format!(
            "Verified TLS connection established to {MX}[127.0.0.1]:{port}: TLSv1.3 with cipher TLS_"
        )),
        "{log}"
    );
    assert_eq!(sink.stats().messages, 1);
    // The queries asked for the TLSA records of the MX host.
    let asked = format!("{:?}", dns.queries());
    assert!(asked.contains(&format!("_{port}._tcp.{MX}")), "{asked}");
}

/// TLSA present and authenticated but matching nothing: deferred with a
/// DANE reason (4.7.5), nothing delivered, the mail still queued; never
/// sent in plaintext.
#[test]
fn tlsa_mismatch_defers_and_never_falls_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), &[MX]);
    let sink = tls_sink(dir.path(), &c);
    let port = sink.local_addr.port();
    let other = certs::self_signed(&[MX]);
    let tlsa = vec![
        (3, 1, 1, sha256(&spki_of(&other))),
        (2, 0, 1, sha256(other.cert.der())),
    ];
    let dns = DnsServer::start(zone(port, &tlsa, true));
    let sb = sandbox(&dns, port, DANE);
    let (line, log) = send_once(&sb, "mismatch", "v@dane.test", "deferred");
    assert!(line.contains("dsn=4.7.5"), "{line}");
    assert!(
        line.contains(&format!(
            "DANE: no TLSA record for {MX} matches the server certificate chain"
        )),
        "{line}"
    );
    assert!(!log.contains("status=sent"), "{log}");
    assert!(!log.contains("trying again without TLS"), "{log}");
    assert_eq!(sink.stats().messages, 0, "nothing delivered");
}

/// Without the AD bit the same (mismatching) TLSA records are not used:
/// the level acts as `may`, the mail is delivered over unverified TLS.
#[test]
fn without_ad_bit_dane_acts_as_may() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), &[MX]);
    let sink = tls_sink(dir.path(), &c);
    let port = sink.local_addr.port();
    let tlsa = vec![(3, 1, 1, vec![0xab; 32])];
    let dns = DnsServer::start(zone(port, &tlsa, false));
    let sb = sandbox(&dns, port, DANE);
    let (_, log) = send_once(&sb, "insecure", "w@dane.test", "sent");
    assert!(log.contains(&established("Untrusted", port)), "{log}");
    assert_eq!(sink.stats().messages, 1);
    // The MX answer was not authenticated: no TLSA query at all.
    let asked = format!("{:?}", dns.queries());
    assert!(!asked.contains("_tcp"), "{asked}");
}

/// The zone of [`zone`] with every answer authenticated except the MX
/// RRset: an unsigned domain whose mail host sits in a signed zone (a
/// hosting provider's, say).
fn zone_with_insecure_mx(port: u16, tlsa: &[(u8, u8, u8, Vec<u8>)]) -> Zone {
    zone(port, tlsa, false)
        .secure(MX)
        .secure(&format!("_{port}._tcp.{MX}"))
}

/// An MX RRset without the AD bit, the MX host's address and TLSA records
/// with it (Postfix's `smtp_tls_dane_insecure_mx_policy = dane`, its
/// default at level `dane`): the host's records are used. A matching key
/// delivers, logged `Trusted` (not `Verified`: the MX name itself was not
/// authenticated); a mismatch defers and never falls back to plaintext;
/// with the policy `may` the records are ignored and the mismatching host
/// gets the mail.
#[test]
fn insecure_mx_with_a_signed_mail_host_uses_its_tlsa_records() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), &[MX]);
    let sink = tls_sink(dir.path(), &c);
    let port = sink.local_addr.port();
    let matching = vec![(3, 1, 1, sha256(&spki_of(&c.pki.server)))];
    let dns = DnsServer::start(zone_with_insecure_mx(port, &matching));
    let sb = sandbox(&dns, port, DANE);
    let (_, log) = send_once(&sb, "half", "h@dane.test", "sent");
    assert!(log.contains(&established("Trusted", port)), "{log}");
    assert!(!log.contains("Verified TLS"), "{log}");
    assert_eq!(sink.stats().messages, 1);

    let other = certs::self_signed(&[MX]);
    let mismatch = vec![(3, 1, 1, sha256(&spki_of(&other)))];
    let dns = DnsServer::start(zone_with_insecure_mx(port, &mismatch));
    let sb = sandbox(&dns, port, DANE);
    let (line, _) = send_once(&sb, "half-mismatch", "m@dane.test", "deferred");
    assert!(
        line.contains(&format!(
            "DANE: no TLSA record for {MX} matches the server certificate chain"
        )),
        "{line}"
    );
    assert_eq!(sink.stats().messages, 1, "nothing more delivered");

    let may = format!("{DANE}smtp_tls_dane_insecure_mx_policy = \"may\"\n");
    let sb = sandbox(&dns, port, &may);
    let (_, log) = send_once(&sb, "half-may", "y@dane.test", "sent");
    assert!(log.contains(&established("Untrusted", port)), "{log}");
    assert_eq!(sink.stats().messages, 2);
}

/// A receiver without STARTTLS while usable TLSA records exist: deferred
/// (4.7.4) with DANE's reason, nothing sent in plaintext.
#[test]
fn no_starttls_with_usable_tlsa_defers() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = plain_sink(dir.path(), None);
    let port = sink.local_addr.port();
    let tlsa = vec![(3, 1, 1, vec![0xab; 32])];
    let dns = DnsServer::start(zone(port, &tlsa, true));
    let sb = sandbox(&dns, port, DANE);
    let (line, _) = send_once(&sb, "nostarttls", "x@dane.test", "deferred");
    assert!(line.contains("dsn=4.7.4"), "{line}");
    assert!(
        line.contains(&format!(
            "DANE: _{port}._tcp.{MX} has usable TLSA records, so TLS is required, but was not offered by host {MX}[127.0.0.1]"
        )),
        "{line}"
    );
    assert_eq!(sink.stats().messages, 0);
}

/// A TLSA lookup that fails (SERVFAIL) for a host of an authenticated MX
/// RRset skips the host instead of downgrading: deferred, not sent.
#[test]
fn tlsa_servfail_defers() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), &[MX]);
    let sink = tls_sink(dir.path(), &c);
    let port = sink.local_addr.port();
    let owner = format!("_{port}._tcp.{MX}");
    let dns = DnsServer::start(zone(port, &[], true).servfail_type(&owner, RecordType::TLSA));
    let sb = sandbox(&dns, port, DANE);
    let (line, _) = send_once(&sb, "servfail", "y@dane.test", "deferred");
    assert!(
        line.contains(&format!("DANE: TLSA lookup error for {owner}")),
        "{line}"
    );
    assert_eq!(sink.stats().messages, 0);
}

/// A real Postfix smtpd as the MX of `dane.test`, presenting the
/// certificates of `cert_file` (PEM) with `c`'s key; `None` where Postfix
/// is not installed.
fn postfix_mx(c: &Chain, cert_file: &Path) -> Option<PostfixReceiver> {
    let cert = cert_file.display().to_string();
    let key = c.pki.key_file.display().to_string();
    PostfixReceiver::start_with(
        &[DOMAIN],
        &[
            ("smtpd_tls_cert_file", cert.as_str()),
            ("smtpd_tls_key_file", key.as_str()),
        ],
    )
}

/// A daemon whose DNS serves `tlsa` (authenticated) for `pf`, with one
/// message tagged `tag` for `user@dane.test` dropped in; waits for its
/// `status=WORD` line and returns it with the stopped daemon's log.
fn send_to_postfix(
    pf: &PostfixReceiver,
    tlsa: &[(u8, u8, u8, Vec<u8>)],
    tag: &str,
    word: &str,
) -> (String, String) {
    let port = pf.addr.port();
    let dns = DnsServer::start(zone(port, tlsa, true));
    let sb = sandbox(&dns, port, DANE);
    send_once(&sb, tag, "user@dane.test", word)
}

/// Sends as [`send_to_postfix`] and expects the message `Verified` in the
/// log and in Postfix's Maildir, Postfix having logged the TLS session.
fn delivered_verified(pf: &PostfixReceiver, tlsa: &[(u8, u8, u8, Vec<u8>)], tag: &str) {
    let (_, log) = send_to_postfix(pf, tlsa, tag, "sent");
    let port = pf.addr.port();
    assert!(log.contains(&established("Verified", port)), "{log}");
    let files = pf.wait_for_messages(1, DEADLINE);
    let got: Vec<String> = files
        .iter()
        .map(|f| fs::read_to_string(f).expect("delivered file"))
        .collect();
    assert!(
        got.iter()
            .any(|m| m.contains(&format!("Message-ID: <{tag}@test.example>"))),
        "{got:?}"
    );
    pf.wait_for_log("TLS connection established from", DEADLINE);
}

/// A real Postfix smtpd presenting a chain (server certificate for the MX
/// host, then its CA) and DANE-TA(2) full-certificate SHA-256 for that CA:
/// the chain verifies to the anchor for the MX name, the mail arrives in
/// Postfix's Maildir, and ringmail logs `Verified`.
#[test]
fn dane_ta_with_a_real_postfix_receiver() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), &[MX]);
    let Some(pf) = postfix_mx(&c, &c.chain_file) else {
        return;
    };
    delivered_verified(&pf, &[(2, 0, 1, sha256(&c.ca_der))], "ta");
}

/// A real Postfix as the MX sending only its own certificate (not the
/// CA's), and a DANE-TA(2) SPKI(1) Full(0) record holding the CA's public
/// key: the key is the trust anchor, the chain verifies to it for the MX
/// name, and the mail arrives `Verified`. With the key of another CA of
/// the same name it is deferred and Postfix receives nothing.
#[test]
fn dane_ta_bare_key_with_a_real_postfix_receiver() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), &[MX]);
    let Some(pf) = postfix_mx(&c, &c.pki.cert_file) else {
        return;
    };
    let stranger = certs::test_ca();
    let (line, _) = send_to_postfix(
        &pf,
        &[(2, 1, 0, stranger.public_key_der())],
        "stranger",
        "deferred",
    );
    assert!(line.contains("DANE: TLSA trust anchor"), "{line}");
    assert!(pf.messages().is_empty(), "Postfix got nothing");
    delivered_verified(&pf, &[(2, 1, 0, c.pki.ca.public_key_der())], "bare");
    assert_eq!(pf.messages().len(), 1, "only the second message arrived");
}

/// The same Postfix receiver with a DANE-EE record of another key: the
/// handshake is refused, the mail deferred and still queued, and Postfix
/// received nothing.
#[test]
fn dane_ee_mismatch_against_a_real_postfix_receiver() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), &[MX]);
    let Some(pf) = postfix_mx(&c, &c.chain_file) else {
        return;
    };
    let tlsa = [(3, 0, 1, sha256(&c.ca_der))];
    let (line, _) = send_to_postfix(&pf, &tlsa, "pfmismatch", "deferred");
    assert!(line.contains("dsn=4.7.5"), "{line}");
    assert!(line.contains("DANE: no TLSA record"), "{line}");
    assert!(pf.messages().is_empty(), "Postfix got nothing");
}

/// Level `secure` (no DNSSEC involved; the Postfix MX set-up is shared
/// with the DANE tests) against a real Postfix as the MX of `dane.test`,
/// presenting a certificate for `mx.dane.test` from the test CA: with a
/// `match` that names only another domain besides the next hop the
/// certificate names none of them, the mail is deferred and Postfix gets
/// nothing; with the default names (`nexthop`, `dot-nexthop`) the MX name
/// is below the next hop, and the mail arrives `Verified`.
#[test]
fn secure_against_a_real_postfix_receiver() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), &[MX]);
    let Some(pf) = postfix_mx(&c, &c.chain_file) else {
        return;
    };
    let port = pf.addr.port();
    let dns = DnsServer::start(zone(port, &[], false));
    let ca = format!(
        "smtp_tls_CAfile = {:?}\n",
        c.pki.ca_file.display().to_string()
    );
    let elsewhere = format!(
        "{ca}[[tls_policy]]\ndomain = \"{DOMAIN}\"\nlevel = \"secure\"\n\
         match = [\"nexthop\", \".example.net\"]\n"
    );
    let (line, _) = send_once(
        &sandbox(&dns, port, &elsewhere),
        "pf-secure-elsewhere",
        "user@dane.test",
        "deferred",
    );
    assert!(
        line.contains(&format!(
            "server certificate names none of {DOMAIN}, .example.net (it names {MX})"
        )),
        "{line}"
    );
    assert!(pf.messages().is_empty(), "Postfix got nothing");
    let secure = format!("smtp_tls_security_level = \"secure\"\n{ca}");
    let (_, log) = send_once(
        &sandbox(&dns, port, &secure),
        "pf-secure",
        "user@dane.test",
        "sent",
    );
    assert!(log.contains(&established("Verified", port)), "{log}");
    assert_eq!(pf.wait_for_messages(1, DEADLINE).len(), 1);
    pf.wait_for_log("TLS connection established from", DEADLINE);
}

/// Authenticated TLSA records that are all unusable for SMTP (PKIX-EE)
/// make the level `encrypt`: a receiver without STARTTLS gets nothing and
/// the mail is deferred as under `encrypt` (4.7.4), not sent in plaintext.
#[test]
fn only_unusable_tlsa_records_mean_encrypt() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = plain_sink(dir.path(), None);
    let port = sink.local_addr.port();
    let tlsa = vec![(1, 1, 1, vec![0xab; 32]), (0, 0, 1, vec![0xcd; 32])];
    let dns = DnsServer::start(zone(port, &tlsa, true));
    let sb = sandbox(&dns, port, DANE);
    let (line, _) = send_once(&sb, "unusable", "z@dane.test", "deferred");
    assert!(line.contains("dsn=4.7.4"), "{line}");
    assert!(
        line.contains(&format!(
            "TLS is required, but was not offered by host {MX}[127.0.0.1]"
        )),
        "{line}"
    );
    assert!(!line.contains("DANE:"), "encrypt, not DANE: {line}");
    assert_eq!(sink.stats().messages, 0);
}

/// `dane-only` per destination: without the AD bit the mail is deferred
/// with DANE's reason instead of going out under `may`.
#[test]
fn dane_only_defers_without_dnssec() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), &[MX]);
    let sink = tls_sink(dir.path(), &c);
    let port = sink.local_addr.port();
    let tlsa = vec![(3, 1, 1, sha256(&spki_of(&c.pki.server)))];
    let dns = DnsServer::start(zone(port, &tlsa, false));
    let sb = sandbox(
        &dns,
        port,
        "smtp_dns_support_level = \"dnssec\"\n\
         [[tls_policy]]\ndomain = \"dane.test\"\nlevel = \"dane-only\"\n",
    );
    let (line, _) = send_once(&sb, "daneonly", "q@dane.test", "deferred");
    assert!(
        line.contains(&format!(
            "DANE: TLS level dane-only, but {MX} has no DNSSEC-validated MX RRset"
        )),
        "{line}"
    );
    assert_eq!(sink.stats().messages, 0);
}

/// Without `smtp_dns_support_level = "dnssec"` the AD bit is not trusted:
/// `dane` acts as `may` (with a warning) even with matching-looking
/// records, and the mail goes out over unverified TLS.
#[test]
fn dane_without_dnssec_support_acts_as_may() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), &[MX]);
    let sink = tls_sink(dir.path(), &c);
    let port = sink.local_addr.port();
    let tlsa = vec![(3, 1, 1, vec![0xab; 32])];
    let dns = DnsServer::start(zone(port, &tlsa, true));
    let sb = sandbox(&dns, port, "smtp_tls_security_level = \"dane\"\n");
    let (_, log) = send_once(&sb, "nodnssec", "p@dane.test", "sent");
    assert!(
        log.contains("TLS level dane needs smtp_dns_support_level = dnssec; using may"),
        "{log}"
    );
    assert!(
        log.contains("Untrusted TLS connection established"),
        "{log}"
    );
    assert_eq!(sink.stats().messages, 1);
}

/// An authenticated MX RRset whose host's address records are not
/// authenticated: TLSA records are not looked up (RFC 7672 section 2.2.2),
/// the level acts as `may`, and even mismatching records do not stop the
/// mail.
#[test]
fn insecure_mx_host_address_means_may() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), &[MX]);
    let sink = tls_sink(dir.path(), &c);
    let port = sink.local_addr.port();
    let owner = format!("_{port}._tcp.{MX}");
    let dns = DnsServer::start(
        zone(port, &[(3, 1, 1, vec![0xab; 32])], false)
            .secure(DOMAIN)
            .secure(&owner),
    );
    let sb = sandbox(&dns, port, DANE);
    let (_, log) = send_once(&sb, "insecurehost", "r@dane.test", "sent");
    assert!(log.contains(&established("Untrusted", port)), "{log}");
    let asked = format!("{:?}", dns.queries());
    assert!(!asked.contains("_tcp"), "{asked}");
    assert_eq!(sink.stats().messages, 1);
}

/// An MX host that is an alias (CNAME, all answers authenticated): its
/// TLSA records are looked up at the name the alias leads to first
/// (RFC 7672 section 2.2.2), and a DANE-EE record there is honoured.
#[test]
fn tlsa_at_the_cname_target_of_an_mx_host() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = chain(dir.path(), &["real.dane.test"]);
    let sink = tls_sink(dir.path(), &c);
    let port = sink.local_addr.port();
    let real = "real.dane.test";
    let owner = format!("_{port}._tcp.{real}");
    let dns = DnsServer::start(
        Zone::new()
            .mx(DOMAIN, 10, MX)
            .cname(MX, real)
            .a(real, LOCAL)
            .tlsa(&owner, 3, 1, 1, &sha256(&spki_of(&c.pki.server)))
            .mx("sender.test", 10, "mx.sender.test")
            .a("mx.sender.test", LOCAL)
            .secure(DOMAIN)
            .secure(MX)
            .secure(&owner),
    );
    let sb = sandbox(&dns, port, DANE);
    let (_, log) = send_once(&sb, "cname", "c@dane.test", "sent");
    assert!(log.contains(&established("Verified", port)), "{log}");
    let asked = format!("{:?}", dns.queries());
    assert!(asked.contains(&owner), "{asked}");
    assert_eq!(sink.stats().messages, 1);
}

/// A small HTTPS server on 127.0.0.1 answering every request with `body`
/// (an MTA-STS policy) until dropped; counts the requests.
struct PolicyServer {
    port: u16,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PolicyServer {
    fn start(config: std::sync::Arc<rustls::ServerConfig>, body: String) -> PolicyServer {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (served.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((tcp, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = tcp.set_nonblocking(false);
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let conn = rustls::ServerConnection::new(config.clone()).expect("server");
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                s.fetch_add(1, Ordering::SeqCst);
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        PolicyServer { port, served, stop }
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// DANE and an `enforce` MTA-STS policy for the same destination: DANE
/// decides for the host with usable TLSA records (RFC 8461 section 2), so
/// a certificate no CA vouches for, matched by DANE-EE, gets the mail
/// (MTA-STS alone would refuse it), logged `Verified`.
#[test]
fn dane_wins_over_an_mta_sts_enforce_policy() {
    let dir = tempfile::tempdir().expect("tmp");
    fs::create_dir_all(dir.path().join("mx")).expect("mkdir");
    fs::create_dir_all(dir.path().join("sts")).expect("mkdir");
    // The MX's chain comes from a CA the daemon does not trust.
    let c = chain(&dir.path().join("mx"), &["not-the-mx.test"]);
    let sink = tls_sink(dir.path(), &c);
    let port = sink.local_addr.port();
    // The policy server's certificate comes from a CA it does trust.
    let sts_ca = certs::test_ca();
    let ca_file = sts_ca.write_pem(&dir.path().join("sts"));
    let policy = format!("version: STSv1\r\nmode: enforce\r\nmx: {MX}\r\nmax_age: 86400\r\n");
    let server = PolicyServer::start(
        sts_ca.server_cert(&["mta-sts.dane.test"]).server_config(),
        policy,
    );
    let tlsa = vec![(3, 1, 1, sha256(&spki_of(&c.pki.server)))];
    let dns = DnsServer::start(
        zone(port, &tlsa, true)
            .txt("_mta-sts.dane.test", "v=STSv1; id=1;")
            .a("mta-sts.dane.test", LOCAL),
    );
    let sb = sandbox(
        &dns,
        port,
        &format!(
            "{DANE}smtp_mta_sts_port = {}\nsmtp_tls_CAfile = {:?}\n",
            server.port,
            ca_file.display().to_string()
        ),
    );
    let (_, log) = send_once(&sb, "stsdane", "s@dane.test", "sent");
    assert!(log.contains(&established("Verified", port)), "{log}");
    assert!(
        server.served.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the MTA-STS policy was fetched"
    );
    assert_eq!(sink.stats().messages, 1);
}
