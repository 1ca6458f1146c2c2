//! The path of MAIL FROM and RCPT TO (RFC 5321 section 4.1.2): angle
//! brackets required, then the crate's one strict address check
//! ([`crate::mail::address`]: dot-atom or quoted local part of at most 64
//! octets, a domain of letter/digit/hyphen labels or an address literal,
//! at most 256 octets with the brackets, no control characters; a source
//! route `<@a,@b:user@c>` is dropped). UTF-8 (RFC 6531) only when the
//! transaction declared SMTPUTF8. `<>` only as the reverse path;
//! `<postmaster>` without a domain only as a recipient (unless the driver
//! qualifies unqualified addresses with its origin, as `sendmail -bs`
//! does).

use crate::mail::address::{needs_smtputf8, parse_smtp_path, AddressError};

/// Longest path, brackets included (RFC 5321 section 4.5.3.1.3).
pub const MAX_PATH: usize = 256;

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
/// to be stored (source route dropped; `""` for `<>`; an unqualified
/// address with `@origin` appended when there is an origin).
pub fn check_path(
    path: &[u8],
    kind: PathKind,
    utf8: bool,
    origin: Option<&str>,
) -> Result<String, PathError> {
    if path.len() + 2 > MAX_PATH {
        return Err(PathError::TooLong);
    }
    let text = std::str::from_utf8(path).map_err(|_| PathError::Syntax)?;
    if text.starts_with(' ') || text.ends_with(' ') {
        return Err(PathError::Syntax);
    }
    if kind == PathKind::Forward && origin.is_none() && text.eq_ignore_ascii_case("postmaster") {
        return Ok(text.to_string());
    }
    let null = kind == PathKind::Reverse && text.is_empty();
    let mailbox = match parse_smtp_path(text, origin.unwrap_or(""), null) {
        Ok(m) => m,
        Err(AddressError::TooLong { .. }) => return Err(PathError::TooLong),
        Err(_) => return Err(PathError::Syntax),
    };
    if mailbox.is_empty() && !null {
        // A source route in front of nothing: not the null path.
        return Err(PathError::Syntax);
    }
    if !utf8 && needs_smtputf8(&mailbox) {
        return Err(PathError::NeedsSmtpUtf8);
    }
    Ok(mailbox)
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

    fn check(p: &str, k: PathKind) -> Result<String, PathError> {
        check_path(p.as_bytes(), k, false, None)
    }

    #[test]
    fn good_paths() {
        let ok = |p: &str, k| check(p, k).unwrap();
        assert_eq!(ok("", Reverse), "");
        assert_eq!(ok("a@b.example", Forward), "a@b.example");
        assert_eq!(ok("Postmaster", Forward), "Postmaster");
        assert_eq!(ok("@r1.example,@r2.example:u@d", Forward), "u@d");
        assert_eq!(ok("\"a b@c\"@d", Forward), "\"a b@c\"@d");
        assert_eq!(ok("\"a\\\"b\"@d", Forward), "\"a\\\"b\"@d");
        assert_eq!(ok("u@[192.0.2.1]", Forward), "u@[192.0.2.1]");
        assert_eq!(ok("u@[IPv6:2001:db8::1]", Forward), "u@[IPv6:2001:db8::1]");
        assert_eq!(ok("a+tag=1@x-y.z", Forward), "a+tag=1@x-y.z");
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
            "a\u{1}@b",
            "a@b\u{7f}",
            "..@b",
            "a..b@c",
            "a@_b",
            " a@b",
            "a@b ",
            "<a@b",
            "a@b>",
        ] {
            assert!(
                check_path(p.as_bytes(), Forward, true, None).is_err(),
                "{p:?}"
            );
        }
        assert_eq!(check("postmaster", Reverse), Err(PathError::Syntax));
        assert_eq!(check("@r:", Reverse), Err(PathError::Syntax));
        assert_eq!(
            check_path(b"\xff@b", Forward, true, None),
            Err(PathError::Syntax)
        );
    }

    #[test]
    fn unqualified_with_an_origin() {
        let q = |p: &str, k| check_path(p.as_bytes(), k, false, Some("example.org"));
        assert_eq!(q("joe", Forward).unwrap(), "joe@example.org");
        assert_eq!(q("joe", Reverse).unwrap(), "joe@example.org");
        assert_eq!(q("postmaster", Forward).unwrap(), "postmaster@example.org");
        assert_eq!(q("", Reverse).unwrap(), "");
        assert_eq!(check("joe", Forward), Err(PathError::Syntax));
    }

    #[test]
    fn lengths() {
        let local = "l".repeat(64);
        let label = "d".repeat(63);
        let domain = format!("{label}.{label}.{}", &label[..61]);
        let ok = format!("{local}@{domain}");
        assert_eq!(ok.len() + 2, 256);
        assert!(check(&ok, Forward).is_ok());
        let long = format!("{local}x@{domain}");
        assert_eq!(check(&long, Forward), Err(PathError::TooLong));
        let long_local = format!("{local}x@d");
        assert_eq!(check(&long_local, Forward), Err(PathError::TooLong));
        let long_label = format!("a@{label}x");
        assert!(check(&long_label, Forward).is_err());
    }

    #[test]
    fn utf8_needs_smtputf8() {
        let p = "j\u{f6}rg@b\u{fc}cher.example";
        assert_eq!(check(p, Forward), Err(PathError::NeedsSmtpUtf8));
        assert_eq!(check_path(p.as_bytes(), Forward, true, None).unwrap(), p);
    }
}
