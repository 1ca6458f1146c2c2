//! `ringmail queue list`, `mailq`, `sendmail -bp`: the queue listing in
//! Postfix's format, or JSON lines.

use std::io::Write;

use ringmail::config::Config;
use ringmail::queue::{list_queue, QueueError, QueuedMessage, QueuedRecipient};
use ringmail::spool::Spool;

/// The queue could not be listed because this user may not read it
/// (EX_NOPERM, 77).
#[derive(Debug, thiserror::Error)]
#[error("cannot list the mail queue: permission denied: {path} (the queue is readable by root and the daemon's user only)")]
pub struct PermissionDenied {
    /// The directory or file that could not be read.
    pub path: std::path::PathBuf,
}

/// Prints the listing of the queue under `config.spool_dir`.
pub fn print(config: &Config, json: bool) -> anyhow::Result<()> {
    let messages = match list_queue(&Spool::new(&config.spool_dir).queue()) {
        Ok(m) => m,
        Err(QueueError::Io { path, source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            return Err(PermissionDenied { path }.into())
        }
        Err(e) => return Err(e.into()),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        for m in &messages {
            serde_json::to_writer(&mut out, m)?;
            writeln!(out)?;
        }
    } else {
        write!(out, "{}", format_listing(&messages))?;
    }
    out.flush()?;
    Ok(())
}

/// Formats messages as Postfix's `mailq` (`postqueue -p`, the short queue
/// ID form of `showq_compat.c`) does, byte for byte:
///
/// - the heading `-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------`
///   (printf `"%-11s %7s %-20s %s\n"`) before the first message, and
///   `Mail queue is empty` when there is none;
/// - per message `"%-11s %7ld %20.20s %s\n"`: the queue ID with `*`
///   (Postfix: active queue; here: a recipient never tried) or `!` (on
///   hold) appended, the size, `asctime(3)` of the arrival cut to 20
///   characters (so with its trailing space), the sender (`<>` as
///   `MAILER-DAEMON`); an ID or size wider than its column pushes the rest
///   right, as printf does;
/// - each live recipient indented to column 41, recipients with a
///   deferral reason first, by domain then address (Postfix lists its
///   defer log first, in its queue manager's order), then the rest; a
///   `(reason)` line, right-aligned to end in column 78 (never cut or
///   wrapped), before a recipient whose reason differs from the previous
///   one's, `(reason unavailable)` when the previous had one and this has
///   none;
/// - a blank line between messages and before
///   `-- N Kbytes in M Request(s).`, N the total size in bytes / 1024
///   rounded down.
///
/// Control characters in addresses and reasons are shown as `?`, as
/// Postfix's `printable()`.
pub fn format_listing(messages: &[QueuedMessage]) -> String {
    format_listing_in(messages, &chrono::Local)
}

/// [`format_listing`] with arrival times in the time zone `tz`.
pub fn format_listing_in<Tz: chrono::TimeZone>(messages: &[QueuedMessage], tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if messages.is_empty() {
        return "Mail queue is empty\n".to_string();
    }
    let mut s = format!(
        "{:<11} {:>7} {:<20} {}\n",
        "-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------"
    );
    let mut bytes = 0u64;
    for (n, m) in messages.iter().enumerate() {
        if n > 0 {
            s.push('\n');
        }
        bytes += m.size;
        message(&mut s, m, tz);
    }
    let n = messages.len();
    s.push_str(&format!(
        "\n-- {} Kbytes in {n} Request{}.\n",
        bytes / 1024,
        if n == 1 { "" } else { "s" }
    ));
    s
}

/// The column a recipient starts in: `%-11s %7s %-20s ` of empty strings.
const RECIPIENT_INDENT: usize = 11 + 1 + 7 + 1 + 20 + 1;

/// The width a `(reason)` line is right-aligned in, less the parentheses.
const REASON_WIDTH: usize = 76;

/// One message's lines.
fn message<Tz: chrono::TimeZone>(s: &mut String, m: &QueuedMessage, tz: &Tz)
where
    Tz::Offset: std::fmt::Display,
{
    // '*' marks mail not yet tried (Postfix: in the active queue), '!'
    // mail on hold (Postfix: in the hold queue).
    let held = m.recipients.iter().any(|r| r.status == "held");
    let active = m.recipients.iter().any(|r| r.status == "pending");
    let marker = if held {
        "!"
    } else if active {
        "*"
    } else {
        ""
    };
    let id = format!("{}{marker}", m.queue_id);
    let sender = if m.sender.is_empty() {
        "MAILER-DAEMON".to_string()
    } else {
        printable(&m.sender)
    };
    s.push_str(&format!(
        "{id:<11} {:>7} {:20.20} {sender}\n",
        m.size,
        asctime(m.arrival_time, tz)
    ));
    let live = |r: &&QueuedRecipient| matches!(r.status, "pending" | "deferred" | "held");
    // Postfix lists its defer log first, in the order its queue manager
    // tried them (qmgr_message_sort: by domain, then address, for one
    // next hop), then the rest in envelope order.
    let mut with_reason: Vec<&QueuedRecipient> = m
        .recipients
        .iter()
        .filter(live)
        .filter(|r| r.reason.is_some())
        .collect();
    with_reason.sort_by(|a, b| qmgr_order(&a.address, &b.address));
    let without = m
        .recipients
        .iter()
        .filter(live)
        .filter(|r| r.reason.is_none());
    let mut previous = String::new();
    for r in with_reason.into_iter().chain(without) {
        let reason = r.reason.as_deref().map(printable).unwrap_or_default();
        if reason != previous {
            let shown = if reason.is_empty() {
                "reason unavailable"
            } else {
                &reason
            };
            // printf's "%*s" pads by bytes.
            let pad = REASON_WIDTH.saturating_sub(shown.len());
            s.push_str(&format!("{:pad$}({shown})\n", ""));
            previous = reason;
        }
        s.push_str(&format!(
            "{:RECIPIENT_INDENT$}{}\n",
            "",
            printable(&r.address)
        ));
    }
}

/// Postfix's delivery order of two recipients of one message to one next
/// hop: by the domain (from the last `@`, case-insensitive; no domain
/// last), then by the address.
fn qmgr_order(a: &str, b: &str) -> std::cmp::Ordering {
    let domain = |x: &str| x.rfind('@').map(|i| x[i..].to_lowercase());
    match (domain(a), domain(b)) {
        (Some(da), Some(db)) => da.cmp(&db).then_with(|| a.cmp(b)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// `asctime(3)` of `secs` in `tz`: `Mon Dec  7 03:14:50 2026`.
fn asctime<Tz: chrono::TimeZone>(secs: u64, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| {
            t.with_timezone(tz)
                .format("%a %b %e %H:%M:%S %Y")
                .to_string()
        })
        .unwrap_or_default()
}

/// Control characters as `?`, as Postfix's `printable()` (UTF-8 kept, as
/// with `smtputf8_enable`).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 03:14:50 UTC, a Monday.
    const MON_DEC_7: u64 = 1_796_613_290;

    fn rcpt(address: &str, status: &'static str, reason: Option<&str>) -> QueuedRecipient {
        QueuedRecipient {
            address: address.into(),
            status,
            reason: reason.map(str::to_string),
        }
    }

    fn msg(id: &str, size: u64, sender: &str, recipients: Vec<QueuedRecipient>) -> QueuedMessage {
        QueuedMessage {
            queue_id: id.into(),
            arrival_time: MON_DEC_7,
            sender: sender.into(),
            size,
            message_id: "<m@example.com>".into(),
            recipients,
            source_file: None,
            campaign: None,
        }
    }

    fn listing(messages: &[QueuedMessage]) -> String {
        format_listing_in(messages, &chrono::Utc)
    }

    #[test]
    fn an_empty_queue_is_one_line() {
        assert_eq!(listing(&[]), "Mail queue is empty\n");
    }

    #[test]
    fn heading_message_line_and_totals_are_postfix_printf() {
        let m = msg(
            "0A1B2C3D4E5F",
            2048,
            "from@example.com",
            vec![rcpt("to@example.net", "deferred", None)],
        );
        // Postfix: "%-11s %7s %-20s %s\n" for the heading, the ID column
        // overflowed by the 12-digit ID as printf does, asctime's trailing
        // space kept by "%20.20s", the sender in column 42 here.
        assert_eq!(
            listing(&[m]),
            "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n\
             0A1B2C3D4E5F    2048 Mon Dec  7 03:14:50  from@example.com\n\
             \x20                                        to@example.net\n\
             \n\
             -- 2 Kbytes in 1 Request.\n"
        );
    }

    #[test]
    fn markers_follow_the_id_pending_star_held_bang() {
        let pending = msg(
            "000000000001",
            10,
            "a@x.org",
            vec![rcpt("b@y.org", "pending", None)],
        );
        let held = msg(
            "000000000002",
            10,
            "a@x.org",
            vec![
                rcpt("b@y.org", "held", None),
                rcpt("c@y.org", "pending", None),
            ],
        );
        let out = listing(&[pending, held]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].starts_with("000000000001*      10 Mon"), "{out}");
        assert!(lines[4].starts_with("000000000002!      10 Mon"), "{out}");
    }

    #[test]
    fn a_short_id_is_padded_to_eleven_columns() {
        let m = msg(
            "4F9D1236A5",
            512,
            "",
            vec![rcpt("r@y.org", "deferred", None)],
        );
        let out = listing(&[m]);
        assert_eq!(
            out.lines().nth(1),
            Some("4F9D1236A5      512 Mon Dec  7 03:14:50  MAILER-DAEMON")
        );
    }

    #[test]
    fn recipients_are_indented_to_column_41() {
        let m = msg(
            "000000000003",
            1,
            "a@x.org",
            vec![rcpt("r@y.org", "deferred", None)],
        );
        let out = listing(&[m]);
        let line = out.lines().nth(2).unwrap_or_default();
        assert_eq!(line.find('r'), Some(41), "{line:?}");
        assert_eq!(line.trim_start(), "r@y.org");
    }

    #[test]
    fn a_reason_is_right_aligned_to_column_78_and_shown_once_per_run() {
        let m = msg(
            "000000000004",
            1,
            "a@x.org",
            vec![
                rcpt("r1@y.org", "deferred", Some("connect to y.org: refused")),
                rcpt("r2@y.org", "deferred", Some("connect to y.org: refused")),
            ],
        );
        let out = listing(&[m]);
        let lines: Vec<&str> = out.lines().collect();
        let reason = "(connect to y.org: refused)";
        assert_eq!(lines[2], format!("{:>78}", reason));
        assert_eq!(lines[3].trim_start(), "r1@y.org");
        assert_eq!(lines[4].trim_start(), "r2@y.org", "{out}");
        assert_eq!(out.matches(reason).count(), 1);
    }

    #[test]
    fn a_long_reason_is_neither_cut_nor_wrapped() {
        let long = "x".repeat(120);
        let m = msg(
            "000000000005",
            1,
            "a@x.org",
            vec![rcpt("r@y.org", "deferred", Some(&long))],
        );
        let out = listing(&[m]);
        assert_eq!(out.lines().nth(2), Some(format!("({long})").as_str()));
    }

    #[test]
    fn reasons_come_first_then_reason_unavailable() {
        let m = msg(
            "000000000006",
            1,
            "a@x.org",
            vec![
                rcpt("new@y.org", "pending", None),
                rcpt("old@y.org", "deferred", Some("busy")),
                rcpt("other@z.org", "deferred", Some("full")),
            ],
        );
        let out = listing(&[m]);
        let lines: Vec<&str> = out.lines().map(str::trim_start).collect();
        assert_eq!(
            &lines[2..8],
            &[
                "(busy)",
                "old@y.org",
                "(full)",
                "other@z.org",
                "(reason unavailable)",
                "new@y.org"
            ]
        );
        assert_eq!(
            out.lines().nth(6),
            Some(format!("{:>78}", "(reason unavailable)").as_str())
        );
    }

    #[test]
    fn deferred_recipients_come_in_postfix_delivery_order() {
        let m = msg(
            "00000000000F",
            1,
            "a@x.org",
            vec![
                rcpt("two@b.org", "deferred", Some("r2")),
                rcpt("three@b.org", "deferred", Some("r3")),
                rcpt("z@A.org", "deferred", Some("r1")),
                rcpt("later@c.org", "pending", None),
                rcpt("first@c.org", "pending", None),
            ],
        );
        let out = listing(&[m]);
        let addresses: Vec<&str> = out
            .lines()
            .skip(2)
            .map(str::trim_start)
            .filter(|l| !l.starts_with('(') && !l.is_empty() && !l.starts_with("--"))
            .collect();
        assert_eq!(
            addresses,
            [
                "z@A.org",
                "three@b.org",
                "two@b.org",
                "later@c.org",
                "first@c.org"
            ]
        );
    }

    #[test]
    fn no_reason_line_when_no_recipient_has_one() {
        let m = msg(
            "000000000007",
            1,
            "a@x.org",
            vec![
                rcpt("a@y.org", "pending", None),
                rcpt("b@y.org", "pending", None),
            ],
        );
        assert!(!listing(&[m]).contains('('));
    }

    #[test]
    fn done_recipients_are_not_listed() {
        let m = msg(
            "000000000008",
            1,
            "a@x.org",
            vec![
                rcpt("sent@y.org", "sent", None),
                rcpt("gone@y.org", "bounced", None),
                rcpt("live@y.org", "deferred", None),
            ],
        );
        let out = listing(&[m]);
        assert!(!out.contains("sent@y.org") && !out.contains("gone@y.org"));
        assert!(out.contains("live@y.org"));
    }

    #[test]
    fn long_addresses_are_printed_whole_and_control_characters_as_question_marks() {
        let long = format!("{}@example.com", "l".repeat(100));
        let m = msg(
            "000000000009",
            1,
            &long,
            vec![rcpt("bad\u{7}name@y.org", "deferred", Some("tab\there"))],
        );
        let out = listing(&[m]);
        assert!(out
            .lines()
            .nth(1)
            .unwrap_or_default()
            .ends_with(&format!("  {long}")));
        assert!(out.contains("(tab?here)\n"), "{out}");
        assert!(out.contains(&format!("{:41}bad?name@y.org\n", "")));
    }

    #[test]
    fn a_wide_size_pushes_the_rest_right() {
        let m = msg(
            "00000000000A",
            123_456_789,
            "a@x.org",
            vec![rcpt("r@y.org", "deferred", None)],
        );
        assert_eq!(
            listing(&[m]).lines().nth(1),
            Some("00000000000A 123456789 Mon Dec  7 03:14:50  a@x.org")
        );
    }

    #[test]
    fn totals_round_down_and_count_requests() {
        let mk = |id: &str, size| msg(id, size, "a@x.org", vec![rcpt("r@y.org", "deferred", None)]);
        let out = listing(&[mk("00000000000B", 1500), mk("00000000000C", 1500)]);
        // 3000 bytes: 2 Kbytes (Postfix divides and rounds down).
        assert!(out.ends_with("\n\n-- 2 Kbytes in 2 Requests.\n"), "{out}");
        // One blank line between messages.
        assert_eq!(out.matches("\n\n").count(), 2, "{out}");
        let small = listing(&[mk("00000000000D", 1000)]);
        assert!(small.ends_with("-- 0 Kbytes in 1 Request.\n"), "{small}");
    }

    #[test]
    fn a_two_digit_day_fills_the_day_column() {
        let mut m = msg(
            "00000000000E",
            1,
            "a@x.org",
            vec![rcpt("r@y.org", "deferred", None)],
        );
        m.arrival_time = MON_DEC_7 + 10 * 86_400;
        assert!(listing(&[m]).contains(" Thu Dec 17 03:14:50  a@x.org\n"));
    }
}
