//! Where a line ends. One rule for the whole crate: a line ends at CRLF,
//! at a bare LF, or at a bare CR (a CR not followed by LF).
//!
//! RFC 5321 section 2.3.8 allows CR and LF in mail only together, as CRLF.
//! Receivers differ on what a bare CR or a bare LF means: some end the
//! line there, some keep the byte as content. A byte that one receiver
//! takes as content and another as a line end is how SMTP smuggling works
//! (a `\r.\r` that one server reads as the end of the data). So ringmail
//! reads every one of them as a line end, when it splits the header
//! section and when it writes the queue wire form, and what it parses is
//! what every receiver sees.

/// The line at the start of `text`: the length of its content and the
/// length of its line end (2 for CRLF, 1 for a bare LF or a bare CR, 0
/// when `text` ends without one).
pub fn line_end(text: &[u8]) -> (usize, usize) {
    match find_cr_or_lf(text) {
        Some(i) if text[i] == b'\r' && text.get(i + 1) == Some(&b'\n') => (i, 2),
        Some(i) => (i, 1),
        None => (text.len(), 0),
    }
}

/// Number of line ends in `text` by [`line_end`]'s rule, or more: every
/// CR and every LF counted. Cheap, for sizing buffers.
pub fn max_line_ends(text: &[u8]) -> usize {
    // Counted in byte-wide sums over chunks of at most 255 bytes, which the
    // compiler turns into 16- or 32-byte vector compares; a `usize` count
    // per byte (`filter().count()`) came out four bytes per step and was a
    // third of pickup's CPU for 100 KB messages.
    text.chunks(255)
        .map(|chunk| {
            chunk
                .iter()
                .fold(0u8, |n, &b| n + u8::from(b == b'\r' || b == b'\n')) as usize
        })
        .sum()
}

/// The first CR or LF in `text` (the `memchr` crate's vectorised search).
#[cfg(not(target_env = "musl"))]
fn find_cr_or_lf(text: &[u8]) -> Option<usize> {
    memchr::memchr2(b'\r', b'\n', text)
}

/// The first CR or LF in `text`: a plain loop in the static sendmail
/// command (see `mail::bytes::find_byte`).
#[cfg(target_env = "musl")]
fn find_cr_or_lf(text: &[u8]) -> Option<usize> {
    text.iter().position(|&b| b == b'\r' || b == b'\n')
}

/// What is wrong with a body that should be in queue wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireFormFault {
    /// Byte offset of the fault.
    pub offset: usize,
    /// What is wrong there.
    pub what: &'static str,
}

/// Checks that `body` is in queue wire form, as cleanup and the bounce
/// builder write it: every CR and LF part of a CRLF, every line that
/// starts with `.` stuffed (so no line is a lone `.`), and a CRLF at the
/// end unless the body is empty. Delivery asserts this in debug builds
/// before a body goes out.
pub fn check_wire_form(body: &[u8]) -> Result<(), WireFormFault> {
    let fault = |offset, what| Err(WireFormFault { offset, what });
    let mut line_start = 0;
    while line_start < body.len() {
        if body[line_start] == b'.' && body.get(line_start + 1) != Some(&b'.') {
            return fault(line_start, "a line starts with an unstuffed dot");
        }
        match line_end(&body[line_start..]) {
            (content, 2) => line_start += content + 2,
            (content, 1) if body[line_start + content] == b'\r' => {
                return fault(line_start + content, "bare CR")
            }
            (content, 1) => return fault(line_start + content, "bare LF"),
            _ => return fault(body.len(), "no CRLF at the end"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `text` by [`line_end`], with their line ends.
    fn lines(mut text: &[u8]) -> Vec<(&[u8], &[u8])> {
        let mut out = Vec::new();
        while !text.is_empty() {
            let (content, end) = line_end(text);
            out.push((&text[..content], &text[content..content + end]));
            text = &text[content + end..];
        }
        out
    }

    #[test]
    fn crlf_lf_and_bare_cr_each_end_a_line() {
        let got = lines(b"a\r\nb\nc\rd");
        let want: Vec<(&[u8], &[u8])> =
            vec![(b"a", b"\r\n"), (b"b", b"\n"), (b"c", b"\r"), (b"d", b"")];
        assert_eq!(got, want);
    }

    #[test]
    fn a_cr_before_crlf_is_a_line_of_its_own() {
        let got = lines(b"x\r\r\n\r");
        let want: Vec<(&[u8], &[u8])> = vec![(b"x", b"\r"), (b"", b"\r\n"), (b"", b"\r")];
        assert_eq!(got, want);
        assert_eq!(line_end(b"\n\r"), (0, 1));
        assert_eq!(line_end(b""), (0, 0));
    }

    #[test]
    fn the_wire_form_check_finds_each_fault() {
        assert_eq!(check_wire_form(b""), Ok(()));
        assert_eq!(check_wire_form(b"a\r\n..\r\n...x\r\n\r\n"), Ok(()));
        let what = |b: &[u8]| check_wire_form(b).unwrap_err();
        assert_eq!(what(b"a\rb\r\n").what, "bare CR");
        assert_eq!(what(b"a\rb\r\n").offset, 1);
        assert_eq!(what(b"a\r\nb\n").what, "bare LF");
        assert_eq!(what(b"a\r\n.\r\nMAIL FROM:<x>\r\n").offset, 3);
        assert_eq!(what(b".x\r\n").what, "a line starts with an unstuffed dot");
        assert_eq!(what(b"a\r\nb").what, "no CRLF at the end");
        assert_eq!(what(b"a\r").what, "bare CR");
    }

    #[test]
    fn the_bound_counts_every_cr_and_lf() {
        assert_eq!(max_line_ends(b"a\r\nb\rc\n"), 4);
        assert_eq!(max_line_ends(b"abc"), 0);
    }
}
