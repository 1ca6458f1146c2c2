//! The journal's line codec, no I/O. A line is
//!
//! ```text
//! <crc32c of the payload, 8 lower-case hex digits> SP <payload> LF
//! payload: + <scope> <address> <unix-time> <reason-kind> <campaign or ->[ <detail>]
//!          - <scope> <address> <unix-time>
//!          # <comment>        (the first line: "# ringmail-suppress 1")
//! ```
//!
//! `<scope>` is `*` for global, else the sender domain. In the scope and
//! the address, `%`, blanks and control bytes are written `%XX`; the
//! detail is the rest of the line, with `%` and control bytes so written.

use std::borrow::Cow;

use super::entry::{Entry, ReasonKind, Scope};

/// The journal's first line (its payload).
pub(crate) const HEADER: &str = "# ringmail-suppress 1";

/// One decoded line, borrowing from it where nothing was escaped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// An address suppressed (or its entry replaced).
    Add {
        /// The sender domain, or `None` for global.
        scope: Option<Cow<'a, str>>,
        /// The address.
        address: Cow<'a, str>,
        /// When, in Unix seconds.
        added: u64,
        /// Why.
        kind: ReasonKind,
        /// For which campaign.
        campaign: Option<u64>,
        /// Free text.
        detail: Cow<'a, str>,
    },
    /// An entry removed.
    Remove {
        /// The sender domain, or `None` for global.
        scope: Option<Cow<'a, str>>,
        /// The address.
        address: Cow<'a, str>,
        /// When, in Unix seconds.
        at: u64,
    },
    /// A comment (the header).
    Comment(&'a str),
}

/// Appends the line that adds `e` to `out`.
pub(crate) fn encode_add(e: &Entry, out: &mut Vec<u8>) {
    let mut p = Vec::with_capacity(64 + e.address.len() + e.reason.detail.len());
    p.extend_from_slice(b"+ ");
    push_scope(&e.scope, &mut p);
    p.push(b' ');
    escape(&e.address, true, &mut p);
    p.extend_from_slice(format!(" {} {} ", e.added, e.reason.kind).as_bytes());
    match e.campaign {
        Some(c) => p.extend_from_slice(c.to_string().as_bytes()),
        None => p.push(b'-'),
    }
    if !e.reason.detail.is_empty() {
        p.push(b' ');
        escape(&e.reason.detail, false, &mut p);
    }
    finish(&p, out);
}

/// Appends the line that removes `address` from `scope` to `out`.
pub(crate) fn encode_remove(scope: &Scope, address: &str, at: u64, out: &mut Vec<u8>) {
    let mut p = Vec::with_capacity(32 + address.len());
    p.extend_from_slice(b"- ");
    push_scope(scope, &mut p);
    p.push(b' ');
    escape(address, true, &mut p);
    p.extend_from_slice(format!(" {at}").as_bytes());
    finish(&p, out);
}

/// Appends the header line to `out`.
pub(crate) fn encode_header(out: &mut Vec<u8>) {
    finish(HEADER.as_bytes(), out);
}

/// Decodes one line, without its LF. The error says what is wrong.
pub(crate) fn decode(line: &[u8]) -> Result<Line<'_>, &'static str> {
    if line.len() < 10 || line[8] != b' ' {
        return Err("no checksum");
    }
    let crc = std::str::from_utf8(&line[..8])
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or("no checksum")?;
    let payload = &line[9..];
    if crc32c::crc32c(payload) != crc {
        return Err("checksum mismatch");
    }
    let payload = std::str::from_utf8(payload).map_err(|_| "not UTF-8")?;
    match payload.as_bytes()[0] {
        b'#' => Ok(Line::Comment(payload)),
        b'+' => {
            let mut f = payload.splitn(7, ' ');
            let _op = f.next();
            let scope = scope_field(f.next())?;
            let address = address_field(f.next())?;
            let added = number(f.next())?;
            let kind = f
                .next()
                .and_then(ReasonKind::parse)
                .ok_or("unknown reason kind")?;
            let campaign = match f.next() {
                Some("-") => None,
                other => Some(number(other)?),
            };
            let detail = unescape(f.next().unwrap_or(""))?;
            Ok(Line::Add {
                scope,
                address,
                added,
                kind,
                campaign,
                detail,
            })
        }
        b'-' => {
            let mut f = payload.split(' ');
            let _op = f.next();
            let scope = scope_field(f.next())?;
            let address = address_field(f.next())?;
            let at = number(f.next())?;
            if f.next().is_some() {
                return Err("extra fields");
            }
            Ok(Line::Remove { scope, address, at })
        }
        _ => Err("unknown operation"),
    }
}

fn finish(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{:08x} ", crc32c::crc32c(payload)).as_bytes());
    out.extend_from_slice(payload);
    out.push(b'\n');
}

fn push_scope(scope: &Scope, p: &mut Vec<u8>) {
    match scope.domain() {
        None => p.push(b'*'),
        Some(d) => escape(d, true, p),
    }
}

fn scope_field(f: Option<&str>) -> Result<Option<Cow<'_, str>>, &'static str> {
    match f {
        Some("*") => Ok(None),
        Some(s) if !s.is_empty() => Ok(Some(unescape(s)?)),
        _ => Err("no scope"),
    }
}

fn address_field(f: Option<&str>) -> Result<Cow<'_, str>, &'static str> {
    match f {
        Some(s) if !s.is_empty() => unescape(s),
        _ => Err("no address"),
    }
}

fn number(f: Option<&str>) -> Result<u64, &'static str> {
    f.filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or("bad number")
}

/// Writes `s` with `%`, control bytes and (when `token`) blanks as `%XX`.
fn escape(s: &str, token: bool, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        if b == b'%' || b < 0x20 || b == 0x7f || (token && b == b' ') {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

fn unescape(s: &str) -> Result<Cow<'_, str>, &'static str> {
    if !s.contains('%') {
        return Ok(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("bad % escape")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "bad % escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad % escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| "not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::super::entry::Reason;
    use super::*;

    fn entry(address: &str, scope: Scope, detail: &str, campaign: Option<u64>) -> Entry {
        Entry {
            address: address.into(),
            scope,
            reason: Reason::new(ReasonKind::Bounce, detail),
            added: 1_700_000_000,
            campaign,
        }
    }

    fn one(bytes: &[u8]) -> &[u8] {
        assert_eq!(bytes.last(), Some(&b'\n'));
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        &bytes[..bytes.len() - 1]
    }

    #[test]
    fn add_lines_round_trip_with_escapes() {
        let e = entry(
            "\"odd 100%\"@exämple.net",
            Scope::SenderDomain("news.example.com".into()),
            "550 5.1.1 <x> 100% gone",
            Some(42),
        );
        let mut out = Vec::new();
        encode_add(&e, &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.ends_with(
                " + news.example.com \"odd%20100%25\"@exämple.net 1700000000 bounce 42 550 5.1.1 <x> 100%25 gone\n"
            ),
            "{text}"
        );
        let got = decode(one(&out)).unwrap();
        assert_eq!(
            got,
            Line::Add {
                scope: Some("news.example.com".into()),
                address: "\"odd 100%\"@exämple.net".into(),
                added: 1_700_000_000,
                kind: ReasonKind::Bounce,
                campaign: Some(42),
                detail: "550 5.1.1 <x> 100% gone".into(),
            }
        );
        let mut out = Vec::new();
        encode_add(&entry("a@b.example", Scope::Global, "", None), &mut out);
        assert!(out.ends_with(b" + * a@b.example 1700000000 bounce -\n"));
        assert!(matches!(
            decode(one(&out)).unwrap(),
            Line::Add {
                scope: None,
                campaign: None,
                detail: Cow::Borrowed(""),
                ..
            }
        ));
    }

    #[test]
    fn remove_and_header_lines_round_trip() {
        let mut out = Vec::new();
        encode_remove(&Scope::Global, "a@b.example", 7, &mut out);
        assert_eq!(
            decode(one(&out)).unwrap(),
            Line::Remove {
                scope: None,
                address: "a@b.example".into(),
                at: 7
            }
        );
        let mut out = Vec::new();
        encode_header(&mut out);
        assert_eq!(decode(one(&out)).unwrap(), Line::Comment(HEADER));
    }

    #[test]
    fn the_example_in_the_docs_decodes() {
        let doc = include_str!("../../../docs/SUPPRESSION.md");
        let lines: Vec<&str> = doc
            .lines()
            .skip_while(|l| !l.starts_with("40c20c27 "))
            .take(4)
            .collect();
        assert_eq!(lines.len(), 4, "the example journal in docs/SUPPRESSION.md");
        let decoded: Vec<Line<'_>> = lines
            .iter()
            .map(|l| decode(l.as_bytes()).unwrap())
            .collect();
        assert_eq!(decoded[0], Line::Comment(HEADER));
        assert!(matches!(
            &decoded[1],
            Line::Add { scope: None, campaign: Some(17), kind: ReasonKind::Unsubscribe, detail, .. }
                if detail == "clicked the link"
        ));
        assert!(matches!(
            &decoded[2],
            Line::Add { scope: Some(s), campaign: None, kind: ReasonKind::Bounce, .. }
                if s == "news.example.com"
        ));
        assert!(matches!(
            &decoded[3],
            Line::Remove {
                at: 1_700_000_200,
                ..
            }
        ));
    }

    #[test]
    fn damaged_lines_are_refused() {
        let mut out = Vec::new();
        encode_add(&entry("a@b.example", Scope::Global, "x", None), &mut out);
        let good = one(&out).to_vec();
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        assert_eq!(decode(&flipped), Err("checksum mismatch"));
        assert_eq!(decode(&good[..good.len() - 3]), Err("checksum mismatch"));
        assert_eq!(decode(b"zzzzzzzz + * a@b 1 manual -"), Err("no checksum"));
        assert_eq!(decode(b""), Err("no checksum"));
        // A checksum that matches but a payload that does not parse.
        for payload in [
            "+ * a@b.example 1 nosuchkind -",
            "+ * a@b.example x manual -",
            "+ * a@b.example 1 manual",
            "- * a@b.example 1 extra",
            "? * a@b.example 1",
            "+ * a%zz@b 1 manual -",
        ] {
            let mut line = Vec::new();
            finish(payload.as_bytes(), &mut line);
            assert!(decode(one(&line)).is_err(), "{payload}");
        }
    }
}
