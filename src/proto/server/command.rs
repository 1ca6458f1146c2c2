//! Parsing one command line (without its line end) into a [`Command`].
//! Pure: no state. The verb is matched without regard to case; arguments
//! are separated by spaces (RFC 5321 allows nothing else: the session has
//! already refused control characters, tabs included).

use super::address::split_path;
use super::counts::Verb;
use super::reply::Reply;

/// A command, or why the line is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    /// `HELO domain`.
    Helo(&'a [u8]),
    /// `EHLO domain`.
    Ehlo(&'a [u8]),
    /// `MAIL FROM:<path> params`: the text between the brackets.
    Mail {
        /// The reverse path, unchecked.
        path: &'a [u8],
        /// The parameters.
        params: &'a [u8],
    },
    /// `RCPT TO:<path> params`.
    Rcpt {
        /// The forward path, unchecked.
        path: &'a [u8],
        /// The parameters.
        params: &'a [u8],
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// The chunk size in octets.
        size: u64,
        /// The last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`.
    Vrfy,
    /// `HELP [string]`.
    Help,
    /// `STARTTLS`.
    StartTls,
    /// `AUTH mechanism [initial-response]`.
    Auth {
        /// The mechanism name as sent.
        mechanism: &'a [u8],
        /// The initial response, if any.
        initial: Option<&'a [u8]>,
    },
    /// A command Postfix's `smtpd_forbidden_commands` hangs up on: an HTTP
    /// verb, or a line that does not start with a letter.
    Forbidden,
    /// A verb this server does not know.
    Unknown,
    /// A known verb with bad arguments, or an empty line (`Unknown`).
    Bad(Verb, Reply),
}

impl Command<'_> {
    /// The verb it counts as.
    pub(crate) fn verb(&self) -> Verb {
        match self {
            Command::Helo(_) => Verb::Helo,
            Command::Ehlo(_) => Verb::Ehlo,
            Command::Mail { .. } => Verb::Mail,
            Command::Rcpt { .. } => Verb::Rcpt,
            Command::Data => Verb::Data,
            Command::Bdat { .. } => Verb::Bdat,
            Command::Rset => Verb::Rset,
            Command::Noop => Verb::Noop,
            Command::Quit => Verb::Quit,
            Command::Vrfy => Verb::Vrfy,
            Command::Help => Verb::Help,
            Command::StartTls => Verb::StartTls,
            Command::Auth { .. } => Verb::Auth,
            Command::Forbidden | Command::Unknown => Verb::Unknown,
            Command::Bad(verb, _) => *verb,
        }
    }
}

const BAD_SYNTAX: Reply = Reply::fixed(500, "5.5.2", "Error: bad syntax");
const HELO_SYNTAX: Reply = Reply::fixed(501, "5.5.4", "Syntax: HELO hostname");
const EHLO_SYNTAX: Reply = Reply::fixed(501, "5.5.4", "Syntax: EHLO hostname");
const MAIL_SYNTAX: Reply = Reply::fixed(501, "5.5.4", "Syntax: MAIL FROM:<address>");
const RCPT_SYNTAX: Reply = Reply::fixed(501, "5.5.4", "Syntax: RCPT TO:<address>");
const DATA_SYNTAX: Reply = Reply::fixed(501, "5.5.4", "Syntax: DATA");
const BDAT_SYNTAX: Reply = Reply::fixed(501, "5.5.4", "Syntax: BDAT count [LAST]");
const RSET_SYNTAX: Reply = Reply::fixed(501, "5.5.4", "Syntax: RSET");
const QUIT_SYNTAX: Reply = Reply::fixed(501, "5.5.4", "Syntax: QUIT");
const VRFY_SYNTAX: Reply = Reply::fixed(501, "5.5.4", "Syntax: VRFY address");
const STARTTLS_SYNTAX: Reply = Reply::fixed(501, "5.5.4", "Syntax: STARTTLS");
const AUTH_SYNTAX: Reply = Reply::fixed(501, "5.5.4", "Syntax: AUTH mechanism");

/// Parses a command line (without CR LF, free of control characters).
pub(crate) fn parse(line: &[u8]) -> Command<'_> {
    let line = trim(line);
    let Some(&first) = line.first() else {
        return Command::Bad(Verb::Unknown, BAD_SYNTAX);
    };
    if !first.is_ascii_alphabetic() {
        return Command::Forbidden;
    }
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], trim(&line[i + 1..])),
        None => (line, &b""[..]),
    };
    let is = |name: &[u8]| verb.eq_ignore_ascii_case(name);
    let bare = |command: Command<'static>, verb: Verb, syntax: Reply| {
        if rest.is_empty() {
            command
        } else {
            Command::Bad(verb, syntax)
        }
    };
    if is(b"MAIL") {
        match keyword(rest, b"FROM:").and_then(split_path) {
            Some((path, params)) => Command::Mail { path, params },
            None => Command::Bad(Verb::Mail, MAIL_SYNTAX),
        }
    } else if is(b"RCPT") {
        match keyword(rest, b"TO:").and_then(split_path) {
            Some((path, params)) => Command::Rcpt { path, params },
            None => Command::Bad(Verb::Rcpt, RCPT_SYNTAX),
        }
    } else if is(b"DATA") {
        bare(Command::Data, Verb::Data, DATA_SYNTAX)
    } else if is(b"BDAT") {
        bdat(rest)
    } else if is(b"EHLO") || is(b"HELO") {
        let ehlo = is(b"EHLO");
        match (rest.is_empty(), ehlo) {
            (true, true) => Command::Bad(Verb::Ehlo, EHLO_SYNTAX),
            (true, false) => Command::Bad(Verb::Helo, HELO_SYNTAX),
            (false, true) => Command::Ehlo(rest),
            (false, false) => Command::Helo(rest),
        }
    } else if is(b"RSET") {
        bare(Command::Rset, Verb::Rset, RSET_SYNTAX)
    } else if is(b"NOOP") {
        Command::Noop
    } else if is(b"QUIT") {
        bare(Command::Quit, Verb::Quit, QUIT_SYNTAX)
    } else if is(b"VRFY") {
        if rest.is_empty() {
            Command::Bad(Verb::Vrfy, VRFY_SYNTAX)
        } else {
            Command::Vrfy
        }
    } else if is(b"HELP") {
        Command::Help
    } else if is(b"STARTTLS") {
        bare(Command::StartTls, Verb::StartTls, STARTTLS_SYNTAX)
    } else if is(b"AUTH") {
        auth(rest)
    } else if is(b"CONNECT") || is(b"GET") || is(b"POST") {
        Command::Forbidden
    } else {
        Command::Unknown
    }
}

/// `rest` after a case-insensitive `keyword` (`FROM:`, `TO:`).
fn keyword<'a>(rest: &'a [u8], keyword: &[u8]) -> Option<&'a [u8]> {
    let head = rest.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &rest[keyword.len()..])
}

/// `BDAT size [LAST]`: the size is 1 to 20 digits that fit in a u64.
fn bdat(rest: &[u8]) -> Command<'_> {
    let mut words = rest.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .filter(|w| w.len() <= 20 && w.iter().all(u8::is_ascii_digit))
        .and_then(|w| std::str::from_utf8(w).ok())
        .and_then(|w| w.parse::<u64>().ok());
    let last = match words.next() {
        None => Some(false),
        Some(w) if w.eq_ignore_ascii_case(b"LAST") => Some(true),
        Some(_) => None,
    };
    match (size, last, words.next()) {
        (Some(size), Some(last), None) => Command::Bdat { size, last },
        _ => Command::Bad(Verb::Bdat, BDAT_SYNTAX),
    }
}

/// `AUTH mechanism [initial-response]`: one or two words.
fn auth(rest: &[u8]) -> Command<'_> {
    let mut words = rest.split(|&b| b == b' ').filter(|w| !w.is_empty());
    match (words.next(), words.next(), words.next()) {
        (Some(mechanism), initial, None) => Command::Auth { mechanism, initial },
        _ => Command::Bad(Verb::Auth, AUTH_SYNTAX),
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let from = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    let to = s.iter().rposition(|&b| b != b' ').map_or(from, |i| i + 1);
    &s[from..to]
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
        assert_eq!(parse(b"help me"), Command::Help);
        assert_eq!(parse(b"starttls"), Command::StartTls);
        assert_eq!(parse(b"MAILX FROM:<a@b>"), Command::Unknown);
        assert_eq!(parse(b"EXPN list"), Command::Unknown);
    }

    #[test]
    fn bad_arguments() {
        let code = |l: &[u8]| match parse(l) {
            Command::Bad(_, r) => r.code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(b""), 500);
        assert_eq!(code(b"   "), 500);
        assert_eq!(code(b"EHLO"), 501);
        assert_eq!(code(b"HELO "), 501);
        assert_eq!(code(b"DATA now"), 501);
        assert_eq!(code(b"RSET x"), 501);
        assert_eq!(code(b"QUIT now"), 501);
        assert_eq!(code(b"VRFY"), 501);
        assert_eq!(code(b"STARTTLS now"), 501);
        assert_eq!(parse(b"EHLO").verb(), Verb::Ehlo);
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
            parse(b"RCPT To:<c@d> NOTIFY=NEVER"),
            Command::Rcpt {
                path: b"c@d",
                params: b"NOTIFY=NEVER"
            }
        );
        for bad in [
            &b"RCPT TO:bare@x"[..],
            b"MAIL <a@b>",
            b"MAIL FROM:<a@b",
            b"MAIL FROM:",
            b"MAIL FROM <a@b>",
            b"RCPT",
            b"MAIL FROM:<a@b>SIZE=1",
        ] {
            assert!(matches!(parse(bad), Command::Bad(..)), "{bad:?}");
        }
    }

    #[test]
    fn bdat() {
        assert_eq!(
            parse(b"BDAT 10"),
            Command::Bdat {
                size: 10,
                last: false
            }
        );
        assert_eq!(
            parse(b"bdat 0 last"),
            Command::Bdat {
                size: 0,
                last: true
            }
        );
        assert_eq!(
            parse(b"BDAT 18446744073709551615 LAST"),
            Command::Bdat {
                size: u64::MAX,
                last: true
            }
        );
        for bad in [
            &b"BDAT"[..],
            b"BDAT x",
            b"BDAT -1",
            b"BDAT 18446744073709551616",
            b"BDAT 1 FIRST",
            b"BDAT 1 LAST x",
        ] {
            assert_eq!(parse(bad).verb(), Verb::Bdat, "{bad:?}");
            assert!(matches!(parse(bad), Command::Bad(..)), "{bad:?}");
        }
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
        assert!(matches!(parse(b"AUTH"), Command::Bad(Verb::Auth, _)));
        assert!(matches!(
            parse(b"AUTH PLAIN a b"),
            Command::Bad(Verb::Auth, _)
        ));
    }

    #[test]
    fn forbidden() {
        for line in [
            &b"GET / HTTP/1.1"[..],
            b"post /x",
            b"CONNECT host:25",
            b"\x16\x03\x01",
            b"1234",
            b"<html>",
        ] {
            assert_eq!(parse(line), Command::Forbidden, "{line:?}");
        }
    }
}
