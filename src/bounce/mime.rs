//! Putting a notice together: the top-level header, the MIME structure of
//! `multipart/report` (RFC 6522), and the queue wire form.

use crate::cleanup::date::{compact_timestamp, rfc5322_date};
use crate::cleanup::wire::{max_wire_len, push_lines};
use crate::mail::needs_smtputf8;
use crate::model::MessageFlags;

use super::error::BounceError;
use super::original::{header_end, Returned};
use super::{BounceRequest, NoticeKind};

/// Boundaries tried before giving up (each has 64 random bits).
const BOUNDARY_TRIES: usize = 8;

/// A notice in queue wire form, with what the queue needs to know of it.
pub(super) struct Assembled {
    /// CRLF line ends, dot-stuffed once, ending in CRLF, no final `.` line.
    pub(super) wire: Vec<u8>,
    /// The Message-ID without angle brackets.
    pub(super) message_id: String,
    /// 8BITMIME / SMTPUTF8 needs of the notice.
    pub(super) flags: MessageFlags,
}

/// Builds the notice from its three part bodies (`text` and `report` end
/// in CRLF; `returned` is the un-stuffed original or its header fields).
pub(super) fn assemble(
    req: &BounceRequest<'_>,
    text: &str,
    report: &str,
    returned: &Returned,
) -> Result<Assembled, BounceError> {
    let original = returned.content();
    let boundary = choose_boundary(req, &[text.as_bytes(), report.as_bytes(), original])?;
    let message_id = format!(
        "{}.{}.{:016X}@{}",
        compact_timestamp(&req.now),
        req.queue_id,
        fastrand::u64(..),
        req.myhostname
    );

    let mut body: Vec<u8> = Vec::with_capacity(text.len() + report.len() + original.len() + 1024);
    body.extend_from_slice(b"This is a MIME-encapsulated message.\r\n");
    part_start(&mut body, &boundary, "Notification");
    if text.is_ascii() {
        body.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n");
    } else {
        body.extend_from_slice(
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
        );
    }
    body.extend_from_slice(b"\r\n");
    body.extend_from_slice(text.as_bytes());

    part_start(&mut body, &boundary, "Delivery report");
    body.extend_from_slice(b"Content-Type: message/delivery-status\r\n\r\n");
    body.extend_from_slice(report.as_bytes());

    if !original.is_empty() {
        let (description, ascii_type, global_type) = match (returned, req.kind) {
            (Returned::Full(_), _) => ("Undelivered Message", "message/rfc822", "message/global"),
            (_, NoticeKind::Failure) => (
                "Undelivered Message Headers",
                "text/rfc822-headers",
                "message/global-headers",
            ),
            (_, NoticeKind::Delay) => (
                "Delayed Message Headers",
                "text/rfc822-headers",
                "message/global-headers",
            ),
            (_, NoticeKind::Success) => (
                "Message Headers",
                "text/rfc822-headers",
                "message/global-headers",
            ),
        };
        part_start(&mut body, &boundary, description);
        // UTF-8 header fields (RFC 6532) make the part message/global or
        // message/global-headers (RFC 6532 3.7, RFC 6533 6.3).
        let content_type = if header_is_ascii(original) {
            ascii_type
        } else {
            global_type
        };
        body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        if !original.is_ascii() {
            body.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(original);
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());

    let header = top_header(req, &message_id, &boundary, body.is_ascii());
    let mut flags = MessageFlags::default();
    if !body.is_ascii() {
        flags.set(MessageFlags::BODY_8BIT);
    }
    if !header.is_ascii() {
        flags.set(MessageFlags::HEADERS_8BIT);
    }
    if needs_smtputf8(req.original_sender) {
        flags.set(MessageFlags::SMTPUTF8);
    }

    let mut wire = Vec::with_capacity(header.len() + 2 + max_wire_len(&body));
    push_lines(&mut wire, header.as_bytes());
    wire.extend_from_slice(b"\r\n");
    push_lines(&mut wire, &body);
    Ok(Assembled {
        wire,
        message_id,
        flags,
    })
}

/// The top-level header fields, each ending in CRLF (without the empty
/// line after them).
fn top_header(req: &BounceRequest<'_>, message_id: &str, boundary: &str, ascii: bool) -> String {
    let subject = match req.kind {
        NoticeKind::Failure => "Undelivered Mail Returned to Sender",
        NoticeKind::Delay => "Delayed Mail (still being retried)",
        NoticeKind::Success => "Successful Mail Delivery Report",
    };
    let mut h = String::with_capacity(512);
    h.push_str(&format!(
        "From: MAILER-DAEMON@{} (Mail Delivery System)\r\n",
        req.myhostname
    ));
    h.push_str(&format!("To: <{}>\r\n", req.original_sender));
    h.push_str(&format!("Subject: {subject}\r\n"));
    h.push_str(&format!("Date: {}\r\n", rfc5322_date(&req.now)));
    h.push_str(&format!("Message-ID: <{message_id}>\r\n"));
    h.push_str("Auto-Submitted: auto-replied\r\n");
    h.push_str("MIME-Version: 1.0\r\n");
    h.push_str("Content-Type: multipart/report; report-type=delivery-status;\r\n");
    h.push_str(&format!("\tboundary=\"{boundary}\"\r\n"));
    if !ascii {
        h.push_str("Content-Transfer-Encoding: 8bit\r\n");
    }
    h
}

/// Appends the delimiter line that opens a body part and its
/// `Content-Description:` field. The CRLF before `--` belongs to the
/// delimiter (RFC 2046 5.1.1), so each part keeps its own last line end.
fn part_start(body: &mut Vec<u8>, boundary: &str, description: &str) {
    body.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Description: {description}\r\n").as_bytes(),
    );
}

/// A boundary found in none of `contents`: the queue ID, the time and 64
/// random bits, at most 70 characters from the RFC 2046 set.
fn choose_boundary(req: &BounceRequest<'_>, contents: &[&[u8]]) -> Result<String, BounceError> {
    for _ in 0..BOUNDARY_TRIES {
        let boundary = format!(
            "{}.{}/{:016X}",
            req.queue_id,
            req.now.timestamp(),
            fastrand::u64(..)
        );
        let b = boundary.as_bytes();
        if !contents.iter().any(|c| c.windows(b.len()).any(|w| w == b)) {
            return Ok(boundary);
        }
    }
    Err(BounceError::NoBoundary)
}

/// True when the header section at the start of `message` is ASCII.
fn header_is_ascii(message: &[u8]) -> bool {
    message[..header_end(message)].is_ascii()
}
