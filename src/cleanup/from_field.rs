//! The `From:` field added when a message has none.

use crate::mail::MAX_HEADER_LINE;

use super::encoded_word::encode_words;

/// Preferred longest line (RFC 5322 2.1.1) for the folded, encoded form.
const FOLD_AT: usize = 78;

/// The complete `From:` field, CRLF included, for `sender` with an optional
/// display name. The null sender becomes `MAILER-DAEMON@myhostname`.
///
/// The display name loses control characters (no header injection). It is
/// written as is when it is only atoms and spaces, quoted when it has
/// specials, and RFC 2047-encoded (folded over several lines) when it is
/// not ASCII or too long for one line.
pub fn from_field(sender: &str, full_name: Option<&str>, myhostname: &str) -> String {
    let address = if sender.is_empty() {
        format!("MAILER-DAEMON@{myhostname}")
    } else {
        sender.to_string()
    };
    let name: String = full_name
        .unwrap_or("")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let name = name.trim();
    if name.is_empty() {
        return format!("From: {address}\r\n");
    }
    let phrase = if name.is_ascii() {
        if is_plain_phrase(name) {
            name.to_string()
        } else {
            quote(name)
        }
    } else {
        String::new()
    };
    let fits = "From: ".len() + phrase.len() + address.len() + 3 <= MAX_HEADER_LINE;
    if !phrase.is_empty() && fits {
        format!("From: {phrase} <{address}>\r\n")
    } else {
        let words = encode_words(name, "\r\n ");
        let last_line = match words.rfind('\n') {
            Some(lf) => words.len() - lf,
            None => "From: ".len() + words.len(),
        };
        let gap = if last_line + address.len() + 3 <= FOLD_AT {
            " "
        } else {
            "\r\n "
        };
        format!("From: {words}{gap}<{address}>\r\n")
    }
}

/// True when `name` is atoms separated by spaces (no quoting needed) and
/// does not look like an encoded word.
fn is_plain_phrase(name: &str) -> bool {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    name.chars().all(|c| c == ' ' || atext(c)) && !name.contains("=?")
}

/// `name` as an RFC 5322 quoted-string.
fn quote(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_and_no_names() {
        assert_eq!(
            from_field("a@x.example", None, "h"),
            "From: a@x.example\r\n"
        );
        assert_eq!(
            from_field("a@x.example", Some("  "), "h"),
            "From: a@x.example\r\n"
        );
        assert_eq!(
            from_field("a@x.example", Some("Alice Smith"), "h"),
            "From: Alice Smith <a@x.example>\r\n"
        );
    }

    #[test]
    fn names_with_specials_are_quoted() {
        assert_eq!(
            from_field("a@x.example", Some("Smith, Alice \"Al\" J."), "h"),
            "From: \"Smith, Alice \\\"Al\\\" J.\" <a@x.example>\r\n"
        );
        assert_eq!(
            from_field("a@x.example", Some("back\\slash"), "h"),
            "From: \"back\\\\slash\" <a@x.example>\r\n"
        );
        assert_eq!(
            from_field("a@x.example", Some("=?x?="), "h"),
            "From: \"=?x?=\" <a@x.example>\r\n"
        );
    }

    #[test]
    fn non_ascii_names_are_encoded() {
        assert_eq!(
            from_field("j@x.example", Some("Jürgen"), "h"),
            "From: =?UTF-8?B?SsO8cmdlbg==?= <j@x.example>\r\n"
        );
        let long = format!("j@{}.example", "d".repeat(60));
        assert_eq!(
            from_field(&long, Some("Jürgen"), "h"),
            format!("From: =?UTF-8?B?SsO8cmdlbg==?=\r\n <{long}>\r\n")
        );
    }

    #[test]
    fn control_characters_cannot_inject_fields() {
        let f = from_field("a@x.example", Some("Eve\r\nBcc: victim@y.example"), "h");
        assert_eq!(f.matches("\r\n").count(), 1, "{f:?}");
        assert!(f.starts_with("From: \"Eve  Bcc: victim@y.example\" <a@x.example>"));
    }

    #[test]
    fn null_sender_is_mailer_daemon() {
        assert_eq!(
            from_field("", None, "mx.example"),
            "From: MAILER-DAEMON@mx.example\r\n"
        );
    }

    #[test]
    fn very_long_names_are_folded() {
        let name = "x".repeat(2000);
        let f = from_field("a@x.example", Some(&name), "h");
        assert!(f.lines().all(|l| l.len() <= 78), "{f}");
        assert!(f.ends_with(" <a@x.example>\r\n"));
    }
}
