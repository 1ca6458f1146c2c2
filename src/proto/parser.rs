//! The incremental reply parser: bytes in as they arrive, complete replies
//! out in order.

use super::error::ProtoError;
use super::reply::Reply;

/// Longest accepted reply line in bytes, without its line end. RFC 5321
/// allows 512 with the CRLF; real servers exceed that a little.
pub const MAX_LINE: usize = 4096;

/// Most lines accepted in one multi-line reply.
pub const MAX_LINES: usize = 1000;

/// How much of an offending line an error quotes.
const QUOTE: usize = 80;

/// Splits a byte stream from the server into [`Reply`] values.
///
/// Lines end in CRLF or a bare LF. A reply is one or more `NNN-text` lines
/// followed by one `NNN text` (or bare `NNN`) line, all with the same code
/// in 200..=599. Anything else is an error, and so is a line longer than
/// [`MAX_LINE`] or a reply of more than [`MAX_LINES`] lines. After an error
/// the parser is dead: every later [`ReplyParser::next_reply`] returns the
/// same error, and the caller drops the connection.
#[derive(Debug, Default)]
pub struct ReplyParser {
    /// Received bytes; those before `start` are consumed.
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`.
    start: usize,
    /// Bytes after `start` already searched for a line end.
    scanned: usize,
    /// The lines of a multi-line reply read so far: its code and texts.
    partial: Option<(u16, Vec<String>)>,
    /// The error that killed the parser.
    failed: Option<ProtoError>,
}

impl ReplyParser {
    /// An empty parser.
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Appends bytes received from the server. Ignored after an error.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > MAX_LINE {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// True when bytes were received that are not part of a reply returned
    /// yet (an incomplete line or the first lines of a multi-line reply).
    ///
    /// After STARTTLS's 220 this must be false: bytes the server sent before
    /// the TLS handshake must not be taken as replies inside it (the
    /// STARTTLS command injection attack, CVE-2011-0411), so the caller
    /// drops the connection instead. It is also how a driver notices a
    /// server that talks without being asked.
    pub fn has_pending(&self) -> bool {
        self.start < self.buf.len() || self.partial.is_some()
    }

    /// The next complete reply, `Ok(None)` when more input is needed, or the
    /// error that makes the stream unusable.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ProtoError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            let pending = &self.buf[self.start..];
            let Some(at) = pending[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = pending.len();
                // One byte more than a line: room for the CR of a CRLF.
                if pending.len() > MAX_LINE + 1 {
                    return self.fail(ProtoError::LineTooLong { max: MAX_LINE });
                }
                return Ok(None);
            };
            let end = self.scanned + at;
            let line = pending[..end]
                .strip_suffix(b"\r")
                .unwrap_or(&pending[..end]);
            let parsed = parse_line(line);
            self.start += end + 1;
            self.scanned = 0;
            let (code, last, text) = match parsed {
                Ok(p) => p,
                Err(e) => return self.fail(e),
            };
            let (first, mut lines) = self.partial.take().unwrap_or((code, Vec::new()));
            if code != first {
                return self.fail(ProtoError::MixedCodes { first, then: code });
            }
            if lines.len() == MAX_LINES {
                return self.fail(ProtoError::TooManyLines { max: MAX_LINES });
            }
            lines.push(text);
            if last {
                return Ok(Some(Reply::new(code, lines)));
            }
            self.partial = Some((code, lines));
        }
    }

    /// Kills the parser with `e` and returns it.
    fn fail(&mut self, e: ProtoError) -> Result<Option<Reply>, ProtoError> {
        self.buf = Vec::new();
        self.start = 0;
        self.scanned = 0;
        self.partial = None;
        self.failed = Some(e.clone());
        Err(e)
    }
}

/// One line without its line end: the code, whether it is the last line of
/// its reply, and the text.
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ProtoError> {
    let bad = |reason| ProtoError::BadReply {
        reason,
        line: String::from_utf8_lossy(&line[..line.len().min(QUOTE)]).into_owned(),
    };
    if line.len() > MAX_LINE {
        return Err(ProtoError::LineTooLong { max: MAX_LINE });
    }
    let digits = match line.get(..3) {
        Some(d) if d.iter().all(u8::is_ascii_digit) => d,
        _ => return Err(bad("no three-digit code")),
    };
    let code = digits
        .iter()
        .fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
    if !(200..=599).contains(&code) {
        return Err(bad("code outside 200..=599"));
    }
    let last = match line.get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        Some(_) => return Err(bad("no space or hyphen after the code")),
    };
    let text = line.get(4..).unwrap_or_default();
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::reply::EnhancedCode;

    /// Feeds `input` in one go and collects every reply up to the first
    /// error or the end of complete replies.
    fn parse_all(input: &[u8]) -> (Vec<Reply>, Option<ProtoError>) {
        let mut p = ReplyParser::new();
        p.feed(input);
        drain(&mut p)
    }

    fn drain(p: &mut ReplyParser) -> (Vec<Reply>, Option<ProtoError>) {
        let mut out = Vec::new();
        loop {
            match p.next_reply() {
                Ok(Some(r)) => out.push(r),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn single_and_multi_line() {
        let (replies, err) = parse_all(
            b"220 mx.example.net ESMTP\r\n250-mx.example.net\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
        );
        assert_eq!(err, None);
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0].code, 220);
        assert_eq!(replies[0].lines, ["mx.example.net ESMTP"]);
        assert_eq!(replies[1].code, 250);
        assert_eq!(
            replies[1].lines,
            ["mx.example.net", "PIPELINING", "SIZE 1000"]
        );
    }

    #[test]
    fn bare_lf_bare_code_and_empty_continuation() {
        let (replies, err) = parse_all(b"250\n250-\n250 end\r\n354\r\n");
        assert_eq!(err, None);
        assert_eq!(replies.len(), 3);
        assert_eq!(replies[0].lines, [""]);
        assert_eq!(replies[0].to_string(), "250");
        assert_eq!(replies[1].lines, ["", "end"]);
        assert_eq!(replies[2].code, 354);
    }

    #[test]
    fn enhanced_code_is_extracted() {
        let (replies, _) = parse_all(b"250 2.1.5 Ok\r\n");
        assert_eq!(replies[0].enhanced, Some(EnhancedCode::new(2, 1, 5)));
        assert_eq!(replies[0].lines, ["Ok"]);
    }

    #[test]
    fn byte_by_byte_equals_all_at_once() {
        let input: &[u8] =
            b"220 hi\r\n250-a\r\n250-b\n250 2.0.0 c\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n";
        let (whole, err) = parse_all(input);
        assert_eq!(err, None);
        assert_eq!(whole.len(), 3);
        let mut p = ReplyParser::new();
        let mut got = Vec::new();
        for (i, b) in input.iter().enumerate() {
            p.feed(std::slice::from_ref(b));
            let (rs, e) = drain(&mut p);
            assert_eq!(e, None);
            // A reply appears exactly when its last LF arrives.
            if !rs.is_empty() {
                assert_eq!(*b, b'\n', "reply completed at byte {i}");
            }
            got.extend(rs);
        }
        assert_eq!(got, whole);
        assert!(!p.has_pending());
    }

    #[test]
    fn incomplete_reply_waits() {
        let mut p = ReplyParser::new();
        p.feed(b"250-first\r\n250 sec");
        assert_eq!(p.next_reply(), Ok(None));
        assert!(p.has_pending());
        p.feed(b"ond\r");
        assert_eq!(p.next_reply(), Ok(None));
        p.feed(b"\n");
        let r = p.next_reply().unwrap().unwrap();
        assert_eq!(r.lines, ["first", "second"]);
        assert_eq!(p.next_reply(), Ok(None));
        assert!(!p.has_pending());
    }

    #[test]
    fn garbage_is_an_error_and_sticks() {
        for (input, reason) in [
            (&b"hello\r\n"[..], "no three-digit code"),
            (b"25 ok\r\n", "no three-digit code"),
            (b"2x0 ok\r\n", "no three-digit code"),
            (b"199 ok\r\n", "code outside 200..=599"),
            (b"600 ok\r\n", "code outside 200..=599"),
            (b"250_ok\r\n", "no space or hyphen after the code"),
            (b"\r\n", "no three-digit code"),
        ] {
            let (replies, err) = parse_all(input);
            assert!(replies.is_empty());
            match err {
                Some(ProtoError::BadReply { reason: r, .. }) => assert_eq!(r, reason, "{input:?}"),
                other => panic!("{input:?}: {other:?}"),
            }
        }
        let mut p = ReplyParser::new();
        p.feed(b"250 ok\r\nxyz\r\n250 fine\r\n");
        assert_eq!(p.next_reply().unwrap().unwrap().code, 250);
        let e = p.next_reply().unwrap_err();
        assert!(e.is_transient());
        p.feed(b"250 more\r\n");
        assert_eq!(p.next_reply(), Err(e));
    }

    #[test]
    fn mixed_codes_are_an_error() {
        let (replies, err) = parse_all(b"250-a\r\n251 b\r\n");
        assert!(replies.is_empty());
        assert_eq!(
            err,
            Some(ProtoError::MixedCodes {
                first: 250,
                then: 251
            })
        );
    }

    #[test]
    fn long_lines() {
        let mut ok = b"250 ".to_vec();
        ok.resize(MAX_LINE, b'x');
        ok.extend_from_slice(b"\r\n");
        let (replies, err) = parse_all(&ok);
        assert_eq!(err, None);
        assert_eq!(replies[0].lines[0].len(), MAX_LINE - 4);

        let mut long = b"250 ".to_vec();
        long.resize(MAX_LINE + 1, b'x');
        long.extend_from_slice(b"\r\n");
        let (_, err) = parse_all(&long);
        assert_eq!(err, Some(ProtoError::LineTooLong { max: MAX_LINE }));

        // Without a line end, the error comes as soon as the limit is passed.
        let mut p = ReplyParser::new();
        p.feed(b"250-");
        let chunk = [b'y'; 1000];
        let mut fed = 4;
        loop {
            match p.next_reply() {
                Ok(None) => {
                    assert!(fed <= MAX_LINE + 1);
                    p.feed(&chunk);
                    fed += chunk.len();
                }
                Err(e) => {
                    assert_eq!(e, ProtoError::LineTooLong { max: MAX_LINE });
                    break;
                }
                Ok(Some(r)) => panic!("{r:?}"),
            }
        }
        assert!(!p.has_pending(), "memory released");
    }

    #[test]
    fn too_many_lines() {
        let mut input = b"250-x\r\n".repeat(MAX_LINES);
        input.extend_from_slice(b"250 x\r\n");
        let (_, err) = parse_all(&input);
        assert_eq!(err, Some(ProtoError::TooManyLines { max: MAX_LINES }));
        let mut input = b"250-x\r\n".repeat(MAX_LINES - 1);
        input.extend_from_slice(b"250 x\r\n");
        let (replies, err) = parse_all(&input);
        assert_eq!(err, None);
        assert_eq!(replies[0].lines.len(), MAX_LINES);
    }

    #[test]
    fn non_utf8_is_decoded_lossily() {
        let (replies, err) = parse_all(b"550 caf\xe9 \xff\r\n");
        assert_eq!(err, None);
        assert_eq!(replies[0].lines, ["caf\u{fffd} \u{fffd}"]);
    }

    #[test]
    fn buffer_is_compacted() {
        let mut p = ReplyParser::new();
        for _ in 0..10_000 {
            p.feed(b"250-a\r\n");
            assert_eq!(p.next_reply(), Ok(None));
            p.feed(b"250 b\r\n250 c");
            assert_eq!(p.next_reply().unwrap().unwrap().lines.len(), 2);
            p.feed(b"\r\n");
            assert_eq!(p.next_reply().unwrap().unwrap().lines, ["c"]);
        }
        assert!(p.buf.capacity() < 4 * MAX_LINE);
    }
}
