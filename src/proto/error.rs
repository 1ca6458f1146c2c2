//! Errors of the SMTP protocol layer.

use super::command::Stage;
use super::reply::{EnhancedCode, Reply};

/// What can go wrong while speaking SMTP, apart from I/O (which belongs to
/// the caller).
///
/// Protocol garbage and replies that make no sense mean the connection is
/// unusable: the caller drops it and defers the delivery
/// ([`ProtoError::is_transient`] is true).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A reply line that is not `NNN`, `NNN text` or `NNN-text` with NNN in
    /// 200..=599.
    #[error("malformed server reply ({reason}): {line:?}")]
    BadReply {
        /// What is wrong with it.
        reason: &'static str,
        /// The start of the offending line, decoded lossily.
        line: String,
    },
    /// A reply line longer than the limit (it protects memory).
    #[error("server reply line longer than {max} bytes")]
    LineTooLong {
        /// The limit in bytes, without the line end.
        max: usize,
    },
    /// A multi-line reply with more lines than the limit.
    #[error("server reply has more than {max} lines")]
    TooManyLines {
        /// The limit.
        max: usize,
    },
    /// The lines of one multi-line reply carry different codes.
    #[error("server reply lines carry different codes: {first} then {then}")]
    MixedCodes {
        /// The code of the first line.
        first: u16,
        /// The code of the line that differs.
        then: u16,
    },
    /// A well-formed reply that makes no sense at this point (e.g. 354 to
    /// EHLO).
    #[error("{}", describe("unexpected reply", *stage, reply))]
    Unexpected {
        /// What the reply answered.
        stage: Stage,
        /// The reply.
        reply: Reply,
    },
    /// The server refused the connection or a session command (greeting,
    /// EHLO and HELO, STARTTLS, RSET). Transient or permanent by the reply's
    /// class.
    #[error("{}", describe("said", *stage, reply))]
    Rejected {
        /// What the reply answered.
        stage: Stage,
        /// The reply.
        reply: Reply,
    },
    /// A state machine was driven wrongly (a reply given when none was
    /// awaited, a transaction without recipients): a bug in the caller.
    #[error("SMTP state machine misused: {0}")]
    Misuse(&'static str),
    /// An envelope address that cannot be put in a command: it contains CR,
    /// LF or another control character, `<` or `>`, or is an empty
    /// recipient.
    #[error("invalid {what} address for SMTP: {value:?}")]
    InvalidAddress {
        /// `sender` or `recipient`.
        what: &'static str,
        /// The address as given.
        value: String,
    },
    /// The host name for EHLO/HELO is empty or contains white space or
    /// control characters (a configuration error).
    #[error("invalid host name for EHLO/HELO: {0:?}")]
    InvalidHostname(String),
    /// The server cannot take this message: larger than its announced SIZE,
    /// or SMTPUTF8 needed but not offered.
    #[error("{reason}")]
    Incompatible {
        /// The status to report (5.3.4 for size, 5.6.7 for SMTPUTF8).
        dsn: EnhancedCode,
        /// Postfix-style explanation.
        reason: String,
    },
}

/// Postfix's wording: `refused to talk to me: <reply>` for the greeting,
/// `said: <reply> (in reply to <command>)` otherwise.
fn describe(what: &str, stage: Stage, reply: &Reply) -> String {
    match (what, stage) {
        ("said", Stage::Greeting) => format!("refused to talk to me: {reply}"),
        _ => format!("{what}: {reply} (in reply to {stage})"),
    }
}

impl ProtoError {
    /// True when the delivery should be deferred and retried; false when it
    /// will never succeed (the recipients bounce).
    ///
    /// Protocol garbage, unexpected replies, bad host names (configuration)
    /// and our own misuse are transient: a fault on either side must never
    /// bounce mail. A rejection follows its reply's class.
    pub fn is_transient(&self) -> bool {
        match self {
            ProtoError::BadReply { .. }
            | ProtoError::LineTooLong { .. }
            | ProtoError::TooManyLines { .. }
            | ProtoError::MixedCodes { .. }
            | ProtoError::Unexpected { .. }
            | ProtoError::Misuse(_)
            | ProtoError::InvalidHostname(_) => true,
            ProtoError::Rejected { reply, .. } => !reply.is_permanent(),
            ProtoError::InvalidAddress { .. } => false,
            ProtoError::Incompatible { dsn, .. } => dsn.class == 4,
        }
    }

    /// The server reply behind this error, when there is one.
    pub fn rejected_by(&self) -> Option<&Reply> {
        match self {
            ProtoError::Unexpected { reply, .. } | ProtoError::Rejected { reply, .. } => {
                Some(reply)
            }
            _ => None,
        }
    }

    /// The status for `dsn=` in logs: the reply's for a rejection; 4.5.0
    /// (protocol error) for garbage and unexpected replies; 4.3.0 for
    /// misuse; 4.3.5 for a bad host name; 5.1.7 / 5.1.3 for a bad sender /
    /// recipient; the given code for an incompatibility.
    pub fn dsn(&self) -> String {
        match self {
            ProtoError::Rejected { reply, .. } => reply.dsn(),
            ProtoError::BadReply { .. }
            | ProtoError::LineTooLong { .. }
            | ProtoError::TooManyLines { .. }
            | ProtoError::MixedCodes { .. }
            | ProtoError::Unexpected { .. } => "4.5.0".to_string(),
            ProtoError::Misuse(_) => "4.3.0".to_string(),
            ProtoError::InvalidHostname(_) => "4.3.5".to_string(),
            ProtoError::InvalidAddress { what, .. } => {
                if *what == "sender" { "5.1.7" } else { "5.1.3" }.to_string()
            }
            ProtoError::Incompatible { dsn, .. } => dsn.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> Reply {
        Reply::new(code, vec![text.to_string()])
    }

    #[test]
    fn rejection_follows_reply_class() {
        let soft = ProtoError::Rejected {
            stage: Stage::Greeting,
            reply: reply(421, "busy"),
        };
        let hard = ProtoError::Rejected {
            stage: Stage::Greeting,
            reply: reply(554, "5.7.1 go away"),
        };
        assert!(soft.is_transient());
        assert!(!hard.is_transient());
        assert_eq!(hard.dsn(), "5.7.1");
        assert_eq!(hard.rejected_by().map(|r| r.code), Some(554));
        assert_eq!(hard.to_string(), "refused to talk to me: 554 5.7.1 go away");
        let helo = ProtoError::Rejected {
            stage: Stage::Helo,
            reply: reply(501, "bad name"),
        };
        assert_eq!(
            helo.to_string(),
            "said: 501 bad name (in reply to HELO command)"
        );
    }

    #[test]
    fn garbage_and_misuse_are_transient() {
        let unexpected = ProtoError::Unexpected {
            stage: Stage::Ehlo,
            reply: reply(554, "what"),
        };
        assert!(unexpected.is_transient());
        assert_eq!(unexpected.dsn(), "4.5.0");
        assert!(unexpected.rejected_by().is_some());
        for e in [
            ProtoError::BadReply {
                reason: "x",
                line: "y".into(),
            },
            ProtoError::LineTooLong { max: 1 },
            ProtoError::TooManyLines { max: 1 },
            ProtoError::MixedCodes {
                first: 250,
                then: 251,
            },
            ProtoError::Misuse("x"),
            ProtoError::InvalidHostname("a b".into()),
        ] {
            assert!(e.is_transient(), "{e}");
            assert!(e.rejected_by().is_none());
            assert!(e.dsn().starts_with("4."), "{e}");
        }
    }

    #[test]
    fn bad_addresses_and_incompatibility_are_permanent() {
        let e = ProtoError::InvalidAddress {
            what: "recipient",
            value: "a\r\nb".into(),
        };
        assert!(!e.is_transient());
        assert_eq!(e.dsn(), "5.1.3");
        let e = ProtoError::InvalidAddress {
            what: "sender",
            value: "<".into(),
        };
        assert_eq!(e.dsn(), "5.1.7");
        let e = ProtoError::Incompatible {
            dsn: EnhancedCode::new(5, 3, 4),
            reason: "too big".into(),
        };
        assert!(!e.is_transient());
        assert_eq!(e.dsn(), "5.3.4");
    }
}
