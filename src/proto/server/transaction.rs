//! The mail transaction: MAIL, RCPT, DATA, BDAT chunks and the end of the
//! message, with the session's own checks before the policy is asked.

use super::address::{check_path, PathError, PathKind};
use super::commands::NEED_HELO;
use super::message::Transfer;
use super::params;
use super::policy::{Decision, ServerPolicy};
use super::reply::Reply;
use super::session::{Phase, Session};

const MAIL_OK: Reply = Reply::fixed(250, "2.1.0", "Ok");
const RCPT_OK: Reply = Reply::fixed(250, "2.1.5", "Ok");
const START_DATA: Reply = Reply::fixed(354, "", "End data with <CR><LF>.<CR><LF>");
const NESTED_MAIL: Reply = Reply::fixed(503, "5.5.1", "Error: nested MAIL command");
const NEED_MAIL: Reply = Reply::fixed(503, "5.5.1", "Error: need MAIL command");
const NEED_RCPT: Reply = Reply::fixed(503, "5.5.1", "Error: need RCPT command");
const IN_BDAT: Reply = Reply::fixed(503, "5.5.1", "Error: BDAT transfer in progress");
const NO_VALID_RCPT: Reply = Reply::fixed(554, "5.5.1", "Error: no valid recipients");
const TOO_MANY_RCPT: Reply = Reply::fixed(452, "4.5.3", "Error: too many recipients");
const NEED_EHLO: Reply = Reply::fixed(555, "5.5.4", "Error: parameters need EHLO");
const BAD_SENDER: Reply = Reply::fixed(501, "5.1.7", "Bad sender address syntax");
const BAD_RECIPIENT: Reply = Reply::fixed(501, "5.1.3", "Bad recipient address syntax");
const NEED_SMTPUTF8: Reply = Reply::fixed(
    553,
    "5.6.7",
    "Must declare SMTPUTF8 to send unicode address",
);
const TOO_BIG: Reply = Reply::fixed(552, "5.3.4", "Error: message size exceeds fixed limit");
const NEED_TLS: Reply = Reply::fixed(530, "5.7.0", "Must issue a STARTTLS command first");
const NEED_AUTH: Reply = Reply::fixed(530, "5.7.0", "Authentication required");

impl Session {
    pub(super) fn mail<P: ServerPolicy + ?Sized>(
        &mut self,
        path: &[u8],
        raw_params: &[u8],
        out: &mut Vec<u8>,
        policy: &mut P,
    ) {
        let config = &self.params.config;
        let refusal = if self.helo.is_none() && config.helo_required {
            Some(NEED_HELO)
        } else if self.tx.sender.is_some() {
            Some(NESTED_MAIL)
        } else if config.tls_required && !self.tls {
            Some(NEED_TLS)
        } else if config.auth.is_some_and(|a| a.required) && self.auth_user.is_none() {
            Some(NEED_AUTH)
        } else if !raw_params.is_empty() && !self.ehlo {
            Some(NEED_EHLO)
        } else {
            None
        };
        if let Some(r) = refusal {
            return self.send(out, &r);
        }
        let mail_params = match params::mail(raw_params, self.params.accepts(self.tls)) {
            Ok(p) => p,
            Err(r) => return self.send(out, &r),
        };
        let origin = self.params.config.origin.as_deref();
        let sender = match check_path(path, PathKind::Reverse, mail_params.smtputf8, origin) {
            Ok(sender) => sender,
            Err(PathError::NeedsSmtpUtf8) => return self.send(out, &NEED_SMTPUTF8),
            Err(_) => return self.send(out, &BAD_SENDER),
        };
        let limit = self.params.config.limits.max_message_size;
        if let (Some(size), Some(max)) = (mail_params.size, limit) {
            if size > max {
                return self.send(out, &TOO_BIG);
            }
        }
        match policy.mail(&self.context(), &sender, &mail_params) {
            Decision::Accept => {}
            Decision::Reject(r) => return self.send(out, &r),
            Decision::Disconnect(r) => return self.close_with(out, &r),
        }
        self.tx.sender = Some(sender);
        self.tx.raw_params = String::from_utf8_lossy(raw_params).into_owned();
        self.tx.params = mail_params;
        self.send(out, &MAIL_OK);
    }

    pub(super) fn rcpt<P: ServerPolicy + ?Sized>(
        &mut self,
        path: &[u8],
        raw_params: &[u8],
        out: &mut Vec<u8>,
        policy: &mut P,
    ) {
        if self.tx.sender.is_none() {
            return self.send(out, &NEED_MAIL);
        }
        if self.tx.bdat_started {
            return self.send(out, &IN_BDAT);
        }
        self.tx.rcpt_attempts = self.tx.rcpt_attempts.saturating_add(1);
        if !raw_params.is_empty() && !self.ehlo {
            return self.send(out, &NEED_EHLO);
        }
        let dsn = match params::rcpt(raw_params, self.params.accepts(self.tls)) {
            Ok(dsn) => dsn,
            Err(r) => return self.send(out, &r),
        };
        let origin = self.params.config.origin.as_deref();
        let utf8 = self.tx.params.smtputf8;
        let recipient = match check_path(path, PathKind::Forward, utf8, origin) {
            Ok(r) => r,
            Err(PathError::NeedsSmtpUtf8) => return self.send(out, &NEED_SMTPUTF8),
            Err(_) => return self.send(out, &BAD_RECIPIENT),
        };
        if self.tx.recipients.len() >= self.params.config.limits.max_recipients {
            return self.send(out, &TOO_MANY_RCPT);
        }
        match policy.rcpt(&self.context(), &recipient, &dsn) {
            Decision::Accept => {}
            Decision::Reject(r) => return self.send(out, &r),
            Decision::Disconnect(r) => return self.close_with(out, &r),
        }
        self.tx.recipients.push(recipient);
        self.tx.rcpt_dsn.push(dsn);
        self.send(out, &RCPT_OK);
    }

    /// Why DATA or BDAT cannot start a message now.
    fn not_ready(&self) -> Option<Reply> {
        if self.tx.sender.is_none() {
            Some(NEED_MAIL)
        } else if self.tx.recipients.is_empty() {
            Some(if self.tx.rcpt_attempts > 0 {
                NO_VALID_RCPT
            } else {
                NEED_RCPT
            })
        } else {
            None
        }
    }

    pub(super) fn data_command(&mut self, out: &mut Vec<u8>) {
        if let Some(r) = self.not_ready() {
            return self.send(out, &r);
        }
        if self.tx.bdat_started {
            return self.send(out, &IN_BDAT);
        }
        self.body.reset(self.tx.params.size);
        self.data.reset();
        self.phase = Phase::Data;
        self.send(out, &START_DATA);
    }

    /// `BDAT size [LAST]`: the chunk's bytes are always read (RFC 3030
    /// section 2), and dropped when the chunk is refused.
    pub(super) fn bdat(&mut self, size: u64, last: bool) {
        self.bdat_refusal = self.not_ready();
        if self.bdat_refusal.is_none() && !self.tx.bdat_started {
            self.tx.bdat_started = true;
            self.body.reset(self.tx.params.size);
        }
        self.phase = Phase::Bdat(size, last);
    }

    /// All bytes of a BDAT chunk are in.
    pub(super) fn chunk_done<P: ServerPolicy + ?Sized>(
        &mut self,
        last: bool,
        out: &mut Vec<u8>,
        policy: &mut P,
    ) {
        self.phase = Phase::Command;
        if let Some(r) = self.bdat_refusal.take() {
            return self.send(out, &r);
        }
        if self.body.is_oversize() {
            self.counters.messages_refused = self.counters.messages_refused.saturating_add(1);
            self.reset_transaction();
            return self.send(out, &TOO_BIG);
        }
        if last {
            return self.end_of_message(Transfer::Bdat, out, policy);
        }
        let text = format!("Ok: {} octets", self.body.size());
        self.send(out, &Reply::new(250, "2.0.0", text));
    }

    /// The message is complete: size, then the policy, then the driver.
    pub(super) fn end_of_message<P: ServerPolicy + ?Sized>(
        &mut self,
        transfer: Transfer,
        out: &mut Vec<u8>,
        policy: &mut P,
    ) {
        self.phase = Phase::Command;
        if let Err(bare) = self.body.finish() {
            return self.bare(bare, out);
        }
        self.after_dot = self.params.config.refuse_pipelined_after_data;
        if self.body.is_oversize() {
            self.counters.messages_refused = self.counters.messages_refused.saturating_add(1);
            self.reset_transaction();
            return self.send(out, &TOO_BIG);
        }
        self.tx.transfer = Some(transfer);
        let decision = match self.message_view() {
            Some(message) => policy.data_end(&message),
            None => Decision::Accept,
        };
        match decision {
            Decision::Accept => self.phase = Phase::Message,
            Decision::Reject(r) => {
                self.counters.messages_refused = self.counters.messages_refused.saturating_add(1);
                self.reset_transaction();
                self.send(out, &r);
            }
            Decision::Disconnect(r) => {
                self.counters.messages_refused = self.counters.messages_refused.saturating_add(1);
                self.close_with(out, &r);
            }
        }
    }
}
