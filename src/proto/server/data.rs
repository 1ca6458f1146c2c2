//! The DATA phase: finding the end of the data and undoing dot-stuffing
//! (RFC 5321 section 4.5.2) over arbitrary read boundaries. The bytes go
//! to the [`Body`], which applies the line-end rule.
//!
//! The end of the data is `<CRLF>.<CRLF>`: a line that is only a dot, the
//! line before it (if any) ended in CRLF, and the dot line ends in CRLF.
//! Only [`LineEnds::Lenient`] also takes `.` after or before a bare LF. A
//! line starting with a dot loses that dot, except a lone dot that is not
//! the end (the client did not stuff it, so it is content). At most two
//! bytes are ever left unconsumed: `.` or `.` CR at the start of a line at
//! the end of the input.

use super::body::{Bare, Body};
use super::config::LineEnds;
use crate::mail::bytes::find_byte;

/// What the reader found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DataEnd {
    /// Not yet: more input is needed.
    More,
    /// The end of the data (its bytes are consumed).
    End,
    /// A bare line end [`LineEnds::Reject`] refuses.
    Bare(Bare),
}

/// Where the reader is within the data.
#[derive(Debug)]
pub(crate) struct DataReader {
    mode: LineEnds,
    line_start: bool,
    /// The line before the current one ended in CRLF (or there was none).
    crlf_before: bool,
}

impl DataReader {
    pub(crate) fn new(mode: LineEnds) -> DataReader {
        DataReader {
            mode,
            line_start: true,
            crlf_before: true,
        }
    }

    /// Starts a new message.
    pub(crate) fn reset(&mut self) {
        self.line_start = true;
        self.crlf_before = true;
    }

    /// Consumes data from `input` into `body`: how many bytes, and why it
    /// stopped.
    pub(crate) fn feed(&mut self, input: &[u8], body: &mut Body) -> (usize, DataEnd) {
        let lenient = self.mode == LineEnds::Lenient;
        let mut pos = 0;
        while pos < input.len() {
            if self.line_start && input[pos] == b'.' {
                let (dot_line, len, crlf) = match &input[pos + 1..] {
                    [] | [b'\r'] => return (pos, DataEnd::More),
                    [b'\r', b'\n', ..] => (true, 3, true),
                    [b'\n', ..] => (true, 2, false),
                    _ => (false, 1, false),
                };
                if dot_line && (lenient || (crlf && self.crlf_before)) {
                    return (pos + len, DataEnd::End);
                }
                if dot_line {
                    // A lone dot that is not the end: content, dot kept.
                    if let Err(bare) = body.push(&input[pos..pos + len]) {
                        return (pos, DataEnd::Bare(bare));
                    }
                    self.crlf_before = crlf;
                    pos += len;
                    continue;
                }
                pos += 1; // the stuffed dot
            }
            let rest = &input[pos..];
            let (piece, line_end) = match find_byte(b'\n', rest) {
                Some(lf) => (&rest[..=lf], true),
                None => (rest, false),
            };
            let crlf = line_end
                && match piece.len() {
                    1 => body.ends_with_cr(),
                    n => piece[n - 2] == b'\r',
                };
            if let Err(bare) = body.push(piece) {
                return (pos, DataEnd::Bare(bare));
            }
            pos += piece.len();
            self.line_start = line_end;
            if line_end {
                self.crlf_before = crlf;
            }
        }
        (pos, DataEnd::More)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::server::config::Capture;

    /// Feeds `pieces` as the socket loop does (unconsumed bytes offered
    /// again with the next piece); the content and what followed the end,
    /// or the refusal.
    fn run(mode: LineEnds, pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>), String> {
        let mut r = DataReader::new(mode);
        let mut body = Body::new(None, Capture::Whole, mode);
        let mut pending = Vec::new();
        for (k, piece) in pieces.iter().enumerate() {
            pending.extend_from_slice(piece);
            let (n, end) = r.feed(&pending, &mut body);
            pending.drain(..n);
            match end {
                DataEnd::End => {
                    let mut after = pending;
                    for p in &pieces[k + 1..] {
                        after.extend_from_slice(p);
                    }
                    return Ok((body.content().to_vec(), after));
                }
                DataEnd::Bare(b) => return Err(format!("{b:?}")),
                DataEnd::More => assert!(pending.len() <= 2, "kept {pending:?}"),
            }
        }
        Err("no end".into())
    }

    /// Splits `wire` at every pair of positions; all must agree.
    fn every_split(mode: LineEnds, wire: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
        let whole = run(mode, &[wire]);
        for i in 0..=wire.len() {
            for j in i..=wire.len() {
                let got = run(mode, &[&wire[..i], &wire[i..j], &wire[j..]]);
                assert_eq!(got, whole, "{mode:?} split at {i}, {j}");
            }
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(run(mode, &bytes), whole, "{mode:?} byte by byte");
        whole
    }

    const WIRE: &[u8] = b"Subject: x\r\n\r\n..leading dot\r\n..\r\n.x\r\n\r\n.\r\nQUIT\r\n";
    const CONTENT: &[u8] = b"Subject: x\r\n\r\n.leading dot\r\n.\r\nx\r\n\r\n";

    #[test]
    fn unstuffs_and_stops_at_the_marker_in_every_mode() {
        for mode in [LineEnds::Lenient, LineEnds::Normalize, LineEnds::Reject] {
            let (content, after) = every_split(mode, WIRE).unwrap();
            assert_eq!(content, CONTENT);
            assert_eq!(after, b"QUIT\r\n");
        }
        let (content, _) = every_split(LineEnds::Reject, b".\r\n").unwrap();
        assert!(content.is_empty());
    }

    #[test]
    fn smuggling_attempts() {
        // Each of these hides an end marker with a bare line end; only the
        // real <CRLF>.<CRLF> at the end may end the data.
        let attempts: [&[u8]; 5] = [
            b"a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n",
            b"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n",
            b"a\n.\nMAIL FROM:<x@y>\r\n.\r\n",
            b"a\r\n.\rMAIL FROM:<x@y>\r\n.\r\n",
            b"a\r.\r\nMAIL FROM:<x@y>\r\n.\r\n",
        ];
        for wire in attempts {
            let (content, after) = every_split(LineEnds::Normalize, wire).unwrap();
            assert!(after.is_empty(), "{wire:?} ended early");
            assert!(content.ends_with(b"MAIL FROM:<x@y>\r\n"), "{content:?}");
            assert!(every_split(LineEnds::Reject, wire).is_err(), "{wire:?}");
        }
        // Lenient takes the first bare-LF marker, as Postfix's `no` does.
        let (content, after) = run(LineEnds::Lenient, &[attempts[0]]).unwrap();
        assert_eq!(
            (content.as_slice(), after.as_slice()),
            (&b"a\r\n"[..], &b"MAIL FROM:<x@y>\r\n.\r\n"[..])
        );
    }

    #[test]
    fn normalize_keeps_lone_dots_and_makes_crlf() {
        let (content, _) = every_split(LineEnds::Normalize, b"a\n.\nb\r\n.\r\n").unwrap();
        assert_eq!(content, b"a\r\n.\r\nb\r\n");
        let (content, _) = every_split(LineEnds::Normalize, b"a\n..b\n.\r\n.\r\n").unwrap();
        assert_eq!(
            content, b"a\r\n.b\r\n.\r\n",
            "after a bare LF, .\\r\\n is content"
        );
    }

    #[test]
    fn lenient_is_postfix_no() {
        let (content, after) = every_split(LineEnds::Lenient, b"a\nb\n.\nX").unwrap();
        assert_eq!(
            (content.as_slice(), after.as_slice()),
            (&b"a\nb\n"[..], &b"X"[..])
        );
    }

    #[test]
    fn dot_then_cr_without_lf_is_content() {
        let (content, _) = every_split(LineEnds::Normalize, b".\rx\r\n.\r\n").unwrap();
        assert_eq!(content, b"\rx\r\n");
        assert!(run(LineEnds::Reject, &[b".\rx\r\n.\r\n"]).is_err());
    }
}
