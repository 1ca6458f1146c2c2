//! Address-list header values (To, Cc, Bcc, From, Sender, Resent-*).
//!
//! A small RFC 5322 address-list reader: display names, quoted strings,
//! comments and groups. It is written here rather than taken from
//! `mailparse::addrparse` because that parser rejects unqualified addresses
//! (`To: root`, which `sendmail -t` must qualify) and keeps a leading comment
//! as part of the address.

use super::address::{check_display_name, parse_envelope_address, refuse_control, AddressError};

/// One mailbox being read: text outside angle brackets, the angle part.
#[derive(Default)]
struct Pending {
    /// Text outside `<...>`, comments replaced by a space.
    text: String,
    /// The inside of `<...>`, once seen.
    angle: Option<String>,
    /// Text after the angle part (only comments and blanks belong there).
    after: String,
}

/// How strict to be about the text around the addresses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A header field of a message (`sendmail -t`, pickup files): a
    /// folding TAB is a blank, and a display name may be any text
    /// without control characters (`a@b.example <a@b.example>` is common).
    Header,
    /// A `sendmail` command-line argument: no control character at all,
    /// and a display name must be a plain RFC 5322 phrase.
    Argument,
}

/// Mailbox addresses from an address-list header value, in order.
///
/// Display names, comments, quoted strings and groups are understood; an
/// empty group such as `undisclosed-recipients:;` yields nothing. Each
/// address goes through [`parse_envelope_address`] with `origin` (so `root`
/// becomes `root@origin`) and the null address is refused. A value that
/// cannot be split into addresses gives [`AddressError::HeaderList`] naming
/// the value; a bad address inside gives that address's error. A control
/// character other than TAB (a blank left by unfolding) refuses the value.
pub fn header_addresses(value: &str, origin: &str) -> Result<Vec<String>, AddressError> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(AddressError::HeaderList {
            value: value.to_string(),
            reason: "control character".to_string(),
        });
    }
    // A TAB is a blank left by unfolding; the address parser takes none.
    addresses(&value.replace('\t', " "), origin, Mode::Header)
}

/// The addresses of one `sendmail` recipient argument: a single address,
/// or a comma-separated list in address-list syntax. Stricter than
/// [`header_addresses`]: any control character refuses the argument
/// ([`AddressError::ControlCharacter`]), and every display name (or group
/// name) must be a plain RFC 5322 phrase ([`AddressError::DisplayName`]),
/// so that no text around an address can choose which address is used.
pub fn argument_addresses(value: &str, origin: &str) -> Result<Vec<String>, AddressError> {
    refuse_control(value)?;
    if !value.contains(',') {
        return parse_envelope_address(value, origin, false).map(|a| vec![a]);
    }
    addresses(value, origin, Mode::Argument)
}

/// The address-list reader behind [`header_addresses`] and
/// [`argument_addresses`].
fn addresses(value: &str, origin: &str, mode: Mode) -> Result<Vec<String>, AddressError> {
    let list_err = |reason: &str| AddressError::HeaderList {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let mut out = Vec::new();
    let mut cur = Pending::default();
    let mut in_group = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let target = cur_text(&mut cur);
                target.push('"');
                copy_quoted(&mut chars, target).map_err(list_err)?;
            }
            '(' => {
                skip_comment(&mut chars).map_err(list_err)?;
                cur.text.push(' ');
            }
            '<' => {
                if cur.angle.is_some() {
                    return Err(list_err("two angle addresses in one mailbox"));
                }
                cur.angle = Some(read_angle(&mut chars).map_err(list_err)?);
            }
            '>' => return Err(list_err("unbalanced '>'")),
            '[' => {
                let target = cur_text(&mut cur);
                target.push('[');
                copy_until_bracket(&mut chars, target).map_err(list_err)?;
            }
            ',' => finish(&mut cur, value, origin, mode, &mut out)?,
            ':' if !in_group && cur.angle.is_none() => {
                // A group: what came before is its display name.
                if mode == Mode::Argument {
                    check_display_name(&cur.text).map_err(|reason| AddressError::DisplayName {
                        address: value.to_string(),
                        reason,
                    })?;
                }
                in_group = true;
                cur = Pending::default();
            }
            ':' => return Err(list_err("unexpected ':' (nested group?)")),
            ';' => {
                finish(&mut cur, value, origin, mode, &mut out)?;
                in_group = false;
            }
            c => {
                let target = cur_text(&mut cur);
                target.push(c);
            }
        }
    }
    finish(&mut cur, value, origin, mode, &mut out)?;
    Ok(out)
}

/// Where plain text goes: before the angle part it is the display name or
/// the address; after it, it should be blank.
fn cur_text(cur: &mut Pending) -> &mut String {
    if cur.angle.is_some() {
        &mut cur.after
    } else {
        &mut cur.text
    }
}

/// Ends one mailbox and parses it, unless it is empty.
fn finish(
    cur: &mut Pending,
    value: &str,
    origin: &str,
    mode: Mode,
    out: &mut Vec<String>,
) -> Result<(), AddressError> {
    let done = std::mem::take(cur);
    let address = match done.angle {
        Some(angle) => {
            if mode == Mode::Argument {
                check_display_name(&done.text).map_err(|reason| AddressError::DisplayName {
                    address: value.to_string(),
                    reason,
                })?;
            }
            if !done.after.trim().is_empty() {
                return Err(AddressError::HeaderList {
                    value: value.to_string(),
                    reason: format!("text {:?} after the angle address", done.after.trim()),
                });
            }
            parse_envelope_address(&angle, origin, false)?
        }
        None => {
            let text = done.text.trim();
            if text.is_empty() {
                return Ok(());
            }
            parse_envelope_address(text, origin, false)?
        }
    };
    out.push(address);
    Ok(())
}

/// Copies a quoted string's rest (after the opening quote) including the
/// closing quote and any backslash escapes.
fn copy_quoted(chars: &mut std::str::Chars<'_>, target: &mut String) -> Result<(), &'static str> {
    let mut escaped = false;
    for c in chars.by_ref() {
        target.push(c);
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

/// Skips a (possibly nested) comment after its opening parenthesis.
fn skip_comment(chars: &mut std::str::Chars<'_>) -> Result<(), &'static str> {
    let mut depth = 1usize;
    let mut escaped = false;
    for c in chars.by_ref() {
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

/// Reads the inside of `<...>` after the `<`, keeping quoted strings whole.
fn read_angle(chars: &mut std::str::Chars<'_>) -> Result<String, &'static str> {
    let mut inner = String::new();
    while let Some(c) = chars.next() {
        match c {
            '>' => return Ok(inner),
            '<' => return Err("nested '<'"),
            '"' => {
                inner.push('"');
                copy_quoted(chars, &mut inner)?;
            }
            c => inner.push(c),
        }
    }
    Err("unterminated '<'")
}

/// Copies an address literal's rest (after `[`) including the `]`.
fn copy_until_bracket(
    chars: &mut std::str::Chars<'_>,
    target: &mut String,
) -> Result<(), &'static str> {
    for c in chars.by_ref() {
        target.push(c);
        if c == ']' {
            return Ok(());
        }
    }
    Err("unterminated '['")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(value: &str) -> Vec<String> {
        match header_addresses(value, "origin.example") {
            Ok(v) => v,
            Err(e) => panic!("{value:?} rejected: {e}"),
        }
    }

    #[test]
    fn display_names_comments_and_quotes() {
        assert_eq!(
            addrs(
                "Alice <a@x.example>, \"Bob, Jr. <b>\" <b@y.example> (work), c@z.example (Carol)"
            ),
            ["a@x.example", "b@y.example", "c@z.example"]
        );
        assert_eq!(addrs("(lead) d@x.example"), ["d@x.example"]);
        assert_eq!(addrs("=?UTF-8?B?w4RsaWNl?= <e@x.example>"), ["e@x.example"]);
        assert_eq!(
            addrs("\"quoted local\"@x.example"),
            ["\"quoted local\"@x.example"]
        );
        assert_eq!(addrs("f@[IPv6:2001:db8::1]"), ["f@[IPv6:2001:db8::1]"]);
    }

    #[test]
    fn groups_yield_their_members_and_empty_groups_nothing() {
        assert!(addrs("undisclosed-recipients:;").is_empty());
        assert!(addrs("  ").is_empty());
        assert_eq!(
            addrs("Team: a@x.example, B <b@x.example>; c@x.example, Empty:;"),
            ["a@x.example", "b@x.example", "c@x.example"]
        );
    }

    #[test]
    fn unqualified_addresses_get_the_origin() {
        assert_eq!(
            addrs("root, Admin <admin>"),
            ["root@origin.example", "admin@origin.example"]
        );
    }

    #[test]
    fn bad_lists_are_rejected_naming_the_value() {
        for bad in [
            "a@x.example, <b@x.example",
            "\"open",
            "(open",
            "G: H: a@x;",
            "<a@x> <b@x>",
        ] {
            match header_addresses(bad, "o.example") {
                Err(AddressError::HeaderList { value, .. }) => {
                    assert!(!value.is_empty(), "{bad:?}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(matches!(
            header_addresses("A <a@x.example> junk", "o.example"),
            Err(AddressError::HeaderList { value, .. }) if value == "A <a@x.example> junk"
        ));
        assert!(matches!(
            header_addresses("john doe@x.example", "o.example"),
            Err(AddressError::Syntax { .. })
        ));
        assert!(matches!(
            header_addresses("<>", "o.example"),
            Err(AddressError::NullNotAllowed)
        ));
    }

    #[test]
    fn arguments_are_strict_headers_lenient() {
        let arg = |v: &str| argument_addresses(v, "o.example");
        assert_eq!(
            arg("a@x.example, Bob <b@x.example>"),
            Ok(vec!["a@x.example".to_string(), "b@x.example".to_string()])
        );
        assert_eq!(arg("root"), Ok(vec!["root@o.example".to_string()]));
        for bad in [
            "good@example.net,\r\nRCPT TO:<evil@x.test>",
            "good@example.net\r\nRCPT TO:<evil@x.test>",
            "a@x.example,\tb@x.example",
        ] {
            assert!(
                matches!(arg(bad), Err(AddressError::ControlCharacter { .. })),
                "{bad:?}: {:?}",
                arg(bad)
            );
        }
        for bad in [
            "a@x.example, evil@x.test <good@example.net>",
            "a@x.example, x@y: b@x.example;",
        ] {
            assert!(
                matches!(arg(bad), Err(AddressError::DisplayName { .. })),
                "{bad:?}: {:?}",
                arg(bad)
            );
        }
        // In a header, a sloppy display name is common and harmless: the
        // angle address is the one used; a folding TAB is a blank.
        assert_eq!(
            addrs("a@x.example <a@x.example>,\tb@x.example"),
            ["a@x.example", "b@x.example"]
        );
        for bad in ["a@x.example\r<evil@x.test>", "x\u{1} <a@x.example>"] {
            assert!(header_addresses(bad, "o.example").is_err(), "{bad:?}");
        }
    }
}
