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
/// surrounding whitespace; a source route (`<@x,@y:a@b>`) is dropped.
/// `<>` or nothing is the null sender: `Ok(String::new())` when `allow_null`,
/// else [`AddressError::NullNotAllowed`]. An unqualified address (no `@`)
/// gets `@origin` appended. The result is checked against RFC 5321 with
/// SMTPUTF8 (RFC 6531) extensions: dot-atom or quoted-string local part of at
/// most 64 octets, a domain of letter/digit/hyphen (or UTF-8) labels or an
/// address literal, no control characters, at most 254 octets in all.
pub fn parse_envelope_address(
    input: &str,
    origin: &str,
    allow_null: bool,
) -> Result<String, AddressError> {
    let trimmed = input.trim();
    let inner = angle_part(trimmed)?;
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
    if inner.chars().any(char::is_control) {
        return Err(syntax("control character"));
    }
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

/// Splits a parsed address into local part and domain at the `@` that ends
/// the local part (a quoted local part may itself hold an `@`). Returns
/// `None` for the null sender or a string without such an `@`.
pub fn split_address(addr: &str) -> Option<(&str, &str)> {
    let local_len = local_part_len(addr).ok()?;
    let domain = addr[local_len..].strip_prefix('@')?;
    Some((&addr[..local_len], domain))
}

/// The address inside angle brackets, or the whole input when there are
/// none. Only blanks or a comment may follow the closing bracket.
fn angle_part(trimmed: &str) -> Result<&str, AddressError> {
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
    let after = rest[close + 1..].trim();
    let is_comment = after.starts_with('(') && after.ends_with(')');
    if !after.is_empty() && !is_comment {
        return Err(syntax("text after the angle address"));
    }
    Ok(inner.trim())
}

/// Index of the first `byte` outside a quoted string.
fn find_unquoted(s: &str, byte: u8) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' && in_quotes {
            escaped = true;
        } else if b == b'"' {
            in_quotes = !in_quotes;
        } else if b == byte && !in_quotes {
            return Some(i);
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
            assert!(matches!(e, AddressError::Syntax { .. }), "{bad:?}: {e:?}");
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
