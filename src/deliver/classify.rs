//! Turning replies and failures into per-recipient results. A result is a
//! typed value (class, enhanced code, the next hop's reply with its peer
//! and stage, or the local failure); it becomes Postfix's text (`250 2.0.0
//! Ok`, `host mx[1.2.3.4] said: 550 5.1.1 ... (in reply to RCPT TO
//! command)`) only where it is logged or reported.

use std::fmt;

use crate::proto::{RcptOutcome, Reply, Stage};

use super::{DeliverError, Peer};

/// What became of one recipient, in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResultClass {
    /// Accepted by the next hop.
    Sent,
    /// Failed temporarily: retry later.
    Deferred,
    /// Failed permanently.
    Bounced,
    /// Stayed queued longer than `maximal_queue_lifetime`.
    Expired,
}

impl ResultClass {
    /// The word of `status=` in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultClass::Sent => "sent",
            ResultClass::Deferred => "deferred",
            ResultClass::Bounced => "bounced",
            ResultClass::Expired => "expired",
        }
    }
}

/// The next hop's reply that decided a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteReply {
    /// `host[ip]` of the server that replied.
    pub peer: String,
    /// The reply.
    pub reply: Reply,
    /// The command it answered.
    pub stage: Stage,
}

/// Why a recipient got its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The next hop's reply to one of the transaction's commands.
    Reply(RemoteReply),
    /// A failure of the connection as a whole (DNS, connect, TLS, a refused
    /// greeting), or a local decision (expiry, an unrenderable recipient):
    /// its text, and the server's reply when one caused it.
    Failure {
        /// As logged.
        text: String,
        /// The reply behind it (a refused greeting or EHLO), if any.
        reply: Option<Reply>,
    },
}

/// What happened to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcptResult {
    /// Sent, deferred, bounced or expired.
    pub class: ResultClass,
    /// Enhanced status code.
    pub dsn: String,
    /// Why.
    pub cause: Cause,
}

impl RcptResult {
    /// The result for a recipient whose reply from `peer` to `stage` was `reply`.
    pub fn from_reply(peer: &Peer, reply: &Reply, stage: Stage) -> RcptResult {
        let class = if reply.is_positive() {
            ResultClass::Sent
        } else if reply.is_permanent() {
            ResultClass::Bounced
        } else {
            ResultClass::Deferred
        };
        RcptResult::replied(class, peer, reply.clone(), stage)
    }

    /// The result for a recipient as the transaction machine judged it. The
    /// verdict, not the reply's class, decides: a 250 where a 354 was due
    /// is still a deferral.
    pub fn from_outcome(peer: &Peer, outcome: &RcptOutcome, stage: Stage) -> RcptResult {
        let class = match outcome {
            RcptOutcome::Delivered(_) => ResultClass::Sent,
            RcptOutcome::Deferred(_) => ResultClass::Deferred,
            RcptOutcome::Bounced(_) => ResultClass::Bounced,
        };
        RcptResult {
            class,
            dsn: outcome.dsn(),
            cause: Cause::Reply(RemoteReply {
                peer: peer.named(),
                reply: outcome.reply().clone(),
                stage,
            }),
        }
    }

    fn replied(class: ResultClass, peer: &Peer, reply: Reply, stage: Stage) -> RcptResult {
        RcptResult {
            class,
            dsn: reply.dsn(),
            cause: Cause::Reply(RemoteReply {
                peer: peer.named(),
                reply,
                stage,
            }),
        }
    }

    /// The result for every recipient of a transaction that failed as a whole.
    pub fn from_error(e: &DeliverError) -> RcptResult {
        let class = if e.is_transient() {
            ResultClass::Deferred
        } else {
            ResultClass::Bounced
        };
        let reply = match e {
            DeliverError::Refused { reply, .. } => Some(reply.clone()),
            _ => None,
        };
        RcptResult {
            class,
            dsn: e.dsn(),
            cause: Cause::Failure {
                text: e.to_string(),
                reply,
            },
        }
    }

    /// A result of `class` with a given code and reason, decided here.
    pub fn local(class: ResultClass, dsn: &str, text: String) -> RcptResult {
        RcptResult {
            class,
            dsn: dsn.to_string(),
            cause: Cause::Failure { text, reply: None },
        }
    }

    /// A deferral with a given code and reason.
    pub fn deferred(dsn: &str, text: String) -> RcptResult {
        RcptResult::local(ResultClass::Deferred, dsn, text)
    }

    /// A permanent failure with a given code and reason.
    pub fn bounced(dsn: &str, text: String) -> RcptResult {
        RcptResult::local(ResultClass::Bounced, dsn, text)
    }

    /// The result for mail that stayed queued too long.
    pub fn expired() -> RcptResult {
        RcptResult::local(
            ResultClass::Expired,
            "4.4.7",
            "message expired: too long in the queue (maximal_queue_lifetime)".into(),
        )
    }

    /// True when the next hop accepted the recipient.
    pub fn is_sent(&self) -> bool {
        self.class == ResultClass::Sent
    }

    /// The enhanced status code.
    pub fn dsn(&self) -> &str {
        &self.dsn
    }

    /// The server's reply behind the result, if one decided it.
    pub fn reply(&self) -> Option<&Reply> {
        match &self.cause {
            Cause::Reply(r) => Some(&r.reply),
            Cause::Failure { reply, .. } => reply.as_ref(),
        }
    }

    /// The text as logged, rendered into `f` without an intermediate string.
    pub fn display_text(&self) -> ResultText<'_> {
        ResultText(self)
    }

    /// The text as logged and reported.
    pub fn text(&self) -> String {
        self.display_text().to_string()
    }
}

/// A result's text for `{}` formatting: see [`RcptResult::display_text`].
pub struct ResultText<'a>(&'a RcptResult);

impl fmt::Display for ResultText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.cause {
            Cause::Reply(r) if self.0.class == ResultClass::Sent => write!(f, "{}", r.reply),
            Cause::Reply(r) => write!(
                f,
                "host {} said: {} (in reply to {})",
                r.peer, r.reply, r.stage
            ),
            Cause::Failure { text, .. } => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer {
            host: "mx.test".into(),
            addr: "127.0.0.1:25".parse().unwrap(),
        }
    }

    #[test]
    fn verdict_decides_and_text_is_postfix_shaped() {
        let r = Reply::new(550, vec!["5.1.1 no such user".into()]);
        let b = RcptResult::from_outcome(&peer(), &RcptOutcome::Bounced(r), Stage::Rcpt);
        assert_eq!(b.dsn(), "5.1.1");
        assert_eq!(
            b.text(),
            "host mx.test[127.0.0.1] said: 550 5.1.1 no such user (in reply to RCPT TO command)"
        );
        // A positive reply where the machine judged a deferral stays deferred.
        let odd = RcptResult::from_outcome(
            &peer(),
            &RcptOutcome::Deferred(Reply::new(250, vec![])),
            Stage::Data,
        );
        assert_eq!(odd.class, ResultClass::Deferred);
        let ok = RcptResult::from_outcome(
            &peer(),
            &RcptOutcome::Delivered(Reply::new(250, vec!["2.0.0 Ok".into()])),
            Stage::EndOfData,
        );
        assert_eq!(ok.class, ResultClass::Sent);
        assert_eq!(ok.dsn(), "2.0.0");
        assert_eq!(ok.text(), "250 2.0.0 Ok");
        assert_eq!(ok.reply().map(|r| r.code), Some(250));
    }
}
