//! The state of one connection and the feed loop: bytes in, replies out.
//! The driver's calls after `feed` stopped are in `driver.rs`, the types
//! it returns in `progress.rs`, the commands themselves in `commands.rs`,
//! the mail transaction in `transaction.rs`, AUTH in `auth.rs`.

use std::net::IpAddr;
use std::sync::Arc;

use super::auth::{Mechanism, Sasl, Step};
use super::body::{Bare, Body};
use super::config::{LineEnds, SessionParams};
use super::counts::{CommandCounts, Verb};
use super::data::{DataEnd, DataReader};
use super::message::Transfer;
use super::params::MailParams;
use super::policy::{Context, ServerPolicy};
use super::progress::{Counters, Progress};
use super::reply::Reply;
use crate::mail::bytes::find_byte;
use crate::model::dsn::RcptDsn;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// The greeting is not sent yet.
    Pregreet,
    /// Reading commands.
    Command,
    /// Receiving DATA.
    Data,
    /// Receiving a BDAT chunk: bytes still to come, LAST.
    Bdat(u64, bool),
    /// Inside an AUTH exchange: the next line is a response.
    AuthResponse(Step),
    /// Credentials await [`Session::auth_result`].
    AuthPending,
    /// A message awaits [`Session::finish_message`].
    Message,
    /// STARTTLS accepted: waiting for [`Session::tls_started`].
    StartTls,
    /// No more input is read.
    Closed,
}

/// The transaction in progress (MAIL to the end of the message).
#[derive(Debug, Default)]
pub(super) struct Tx {
    pub(super) sender: Option<String>,
    pub(super) raw_params: String,
    pub(super) params: MailParams,
    pub(super) recipients: Vec<String>,
    pub(super) rcpt_dsn: Vec<RcptDsn>,
    /// RCPT commands given in this transaction, accepted or not.
    pub(super) rcpt_attempts: u32,
    /// A BDAT chunk was accepted: the message is being received.
    pub(super) bdat_started: bool,
    pub(super) transfer: Option<Transfer>,
}

const TOO_LONG: Reply = Reply::fixed(500, "5.5.2", "Error: line too long");
const BAD_CHARACTER: Reply = Reply::fixed(500, "5.5.2", "Error: control character in command");
const BARE_LF: Reply = Reply::fixed(550, "5.5.2", "Error: bare <LF> received");
const BARE_CR: Reply = Reply::fixed(550, "5.5.2", "Error: bare <CR> received");
/// Postfix postscreen's answer to a client that talks first
/// (`postscreen_greet_action = drop`).
const PREGREET: Reply = Reply::fixed(521, "5.5.1", "Protocol error");
const PIPELINED_AFTER_DATA: Reply = Reply::fixed(
    503,
    "5.5.1",
    "Bad sequence of commands - pipelined after end of DATA",
);

/// One connection's SMTP server state.
///
/// The driver reads from its socket into a buffer, calls [`Session::feed`]
/// with the unconsumed bytes, an output buffer and its [`ServerPolicy`],
/// drops the consumed bytes, and writes the output when `feed` returns
/// [`Progress::NeedInput`]. All replies to the commands of one read go into
/// one output buffer, so a pipelined transaction costs one write. At most
/// `limits.max_line + 1` bytes are ever left unconsumed (a whole line and
/// its CR waiting for the LF; two in DATA, none in BDAT), so a read buffer
/// of `max_line` plus a few KiB always makes progress.
#[derive(Debug)]
pub struct Session {
    pub(super) params: Arc<SessionParams>,
    pub(super) client: Option<IpAddr>,
    pub(super) phase: Phase,
    /// Inside an overlong command line: discard up to its end.
    pub(super) discarding: bool,
    pub(super) helo: Option<String>,
    pub(super) ehlo: bool,
    pub(super) tls: bool,
    pub(super) auth_user: Option<String>,
    pub(super) auth_method: Option<Mechanism>,
    pub(super) sasl: Sasl,
    pub(super) tx: Tx,
    pub(super) body: Body,
    pub(super) data: DataReader,
    /// The reply to the current BDAT chunk when it is refused (its bytes
    /// are read and dropped first).
    pub(super) bdat_refusal: Option<Reply>,
    /// The end of a message was read and its reply not yet written
    /// (`refuse_pipelined_after_data`).
    pub(super) after_dot: bool,
    /// The command whose final reply is still to come.
    pub(super) current: Option<Verb>,
    pub(super) junk: u32,
    pub(super) counts: CommandCounts,
    pub(super) counters: Counters,
}

impl Session {
    /// A session for a client at `client` (`None`: no network peer).
    pub fn new(params: Arc<SessionParams>, client: Option<IpAddr>) -> Session {
        let c = &params.config;
        let body = Body::new(c.limits.max_message_size, c.capture, c.line_ends);
        let data = DataReader::new(c.line_ends);
        Session {
            params,
            client,
            phase: Phase::Pregreet,
            discarding: false,
            helo: None,
            ehlo: false,
            tls: false,
            auth_user: None,
            auth_method: None,
            sasl: Sasl::default(),
            tx: Tx::default(),
            body,
            data,
            bdat_refusal: None,
            after_dot: false,
            current: None,
            junk: 0,
            counts: CommandCounts::default(),
            counters: Counters::default(),
        }
    }

    /// Appends the greeting. Input fed before this is a client talking
    /// first: it gets `521 5.5.1 Protocol error` and the session closes
    /// (Postfix postscreen's pregreet test with `greet_action = drop`). A
    /// driver that wants this test waits a moment and reads (without
    /// blocking) before it greets, and feeds what came.
    pub fn greeting(&mut self, out: &mut Vec<u8>) {
        if self.phase != Phase::Pregreet {
            return;
        }
        out.extend_from_slice(&self.params.greeting);
        self.counters.replies += 1;
        self.phase = Phase::Command;
    }

    /// Consumes commands and message data from `input`, appending replies
    /// to `out` and asking `policy` where the driver decides. Returns how
    /// many bytes were consumed and why it stopped.
    pub fn feed<P: ServerPolicy + ?Sized>(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        policy: &mut P,
    ) -> (usize, Progress) {
        let mut pos = 0;
        loop {
            match self.phase {
                Phase::Closed => return (pos, Progress::Close),
                Phase::Message => return (pos, Progress::Message),
                Phase::AuthPending => return (pos, Progress::Auth),
                Phase::StartTls => return (pos, Progress::StartTls),
                Phase::Pregreet => {
                    if input.is_empty() {
                        return (0, Progress::NeedInput);
                    }
                    self.counters.pregreet = true;
                    self.close_with(out, &PREGREET);
                    return (input.len(), Progress::Close);
                }
                Phase::Data => {
                    let (n, end) = self.data.feed(&input[pos..], &mut self.body);
                    pos += n;
                    match end {
                        DataEnd::More => return (pos, Progress::NeedInput),
                        DataEnd::End => self.end_of_message(Transfer::Data, out, policy),
                        DataEnd::Bare(bare) => self.bare(bare, out),
                    }
                }
                Phase::Bdat(remaining, last) => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - pos);
                    let chunk = &input[pos..pos + n];
                    pos += n;
                    let left = remaining - n as u64;
                    self.phase = Phase::Bdat(left, last);
                    if self.bdat_refusal.is_none() {
                        if let Err(bare) = self.body.push(chunk) {
                            self.bare(bare, out);
                            continue;
                        }
                    }
                    if left > 0 {
                        return (pos, Progress::NeedInput);
                    }
                    self.chunk_done(last, out, policy);
                }
                Phase::Command | Phase::AuthResponse(_) => {
                    let rest = &input[pos..];
                    let Some(lf) = find_byte(b'\n', rest) else {
                        // The output is written before more is read: what
                        // comes next was sent after the client saw it.
                        self.after_dot = false;
                        // (A full line may wait for its LF after its CR.)
                        let max = self.params.config.limits.max_line.saturating_add(1);
                        if self.discarding || rest.len() > max {
                            self.discarding = true;
                            return (input.len(), Progress::NeedInput);
                        }
                        return (pos, Progress::NeedInput);
                    };
                    pos += lf + 1;
                    self.line(&rest[..lf], out, policy);
                }
            }
        }
    }

    /// One line (without its LF) in a command phase.
    fn line<P: ServerPolicy + ?Sized>(&mut self, raw: &[u8], out: &mut Vec<u8>, policy: &mut P) {
        let mode = self.params.config.line_ends;
        let text_len = raw.strip_suffix(b"\r").unwrap_or(raw).len();
        if std::mem::take(&mut self.discarding) || text_len > self.params.config.limits.max_line {
            return self.refuse_line(out, &TOO_LONG);
        }
        let line = match raw.strip_suffix(b"\r") {
            Some(line) => line,
            None if mode == LineEnds::Reject => return self.bare(Bare::Lf, out),
            None => {
                if mode == LineEnds::Normalize {
                    self.counters.bare_line_ends = self.counters.bare_line_ends.saturating_add(1);
                }
                raw
            }
        };
        let first = line.iter().copied().find(|&b| b != b' ');
        if self.phase == Phase::Command
            && self.params.config.forbid_non_smtp
            && first.is_some_and(|b| !b.is_ascii_alphabetic())
        {
            // Not SMTP (a TLS handshake, binary): the parser says so.
            return self.command(line, out, policy);
        }
        if line.iter().any(|&b| b.is_ascii_control()) {
            if mode == LineEnds::Reject && find_byte(b'\r', line).is_some() {
                return self.bare(Bare::Cr, out);
            }
            return self.refuse_line(out, &BAD_CHARACTER);
        }
        if self.after_dot {
            // Sent before the reply to the end of the message: not done.
            self.counters.pipelined_after_data =
                self.counters.pipelined_after_data.saturating_add(1);
            return self.send(out, &PIPELINED_AFTER_DATA);
        }
        match self.phase {
            Phase::AuthResponse(step) => self.auth_response(step, line, out),
            _ => self.command(line, out, policy),
        }
    }

    /// Refuses a line; inside AUTH, that ends the exchange as a failure.
    fn refuse_line(&mut self, out: &mut Vec<u8>, reply: &Reply) {
        if let Phase::AuthResponse(_) = self.phase {
            self.end_auth_failed();
        }
        self.send(out, reply);
    }

    /// [`LineEnds::Reject`] found a bare line end: refuse and close.
    pub(super) fn bare(&mut self, bare: Bare, out: &mut Vec<u8>) {
        self.counters.bare_line_ends = self.counters.bare_line_ends.saturating_add(1);
        let reply = match bare {
            Bare::Lf => &BARE_LF,
            Bare::Cr => &BARE_CR,
        };
        self.close_with(out, reply);
    }

    /// The context the policy sees.
    pub(super) fn context(&self) -> Context<'_> {
        Context {
            client: self.client,
            helo: self.helo.as_deref(),
            tls: self.tls,
            auth_user: self.auth_user.as_deref(),
            sender: self.tx.sender.as_deref(),
            recipients: &self.tx.recipients,
        }
    }

    /// Writes a reply: counted, toward the error limit when it is an
    /// error, and as the final reply of the current command unless it is
    /// intermediate (334, 354).
    pub(super) fn send(&mut self, out: &mut Vec<u8>, reply: &Reply) {
        self.send_final(out, reply, true);
    }

    pub(super) fn send_final(&mut self, out: &mut Vec<u8>, reply: &Reply, client_error: bool) {
        reply.write(self.params.enhanced(), out);
        self.counters.replies += 1;
        if reply.is_error() && client_error {
            self.counters.errors = self.counters.errors.saturating_add(1);
        }
        if !reply.is_intermediate() {
            if let Some(verb) = self.current.take() {
                if !reply.is_error() {
                    self.counts.succeeded(verb);
                }
            }
        }
    }

    /// Writes a prepared success reply (greeting, HELO, EHLO).
    pub(super) fn send_raw(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(bytes);
        self.counters.replies += 1;
        if let Some(verb) = self.current.take() {
            self.counts.succeeded(verb);
        }
    }

    /// Writes `reply` and ends the session.
    pub(super) fn close_with(&mut self, out: &mut Vec<u8>, reply: &Reply) {
        self.send(out, reply);
        self.phase = Phase::Closed;
    }

    /// Forgets the transaction (keeps the buffers).
    pub(super) fn reset_transaction(&mut self) {
        let tx = &mut self.tx;
        tx.sender = None;
        tx.raw_params.clear();
        tx.params = MailParams::default();
        tx.recipients.clear();
        tx.rcpt_dsn.clear();
        tx.rcpt_attempts = 0;
        tx.bdat_started = false;
        tx.transfer = None;
    }
}
