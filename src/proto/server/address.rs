//! The path of MAIL FROM and RCPT TO (RFC 5321 section 4.1.2), checked
//! strictly: angle brackets, a dot-string or quoted local part of at most
//! 64 octets, a domain of letters, digits and hyphens (or an address
//! literal) of at most 255 octets, at most 256 octets with the brackets,
//! no control characters. UTF-8 (RFC 6531) only when the transaction
//! declared SMTPUTF8. A source route (`<@a,@b:user@c>`) is accepted and
//! dropped, as RFC 5321 section 4.1.1.3 asks. `<>` only as the reverse
//! path; `<postmaster>` without a domain only as a recipient.
//!
//! Leniency kept on purpose: dots in a dot-string local part may lead,
//! trail or repeat (`a..b@c`), as Postfix allows, since such mailboxes
//! exist and refusing them helps nobody.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest path, brackets included (RFC 5321 section 4.5.3.1.3).
pub const MAX_PATH: usize = 256;
/// Longest local part (RFC 5321 section 4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain (RFC 5321 section 4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;

/// Which command the path belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// MAIL FROM: `<>` allowed.
    Reverse,
    /// RCPT TO: `<postmaster>` allowed.
    Forward,
}

/// Why a path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not a valid path.
    Syntax,
    /// Longer than the limits allow.
    TooLong,
    /// Valid, but not ASCII, and SMTPUTF8 was not declared.
    NeedsSmtpUtf8,
}

/// Splits `<path> rest` (the text after `FROM:` or `TO:`, blanks before it
/// allowed): the text between the brackets and what follows the `>`
/// (trimmed of the blanks that separate it). A `>` inside a quoted local
/// part does not end the path.
pub fn split_path(arg: &[u8]) -> Option<(&[u8], &[u8])> {
    let arg = trim_start(arg);
    if arg.first() != Some(&b'<') {
        return None;
    }
    let mut quoted = false;
    let mut i = 1;
    while let Some(&b) = arg.get(i) {
        match b {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => {
                let rest = &arg[i + 1..];
                if !rest.is_empty() && rest[0] != b' ' {
                    return None;
                }
                return Some((&arg[1..i], trim_start(rest)));
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ').count();
    &s[n..]
}

/// Checks the text between the brackets and returns the mailbox as it is
/// to be stored (source route dropped; `""` for `<>`).
pub fn check_path(path: &[u8], kind: PathKind, utf8: bool) -> Result<&str, PathError> {
    if path.len() + 2 > MAX_PATH {
        return Err(PathError::TooLong);
    }
    let text = std::str::from_utf8(path).map_err(|_| PathError::Syntax)?;
    let mailbox = strip_route(text)?;
    if mailbox.is_empty() {
        return match kind {
            PathKind::Reverse if text.is_empty() => Ok(""),
            _ => Err(PathError::Syntax),
        };
    }
    if kind == PathKind::Forward && mailbox.eq_ignore_ascii_case("postmaster") {
        return Ok(mailbox);
    }
    let at = last_at(mailbox).ok_or(PathError::Syntax)?;
    let (local, domain) = (&mailbox[..at], &mailbox[at + 1..]);
    check_local_part(local)?;
    check_domain(domain)?;
    if !utf8 && !mailbox.is_ascii() {
        return Err(PathError::NeedsSmtpUtf8);
    }
    Ok(mailbox)
}

/// Drops `@a,@b:` before the mailbox, checking each route domain.
fn strip_route(text: &str) -> Result<&str, PathError> {
    if !text.starts_with('@') {
        return Ok(text);
    }
    let colon = text.find(':').ok_or(PathError::Syntax)?;
    for hop in text[..colon].split(',') {
        let domain = hop.strip_prefix('@').ok_or(PathError::Syntax)?;
        check_domain(domain)?;
    }
    let rest = &text[colon + 1..];
    if rest.is_empty() {
        return Err(PathError::Syntax);
    }
    Ok(rest)
}

/// The index of the `@` between local part and domain: the last one
/// outside a quoted string.
fn last_at(mailbox: &str) -> Option<usize> {
    let b = mailbox.as_bytes();
    if b.first() == Some(&b'"') {
        let close = closing_quote(b)?;
        return (b.get(close + 1) == Some(&b'@')).then_some(close + 1);
    }
    mailbox.rfind('@')
}

/// The index of the quote that closes the quoted string at `b[0]`.
fn closing_quote(b: &[u8]) -> Option<usize> {
    let mut i = 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn check_local_part(local: &str) -> Result<(), PathError> {
    if local.is_empty() {
        return Err(PathError::Syntax);
    }
    if local.len() > MAX_LOCAL_PART {
        return Err(PathError::TooLong);
    }
    let b = local.as_bytes();
    if b[0] == b'"' {
        // The whole local part is one quoted string (last_at checked that
        // the closing quote is its last byte).
        let mut i = 1;
        while i < b.len() - 1 {
            match b[i] {
                b'\\' => {
                    let next = *b.get(i + 1).ok_or(PathError::Syntax)?;
                    if !(32..=126).contains(&next) || i + 1 >= b.len() - 1 {
                        return Err(PathError::Syntax);
                    }
                    i += 2;
                }
                32 | 33 | 35..=91 | 93..=126 | 128..=255 => i += 1,
                _ => return Err(PathError::Syntax),
            }
        }
        return Ok(());
    }
    if b.iter().all(|&c| c == b'.' || is_atext(c) || c >= 128) && !b.iter().all(|&c| c == b'.') {
        Ok(())
    } else {
        Err(PathError::Syntax)
    }
}

/// RFC 5322 atext.
fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c)
}

/// A domain name of LDH labels (UTF-8 labels allowed here; the caller
/// refuses non-ASCII without SMTPUTF8), or an address literal.
fn check_domain(domain: &str) -> Result<(), PathError> {
    if domain.len() > MAX_DOMAIN {
        return Err(PathError::TooLong);
    }
    if let Some(literal) = domain.strip_prefix('[') {
        let inner = literal.strip_suffix(']').ok_or(PathError::Syntax)?;
        let ok = match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
                inner[5..].parse::<Ipv6Addr>().is_ok()
            }
            _ => inner.parse::<Ipv4Addr>().is_ok(),
        };
        return if ok { Ok(()) } else { Err(PathError::Syntax) };
    }
    if domain.is_empty() {
        return Err(PathError::Syntax);
    }
    for label in domain.split('.') {
        let b = label.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c >= 128);
        if !ok {
            return Err(PathError::Syntax);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathKind::{Forward, Reverse};

    #[test]
    fn splitting() {
        assert_eq!(
            split_path(b"<a@b> SIZE=1"),
            Some((&b"a@b"[..], &b"SIZE=1"[..]))
        );
        assert_eq!(split_path(b" <>"), Some((&b""[..], &b""[..])));
        assert_eq!(
            split_path(b"<\"a>b\"@c>"),
            Some((&b"\"a>b\"@c"[..], &b""[..]))
        );
        assert_eq!(split_path(b"a@b"), None, "brackets are required");
        assert_eq!(split_path(b"<a@b"), None);
        assert_eq!(split_path(b"<a@b>x"), None);
    }

    #[test]
    fn good_paths() {
        fn ok(p: &str, k: PathKind) -> Result<&str, PathError> {
            check_path(p.as_bytes(), k, false)
        }
        assert_eq!(ok("", Reverse), Ok(""));
        assert_eq!(ok("a@b.example", Forward), Ok("a@b.example"));
        assert_eq!(ok("Postmaster", Forward), Ok("Postmaster"));
        assert_eq!(ok("@r1.example,@r2.example:u@d", Forward), Ok("u@d"));
        assert_eq!(ok("\"a b@c\"@d", Forward), Ok("\"a b@c\"@d"));
        assert_eq!(ok("\"a\\\"b\"@d", Forward), Ok("\"a\\\"b\"@d"));
        assert_eq!(ok("u@[192.0.2.1]", Forward), Ok("u@[192.0.2.1]"));
        assert_eq!(
            ok("u@[IPv6:2001:db8::1]", Forward),
            Ok("u@[IPv6:2001:db8::1]")
        );
        assert_eq!(ok("a..b.@x-y.z", Forward), Ok("a..b.@x-y.z"));
        assert_eq!(ok("a+tag=1@b", Forward), Ok("a+tag=1@b"));
    }

    #[test]
    fn bad_paths() {
        for p in [
            "",
            "a",
            "@b",
            "a@",
            "a b@c",
            "a@b c",
            "a@-b",
            "a@b-",
            "a@b..c",
            "a@.b",
            "a@b.",
            "a(b)@c",
            "a@[300.0.0.1]",
            "a@[IPv6:zz]",
            "a@[1.2.3.4",
            "\"a@b",
            "\"a\"b@c",
            "@r:",
            "@:a@b",
            "a\u{1}@b",
            "a@b\u{7f}",
            "..@b",
            "a@_b",
        ] {
            assert!(check_path(p.as_bytes(), Forward, true).is_err(), "{p:?}");
        }
        assert_eq!(
            check_path(b"postmaster", Reverse, false),
            Err(PathError::Syntax)
        );
        assert_eq!(check_path(b"", Forward, false), Err(PathError::Syntax));
        assert_eq!(check_path(b"@r:", Reverse, false), Err(PathError::Syntax));
        assert_eq!(check_path(b"\xff@b", Forward, true), Err(PathError::Syntax));
    }

    #[test]
    fn lengths() {
        let local = "l".repeat(64);
        let label = "d".repeat(63);
        let domain = format!("{label}.{label}.{}", &label[..61]);
        let ok = format!("{local}@{domain}");
        assert_eq!(ok.len() + 2, 256);
        assert!(check_path(ok.as_bytes(), Forward, false).is_ok());
        let long = format!("{local}x@{domain}");
        assert_eq!(
            check_path(long.as_bytes(), Forward, false),
            Err(PathError::TooLong)
        );
        let long_local = format!("{local}x@d");
        assert_eq!(
            check_path(long_local.as_bytes(), Forward, false),
            Err(PathError::TooLong)
        );
        let long_label = format!("a@{label}x");
        assert_eq!(
            check_path(long_label.as_bytes(), Forward, false),
            Err(PathError::Syntax)
        );
    }

    #[test]
    fn utf8_needs_smtputf8() {
        let p = "j\u{f6}rg@b\u{fc}cher.example";
        assert_eq!(
            check_path(p.as_bytes(), Forward, false),
            Err(PathError::NeedsSmtpUtf8)
        );
        assert_eq!(check_path(p.as_bytes(), Forward, true), Ok(p));
    }
}
