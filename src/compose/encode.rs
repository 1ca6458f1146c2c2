//! Encoding rendered text for the wire: header fields folded and, when not
//! ASCII, written as RFC 2047 encoded-words (only the display names of
//! address fields, so the addresses stay readable); text bodies sent as
//! 7bit when they can be and quoted-printable otherwise, so no line is over
//! 998 octets and 8-bit text survives any relay.

use base64::Engine;

/// Longest line of a 7bit body (RFC 5321 section 4.5.3.1.6, without CRLF).
const MAX_LINE: usize = 998;

/// Fold header lines at this width where there is a space (RFC 5322 2.1.1).
const FOLD_AT: usize = 78;

/// Fields whose value is an address list: only the phrases are encoded.
const ADDRESS_FIELDS: [&str; 6] = ["from", "to", "cc", "reply-to", "sender", "bcc"];

/// `Name: value\r\n`, encoded and folded.
pub fn header_field(name: &str, value: &str) -> String {
    let address = ADDRESS_FIELDS.contains(&name.to_ascii_lowercase().as_str());
    let encoded = if value.is_ascii() {
        value.to_string()
    } else if address {
        encode_address_list(value)
    } else {
        encoded_words(value)
    };
    let folded = fold(name, &encoded);
    if address || folded.split("\r\n").all(|l| l.len() <= MAX_LINE) {
        return folded;
    }
    // A word too long to fold (a long URL, a merge field without spaces):
    // encoded-words split anywhere, so no line passes 998 octets.
    fold(name, &encoded_words(value))
}

/// Folds `name: value` at spaces so lines stay near 78 octets; a word
/// longer than that stays whole.
fn fold(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 8);
    out.push_str(name);
    out.push(':');
    let mut line_len = out.len();
    for (i, word) in value.split(' ').enumerate() {
        if word.is_empty() && i > 0 {
            continue;
        }
        if line_len + 1 + word.len() > FOLD_AT && line_len > name.len() + 1 {
            out.push_str("\r\n");
            line_len = 0;
        }
        out.push(' ');
        out.push_str(word);
        line_len += 1 + word.len();
    }
    out.push_str("\r\n");
    out
}

/// The whole value as `=?utf-8?b?...?=` words, each at most 75 octets,
/// split on character boundaries.
fn encoded_words(value: &str) -> String {
    // 75 - len("=?utf-8?b?" "?=") = 63 base64 characters = 45 octets.
    const CHUNK: usize = 45;
    let mut words = Vec::new();
    let mut start = 0;
    while start < value.len() {
        let mut end = (start + CHUNK).min(value.len());
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(&value.as_bytes()[start..end]);
        words.push(format!("=?utf-8?b?{b64}?="));
        start = end;
    }
    words.join(" ")
}

/// Encodes the display names in an address list (`Name <addr>, ...`),
/// leaving the addresses as they are (an internationalised address needs
/// SMTPUTF8, not encoding).
fn encode_address_list(value: &str) -> String {
    split_addresses(value)
        .into_iter()
        .map(|a| {
            let a = a.trim();
            match a.rfind('<') {
                Some(lt) if a.ends_with('>') => {
                    let phrase = a[..lt].trim().trim_matches('"');
                    let addr = &a[lt..];
                    if phrase.is_empty() {
                        addr.to_string()
                    } else if phrase.is_ascii() {
                        format!("{} {addr}", quote_phrase(phrase))
                    } else {
                        format!("{} {addr}", encoded_words(phrase))
                    }
                }
                _ => a.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A display name as a quoted string when it needs one.
fn quote_phrase(phrase: &str) -> String {
    let special = |c: char| "()<>[]:;@\\,.\"".contains(c);
    if phrase.chars().any(special) {
        format!("\"{}\"", phrase.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        phrase.to_string()
    }
}

/// Splits an address list on commas outside quotes and angle brackets.
fn split_addresses(value: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut angle) = (Vec::new(), 0, false, false);
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

/// A rendered text body for the wire: its Content-Transfer-Encoding and
/// the encoded bytes (CRLF line ends, ending with CRLF).
pub fn text_body(text: &str) -> (&'static str, Vec<u8>) {
    let mut crlf = String::with_capacity(text.len() + text.len() / 32 + 2);
    for line in text.split('\n') {
        crlf.push_str(line.strip_suffix('\r').unwrap_or(line));
        crlf.push_str("\r\n");
    }
    // split('\n') of "a\n" gives ["a", ""]: drop the extra empty line.
    if text.ends_with('\n') {
        crlf.truncate(crlf.len() - 2);
    }
    let long_line = crlf.split("\r\n").any(|l| l.len() > MAX_LINE);
    if crlf.is_ascii() && !long_line {
        ("7bit", crlf.into_bytes())
    } else {
        let mut qp = quoted_printable::encode(crlf.as_bytes());
        if !qp.ends_with(b"\r\n") {
            qp.extend_from_slice(b"\r\n");
        }
        ("quoted-printable", qp)
    }
}

/// `bytes` with LF line ends turned into CRLF (an opaque part as written).
pub fn crlf_lines(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 40 + 2);
    for &b in bytes {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_headers_fold_at_spaces() {
        let long = "word ".repeat(30);
        let h = header_field("Subject", long.trim());
        assert!(h.lines().all(|l| l.len() <= 78), "{h}");
        assert!(h.ends_with("\r\n"));
        assert_eq!(h.matches("word").count(), 30);
        assert_eq!(header_field("Subject", "Hi"), "Subject: Hi\r\n");
    }

    #[test]
    fn unfoldable_headers_are_split_into_encoded_words() {
        let long = "x".repeat(3000);
        let h = header_field("Subject", &long);
        assert!(h.split("\r\n").all(|l| l.len() <= 998), "{}", h.len());
        assert!(h.contains("=?utf-8?b?"));
    }

    #[test]
    fn non_ascii_headers_become_encoded_words() {
        let h = header_field("Subject", "Café für Sie");
        assert!(h.is_ascii() && h.contains("=?utf-8?b?"), "{h}");
        let h = header_field("To", "Zoë Müller <zoe@example.net>, bob@example.net");
        assert!(
            h.contains("<zoe@example.net>") && h.contains("bob@example.net"),
            "{h}"
        );
        assert!(h.is_ascii(), "{h}");
        let h = header_field("From", "\"News, Inc.\" <n@example.com>");
        assert_eq!(
            h, "From: \"News, Inc.\" <n@example.com>\r\n",
            "ASCII kept as written"
        );
        assert_eq!(
            encode_address_list("\"News, Inc.\" <n@example.com>, Zoë <z@example.net>"),
            "\"News, Inc.\" <n@example.com>, =?utf-8?b?Wm/Dqw==?= <z@example.net>"
        );
    }

    #[test]
    fn bodies_are_7bit_or_quoted_printable() {
        let (cte, b) = text_body("Hello\nWorld\n");
        assert_eq!((cte, b.as_slice()), ("7bit", &b"Hello\r\nWorld\r\n"[..]));
        let (cte, b) = text_body("Café\n");
        assert_eq!(cte, "quoted-printable");
        assert_eq!(b, b"Caf=C3=A9\r\n");
        let long = "x".repeat(2000);
        let (cte, b) = text_body(&long);
        assert_eq!(cte, "quoted-printable");
        assert!(b.split(|&c| c == b'\n').all(|l| l.len() <= 78));
        let back = quoted_printable::decode(&b, quoted_printable::ParseMode::Strict).unwrap();
        assert_eq!(back, format!("{long}\r\n").into_bytes());
    }
}
