//! A reply the server sends: code, RFC 3463 enhanced status code, text;
//! and how it is written.

use std::borrow::Cow;

/// One single-line reply: `code [enhanced] text`. The enhanced code is
/// written only when the session announces ENHANCEDSTATUSCODES; an empty
/// one is never written (`354`, `334`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code (200 to 599).
    pub code: u16,
    /// The RFC 3463 code, such as `5.1.1`, or empty.
    pub enhanced: Cow<'static, str>,
    /// The text. Control characters are replaced by blanks when written,
    /// so a driver's text can never end the line or start another reply.
    pub text: Cow<'static, str>,
}

impl Reply {
    /// A reply from static parts (for constants).
    pub const fn fixed(code: u16, enhanced: &'static str, text: &'static str) -> Reply {
        Reply {
            code,
            enhanced: Cow::Borrowed(enhanced),
            text: Cow::Borrowed(text),
        }
    }

    /// A reply with a text made at run time.
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: Cow::Borrowed(enhanced),
            text: Cow::Owned(text.into()),
        }
    }

    /// True for 4xx and 5xx replies.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// True for the intermediate replies that ask the client to go on
    /// (`334` in AUTH, `354` after DATA).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// Appends the reply, CRLF included. A code outside 200..=599 is
    /// written as 451 (a driver's mistake must not break the protocol).
    pub fn write(&self, enhanced: bool, out: &mut Vec<u8>) {
        let code = if (200..600).contains(&self.code) {
            self.code
        } else {
            451
        };
        let digit = |n: u16| b'0' + (n % 10) as u8;
        out.extend_from_slice(&[digit(code / 100), digit(code / 10), digit(code), b' ']);
        if enhanced && !self.enhanced.is_empty() {
            push_clean(&self.enhanced, out);
            out.push(b' ');
        }
        push_clean(&self.text, out);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `text` with every control character made a blank.
fn push_clean(text: &str, out: &mut Vec<u8>) {
    out.extend(
        text.bytes()
            .map(|b| if b.is_ascii_control() { b' ' } else { b }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Reply, enhanced: bool) -> String {
        let mut out = Vec::new();
        r.write(enhanced, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn written_with_and_without_enhanced_codes() {
        let r = Reply::fixed(550, "5.1.1", "no such user");
        assert_eq!(text(&r, true), "550 5.1.1 no such user\r\n");
        assert_eq!(text(&r, false), "550 no such user\r\n");
        let r = Reply::fixed(354, "", "go ahead");
        assert_eq!(text(&r, true), "354 go ahead\r\n");
        assert!(r.is_intermediate() && !r.is_error());
    }

    #[test]
    fn driver_text_cannot_break_the_line() {
        let r = Reply::new(451, "4.3.0", "a\r\n250 b");
        assert_eq!(text(&r, true), "451 4.3.0 a  250 b\r\n");
        let r = Reply::new(99, "", "x");
        assert_eq!(text(&r, true), "451 x\r\n");
    }
}
