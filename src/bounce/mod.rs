//! Delivery status notifications (RFC 3464): the bounce message sent back
//! to the envelope sender when delivery failed, the optional warning when
//! it is delayed, and the success notice a sender asked for with
//! `NOTIFY=SUCCESS`, as Postfix's `bounce` daemon writes them. No I/O:
//! [`build`] turns a [`BounceRequest`] into a [`Bounce`] ready to be
//! queued; the queue manager decides when and queues it.
//!
//! # The notice
//!
//! ```text
//! From: MAILER-DAEMON@myhostname (Mail Delivery System)
//! To: <original sender>
//! Subject: Undelivered Mail Returned to Sender      (delay: Delayed Mail (still being retried),
//!                                                    success: Successful Mail Delivery Report)
//! Date: ...                                         Message-ID: <time.queueid.random@myhostname>
//! Auto-Submitted: auto-replied                      (RFC 3834: no auto-reply loops)
//! MIME-Version: 1.0
//! Content-Type: multipart/report; report-type=delivery-status; boundary="..."
//!
//! 1. text/plain               for people: "This is the mail system at host ...",
//!                             then "<recipient>: reason" for each recipient
//! 2. message/delivery-status  Original-Envelope-Id (with ENVID), Reporting-MTA,
//!                             X-Ringmail-Queue-ID, X-Ringmail-Sender, Arrival-Date;
//!                             per recipient Final-Recipient, Original-Recipient,
//!                             Action, Status, Remote-MTA, Diagnostic-Code
//! 3. message/rfc822           the whole original, or
//!    text/rfc822-headers      only its header fields
//! ```
//!
//! Choices, also described in `docs/BOUNCES.md`:
//!
//! - **Null sender.** A message from the null sender `<>` (a bounce
//!   itself) is never bounced: [`build`] returns `Ok(None)`. The notice is
//!   sent from the null sender, so a notice that fails ends there.
//! - **What is returned.** The whole original for a failure when
//!   [`BounceRequest::return_full_message`] is set (the caller clears it for
//!   `RET=HDRS`) and its size (un-stuffed) is at most
//!   [`BounceRequest::bounce_size_limit`] (Postfix's `bounce_size_limit`,
//!   50000 by default), else only its header fields, as Postfix 2.5 and
//!   later do. Delay warnings and success notices always return the header
//!   only (RFC 3461 section 4.3: RET is about failed DSNs). An original with a NUL byte, a CR
//!   not before LF or a line over 998 octets is returned as headers only
//!   (with such CRs as spaces), so the notice itself stays within RFC
//!   5322; one without any header field is not returned (the notice then
//!   has two parts).
//! - **Wire form.** The original comes in queue wire form (dot-stuffed
//!   once); it is un-stuffed, embedded byte for byte, and the whole notice
//!   is dot-stuffed once with `cleanup::wire::push_lines`. Every line ends
//!   in CRLF and, before stuffing, none is longer than 998 octets.
//! - **7-bit report.** The delivery-status part stays ASCII: an address
//!   that needs SMTPUTF8 is typed `utf-8;` in the `utf-8-addr-xtext` form
//!   of RFC 6533 (`\x{HEX}` escapes); non-ASCII characters of a remote
//!   reply become `?`. The text part keeps them (UTF-8, 8bit). An original
//!   whose header fields are UTF-8 (RFC 6532) is attached as
//!   `message/global` or `message/global-headers`.
//! - **Diagnostic-Code.** `smtp; <reply>` when the remote server answered;
//!   otherwise `X-Ringmail; <reason>`, as Postfix writes `X-Postfix;`.
//!   Replies are put on one line and folded at blanks.
//! - **Status.** Kept when it is an enhanced status code of a fitting
//!   class (failure: 5.x.x, or 4.x.x for an expired message; delay:
//!   4.x.x); otherwise 5.0.0 or 4.0.0.
//! - **Flags.** Computed from the notice itself, as cleanup does for any
//!   message: `BODY_8BIT` when any part holds 8-bit bytes (UTF-8 text,
//!   an 8-bit original), `HEADERS_8BIT` when the top-level header does (a
//!   UTF-8 sender in `To:`), `SMTPUTF8` when the notice's envelope
//!   recipient, the original sender, is not ASCII. An ASCII sender whose
//!   message had UTF-8 header fields thus gets its notice without
//!   SMTPUTF8 (over 8BITMIME), so the notice is not refused by a receiver
//!   without SMTPUTF8.
//!
//! Files: `report.rs` (delivery-status fields), `text.rs` (the text for
//! people), `original.rs` (what is returned of the original), `mime.rs`
//! (assembly and wire form), `fold.rs` (line wrapping), `error.rs`.

mod error;
mod fold;
mod mime;
mod original;
mod report;
mod text;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Local};

use crate::model::{Envelope, MessageFlags};

pub use error::BounceError;

/// Postfix's default `bounce_size_limit`: the largest original, in octets,
/// returned whole in a notice.
pub const DEFAULT_BOUNCE_SIZE_LIMIT: usize = 50_000;

/// Longest queue ID accepted (it is part of the MIME boundary, which may
/// not exceed 70 characters).
const MAX_QUEUE_ID: usize = 32;
/// Longest `myhostname` accepted (RFC 1035 limit of a DNS name).
const MAX_HOSTNAME: usize = 253;

/// Which notice to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Delivery failed for good (a 5xx reply, or the message expired):
    /// `Action: failed`, "Undelivered Mail Returned to Sender".
    Failure,
    /// Delivery is late but still being retried: `Action: delayed`,
    /// "Delayed Mail (still being retried)", headers only.
    Delay,
    /// The next hop accepted the message for a recipient whose sender asked
    /// for `NOTIFY=SUCCESS`: `Action: relayed` (ringmail relays over SMTP
    /// and does not pass the DSN request on, so no later system will
    /// confirm delivery), "Successful Mail Delivery Report", headers only.
    Success,
}

/// One recipient the notice is about (failed, delayed or, for a success
/// notice, relayed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecipient {
    /// The envelope recipient as tried (without angle brackets):
    /// `Final-Recipient`, and `Original-Recipient` when there is no ORCPT.
    pub address: String,
    /// The recipient's ORCPT (`addr-type;address`, decoded), for
    /// `Original-Recipient`.
    pub original_recipient: Option<String>,
    /// Enhanced status code (RFC 3463), e.g. `5.1.1`; `4.x.x` for a delay,
    /// or for the last temporary error of an expired message; `2.x.x` for
    /// a success.
    pub status: String,
    /// The remote server's reply, e.g. `550 5.1.1 <x@y>: user unknown`:
    /// `Diagnostic-Code: smtp; ...`. None when no server answered.
    pub diagnostic: Option<String>,
    /// Host name of the server that answered: `Remote-MTA: dns; host`.
    pub remote_mta: Option<String>,
    /// Text for people, as in the `status=bounced (...)` log line, e.g.
    /// `host mx.example[192.0.2.1] said: 550 5.1.1 ... (in reply to RCPT TO
    /// command)`.
    pub reason: String,
}

/// Everything a notice is built from.
#[derive(Debug, Clone)]
pub struct BounceRequest<'a> {
    /// Failure or delay warning.
    pub kind: NoticeKind,
    /// Queue ID of the original message (`X-Ringmail-Queue-ID`): letters and
    /// digits, at most 32 (ringmail's are 12 hex digits).
    pub queue_id: &'a str,
    /// The ENVID the sender gave (decoded): `Original-Envelope-Id`.
    pub envid: Option<&'a str>,
    /// Envelope sender of the original, without angle brackets. Empty (the
    /// null sender) means no notice.
    pub original_sender: &'a str,
    /// The original message in queue wire form: CRLF line ends, dot-stuffed
    /// once, no final `.` line.
    pub original_wire: &'a [u8],
    /// When the original was queued (`Arrival-Date`).
    pub arrival: DateTime<Local>,
    /// The recipients to report, at least one, in the order to list them.
    pub recipients: &'a [FailedRecipient],
    /// This host's name: `Reporting-MTA`, `From: MAILER-DAEMON@...`, the
    /// Message-ID.
    pub myhostname: &'a str,
    /// The notice's `Date:` and the time part of its Message-ID.
    pub now: DateTime<Local>,
    /// Return the whole original (`message/rfc822`) rather than its header
    /// fields only (`text/rfc822-headers`). Ignored for delay warnings and
    /// success notices.
    pub return_full_message: bool,
    /// Largest original, in octets after un-stuffing, returned whole; a
    /// larger one is returned as headers only. See
    /// [`DEFAULT_BOUNCE_SIZE_LIMIT`].
    pub bounce_size_limit: usize,
}

/// A notice ready to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// Envelope sender of the notice: always empty, the null sender `<>`.
    pub sender: String,
    /// Envelope recipient of the notice: the original sender.
    pub recipient: String,
    /// The notice in queue wire form: CRLF line ends, dot-stuffed once,
    /// ending in CRLF, without the final `.` line.
    pub wire: Vec<u8>,
    /// Its Message-ID without angle brackets, for the log line.
    pub message_id: String,
    /// What delivery must ask of the receiver (8BITMIME, SMTPUTF8).
    pub flags: MessageFlags,
}

impl Bounce {
    /// The notice's envelope: null sender, the original sender as the only
    /// recipient.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            sender: self.sender.clone(),
            recipients: vec![self.recipient.clone()],
        }
    }
}

/// Builds the notice for `req`.
///
/// Returns `Ok(None)` when the original sender is the null sender (empty,
/// or written `<>`): a bounce is never bounced. Refuses a request with no
/// recipient, a bad `myhostname` or queue ID, or an address that cannot be
/// reported (see [`BounceError`]). Never panics, whatever the original's
/// bytes.
pub fn build(req: &BounceRequest<'_>) -> Result<Option<Bounce>, BounceError> {
    let sender = req.original_sender;
    if sender.is_empty() || sender == "<>" {
        return Ok(None);
    }
    check_request(req)?;
    let returned = original::returned(
        req.original_wire,
        req.kind,
        req.return_full_message,
        req.bounce_size_limit,
    );
    let text = text::human_text(req.kind, req.myhostname, req.recipients, &returned);
    let report = report::delivery_status(req)?;
    let assembled = mime::assemble(req, &text, &report, &returned)?;
    Ok(Some(Bounce {
        sender: String::new(),
        recipient: sender.to_string(),
        wire: assembled.wire,
        message_id: assembled.message_id,
        flags: assembled.flags,
    }))
}

/// Checks the parts of `req` that go into fields as they are.
fn check_request(req: &BounceRequest<'_>) -> Result<(), BounceError> {
    let host = req.myhostname;
    let host_ok = !host.is_empty()
        && host.len() <= MAX_HOSTNAME
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !host_ok {
        return Err(BounceError::BadHostname(host.to_string()));
    }
    let id = req.queue_id;
    if id.is_empty() || id.len() > MAX_QUEUE_ID || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(BounceError::BadQueueId(id.to_string()));
    }
    if req.recipients.is_empty() {
        return Err(BounceError::NoRecipients);
    }
    report::typed_address(req.original_sender)?;
    for rcpt in req.recipients {
        report::typed_address(&rcpt.address)?;
        if let Some(orcpt) = &rcpt.original_recipient {
            report::original_recipient(orcpt)?;
        }
    }
    if let Some(envid) = req.envid {
        if !crate::model::dsn::valid_envid(envid) {
            return Err(BounceError::BadEnvid(envid.to_string()));
        }
    }
    Ok(())
}
