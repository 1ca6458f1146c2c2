//! The daemon's delivery events (`[events]`): a send to the bundled sink
//! writes one `received` event per message and one `delivered` event per
//! recipient; a recipient bounced by `queue bounce` gets a `bounced` event
//! with the reason; every event has a unique id.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::time::Duration;

use common::*;
use ringmail::sink::{self, SinkConfig};

fn events(sb: &Sandbox) -> Vec<serde_json::Value> {
    fs::read_to_string(sb.spool.join("events").join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event {l:?}: {e}")))
        .collect()
}

fn count(evs: &[serde_json::Value], kind: &str) -> usize {
    evs.iter().filter(|e| e["kind"] == kind).count()
}

#[test]
fn a_send_writes_received_delivered_and_bounced_events() {
    let dump = tempfile::tempdir().expect("dir");
    let sink = sink::start(SinkConfig {
        dump_dir: Some(dump.path().to_path_buf()),
        ..SinkConfig::default()
    })
    .expect("sink");
    let sb = Sandbox::with(Settings {
        extra: format!(
            "relayhost = \"[127.0.0.1]:{}\"\n[events]\n",
            sink.local_addr.port()
        ),
        ..Settings::default()
    });
    let mut d = sb.start_daemon("uring");
    let n = 20;
    for i in 0..n {
        sb.sendmail_ok(
            &[
                "-f",
                "news@example.com",
                &format!("r{i}@example.net"),
                &format!("s{i}@example.net"),
            ],
            format!("Subject: {i}\n\nbody\n").as_bytes(),
        );
    }
    wait_until("every recipient delivered", Duration::from_secs(60), || {
        count(&events(&sb), "delivered") >= 2 * n
    });
    let evs = events(&sb);
    assert_eq!(count(&evs, "received"), n, "one received event per message");
    assert_eq!(count(&evs, "delivered"), 2 * n);
    let received: HashMap<String, &serde_json::Value> = evs
        .iter()
        .filter(|e| e["kind"] == "received")
        .map(|e| (e["queue_id"].as_str().unwrap().to_string(), e))
        .collect();
    for e in evs.iter().filter(|e| e["kind"] == "delivered") {
        let id = e["queue_id"].as_str().expect("queue_id");
        let r = received
            .get(id)
            .unwrap_or_else(|| panic!("no received event for {id}"));
        assert_eq!(r["source"], "sendmail");
        assert_eq!(e["sender"], "news@example.com");
        assert_eq!(e["message_id"], r["message_id"]);
        assert_eq!(e["reply"]["code"], 250, "{e}");
        assert!(e["peer"].as_str().unwrap().contains("[127.0.0.1]"), "{e}");
        assert_eq!(e["attempts"], 1);
    }
    // A held message bounced by the administrator.
    sink.shutdown();
    sb.sendmail_ok(
        &["-f", "news@example.com", "late@example.net"],
        b"Subject: late\n\nx\n",
    );
    d.wait_until("the late one deferred", || {
        sb.queue_list().iter().any(|m| {
            m.recipients
                .iter()
                .any(|r| r.address == "late@example.net" && r.status == "deferred")
        })
    });
    let out = sb
        .cmd()
        .args([
            "queue",
            "bounce",
            "--reason",
            "list closed",
            "--all",
            "--config",
        ])
        .arg(&sb.config)
        .output()
        .expect("queue bounce");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the bounced event", Duration::from_secs(30), || {
        events(&sb)
            .iter()
            .any(|e| e["kind"] == "bounced" && e["recipient"] == "late@example.net")
    });
    let evs = events(&sb);
    let bounced = evs
        .iter()
        .find(|e| e["kind"] == "bounced" && e["recipient"] == "late@example.net")
        .unwrap();
    assert_eq!(bounced["reply"]["enhanced"], "5.0.0");
    assert!(bounced["reply"]["text"]
        .as_str()
        .unwrap()
        .contains("list closed"));
    assert!(count(&evs, "deferred") >= 1, "the deferral before it");
    let ids: HashSet<&str> = evs.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), evs.len(), "event ids are unique");
    d.stop();
}
