//! A server reply (RFC 5321 section 4.2) and its enhanced status code
//! (RFC 3463).

use std::fmt;

/// An RFC 3463 enhanced status code, `class.subject.detail`, e.g. `5.1.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// 0 to 999.
    pub subject: u16,
    /// 0 to 999.
    pub detail: u16,
}

impl EnhancedCode {
    /// Builds a code from its three parts (not checked).
    pub const fn new(class: u8, subject: u16, detail: u16) -> EnhancedCode {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }

    /// Reads an enhanced code at the start of `text`: a class digit of 2, 4
    /// or 5, a dot, one to three digits, a dot, one to three digits, then
    /// the end of `text` or a space. Returns the code and the text after it
    /// (without the one separating space).
    pub fn parse_prefix(text: &str) -> Option<(EnhancedCode, &str)> {
        let b = text.as_bytes();
        let class = match b.first()? {
            c @ (b'2' | b'4' | b'5') => c - b'0',
            _ => return None,
        };
        if b.get(1) != Some(&b'.') {
            return None;
        }
        let (subject, i) = number(b, 2)?;
        if b.get(i) != Some(&b'.') {
            return None;
        }
        let (detail, j) = number(b, i + 1)?;
        let rest = match b.get(j) {
            None => "",
            Some(b' ') => text.get(j + 1..)?,
            Some(_) => return None,
        };
        Some((EnhancedCode::new(class, subject, detail), rest))
    }
}

/// One to three ASCII digits starting at `at`: their value and the index
/// after them.
fn number(b: &[u8], at: usize) -> Option<(u16, usize)> {
    let digits = b
        .get(at..)?
        .iter()
        .take(4)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 || digits > 3 {
        return None;
    }
    let value = b[at..at + digits]
        .iter()
        .fold(0u16, |v, c| v * 10 + u16::from(c - b'0'));
    Some((value, at + digits))
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// A complete server reply: a three-digit code and one or more lines of text.
///
/// `lines` holds the text after `NNN-` / `NNN ` of each line (empty for a
/// bare `NNN` line), decoded lossily as UTF-8. When the first line's text
/// starts with an enhanced code whose class matches the reply code's first
/// digit (`250 2.1.0 Ok`), the code goes to `enhanced` and is removed from
/// that line; it is also removed from the following lines that start with
/// the same code (`550-5.7.1 a` / `550 5.7.1 b` gives lines `a`, `b`). A
/// code on later lines only, or of another class, stays in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The reply code, 200 to 599.
    pub code: u16,
    /// The enhanced status code, when the server gave one.
    pub enhanced: Option<EnhancedCode>,
    /// The text of each line, without code, separator or line end.
    pub lines: Vec<String>,
}

impl Reply {
    /// Builds a reply from its parts, taking the enhanced code out of the
    /// text as described on [`Reply`].
    pub fn new(code: u16, mut lines: Vec<String>) -> Reply {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let enhanced = lines
            .first()
            .and_then(|l| EnhancedCode::parse_prefix(l))
            .map(|(e, _)| e)
            .filter(|e| u16::from(e.class) == code / 100);
        if let Some(e) = enhanced {
            for line in &mut lines {
                match EnhancedCode::parse_prefix(line) {
                    Some((found, rest)) if found == e => *line = rest.to_string(),
                    _ => {}
                }
            }
        }
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// 2xx: the command succeeded.
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }

    /// 3xx: go on (354 after DATA).
    pub fn is_intermediate(&self) -> bool {
        self.code / 100 == 3
    }

    /// 4xx: failed for now; try again later.
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }

    /// 5xx: failed for good.
    pub fn is_permanent(&self) -> bool {
        self.code / 100 == 5
    }

    /// A 5xx that blames the conversation, not the message or an address:
    /// `500` (syntax error, line too long), `502` (not implemented), `503`
    /// (bad sequence, as Haraka answers a command pipelined after the end
    /// of DATA), `504` (parameter not implemented), `555` (MAIL/RCPT
    /// parameters not recognised), and `501` only with an enhanced code
    /// 5.5.x (a `501 5.1.3` is a bad address). Such a refusal comes from
    /// the client's protocol choice, so it must never bounce a message:
    /// the recipient is deferred instead. `550 5.5.0` (Microsoft's "mailbox
    /// unavailable") is not one: the basic code decides.
    pub fn is_protocol_error(&self) -> bool {
        match self.code {
            500 | 502 | 503 | 504 | 555 => true,
            501 => self
                .enhanced
                .is_some_and(|e| e.class == 5 && e.subject == 5),
            _ => false,
        }
    }

    /// The text of all lines joined with single spaces (empty lines skipped).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for l in self.lines.iter().filter(|l| !l.is_empty()) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(l);
        }
        out
    }

    /// The status for `dsn=` in logs and for a DSN: the enhanced code when
    /// the server gave one, otherwise `2.0.0`, `4.0.0` or `5.0.0` from the
    /// reply code's class (a 3xx reply counts as `4.0.0`: it is never a final
    /// answer).
    pub fn dsn(&self) -> String {
        match self.enhanced {
            Some(e) => e.to_string(),
            None => match self.code / 100 {
                2 => "2.0.0".to_string(),
                5 => "5.0.0".to_string(),
                _ => "4.0.0".to_string(),
            },
        }
    }
}

/// Postfix's log form: the code, the enhanced code if any, then the text of
/// all lines as [`Reply::text`] joins them, e.g. `250 2.0.0 Ok: queued as X`.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        let mut lines = self.lines.iter().filter(|l| !l.is_empty());
        if let Some(first) = lines.next() {
            write!(f, " {first}")?;
            for l in lines {
                write!(f, " {l}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, lines: &[&str]) -> Reply {
        Reply::new(code, lines.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn enhanced_code_prefix() {
        let (e, rest) = EnhancedCode::parse_prefix("5.1.1 no such user").unwrap();
        assert_eq!(e, EnhancedCode::new(5, 1, 1));
        assert_eq!(rest, "no such user");
        assert_eq!(
            EnhancedCode::parse_prefix("4.123.999"),
            Some((EnhancedCode::new(4, 123, 999), ""))
        );
        for bad in [
            "3.0.0 x",
            "2.0 x",
            "2..0 x",
            "2.1000.0 x",
            "2.0.0x",
            "2.0.0.",
            "22.0.0",
            "",
            "Ok",
        ] {
            assert_eq!(EnhancedCode::parse_prefix(bad), None, "{bad:?}");
        }
        assert_eq!(EnhancedCode::new(2, 0, 0).to_string(), "2.0.0");
    }

    #[test]
    fn enhanced_code_taken_from_first_line_and_matching_continuations() {
        let r = reply(550, &["5.7.1 first", "5.7.1 second", "5.1.1 other"]);
        assert_eq!(r.enhanced, Some(EnhancedCode::new(5, 7, 1)));
        assert_eq!(r.lines, ["first", "second", "5.1.1 other"]);
        assert_eq!(r.to_string(), "550 5.7.1 first second 5.1.1 other");
    }

    #[test]
    fn enhanced_code_of_other_class_stays_in_text() {
        let r = reply(250, &["5.0.0 odd"]);
        assert_eq!(r.enhanced, None);
        assert_eq!(r.lines, ["5.0.0 odd"]);
        assert_eq!(r.dsn(), "2.0.0");
        let r = reply(250, &["hello", "2.0.0 later"]);
        assert_eq!(r.enhanced, None);
        assert_eq!(r.text(), "hello 2.0.0 later");
    }

    #[test]
    fn classes_and_dsn() {
        let ok = reply(250, &["2.0.0 Ok: queued as X"]);
        assert!(ok.is_positive() && !ok.is_transient() && !ok.is_permanent());
        assert_eq!(ok.dsn(), "2.0.0");
        assert_eq!(ok.to_string(), "250 2.0.0 Ok: queued as X");
        let go = reply(354, &["End data with <CR><LF>.<CR><LF>"]);
        assert!(go.is_intermediate() && !go.is_positive());
        assert_eq!(go.dsn(), "4.0.0");
        let later = reply(451, &["try later"]);
        assert!(later.is_transient());
        assert_eq!(later.dsn(), "4.0.0");
        let never = reply(550, &["5.1.1 unknown"]);
        assert!(never.is_permanent());
        assert_eq!(never.dsn(), "5.1.1");
    }

    #[test]
    fn display_without_text() {
        assert_eq!(reply(250, &[""]).to_string(), "250");
        assert_eq!(reply(250, &[]).lines, [""]);
        assert_eq!(reply(250, &["2.0.0"]).to_string(), "250 2.0.0");
        assert_eq!(reply(250, &["a", "", "b"]).to_string(), "250 a b");
    }
}
