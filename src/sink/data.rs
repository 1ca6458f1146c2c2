//! The DATA phase: finding the end marker and undoing dot-stuffing over
//! arbitrary read boundaries, counting the size, keeping the start of the
//! message (or all of it).
//!
//! Lines end at LF (a CR before it is kept as content). A line that starts
//! with a dot loses that dot; a line that is only a dot (`.` CRLF, or `.` LF,
//! tolerated as Postfix does) ends the message. The only bytes ever left
//! unconsumed are a dot, or a dot and a CR, at the start of a line at the
//! end of the input: up to two bytes the caller keeps for the next call.

use super::scan::{find_byte, has_header_end};

/// How much of the message is kept when not all of it is wanted: enough
/// for any sane header section.
pub(crate) const HEAD_LIMIT: usize = 64 * 1024;

/// State of one message being received.
#[derive(Debug)]
pub(crate) struct DataReader {
    at_line_start: bool,
    size: u64,
    limit: Option<u64>,
    keep_all: bool,
    head_done: bool,
    content: Vec<u8>,
}

impl DataReader {
    /// A reader for messages of at most `limit` bytes, keeping whole
    /// messages when `keep_all`, else only their header sections.
    pub(crate) fn new(limit: Option<u64>, keep_all: bool) -> Self {
        DataReader {
            at_line_start: true,
            size: 0,
            limit,
            keep_all,
            head_done: false,
            content: Vec::new(),
        }
    }

    /// Starts a new message, keeping the allocated buffer.
    pub(crate) fn reset(&mut self) {
        self.at_line_start = true;
        self.size = 0;
        self.head_done = false;
        self.content.clear();
    }

    /// Consumes message bytes from `input`. Returns how many bytes were
    /// consumed and whether the end marker was (its bytes are consumed).
    pub(crate) fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        let mut pos = 0;
        while pos < input.len() {
            if self.at_line_start && input[pos] == b'.' {
                match &input[pos + 1..] {
                    [b'\n', ..] => return (pos + 2, true),
                    [b'\r', b'\n', ..] => return (pos + 3, true),
                    [] | [b'\r'] => return (pos, false),
                    _ => pos += 1, // a stuffed dot: drop it
                }
            }
            let rest = &input[pos..];
            match find_byte(b'\n', rest) {
                Some(i) => {
                    self.take(&rest[..=i]);
                    pos += i + 1;
                    self.at_line_start = true;
                }
                None => {
                    self.take(rest);
                    pos = input.len();
                    self.at_line_start = false;
                }
            }
        }
        (pos, false)
    }

    fn take(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.is_oversize() {
            if !self.content.is_empty() {
                self.content = Vec::new();
            }
            return;
        }
        if self.keep_all {
            self.content.extend_from_slice(bytes);
        } else if !self.head_done {
            let room = HEAD_LIMIT - self.content.len();
            let from = self.content.len();
            self.content
                .extend_from_slice(&bytes[..bytes.len().min(room)]);
            self.head_done =
                self.content.len() >= HEAD_LIMIT || has_header_end(&self.content, from);
        }
    }

    /// The message's size so far, dot-unstuffed.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// True when the message is larger than the limit.
    pub(crate) fn is_oversize(&self) -> bool {
        self.limit.is_some_and(|max| self.size > max)
    }

    /// What was kept: the whole message when keeping all, else its start
    /// (at least the header section, up to [`HEAD_LIMIT`]). Empty once the
    /// message is oversize.
    pub(crate) fn content(&self) -> &[u8] {
        &self.content
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in the given pieces the way the socket loop does
    /// (unconsumed bytes are offered again with the next piece); returns
    /// the content, the size and the bytes after the end marker.
    fn run(reader: &mut DataReader, pieces: &[&[u8]]) -> Option<(Vec<u8>, u64, Vec<u8>)> {
        let mut pending = Vec::new();
        for (k, piece) in pieces.iter().enumerate() {
            pending.extend_from_slice(piece);
            let (n, end) = reader.feed(&pending);
            pending.drain(..n);
            if end {
                let mut after = pending;
                for p in &pieces[k + 1..] {
                    after.extend_from_slice(p);
                }
                return Some((reader.content().to_vec(), reader.size(), after));
            }
            assert!(pending.len() <= 2, "kept {pending:?}");
        }
        None
    }

    /// Stuffed lines, a stuffed lone dot, then the end marker and a command.
    const WIRE: &[u8] = b"Subject: x\r\n\r\n..leading dot\r\n..\r\n.x\r\n\r\n.\r\nQUIT\r\n";
    const CONTENT: &[u8] = b"Subject: x\r\n\r\n.leading dot\r\n.\r\nx\r\n\r\n";

    #[test]
    fn unstuffs_and_stops_at_the_marker_at_every_split() {
        for i in 0..=WIRE.len() {
            for j in i..=WIRE.len() {
                let mut r = DataReader::new(None, true);
                let (content, size, after) =
                    run(&mut r, &[&WIRE[..i], &WIRE[i..j], &WIRE[j..]]).unwrap();
                assert_eq!(content, CONTENT, "split at {i}, {j}");
                assert_eq!(size, CONTENT.len() as u64);
                assert_eq!(after, b"QUIT\r\n");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let pieces: Vec<&[u8]> = WIRE.chunks(1).collect();
        let mut r = DataReader::new(None, true);
        let (content, _, after) = run(&mut r, &pieces).unwrap();
        assert_eq!(content, CONTENT);
        assert_eq!(after, b"QUIT\r\n");
    }

    #[test]
    fn empty_message_and_bare_lf() {
        let mut r = DataReader::new(None, true);
        assert_eq!(r.feed(b".\r\n"), (3, true));
        assert_eq!(r.size(), 0);
        let mut r = DataReader::new(None, true);
        let (content, _, after) = run(&mut r, &[b"a\nb\n.\nX"]).unwrap();
        assert_eq!(content, b"a\nb\n");
        assert_eq!(after, b"X");
    }

    #[test]
    fn dot_then_cr_without_lf_is_content() {
        let mut r = DataReader::new(None, true);
        let (content, _, _) = run(&mut r, &[b".", b"\r", b"x\r\n.\r\n"]).unwrap();
        assert_eq!(content, b"\rx\r\n");
    }

    #[test]
    fn keeps_only_the_head_unless_asked() {
        let wire = b"Message-ID: <a@b>\r\nSubject: s\r\n\r\nbody line\r\nmore body\r\n.\r\n";
        let mut r = DataReader::new(None, false);
        let (content, size, _) = run(&mut r, &[&wire[..25], &wire[25..33], &wire[33..]]).unwrap();
        assert_eq!(content, b"Message-ID: <a@b>\r\nSubject: s\r\n\r\n");
        assert_eq!(size, (wire.len() - 3) as u64);
        // The next message reuses the reader.
        r.reset();
        let (content, _, _) = run(&mut r, &[b"\r\nno header\r\n.\r\n"]).unwrap();
        assert_eq!(content, b"\r\n");
    }

    #[test]
    fn head_is_capped() {
        let mut r = DataReader::new(None, false);
        let line = [b'x'; 1000];
        for _ in 0..100 {
            r.feed(&line);
        }
        assert_eq!(r.content().len(), HEAD_LIMIT);
        assert_eq!(r.size(), 100_000);
    }

    #[test]
    fn size_limit() {
        let mut r = DataReader::new(Some(10), true);
        let (content, size, _) = run(&mut r, &[b"0123456789\r\n.\r\n"]).unwrap();
        assert!(r.is_oversize());
        assert!(content.is_empty());
        assert_eq!(size, 12);
        let mut r = DataReader::new(Some(12), true);
        run(&mut r, &[b"0123456789\r\n.\r\n"]).unwrap();
        assert!(!r.is_oversize());
    }
}
