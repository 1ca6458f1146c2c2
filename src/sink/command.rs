//! Parsing one SMTP command line (without its line end) into a [`Command`].
//! Pure: no state, no I/O.

use super::scan::find_byte;

/// A fixed reply: code, enhanced status code, text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The three-digit reply code.
    pub(crate) code: &'static str,
    /// The RFC 3463 enhanced status code (sent only when ESMTP is on).
    pub(crate) enhanced: &'static str,
    /// The text.
    pub(crate) text: &'static str,
}

impl Reply {
    const fn new(code: &'static str, enhanced: &'static str, text: &'static str) -> Self {
        Reply {
            code,
            enhanced,
            text,
        }
    }
}

/// A command the server understands, or why the line is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    /// `HELO domain`.
    Helo(&'a [u8]),
    /// `EHLO domain`.
    Ehlo(&'a [u8]),
    /// `MAIL FROM:<path> params`; the path without brackets.
    Mail {
        /// The reverse path (empty for `<>`).
        path: &'a [u8],
        /// The parameters, space separated, trimmed.
        params: &'a [u8],
    },
    /// `RCPT TO:<path> params`.
    Rcpt {
        /// The forward path.
        path: &'a [u8],
        /// The parameters.
        params: &'a [u8],
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY`.
    Vrfy,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// The SASL mechanism name, as sent.
        mechanism: &'a [u8],
        /// The initial response (base64, or `=` for an empty one).
        initial: Option<&'a [u8]>,
    },
    /// A verb this server does not implement.
    Unknown,
    /// A known verb with bad arguments, or an empty line.
    Bad(Reply),
}

const BAD_SYNTAX: Reply = Reply::new("500", "5.5.2", "Error: bad syntax");
const HELO_SYNTAX: Reply = Reply::new("501", "5.5.4", "Syntax: HELO hostname");
const EHLO_SYNTAX: Reply = Reply::new("501", "5.5.4", "Syntax: EHLO hostname");
const MAIL_SYNTAX: Reply = Reply::new("501", "5.5.4", "Syntax: MAIL FROM:<address>");
const RCPT_SYNTAX: Reply = Reply::new("501", "5.5.4", "Syntax: RCPT TO:<address>");
const DATA_SYNTAX: Reply = Reply::new("501", "5.5.4", "Syntax: DATA");
const STARTTLS_SYNTAX: Reply = Reply::new("501", "5.5.4", "Syntax: STARTTLS");
const AUTH_SYNTAX: Reply = Reply::new("501", "5.5.4", "Syntax: AUTH mechanism");

/// Parses a command line (without CR LF).
pub(crate) fn parse(line: &[u8]) -> Command<'_> {
    let line = trim(line);
    if line.is_empty() {
        return Command::Bad(BAD_SYNTAX);
    }
    let (verb, rest) = match find_byte(b' ', line) {
        Some(i) => (&line[..i], trim(&line[i + 1..])),
        None => (line, &b""[..]),
    };
    let is = |name: &[u8]| verb.eq_ignore_ascii_case(name);
    if is(b"MAIL") {
        path_command(rest, b"FROM:", false).map_or(Command::Bad(MAIL_SYNTAX), |(path, params)| {
            Command::Mail { path, params }
        })
    } else if is(b"RCPT") {
        path_command(rest, b"TO:", true).map_or(Command::Bad(RCPT_SYNTAX), |(path, params)| {
            Command::Rcpt { path, params }
        })
    } else if is(b"DATA") {
        if rest.is_empty() {
            Command::Data
        } else {
            Command::Bad(DATA_SYNTAX)
        }
    } else if is(b"EHLO") {
        if rest.is_empty() {
            Command::Bad(EHLO_SYNTAX)
        } else {
            Command::Ehlo(rest)
        }
    } else if is(b"HELO") {
        if rest.is_empty() {
            Command::Bad(HELO_SYNTAX)
        } else {
            Command::Helo(rest)
        }
    } else if is(b"RSET") {
        Command::Rset
    } else if is(b"NOOP") {
        Command::Noop
    } else if is(b"QUIT") {
        Command::Quit
    } else if is(b"VRFY") {
        Command::Vrfy
    } else if is(b"STARTTLS") {
        if rest.is_empty() {
            Command::StartTls
        } else {
            Command::Bad(STARTTLS_SYNTAX)
        }
    } else if is(b"AUTH") {
        auth(rest)
    } else {
        Command::Unknown
    }
}

/// `AUTH mechanism [initial-response]`: exactly one or two words.
fn auth(rest: &[u8]) -> Command<'_> {
    let mut words = rest.split(|&b| b == b' ').filter(|w| !w.is_empty());
    match (words.next(), words.next(), words.next()) {
        (Some(mechanism), initial, None) => Command::Auth { mechanism, initial },
        _ => Command::Bad(AUTH_SYNTAX),
    }
}

/// Splits `FROM:<path> params` (or `TO:`): the keyword is matched without
/// regard to case, blanks after the colon and a path without brackets are
/// tolerated. An empty path is allowed only when `!nonempty`.
fn path_command<'a>(
    rest: &'a [u8],
    keyword: &[u8],
    nonempty: bool,
) -> Option<(&'a [u8], &'a [u8])> {
    if rest.len() < keyword.len() || !rest[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = trim(&rest[keyword.len()..]);
    let (path, params) = if rest.first() == Some(&b'<') {
        let gt = find_byte(b'>', rest)?;
        (&rest[1..gt], trim(&rest[gt + 1..]))
    } else {
        let end = find_byte(b' ', rest).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        (&rest[..end], trim(&rest[end..]))
    };
    if nonempty && path.is_empty() {
        return None;
    }
    Some((path, params))
}

fn trim(s: &[u8]) -> &[u8] {
    let from = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let to = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(from, |i| i + 1);
    &s[from..to]
}

/// Iterates over `KEY[=VALUE]` parameters.
pub(crate) fn params(s: &[u8]) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    s.split(|&b| b == b' ')
        .filter(|p| !p.is_empty())
        .map(|p| match find_byte(b'=', p) {
            Some(i) => (&p[..i], Some(&p[i + 1..])),
            None => (p, None),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_any_case() {
        assert_eq!(
            parse(b"ehlo client.example"),
            Command::Ehlo(b"client.example")
        );
        assert_eq!(parse(b"HeLo x"), Command::Helo(b"x"));
        assert_eq!(parse(b"DATA"), Command::Data);
        assert_eq!(parse(b"data "), Command::Data);
        assert_eq!(parse(b"RSET"), Command::Rset);
        assert_eq!(parse(b"NOOP whatever"), Command::Noop);
        assert_eq!(parse(b"quit"), Command::Quit);
        assert_eq!(parse(b"VRFY bob"), Command::Vrfy);
        assert_eq!(parse(b"starttls"), Command::StartTls);
        assert_eq!(parse(b"STARTTLS now"), Command::Bad(STARTTLS_SYNTAX));
        assert_eq!(parse(b"BDAT 10 LAST"), Command::Unknown);
        assert_eq!(parse(b"MAILX FROM:<a@b>"), Command::Unknown);
    }

    #[test]
    fn mail_and_rcpt() {
        assert_eq!(
            parse(b"MAIL FROM:<a@b> SIZE=10 BODY=8BITMIME"),
            Command::Mail {
                path: b"a@b",
                params: b"SIZE=10 BODY=8BITMIME"
            }
        );
        assert_eq!(
            parse(b"mail from: <>"),
            Command::Mail {
                path: b"",
                params: b""
            }
        );
        assert_eq!(
            parse(b"RCPT TO:bare@x"),
            Command::Rcpt {
                path: b"bare@x",
                params: b""
            }
        );
        assert_eq!(parse(b"RCPT TO:<>"), Command::Bad(RCPT_SYNTAX));
        assert_eq!(parse(b"MAIL <a@b>"), Command::Bad(MAIL_SYNTAX));
        assert_eq!(parse(b"MAIL FROM:<a@b"), Command::Bad(MAIL_SYNTAX));
        assert_eq!(parse(b"MAIL FROM:"), Command::Bad(MAIL_SYNTAX));
        assert_eq!(parse(b"RCPT"), Command::Bad(RCPT_SYNTAX));
    }

    #[test]
    fn auth_commands() {
        assert_eq!(
            parse(b"AUTH PLAIN"),
            Command::Auth {
                mechanism: b"PLAIN",
                initial: None
            }
        );
        assert_eq!(
            parse(b"auth login  dXNlcg== "),
            Command::Auth {
                mechanism: b"login",
                initial: Some(b"dXNlcg==")
            }
        );
        assert_eq!(parse(b"AUTH"), Command::Bad(AUTH_SYNTAX));
        assert_eq!(parse(b"AUTH PLAIN a b"), Command::Bad(AUTH_SYNTAX));
    }

    #[test]
    fn bad_arguments() {
        assert_eq!(parse(b""), Command::Bad(BAD_SYNTAX));
        assert_eq!(parse(b"   "), Command::Bad(BAD_SYNTAX));
        assert_eq!(parse(b"EHLO"), Command::Bad(EHLO_SYNTAX));
        assert_eq!(parse(b"HELO "), Command::Bad(HELO_SYNTAX));
        assert_eq!(parse(b"DATA now"), Command::Bad(DATA_SYNTAX));
    }

    #[test]
    fn parameter_iteration() {
        let got: Vec<_> = params(b"SIZE=10  SMTPUTF8 BODY=").collect();
        assert_eq!(
            got,
            vec![
                (&b"SIZE"[..], Some(&b"10"[..])),
                (&b"SMTPUTF8"[..], None),
                (&b"BODY"[..], Some(&b""[..])),
            ]
        );
    }
}
