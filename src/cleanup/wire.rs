//! The canonical wire form: CRLF line ends and dot-stuffing (RFC 5321
//! 4.5.2), written in one pass into a buffer sized up front.

use crate::mail::bytes::{count_byte, find_byte};

/// Most bytes [`push_lines`] can write for `input`: each line may gain a CR
/// and a stuffed dot, and an unterminated last line a CRLF.
pub fn max_wire_len(input: &[u8]) -> usize {
    input.len() + 2 * count_byte(b'\n', input) + 3
}

/// Appends `input`, which starts at the beginning of a line, to `out` with
/// every line ending in CRLF (LF or CRLF in the input; a CR not before LF
/// stays as it is), a `.` doubled at the start of each line, and a CRLF
/// added when the last line has no line end. Empty input writes nothing.
pub fn push_lines(out: &mut Vec<u8>, mut input: &[u8]) {
    while let Some(&first) = input.first() {
        if first == b'.' {
            out.push(b'.');
        }
        match find_byte(b'\n', input) {
            Some(lf) => {
                if lf > 0 && input[lf - 1] == b'\r' {
                    out.extend_from_slice(&input[..=lf]);
                } else {
                    out.extend_from_slice(&input[..lf]);
                    out.extend_from_slice(b"\r\n");
                }
                input = &input[lf + 1..];
            }
            None => {
                out.extend_from_slice(input);
                out.extend_from_slice(b"\r\n");
                return;
            }
        }
    }
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
        assert_eq!(wire(b"bare\rcr\n"), b"bare\rcr\r\n");
        assert_eq!(wire(b"x\r\r\n"), b"x\r\r\n");
        assert_eq!(wire(b""), b"");
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
    }
}
