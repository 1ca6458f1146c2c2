//! The cleanup stage: header fixes and the canonical wire form.
//!
//! [`cleanup`] takes a submitted message and its envelope and returns what
//! the queue stores: the message with Bcc removed, Message-ID, Date and From
//! added when missing, CRLF line ends (a bare CR or LF becomes CRLF),
//! dot-stuffed once (no final `.` line), plus the flags delivery needs
//! (8BITMIME, SMTPUTF8). No I/O.
//!
//! - [`headers`]: which fields stay and which are added.
//! - [`wire`]: CRLF line ends (bare CR and LF included) and dot-stuffing.
//! - [`message_id`], [`date`], [`from_field`], [`encoded_word`]: the
//!   text of added fields.

pub mod date;
pub mod encoded_word;
pub mod from_field;
pub mod headers;
pub mod intake;
pub mod message_id;
pub mod wire;

use crate::mail::{needs_smtputf8, split_message, HeaderError, MessageParts};
use crate::model::{Envelope, MessageFlags};

/// Settings and context for one [`cleanup`] call.
#[derive(Debug, Clone)]
pub struct CleanupOptions<'a> {
    /// This host's name: generated Message-IDs and `MAILER-DAEMON@`.
    pub myhostname: &'a str,
    /// Largest message accepted, in bytes, measured as submitted (the wire
    /// form may be larger: CRLF line ends, dot-stuffing, added fields).
    pub message_size_limit: u64,
    /// Display name for an added `From:` (`sendmail -F`, the user's name).
    pub full_name: Option<&'a str>,
    /// The time used for an added `Date:` and the Message-ID.
    pub now: chrono::DateTime<chrono::Local>,
}

/// A message ready to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleaned {
    /// The canonical wire form: CRLF line ends, dot-stuffed once, ending in
    /// CRLF, without the final `.` line.
    pub wire: Vec<u8>,
    /// The Message-ID without angle brackets, for the log line.
    pub message_id: String,
    /// What delivery must ask of the receiver (8BITMIME, SMTPUTF8).
    pub flags: MessageFlags,
}

/// Why a message was refused by cleanup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CleanupError {
    /// The message could not be split into header and body.
    #[error("malformed message: {0}")]
    Header(#[from] HeaderError),
    /// The message is larger than `message_size_limit`.
    #[error("message too large: {size} bytes, limit {limit}")]
    TooLarge {
        /// Size of the message as submitted, in bytes.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
}

impl CleanupError {
    /// True when retrying the same message could succeed. Never: both cases
    /// are properties of the message.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// Builds the canonical queued form of `raw` for `envelope`.
///
/// Refuses input over the size limit before looking at it, and a wire form
/// over the limit after building it. The wire form is written in one pass
/// into one buffer sized up front.
pub fn cleanup(
    raw: &[u8],
    envelope: &Envelope,
    opts: &CleanupOptions<'_>,
) -> Result<Cleaned, CleanupError> {
    let limit = opts.message_size_limit;
    let too_large = |size: usize| CleanupError::TooLarge {
        size: size as u64,
        limit,
    };
    if raw.len() as u64 > limit {
        return Err(too_large(raw.len()));
    }
    let parts = split_message(raw)?;
    cleanup_parts(&parts, envelope, opts)
}

/// [`cleanup`] for a message already split by [`split_message`], so a
/// caller that needed the headers first (pickup) does not split twice.
pub fn cleanup_parts(
    parts: &MessageParts<'_>,
    envelope: &Envelope,
    opts: &CleanupOptions<'_>,
) -> Result<Cleaned, CleanupError> {
    let plan = headers::plan_headers(parts, &envelope.sender, opts);

    // Every line of the input can grow by a CR and a stuffed dot; two
    // unterminated last lines (header, body) by a CRLF and a dot each; plus
    // the added fields and the separator.
    let input_len = parts
        .fields
        .iter()
        .map(|f| wire::max_wire_len(f.raw))
        .sum::<usize>()
        + wire::max_wire_len(parts.body);
    let capacity = input_len + 3 + plan.added.len() + 2;
    let mut out = Vec::with_capacity(capacity);
    for field in &plan.kept {
        wire::push_lines(&mut out, field);
    }
    out.extend_from_slice(plan.added.as_bytes());
    let header_len = out.len();
    out.extend_from_slice(b"\r\n");
    wire::push_lines(&mut out, parts.body);

    let mut flags = MessageFlags::default();
    if !parts.body.is_ascii() {
        flags.set(MessageFlags::BODY_8BIT);
    }
    if !out[..header_len].is_ascii() {
        flags.set(MessageFlags::HEADERS_8BIT);
    }
    let envelope_utf8 =
        needs_smtputf8(&envelope.sender) || envelope.recipients.iter().any(|r| needs_smtputf8(r));
    if envelope_utf8 {
        flags.set(MessageFlags::SMTPUTF8);
    }
    Ok(Cleaned {
        wire: out,
        message_id: plan.message_id,
        flags,
    })
}

#[cfg(test)]
mod tests;
