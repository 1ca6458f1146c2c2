//! The sans-IO SMTP server state machine of one connection: bytes in,
//! replies out, no sockets.
//!
//! The caller reads from its socket into a buffer, calls [`Session::feed`]
//! with the unconsumed bytes and an output buffer, drops the consumed
//! bytes, and writes the output buffer when `feed` wants more input. Any
//! number of pipelined commands in one read are answered in order into the
//! one output buffer, so a pipelined transaction costs one write. When a
//! message is complete, `feed` stops with [`Progress::Message`]: the caller
//! looks at [`Session::pending_message`], stores or counts it, and answers
//! with [`Session::finish_message`] before feeding the rest. After a
//! STARTTLS, `feed` stops with [`Progress::StartTls`]: the caller writes
//! the `220`, discards the rest of its input (RFC 3207 section 6), runs the
//! TLS handshake and calls [`Session::tls_started`].
//!
//! AUTH (PLAIN and LOGIN) is in `auth.rs`.

use std::borrow::Cow;
use std::sync::Arc;

use fastrand::Rng;

use super::command::{self, Command, Reply};
use super::config::{Faults, SinkConfig};
use super::data::DataReader;
use super::faults::{happens, verdict, Verdict};
use super::message_id::message_id;
use super::scan::find_byte;

mod auth;
#[cfg(test)]
mod tests;

/// Longest command line accepted (RFC 5321 asks for 512; parameters make
/// real lines longer). Longer lines are discarded with a `500`.
pub const MAX_LINE: usize = 4096;

/// Most recipients per transaction; more get `452 4.5.3`.
pub const MAX_RECIPIENTS: usize = 1000;

/// What a session needs from the configuration, with the replies that
/// contain the host name prepared once.
#[derive(Debug)]
pub struct SessionParams {
    esmtp: bool,
    max_message_size: Option<u64>,
    faults: Faults,
    keep_all: bool,
    /// Offer STARTTLS.
    starttls: bool,
    /// Answer STARTTLS with 220 and garbage.
    tls_broken: bool,
    /// Required credentials `(user, password)`.
    auth: Option<(String, String)>,
    /// AUTH is allowed before TLS.
    auth_plaintext: bool,
    /// Refuse commands pipelined after the end of DATA.
    strict_pipelining: bool,
    greeting: Vec<u8>,
    helo: Vec<u8>,
    /// The EHLO reply before TLS and over TLS.
    ehlo_plain: Vec<u8>,
    ehlo_tls: Vec<u8>,
    dropped: Vec<u8>,
    too_many: Vec<u8>,
    shutting_down: Vec<u8>,
}

impl SessionParams {
    /// Prepares the parameters for sessions of a sink with this
    /// configuration. Whole messages are kept only when `dump_dir` is set.
    pub fn new(config: &SinkConfig) -> Self {
        let host = &config.hostname;
        let enh = |e: &str| {
            if config.esmtp {
                format!("{e} ")
            } else {
                String::new()
            }
        };
        let starttls = config.tls.is_some() || config.faults.tls_broken;
        let auth = config.auth.is_some();
        SessionParams {
            esmtp: config.esmtp,
            max_message_size: config.max_message_size,
            faults: config.faults,
            keep_all: config.dump_dir.is_some(),
            starttls,
            tls_broken: config.faults.tls_broken,
            auth: config.auth.clone(),
            auth_plaintext: config.auth_plaintext,
            strict_pipelining: config.strict_pipelining,
            greeting: format!("220 {host} ESMTP ringmail-sink\r\n").into_bytes(),
            helo: format!("250 {host}\r\n").into_bytes(),
            ehlo_plain: ehlo_reply(config, starttls, auth && config.auth_plaintext),
            ehlo_tls: ehlo_reply(config, false, auth),
            dropped: format!(
                "421 {}{host} Error: closing connection (injected fault)\r\n",
                enh("4.4.2")
            )
            .into_bytes(),
            too_many: format!("421 {}{host} too many connections\r\n", enh("4.7.0")).into_bytes(),
            shutting_down: format!("421 {}{host} Service shutting down\r\n", enh("4.3.2"))
                .into_bytes(),
        }
    }

    /// Appends the reply to a connection beyond the limit:
    /// `421 4.7.0 <host> too many connections`. Close after sending it.
    pub fn too_many_connections(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.too_many);
    }

    /// Appends the reply sent to open connections when the sink stops.
    pub fn shutting_down(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.shutting_down);
    }
}

/// The EHLO reply, announcing STARTTLS and AUTH as asked.
fn ehlo_reply(config: &SinkConfig, starttls: bool, auth: bool) -> Vec<u8> {
    let mut ehlo = format!("250-{}\r\n", config.hostname);
    if config.pipelining {
        ehlo.push_str("250-PIPELINING\r\n");
    }
    match config.max_message_size {
        Some(n) => ehlo.push_str(&format!("250-SIZE {n}\r\n")),
        None => ehlo.push_str("250-SIZE\r\n"),
    }
    if starttls {
        ehlo.push_str("250-STARTTLS\r\n");
    }
    if auth {
        ehlo.push_str("250-AUTH PLAIN LOGIN\r\n");
    }
    ehlo.push_str("250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n");
    ehlo.into_bytes()
}

/// Why [`Session::feed`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Everything usable was consumed; write the output and read more.
    NeedInput,
    /// A message is complete: see [`Session::pending_message`], then call
    /// [`Session::finish_message`] and feed the rest of the input.
    Message,
    /// Write the output, then close the connection.
    Close,
    /// STARTTLS was accepted: write the output (the `220`), discard all
    /// unconsumed input, run the TLS handshake, then call
    /// [`Session::tls_started`] and go on reading over TLS. If the
    /// handshake fails, close.
    StartTls,
}

/// Counts since the last [`Session::take_tally`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Replies produced (a multi-line reply counts once); for latency.
    pub replies: u32,
    /// MAIL commands refused for their parameters (SIZE too big, ...).
    pub rejected_mail: u32,
    /// RCPT commands refused (faults, too many recipients, bad parameters).
    pub rejected_rcpt: u32,
    /// Messages refused after DATA (faults, too big, not stored).
    pub rejected_data: u32,
    /// Commands refused as pipelined after the end of DATA.
    pub pipelined_after_data: u32,
    /// Connections closed with an injected 421 or a broken STARTTLS.
    pub injected_disconnects: u32,
    /// Successful AUTH commands.
    pub auth_ok: u32,
    /// Failed AUTH exchanges (bad credentials or responses, cancelled).
    pub auth_failed: u32,
}

/// A received message awaiting [`Session::finish_message`].
#[derive(Debug)]
pub struct PendingMessage<'a> {
    /// The client's HELO/EHLO name.
    pub helo: &'a str,
    /// The envelope sender without brackets (`""` for `<>`).
    pub mail_from: &'a str,
    /// The MAIL parameters as sent.
    pub mail_params: &'a str,
    /// The accepted recipients without brackets.
    pub rcpt_to: &'a [String],
    /// The message size, dot-unstuffed.
    pub size: u64,
    /// The whole message when the session keeps whole messages (dump),
    /// else its start (the header section, at most 64 KiB).
    pub content: &'a [u8],
    /// It came over TLS.
    pub tls: bool,
    /// The user the client authenticated as, if it did.
    pub auth: Option<&'a str>,
}

impl PendingMessage<'_> {
    /// The message's Message-ID, if it has one.
    pub fn message_id(&self) -> Option<Cow<'_, str>> {
        message_id(self.content)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No HELO/EHLO yet.
    Connected,
    /// Greeted, no transaction.
    Ready,
    /// MAIL accepted.
    Mail,
    /// Receiving the message.
    Data,
    /// A message awaits `finish_message`.
    Message,
    /// STARTTLS accepted: waiting for `tls_started`.
    StartTls,
    /// Inside an AUTH exchange: the next line is a response.
    Auth(auth::Step),
    /// QUIT or an injected disconnect: no more input is read.
    Closed,
}

const OK: Reply = reply("250", "2.0.0", "Ok");
const MAIL_OK: Reply = reply("250", "2.1.0", "Ok");
const RCPT_OK: Reply = reply("250", "2.1.5", "Ok");
const START_DATA: Reply = reply("354", "", "End data with <CR><LF>.<CR><LF>");
const BYE: Reply = reply("221", "2.0.0", "Bye");
const VRFY: Reply = reply(
    "252",
    "2.0.0",
    "Cannot VRFY user, but will accept message and attempt delivery",
);
const UNKNOWN: Reply = reply("502", "5.5.2", "Error: command not recognized");
const NO_EHLO: Reply = reply("502", "5.5.1", "Error: command not implemented");
const TOO_LONG: Reply = reply("500", "5.5.2", "Error: line too long");
const NEED_HELO: Reply = reply("503", "5.5.1", "Error: send HELO/EHLO first");
const NESTED_MAIL: Reply = reply("503", "5.5.1", "Error: nested MAIL command");
const NEED_MAIL: Reply = reply("503", "5.5.1", "Error: need MAIL command");
const NEED_RCPT: Reply = reply("503", "5.5.1", "Error: need RCPT command");
const NO_VALID_RCPT: Reply = reply("554", "5.5.1", "Error: no valid recipients");
const TOO_MANY_RCPT: Reply = reply("452", "4.5.3", "Error: too many recipients");
const NEED_EHLO: Reply = reply("555", "5.5.4", "Error: parameters need EHLO");
const BAD_PARAM: Reply = reply("555", "5.5.4", "Error: unsupported parameter");
const BAD_SIZE: Reply = reply("501", "5.5.4", "Error: bad SIZE parameter");
const BAD_BODY: Reply = reply("501", "5.5.4", "Error: bad BODY parameter");
const TOO_BIG: Reply = reply("552", "5.3.4", "Error: message size exceeds fixed limit");
const RCPT_TEMP: Reply = reply("451", "4.3.0", "Error: temporary failure (injected fault)");
const RCPT_PERM: Reply = reply("550", "5.1.1", "Error: recipient rejected (injected fault)");
const DATA_TEMP: Reply = reply("451", "4.3.0", "Error: temporary failure (injected fault)");
const DATA_PERM: Reply = reply("554", "5.6.0", "Error: message rejected (injected fault)");
const NOT_STORED: Reply = reply("451", "4.3.0", "Error: cannot store message");
const READY_FOR_TLS: Reply = reply("220", "2.0.0", "Ready to start TLS");
const TLS_ACTIVE: Reply = reply("554", "5.5.1", "Error: TLS already active");
const IN_TRANSACTION: Reply = reply("503", "5.5.1", "Error: MAIL transaction in progress");
const NEED_AUTH: Reply = reply("530", "5.7.0", "Authentication required");
const PIPELINED_AFTER_DATA: Reply = reply(
    "503",
    "5.5.1",
    "Bad sequence of commands - pipelined after end of DATA",
);

/// What a broken STARTTLS sends instead of a TLS handshake.
const NOT_TLS: &[u8] = b"ringmail-sink: this is not a TLS handshake (injected fault)\r\n";

const fn reply(code: &'static str, enhanced: &'static str, text: &'static str) -> Reply {
    Reply {
        code,
        enhanced,
        text,
    }
}

/// One connection's SMTP server state.
#[derive(Debug)]
pub struct Session {
    params: Arc<SessionParams>,
    rng: Rng,
    phase: Phase,
    /// Inside an overlong line: discard up to its end.
    discarding: bool,
    ehlo: bool,
    helo: String,
    mail_from: String,
    mail_params: String,
    rcpts: Vec<String>,
    rcpt_attempts: usize,
    data: DataReader,
    tally: Tally,
    /// The session runs over TLS.
    tls: bool,
    /// The user authenticated as.
    auth_user: Option<String>,
    /// LOGIN's user name, between its two answers.
    login_user: Vec<u8>,
    /// (Strict pipelining) the end of DATA was read and its reply is not
    /// written yet: commands now are refused.
    after_dot: bool,
}

impl Session {
    /// A new session; `rng` decides the injected faults.
    pub fn new(params: Arc<SessionParams>, rng: Rng) -> Self {
        let data = DataReader::new(params.max_message_size, params.keep_all);
        Session {
            params,
            rng,
            phase: Phase::Connected,
            discarding: false,
            ehlo: false,
            helo: String::new(),
            mail_from: String::new(),
            mail_params: String::new(),
            rcpts: Vec::new(),
            rcpt_attempts: 0,
            data,
            tally: Tally::default(),
            tls: false,
            auth_user: None,
            login_user: Vec::new(),
            after_dot: false,
        }
    }

    /// Appends the greeting.
    pub fn greeting(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.params.greeting);
        self.tally.replies += 1;
    }

    /// Consumes commands and message data from `input`, appending replies
    /// to `out`. Returns how many bytes were consumed (the caller offers the
    /// rest again, with more, next time; at most [`MAX_LINE`] bytes are ever
    /// left) and why it stopped.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Progress) {
        let mut pos = 0;
        loop {
            match self.phase {
                Phase::Closed => return (pos, Progress::Close),
                Phase::Message => return (pos, Progress::Message),
                Phase::StartTls => return (pos, Progress::StartTls),
                Phase::Data => {
                    let (n, end) = self.data.feed(&input[pos..]);
                    pos += n;
                    if !end {
                        return (pos, Progress::NeedInput);
                    }
                    self.after_dot = self.params.strict_pipelining;
                    self.end_of_data(out);
                }
                Phase::Connected | Phase::Ready | Phase::Mail | Phase::Auth(_) => {
                    let rest = &input[pos..];
                    let Some(lf) = find_byte(b'\n', rest) else {
                        // The output is written before more is read: what
                        // comes next was sent after the client saw it.
                        self.after_dot = false;
                        if self.discarding || rest.len() > MAX_LINE {
                            self.discarding = true;
                            return (input.len(), Progress::NeedInput);
                        }
                        return (pos, Progress::NeedInput);
                    };
                    pos += lf + 1;
                    let line = &rest[..lf];
                    if std::mem::take(&mut self.discarding) || line.len() > MAX_LINE {
                        if let Phase::Auth(_) = self.phase {
                            self.auth_failed();
                        }
                        self.put(out, TOO_LONG);
                        continue;
                    }
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if self.after_dot {
                        // Sent before the reply to the dot: not carried out.
                        self.tally.pipelined_after_data += 1;
                        self.put(out, PIPELINED_AFTER_DATA);
                        continue;
                    }
                    match self.phase {
                        Phase::Auth(step) => self.auth_response(step, line, out),
                        _ => self.command(line, out),
                    }
                }
            }
        }
    }

    /// The message received, while `feed` reports [`Progress::Message`].
    pub fn pending_message(&self) -> Option<PendingMessage<'_>> {
        (self.phase == Phase::Message).then(|| PendingMessage {
            helo: &self.helo,
            mail_from: &self.mail_from,
            mail_params: &self.mail_params,
            rcpt_to: &self.rcpts,
            size: self.data.size(),
            content: self.data.content(),
            tls: self.tls,
            auth: self.auth_user.as_deref(),
        })
    }

    /// The TLS handshake after STARTTLS succeeded: forgets everything said
    /// before (RFC 3207 section 4.2: the client must EHLO again, and an
    /// earlier AUTH no longer counts). Does nothing unless `feed` reported
    /// [`Progress::StartTls`].
    pub fn tls_started(&mut self) {
        if self.phase != Phase::StartTls {
            return;
        }
        self.tls = true;
        self.phase = Phase::Connected;
        self.discarding = false;
        self.ehlo = false;
        self.helo.clear();
        self.auth_user = None;
        self.reset_transaction();
    }

    /// True once [`Session::tls_started`] was called.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Answers the pending message: `250 2.0.0 Ok: queued as <n>` when
    /// `queued` is `Some(n)`, else `451 4.3.0` (it could not be stored).
    /// Does nothing when no message is pending.
    pub fn finish_message(&mut self, queued: Option<u64>, out: &mut Vec<u8>) {
        if self.phase != Phase::Message {
            return;
        }
        match queued {
            Some(n) => {
                out.extend_from_slice(b"250 ");
                if self.params.esmtp {
                    out.extend_from_slice(b"2.0.0 ");
                }
                out.extend_from_slice(b"Ok: queued as ");
                out.extend_from_slice(n.to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                self.tally.replies += 1;
            }
            None => {
                self.tally.rejected_data += 1;
                self.put(out, NOT_STORED);
            }
        }
        self.reset_transaction();
    }

    /// Returns the counts since the last call and zeroes them.
    pub fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    fn put(&mut self, out: &mut Vec<u8>, r: Reply) {
        out.extend_from_slice(r.code.as_bytes());
        out.push(b' ');
        if self.params.esmtp && !r.enhanced.is_empty() {
            out.extend_from_slice(r.enhanced.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(r.text.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.tally.replies += 1;
    }

    fn command(&mut self, line: &[u8], out: &mut Vec<u8>) {
        match command::parse(line) {
            Command::Helo(name) => self.hello(name, false, out),
            Command::Ehlo(name) if self.params.esmtp => self.hello(name, true, out),
            Command::Ehlo(_) => self.put(out, NO_EHLO),
            Command::Mail { path, params } => self.mail(path, params, out),
            Command::Rcpt { path, params } => self.rcpt(path, params, out),
            Command::Data => self.data_command(out),
            Command::Rset => {
                self.reset_transaction();
                self.put(out, OK);
            }
            Command::Noop => self.put(out, OK),
            Command::Quit => {
                self.put(out, BYE);
                self.phase = Phase::Closed;
            }
            Command::Vrfy => self.put(out, VRFY),
            Command::StartTls if self.params.starttls && self.params.esmtp => self.starttls(out),
            Command::Auth { mechanism, initial }
                if self.params.auth.is_some() && self.params.esmtp =>
            {
                self.auth(mechanism, initial, out)
            }
            Command::StartTls | Command::Auth { .. } => self.put(out, UNKNOWN),
            Command::Unknown => self.put(out, UNKNOWN),
            Command::Bad(r) => self.put(out, r),
        }
    }

    fn hello(&mut self, name: &[u8], ehlo: bool, out: &mut Vec<u8>) {
        self.phase = Phase::Ready;
        self.reset_transaction();
        self.ehlo = ehlo;
        self.helo = String::from_utf8_lossy(name).into_owned();
        let params = Arc::clone(&self.params);
        out.extend_from_slice(match (ehlo, self.tls) {
            (false, _) => &params.helo,
            (true, false) => &params.ehlo_plain,
            (true, true) => &params.ehlo_tls,
        });
        self.tally.replies += 1;
    }

    fn starttls(&mut self, out: &mut Vec<u8>) {
        if self.tls {
            return self.put(out, TLS_ACTIVE);
        }
        match self.phase {
            Phase::Connected => return self.put(out, NEED_HELO),
            Phase::Mail => return self.put(out, IN_TRANSACTION),
            _ => {}
        }
        self.put(out, READY_FOR_TLS);
        if self.params.tls_broken {
            out.extend_from_slice(NOT_TLS);
            self.tally.injected_disconnects += 1;
            self.phase = Phase::Closed;
        } else {
            self.phase = Phase::StartTls;
        }
    }

    fn mail(&mut self, path: &[u8], params: &[u8], out: &mut Vec<u8>) {
        match self.phase {
            Phase::Connected => return self.put(out, NEED_HELO),
            Phase::Mail => return self.put(out, NESTED_MAIL),
            _ => {}
        }
        if self.params.auth.is_some() && self.auth_user.is_none() {
            return self.put(out, NEED_AUTH);
        }
        if happens(&mut self.rng, self.params.faults.disconnect_421) {
            out.extend_from_slice(&self.params.dropped);
            self.tally.replies += 1;
            self.tally.injected_disconnects += 1;
            self.phase = Phase::Closed;
            return;
        }
        if let Err(r) = self.check_mail_params(params) {
            self.tally.rejected_mail += 1;
            return self.put(out, r);
        }
        self.mail_from.clear();
        self.mail_from.push_str(&String::from_utf8_lossy(path));
        self.mail_params.clear();
        self.mail_params.push_str(&String::from_utf8_lossy(params));
        self.phase = Phase::Mail;
        self.put(out, MAIL_OK);
    }

    fn check_mail_params(&self, params: &[u8]) -> Result<(), Reply> {
        if !params.is_empty() && !self.ehlo {
            return Err(NEED_EHLO);
        }
        for (key, value) in command::params(params) {
            if key.eq_ignore_ascii_case(b"SIZE") {
                let size = value
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(BAD_SIZE)?;
                if self.params.max_message_size.is_some_and(|max| size > max) {
                    return Err(TOO_BIG);
                }
            } else if key.eq_ignore_ascii_case(b"BODY") {
                match value {
                    Some(v) if v.eq_ignore_ascii_case(b"7BIT") => {}
                    Some(v) if v.eq_ignore_ascii_case(b"8BITMIME") => {}
                    _ => return Err(BAD_BODY),
                }
            } else if !(key.eq_ignore_ascii_case(b"SMTPUTF8") && value.is_none()) {
                return Err(BAD_PARAM);
            }
        }
        Ok(())
    }

    fn rcpt(&mut self, path: &[u8], params: &[u8], out: &mut Vec<u8>) {
        if self.phase != Phase::Mail {
            return self.put(out, NEED_MAIL);
        }
        self.rcpt_attempts += 1;
        let refusal = if !params.is_empty() {
            Some(BAD_PARAM)
        } else if self.rcpts.len() >= MAX_RECIPIENTS {
            Some(TOO_MANY_RCPT)
        } else {
            let f = &self.params.faults;
            match verdict(&mut self.rng, f.rcpt_tempfail, f.rcpt_permfail) {
                Verdict::Pass => None,
                Verdict::Temp => Some(RCPT_TEMP),
                Verdict::Perm => Some(RCPT_PERM),
            }
        };
        match refusal {
            Some(r) => {
                self.tally.rejected_rcpt += 1;
                self.put(out, r);
            }
            None => {
                self.rcpts.push(String::from_utf8_lossy(path).into_owned());
                self.put(out, RCPT_OK);
            }
        }
    }

    fn data_command(&mut self, out: &mut Vec<u8>) {
        if self.phase != Phase::Mail {
            return self.put(out, NEED_MAIL);
        }
        if self.rcpts.is_empty() {
            let r = if self.rcpt_attempts > 0 {
                NO_VALID_RCPT
            } else {
                NEED_RCPT
            };
            return self.put(out, r);
        }
        self.data.reset();
        self.phase = Phase::Data;
        self.put(out, START_DATA);
    }

    fn end_of_data(&mut self, out: &mut Vec<u8>) {
        let refusal = if self.data.is_oversize() {
            Some(TOO_BIG)
        } else {
            let f = &self.params.faults;
            match verdict(&mut self.rng, f.data_tempfail, f.data_permfail) {
                Verdict::Pass => None,
                Verdict::Temp => Some(DATA_TEMP),
                Verdict::Perm => Some(DATA_PERM),
            }
        };
        match refusal {
            Some(r) => {
                self.tally.rejected_data += 1;
                self.put(out, r);
                self.reset_transaction();
            }
            None => self.phase = Phase::Message,
        }
    }

    /// Forgets the transaction (keeps the buffers) and returns to `Ready`
    /// unless no HELO was seen yet.
    fn reset_transaction(&mut self) {
        self.mail_from.clear();
        self.mail_params.clear();
        self.rcpts.clear();
        self.rcpt_attempts = 0;
        if self.phase != Phase::Connected && self.phase != Phase::Closed {
            self.phase = Phase::Ready;
        }
    }
}
