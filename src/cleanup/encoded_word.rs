//! RFC 2047 "B" encoded words for non-ASCII display names.

/// The base64 alphabet (RFC 4648 section 4).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Most input bytes per encoded word: 45 bytes become 60 base64 characters,
/// and with `=?UTF-8?B?` and `?=` the word stays within the 75 allowed.
const MAX_WORD_INPUT: usize = 45;

/// Encodes `text` as one or more `=?UTF-8?B?...?=` words, each at most 75
/// characters and never splitting a character, joined by `separator`
/// (a space, or CRLF plus a space to fold).
pub fn encode_words(text: &str, separator: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2 + 16);
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(MAX_WORD_INPUT);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        if !out.is_empty() {
            out.push_str(separator);
        }
        out.push_str("=?UTF-8?B?");
        push_base64(&mut out, chunk.as_bytes());
        out.push_str("?=");
        rest = tail;
    }
    out
}

/// Appends the padded base64 encoding of `data`.
fn push_base64(out: &mut String, data: &[u8]) {
    for group in data.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if group.len() > 1 { sextet(6) } else { '=' });
        out.push(if group.len() > 2 { sextet(0) } else { '=' });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(data: &[u8]) -> String {
        let mut s = String::new();
        push_base64(&mut s, data);
        s
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(b"foob"), "Zm9vYg==");
        assert_eq!(b64(b"fooba"), "Zm9vYmE=");
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn encodes_short_names_as_one_word() {
        assert_eq!(encode_words("Jürgen", " "), "=?UTF-8?B?SsO8cmdlbg==?=");
    }

    #[test]
    fn long_names_split_on_character_boundaries() {
        let name = "ä".repeat(40); // 80 bytes
        let encoded = encode_words(&name, "\r\n ");
        let words: Vec<&str> = encoded.split("\r\n ").collect();
        assert_eq!(words.len(), 2);
        for w in &words {
            assert!(w.len() <= 75, "{w}");
            assert!(w.starts_with("=?UTF-8?B?") && w.ends_with("?="));
        }
        // 45 bytes would split an 'ä'; the first word holds 22 of them.
        assert_eq!(
            words[0],
            format!("=?UTF-8?B?{}?=", b64("ä".repeat(22).as_bytes()))
        );
    }
}
