//! The template's MIME tree: headers unfolded, multiparts split on their
//! boundaries, text parts decoded from their transfer encoding so merge
//! fields can be rendered in them; everything else (attachments, other
//! charsets) kept byte for byte.

use super::ComposeError;

/// One header field: name as written, value unfolded (continuation line
/// breaks removed, leading space of the value trimmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The field name, e.g. `Subject`.
    pub name: String,
    /// The unfolded value.
    pub value: String,
}

/// A part's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// `multipart/*`: the boundary and the parts (preamble and epilogue
    /// dropped: RFC 2046 says readers ignore them).
    Multipart {
        /// The boundary parameter.
        boundary: String,
        /// The parts in order.
        parts: Vec<Part>,
    },
    /// A `text/plain` or `text/html` part in UTF-8 (or US-ASCII), decoded:
    /// merge fields are rendered in it and it is encoded again after.
    Text {
        /// `plain` or `html` (lower case).
        subtype: String,
        /// The decoded text, LF line ends.
        text: String,
    },
    /// Anything else, kept as written (LF line ends; CRLF on output).
    Opaque(Vec<u8>),
}

/// A MIME part (the message itself is the top part).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Header fields in order.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Body,
}

impl Part {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

/// A parsed `Content-Type`: lower-case type and subtype and parameters
/// (names lower case, values unquoted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentType {
    /// e.g. `text`.
    pub kind: String,
    /// e.g. `plain`.
    pub subtype: String,
    /// e.g. `[("charset", "utf-8")]`.
    pub params: Vec<(String, String)>,
}

impl ContentType {
    /// The value of parameter `name`, if given.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parses a Content-Type value; `text/plain; charset=us-ascii` when it
    /// is absent or unreadable (RFC 2045 section 5.2).
    pub fn parse(value: Option<&str>) -> ContentType {
        let default = || ContentType {
            kind: "text".into(),
            subtype: "plain".into(),
            params: vec![("charset".into(), "us-ascii".into())],
        };
        let Some(value) = value else {
            return default();
        };
        let mut pieces = split_params(value).into_iter();
        let Some(first) = pieces.next() else {
            return default();
        };
        let Some((kind, subtype)) = first.split_once('/') else {
            return default();
        };
        let (kind, subtype) = (kind.trim(), subtype.trim());
        if kind.is_empty() || subtype.is_empty() {
            return default();
        }
        let params = pieces
            .filter_map(|p| {
                let (n, v) = p.split_once('=')?;
                Some((n.trim().to_ascii_lowercase(), unquote(v.trim())))
            })
            .collect();
        ContentType {
            kind: kind.to_ascii_lowercase(),
            subtype: subtype.to_ascii_lowercase(),
            params,
        }
    }
}

/// Splits a structured header value on `;` outside quoted strings.
fn split_params(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut escaped = false;
            for c in inner.chars() {
                if escaped || c != '\\' {
                    out.push(c);
                    escaped = false;
                } else {
                    escaped = true;
                }
            }
            out
        }
        None => v.to_string(),
    }
}

/// Deepest multipart nesting accepted (a template is written by a person;
/// this only stops a pathological file).
const MAX_DEPTH: usize = 16;

/// Parses a whole message (the template file's bytes; LF or CRLF).
pub fn parse_message(bytes: &[u8]) -> Result<Part, ComposeError> {
    let text = normalise_newlines(bytes);
    let part = parse_part(&text, 0)?;
    if part.headers.is_empty() {
        return Err(ComposeError::Template(
            "no header fields: a template is a whole message (From:, Subject:, a blank line, the body)"
                .into(),
        ));
    }
    Ok(part)
}

/// CRLF and lone CR become LF.
fn normalise_newlines(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                out.push(b'\n');
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn parse_part(bytes: &[u8], depth: usize) -> Result<Part, ComposeError> {
    if depth > MAX_DEPTH {
        return Err(ComposeError::Template(format!(
            "multipart nesting deeper than {MAX_DEPTH}"
        )));
    }
    let (head, body) = split_head(bytes);
    let headers = parse_headers(head)?;
    let part = Part {
        headers,
        body: Body::Opaque(Vec::new()),
    };
    let ctype = ContentType::parse(part.header("Content-Type"));
    let body = if ctype.kind == "multipart" {
        let boundary = ctype
            .param("boundary")
            .filter(|b| !b.is_empty() && b.len() <= 70)
            .ok_or_else(|| {
                ComposeError::Template(format!(
                    "multipart/{} without a usable boundary parameter",
                    ctype.subtype
                ))
            })?
            .to_string();
        let parts = split_multipart(body, &boundary)?
            .into_iter()
            .map(|p| parse_part(p, depth + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Body::Multipart { boundary, parts }
    } else {
        leaf_body(&part, &ctype, body)
    };
    Ok(Part { body, ..part })
}

/// Headers and body at the first empty line (no empty line: all header).
fn split_head(bytes: &[u8]) -> (&[u8], &[u8]) {
    if bytes.first() == Some(&b'\n') {
        return (&[], &bytes[1..]);
    }
    match memchr::memmem::find(bytes, b"\n\n") {
        Some(i) => (&bytes[..i + 1], &bytes[i + 2..]),
        None => (bytes, &[]),
    }
}

fn parse_headers(head: &[u8]) -> Result<Vec<Header>, ComposeError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| ComposeError::Template("header fields are not UTF-8".into()))?;
    let mut headers: Vec<Header> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            let Some(last) = headers.last_mut() else {
                return Err(ComposeError::Template(format!(
                    "continuation line before any header field: {line:?}"
                )));
            };
            last.value.push(' ');
            last.value.push_str(line.trim_start());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ComposeError::Template(format!(
                "not a header field (no colon): {line:?}"
            )));
        };
        if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b)) {
            return Err(ComposeError::Template(format!(
                "bad header field name {name:?}"
            )));
        }
        headers.push(Header {
            name: name.to_string(),
            value: value.trim().to_string(),
        });
    }
    Ok(headers)
}

/// The parts between `--boundary` lines, up to `--boundary--`.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>, ComposeError> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    let mut closed = false;
    while pos <= body.len() {
        let end = memchr::memchr(b'\n', &body[pos..]).map_or(body.len(), |i| pos + i);
        let line = &body[pos..end];
        let line = trim_trailing_space(line);
        if line.starts_with(delimiter.as_bytes()) {
            let rest = &line[delimiter.len()..];
            if rest.is_empty() || rest == b"--" {
                if let Some(s) = start {
                    // The line break before the delimiter belongs to it.
                    let stop = pos.saturating_sub(1).max(s);
                    parts.push(&body[s..stop]);
                }
                if rest == b"--" {
                    closed = true;
                    break;
                }
                start = Some((end + 1).min(body.len()));
            }
        }
        pos = end + 1;
    }
    if !closed {
        return Err(ComposeError::Template(format!(
            "multipart without its closing delimiter --{boundary}--"
        )));
    }
    if parts.is_empty() {
        return Err(ComposeError::Template(format!(
            "multipart with boundary {boundary:?} has no parts"
        )));
    }
    Ok(parts)
}

fn trim_trailing_space(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = line {
        line = rest;
    }
    line
}

/// A leaf body: decoded text when merge fields can go in it, else kept.
fn leaf_body(part: &Part, ctype: &ContentType, raw: &[u8]) -> Body {
    let attachment = part.header("Content-Disposition").is_some_and(|d| {
        d.trim_start()
            .to_ascii_lowercase()
            .starts_with("attachment")
    });
    let charset_ok = ctype.param("charset").map_or(true, |c| {
        c.eq_ignore_ascii_case("utf-8") || c.eq_ignore_ascii_case("us-ascii")
    });
    let templatable = ctype.kind == "text"
        && (ctype.subtype == "plain" || ctype.subtype == "html")
        && !attachment
        && charset_ok;
    if !templatable {
        return Body::Opaque(rewrap_base64(part, raw));
    }
    let cte = part
        .header("Content-Transfer-Encoding")
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let decoded = match cte.as_str() {
        "quoted-printable" => {
            quoted_printable::decode(raw, quoted_printable::ParseMode::Robust).ok()
        }
        "base64" => {
            use base64::Engine;
            let clean: Vec<u8> = raw
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD.decode(clean).ok()
        }
        _ => Some(raw.to_vec()),
    };
    match decoded.map(|d| String::from_utf8(normalise_newlines(&d))) {
        Some(Ok(text)) => Body::Text {
            subtype: ctype.subtype.clone(),
            text,
        },
        _ => Body::Opaque(raw.to_vec()),
    }
}

/// An opaque base64 part with lines over 76 characters (some generators
/// write one long line) rewrapped at 76, so no line passes 998 octets;
/// anything else as written.
fn rewrap_base64(part: &Part, raw: &[u8]) -> Vec<u8> {
    let base64 = part
        .header("Content-Transfer-Encoding")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("base64"));
    if !base64 || raw.split(|&b| b == b'\n').all(|l| l.len() <= 76) {
        return raw.to_vec();
    }
    let clean: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(clean.len() + clean.len() / 76 + 1);
    for chunk in clean.chunks(76) {
        out.extend_from_slice(chunk);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_base64_lines_are_rewrapped() {
        let long = "QUJD".repeat(600);
        let t =
            format!("Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n{long}\n");
        let p = parse_message(t.as_bytes()).unwrap();
        let Body::Opaque(b) = p.body else { panic!() };
        assert!(b.split(|&c| c == b'\n').all(|l| l.len() <= 76));
        assert_eq!(
            b.iter().filter(|c| !c.is_ascii_whitespace()).count(),
            long.len()
        );
    }

    #[test]
    fn single_part_with_folded_header() {
        let p = parse_message(
            b"From: a@example.com\r\nSubject: Hello\r\n  {{ name }}\r\n\r\nHi {{ name }}\r\n",
        )
        .unwrap();
        assert_eq!(p.header("subject"), Some("Hello {{ name }}"));
        assert_eq!(
            p.body,
            Body::Text {
                subtype: "plain".into(),
                text: "Hi {{ name }}\n".into()
            }
        );
    }

    #[test]
    fn multipart_alternative_with_attachment() {
        let t = "From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"outer\"\n\n\
                 preamble\n--outer\nContent-Type: multipart/alternative; boundary=inner\n\n\
                 --inner\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
                 Caf=C3=A9 {{ name }}\n--inner\nContent-Type: text/html\n\n<p>{{ name }}</p>\n--inner--\n\
                 --outer\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=a.pdf\n\
                 Content-Transfer-Encoding: base64\n\nJVBERi0=\n--outer--\nepilogue\n";
        let p = parse_message(t.as_bytes()).unwrap();
        let Body::Multipart { boundary, parts } = &p.body else {
            panic!("{p:?}")
        };
        assert_eq!(boundary, "outer");
        assert_eq!(parts.len(), 2);
        let Body::Multipart { parts: alt, .. } = &parts[0].body else {
            panic!()
        };
        assert_eq!(
            alt[0].body,
            Body::Text {
                subtype: "plain".into(),
                text: "Café {{ name }}".into()
            }
        );
        assert_eq!(
            alt[1].body,
            Body::Text {
                subtype: "html".into(),
                text: "<p>{{ name }}</p>".into()
            }
        );
        assert_eq!(parts[1].body, Body::Opaque(b"JVBERi0=".to_vec()));
    }

    #[test]
    fn bad_templates_are_refused_clearly() {
        for (t, want) in [
            (&b"no colon here\n\nbody"[..], "no colon"),
            (b"\nbody only", "no header fields"),
            (
                b"Content-Type: multipart/mixed\n\nx",
                "without a usable boundary",
            ),
            (
                b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n",
                "closing delimiter",
            ),
        ] {
            let e = parse_message(t).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn other_charsets_stay_opaque() {
        let p =
            parse_message(b"Content-Type: text/plain; charset=iso-8859-1\n\nCaf\xe9\n").unwrap();
        assert!(matches!(p.body, Body::Opaque(_)));
        let ct = ContentType::parse(Some("Text/HTML; Charset=\"UTF-8\"; x=\"a;b\""));
        assert_eq!((ct.kind.as_str(), ct.subtype.as_str()), ("text", "html"));
        assert_eq!(ct.param("charset"), Some("UTF-8"));
        assert_eq!(ct.param("x"), Some("a;b"));
    }
}
