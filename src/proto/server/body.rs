//! The message being received, shared by DATA and BDAT: its bytes (all of
//! them or the header section), its size, the size limit, and the line-end
//! rule applied on the way in ([`LineEnds`]). Each byte is copied once,
//! from the driver's input into the message buffer.

use super::config::{Capture, LineEnds, HEAD_LIMIT};
use crate::mail::bytes::find_byte;

/// A bare line end found where [`LineEnds::Reject`] forbids it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bare {
    /// An LF without CR before it.
    Lf,
    /// A CR without LF after it.
    Cr,
}

/// The message of the current transaction.
#[derive(Debug)]
pub(crate) struct Body {
    content: Vec<u8>,
    size: u64,
    limit: Option<u64>,
    capture: Capture,
    mode: LineEnds,
    head_done: bool,
    /// The last byte taken was a CR.
    last_cr: bool,
    /// Line ends normalised (bare LF made CRLF).
    normalized: u32,
}

impl Body {
    pub(crate) fn new(limit: Option<u64>, capture: Capture, mode: LineEnds) -> Body {
        Body {
            content: Vec::new(),
            size: 0,
            limit,
            capture,
            mode,
            head_done: false,
            last_cr: false,
            normalized: 0,
        }
    }

    /// Starts a new message; `hint` is the client's SIZE, used to reserve
    /// memory (never more than the limit).
    pub(crate) fn reset(&mut self, hint: Option<u64>) {
        self.content.clear();
        self.size = 0;
        self.head_done = false;
        self.last_cr = false;
        if self.capture == Capture::Whole {
            let cap = hint.unwrap_or(0).min(self.limit.unwrap_or(0)).min(64 << 20);
            self.content.reserve(usize::try_from(cap).unwrap_or(0));
        }
    }

    /// Takes `bytes` of message content, applying the line-end rule.
    pub(crate) fn push(&mut self, mut bytes: &[u8]) -> Result<(), Bare> {
        if self.mode == LineEnds::Lenient {
            self.take(bytes);
            return Ok(());
        }
        while !bytes.is_empty() {
            if self.last_cr && bytes[0] != b'\n' && self.mode == LineEnds::Reject {
                return Err(Bare::Cr);
            }
            let Some(lf) = find_byte(b'\n', bytes) else {
                self.check_cr(bytes, bytes.len() - 1)?;
                self.take(bytes);
                return Ok(());
            };
            let line = &bytes[..lf];
            let crlf = match line.last() {
                Some(&b) => b == b'\r',
                None => self.last_cr,
            };
            self.check_cr(line, line.len().saturating_sub(1))?;
            if crlf {
                self.take(&bytes[..=lf]);
            } else if self.mode == LineEnds::Reject {
                return Err(Bare::Lf);
            } else {
                self.take(line);
                self.take(b"\r\n");
                self.normalized = self.normalized.saturating_add(1);
            }
            bytes = &bytes[lf + 1..];
        }
        Ok(())
    }

    /// In [`LineEnds::Reject`], refuses a CR in `bytes[..upto]` (the byte
    /// at `upto`, the last, may be a CR still to be followed by LF).
    fn check_cr(&self, bytes: &[u8], upto: usize) -> Result<(), Bare> {
        if self.mode == LineEnds::Reject && find_byte(b'\r', &bytes[..upto]).is_some() {
            return Err(Bare::Cr);
        }
        Ok(())
    }

    /// The message ended: a CR left at its very end is bare.
    pub(crate) fn finish(&self) -> Result<(), Bare> {
        if self.mode == LineEnds::Reject && self.last_cr {
            return Err(Bare::Cr);
        }
        Ok(())
    }

    /// The last byte taken was a CR.
    pub(crate) fn ends_with_cr(&self) -> bool {
        self.last_cr
    }

    fn take(&mut self, bytes: &[u8]) {
        let Some(&last) = bytes.last() else {
            return;
        };
        self.last_cr = last == b'\r';
        self.size = self.size.saturating_add(bytes.len() as u64);
        if self.is_oversize() {
            if self.content.capacity() > 0 {
                self.content = Vec::new();
            }
            return;
        }
        match self.capture {
            Capture::Whole => self.content.extend_from_slice(bytes),
            Capture::Head if !self.head_done => {
                let from = self.content.len();
                let room = HEAD_LIMIT - from;
                self.content
                    .extend_from_slice(&bytes[..bytes.len().min(room)]);
                self.head_done =
                    self.content.len() >= HEAD_LIMIT || has_header_end(&self.content, from);
            }
            Capture::Head => {}
        }
    }

    /// The message size so far (as the driver gets it).
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// True when the message is larger than the limit.
    pub(crate) fn is_oversize(&self) -> bool {
        self.limit.is_some_and(|max| self.size > max)
    }

    /// What was kept (empty once oversize).
    pub(crate) fn content(&self) -> &[u8] {
        &self.content
    }

    /// Moves the kept bytes out.
    pub(crate) fn take_content(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.content)
    }

    /// How many bare LFs were made CRLF, over the whole session.
    pub(crate) fn normalized(&self) -> u32 {
        self.normalized
    }
}

/// True when `buf` contains the end of a header section (an empty line)
/// at or after `from`, looking back two bytes so that the empty line may
/// have been appended in pieces.
fn has_header_end(buf: &[u8], from: usize) -> bool {
    if buf.starts_with(b"\r\n") || buf.starts_with(b"\n") {
        return true;
    }
    let mut at = from.saturating_sub(2);
    while let Some(i) = find_byte(b'\n', &buf[at..]) {
        let next = &buf[at + i + 1..];
        if next.starts_with(b"\n") || next.starts_with(b"\r\n") {
            return true;
        }
        at += i + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(mode: LineEnds) -> Body {
        Body::new(None, Capture::Whole, mode)
    }

    /// Pushes `pieces`; the content, or the first refusal.
    fn run(mode: LineEnds, pieces: &[&[u8]]) -> Result<Vec<u8>, Bare> {
        let mut b = body(mode);
        for p in pieces {
            b.push(p)?;
        }
        b.finish()?;
        Ok(b.content().to_vec())
    }

    #[test]
    fn line_end_modes() {
        let input: &[&[u8]] = &[b"a\r", b"\nb\nc\rd\r\n"];
        assert_eq!(run(LineEnds::Lenient, input).unwrap(), b"a\r\nb\nc\rd\r\n");
        assert_eq!(
            run(LineEnds::Normalize, input).unwrap(),
            b"a\r\nb\r\nc\rd\r\n"
        );
        assert_eq!(run(LineEnds::Reject, input), Err(Bare::Lf));
        assert_eq!(run(LineEnds::Reject, &[b"a\rb\r\n"]), Err(Bare::Cr));
        assert_eq!(run(LineEnds::Reject, &[b"a\r", b"b"]), Err(Bare::Cr));
        assert_eq!(run(LineEnds::Reject, &[b"a\r"]), Err(Bare::Cr));
        assert_eq!(run(LineEnds::Reject, &[b"a\r", b"\n"]).unwrap(), b"a\r\n");
        assert_eq!(run(LineEnds::Normalize, &[b"\n\n"]).unwrap(), b"\r\n\r\n");
        assert_eq!(
            run(LineEnds::Normalize, &[b"x\r", b"\n"]).unwrap(),
            b"x\r\n"
        );
    }

    #[test]
    fn head_capture_and_limit() {
        let mut b = Body::new(None, Capture::Head, LineEnds::Normalize);
        b.push(b"A: b\r\n\r").unwrap();
        b.push(b"\nbody\r\n").unwrap();
        assert_eq!(b.content(), b"A: b\r\n\r\n");
        assert_eq!(b.size(), 14);
        let mut b = Body::new(None, Capture::Head, LineEnds::Lenient);
        for _ in 0..100 {
            b.push(&[b'x'; 1000]).unwrap();
        }
        assert_eq!(b.content().len(), HEAD_LIMIT);
        let mut b = Body::new(Some(3), Capture::Whole, LineEnds::Normalize);
        b.reset(Some(1 << 40));
        b.push(b"abc").unwrap();
        assert!(!b.is_oversize());
        b.push(b"\n").unwrap();
        assert!(b.is_oversize() && b.content().is_empty());
        assert_eq!(b.size(), 5);
    }

    #[test]
    fn header_end() {
        assert!(has_header_end(b"\r\nbody", 0));
        assert!(has_header_end(b"A: b\n\nbody", 0));
        assert!(!has_header_end(b"A: b\r\nC: d\r\n", 0));
        assert!(has_header_end(b"A: b\r\n\r\n", 7));
    }
}
