//! Envelope addresses: parsing and RFC 5321 syntax checks.
//!
//! Addresses are returned without angle brackets, as the model's
//! [`Envelope`](crate::model::Envelope) stores them; the null sender is the
//! empty string.

/// Longest local part in octets (RFC 5321 4.5.3.1.1).
const MAX_LOCAL: usize = 64;
/// Longest whole address in octets (RFC 5321 path limit minus the brackets).
const MAX_ADDRESS: usize = 254;
/// Longest domain label in octets (RFC 1035).
const MAX_LABEL: usize = 63;

/// Why an address (or a header's address list) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The null sender (`<>` or nothing) where a real address is required.
    #[error("null address <> is not allowed here")]
    NullNotAllowed,
    /// The address breaks RFC 5321 syntax.
    #[error("bad address {address:?}: {reason}")]
    Syntax {
        /// The offending address as given (trimmed).
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The address or its local part is longer than RFC 5321 allows.
    #[error("address {address:?} too long: {part} is {length} octets, limit {limit}")]
    TooLong {
        /// The offending address.
        address: String,
        /// Which part is too long: "local part" or "address".
        part: &'static str,
        /// Its length in octets.
        length: usize,
        /// The limit in octets.
        limit: usize,
    },
    /// A control character (CR, LF, TAB, NUL, DEL, ...) anywhere in an
    /// address argument or envelope line: refused as a whole, never cut
    /// off or skipped, so a `CRLF RCPT TO:<...>` tail cannot pick the
    /// address.
    #[error("address {address:?} contains the control character {code}: refused")]
    ControlCharacter {
        /// The input as given (printed with escapes).
        address: String,
        /// The first control character, as `U+000D`.
        code: String,
    },
    /// Text outside the angle brackets that is not a plain RFC 5322
    /// display name (words, quoted strings, comments).
    #[error("bad address {address:?}: {reason}")]
    DisplayName {
        /// The input as given.
        address: String,
        /// What is wrong with the text outside the angle brackets.
        reason: &'static str,
    },
    /// An address-list header value could not be split into addresses.
    #[error("bad address list {value:?}: {reason}")]
    HeaderList {
        /// The header value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl AddressError {
    /// True when retrying the same input could succeed. Never for address
    /// errors: the input itself is bad.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// Parses one envelope address as given on a sendmail command line, an
/// `X-Sender:`/`X-Receiver:` line or a `Return-Path:` value.
///
/// Accepts `a@b`, `<a@b>`, `Name <a@b>` (the angle part is taken) and
/// surrounding blanks; a source route (`<@x,@y:a@b>`) is dropped. Strict
/// about everything outside the address, so that no text around it can
/// choose which address is used:
///
/// - a control character anywhere (CR, LF, TAB, NUL, DEL, C1) refuses the
///   whole input ([`AddressError::ControlCharacter`]);
/// - text before `<` must be a plain RFC 5322 display name: words
///   (atext, `.`, UTF-8), quoted strings and comments
///   ([`AddressError::DisplayName`] otherwise, e.g. for
///   `evil@x.example <good@y.example>`);
/// - after `>` only blanks and comments may follow.
///
/// `<>` or nothing is the null sender: `Ok(String::new())` when
/// `allow_null`, else [`AddressError::NullNotAllowed`]. An unqualified
/// address (no `@`) gets `@origin` appended. The result is checked against
/// RFC 5321 with SMTPUTF8 (RFC 6531) extensions: dot-atom or quoted-string
/// local part of at most 64 octets, a domain of letter/digit/hyphen (or
/// UTF-8) labels or an address literal, at most 254 octets in all.
pub fn parse_envelope_address(
    input: &str,
    origin: &str,
    allow_null: bool,
) -> Result<String, AddressError> {
    refuse_control(input)?;
    let trimmed = input.trim();
    let inner = angle_part(trimmed, true)?;
    parse_inner(trimmed, inner, origin, allow_null)
}

/// Parses the path argument of an SMTP `MAIL FROM:` or `RCPT TO:` command
/// (`sendmail -bs`): `<a@b>` or, as Postfix tolerates, a bare `a@b`. No
/// display name and no comment: SMTP has none. Control characters are
/// refused as in [`parse_envelope_address`]; the rest of the checks are
/// the same.
pub fn parse_smtp_path(
    input: &str,
    origin: &str,
    allow_null: bool,
) -> Result<String, AddressError> {
    refuse_control(input)?;
    let trimmed = input.trim();
    let inner = angle_part(trimmed, false)?;
    parse_inner(trimmed, inner, origin, allow_null)
}

/// Refuses `input` when it holds any control character. Every address
/// that comes from outside (arguments, envelope lines, SMTP commands)
/// passes here first.
pub fn refuse_control(input: &str) -> Result<(), AddressError> {
    match input.chars().find(|c| c.is_control()) {
        Some(c) => Err(AddressError::ControlCharacter {
            address: input.to_string(),
            code: format!("U+{:04X}", u32::from(c)),
        }),
        None => Ok(()),
    }
}

/// Checks and qualifies `inner`, the address without brackets, of the
/// input `trimmed` (for messages), which holds no control character.
fn parse_inner(
    trimmed: &str,
    inner: &str,
    origin: &str,
    allow_null: bool,
) -> Result<String, AddressError> {
    let inner = strip_source_route(inner);
    if inner.is_empty() {
        return if allow_null {
            Ok(String::new())
        } else {
            Err(AddressError::NullNotAllowed)
        };
    }
    let syntax = |reason| AddressError::Syntax {
        address: trimmed.to_string(),
        reason,
    };
    // Control characters were refused before (`refuse_control`).
    let local_len = local_part_len(inner).map_err(syntax)?;
    let local = &inner[..local_len];
    check_local_part(local).map_err(syntax)?;
    if local.len() > MAX_LOCAL {
        return Err(AddressError::TooLong {
            address: trimmed.to_string(),
            part: "local part",
            length: local.len(),
            limit: MAX_LOCAL,
        });
    }
    let address = match inner[local_len..].strip_prefix('@') {
        Some(domain) => {
            check_domain(domain).map_err(syntax)?;
            inner.to_string()
        }
        None if local_len == inner.len() => {
            check_domain(origin).map_err(|_| syntax("unqualified and no valid origin domain"))?;
            format!("{inner}@{origin}")
        }
        None => return Err(syntax("junk after the local part")),
    };
    if address.len() > MAX_ADDRESS {
        return Err(AddressError::TooLong {
            length: address.len(),
            address,
            part: "address",
            limit: MAX_ADDRESS,
        });
    }
    Ok(address)
}

/// True when the address needs SMTPUTF8 (any byte >= 0x80).
pub fn needs_smtputf8(addr: &str) -> bool {
    !addr.is_ascii()
}

/// True when `name` is a plausible domain name: dot-separated labels of
/// letters, digits, `-` and `_`, 1 to 63 bytes each, 253 in all.
pub fn is_domain_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Splits a parsed address into local part and domain at the `@` that ends
/// the local part (a quoted local part may itself hold an `@`). Returns
/// `None` for the null sender or a string without such an `@`.
pub fn split_address(addr: &str) -> Option<(&str, &str)> {
    let local_len = local_part_len(addr).ok()?;
    let domain = addr[local_len..].strip_prefix('@')?;
    Some((&addr[..local_len], domain))
}

/// The address inside angle brackets, or the whole input when there are
/// none. With `display_name`, a plain display name may come before the
/// `<` and blanks or comments after the `>`; without, nothing may.
fn angle_part(trimmed: &str, display_name: bool) -> Result<&str, AddressError> {
    let syntax = |reason| AddressError::Syntax {
        address: trimmed.to_string(),
        reason,
    };
    let Some(open) = find_unquoted(trimmed, b'<') else {
        if find_unquoted(trimmed, b'>').is_some() {
            return Err(syntax("unbalanced angle brackets"));
        }
        return Ok(trimmed);
    };
    let rest = &trimmed[open + 1..];
    let close = find_unquoted(rest, b'>').ok_or_else(|| syntax("unbalanced angle brackets"))?;
    let inner = &rest[..close];
    if find_unquoted(inner, b'<').is_some() {
        return Err(syntax("nested angle brackets"));
    }
    let before = &trimmed[..open];
    let after = &rest[close + 1..];
    let outside = |reason| AddressError::DisplayName {
        address: trimmed.to_string(),
        reason,
    };
    if !display_name {
        if !before.trim().is_empty() || !after.trim().is_empty() {
            return Err(outside("text outside the angle brackets"));
        }
        return Ok(inner.trim());
    }
    check_display_name(before).map_err(outside)?;
    if !only_comments(after) {
        return Err(outside("text after the angle address"));
    }
    Ok(inner.trim())
}

/// Checks that `text` is a plain RFC 5322 display name (a phrase, possibly
/// empty): words of atext, `.` (obsolete phrase) or UTF-8 (RFC 6532),
/// quoted strings and comments, separated by blanks. Control characters
/// other than a folding TAB are refused; so is any other special
/// character (`@`, `,`, `:`, `;`, `<`, `>`, `[`, `]`, a lone `\`).
pub(crate) fn check_display_name(text: &str) -> Result<(), &'static str> {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {}
            '"' => skip_quoted(&mut chars)?,
            '(' => skip_comment(&mut chars)?,
            c if c.is_control() => return Err("control character in the display name"),
            c if is_atext(c) || c == '.' => {}
            _ => {
                return Err(
                    "text outside the angle brackets is not a plain display name (quote it)",
                )
            }
        }
    }
    Ok(())
}

/// True when `text` holds only blanks and comments.
fn only_comments(text: &str) -> bool {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {}
            '(' => {
                if skip_comment(&mut chars).is_err() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// Skips the rest of a quoted string after its opening quote. Its content
/// is printable text, UTF-8 or blanks; a backslash quotes the next one.
fn skip_quoted(chars: &mut impl Iterator<Item = char>) -> Result<(), &'static str> {
    let mut escaped = false;
    for c in chars.by_ref() {
        if c.is_control() && c != '\t' {
            return Err("control character in a quoted string");
        }
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Ok(());
        }
    }
    Err("unterminated quoted string")
}

/// Skips the rest of a (possibly nested) comment after its opening
/// parenthesis, with the same character rules as a quoted string.
fn skip_comment(chars: &mut impl Iterator<Item = char>) -> Result<(), &'static str> {
    let mut depth = 1usize;
    let mut escaped = false;
    for c in chars.by_ref() {
        if c.is_control() && c != '\t' {
            return Err("control character in a comment");
        }
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '(' {
            depth += 1;
        } else if c == ')' {
            depth -= 1;
            if depth == 0 {
                return Ok(());
            }
        }
    }
    Err("unterminated comment")
}

/// Index of the first `byte` outside a quoted string and outside a
/// comment (a `<` in a comment does not start the address).
fn find_unquoted(s: &str, byte: u8) -> Option<usize> {
    let mut in_quotes = false;
    let mut comment = 0usize;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' && (in_quotes || comment > 0) {
            escaped = true;
        } else if b == b'"' && comment == 0 {
            in_quotes = !in_quotes;
        } else if !in_quotes {
            match b {
                b'(' => comment += 1,
                b')' if comment > 0 => comment -= 1,
                _ if b == byte && comment == 0 => return Some(i),
                _ => {}
            }
        }
    }
    None
}

/// Drops an RFC 5321 source route (`@a,@b:`) in front of the mailbox.
fn strip_source_route(inner: &str) -> &str {
    if inner.starts_with('@') {
        if let Some(colon) = inner.find(':') {
            return &inner[colon + 1..];
        }
    }
    inner
}

/// Length in bytes of the local part at the start of `addr`: a whole quoted
/// string, or everything up to the first `@`.
fn local_part_len(addr: &str) -> Result<usize, &'static str> {
    if !addr.starts_with('"') {
        return Ok(addr.find('@').unwrap_or(addr.len()));
    }
    let mut escaped = false;
    for (i, b) in addr.bytes().enumerate().skip(1) {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            return Ok(i + 1);
        }
    }
    Err("unterminated quoted local part")
}

/// RFC 5322 atext, extended with UTF-8 (RFC 6531).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// Checks a dot-atom or quoted-string local part.
fn check_local_part(local: &str) -> Result<(), &'static str> {
    if local.is_empty() {
        return Err("empty local part");
    }
    if let Some(quoted) = local.strip_prefix('"') {
        let content = quoted
            .strip_suffix('"')
            .ok_or("unterminated quoted local part")?;
        let mut escaped = false;
        for c in content.chars() {
            if escaped {
                if !(' '..='~').contains(&c) {
                    return Err("bad quoted pair in local part");
                }
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' || (c.is_ascii() && !(' '..='~').contains(&c)) {
                return Err("bad character in quoted local part");
            }
        }
        return Ok(());
    }
    for atom in local.split('.') {
        if atom.is_empty() {
            return Err("empty atom in local part (leading, trailing or double dot)");
        }
        if let Some(c) = atom.chars().find(|&c| !is_atext(c)) {
            return Err(if c == ' ' {
                "space in local part"
            } else if c == '@' {
                "more than one @"
            } else {
                "bad character in local part"
            });
        }
    }
    Ok(())
}

/// Checks a domain: dot-separated labels or an address literal.
fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.is_empty() {
        return Err("empty domain");
    }
    if let Some(literal) = domain.strip_prefix('[') {
        let literal = literal
            .strip_suffix(']')
            .ok_or("unterminated address literal")?;
        return check_address_literal(literal);
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err("empty label in domain (leading, trailing or double dot)");
        }
        if label.len() > MAX_LABEL {
            return Err("domain label longer than 63 octets");
        }
        if let Some(c) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii()))
        {
            return Err(if c == '@' {
                "more than one @"
            } else if c == ' ' {
                "space in domain"
            } else {
                "bad character in domain"
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("domain label starts or ends with a hyphen");
        }
    }
    Ok(())
}

/// Checks the inside of `[...]`: IPv4, `IPv6:` or a general address literal.
fn check_address_literal(literal: &str) -> Result<(), &'static str> {
    if literal.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if let Some((tag, rest)) = literal.split_once(':') {
        if tag.eq_ignore_ascii_case("IPv6") {
            return match rest.parse::<std::net::Ipv6Addr>() {
                Ok(_) => Ok(()),
                Err(_) => Err("bad IPv6 address literal"),
            };
        }
        let tag_ok = !tag.is_empty()
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !tag.ends_with('-');
        let content_ok = !rest.is_empty()
            && rest
                .bytes()
                .all(|b| (33..=90).contains(&b) || (94..=126).contains(&b));
        if tag_ok && content_ok {
            return Ok(());
        }
    }
    Err("bad address literal")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        match parse_envelope_address(input, "origin.example", false) {
            Ok(a) => a,
            Err(e) => panic!("{input:?} rejected: {e}"),
        }
    }

    fn reason(input: &str) -> AddressError {
        match parse_envelope_address(input, "origin.example", false) {
            Ok(a) => panic!("{input:?} accepted as {a:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_plain_angle_and_named_forms() {
        assert_eq!(ok("a@b.example"), "a@b.example");
        assert_eq!(ok("  <a@b.example>  "), "a@b.example");
        assert_eq!(ok("Alice Smith <alice@b.example>"), "alice@b.example");
        assert_eq!(ok("\"Smith, <A>\" <alice@b.example>"), "alice@b.example");
        assert_eq!(
            ok("<@relay.example,@r2.example:a@b.example>"),
            "a@b.example"
        );
        assert_eq!(
            ok("first.last+tag@sub-1.b.example"),
            "first.last+tag@sub-1.b.example"
        );
        assert_eq!(ok("\"john doe\"@b.example"), "\"john doe\"@b.example");
        assert_eq!(ok("\"a@b\"@c.example"), "\"a@b\"@c.example");
        assert_eq!(ok("a@[192.0.2.1]"), "a@[192.0.2.1]");
        assert_eq!(ok("a@[IPv6:2001:db8::1]"), "a@[IPv6:2001:db8::1]");
    }

    #[test]
    fn qualifies_unqualified_addresses() {
        assert_eq!(ok("root"), "root@origin.example");
        assert_eq!(ok("<root>"), "root@origin.example");
        assert!(parse_envelope_address("root", "", false).is_err());
    }

    #[test]
    fn null_sender_only_when_allowed() {
        for null in ["<>", "", "   ", " < > "] {
            assert_eq!(
                parse_envelope_address(null, "o.example", true),
                Ok(String::new())
            );
            assert_eq!(
                parse_envelope_address(null, "o.example", false),
                Err(AddressError::NullNotAllowed)
            );
        }
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "a b@c.example",
            "a@b@c.example",
            "a@",
            "@c.example",
            "a@c.example.",
            "a@.c.example",
            "a..b@c.example",
            ".a@c.example",
            "a@-c.example",
            "a@c-.example",
            "a@c_d.example",
            "a\u{1}b@c.example",
            "a\tb@c.example",
            "a@c\u{7f}.example",
            "<a@c.example",
            "a@c.example>",
            "<<a@c.example>>",
            "<a@c.example> junk",
            "<a@c.example>>",
            "\"unterminated@c.example",
            "a@[300.1.1.1]",
            "a@[IPv6:zz]",
            "(a)@c.example",
        ] {
            let e = reason(bad);
            assert!(
                matches!(
                    e,
                    AddressError::Syntax { .. }
                        | AddressError::ControlCharacter { .. }
                        | AddressError::DisplayName { .. }
                ),
                "{bad:?}: {e:?}"
            );
            assert!(!e.is_transient());
        }
        assert!(matches!(
            reason("a@b@c.example"),
            AddressError::Syntax {
                reason: "more than one @",
                ..
            }
        ));
        assert!(matches!(
            reason("a@"),
            AddressError::Syntax {
                reason: "empty domain",
                ..
            }
        ));
    }

    #[test]
    fn control_characters_anywhere_refuse_the_whole_input() {
        // Issue 12: the text before `<` used to be dropped, whatever it held.
        for bad in [
            "a@b.c\r\nRCPT TO:<evil@x.test>",
            "good@example.net\r\nRCPT TO:<evil@x.test>",
            "a@b.c\r<evil@x.test>",
            "a@b.c\n<evil@x.test>",
            "\"a@b.c\r\n\" <evil@x.test>",
            "Name (\r\n) <evil@x.test>",
            "<good@example.net> (\r\nRCPT TO:<evil@x.test>)",
            "good@example.net\n",
            "\tgood@example.net",
            "good@example.net\0",
            "good@example.net\u{7f}",
            "good@example.net\u{85}",
        ] {
            let e = reason(bad);
            assert!(
                matches!(e, AddressError::ControlCharacter { .. }),
                "{bad:?}: {e:?}"
            );
            assert!(e.to_string().contains("control character U+"), "{e}");
            // The message prints the input escaped, never raw.
            assert!(!e.to_string().contains('\r'), "{e}");
            assert!(parse_envelope_address(bad, "o.example", true).is_err());
            assert!(parse_smtp_path(bad, "o.example", true).is_err());
            assert!(refuse_control(bad).is_err());
        }
        assert_eq!(refuse_control("Jane <a@b.example>"), Ok(()));
    }

    #[test]
    fn only_a_plain_display_name_may_precede_the_angle_address() {
        // A phrase: words, dots, quoted strings, comments, UTF-8.
        assert_eq!(ok("Jane Q. Doe <a@b.example>"), "a@b.example");
        assert_eq!(ok("\"evil@x.test\" <good@example.net>"), "good@example.net");
        assert_eq!(ok("(team) Jane <a@b.example> (work)"), "a@b.example");
        assert_eq!(ok("(x<y@z>) <a@b.example>"), "a@b.example");
        assert_eq!(ok("Jürgen <j@b.example>"), "j@b.example");
        assert_eq!(ok("=?UTF-8?B?w4RsaWNl?= <e@x.example>"), "e@x.example");
        // Anything else is refused, not skipped.
        for bad in [
            "evil@x.test <good@example.net>",
            "good@example.net <evil@x.test>",
            "a, b <good@example.net>",
            "RCPT TO:<evil@x.test>",
            "[1.2.3.4] <good@example.net>",
            "Name; <good@example.net>",
            "<good@example.net> trailing",
            "<good@example.net> (ok) junk",
        ] {
            let e = reason(bad);
            assert!(
                matches!(e, AddressError::DisplayName { .. }),
                "{bad:?}: {e:?}"
            );
        }
        // Unbalanced quotes or comments swallow the bracket: refused too.
        reason("\"unterminated <good@example.net>");
        reason("(unterminated <good@example.net>");
    }

    #[test]
    fn smtp_paths_take_no_display_name() {
        let path = |s: &str| parse_smtp_path(s, "o.example", true);
        assert_eq!(path("<a@b.example>"), Ok("a@b.example".into()));
        assert_eq!(path("a@b.example"), Ok("a@b.example".into()));
        assert_eq!(path("<>"), Ok(String::new()));
        assert_eq!(path("<root>"), Ok("root@o.example".into()));
        for bad in [
            "Name<evil@x.test>",
            "a@b.c<evil@x.test>",
            "\"x\" <evil@x.test>",
            "<evil@x.test> (comment)",
        ] {
            assert!(
                matches!(path(bad), Err(AddressError::DisplayName { .. })),
                "{bad:?}: {:?}",
                path(bad)
            );
        }
    }

    #[test]
    fn enforces_length_limits() {
        let local64 = "a".repeat(64);
        assert_eq!(
            ok(&format!("{local64}@b.example")),
            format!("{local64}@b.example")
        );
        let e = reason(&format!("{}@b.example", "a".repeat(65)));
        assert!(matches!(
            e,
            AddressError::TooLong {
                part: "local part",
                length: 65,
                ..
            }
        ));
        let label = "d".repeat(63);
        let long = format!("a@{label}.{label}.{label}.{label}.example");
        assert!(matches!(
            reason(&long),
            AddressError::TooLong {
                part: "address",
                ..
            }
        ));
        assert!(reason(&format!("a@{}.example", "d".repeat(64)))
            .to_string()
            .contains("63"));
    }

    #[test]
    fn utf8_addresses_are_accepted_and_flagged() {
        let a = ok("jürgen@bücher.example");
        assert_eq!(a, "jürgen@bücher.example");
        assert!(needs_smtputf8(&a));
        assert!(!needs_smtputf8("plain@ascii.example"));
    }

    #[test]
    fn splits_at_the_right_at_sign() {
        assert_eq!(split_address("a@b.example"), Some(("a", "b.example")));
        assert_eq!(
            split_address("\"x@y\"@b.example"),
            Some(("\"x@y\"", "b.example"))
        );
        assert_eq!(split_address(""), None);
    }
}
