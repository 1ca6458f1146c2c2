//! Splitting a message into header fields and body (RFC 5322 section 2).

use super::bytes::find_byte;
use super::line::line_end;

/// Longest header line in octets, excluding its line end (RFC 5322 2.1.1).
pub const MAX_HEADER_LINE: usize = 998;

/// One header field exactly as it appears in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// The field name as written (without the colon or blanks before it).
    pub name: &'a str,
    /// The whole field: name, colon, value, continuation lines and their
    /// line ends (CRLF, LF or a bare CR as in the input; none if the input
    /// ended).
    pub raw: &'a [u8],
}

impl HeaderField<'_> {
    /// True when this field is called `name` (case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The field value after the colon: unfolded (line ends removed, the
    /// blanks after them kept), trimmed, invalid UTF-8 replaced.
    pub fn value(&self) -> String {
        let after_colon = match self.raw.iter().position(|&b| b == b':') {
            Some(i) => &self.raw[i + 1..],
            None => &[][..],
        };
        // Every CR and LF in a field is (part of) a line end: see `line`.
        let unfolded: Vec<u8> = after_colon
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        String::from_utf8_lossy(&unfolded).trim().to_string()
    }
}

/// A message split into its header fields and body, borrowing the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageParts<'a> {
    /// The header fields in input order.
    pub fields: Vec<HeaderField<'a>>,
    /// Everything after the header section (and after the empty line, when
    /// there is one).
    pub body: &'a [u8],
    /// True when an empty line ended the header section.
    pub has_separator: bool,
}

/// Why a message could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The message contains a NUL byte (not allowed anywhere in mail).
    #[error("NUL byte at offset {offset}")]
    NulByte {
        /// Byte offset of the first NUL in the input.
        offset: usize,
    },
    /// A header line is longer than 998 octets.
    #[error("header line {line} is {length} octets long (limit 998)")]
    LineTooLong {
        /// 1-based line number in the input.
        line: usize,
        /// Length of the line in octets, without its line end.
        length: usize,
    },
}

impl HeaderError {
    /// True when retrying the same input could succeed. Never: the message
    /// itself is malformed.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// Splits a message into header fields and body.
///
/// Line ends may be CRLF, LF or a bare CR, mixed ([`line`](mod@super::line): a bare
/// CR ends a line here as it does in the wire form). A first line starting with `From `
/// (an mbox separator) is dropped, as Postfix's sendmail does. The header
/// section is the longest run of field lines (a name of printable ASCII
/// except `:`, optional blanks, then `:`) and continuation lines (starting
/// with SP or HTAB, after a field). It ends at the first empty line, which
/// is consumed (`has_separator`), or at the first line that is neither,
/// which starts the body. Errors: a NUL byte anywhere; a header line longer
/// than 998 octets without its line end. Body lines may be any length.
pub fn split_message(raw: &[u8]) -> Result<MessageParts<'_>, HeaderError> {
    if let Some(offset) = find_byte(0, raw) {
        return Err(HeaderError::NulByte { offset });
    }
    let mut pos = 0;
    let mut line_no = 1;
    if raw.starts_with(b"From ") {
        pos = next_line(raw, 0).1;
        line_no = 2;
    }
    let mut fields: Vec<HeaderField<'_>> = Vec::new();
    // Start of the field being read and its name.
    let mut open: Option<(usize, &str)> = None;
    while pos < raw.len() {
        let (content_end, next) = next_line(raw, pos);
        let line = &raw[pos..content_end];
        let is_continuation = open.is_some() && matches!(line.first(), Some(b' ' | b'\t'));
        let name = if is_continuation {
            None
        } else {
            field_name(line)
        };
        if !is_continuation && name.is_none() {
            close(&mut fields, raw, &mut open, pos);
            let has_separator = line.is_empty();
            let body_start = if has_separator { next } else { pos };
            return Ok(MessageParts {
                fields,
                body: &raw[body_start..],
                has_separator,
            });
        }
        if line.len() > MAX_HEADER_LINE {
            return Err(HeaderError::LineTooLong {
                line: line_no,
                length: line.len(),
            });
        }
        if let Some(name) = name {
            close(&mut fields, raw, &mut open, pos);
            open = Some((pos, name));
        }
        pos = next;
        line_no += 1;
    }
    close(&mut fields, raw, &mut open, raw.len());
    Ok(MessageParts {
        fields,
        body: &raw[raw.len()..],
        has_separator: false,
    })
}

/// Finishes the open field (if any) at `end`.
fn close<'a>(
    fields: &mut Vec<HeaderField<'a>>,
    raw: &'a [u8],
    open: &mut Option<(usize, &'a str)>,
    end: usize,
) {
    if let Some((start, name)) = open.take() {
        fields.push(HeaderField {
            name,
            raw: &raw[start..end],
        });
    }
}

/// For the line starting at `start`: where its content ends (before its
/// line end) and where the next line starts.
fn next_line(raw: &[u8], start: usize) -> (usize, usize) {
    let (content, end) = line_end(&raw[start..]);
    (start + content, start + content + end)
}

/// The field name when `line` starts a header field.
fn field_name(line: &[u8]) -> Option<&str> {
    let name_len = line
        .iter()
        .position(|&b| !(33..=126).contains(&b) || b == b':')?;
    if name_len == 0 {
        return None;
    }
    let rest = &line[name_len..];
    let blanks = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    if rest.get(blanks) != Some(&b':') {
        return None;
    }
    std::str::from_utf8(&line[..name_len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(raw: &[u8]) -> MessageParts<'_> {
        match split_message(raw) {
            Ok(p) => p,
            Err(e) => panic!("split failed: {e}"),
        }
    }

    #[test]
    fn splits_fields_and_body_with_mixed_line_ends() {
        let raw = b"Subject: hi\r\nTo: a@x.example\n\r\nbody line\n";
        let p = split(raw);
        assert_eq!(p.fields.len(), 2);
        assert_eq!(p.fields[0].name, "Subject");
        assert_eq!(p.fields[0].raw, b"Subject: hi\r\n");
        assert_eq!(p.fields[1].raw, b"To: a@x.example\n");
        assert!(p.has_separator);
        assert_eq!(p.body, b"body line\n");
    }

    #[test]
    fn folded_values_are_unfolded_and_kept_raw() {
        let raw = b"Subject: one\r\n two\n\tthree\nX: y\n\nb";
        let p = split(raw);
        assert_eq!(p.fields.len(), 2);
        assert_eq!(p.fields[0].raw, b"Subject: one\r\n two\n\tthree\n");
        assert_eq!(p.fields[0].value(), "one two\tthree");
        assert!(p.fields[0].is("SUBJECT"));
        assert!(!p.fields[0].is("Subj"));
        assert_eq!(p.fields[1].value(), "y");
    }

    #[test]
    fn non_field_line_starts_body_without_separator() {
        let p = split(b"A: 1\nnot a header\nB: 2\n");
        assert_eq!(p.fields.len(), 1);
        assert!(!p.has_separator);
        assert_eq!(p.body, b"not a header\nB: 2\n");

        let p = split(b" leading blank\nA: 1\n");
        assert!(p.fields.is_empty());
        assert_eq!(p.body, b" leading blank\nA: 1\n");

        let p = split(b"A: 1\nB: no line end");
        assert_eq!(p.fields.len(), 2);
        assert_eq!(p.fields[1].raw, b"B: no line end");
        assert!(p.body.is_empty());
        assert!(!p.has_separator);
    }

    #[test]
    fn a_bare_cr_ends_a_header_line_as_it_does_on_the_wire() {
        // A Bcc hidden behind a bare CR is a field of its own (and so
        // removed by cleanup), not part of the Subject.
        let p = split(b"Subject: hi\rBcc: secret@x.example\r\n\rbody\r.\r");
        assert_eq!(p.fields.len(), 2);
        assert_eq!(p.fields[0].raw, b"Subject: hi\r");
        assert_eq!(p.fields[1].name, "Bcc");
        assert!(p.has_separator);
        assert_eq!(p.body, b"body\r.\r");
        // A bare CR before a blank folds; the CR goes when unfolded.
        let p = split(b"Subject: one\r two\n\n");
        assert_eq!(p.fields.len(), 1);
        assert_eq!(p.fields[0].value(), "one two");
    }

    #[test]
    fn blanks_before_colon_still_make_a_field() {
        let p = split(b"Subject : old style\n\n");
        assert_eq!(p.fields.len(), 1);
        assert_eq!(p.fields[0].name, "Subject");
        assert_eq!(p.fields[0].value(), "old style");
    }

    #[test]
    fn mbox_from_line_is_dropped() {
        let p =
            split(b"From alice@x.example Sat Nov 28 04:53:11 2026\nFrom: alice@x.example\n\nhi\n");
        assert_eq!(p.fields.len(), 1);
        assert_eq!(p.fields[0].raw, b"From: alice@x.example\n");
        assert_eq!(p.body, b"hi\n");
    }

    #[test]
    fn header_line_length_limit_is_998() {
        let ok = format!("X: {}\n\n", "a".repeat(995));
        assert_eq!(split(ok.as_bytes()).fields.len(), 1);
        let long = format!("A: 1\nX: {}\r\n\n", "a".repeat(996));
        assert_eq!(
            split_message(long.as_bytes()),
            Err(HeaderError::LineTooLong {
                line: 2,
                length: 999
            })
        );
        let long_body = format!("A: 1\n\n{}\n", "b".repeat(5000));
        assert_eq!(split(long_body.as_bytes()).body.len(), 5001);
    }

    #[test]
    fn nul_byte_is_rejected_anywhere() {
        let e = split_message(b"A: 1\n\nbo\0dy");
        assert_eq!(e, Err(HeaderError::NulByte { offset: 8 }));
        assert!(split_message(b"A\0: 1\n\n").is_err());
        assert!(!HeaderError::NulByte { offset: 0 }.is_transient());
    }
}
