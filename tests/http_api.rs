//! The daemon's HTTP server (`[http]`, issue 14), end to end with the real
//! daemon, the bundled sink and curl on loopback:
//!
//! - a campaign sent as JSON is answered 202 only once it is queued, is
//!   delivered, and its counts come back over `GET`; pause, resume and
//!   cancel answer with the states;
//! - wrong or missing tokens (401), a token without the scope (403), bad
//!   JSON (400), an oversized body (413), a refused template (422), an
//!   unknown campaign (404);
//! - one message through `POST /api/v1/messages` reaches the sink;
//! - RFC 8058 one-click: the List-Unsubscribe URL of a delivered message,
//!   POSTed with curl, puts the address on the suppression list; a
//!   forged token is 404;
//! - a browser (headless Chromium, `tests/browser/cdp.py`): loading the
//!   page unsubscribes nobody, clicking its button does;
//! - an `[http] listen` address in use stops the daemon's start.
//!
//! The HTTP server does not depend on the shards' I/O backend: these run
//! on epoll only.

mod common;

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use ringmail::sink::{self, Latency, SinkConfig, SinkHandle};

const IO: &str = "epoll";

const SENDER: &str = "sender-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";

const TEMPLATE: &str = "From: \"Example News\" <news@example.com>\n\
To: \"{{ name }}\" <{{ email }}>\n\
Subject: Hello {{ name }}\n\
\n\
Hello {{ name }}!\n\
Unsubscribe: {{ unsubscribe_url }}\n";

/// A free loopback port (free when this returns; the daemon binds it
/// soon after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn sink_with(dump: &Path, latency: Latency) -> SinkHandle {
    sink::start(SinkConfig {
        dump_dir: Some(dump.to_path_buf()),
        latency,
        ..SinkConfig::default()
    })
    .expect("sink")
}

/// A sandbox relaying to `relay`, with the HTTP server on `port`.
fn sandbox(relay: u16, port: u16, max_body: u64) -> Sandbox {
    Sandbox::with(Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{relay}\"\nminimal_backoff_time = 1\nmaximal_backoff_time = 2\n\
             smtpd_passwd_file = \"/nonexistent/ringmail-passwd\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\nmax_body = {max_body}\n\
             tokens = [\n\
               {{ token = \"{SENDER}\", scopes = [\"inject\", \"read\"] }},\n\
               {{ token = \"{ADMIN}\", scopes = [\"admin\", \"read\"] }},\n\
               {{ token = \"{READER}\", scopes = [\"read\"] }},\n\
             ]\n\
             [events]\n"
        ),
        ..Settings::default()
    })
}

/// A daemon with its HTTP server up, and the server's base URL.
fn start(sb: &Sandbox, port: u16) -> (Daemon, String) {
    let mut d = sb.start_daemon(IO);
    d.wait_for_log(&format!("listening on http://127.0.0.1:{port}"));
    d.wait_for_log("accepting campaigns on");
    (d, format!("http://127.0.0.1:{port}"))
}

/// What curl got: the status and the body.
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Runs curl with `args`; the status is written after the body.
fn curl(args: &[&str]) -> Reply {
    let out: Output = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Reply {
        status: code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl {args:?}: no status: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        }),
        body: body.to_string(),
    }
}

/// `curl` with a bearer token; `body` (a file) POSTed as JSON when given.
fn api(method: &str, url: &str, token: &str, body: Option<&Path>) -> Reply {
    let auth = format!("Authorization: Bearer {token}");
    let mut args = vec!["-X", method, "-H", &auth];
    let data;
    if let Some(p) = body {
        data = format!("@{}", p.display());
        args.extend([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &data,
        ]);
    }
    args.push(url);
    curl(&args)
}

/// Writes `value` as a JSON file in `dir`.
fn json_file(dir: &Path, name: &str, value: &serde_json::Value) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, value.to_string()).expect("write json");
    p
}

/// A campaign request for `n` recipients `u{i}@example.net`.
fn campaign_body(n: usize) -> serde_json::Value {
    let recipients: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({ "email": format!("u{i}@example.net"), "name": format!("Ü {i}") }))
        .collect();
    serde_json::json!({
        "name": "api issue",
        "bounce_domain": "bounce.example.com",
        "unsubscribe": "https://news.example.com",
        "template": TEMPLATE,
        "recipients": recipients,
    })
}

/// The dumped messages: recipient -> message bytes.
fn dumped(dump: &Path) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    let Ok(entries) = fs::read_dir(dump) else {
        return out;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Ok(meta) = serde_json::from_slice::<serde_json::Value>(&fs::read(&path).expect("json"))
        else {
            continue;
        };
        let Ok(eml) = fs::read(path.with_extension("eml")) else {
            continue;
        };
        for r in meta["rcpt_to"].as_array().expect("rcpt_to") {
            out.insert(r.as_str().unwrap_or("").to_string(), eml.clone());
        }
    }
    out
}

/// The https URL in a message's `List-Unsubscribe` field.
fn unsubscribe_url(eml: &[u8]) -> String {
    let text = String::from_utf8_lossy(eml);
    let field = text
        .split("\r\n")
        .find(|l| l.starts_with("List-Unsubscribe:"))
        .unwrap_or_else(|| panic!("no List-Unsubscribe in {text}"));
    let start = field.find("<https://").expect("an https URL") + 1;
    let end = start + field[start..].find('>').expect("closing >");
    field[start..end].to_string()
}

/// `ringmail suppress list --json`: address -> entry.
fn suppressed(sb: &Sandbox) -> HashMap<String, serde_json::Value> {
    let out = sb
        .cmd()
        .args(["suppress", "list", "--json", "--config"])
        .arg(&sb.config)
        .output()
        .expect("suppress list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            (v["email"].as_str().unwrap_or("").to_string(), v)
        })
        .collect()
}

/// Sends a campaign of `n` and waits until all of it is delivered; its ID.
fn send_and_deliver(sb: &Sandbox, d: &mut Daemon, base: &str, sink: &SinkHandle, n: usize) -> u64 {
    let body = json_file(sb.root(), "campaign.json", &campaign_body(n));
    let r = api(
        "POST",
        &format!("{base}/api/v1/campaigns"),
        SENDER,
        Some(&body),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["id"].as_u64().expect("id");
    let stats = sink.counters();
    d.wait_until("every message at the sink", || {
        stats.snapshot().messages >= n as u64
    });
    id
}

/// 50 recipients inline: 202 with the counts once queued, delivered, and
/// counted over GET; the list shows it; pause, resume and cancel answer
/// with the states and the state is kept.
#[test]
fn campaign_over_http() {
    let work = tempfile::tempdir().expect("dir");
    let dump = work.path().join("dump");
    let sink = sink_with(&dump, Latency::None);
    let port = free_port();
    let sb = sandbox(sink.local_addr.port(), port, 1 << 20);
    let (mut d, base) = start(&sb, port);

    let mut body = campaign_body(50);
    let rows = body["recipients"].as_array_mut().expect("array");
    rows.push(serde_json::json!({ "email": "not an address", "name": "Bad" }));
    rows.push(serde_json::json!({ "email": "U0@example.net", "name": "Dup" }));
    let file = json_file(sb.root(), "c.json", &body);
    let r = api(
        "POST",
        &format!("{base}/api/v1/campaigns"),
        SENDER,
        Some(&file),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (
            v["recipients"].as_u64(),
            v["refused"].as_u64(),
            v["duplicates"].as_u64()
        ),
        (Some(50), Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["state"], "running");
    assert_eq!(v["refused_rows"][0]["line"], 51, "{v}");
    assert_eq!(v["refused_rows"][0]["email"], "not an address");
    let id = v["id"].as_u64().expect("id");

    let show = format!("{base}/api/v1/campaigns/{id}");
    d.wait_until("sent == 50 over GET", || {
        api("GET", &show, READER, None).json()["sent"] == 50
    });
    let s = api("GET", &show, READER, None).json();
    assert_eq!(
        (s["pending"].as_u64(), s["done"].as_bool()),
        (Some(0), Some(true))
    );
    assert_eq!(s["name"], "api issue");
    let got = dumped(&dump);
    assert_eq!(got.len(), 50);
    let m = mail_parser::MessageParser::default()
        .parse(got["u7@example.net"].as_slice())
        .expect("parse");
    assert_eq!(m.subject(), Some("Hello Ü 7"));
    assert!(m.body_text(0).expect("text").contains("Hello Ü 7!"));
    let raw = String::from_utf8_lossy(&got["u7@example.net"]).into_owned();
    assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));

    let list = api("GET", &format!("{base}/api/v1/campaigns"), READER, None);
    assert_eq!(list.status, 200);
    let all = list.json();
    assert_eq!(all["campaigns"][0]["id"].as_u64(), Some(id), "{all}");
    assert_eq!(all["campaigns"][0]["recipients"], 50);

    // Control, on a second campaign (the answers name the states; what
    // the shards do with them is tests/campaign.rs's).
    let second = {
        let file = json_file(sb.root(), "c2.json", &campaign_body(5));
        let r = api(
            "POST",
            &format!("{base}/api/v1/campaigns"),
            SENDER,
            Some(&file),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        r.json()["id"].as_u64().expect("id")
    };
    let op = |what: &str, token: &str| {
        api(
            "POST",
            &format!("{base}/api/v1/campaigns/{second}/{what}"),
            token,
            None,
        )
    };
    let r = op("pause", ADMIN);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.json()["was"].clone(), r.json()["state"].clone()),
        ("running".into(), "paused".into())
    );
    assert_eq!(
        api(
            "GET",
            &format!("{base}/api/v1/campaigns/{second}"),
            READER,
            None
        )
        .json()["state"],
        "paused"
    );
    let r = op("resume", ADMIN);
    assert_eq!(r.json()["state"], "running", "{}", r.body);
    let r = op("cancel", ADMIN);
    assert_eq!(r.json()["state"], "cancelled", "{}", r.body);
    // Cancelled stays cancelled.
    let r = op("resume", ADMIN);
    assert_eq!(
        (r.status, r.json()["state"].clone()),
        (200, "cancelled".into())
    );
    // The sender may not, an unknown operation or campaign is 404.
    assert_eq!(op("pause", SENDER).status, 403);
    assert_eq!(op("stop", ADMIN).status, 404);
    let r = api(
        "POST",
        &format!("{base}/api/v1/campaigns/1/pause"),
        ADMIN,
        None,
    );
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (404, "no campaign 1".into())
    );
    d.stop();
    assert!(
        d.log().contains(&format!(
            "ringmail/campaign[{}]: campaign {second}: cancelled",
            d.pid()
        )),
        "{}",
        d.log()
    );
}

/// Every refusal has its status and a JSON error.
#[test]
fn errors_have_statuses() {
    let work = tempfile::tempdir().expect("dir");
    let sink = sink_with(&work.path().join("dump"), Latency::None);
    let port = free_port();
    let sb = sandbox(sink.local_addr.port(), port, 64 * 1024);
    let (mut d, base) = start(&sb, port);
    let campaigns = format!("{base}/api/v1/campaigns");
    let good = json_file(sb.root(), "good.json", &campaign_body(3));

    // 401: no token, a wrong one; with a WWW-Authenticate header.
    let r = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", good.display()),
        &campaigns,
    ]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "missing or unknown bearer token");
    let r = api("POST", &campaigns, "wrong-token-0123456789", Some(&good));
    assert_eq!(r.status, 401);
    let head = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-D",
        "-",
        &format!("{base}/api/v1/campaigns"),
    ]);
    assert!(
        head.body
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{}",
        head.body
    );
    // 403: a token without the scope.
    let r = api("POST", &campaigns, READER, Some(&good));
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (403, "this token does not have the inject scope".into())
    );
    // 400: bad JSON, with the parser's words.
    let bad = sb.root().join("bad.json");
    fs::write(&bad, "{\"name\": \"x\", \"template\": ").expect("write");
    let r = api("POST", &campaigns, SENDER, Some(&bad));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("bad JSON: EOF while parsing"),
        "{}",
        r.body
    );
    // 413: a body over max_body (64 KiB here), refused before it is read.
    let big = json_file(sb.root(), "big.json", &campaign_body(3000));
    assert!(fs::metadata(&big).expect("big").len() > 64 * 1024);
    let r = api("POST", &campaigns, SENDER, Some(&big));
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["error"], "request body larger than 65536 bytes");
    // 422: a template that does not compile; nothing queued.
    let mut broken = campaign_body(3);
    broken["template"] = "Subject: {{ name \n\nx\n".into();
    let broken = json_file(sb.root(), "broken.json", &broken);
    let r = api("POST", &campaigns, SENDER, Some(&broken));
    assert_eq!(r.status, 422, "{}", r.body);
    // 404: an unknown campaign, a route that does not exist.
    let r = api("GET", &format!("{campaigns}/42"), READER, None);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (404, "no campaign 42".into())
    );
    assert_eq!(
        api("GET", &format!("{campaigns}/x"), READER, None).status,
        404
    );
    assert_eq!(
        api("GET", &format!("{base}/api/v2/campaigns"), READER, None).status,
        404
    );
    // Nothing was accepted.
    let r = api("GET", &campaigns, READER, None);
    assert_eq!(r.json()["campaigns"], serde_json::json!([]));
    // And the good one still goes.
    let r = api("POST", &campaigns, SENDER, Some(&good));
    assert_eq!(r.status, 202, "{}", r.body);
    d.stop();
}

/// One message over `POST /api/v1/messages`: 202 with its queue ID after
/// the commit, then delivered; a bad address is 422.
#[test]
fn message_over_http() {
    let work = tempfile::tempdir().expect("dir");
    let dump = work.path().join("dump");
    let sink = sink_with(&dump, Latency::None);
    let port = free_port();
    let sb = sandbox(sink.local_addr.port(), port, 1 << 20);
    let (mut d, base) = start(&sb, port);
    let url = format!("{base}/api/v1/messages");
    let body = json_file(
        sb.root(),
        "m.json",
        &serde_json::json!({
            "from": "app@example.com",
            "to": ["one@example.net", "two@example.net"],
            "message": "From: App <app@example.com>\nSubject: receipt\n\nThank you.\n",
        }),
    );
    let r = api("POST", &url, SENDER, Some(&body));
    assert_eq!(r.status, 202, "{}", r.body);
    let queue_id = r.json()["queue_id"].as_str().expect("queue_id").to_string();
    assert_eq!(queue_id.len(), 12, "{queue_id}");
    d.wait_until("both copies at the sink", || dumped(&dump).len() == 2);
    let eml = String::from_utf8_lossy(&dumped(&dump)["two@example.net"]).into_owned();
    assert!(
        eml.contains("Subject: receipt\r\n") && eml.contains("Message-ID: <"),
        "{eml}"
    );
    let bad = json_file(
        sb.root(),
        "bad.json",
        &serde_json::json!({ "from": "app@example.com", "to": ["no good@x"], "message": "x\n" }),
    );
    let r = api("POST", &url, SENDER, Some(&bad));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.json()["error"].as_str().unwrap_or("").starts_with("to: "),
        "{}",
        r.body
    );
    assert_eq!(api("POST", &url, READER, Some(&body)).status, 403);
    d.stop();
    let log = d.log();
    assert!(
        log.contains(&format!(
            "ringmail/http[{}]: {queue_id}: from=<app@example.com>, nrcpt=2 (api)",
            d.pid()
        )),
        "{log}"
    );
}

/// RFC 8058 one-click with curl: the delivered message's URL unsubscribes
/// its recipient (and only it); a forged token is 404; GET changes
/// nothing.
#[test]
fn one_click_unsubscribe() {
    let work = tempfile::tempdir().expect("dir");
    let dump = work.path().join("dump");
    let sink = sink_with(&dump, Latency::None);
    let port = free_port();
    let sb = sandbox(sink.local_addr.port(), port, 1 << 20);
    let (mut d, base) = start(&sb, port);
    let id = send_and_deliver(&sb, &mut d, &base, &sink, 5);
    let got = dumped(&dump);
    let url = unsubscribe_url(&got["u3@example.net"]);
    let token = url.rsplit('/').next().expect("token").to_string();
    assert!(url.starts_with("https://news.example.com/u/"), "{url}");
    let local = format!("{base}/u/{token}");

    // GET shows the page and unsubscribes nobody.
    let page = curl(&[&local]);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<form method=\"post\">"),
        "{}",
        page.body
    );
    assert!(suppressed(&sb).is_empty());

    // The mail client's POST.
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
        "--data",
        "List-Unsubscribe=One-Click",
        &local,
    ]);
    assert_eq!((r.status, r.body.as_str()), (200, "unsubscribed\n"));
    let list = suppressed(&sb);
    assert_eq!(list.len(), 1, "{list:?}");
    let e = &list["u3@example.net"];
    assert_eq!(
        (e["reason"].as_str(), e["scope"].as_str()),
        (Some("unsubscribe"), Some("global"))
    );
    assert_eq!(e["campaign"].as_u64(), Some(id));
    // Again: still 200, still one entry.
    let r = curl(&["-X", "POST", "--data", "List-Unsubscribe=One-Click", &local]);
    assert_eq!(r.status, 200);
    assert_eq!(suppressed(&sb).len(), 1);

    // A forged token (one letter changed), and a token of ours for a
    // recipient that was never sent: 404, nothing added.
    let mut forged = token.clone().into_bytes();
    forged[30] = if forged[30] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).expect("ascii");
    let r = curl(&[
        "-X",
        "POST",
        "--data",
        "List-Unsubscribe=One-Click",
        &format!("{base}/u/{forged}"),
    ]);
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(curl(&[&format!("{base}/u/{forged}")]).status, 404);
    assert_eq!(
        curl(&["-X", "POST", &format!("{base}/u/nonsense")]).status,
        404
    );
    // A body larger than one-click needs (4 KiB) is refused unread.
    let big = sb.root().join("big.txt");
    fs::write(&big, "x".repeat(5000)).expect("write");
    let other = unsubscribe_url(&got["u4@example.net"]);
    let other = format!("{base}/u/{}", other.rsplit('/').next().expect("token"));
    let r = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", big.display()),
        &other,
    ]);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(suppressed(&sb).len(), 1);
    d.stop();
    let log = d.log();
    assert!(
        log.contains(&format!("ringmail/http[{}]: campaign {id} recipient 3 <u3@example.net>: unsubscribed (one-click)", d.pid())),
        "{log}"
    );
    // `[events]`: each POST answered "unsubscribed" (two) is an event in
    // the events file, the second a repeat that a receiver may ignore.
    let events =
        fs::read_to_string(sb.spool.join("events").join("events.jsonl")).expect("events file");
    let unsubscribed: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("an event per line"))
        .filter(|e| e["kind"] == "unsubscribed")
        .collect();
    assert_eq!(unsubscribed.len(), 2, "{events}");
    for e in &unsubscribed {
        assert_eq!(e["recipient"], "u3@example.net", "{e}");
        assert_eq!(e["campaign"], id.to_string(), "{e}");
        assert_eq!(e["recipient_index"], 3, "{e}");
        assert_eq!(e["source"], "campaign", "{e}");
        assert_eq!(e["id"].as_str().map(str::len), Some(32), "{e}");
    }
}

/// The browser's path: loading the page (as a link scanner would)
/// unsubscribes nobody; clicking its button does, and says so.
#[test]
fn browser_unsubscribe() {
    let Some(chromium) = chromium_or_skip("browser_unsubscribe") else {
        return;
    };
    let work = tempfile::tempdir().expect("dir");
    let dump = work.path().join("dump");
    let sink = sink_with(&dump, Latency::None);
    let port = free_port();
    let sb = sandbox(sink.local_addr.port(), port, 1 << 20);
    let (mut d, base) = start(&sb, port);
    let id = send_and_deliver(&sb, &mut d, &base, &sink, 3);
    let url = unsubscribe_url(&dumped(&dump)["u1@example.net"]);
    let local = format!("{base}/u/{}", url.rsplit('/').next().expect("token"));

    let (ok, text) = browse(&chromium, "load", &local, &sb.root().join("page.png"));
    assert!(ok, "{text}");
    assert!(text.contains("Unsubscribe?"), "{text}");
    assert!(
        suppressed(&sb).is_empty(),
        "loading the page must not unsubscribe"
    );

    let (ok, text) = browse(&chromium, "click", &local, &sb.root().join("done.png"));
    assert!(ok, "{text}");
    assert!(text.contains("You are unsubscribed"), "{text}");
    let list = suppressed(&sb);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list["u1@example.net"]["campaign"].as_u64(), Some(id));
    assert_eq!(list["u1@example.net"]["detail"], "confirmation page");
    d.stop();
    assert!(
        d.log()
            .contains("recipient 1 <u1@example.net>: unsubscribed (confirmation page)"),
        "{}",
        d.log()
    );
}

/// An `[http] listen` address already in use: the daemon does not start.
#[test]
fn address_in_use_stops_the_start() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let sb = sandbox(9, port, 1 << 20);
    match sb.try_start_daemon(IO, 0) {
        Ok(mut d) => {
            d.stop();
            panic!("the daemon started with its HTTP port taken:\n{}", d.log());
        }
        Err((status, log)) => {
            assert_eq!(status.code(), Some(75), "{log}");
            assert!(
                log.contains(&format!("[http] listen 127.0.0.1:{port}: ")),
                "{log}"
            );
        }
    }
}

/// Chromium's path, or `None` after saying why the test is skipped;
/// panics instead when `RINGMAIL_REQUIRE_CHROMIUM` is set (CI installs it).
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    });
    let python = Command::new("python3").arg("--version").output().is_ok();
    match found {
        Some(p) if python => Some(p),
        _ if std::env::var_os("RINGMAIL_REQUIRE_CHROMIUM").is_some() => {
            panic!("{test}: chromium and python3 are required (apt-get install chromium python3)")
        }
        _ => {
            eprintln!(
                "{test}: skipped: chromium or python3 is not installed (apt-get install chromium)"
            );
            None
        }
    }
}

/// Runs `tests/browser/cdp.py ACTION URL PNG`: whether it worked, and the
/// page's text (or what went wrong).
fn browse(chromium: &Path, action: &str, url: &str, png: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/cdp.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(chromium)
        .args([action, url])
        .arg(png)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn queue_over_http() {
    // The relay host refuses connections: mail stays deferred.
    let port = free_port();
    let sb = sandbox(free_port(), port, 1 << 20);
    let (mut d, base) = start(&sb, port);
    sb.sendmail_ok(
        &["-f", "s@example.com", "x@a.example"],
        b"Subject: a\n\nx\n",
    );
    sb.sendmail_ok(
        &["-f", "s@example.com", "y@b.example"],
        b"Subject: b\n\nx\n",
    );
    d.wait_until("both deferred", || {
        sb.queue_list()
            .iter()
            .flat_map(|m| m.recipients.iter())
            .filter(|r| r.status == "deferred")
            .count()
            == 2
    });
    let listed = api("GET", &format!("{base}/api/v1/queue"), READER, None);
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json().as_array().map(Vec::len), Some(2));
    let shape = api(
        "GET",
        &format!("{base}/api/v1/queue/shape?top=1"),
        READER,
        None,
    );
    assert_eq!(shape.status, 200, "{}", shape.body);
    assert_eq!(shape.json()["rows"][0]["total"], 2);
    let b_id = sb
        .queue_list()
        .into_iter()
        .find(|m| m.addresses() == ["y@b.example"])
        .expect("queued")
        .queue_id;
    let one = api("GET", &format!("{base}/api/v1/queue/{b_id}"), READER, None);
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json()["recipients"][0]["address"], "y@b.example");
    let none = api(
        "GET",
        &format!("{base}/api/v1/queue/0123456789AB"),
        READER,
        None,
    );
    assert_eq!(none.status, 404, "{}", none.body);

    // The shaping sites: a suspension shows in `/api/v1/queue/sites`.
    let dir = tempfile::tempdir().expect("dir");
    let sites_url = format!("{base}/api/v1/queue/sites");
    let sites = api("GET", &sites_url, READER, None);
    assert_eq!(sites.status, 200, "{}", sites.body);
    assert!(sites.json().is_array(), "{}", sites.body);
    assert_eq!(api("GET", &sites_url, "wrong-token", None).status, 401);
    let suspend = json_file(
        dir.path(),
        "suspend.json",
        &serde_json::json!({"site": "held-site", "seconds": 600}),
    );
    let r = api(
        "POST",
        &format!("{base}/api/v1/queue/suspend"),
        ADMIN,
        Some(&suspend),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sites = api("GET", &sites_url, READER, None).json();
    let held = sites
        .as_array()
        .and_then(|a| a.iter().find(|s| s["site"] == "held-site"))
        .unwrap_or_else(|| panic!("held-site listed: {sites}"));
    assert!(held["suspended_until"].is_i64(), "{held}");

    let hold_a = json_file(
        dir.path(),
        "a.json",
        &serde_json::json!({"domain": "a.example"}),
    );
    let dry = json_file(
        dir.path(),
        "dry.json",
        &serde_json::json!({"domain": "a.example", "dry_run": true}),
    );
    let empty = json_file(dir.path(), "empty.json", &serde_json::json!({}));
    let url = |op: &str| format!("{base}/api/v1/queue/{op}");
    assert_eq!(api("POST", &url("hold"), READER, Some(&hold_a)).status, 403);
    assert_eq!(api("POST", &url("hold"), ADMIN, Some(&empty)).status, 400);
    assert_eq!(
        api("POST", &url("bounce"), ADMIN, Some(&hold_a)).status,
        400
    );
    assert_eq!(
        api("POST", &url("explode"), ADMIN, Some(&hold_a)).status,
        404
    );
    let r = api("POST", &url("hold"), ADMIN, Some(&dry));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["dry_run"], true);
    assert_eq!(r.json()["messages"].as_array().map(Vec::len), Some(1));
    assert!(sb
        .queue_list()
        .iter()
        .all(|m| m.recipients.iter().all(|r| r.status != "held")));
    let r = api("POST", &url("hold"), ADMIN, Some(&hold_a));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["recipients"], 1);
    let delete_b = json_file(dir.path(), "b.json", &serde_json::json!({"ids": [b_id]}));
    let r = api("POST", &url("delete"), ADMIN, Some(&delete_b));
    assert_eq!(r.status, 200, "{}", r.body);
    let left = sb.queue_list();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].addresses(), ["x@a.example"]);
    assert_eq!(left[0].recipients[0].status, "held");
    d.stop();
}
