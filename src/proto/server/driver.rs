//! The driver's calls besides `feed`: answering a message, TLS started,
//! the 421s of timeouts and shutdown, and what the session knows.

use super::counts::CommandCounts;
use super::message::PendingMessage;
use super::progress::{Counters, Stage};
use super::reply::Reply;
use super::session::{Phase, Session};

impl Session {
    /// The message received, while `feed` reports [`Progress::Message`](super::Progress::Message).
    pub fn pending_message(&self) -> Option<PendingMessage<'_>> {
        if self.phase != Phase::Message {
            return None;
        }
        self.message_view()
    }

    /// The message at its end (for the policy, then the driver).
    pub(super) fn message_view(&self) -> Option<PendingMessage<'_>> {
        let transfer = self.tx.transfer?;
        Some(PendingMessage {
            client: self.client,
            helo: self.helo.as_deref().unwrap_or(""),
            tls: self.tls,
            auth_user: self.auth_user.as_deref(),
            sender: self.tx.sender.as_deref().unwrap_or(""),
            params: &self.tx.params,
            raw_params: &self.tx.raw_params,
            recipients: &self.tx.recipients,
            rcpt_dsn: &self.tx.rcpt_dsn,
            size: self.body.size(),
            content: self.body.content(),
            transfer,
        })
    }

    /// Moves the pending message's bytes out (no copy), while `feed`
    /// reports [`Progress::Message`](super::Progress::Message); afterwards `pending_message` shows
    /// an empty content. Empty when no message is pending.
    pub fn take_content(&mut self) -> Vec<u8> {
        if self.phase != Phase::Message {
            return Vec::new();
        }
        self.body.take_content()
    }

    /// Answers the pending message: `250 2.0.0 Ok: queued as <id>` when
    /// it is stored, else the driver's reply (a 4xx: `451 4.3.0 Error:
    /// queue file write error`). Does nothing when no message is pending.
    pub fn finish_message(&mut self, result: Result<&str, Reply>, out: &mut Vec<u8>) {
        if self.phase != Phase::Message {
            return;
        }
        match result {
            Ok(id) => {
                self.counters.messages = self.counters.messages.saturating_add(1);
                self.send(
                    out,
                    &Reply::new(250, "2.0.0", format!("Ok: queued as {id}")),
                );
            }
            Err(reply) => {
                // The server's failure, not the client's: not an error
                // toward the limit.
                self.counters.messages_refused = self.counters.messages_refused.saturating_add(1);
                self.send_final(out, &reply, false);
            }
        }
        self.reset_transaction();
        self.phase = Phase::Command;
    }

    /// The TLS handshake after STARTTLS succeeded: forgets everything said
    /// before (RFC 3207 section 4.2: the client must EHLO again, and an
    /// earlier AUTH no longer counts). Does nothing unless `feed` reported
    /// [`Progress::StartTls`](super::Progress::StartTls).
    pub fn tls_started(&mut self) {
        if self.phase != Phase::StartTls {
            return;
        }
        self.tls = true;
        self.phase = Phase::Command;
        self.discarding = false;
        self.helo = None;
        self.ehlo = false;
        self.auth_user = None;
        self.auth_method = None;
        self.reset_transaction();
    }

    /// The read timeout of the current stage expired: appends `421 4.4.2
    /// <host> Error: timeout exceeded`; close after writing it.
    pub fn timeout(&mut self, out: &mut Vec<u8>) {
        let reply = self.params.timeout.clone();
        self.close_with(out, &reply);
    }

    /// The server stops: appends `421 4.3.2 <host> Service shutting
    /// down`; close after writing it.
    pub fn shutting_down(&mut self, out: &mut Vec<u8>) {
        let reply = self.params.shutting_down.clone();
        self.close_with(out, &reply);
    }

    /// What the session waits for.
    pub fn stage(&self) -> Stage {
        match self.phase {
            Phase::Pregreet => Stage::Greeting,
            Phase::Command => Stage::Command,
            Phase::Data | Phase::Bdat(..) => Stage::Data,
            Phase::AuthResponse(_) => Stage::AuthResponse,
            Phase::AuthPending | Phase::Message | Phase::StartTls => Stage::Driver,
            Phase::Closed => Stage::Closed,
        }
    }

    /// True once [`Session::tls_started`] was called.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The user the client authenticated as.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    /// The HELO/EHLO name, once given.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// The session's counts.
    pub fn counters(&self) -> Counters {
        Counters {
            bare_line_ends: self
                .counters
                .bare_line_ends
                .saturating_add(self.body.normalized()),
            ..self.counters
        }
    }

    /// The commands given, per verb: `to_string()` is the text after
    /// `disconnect from HOST[IP] ` in Postfix's log line.
    pub fn command_counts(&self) -> &CommandCounts {
        &self.counts
    }
}
