//! `xtext` (RFC 3461 section 4): the encoding of the ENVID and ORCPT
//! parameters on an SMTP command line. Printable ASCII other than `+` and
//! `=` stands for itself; any other octet is `+` and two upper-case hex
//! digits.

/// Decodes `text`, or `None` when it is not valid xtext (a character
/// outside `!`..`~`, a `=`, a `+` not followed by two upper-case hex
/// digits) or does not decode to UTF-8.
pub fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            let hex = bytes.get(i + 1..i + 3)?;
            let digit = |h: u8| match h {
                b'0'..=b'9' => Some(h - b'0'),
                b'A'..=b'F' => Some(h - b'A' + 10),
                _ => None,
            };
            out.push(digit(hex[0])? << 4 | digit(hex[1])?);
            i += 3;
        } else if (b'!'..=b'~').contains(&b) && b != b'=' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes `text` as xtext.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_text() {
        for plain in ["abc", "a b+c=d", "rfc822;a@b.example", "j\u{f6}rg", ""] {
            assert_eq!(decode(&encode(plain)).as_deref(), Some(plain));
        }
        assert_eq!(encode("a b+c=d"), "a+20b+2Bc+3Dd");
        assert_eq!(decode("rfc822;a+2Bb@c").as_deref(), Some("rfc822;a+b@c"));
        for bad in ["a b", "a=b", "+2", "+2g", "+zz", "a\r\n", "+0D+0A", "+FF"] {
            let d = decode(bad);
            assert!(
                d.is_none()
                    || d.as_deref()
                        .is_some_and(|d| d.chars().any(char::is_control)),
                "{bad:?}: {d:?}"
            );
        }
        assert_eq!(decode("+FF"), None, "not UTF-8");
    }
}
