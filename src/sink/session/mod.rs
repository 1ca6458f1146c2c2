//! The sink's driver of the shared server session
//! ([`crate::proto::server`]): it configures the session the sink way
//! (lenient line ends as the dump promises bytes as sent, only the head of
//! each message kept unless dumping, no error limits), plugs in the fault
//! injection (`policy.rs`), checks AUTH credentials against the one
//! configured user, breaks STARTTLS on demand, and counts what the sink's
//! statistics report. Bytes in, replies out, no sockets.
//!
//! The caller reads from its socket into a buffer, calls [`Session::feed`]
//! with the unconsumed bytes and an output buffer, drops the consumed
//! bytes, and writes the output buffer when `feed` wants more input. When
//! a message is complete, `feed` stops with [`Progress::Message`]: the
//! caller looks at [`Session::pending_message`], stores or counts it, and
//! answers with [`Session::finish_message`] before feeding the rest. After
//! a STARTTLS, `feed` stops with [`Progress::StartTls`]: the caller writes
//! the `220`, discards the rest of its input (RFC 3207 section 6), runs the
//! TLS handshake and calls [`Session::tls_started`].

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fastrand::Rng;

use super::auth::credentials_ok;
use super::config::SinkConfig;
use super::message_id::message_id;
use super::throttle::{parse_reply, TokenBucket};
use crate::proto::server::{
    self, AuthConfig, Capture, Extensions, Limits, LineEnds, Reply, SessionConfig, Verb,
};

mod policy;
#[cfg(test)]
mod tests;

use policy::FaultPolicy;

/// Longest command line accepted (RFC 5321 asks for 512; parameters make
/// real lines longer). Longer lines are discarded with a `500`.
pub const MAX_LINE: usize = 4096;

/// Most recipients per transaction; more get `452 4.5.3`.
pub const MAX_RECIPIENTS: usize = 1000;

/// What a session needs from the configuration, with the replies that
/// contain the host name prepared once.
#[derive(Debug)]
pub struct SessionParams {
    server: Arc<server::SessionParams>,
    faults: super::config::Faults,
    /// Answer STARTTLS with 220 and garbage.
    tls_broken: bool,
    /// Required credentials `(user, password)`.
    auth: Option<(String, String)>,
    dropped: Reply,
    /// The rate limit's bucket (shared by every connection) and reply.
    throttle: Option<Throttle>,
    too_many: Vec<u8>,
    shutting_down: Vec<u8>,
}

/// A listener's message rate limit as its sessions see it.
#[derive(Clone, Debug)]
pub(crate) struct Throttle {
    pub(crate) bucket: Arc<Mutex<TokenBucket>>,
    pub(crate) reply: Reply,
}

impl SessionParams {
    /// Prepares the parameters for sessions of a sink with this
    /// configuration. Whole messages are kept only when `dump_dir` is set.
    /// Configured replies that do not parse fall back to the defaults
    /// ([`SinkConfig::validate`] refuses them first).
    pub fn new(config: &SinkConfig) -> Self {
        let host = &config.hostname;
        let enh = |e: &str| {
            if config.esmtp {
                format!("{e} ")
            } else {
                String::new()
            }
        };
        let server = SessionConfig {
            hostname: host.clone(),
            greeting: "ESMTP ringmail-sink".to_string(),
            esmtp: config.esmtp,
            extensions: Extensions {
                pipelining: config.pipelining,
                chunking: false,
                dsn: config.dsn,
                ..Extensions::default()
            },
            starttls: config.tls.is_some() || config.faults.tls_broken,
            tls_required: false,
            auth: config.auth.as_ref().map(|_| AuthConfig {
                plaintext: config.auth_plaintext,
                required: true,
            }),
            origin: None,
            line_ends: LineEnds::Lenient,
            capture: if config.dump_dir.is_some() {
                Capture::Whole
            } else {
                Capture::Head
            },
            limits: Limits {
                max_line: MAX_LINE,
                max_recipients: MAX_RECIPIENTS,
                max_message_size: config.max_message_size,
                hard_error_limit: None,
                junk_command_limit: None,
                max_commands: None,
            },
            refuse_pipelined_after_data: config.strict_pipelining,
            helo_required: true,
            forbid_non_smtp: false,
        };
        let throttle = config.rate_limit.as_ref().map(|limit| Throttle {
            bucket: Arc::new(Mutex::new(TokenBucket::new(
                limit.per_second,
                limit.burst,
                Instant::now(),
            ))),
            reply: parse_reply(&limit.reply).unwrap_or(Reply::fixed(
                421,
                "",
                "4.7.0 Too many messages, slow down",
            )),
        });
        let too_many = match config.connection_cap_reply.as_deref().map(parse_reply) {
            Some(Ok(reply)) => {
                let mut line = Vec::new();
                reply.write(false, &mut line);
                line
            }
            _ => format!("421 {}{host} too many connections\r\n", enh("4.7.0")).into_bytes(),
        };
        SessionParams {
            server: Arc::new(server::SessionParams::new(server)),
            throttle,
            faults: config.faults,
            tls_broken: config.faults.tls_broken,
            auth: config.auth.clone(),
            dropped: Reply::new(
                421,
                "4.4.2",
                format!("{host} Error: closing connection (injected fault)"),
            ),
            too_many,
            shutting_down: format!("421 {}{host} Service shutting down\r\n", enh("4.3.2"))
                .into_bytes(),
        }
    }

    /// Appends the reply to a connection beyond the limit:
    /// `421 4.7.0 <host> too many connections` or the configured one.
    /// Close after sending it.
    pub fn too_many_connections(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.too_many);
    }

    /// Appends the reply sent to open connections when the sink stops.
    pub fn shutting_down(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.shutting_down);
    }
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
    /// MAIL commands refused (out of sequence, bad parameters, SIZE too
    /// big), not counting injected disconnects.
    pub rejected_mail: u32,
    /// RCPT commands refused (out of sequence, faults, too many
    /// recipients, bad parameters).
    pub rejected_rcpt: u32,
    /// Messages refused after their data (faults, too big, not stored).
    pub rejected_data: u32,
    /// Commands refused as pipelined after the end of DATA.
    pub pipelined_after_data: u32,
    /// Connections closed with an injected 421 or a broken STARTTLS.
    pub injected_disconnects: u32,
    /// MAIL commands refused by the rate limit.
    pub throttled: u32,
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

/// What a broken STARTTLS sends instead of a TLS handshake.
const NOT_TLS: &[u8] = b"ringmail-sink: this is not a TLS handshake (injected fault)\r\n";

const NOT_STORED: Reply = Reply::fixed(451, "4.3.0", "Error: cannot store message");

/// The counts a tally is the difference of.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    counters: server::Counters,
    mail: (u32, u32),
    rcpt: (u32, u32),
    auth_ok: u32,
    /// Injected 421s at MAIL.
    dropped: u32,
    /// MAIL commands over the rate limit.
    throttled: u32,
    /// Broken STARTTLS (0 or 1).
    broken: u32,
}

/// One connection's SMTP server state.
#[derive(Debug)]
pub struct Session {
    params: Arc<SessionParams>,
    inner: server::Session,
    policy: FaultPolicy,
    /// A broken STARTTLS ended the session.
    broken: bool,
    /// Totals at the last [`Session::take_tally`].
    last: Totals,
}

impl Session {
    /// A new session; `rng` decides the injected faults.
    pub fn new(params: Arc<SessionParams>, rng: Rng) -> Self {
        let inner = server::Session::new(Arc::clone(&params.server), None);
        let policy = FaultPolicy::new(
            rng,
            params.faults,
            params.dropped.clone(),
            params.throttle.clone(),
        );
        Session {
            params,
            inner,
            policy,
            broken: false,
            last: Totals::default(),
        }
    }

    /// Appends the greeting.
    pub fn greeting(&mut self, out: &mut Vec<u8>) {
        self.inner.greeting(out);
    }

    /// Consumes commands and message data from `input`, appending replies
    /// to `out`. Returns how many bytes were consumed (the caller offers the
    /// rest again, with more, next time; at most [`MAX_LINE`] + 1 bytes are
    /// ever left) and why it stopped.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Progress) {
        if self.broken {
            return (0, Progress::Close);
        }
        if self.inner.stage() == server::Stage::Greeting {
            // The sink does not test for clients talking first: a session
            // fed before its greeting was written greets silently.
            self.inner.greeting(&mut Vec::new());
        }
        let mut pos = 0;
        loop {
            let (n, progress) = self.inner.feed(&input[pos..], out, &mut self.policy);
            pos += n;
            return match progress {
                server::Progress::NeedInput => (pos, Progress::NeedInput),
                server::Progress::Message => (pos, Progress::Message),
                server::Progress::Close => (pos, Progress::Close),
                server::Progress::Auth => {
                    let ok = match (self.inner.pending_auth(), &self.params.auth) {
                        (Some(request), Some(credentials)) => credentials_ok(&request, credentials),
                        _ => false,
                    };
                    self.inner.auth_result(ok, out);
                    continue;
                }
                server::Progress::StartTls if self.params.tls_broken => {
                    out.extend_from_slice(NOT_TLS);
                    self.broken = true;
                    (pos, Progress::Close)
                }
                server::Progress::StartTls => (pos, Progress::StartTls),
            };
        }
    }

    /// The message received, while `feed` reports [`Progress::Message`].
    pub fn pending_message(&self) -> Option<PendingMessage<'_>> {
        self.inner.pending_message().map(|m| PendingMessage {
            helo: m.helo,
            mail_from: m.sender,
            mail_params: m.raw_params,
            rcpt_to: m.recipients,
            size: m.size,
            content: m.content,
            tls: m.tls,
            auth: m.auth_user,
        })
    }

    /// The TLS handshake after STARTTLS succeeded: forgets everything said
    /// before (RFC 3207 section 4.2: the client must EHLO again, and an
    /// earlier AUTH no longer counts). Does nothing unless `feed` reported
    /// [`Progress::StartTls`].
    pub fn tls_started(&mut self) {
        self.inner.tls_started();
    }

    /// True once [`Session::tls_started`] was called.
    pub fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }

    /// Answers the pending message: `250 2.0.0 Ok: queued as <n>` when
    /// `queued` is `Some(n)`, else `451 4.3.0` (it could not be stored).
    /// Does nothing when no message is pending.
    pub fn finish_message(&mut self, queued: Option<u64>, out: &mut Vec<u8>) {
        match queued {
            Some(n) => self.inner.finish_message(Ok(&n.to_string()), out),
            None => self.inner.finish_message(Err(NOT_STORED), out),
        }
    }

    /// Returns the counts since the last call and zeroes them.
    pub fn take_tally(&mut self) -> Tally {
        let counts = self.inner.command_counts();
        let now = Totals {
            counters: self.inner.counters(),
            mail: counts.get(Verb::Mail),
            rcpt: counts.get(Verb::Rcpt),
            auth_ok: counts.get(Verb::Auth).0,
            dropped: self.policy.disconnects,
            throttled: self.policy.throttled,
            broken: u32::from(self.broken),
        };
        let last = std::mem::replace(&mut self.last, now);
        let (c, l) = (&now.counters, &last.counters);
        let refused = |(ok, total): (u32, u32)| total - ok;
        let dropped = now.dropped - last.dropped;
        let throttled = now.throttled - last.throttled;
        Tally {
            replies: u32::try_from(c.replies - l.replies).unwrap_or(u32::MAX),
            // An injected 421 or a throttle answers a MAIL too; they are
            // counted apart.
            rejected_mail: (refused(now.mail) - refused(last.mail))
                .saturating_sub(dropped)
                .saturating_sub(throttled),
            rejected_rcpt: refused(now.rcpt) - refused(last.rcpt),
            rejected_data: c.messages_refused - l.messages_refused,
            pipelined_after_data: c.pipelined_after_data - l.pipelined_after_data,
            injected_disconnects: dropped + now.broken - last.broken,
            throttled,
            auth_ok: now.auth_ok - last.auth_ok,
            auth_failed: c.auth_failures - l.auth_failures,
        }
    }
}
