//! The third part of a notice: the original message, or its header
//! section, taken from the queue wire form.

use crate::mail::bytes::find_byte;
use crate::mail::{split_message, MAX_HEADER_LINE};

use super::NoticeKind;

/// What the notice returns of the original message, already un-stuffed
/// (content as the sender wrote it, CRLF line ends as queued).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Returned {
    /// The whole message (`message/rfc822`).
    Full(Vec<u8>),
    /// Only its header fields (`text/rfc822-headers`), and why.
    Headers(Vec<u8>, HeadersOnly),
    /// Nothing: the original has no header field that can be returned.
    Nothing,
}

/// Why only the header section of the original is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeadersOnly {
    /// The caller asked for headers only, or the notice is a delay
    /// warning (the message is still queued and will be delivered).
    Requested,
    /// The original is larger than the configured limit.
    TooLarge {
        /// Size of the original in octets, un-stuffed.
        size: usize,
        /// `bounce_size_limit`.
        limit: usize,
    },
    /// The original has a NUL byte, a CR not before LF, a line longer than
    /// 998 octets or a malformed header section, so it cannot be returned
    /// as a message.
    Unsuitable,
}

impl Returned {
    /// The content of the part, empty for [`Returned::Nothing`].
    pub(super) fn content(&self) -> &[u8] {
        match self {
            Returned::Full(c) | Returned::Headers(c, _) => c,
            Returned::Nothing => &[],
        }
    }
}

/// Decides what to return of `wire` (the queue wire form: dot-stuffed once,
/// CRLF line ends) and extracts it. Delay warnings and success notices
/// return headers only; failures the whole message when `full` is asked
/// for, its un-stuffed size is at most `limit` and it is fit to be returned
/// as it is.
pub(super) fn returned(wire: &[u8], kind: NoticeKind, full: bool, limit: usize) -> Returned {
    if kind != NoticeKind::Failure || !full {
        return headers_only(wire, HeadersOnly::Requested);
    }
    let size = unstuffed_len(wire);
    if size > limit {
        return headers_only(wire, HeadersOnly::TooLarge { size, limit });
    }
    let mut message = unstuff(wire);
    if !fit_to_return(&message) {
        return headers_only(wire, HeadersOnly::Unsuitable);
    }
    end_with_crlf(&mut message);
    Returned::Full(message)
}

/// The header fields of `wire`, un-stuffed, a CR not before LF replaced by
/// a space, or [`Returned::Nothing`] when it has none or they cannot be
/// split.
fn headers_only(wire: &[u8], why: HeadersOnly) -> Returned {
    let mut section = unstuff(&wire[..header_end(wire)]);
    // Cleanup stores none, but a message queued by an older version may
    // have one: kept, it would end a line where the original had none.
    let bare: Vec<usize> = bare_crs(&section).collect();
    for i in bare {
        section[i] = b' ';
    }
    let Ok(parts) = split_message(&section) else {
        return Returned::Nothing;
    };
    if parts.fields.is_empty() {
        return Returned::Nothing;
    }
    let mut fields: Vec<u8> = parts.fields.iter().flat_map(|f| f.raw).copied().collect();
    end_with_crlf(&mut fields);
    Returned::Headers(fields, why)
}

/// True when `message` can be attached as it is: no NUL byte, no CR
/// that does not end a line, no line longer than 998 octets, and a header
/// section that splits into at least one field.
fn fit_to_return(message: &[u8]) -> bool {
    find_byte(0, message).is_none()
        && bare_crs(message).next().is_none()
        && message
            .split(|&b| b == b'\n')
            .all(|line| line.strip_suffix(b"\r").unwrap_or(line).len() <= MAX_HEADER_LINE)
        && split_message(message).is_ok_and(|parts| !parts.fields.is_empty())
}

/// Positions of the CRs in `text` that are not followed by LF.
fn bare_crs(text: &[u8]) -> impl Iterator<Item = usize> + '_ {
    text.iter()
        .enumerate()
        .filter(move |&(i, &b)| b == b'\r' && text.get(i + 1) != Some(&b'\n'))
        .map(|(i, _)| i)
}

/// Where the header section of `wire` ends: the start of its first empty
/// line, or the end of the input when it has none.
pub(super) fn header_end(wire: &[u8]) -> usize {
    let mut pos = 0;
    while pos < wire.len() {
        let next = find_byte(b'\n', &wire[pos..]).map_or(wire.len(), |i| pos + i + 1);
        let line = &wire[pos..next];
        if line == b"\n" || line == b"\r\n" {
            return pos;
        }
        pos = next;
    }
    wire.len()
}

/// `wire` with the dot-stuffing undone: the first `.` of every line that
/// starts with one is removed (RFC 5321 4.5.2). Line ends stay as they are.
pub(super) fn unstuff(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut rest = wire;
    while !rest.is_empty() {
        let end = find_byte(b'\n', rest).map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        rest = &rest[end..];
    }
    out
}

/// Length of [`unstuff`]`(wire)` without building it.
fn unstuffed_len(wire: &[u8]) -> usize {
    let starts = usize::from(wire.first() == Some(&b'.'));
    let stuffed = starts + wire.windows(2).filter(|w| w == b"\n.").count();
    wire.len() - stuffed
}

/// Adds a CRLF when `text` is not empty and does not end in a line end.
fn end_with_crlf(text: &mut Vec<u8>) {
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Subject: hi\r\n..dot: field\r\n\r\n..line\r\nplain\r\n.\r\n";

    #[test]
    fn unstuffing_removes_one_leading_dot() {
        assert_eq!(
            unstuff(MSG),
            b"Subject: hi\r\n.dot: field\r\n\r\n.line\r\nplain\r\n\r\n"
        );
        assert_eq!(unstuffed_len(MSG), unstuff(MSG).len());
        assert_eq!(unstuff(b"...\r\nx.\r\n."), b"..\r\nx.\r\n");
        assert_eq!(unstuffed_len(b"...\r\nx.\r\n."), 8);
        assert_eq!(unstuff(b""), b"");
    }

    #[test]
    fn full_under_the_limit_headers_over_it() {
        let full = returned(MSG, NoticeKind::Failure, true, 1000);
        assert_eq!(full, Returned::Full(unstuff(MSG)));
        let size = unstuff(MSG).len();
        assert_eq!(
            returned(MSG, NoticeKind::Failure, true, size),
            Returned::Full(unstuff(MSG))
        );
        assert_eq!(
            returned(MSG, NoticeKind::Failure, true, size - 1),
            Returned::Headers(
                b"Subject: hi\r\n.dot: field\r\n".to_vec(),
                HeadersOnly::TooLarge {
                    size,
                    limit: size - 1
                }
            )
        );
        assert!(matches!(
            returned(MSG, NoticeKind::Failure, false, 1000),
            Returned::Headers(_, HeadersOnly::Requested)
        ));
        assert!(matches!(
            returned(MSG, NoticeKind::Delay, true, 1000),
            Returned::Headers(_, HeadersOnly::Requested)
        ));
    }

    #[test]
    fn unfit_messages_return_headers_or_nothing() {
        let long = format!("Subject: x\r\n\r\n{}\r\n", "a".repeat(999));
        assert!(matches!(
            returned(long.as_bytes(), NoticeKind::Failure, true, 1 << 20),
            Returned::Headers(_, HeadersOnly::Unsuitable)
        ));
        let cr = b"Subject: x\ry\r\n\r\nbo\rdy\r\n";
        assert_eq!(
            returned(cr, NoticeKind::Failure, true, 1 << 20),
            Returned::Headers(b"Subject: x y\r\n".to_vec(), HeadersOnly::Unsuitable)
        );
        let nul = b"Subject: x\r\n\r\nbo\0dy\r\n";
        assert!(matches!(
            returned(nul, NoticeKind::Failure, true, 1 << 20),
            Returned::Headers(_, HeadersOnly::Unsuitable)
        ));
        assert_eq!(
            returned(b"\0\r\n\r\n", NoticeKind::Failure, true, 1 << 20),
            Returned::Nothing
        );
        assert_eq!(
            returned(b"", NoticeKind::Failure, true, 1 << 20),
            Returned::Nothing
        );
        assert_eq!(
            returned(b"no header here\r\n", NoticeKind::Delay, true, 1 << 20),
            Returned::Nothing
        );
    }

    #[test]
    fn header_section_without_body_or_line_end() {
        assert_eq!(
            returned(b"A: 1\r\nB: 2", NoticeKind::Delay, true, 0),
            Returned::Headers(b"A: 1\r\nB: 2\r\n".to_vec(), HeadersOnly::Requested)
        );
        assert_eq!(
            returned(b"A: 1\nB: 2", NoticeKind::Failure, true, 100),
            Returned::Full(b"A: 1\nB: 2\r\n".to_vec())
        );
    }
}
