//! `ringmail queue shape` (qshape) and `ringmail queue show` (postcat -q)
//! against a real queue, with the daemon running and after it stopped.
//! The sandbox's DNS server does not answer, so every message stays
//! deferred ("try again") in the queue.

mod common;

use std::process::Output;

use common::*;

fn queue(sb: &Sandbox, args: &[&str]) -> Output {
    sb.cmd()
        .arg("queue")
        .args(args)
        .arg("--config")
        .arg(&sb.config)
        .output()
        .expect("ringmail queue")
}

fn text(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn row<'a>(table: &'a str, domain: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&domain))
        .unwrap_or_else(|| panic!("no row {domain} in\n{table}"))
        .to_vec()
}

#[test]
fn shape_and_show_read_the_queue_with_and_without_the_daemon() {
    let sb = Sandbox::new();
    let mut d = sb.start_daemon("uring");
    for i in 0..3 {
        sb.sendmail_ok(
            &[
                "-f",
                "news@example.com",
                &format!("a{i}@gmail.example"),
                "b@yahoo.example",
            ],
            format!("Subject: hello {i}\n\nline one\n.a dot line\n").as_bytes(),
        );
    }
    sb.sendmail_ok(
        &["-f", "other@sender.example", "c@yahoo.example"],
        b"Subject: x\n\nbody\n",
    );
    d.wait_until("every recipient deferred", || {
        sb.queue_list()
            .iter()
            .flat_map(|m| m.recipients.iter())
            .filter(|r| r.status == "deferred")
            .count()
            == 7
    });
    for round in 0..2 {
        let table = text(&queue(&sb, &["shape"]));
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header[..4], ["T", "5", "10", "20"], "{table}");
        assert_eq!(header.last(), Some(&"1280+"), "{table}");
        assert_eq!(row(&table, "TOTAL")[1..3], ["7", "7"], "{table}");
        assert_eq!(row(&table, "yahoo.example")[1], "4", "{table}");
        assert_eq!(row(&table, "gmail.example")[1], "3", "{table}");
        // Busiest domain first.
        let order: Vec<&str> = table
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(
            order,
            ["TOTAL", "yahoo.example", "gmail.example"],
            "{table}"
        );
        let by_sender = text(&queue(&sb, &["shape", "--sender"]));
        assert_eq!(row(&by_sender, "example.com")[1], "6", "{by_sender}");
        assert_eq!(row(&by_sender, "sender.example")[1], "1", "{by_sender}");
        let json: serde_json::Value =
            serde_json::from_str(&text(&queue(&sb, &["shape", "--json", "--top", "1"]))).unwrap();
        assert_eq!(json["rows"][0]["total"], 7);
        assert_eq!(json["rows"][2]["domain"], "(1 other domains)");

        let listed = sb.queue_list();
        let first = listed
            .iter()
            .find(|m| m.recipients.len() == 2)
            .expect("a message with two recipients");
        let shown = text(&queue(&sb, &["show", &first.queue_id]));
        assert!(
            shown.starts_with(&format!("*** ENVELOPE RECORDS {} ***\n", first.queue_id)),
            "{shown}"
        );
        assert!(shown.contains("sender: news@example.com\n"), "{shown}");
        assert!(
            shown.contains("[deferred] ("),
            "the deferral reason is shown: {shown}"
        );
        assert!(shown.contains("\nSubject: hello"), "{shown}");
        assert!(
            shown.contains("\n.a dot line\n"),
            "dot-stuffing undone: {shown}"
        );
        assert!(shown.ends_with(&format!("*** MESSAGE FILE END {} ***\n", first.queue_id)));
        let body_only = text(&queue(&sb, &["show", "-b", &first.queue_id]));
        assert!(
            !body_only.contains("Subject:") && !body_only.contains("sender:"),
            "{body_only}"
        );
        assert!(body_only.contains("line one\n.a dot line\n"), "{body_only}");
        let missing = queue(&sb, &["show", "0123456789AB"]);
        assert!(!missing.status.success());
        assert!(String::from_utf8_lossy(&missing.stderr).contains("no such message"));
        if round == 0 {
            d.stop();
        }
    }
}
