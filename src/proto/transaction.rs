//! One mail transaction: MAIL FROM, RCPT TO for each recipient, DATA, the
//! body, and a result per recipient.
//!
//! With PIPELINING (RFC 2920) MAIL, every RCPT and DATA go out in one write
//! and their replies are read in order; without it each command waits for
//! its reply. The caller's loop is the same either way (see [`Action`]).
//!
//! How replies become results:
//!
//! - MAIL refused: every recipient gets that reply (4xx deferred, 5xx
//!   bounced, except a 5xx that blames the protocol, such as `503 bad
//!   sequence`: deferred, see [`Reply::is_protocol_error`]). With PIPELINING the RCPT and DATA replies are still read.
//! - RCPT refused: that recipient gets its own reply.
//! - No recipient accepted: no body. If the server still answered DATA with
//!   354 (it can, with PIPELINING), only the terminator `.` is sent and its
//!   reply read.
//! - DATA refused (anything but 354): the accepted recipients get its reply.
//! - After the body: the final reply decides for the accepted recipients,
//!   2xx delivered, 4xx deferred, 5xx bounced.
//! - 421 at any point: the server is closing the connection. Nothing more
//!   is read, every recipient without a result is deferred with the 421,
//!   and [`TxOutcome::closing`] tells the caller to drop the connection.
//!
//! A reply other than 2xx, 354 or 5xx where a success was due (a 3xx to
//! MAIL, a 250 to DATA) counts as a temporary failure: deferred.

use super::action::Action;
use super::command::{self, DsnRequest, MailParams, Stage, END_OF_DATA};
use super::error::ProtoError;
use super::reply::Reply;

/// What one transaction carries: the sender, the recipients and the MAIL
/// FROM parameters.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    /// Envelope sender; empty for the null sender `<>`.
    pub sender: &'a str,
    /// The recipients of this transaction (at least one).
    pub recipients: &'a [String],
    /// MAIL FROM parameters, only those the server announced (see
    /// [`Capabilities::mail_params`](super::Capabilities::mail_params)).
    pub params: MailParams,
    /// RFC 3461 requests, only for a server that announced DSN.
    pub dsn: DsnRequest<'a>,
}

/// What happened to one recipient, with the reply that decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptOutcome {
    /// The server took responsibility for the message: the 2xx after the
    /// body.
    Delivered(Reply),
    /// Failed for now: a 4xx at MAIL, RCPT, DATA or after the body, or a
    /// reply that made no sense there; retry later.
    Deferred(Reply),
    /// Failed for good: a 5xx at MAIL, RCPT, DATA or after the body.
    Bounced(Reply),
}

impl RcptOutcome {
    /// The deciding reply.
    pub fn reply(&self) -> &Reply {
        match self {
            RcptOutcome::Delivered(r) | RcptOutcome::Deferred(r) | RcptOutcome::Bounced(r) => r,
        }
    }

    /// The status for `dsn=`: the reply's enhanced code when its class
    /// agrees with the outcome, otherwise `2.0.0`, `4.0.0` or `5.0.0` from
    /// the outcome (a 250 to DATA defers with 4.0.0, not 2.0.0). A
    /// permanent code deferred as a protocol error keeps its subject and
    /// detail in class 4 (`503 5.5.1` defers with 4.5.1).
    pub fn dsn(&self) -> String {
        let class = match self {
            RcptOutcome::Delivered(_) => 2,
            RcptOutcome::Deferred(_) => 4,
            RcptOutcome::Bounced(_) => 5,
        };
        match self.reply().enhanced {
            Some(e) if e.class == class => e.to_string(),
            Some(e) if class == 4 && e.class == 5 => format!("4.{}.{}", e.subject, e.detail),
            _ => format!("{class}.0.0"),
        }
    }

    /// The outcome of a reply that is not the success its stage needed. A
    /// 5xx that blames the conversation ([`Reply::is_protocol_error`]) is
    /// deferred, never bounced.
    fn failure(reply: &Reply) -> RcptOutcome {
        if reply.is_permanent() && !reply.is_protocol_error() {
            RcptOutcome::Bounced(reply.clone())
        } else {
            RcptOutcome::Deferred(reply.clone())
        }
    }
}

/// The result of a whole transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxOutcome {
    /// The reply to MAIL FROM.
    pub mail: Reply,
    /// One result per recipient, in the order of the envelope.
    pub rcpts: Vec<RcptOutcome>,
    /// For each recipient, same order: the command its deciding reply
    /// answered, for Postfix's `(in reply to RCPT TO command)`.
    pub rcpt_stages: Vec<Stage>,
    /// The reply to DATA, when it was read.
    pub data: Option<Reply>,
    /// The reply after the body, or after the lone terminator sent when no
    /// recipient was accepted.
    pub final_reply: Option<Reply>,
    /// The transaction did not end with the reply after a body: send RSET
    /// before reusing the connection for another transaction.
    pub needs_rset: bool,
    /// The server answered 421 and is closing the connection: drop it.
    pub closing: bool,
}

/// Where the transaction stands.
#[derive(Debug)]
enum Step {
    /// Nothing sent yet.
    Start,
    /// (Without PIPELINING) command `k` is to be sent.
    SendCommand(usize),
    /// The reply to command `k` is awaited: 0 is MAIL, 1..=n the RCPTs,
    /// n + 1 DATA.
    Await(usize),
    /// DATA got 354 and a recipient was accepted: the body is due.
    SendBody,
    /// The reply after the body is awaited.
    AwaitFinal,
    /// DATA got 354 but no recipient was accepted: the lone terminator is due.
    SendTerminator,
    /// The reply to the lone terminator is awaited.
    AwaitTerminator,
    /// Finished with this outcome.
    Finished(TxOutcome),
}

/// The state machine of one mail transaction; see the module doc for how
/// replies become results.
#[derive(Debug)]
pub struct Transaction {
    /// Every command, MAIL first, DATA last, as one buffer.
    wire: Vec<u8>,
    /// Where each command ends in `wire`.
    ends: Vec<usize>,
    /// Send all commands in one write.
    pipelining: bool,
    step: Step,
    /// The reply to MAIL, once read.
    mail: Option<Reply>,
    /// The reply to DATA, once read.
    data: Option<Reply>,
    /// A result per recipient; `None` while the recipient is still in
    /// play (accepted, or its reply not read yet).
    results: Vec<Option<(RcptOutcome, Stage)>>,
    /// Recipients whose RCPT got 2xx after a successful MAIL.
    accepted: usize,
}

impl Transaction {
    /// Prepares the transaction for `envelope`; with `pipelining` (the
    /// server announced PIPELINING after EHLO), MAIL, every RCPT and DATA
    /// are sent in one write.
    ///
    /// Refuses an envelope without recipients ([`ProtoError::Misuse`]) and
    /// an address that cannot be put in a command
    /// ([`ProtoError::InvalidAddress`]); check recipients with
    /// [`command::check_recipient`] beforehand to bounce only the bad one.
    pub fn new(envelope: &Envelope<'_>, pipelining: bool) -> Result<Transaction, ProtoError> {
        let recipients = envelope.recipients;
        if recipients.is_empty() {
            return Err(ProtoError::Misuse("a transaction needs a recipient"));
        }
        let mut wire = Vec::with_capacity(64 + 48 * recipients.len());
        let mut ends = Vec::with_capacity(recipients.len() + 2);
        command::mail_from(&mut wire, envelope.sender, &envelope.params, &envelope.dsn)?;
        ends.push(wire.len());
        for (i, r) in recipients.iter().enumerate() {
            command::rcpt_to_with(&mut wire, r, envelope.dsn.rcpts.get(i))?;
            ends.push(wire.len());
        }
        command::data(&mut wire);
        ends.push(wire.len());
        Ok(Transaction {
            wire,
            ends,
            pipelining,
            step: Step::Start,
            mail: None,
            data: None,
            results: vec![None; recipients.len()],
            accepted: 0,
        })
    }

    /// What to do next; see [`Action`].
    pub fn next_action(&mut self) -> Action<TxOutcome> {
        match &mut self.step {
            Step::Start if self.pipelining => {
                self.step = Step::Await(0);
                Action::Send(std::mem::take(&mut self.wire))
            }
            Step::Start => {
                self.step = Step::Await(0);
                Action::Send(self.command(0))
            }
            Step::SendCommand(k) => {
                let k = *k;
                self.step = Step::Await(k);
                Action::Send(self.command(k))
            }
            Step::SendBody => {
                self.step = Step::AwaitFinal;
                Action::SendBody
            }
            Step::SendTerminator => {
                self.step = Step::AwaitTerminator;
                Action::Send(END_OF_DATA.to_vec())
            }
            Step::Await(_) | Step::AwaitFinal | Step::AwaitTerminator => Action::AwaitReply,
            Step::Finished(outcome) => Action::Done(outcome.clone()),
        }
    }

    /// Takes the reply that the last [`Action::AwaitReply`] asked for.
    /// Fails only when no reply was awaited.
    pub fn on_reply(&mut self, reply: Reply) -> Result<(), ProtoError> {
        match self.step {
            Step::Await(k) => self.on_command_reply(k, reply),
            Step::AwaitFinal | Step::AwaitTerminator => {
                let ending = reply.clone();
                self.finish(Some((&ending, Stage::EndOfData)), Some(reply))
            }
            _ => Err(ProtoError::Misuse("reply given when none was awaited")),
        }
    }

    /// The number of recipients.
    fn recipients(&self) -> usize {
        self.results.len()
    }

    /// The bytes of command `k`.
    fn command(&self, k: usize) -> Vec<u8> {
        let start = match k {
            0 => 0,
            _ => self.ends.get(k - 1).copied().unwrap_or(0),
        };
        let end = self.ends.get(k).copied().unwrap_or(start);
        self.wire.get(start..end).unwrap_or_default().to_vec()
    }

    /// What command `k` is.
    fn stage_of(&self, k: usize) -> Stage {
        match k {
            0 => Stage::Mail,
            k if k <= self.recipients() => Stage::Rcpt,
            _ => Stage::Data,
        }
    }

    /// Takes the reply to command `k`.
    fn on_command_reply(&mut self, k: usize, reply: Reply) -> Result<(), ProtoError> {
        let n = self.recipients();
        let stage = self.stage_of(k);
        if reply.code == 421 {
            match stage {
                Stage::Mail => self.mail = Some(reply.clone()),
                Stage::Data => self.data = Some(reply.clone()),
                _ => {}
            }
            return self.finish(Some((&reply, stage)), None);
        }
        match stage {
            Stage::Mail => {
                let ok = reply.is_positive();
                if !ok {
                    let failed = (RcptOutcome::failure(&reply), Stage::Mail);
                    self.results.fill(Some(failed));
                }
                self.mail = Some(reply);
                match (self.pipelining, ok) {
                    (true, _) => self.step = Step::Await(1),
                    (false, true) => self.step = Step::SendCommand(1),
                    (false, false) => return self.finish(None, None),
                }
            }
            Stage::Rcpt => {
                if let Some(slot @ None) = self.results.get_mut(k - 1) {
                    if reply.is_positive() {
                        self.accepted += 1;
                    } else {
                        *slot = Some((RcptOutcome::failure(&reply), Stage::Rcpt));
                    }
                }
                self.step = if self.pipelining {
                    Step::Await(k + 1)
                } else if k < n {
                    Step::SendCommand(k + 1)
                } else if self.accepted > 0 {
                    Step::SendCommand(n + 1)
                } else {
                    return self.finish(None, None);
                };
            }
            _ => {
                let go = reply.code == 354;
                let refused = (!go).then(|| reply.clone());
                self.data = Some(reply);
                match refused {
                    Some(r) => return self.finish(Some((&r, Stage::Data)), None),
                    None if self.accepted > 0 => self.step = Step::SendBody,
                    None => self.step = Step::SendTerminator,
                }
            }
        }
        Ok(())
    }

    /// Ends the transaction. Recipients still in play get `ending`, the
    /// reply that ended it and what that reply answered; without one, every
    /// recipient must already have its result. `final_reply` is the reply
    /// after a body or lone terminator.
    fn finish(
        &mut self,
        ending: Option<(&Reply, Stage)>,
        final_reply: Option<Reply>,
    ) -> Result<(), ProtoError> {
        let mail = self
            .mail
            .take()
            .ok_or(ProtoError::Misuse("finished before the MAIL reply"))?;
        let (rcpts, rcpt_stages) = std::mem::take(&mut self.results)
            .into_iter()
            .map(|r| match (r, ending) {
                (Some(done), _) => Ok(done),
                (None, Some((reply, Stage::EndOfData))) if reply.is_positive() => {
                    Ok((RcptOutcome::Delivered(reply.clone()), Stage::EndOfData))
                }
                (None, Some((reply, stage))) => Ok((RcptOutcome::failure(reply), stage)),
                (None, None) => Err(ProtoError::Misuse("recipient left without a result")),
            })
            .collect::<Result<(Vec<_>, Vec<_>), _>>()?;
        let after_body = matches!(ending, Some((_, Stage::EndOfData))) && self.accepted > 0;
        self.step = Step::Finished(TxOutcome {
            mail,
            rcpts,
            rcpt_stages,
            data: self.data.take(),
            final_reply,
            needs_rset: !after_body,
            closing: ending.is_some_and(|(r, _)| r.code == 421),
        });
        Ok(())
    }
}

#[cfg(test)]
#[path = "transaction_tests.rs"]
mod tests;
