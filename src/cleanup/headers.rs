//! Header fixes: which fields stay, which are added.

use crate::mail::MessageParts;

use super::date::rfc5322_date;
use super::from_field::from_field;
use super::message_id::{existing_message_id, generate_message_id};
use super::CleanupOptions;

/// Fields dropped on the way in, as Postfix's `message_drop_headers`:
/// blind copies stay blind, Return-Path is the receiver's to add, and a
/// Content-Length from a mailbox file would be wrong after conversion.
const REMOVED: [&str; 4] = ["Bcc", "Resent-Bcc", "Return-Path", "Content-Length"];

/// The header section as it will be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPlan<'a> {
    /// Input fields kept, in order, byte for byte (line ends fixed later).
    pub kept: Vec<&'a [u8]>,
    /// Fields to append after them, each ending in CRLF.
    pub added: String,
    /// The message's Message-ID without angle brackets.
    pub message_id: String,
}

/// Decides the header section: drops the [`REMOVED`] fields, keeps every other
/// field, and appends Message-ID, Date and From when missing (in that
/// order). From is the envelope `sender` with `opts.full_name`.
pub fn plan_headers<'a>(
    parts: &MessageParts<'a>,
    sender: &str,
    opts: &CleanupOptions<'_>,
) -> HeaderPlan<'a> {
    let mut kept = Vec::with_capacity(parts.fields.len() + 3);
    let mut message_id = None;
    let (mut has_date, mut has_from) = (false, false);
    for field in &parts.fields {
        if REMOVED.iter().any(|name| field.is(name)) {
            continue;
        }
        if message_id.is_none() && field.is("Message-ID") {
            message_id = Some(existing_message_id(&field.value()));
        }
        has_date |= field.is("Date");
        has_from |= field.is("From");
        kept.push(field.raw);
    }
    // Room for the three fields it may add, so it is not grown twice.
    let mut added = String::with_capacity(256);
    let message_id = match message_id {
        Some(id) => id,
        None => {
            let id = generate_message_id(&opts.now, opts.myhostname);
            added.push_str("Message-ID: <");
            added.push_str(&id);
            added.push_str(">\r\n");
            id
        }
    };
    if !has_date {
        added.push_str("Date: ");
        added.push_str(&rfc5322_date(&opts.now));
        added.push_str("\r\n");
    }
    if !has_from {
        added.push_str(&from_field(sender, opts.full_name, opts.myhostname));
    }
    HeaderPlan {
        kept,
        added,
        message_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::split_message;
    use chrono::{Local, TimeZone};

    fn opts() -> CleanupOptions<'static> {
        CleanupOptions {
            myhostname: "mx.example",
            message_size_limit: 1 << 20,
            full_name: None,
            now: Local.with_ymd_and_hms(2026, 11, 28, 4, 53, 11).unwrap(),
        }
    }

    #[test]
    fn removes_bcc_and_resent_bcc_only() {
        let raw = b"To: a@x\nBcc: b@x\nresent-bcc: c@x\nReturn-Path: <r@x>\nContent-Length: 9\nBcc-Like: d\nMessage-ID: <m@x>\nDate: d\nFrom: f@x\n\n";
        let parts = split_message(raw).unwrap();
        let plan = plan_headers(&parts, "s@x", &opts());
        assert_eq!(
            plan.kept,
            [
                &b"To: a@x\n"[..],
                b"Bcc-Like: d\n",
                b"Message-ID: <m@x>\n",
                b"Date: d\n",
                b"From: f@x\n"
            ]
        );
        assert_eq!(plan.added, "");
        assert_eq!(plan.message_id, "m@x");
    }

    #[test]
    fn adds_missing_fields_in_order() {
        let parts = split_message(b"Subject: s\n\n").unwrap();
        let plan = plan_headers(&parts, "s@x.example", &opts());
        let lines: Vec<&str> = plan.added.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 3, "{:?}", plan.added);
        assert_eq!(lines[0], format!("Message-ID: <{}>", plan.message_id));
        assert!(plan.message_id.starts_with("20261128045311."));
        assert!(plan.message_id.ends_with("@mx.example"));
        assert!(
            lines[1].starts_with("Date: Sat, 28 Nov 2026 04:53:11 "),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], "From: s@x.example");
    }

    #[test]
    fn adds_only_what_is_missing() {
        let parts = split_message(b"date: Fri, 27 Nov 2026 01:00:00 +0000\nFROM: f@x\n\n").unwrap();
        let plan = plan_headers(&parts, "s@x", &opts());
        assert!(plan.added.starts_with("Message-ID: <"));
        assert_eq!(plan.added.matches("\r\n").count(), 1);
        let parts = split_message(b"Message-Id: <keep@x>\n\n").unwrap();
        let plan = plan_headers(&parts, "", &opts());
        assert_eq!(plan.message_id, "keep@x");
        assert!(!plan.added.contains("Message-ID"));
        assert!(plan
            .added
            .contains("\r\nFrom: MAILER-DAEMON@mx.example\r\n"));
    }
}
