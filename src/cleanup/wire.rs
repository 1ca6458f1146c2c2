//! The canonical wire form: CRLF line ends and dot-stuffing (RFC 5321
//! 4.5.2), written in one pass into a buffer sized up front.
//!
//! **Line ends.** A bare CR and a bare LF each become CRLF, as a CRLF
//! does (the rule of [`crate::mail::line`]): the stored form has no CR or
//! LF outside a CRLF, so no receiver can read a line end where another
//! reads content (SMTP smuggling, RFC 5321 2.3.8). Dot-stuffing runs on
//! the lines so made, so a `\r.\r` in the input becomes a stuffed `..`
//! line, never an end of data.

use crate::mail::line::{line_end, max_line_ends};

/// Most bytes [`push_lines`] can write for `input`: each line may gain a
/// CR or an LF and a stuffed dot, and an unterminated last line a CRLF.
pub fn max_wire_len(input: &[u8]) -> usize {
    input.len() + 2 * max_line_ends(input) + 3
}

/// Appends `input`, which starts at the beginning of a line, to `out` with
/// every line ending in CRLF (a line ends at CRLF, at a bare LF or at a
/// bare CR), a `.` doubled at the start of each line, and a CRLF added
/// when the last line has no line end. Empty input writes nothing.
pub fn push_lines(out: &mut Vec<u8>, input: &[u8]) {
    // Lines that are already canonical (CRLF, no leading dot) are not
    // copied one by one: `input[copied..]` is written in one piece at the
    // next change or at the end, so a message in wire form (most of them)
    // is one copy.
    let mut copied = 0;
    let mut line = 0;
    while line < input.len() {
        if input[line] == b'.' {
            out.extend_from_slice(&input[copied..line]);
            out.push(b'.');
            copied = line;
        }
        let (content, end) = line_end(&input[line..]);
        if end != 2 {
            // A bare CR or LF, or no line end at all: CRLF instead.
            out.extend_from_slice(&input[copied..line + content]);
            out.extend_from_slice(b"\r\n");
            copied = line + content + end;
        }
        line += content + end;
    }
    out.extend_from_slice(&input[copied..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(max_wire_len(input));
        let cap = out.capacity();
        push_lines(&mut out, input);
        assert!(out.len() <= max_wire_len(input));
        assert_eq!(out.capacity(), cap, "reallocated");
        out
    }

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(wire(b"a\nb\r\nc"), b"a\r\nb\r\nc\r\n");
        assert_eq!(wire(b"\n\n"), b"\r\n\r\n");
        assert_eq!(wire(b""), b"");
    }

    #[test]
    fn a_bare_cr_becomes_crlf() {
        assert_eq!(wire(b"bare\rcr\n"), b"bare\r\ncr\r\n");
        assert_eq!(wire(b"x\r\r\n"), b"x\r\n\r\n");
        assert_eq!(wire(b"end\r"), b"end\r\n");
        assert_eq!(wire(b"\r\r"), b"\r\n\r\n");
        assert_eq!(wire(b"\n\r"), b"\r\n\r\n");
    }

    #[test]
    fn a_smuggled_end_of_data_is_stuffed_body_text() {
        let got = wire(b"x\r.\rMAIL FROM:<evil@x.test>\r\n.\n.\r\n");
        assert_eq!(got, b"x\r\n..\r\nMAIL FROM:<evil@x.test>\r\n..\r\n..\r\n");
    }

    #[test]
    fn leading_dots_are_stuffed_once() {
        assert_eq!(wire(b".\n..x\n.y\r\nz.\n"), b"..\r\n...x\r\n..y\r\nz.\r\n");
        assert_eq!(wire(b"."), b"..\r\n");
        assert_eq!(wire(b"\n.\n"), b"\r\n..\r\n");
    }

    #[test]
    fn worst_case_fits_the_bound() {
        wire(b".\n.\n.\n.");
        wire(b"\n\n\n\n");
        wire(b".");
        wire(b".\r.\r.\r.");
        wire(b"\r\r\r\r");
    }

    #[test]
    fn output_has_crlf_only_whatever_the_input() {
        let mut rng = fastrand::Rng::with_seed(12);
        for _ in 0..2000 {
            let len = rng.usize(0..40);
            let input: Vec<u8> = (0..len).map(|_| b"a.\r\n "[rng.usize(0..5)]).collect();
            let out = wire(&input);
            assert_eq!(
                crate::mail::line::check_wire_form(&out),
                Ok(()),
                "{input:?} -> {out:?}"
            );
        }
    }

    /// The line-by-line form of [`push_lines`] (one copy per line), which
    /// the run-copying version must match byte for byte.
    fn reference(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = input;
        while let Some(&first) = rest.first() {
            if first == b'.' {
                out.push(b'.');
            }
            let (content, end) = line_end(rest);
            out.extend_from_slice(&rest[..content]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[content + end..];
        }
        out
    }

    #[test]
    fn runs_are_copied_as_the_lines_would_be() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..3000 {
            // Mostly canonical lines, now and then a bare CR or LF, a
            // leading dot or an unterminated end; up to a few KB.
            let mut input = Vec::new();
            for _ in 0..rng.usize(0..60) {
                if rng.u8(..) < 30 {
                    input.push(b'.');
                }
                input.extend((0..rng.usize(0..90)).map(|_| b"ab .x"[rng.usize(0..5)]));
                input.extend_from_slice(match rng.u8(..) {
                    0..=9 => b"\n",
                    10..=19 => b"\r",
                    20..=24 => b"",
                    _ => b"\r\n",
                });
            }
            assert_eq!(wire(&input), reference(&input), "{input:?}");
        }
    }

    #[test]
    fn line_ends_are_counted_across_chunks() {
        let mut rng = fastrand::Rng::with_seed(3);
        for len in [0, 1, 254, 255, 256, 510, 511, 4096, 70_001] {
            // Dense enough to fill a chunk's byte-wide count.
            let text: Vec<u8> = (0..len).map(|_| b"\r\nx"[rng.usize(0..3)]).collect();
            let naive = text.iter().filter(|&&b| b == b'\r' || b == b'\n').count();
            assert_eq!(max_line_ends(&text), naive, "length {len}");
        }
        assert_eq!(max_line_ends(&[b'\n'; 1000]), 1000);
    }
}
