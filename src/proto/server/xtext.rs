//! `xtext` (RFC 3461 section 4), the encoding of ENVID, ORCPT and the AUTH
//! parameter: printable ASCII other than `+` and `=` stands for itself,
//! any other octet is `+` and two upper-case hex digits.

/// Decodes `text`, or `None` when it is not valid xtext (a byte outside
/// `!`..=`~`, a `=`, a `+` not followed by two upper-case hex digits) or
/// does not decode to UTF-8.
pub fn decode(text: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        if b == b'+' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(hex_digit(hex[0])? << 4 | hex_digit(hex[1])?);
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

fn hex_digit(h: u8) -> Option<u8> {
    match h {
        b'0'..=b'9' => Some(h - b'0'),
        b'A'..=b'F' => Some(h - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses() {
        assert_eq!(decode(b"rfc822;a+2Bb@c").as_deref(), Some("rfc822;a+b@c"));
        assert_eq!(decode(b"a+20b+3Dc").as_deref(), Some("a b=c"));
        assert_eq!(decode(b"").as_deref(), Some(""));
        for bad in [
            &b"a b"[..],
            b"a=b",
            b"+2",
            b"+2g",
            b"+zz",
            b"+ff",
            b"+FF",
            b"\x7f",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        // Control characters decode (the caller checks what it needs).
        assert_eq!(decode(b"+0D+0A").as_deref(), Some("\r\n"));
    }
}
