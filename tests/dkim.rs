//! DKIM signing (issue 15), end to end with the real daemon and the bundled
//! sink on loopback, every signature checked by independent verifiers:
//! Python's dkimpy (its DNS lookups answered from the test's records) and
//! mail-auth's verifier asking the loopback DNS server.
//!
//! - ordinary mail is dual-signed (RSA-2048 and Ed25519) with relaxed and
//!   with simple canonicalization: folded headers, 8-bit UTF-8 bodies, long
//!   lines, lines that begin with a dot, a missing final newline;
//! - the signature is made once, at cleanup: after a deferral the bytes
//!   delivered are the bytes queued;
//! - campaign mail is signed per recipient after rendering;
//! - mail from a domain without a key is not signed;
//! - a key file others may read stops the start with the fix;
//! - SIGHUP puts a new key in use.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::dns::{DnsServer, Zone};
use common::*;
use ringmail::sink::{self, Faults, SinkConfig, SinkHandle};

/// dkimpy, verifying every DKIM-Signature of each file given: prints
/// `PATH COUNT ok|bad RESULTS` per file. Records come as JSON in argv[1].
const VERIFY_PY: &str = r#"
import json, sys
import dkim
records = json.loads(sys.argv[1])
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    value = records.get(name.rstrip('.').lower())
    return value.encode() if value else None
for path in sys.argv[2:]:
    msg = open(path, 'rb').read()
    d = dkim.DKIM(msg)
    count = sum(1 for h in d.headers if h[0].lower() == b'dkim-signature')
    results = []
    for i in range(count):
        try:
            results.append(bool(d.verify(idx=i, dnsfunc=dnsfunc)))
        except dkim.DKIMException as e:
            results.append(str(e))
    results = [r is True for r in results] if False else results
    ok = count > 0 and all(r is True for r in results)
    print(path, count, 'ok' if ok else 'bad', results)
"#;

fn python_has_dkimpy() -> bool {
    Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs dkimpy over `files`; returns each file's (signature count, all ok).
fn dkimpy(records: &BTreeMap<String, String>, files: &[PathBuf]) -> Vec<(usize, bool, String)> {
    assert!(
        python_has_dkimpy(),
        "python3 with dkimpy and PyNaCl is needed (tools/test.sh installs them)"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(VERIFY_PY)
        .arg(serde_json::to_string(records).expect("json"))
        .args(files)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "dkimpy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            let _path = w.next();
            let count = w.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            let ok = w.next() == Some("ok");
            (count, ok, l.to_string())
        })
        .collect()
}

/// A key made by `ringmail dkim keygen`: its file and its TXT record.
struct Key {
    file: PathBuf,
    record: String,
}

fn keygen(dir: &Path, domain: &str, selector: &str, algorithm: &str) -> Key {
    let file = dir.join(format!("{selector}.{domain}.pem"));
    let out = Command::new(BIN)
        .args(["dkim", "keygen", "--domain", domain, "--selector", selector])
        .args(["--algorithm", algorithm, "--out"])
        .arg(&file)
        .output()
        .expect("dkim keygen");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The zone line: NAME. IN TXT ( "..." "..." )
    let line = text
        .lines()
        .find(|l| l.contains("._domainkey.") && l.contains("IN TXT"))
        .unwrap_or_else(|| panic!("no TXT record printed: {text}"));
    assert!(line.starts_with(&format!("{selector}._domainkey.{domain}. IN TXT")));
    let record: String = line
        .split('"')
        .skip(1)
        .step_by(2)
        .collect::<Vec<_>>()
        .concat();
    assert!(record.starts_with("v=DKIM1; k="), "{record}");
    Key { file, record }
}

fn dkim_entry(domain: &str, selector: &str, key: &Key, extra: &str) -> String {
    format!(
        "[[dkim]]\ndomain = \"{domain}\"\nselector = \"{selector}\"\nkey_file = {:?}\n{extra}\n",
        key.file.display().to_string()
    )
}

fn sink_into(dump: &Path, faults: Faults, listen: Option<SocketAddr>) -> SinkHandle {
    let mut cfg = SinkConfig {
        dump_dir: Some(dump.to_path_buf()),
        faults,
        ..SinkConfig::default()
    };
    if let Some(a) = listen {
        cfg.listen = a;
    }
    sink::start(cfg).expect("sink")
}

fn sandbox(relay: u16, dkim: &str) -> Sandbox {
    Sandbox::with(Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{relay}\"\nminimal_backoff_time = 1\nmaximal_backoff_time = 2\n\
             smtpd_passwd_file = \"/nonexistent/ringmail-passwd\"\n{dkim}"
        ),
        ..Settings::default()
    })
}

/// One Ed25519 key for `domain` (selector `ed2026`) with its record for
/// dkimpy, an accepting sink that dumps what it receives, and a sandbox
/// that relays to it with the key configured.
struct OneKey {
    /// Where the key file is (and room for scratch files).
    keys: tempfile::TempDir,
    records: BTreeMap<String, String>,
    /// The sink's dump directory.
    dump: tempfile::TempDir,
    _sink: SinkHandle,
    sb: Sandbox,
}

fn one_ed_key(domain: &str) -> OneKey {
    let keys = tempfile::tempdir().expect("dir");
    let ed = keygen(keys.path(), domain, "ed2026", "ed25519");
    let records: BTreeMap<String, String> =
        [(format!("ed2026._domainkey.{domain}"), ed.record.clone())].into();
    let dump = tempfile::tempdir().expect("dir");
    let sink = sink_into(dump.path(), Faults::default(), None);
    let sb = sandbox(
        sink.local_addr.port(),
        &dkim_entry(domain, "ed2026", &ed, ""),
    );
    OneKey {
        keys,
        records,
        dump,
        _sink: sink,
        sb,
    }
}

/// The dumped messages (`N.eml` with a complete `N.json`), by file.
fn dumped(dump: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir(dump) else {
        return out;
    };
    for entry in dir {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            let eml = path.with_extension("eml");
            if eml.exists() {
                out.push(eml);
            }
        }
    }
    out.sort();
    out
}

fn wait_dumped(d: &mut Daemon, dump: &Path, n: usize) -> Vec<PathBuf> {
    d.wait_until(&format!("{n} messages delivered"), || {
        dumped(dump).len() >= n
    });
    // Let a message being written finish.
    std::thread::sleep(Duration::from_millis(100));
    dumped(dump)
}

/// The messages that exercise canonicalization: folded headers, 8-bit
/// text, a long line, dot lines, no final newline, trailing blank lines.
fn messages() -> Vec<Vec<u8>> {
    let long = "x".repeat(900);
    vec![
        b"From: News <news@example.com>\nTo: a@example.net\nSubject: plain\n\nhello\n".to_vec(),
        format!(
            "From: =?utf-8?q?N=C3=A9ws?= <news@example.com>\nTo: a@example.net,\n  b@example.net\n\
             Subject: a folded\n\tsubject   with  spaces\nMIME-Version: 1.0\n\
             Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n\
             Grüße aus Köln — ünïcödé\n.a line with a dot\n..two dots\n.\n{long}\n\n\n"
        )
        .into_bytes(),
        b"From: news@example.com\nTo: a@example.net\nSubject: no final newline\n\nlast line"
            .to_vec(),
    ]
}

/// mail-auth's verifier against the loopback DNS server: every signature
/// of `raw` passes.
fn mail_auth_verifies(dns: SocketAddr, raw: &[u8]) -> Vec<String> {
    use mail_auth::hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
    };
    let mut udp = ConnectionConfig::udp();
    udp.port = dns.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = dns.port();
    let ns = NameServerConfig::new(dns.ip(), true, vec![udp, tcp]);
    let auth = mail_auth::MessageAuthenticator::new(
        ResolverConfig::from_name_servers(vec![ns]),
        ResolverOpts::default(),
    )
    .expect("authenticator");
    let msg = mail_auth::AuthenticatedMessage::parse(raw).expect("parse");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let outputs = rt.block_on(auth.verify_dkim(&msg));
    outputs
        .iter()
        .map(|o| format!("{:?}", o.result()))
        .collect()
}

fn zone_for(records: &BTreeMap<String, String>) -> Zone {
    records
        .iter()
        .fold(Zone::new(), |z, (name, value)| z.txt(name, value))
}

fn dual_signed(io: &str, canonicalization: &str) {
    let keys_dir = tempfile::tempdir().expect("dir");
    let rsa = keygen(keys_dir.path(), "example.com", "rsa2026", "rsa");
    let ed = keygen(keys_dir.path(), "example.com", "ed2026", "ed25519");
    let records: BTreeMap<String, String> = [
        (
            "rsa2026._domainkey.example.com".to_string(),
            rsa.record.clone(),
        ),
        (
            "ed2026._domainkey.example.com".to_string(),
            ed.record.clone(),
        ),
    ]
    .into();
    let dns = DnsServer::start(zone_for(&records));
    let dump_dir = tempfile::tempdir().expect("dir");
    let sink = sink_into(dump_dir.path(), Faults::default(), None);
    let c = format!("canonicalization = \"{canonicalization}\"");
    let sb = sandbox(
        sink.local_addr.port(),
        &(dkim_entry("example.com", "rsa2026", &rsa, &c)
            + &dkim_entry("example.com", "ed2026", &ed, &c)),
    );
    let mut d = sb.start_daemon(io);
    let msgs = messages();
    for m in &msgs {
        sb.sendmail_ok(&["-t", "-f", "news@example.com"], m);
    }
    // And one through pickup/ (the spool path).
    let mut d2 = b"X-Sender: news@example.com\nX-Receiver: c@example.net\n".to_vec();
    d2.extend_from_slice(&msgs[0]);
    drop_file(&sb.pickup(), "from-pickup", &d2);
    let files = wait_dumped(&mut d, dump_dir.path(), msgs.len() + 1);
    let results = dkimpy(&records, &files);
    assert_eq!(results.len(), files.len());
    for (count, ok, line) in &results {
        assert_eq!(*count, 2, "dual signed: {line}");
        assert!(*ok, "dkimpy verifies both signatures: {line}");
    }
    for f in &files {
        let raw = fs::read(f).expect("eml");
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains(&format!("c={canonicalization}")), "{text}");
        let verdicts = mail_auth_verifies(dns.addr, &raw);
        assert_eq!(
            verdicts,
            vec!["Pass", "Pass"],
            "mail-auth on {}",
            f.display()
        );
    }
    let log = d.log();
    for sel in ["rsa2026", "ed2026"] {
        assert_eq!(
            count_lines(
                &log,
                &[&format!(
                    "DKIM-Signature field added (s={sel}, d=example.com)"
                )]
            ),
            msgs.len() + 1,
            "one log line per signature: {log}"
        );
    }
    d.stop();
}

#[test]
fn ordinary_mail_is_dual_signed_relaxed_uring() {
    dual_signed("uring", "relaxed/relaxed");
}

#[test]
fn ordinary_mail_is_dual_signed_relaxed_epoll() {
    dual_signed("epoll", "relaxed/relaxed");
}

#[test]
fn ordinary_mail_is_dual_signed_simple() {
    dual_signed("uring", "simple/simple");
}

/// A tampered message fails: the verifiers are not rubber stamps.
#[test]
fn a_changed_body_fails_verification() {
    let k = one_ed_key("example.com");
    let mut d = k.sb.start_daemon("uring");
    k.sb.sendmail_ok(&["-t"], &messages()[0]);
    let files = wait_dumped(&mut d, k.dump.path(), 1);
    d.stop();
    let good = dkimpy(&k.records, &files);
    assert!(good[0].1, "{}", good[0].2);
    let raw = fs::read(&files[0]).expect("eml");
    let tampered = k.keys.path().join("tampered.eml");
    let text = String::from_utf8_lossy(&raw).replace("hello", "HELLO");
    fs::write(&tampered, text).expect("write");
    let bad = dkimpy(&k.records, &[tampered]);
    assert!(!bad[0].1, "a changed body must not verify: {}", bad[0].2);
}

/// Signed once at cleanup: the first attempt is deferred, the retry sends
/// exactly the bytes queued (signature included), which still verify.
#[test]
fn a_retry_resends_the_bytes_signed_at_cleanup() {
    let keys_dir = tempfile::tempdir().expect("dir");
    let ed = keygen(keys_dir.path(), "example.com", "ed2026", "ed25519");
    let records: BTreeMap<String, String> = [(
        "ed2026._domainkey.example.com".to_string(),
        ed.record.clone(),
    )]
    .into();
    let dump_dir = tempfile::tempdir().expect("dir");
    let refusing = sink_into(
        dump_dir.path(),
        Faults {
            data_tempfail: 1.0,
            ..Faults::default()
        },
        None,
    );
    let addr = refusing.local_addr;
    let sb = sandbox(addr.port(), &dkim_entry("example.com", "ed2026", &ed, ""));
    let mut d = sb.start_daemon("uring");
    sb.sendmail_ok(&["-t"], &messages()[1]);
    d.wait_for_log("status=deferred");
    let queued = sb
        .segment_messages()
        .into_iter()
        .find(|r| r.recipients.iter().any(|a| a == "a@example.net"))
        .expect("queued record");
    assert!(
        queued.wire.starts_with(b"DKIM-Signature: "),
        "the queued form carries the signature"
    );
    drop(refusing);
    let accepting = sink_into(dump_dir.path(), Faults::default(), Some(addr));
    let _ = sb.flush();
    let files = wait_dumped(&mut d, dump_dir.path(), 1);
    d.stop();
    drop(accepting);
    let delivered = fs::read(&files[0]).expect("eml");
    // The queue holds the dot-stuffed form; undo it to compare.
    let unstuffed: Vec<u8> = ringmail::sign::signer::unstuffed(&queued.wire).concat();
    assert_eq!(
        delivered, unstuffed,
        "the retry sent the bytes signed at cleanup"
    );
    let r = dkimpy(&records, &files);
    assert!(r[0].1, "{}", r[0].2);
}

/// Mail from a domain without a key goes out unsigned.
#[test]
fn mail_from_a_domain_without_a_key_is_not_signed() {
    let keys_dir = tempfile::tempdir().expect("dir");
    let ed = keygen(keys_dir.path(), "example.com", "ed2026", "ed25519");
    let dump_dir = tempfile::tempdir().expect("dir");
    let sink = sink_into(dump_dir.path(), Faults::default(), None);
    let sb = sandbox(
        sink.local_addr.port(),
        &dkim_entry("example.com", "ed2026", &ed, ""),
    );
    let mut d = sb.start_daemon("epoll");
    sb.sendmail_ok(
        &["-t"],
        b"From: someone@other.example\nTo: a@example.net\nSubject: s\n\nx\n",
    );
    sb.sendmail_ok(
        &["-t"],
        b"From: someone@news.example.com\nTo: b@example.net\nSubject: s\n\nx\n",
    );
    let files = wait_dumped(&mut d, dump_dir.path(), 2);
    d.stop();
    let mut signed = 0;
    for f in &files {
        let raw = fs::read(f).expect("eml");
        let text = String::from_utf8_lossy(&raw);
        if text.contains("DKIM-Signature:") {
            signed += 1;
            assert!(
                text.contains("news.example.com"),
                "the subdomain is signed: {text}"
            );
        } else {
            assert!(text.contains("other.example"), "{text}");
        }
    }
    assert_eq!(signed, 1);
}

/// A key file that others may read stops the start and says how to fix it.
#[test]
fn a_key_file_others_can_read_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let keys_dir = tempfile::tempdir().expect("dir");
    let ed = keygen(keys_dir.path(), "example.com", "ed2026", "ed25519");
    fs::set_permissions(&ed.file, fs::Permissions::from_mode(0o644)).expect("chmod");
    let sb = sandbox(9, &dkim_entry("example.com", "ed2026", &ed, ""));
    let err = sb
        .try_start_daemon("uring", 0)
        .err()
        .expect("the daemon must not start");
    assert!(!err.0.success());
    assert!(err.1.contains("chmod 600"), "{}", err.1);
    assert!(err.1.contains(&ed.file.display().to_string()), "{}", err.1);
}

/// SIGHUP re-reads the configuration's keys: mail after it is signed with
/// the new selector.
#[test]
fn sighup_puts_a_new_key_in_use() {
    let keys_dir = tempfile::tempdir().expect("dir");
    let old = keygen(keys_dir.path(), "example.com", "old", "ed25519");
    let new = keygen(keys_dir.path(), "example.com", "new", "ed25519");
    let records: BTreeMap<String, String> = [
        ("old._domainkey.example.com".to_string(), old.record.clone()),
        ("new._domainkey.example.com".to_string(), new.record.clone()),
    ]
    .into();
    let dump_dir = tempfile::tempdir().expect("dir");
    let sink = sink_into(dump_dir.path(), Faults::default(), None);
    let port = sink.local_addr.port();
    let sb = sandbox(port, &dkim_entry("example.com", "old", &old, ""));
    let mut d = sb.start_daemon("uring");
    sb.sendmail_ok(&["-t"], &messages()[0]);
    wait_dumped(&mut d, dump_dir.path(), 1);
    fs::write(
        &sb.config,
        fs::read_to_string(&sb.config)
            .expect("config")
            .replace("selector = \"old\"", "selector = \"new\"")
            .replace(
                &old.file.display().to_string(),
                &new.file.display().to_string(),
            ),
    )
    .expect("rewrite config");
    let status = Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    d.wait_for_log("reload: DKIM signing with 1 keys");
    sb.sendmail_ok(&["-t"], &messages()[2]);
    let files = wait_dumped(&mut d, dump_dir.path(), 2);
    d.assert_running();
    d.stop();
    let selectors: Vec<String> = files
        .iter()
        .map(|f| {
            let text = String::from_utf8_lossy(&fs::read(f).expect("eml"))
                .replace(['\r', '\n', '\t', ' '], "");
            text.split(';')
                .find_map(|t| t.strip_prefix("s="))
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let mut sorted = selectors.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["new", "old"], "{selectors:?}");
    for (_, ok, line) in dkimpy(&records, &files) {
        assert!(ok, "{line}");
    }
}

const TEMPLATE: &str = "From: \"Example News\" <news@example.com>\n\
To: <{{ email }}>\n\
Subject: Hello {{ name }}\n\
\n\
Dear {{ name }},\n\
.this line begins with a dot\n\
Unsubscribe: {{ unsubscribe_url }}\n";

/// Campaign mail: each recipient's message is signed after rendering, so
/// each has its own body hash, and each verifies.
#[test]
fn campaign_mail_is_signed_per_recipient() {
    let keys_dir = tempfile::tempdir().expect("dir");
    let ed = keygen(keys_dir.path(), "example.com", "ed2026", "ed25519");
    let rsa = keygen(keys_dir.path(), "example.com", "rsa2026", "rsa");
    let records: BTreeMap<String, String> = [
        (
            "ed2026._domainkey.example.com".to_string(),
            ed.record.clone(),
        ),
        (
            "rsa2026._domainkey.example.com".to_string(),
            rsa.record.clone(),
        ),
    ]
    .into();
    let dump_dir = tempfile::tempdir().expect("dir");
    let sink = sink_into(dump_dir.path(), Faults::default(), None);
    let sb = sandbox(
        sink.local_addr.port(),
        &(dkim_entry("example.com", "ed2026", &ed, "")
            + &dkim_entry("example.com", "rsa2026", &rsa, "")),
    );
    let template = sb.root().join("t.eml");
    fs::write(&template, TEMPLATE).expect("template");
    let list = sb.root().join("list.csv");
    fs::write(
        &list,
        "email,name\nr1@example.net,Änne\nr2@example.net,Bob\nr3@example.net,Chloé\n",
    )
    .expect("list");
    let mut d = sb.start_daemon("uring");
    d.wait_for_log("accepting campaigns on");
    let out = Command::new(BIN)
        .args(["campaign", "send", "--template"])
        .arg(&template)
        .arg("--recipients")
        .arg(&list)
        .args(["--unsubscribe", "https://news.example.com", "--config"])
        .arg(&sb.config)
        .output()
        .expect("campaign send");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let files = wait_dumped(&mut d, dump_dir.path(), 3);
    d.stop();
    let results = dkimpy(&records, &files);
    for (count, ok, line) in &results {
        assert_eq!(*count, 2, "{line}");
        assert!(*ok, "{line}");
    }
    let body_hashes: std::collections::BTreeSet<String> = files
        .iter()
        .map(|f| {
            let text = String::from_utf8_lossy(&fs::read(f).expect("eml"))
                .replace(['\r', '\n', '\t', ' '], "");
            text.split(';')
                .find_map(|t| t.strip_prefix("bh="))
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(body_hashes.len(), 3, "one body hash per recipient");
    for f in &files {
        let text = String::from_utf8_lossy(&fs::read(f).expect("eml")).to_ascii_lowercase();
        let h = text
            .split("h=")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .unwrap_or("")
            .replace(['\r', '\n', '\t', ' '], "");
        assert!(h.contains("list-unsubscribe-post"), "{h}");
    }
}

/// Notices the shards write are signed like other mail: a success notice
/// (`sendmail -N success`) from `MAILER-DAEMON@mx.example.org` carries a
/// signature by the example.org key that dkimpy verifies.
#[test]
fn delivery_notices_are_signed() {
    let k = one_ed_key("example.org");
    let mut d = k.sb.start_daemon("uring");
    k.sb.sendmail_ok(
        &[
            "-N",
            "success",
            "-f",
            "someone@example.com",
            "a@example.net",
        ],
        b"From: someone@example.com\nTo: a@example.net\nSubject: s\n\nx\n",
    );
    let files = wait_dumped(&mut d, k.dump.path(), 2);
    d.stop();
    let notices: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| String::from_utf8_lossy(&fs::read(f).expect("eml")).contains("MAILER-DAEMON@"))
        .collect();
    assert_eq!(notices.len(), 1, "one success notice");
    let notice = String::from_utf8_lossy(&fs::read(&notices[0]).expect("eml")).into_owned();
    assert!(notice.starts_with("DKIM-Signature: "), "{notice}");
    let r = dkimpy(&k.records, &notices);
    assert_eq!(r[0].0, 1, "{}", r[0].2);
    assert!(r[0].1, "{}", r[0].2);
}
