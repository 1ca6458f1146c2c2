//! Finding a message's Message-ID in its header section.

use std::borrow::Cow;

use crate::mail::bytes::find_byte;

/// The value of the first `Message-ID` header in `head` (the start of a
/// message), or `None` when the header section ends without one. The value
/// is the `<...>` part when there is one (folded lines joined), else the
/// trimmed value; an empty value counts as none. Invalid UTF-8 is replaced.
pub fn message_id(head: &[u8]) -> Option<Cow<'_, str>> {
    let mut pos = 0;
    while pos < head.len() {
        let end = line_end(head, pos);
        let line = trim_cr(&head[pos..end]);
        if line.is_empty() {
            return None;
        }
        if let Some(start) = value_start(line, b"message-id") {
            let mut value: Cow<'_, [u8]> = Cow::Borrowed(&line[start..]);
            let mut next = end + 1;
            while next < head.len() && matches!(head[next], b' ' | b'\t') {
                let e = line_end(head, next);
                value.to_mut().extend_from_slice(trim_cr(&head[next..e]));
                next = e + 1;
            }
            return extract(value);
        }
        pos = end + 1;
    }
    None
}

fn line_end(buf: &[u8], from: usize) -> usize {
    find_byte(b'\n', &buf[from..]).map_or(buf.len(), |i| from + i)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Where the value starts when `line` is a header field called `name`
/// (ASCII case-insensitive, blanks allowed before the colon).
fn value_start(line: &[u8], name: &[u8]) -> Option<usize> {
    if line.len() <= name.len() || !line[..name.len()].eq_ignore_ascii_case(name) {
        return None;
    }
    let mut i = name.len();
    while i < line.len() && matches!(line[i], b' ' | b'\t') {
        i += 1;
    }
    (line.get(i) == Some(&b':')).then_some(i + 1)
}

fn extract(value: Cow<'_, [u8]>) -> Option<Cow<'_, str>> {
    let (from, to) = match find_byte(b'<', &value) {
        Some(lt) => match find_byte(b'>', &value[lt..]) {
            Some(gt) => (lt, lt + gt + 1),
            None => trimmed(&value),
        },
        None => trimmed(&value),
    };
    if from >= to {
        return None;
    }
    Some(match value {
        Cow::Borrowed(v) => String::from_utf8_lossy(&v[from..to]),
        Cow::Owned(v) => Cow::Owned(String::from_utf8_lossy(&v[from..to]).into_owned()),
    })
}

fn trimmed(v: &[u8]) -> (usize, usize) {
    let from = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let to = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(from, |i| i + 1);
    (from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(head: &[u8]) -> Option<String> {
        message_id(head).map(Cow::into_owned)
    }

    #[test]
    fn finds_the_header() {
        let h = b"From: a@b\r\nMessage-ID: <1.2@x.example>\r\nSubject: s\r\n\r\nbody";
        assert_eq!(id(h).as_deref(), Some("<1.2@x.example>"));
        assert!(matches!(message_id(h), Some(Cow::Borrowed(_))));
        assert_eq!(id(b"message-id:<a@b>\n\n").as_deref(), Some("<a@b>"));
        assert_eq!(
            id(b"MESSAGE-ID : <a@b> (comment)\r\n").as_deref(),
            Some("<a@b>")
        );
        assert_eq!(
            id(b"Message-Id: no-brackets@x  \r\n\r\n").as_deref(),
            Some("no-brackets@x")
        );
    }

    #[test]
    fn folded_value() {
        let h = b"Message-ID:\r\n <folded@x>\r\nSubject: s\r\n\r\n";
        assert_eq!(id(h).as_deref(), Some("<folded@x>"));
    }

    #[test]
    fn none_when_absent_empty_or_in_the_body() {
        assert_eq!(id(b"Subject: s\r\n\r\nMessage-ID: <in@body>\r\n"), None);
        assert_eq!(id(b"Message-ID:   \r\n\r\n"), None);
        assert_eq!(id(b"Message-IDs: <x@y>\r\n\r\n"), None);
        assert_eq!(id(b"X-Message-ID: <x@y>\r\n\r\n"), None);
        assert_eq!(id(b""), None);
        assert_eq!(id(b"\r\nMessage-ID: <x@y>\r\n"), None);
    }

    #[test]
    fn truncated_head_and_bad_utf8() {
        assert_eq!(id(b"Message-ID: <cut@x>").as_deref(), Some("<cut@x>"));
        assert_eq!(
            id(b"Message-ID: <\xff@x>\r\n").as_deref(),
            Some("<\u{fffd}@x>")
        );
    }
}
