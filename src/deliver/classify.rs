//! Turning replies and failures into per-recipient results, with the text
//! Postfix logs: `250 2.0.0 Ok`, `host mx[1.2.3.4] said: 550 5.1.1 ...
//! (in reply to RCPT TO command)`.

use crate::proto::{RcptOutcome, Reply, Stage};

use super::{DeliverError, Peer};

/// What happened to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptResult {
    /// Accepted by the next hop.
    Sent {
        /// Enhanced status code.
        dsn: String,
        /// The reply, as logged.
        text: String,
    },
    /// Failed temporarily: retry later.
    Deferred {
        /// Enhanced status code.
        dsn: String,
        /// Why, as logged and shown by `mailq`.
        text: String,
    },
    /// Failed permanently.
    Bounced {
        /// Enhanced status code.
        dsn: String,
        /// Why.
        text: String,
    },
    /// Stayed queued longer than `maximal_queue_lifetime`.
    Expired {
        /// Enhanced status code.
        dsn: String,
        /// Why.
        text: String,
    },
}

impl RcptResult {
    /// The result for a recipient whose reply from `peer` to `stage` was `reply`.
    pub fn from_reply(peer: &Peer, reply: &Reply, stage: Stage) -> RcptResult {
        let dsn = reply.dsn();
        if reply.is_positive() {
            return RcptResult::Sent {
                dsn,
                text: reply.to_string(),
            };
        }
        let text = format!("host {} said: {reply} (in reply to {stage})", peer.named());
        if reply.is_permanent() {
            RcptResult::Bounced { dsn, text }
        } else {
            RcptResult::Deferred { dsn, text }
        }
    }

    /// The result for a recipient as the transaction machine judged it. The
    /// verdict, not the reply's class, decides: a 250 where a 354 was due
    /// is still a deferral.
    pub fn from_outcome(peer: &Peer, outcome: &RcptOutcome, stage: Stage) -> RcptResult {
        let reply = outcome.reply();
        let dsn = outcome.dsn();
        match outcome {
            RcptOutcome::Delivered(_) => RcptResult::Sent {
                dsn,
                text: reply.to_string(),
            },
            RcptOutcome::Deferred(_) => RcptResult::Deferred {
                dsn,
                text: format!("host {} said: {reply} (in reply to {stage})", peer.named()),
            },
            RcptOutcome::Bounced(_) => RcptResult::Bounced {
                dsn,
                text: format!("host {} said: {reply} (in reply to {stage})", peer.named()),
            },
        }
    }

    /// The result for every recipient of a transaction that failed as a whole.
    pub fn from_error(e: &DeliverError) -> RcptResult {
        let dsn = e.dsn();
        let text = e.to_string();
        if e.is_transient() {
            RcptResult::Deferred { dsn, text }
        } else {
            RcptResult::Bounced { dsn, text }
        }
    }

    /// A deferral with a given code and reason.
    pub fn deferred(dsn: &str, text: String) -> RcptResult {
        RcptResult::Deferred {
            dsn: dsn.to_string(),
            text,
        }
    }

    /// The result for mail that stayed queued too long.
    pub fn expired() -> RcptResult {
        RcptResult::Expired {
            dsn: "4.4.7".into(),
            text: "message expired: too long in the queue (maximal_queue_lifetime)".into(),
        }
    }

    /// The enhanced status code.
    pub fn dsn(&self) -> &str {
        match self {
            RcptResult::Sent { dsn, .. }
            | RcptResult::Deferred { dsn, .. }
            | RcptResult::Bounced { dsn, .. }
            | RcptResult::Expired { dsn, .. } => dsn,
        }
    }

    /// The logged text.
    pub fn text(&self) -> &str {
        match self {
            RcptResult::Sent { text, .. }
            | RcptResult::Deferred { text, .. }
            | RcptResult::Bounced { text, .. }
            | RcptResult::Expired { text, .. } => text,
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
        assert!(matches!(odd, RcptResult::Deferred { .. }));
        let ok = RcptResult::from_outcome(
            &peer(),
            &RcptOutcome::Delivered(Reply::new(250, vec!["2.0.0 Ok".into()])),
            Stage::EndOfData,
        );
        assert_eq!(
            ok,
            RcptResult::Sent {
                dsn: "2.0.0".into(),
                text: "250 2.0.0 Ok".into()
            }
        );
    }
}
