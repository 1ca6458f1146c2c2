//! One SMTP client session: connect, greeting, EHLO (HELO fallback), then
//! any number of transactions over the same connection, then QUIT. Drives
//! the sans-IO `proto` state machines over an owned-buffer [`Conn`], with a
//! timeout for every stage. The message body goes out as stored (wire
//! form, already dot-stuffed), never re-encoded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::{DsnParams, MessageFlags};
use crate::proto::auth::{AuthExchange, AuthStep, Mechanism};
use crate::proto::{self, Action, Capabilities, Reply, ReplyParser, Transaction};
use crate::rt::tls::TlsInfo;
use crate::rt::Conn;

use super::classify::RcptResult;
use super::{DeliverError, DeliveryConfig, Peer, STAGE_CONNECT, STAGE_GREETING};

/// Read buffer size.
const READ_BUF: usize = 16 * 1024;

/// A message (or part of its recipients) to send in one transaction.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Envelope sender ("" for `<>`).
    pub sender: String,
    /// The recipients of this transaction.
    pub recipients: Vec<String>,
    /// Wire form: CRLF, dot-stuffed, without the final dot.
    pub wire: Vec<u8>,
    /// 8BITMIME / SMTPUTF8 needs.
    pub flags: MessageFlags,
    /// RFC 3461 requests (RET, ENVID; NOTIFY and ORCPT parallel to
    /// `recipients`, or empty), passed on to a server that announces DSN.
    pub dsn: DsnParams,
}

/// What became of one message sent with [`Session::send_chain`].
#[derive(Debug)]
pub enum ChainResult {
    /// The transaction ran: one result per recipient.
    Done(Vec<RcptResult>),
    /// The transaction failed as a whole (the connection broke while it
    /// was the oldest in flight).
    Failed(DeliverError),
    /// Its commands may have been sent, but the connection ended before
    /// any reply to them: nothing was accepted; send it again elsewhere.
    NotAttempted,
}

/// A transaction in flight in a chain.
struct Active<T> {
    tag: T,
    /// Started while an earlier transaction of the chain was in flight.
    chained: bool,
    /// This is the unchained retry of a chained transaction whose MAIL
    /// got this refusal.
    retry_of: Option<Reply>,
    tx: Transaction,
    msg: Outgoing,
    rcpts: usize,
    replies: usize,
    body_sent: bool,
}

impl<T> Active<T> {
    /// The timeout and stage name for this transaction's next reply.
    fn reply_stage(&self, t: &super::Timeouts) -> (Duration, &'static str) {
        let n = self.rcpts;
        if self.body_sent || self.replies > n + 1 {
            (t.data_done, "after end of data")
        } else if self.replies == 0 {
            (t.mail, "after MAIL FROM")
        } else if self.replies <= n {
            (t.rcpt, "after RCPT TO")
        } else {
            (t.data_init, "after DATA")
        }
    }
}

/// How a session protects itself: STARTTLS and AUTH settings for one
/// connection.
#[derive(Clone, Default)]
pub struct Security {
    /// The TLS client configuration to STARTTLS with; `None` never
    /// starts TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// TLS is mandatory (`encrypt`, `verify`): a server without STARTTLS,
    /// or a failed handshake, fails the session.
    pub tls_required: bool,
    /// The name the certificate must carry (`verify`): the MX host or the
    /// next hop.
    pub server_name: String,
    /// SASL user name and password.
    pub sasl: Option<(String, String)>,
    /// Allow AUTH over a connection without TLS.
    pub sasl_plaintext: bool,
    /// The sending source to connect from (its local address and EHLO
    /// name), if the destination's pool chose one.
    pub source: Option<SourceBinding>,
}

/// A sending source as a connection uses it (see `[[source]]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceBinding {
    /// The source's name, for logs.
    pub name: String,
    /// The local address to bind.
    pub address: std::net::IpAddr,
    /// The EHLO name to announce instead of `smtp_helo_name`.
    pub ehlo_name: Option<String>,
}

/// An open SMTP session.
pub struct Session {
    conn: Conn,
    parser: ReplyParser,
    rbuf: Vec<u8>,
    caps: Capabilities,
    esmtp: bool,
    peer: Peer,
    opened: Instant,
    transactions: u32,
    needs_rset: bool,
    broken: bool,
    /// The TLS session, once STARTTLS succeeded.
    tls: Option<TlsInfo>,
    /// The server refused a chained transaction and took it unchained:
    /// no more chaining on this connection.
    refuses_chaining: bool,
    /// That refusal, until the caller takes it.
    chain_refusal: Option<Reply>,
    /// The name said in EHLO/HELO (again after STARTTLS).
    helo_name: String,
}

/// The largest command group (MAIL, RCPTs, DATA) sent behind a final dot.
/// Haraka drops the connection when more than 8,192 bytes arrive before
/// its reply to the dot; a larger group waits for that reply instead.
pub const CHAIN_MAX_COMMAND_BYTES: usize = 4096;

/// About how many bytes `msg`'s MAIL, RCPT and DATA commands take.
fn command_group_len(msg: &Outgoing) -> usize {
    // "MAIL FROM:<>" + parameters + CRLF, "RCPT TO:<>" + CRLF, "DATA" + CRLF.
    64 + msg.sender.len() + msg.recipients.iter().map(|r| r.len() + 12).sum::<usize>()
}

impl Session {
    /// Connects to `addr` (named `host` in logs), reads the greeting and
    /// says EHLO, falling back to HELO when EHLO is refused.
    pub async fn open(
        host: &str,
        addr: SocketAddr,
        cfg: &DeliveryConfig,
        security: &Security,
    ) -> Result<Session, DeliverError> {
        let peer = Peer {
            host: host.to_string(),
            addr,
        };
        let t = &cfg.timeouts;
        let connecting = async {
            match &security.source {
                Some(src) => Conn::connect_from(addr, src.address, cfg.backend, t.connect).await,
                None => Conn::connect(addr, cfg.backend).await,
            }
        };
        let conn = match tokio::time::timeout(t.connect, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(source)) => {
                return Err(DeliverError::Connect {
                    host: host.to_string(),
                    addr,
                    source,
                })
            }
            Err(_) => {
                return Err(DeliverError::Timeout {
                    peer: peer.to_string(),
                    stage: STAGE_CONNECT,
                })
            }
        };
        Session::over(conn, peer, cfg, security).await
    }

    /// Runs the greeting and EHLO/HELO over an already connected `conn`
    /// (any [`Conn`]: a socket, or an in-memory pipe in tests), then
    /// STARTTLS and AUTH as `security` asks.
    pub async fn over(
        conn: Conn,
        peer: Peer,
        cfg: &DeliveryConfig,
        security: &Security,
    ) -> Result<Session, DeliverError> {
        let t = &cfg.timeouts;
        let mut s = Session {
            conn,
            parser: ReplyParser::new(),
            rbuf: Vec::with_capacity(READ_BUF),
            caps: Capabilities::default(),
            esmtp: true,
            peer,
            opened: Instant::now(),
            transactions: 0,
            needs_rset: false,
            broken: false,
            tls: None,
            refuses_chaining: false,
            chain_refusal: None,
            helo_name: String::new(),
        };
        let greeting = s.read_reply(t.helo, STAGE_GREETING).await?;
        if !greeting.is_positive() {
            return Err(s.refused(greeting));
        }
        s.helo_name = security
            .source
            .as_ref()
            .and_then(|src| src.ehlo_name.clone())
            .unwrap_or_else(|| cfg.helo_name.clone());
        s.hello(cfg).await?;
        if let Some(tls) = &security.tls {
            s.start_tls(tls, security, cfg).await?;
        }
        if let Some((user, password)) = &security.sasl {
            s.authenticate(user, password, security.sasl_plaintext, cfg)
                .await?;
        }
        Ok(s)
    }

    /// EHLO, or HELO when EHLO is refused.
    async fn hello(&mut self, cfg: &DeliveryConfig) -> Result<(), DeliverError> {
        let helo_name = std::mem::take(&mut self.helo_name);
        let said = self.say_hello(cfg, &helo_name).await;
        self.helo_name = helo_name;
        said
    }

    /// EHLO (or HELO) as `helo_name`.
    async fn say_hello(
        &mut self,
        cfg: &DeliveryConfig,
        helo_name: &str,
    ) -> Result<(), DeliverError> {
        let t = &cfg.timeouts;
        let s = self;
        let mut cmd = Vec::new();
        proto::command::ehlo(&mut cmd, helo_name).map_err(|source| s.protocol(source))?;
        s.write(cmd, t.helo, "after sending EHLO").await?;
        let reply = s.read_reply(t.helo, "after EHLO").await?;
        if reply.is_positive() {
            s.caps = Capabilities::from_ehlo(&reply);
        } else if reply.code != 421 {
            // As Postfix: any refusal of EHLO but 421 falls back to HELO.
            let mut cmd = Vec::new();
            proto::command::helo(&mut cmd, helo_name).map_err(|source| s.protocol(source))?;
            s.write(cmd, t.helo, "after sending HELO").await?;
            let reply = s.read_reply(t.helo, "after HELO").await?;
            if !reply.is_positive() {
                return Err(s.refused(reply));
            }
            s.esmtp = false;
        } else {
            return Err(s.refused(reply));
        }
        Ok(())
    }

    /// STARTTLS (RFC 3207) when offered: handshake, then EHLO again. Without
    /// an offer, or when the server refuses, the session stays in plaintext
    /// unless TLS is required.
    async fn start_tls(
        &mut self,
        config: &Arc<rustls::ClientConfig>,
        security: &Security,
        cfg: &DeliveryConfig,
    ) -> Result<(), DeliverError> {
        let t = &cfg.timeouts;
        if !self.caps.starttls {
            if security.tls_required {
                self.broken = true;
                return Err(DeliverError::TlsRequired {
                    peer: self.peer.named(),
                    what: "was not offered by",
                });
            }
            return Ok(());
        }
        let mut cmd = Vec::new();
        proto::command::starttls(&mut cmd);
        self.write(cmd, t.helo, "after sending STARTTLS").await?;
        let reply = self.read_reply(t.helo, "after STARTTLS").await?;
        if reply.code != 220 {
            if security.tls_required || reply.code == 421 {
                self.broken = true;
                return Err(DeliverError::TlsRequired {
                    peer: self.peer.named(),
                    what: "refused STARTTLS at",
                });
            }
            return Ok(());
        }
        // Anything the server sent after its 220 came before TLS: drop it
        // (RFC 3207 section 6), and so does the reply parser's buffer.
        self.parser = ReplyParser::new();
        let name =
            rustls_pki_types::ServerName::try_from(security.server_name.clone()).map_err(|e| {
                DeliverError::TlsHandshake {
                    peer: self.peer.named(),
                    detail: format!("bad server name {:?}: {e}", security.server_name),
                }
            })?;
        // The upgrade consumes the plaintext connection; an unconnected
        // in-memory pipe stands in until the TLS one comes back (on failure
        // the session is broken and only dropped).
        let conn = std::mem::replace(&mut self.conn, Conn::Pipe(tokio::io::duplex(1).0));
        let handshake = tokio::time::timeout(t.helo, conn.start_tls(Arc::clone(config), name));
        let (conn, info) = match handshake.await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                self.broken = true;
                return Err(DeliverError::TlsHandshake {
                    peer: self.peer.named(),
                    detail: e.to_string(),
                });
            }
            Err(_) => {
                self.broken = true;
                return Err(DeliverError::TlsHandshake {
                    peer: self.peer.named(),
                    detail: "timed out".into(),
                });
            }
        };
        self.conn = conn;
        tracing::info!(target: "smtp", "{}", info.log_line(&self.peer.to_string()));
        self.tls = Some(info);
        self.caps = Capabilities::default();
        self.hello(cfg).await
    }

    /// AUTH with PLAIN or LOGIN; refuses to send credentials in plaintext
    /// unless allowed.
    async fn authenticate(
        &mut self,
        user: &str,
        password: &str,
        plaintext_ok: bool,
        cfg: &DeliveryConfig,
    ) -> Result<(), DeliverError> {
        let t = &cfg.timeouts;
        let fail = |s: &mut Session, detail: String| {
            s.broken = true;
            DeliverError::Auth {
                peer: s.peer.named(),
                detail,
            }
        };
        if self.tls.is_none() && !plaintext_ok {
            return Err(fail(
                self,
                "credentials are not sent over a connection without TLS (set smtp_sasl_plaintext = true to allow it)".into(),
            ));
        }
        let Some(mechanism) = Mechanism::choose(&self.caps) else {
            let offered = if self.caps.auth.is_empty() {
                "none".to_string()
            } else {
                self.caps.auth.join(" ")
            };
            return Err(fail(
                self,
                format!("no mechanism available (offered: {offered}; supported: PLAIN LOGIN)"),
            ));
        };
        let mut exchange =
            AuthExchange::new(mechanism, user, password).map_err(|e| fail(self, e.to_string()))?;
        let mut line = exchange.start();
        loop {
            self.write(line, t.mail, "while authenticating").await?;
            let reply = self.read_reply(t.mail, "after AUTH").await?;
            match exchange.on_reply(&reply) {
                Ok(AuthStep::Done) => return Ok(()),
                Ok(AuthStep::Send(next)) => line = next,
                Err(e) => return Err(fail(self, e.to_string())),
            }
        }
    }

    /// The TLS session, when STARTTLS succeeded.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    fn protocol(&mut self, source: proto::ProtoError) -> DeliverError {
        self.broken = true;
        DeliverError::Protocol {
            peer: self.peer.named(),
            source,
        }
    }

    fn refused(&mut self, reply: Reply) -> DeliverError {
        self.broken = true;
        DeliverError::Refused {
            peer: self.peer.named(),
            reply,
        }
    }

    /// The remote end.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// True when the server announced DSN (RFC 3461): each message's
    /// NOTIFY, ORCPT, RET and ENVID go on with it, and the server, not
    /// ringmail, answers a NOTIFY=SUCCESS.
    pub fn passes_dsn(&self) -> bool {
        self.esmtp && self.caps.dsn
    }

    /// What the server announced in its EHLO reply (empty after HELO).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Transactions sent over this connection so far.
    pub fn transactions(&self) -> u32 {
        self.transactions
    }

    /// True when the connection may carry another transaction under the
    /// reuse limits.
    pub fn reusable(&self, cfg: &DeliveryConfig) -> bool {
        !self.broken
            && (cfg.reuse_count_limit == 0 || self.transactions < cfg.reuse_count_limit)
            && self.opened.elapsed() < cfg.reuse_time_limit
    }

    /// Sends one message to its recipients; returns one result per
    /// recipient, in order. An `Err` means the transaction failed as a
    /// whole (connection lost, timeout, garbage) and the session is unusable.
    pub async fn send(
        &mut self,
        msg: &Outgoing,
        cfg: &DeliveryConfig,
    ) -> Result<Vec<RcptResult>, DeliverError> {
        let mut result = None;
        self.send_chain(
            ((), msg.clone()),
            cfg,
            false,
            || None,
            |(), r| result = Some(r),
        )
        .await;
        match result {
            Some(ChainResult::Done(r)) => Ok(r),
            Some(ChainResult::Failed(e)) => Err(e),
            Some(ChainResult::NotAttempted) | None => Err(self.internal()),
        }
    }

    /// Sends `first`, then, when `chain` is true and the server offers
    /// PIPELINING, as many more messages as `next` hands out, overlapping
    /// transactions: the next message's MAIL, RCPT and DATA go out in the
    /// same write as the previous body and its final dot (RFC 2920 section
    /// 3.1 lets the message content open a command group), so each message
    /// costs one round trip instead of two. `done` gets each message's
    /// result, in order, as soon as it is known.
    ///
    /// A chained transaction whose MAIL the server refuses was refused
    /// possibly only because it was chained (Haraka answers `503 5.5.1 Bad
    /// sequence of commands - pipelined after end of DATA` to anything sent
    /// before its reply to the dot): it is sent again at once on the same
    /// connection, unchained, and only that second answer counts. If the
    /// second MAIL is accepted, the server refuses chaining: chaining stops
    /// for the rest of the session and [`Session::take_chain_refusal`]
    /// reports it. A command group larger than [`CHAIN_MAX_COMMAND_BYTES`]
    /// is never chained.
    ///
    /// A message whose commands were sent but that got no reply before the
    /// connection ended is [`ChainResult::NotAttempted`]: nothing of it was
    /// accepted, so it can go out again on another connection. `next` is
    /// called only while the connection may take another transaction.
    /// When the connection fails, the oldest message in flight gets
    /// [`ChainResult::Failed`] and the session is unusable afterwards.
    pub async fn send_chain<T>(
        &mut self,
        first: (T, Outgoing),
        cfg: &DeliveryConfig,
        chain: bool,
        mut next: impl FnMut() -> Option<(T, Outgoing)>,
        mut done: impl FnMut(T, ChainResult),
    ) {
        let t = &cfg.timeouts;
        // A connection that carried mail before may have been closed by the
        // server while idle; the first transaction then finds it closing.
        let reused = self.transactions > 0;
        if self.needs_rset {
            if let Err(e) = self.rset(cfg).await {
                done(first.0, ChainResult::Failed(e));
                return;
            }
        }
        let mut chaining = chain && !self.refuses_chaining && self.caps.pipelining && self.esmtp;
        // Transactions whose commands are out, oldest first (at most two:
        // one waiting for its final reply, one for its first replies).
        let mut active: VecDeque<Active<T>> = VecDeque::new();
        let mut out: Vec<u8> = Vec::new();
        let mut pending = Some(first);
        // The refusal of a chained MAIL that made `pending` a retry.
        let mut pending_retry: Option<Reply> = None;
        let mut first_tx = true;
        loop {
            // Start the next transaction when nothing is in flight.
            if active.is_empty() {
                let Some((tag, msg)) = pending.take() else {
                    return;
                };
                if self.needs_rset {
                    if let Err(e) = self.rset(cfg).await {
                        done(tag, ChainResult::Failed(e));
                        return;
                    }
                }
                match self.begin(tag, msg, &mut out, &mut done) {
                    Some(mut a) => {
                        a.retry_of = pending_retry.take();
                        active.push_back(a);
                    }
                    None => {
                        // Refused without I/O (SIZE, SMTPUTF8): take another.
                        pending_retry = None;
                        pending = if chaining && self.may_chain(cfg, 0) {
                            next()
                        } else {
                            None
                        };
                        continue;
                    }
                }
            }
            // Drive the oldest transaction until it needs a reply.
            let Some(front) = active.front_mut() else {
                continue;
            };
            match front.tx.next_action() {
                Action::Send(bytes) => {
                    out.extend_from_slice(&bytes);
                    continue;
                }
                Action::SendBody => {
                    // Cleanup and the bounce builder store only CRLF line
                    // ends, dot-stuffed: a bare CR or LF here could smuggle
                    // commands past a receiver (RFC 5321 2.3.8).
                    debug_assert_eq!(
                        crate::mail::line::check_wire_form(&front.msg.wire),
                        Ok(()),
                        "message body not in wire form"
                    );
                    // Room for the body, its final dot and a chained
                    // command group, so neither makes the buffer grow (a
                    // growth copies the whole body again).
                    out.reserve(front.msg.wire.len() + 5 + CHAIN_MAX_COMMAND_BYTES);
                    out.extend_from_slice(&front.msg.wire);
                    proto::command::end_of_data(&mut out);
                    front.body_sent = true;
                    // Open the next transaction in the same write.
                    while chaining
                        && pending.is_none()
                        && active.len() == 1
                        && self.may_chain(cfg, 1)
                    {
                        let Some((tag, msg)) = next() else { break };
                        if command_group_len(&msg) > CHAIN_MAX_COMMAND_BYTES {
                            // Too large to chain safely: after this one.
                            pending = Some((tag, msg));
                            break;
                        }
                        if let Some(mut a) = self.begin(tag, msg, &mut out, &mut done) {
                            a.chained = true;
                            active.push_back(a);
                        }
                    }
                    let stage = "while sending message content";
                    let bytes = std::mem::take(&mut out);
                    if let Err(e) = self.write(bytes, t.data_xfer, stage).await {
                        self.fail_all(&mut active, e, reused || !first_tx, &mut done);
                        return self.not_attempted(pending.take(), &mut done);
                    }
                    continue;
                }
                Action::AwaitReply => {}
                Action::Done(outcome) => {
                    let Some(a) = active.pop_front() else {
                        continue;
                    };
                    self.needs_rset = outcome.needs_rset;
                    if outcome.closing {
                        // 421: the server is closing the connection.
                        self.broken = true;
                        if outcome.mail.code == 421 && (a.chained || !first_tx || reused) {
                            // Closing before this transaction began (a
                            // reused connection the server dropped, or one
                            // it closed after the previous message): not
                            // the message's fault, send it elsewhere.
                            done(a.tag, ChainResult::NotAttempted);
                            for rest in active.drain(..) {
                                done(rest.tag, ChainResult::NotAttempted);
                            }
                            return self.not_attempted(pending.take(), &mut done);
                        }
                    }
                    if a.chained && !outcome.mail.is_positive() && !self.broken {
                        // Perhaps refused only because it was chained: not
                        // attempted. Send it again, unchained, right away.
                        debug_assert!(active.is_empty(), "a chained transaction is the last");
                        for rest in active.drain(..) {
                            done(rest.tag, ChainResult::NotAttempted);
                        }
                        if let Some(later) = pending.take() {
                            // Held back for its size; it goes after the retry.
                            done(later.0, ChainResult::NotAttempted);
                        }
                        chaining = false;
                        pending_retry = Some(outcome.mail.clone());
                        pending = Some((a.tag, a.msg));
                        continue;
                    }
                    self.transactions += 1;
                    first_tx = false;
                    if let Some(refusal) = a.retry_of {
                        if outcome.mail.is_positive() {
                            // Refused chained, accepted unchained: this
                            // server does not take chained transactions.
                            self.refuses_chaining = true;
                            self.chain_refusal = Some(refusal);
                        } else {
                            // Refused either way: the refusal was real.
                            chaining = chain && self.caps.pipelining && self.esmtp;
                        }
                    }
                    let peer = self.peer.clone();
                    let results = outcome
                        .rcpts
                        .iter()
                        .zip(&outcome.rcpt_stages)
                        .map(|(r, &stage)| RcptResult::from_outcome(&peer, r, stage))
                        .collect();
                    done(a.tag, ChainResult::Done(results));
                    if self.broken {
                        for rest in active.drain(..) {
                            done(rest.tag, ChainResult::NotAttempted);
                        }
                        return self.not_attempted(pending.take(), &mut done);
                    }
                    if active.is_empty() && pending.is_none() && chaining && self.may_chain(cfg, 0)
                    {
                        pending = next();
                    }
                    continue;
                }
            }
            // Everything queued goes out before waiting.
            if !out.is_empty() {
                let bytes = std::mem::take(&mut out);
                if let Err(e) = self.write(bytes, t.mail, "while sending commands").await {
                    self.fail_all(&mut active, e, reused || !first_tx, &mut done);
                    return self.not_attempted(pending.take(), &mut done);
                }
            }
            let Some(front) = active.front() else {
                continue;
            };
            let (timeout, stage) = front.reply_stage(t);
            let reply = match self.read_reply(timeout, stage).await {
                Ok(r) => r,
                Err(e) => {
                    self.fail_all(&mut active, e, reused || !first_tx, &mut done);
                    return self.not_attempted(pending.take(), &mut done);
                }
            };
            let Some(front) = active.front_mut() else {
                continue;
            };
            front.replies += 1;
            if let Err(source) = front.tx.on_reply(reply) {
                let e = DeliverError::Protocol {
                    peer: self.peer.named(),
                    source,
                };
                self.fail_all(&mut active, e, reused || !first_tx, &mut done);
                return self.not_attempted(pending.take(), &mut done);
            }
        }
    }

    /// A message taken for this session that never went out: give it back.
    fn not_attempted<T>(
        &mut self,
        held: Option<(T, Outgoing)>,
        done: &mut impl FnMut(T, ChainResult),
    ) {
        if let Some((tag, _)) = held {
            done(tag, ChainResult::NotAttempted);
        }
    }

    /// The refused chained MAIL that showed, this session, that the server
    /// does not take chained transactions (the same message was accepted
    /// unchained right after); `None` otherwise. Reported once.
    pub fn take_chain_refusal(&mut self) -> Option<Reply> {
        self.chain_refusal.take()
    }

    /// RSET before a transaction, after one that ended early.
    async fn rset(&mut self, cfg: &DeliveryConfig) -> Result<(), DeliverError> {
        let t = &cfg.timeouts;
        let mut cmd = Vec::new();
        proto::command::rset(&mut cmd);
        self.write(cmd, t.quit, "after sending RSET").await?;
        let reply = self.read_reply(t.quit, "after RSET").await?;
        if !reply.is_positive() {
            self.broken = true;
            return Err(DeliverError::Refused {
                peer: self.peer.named(),
                reply,
            });
        }
        self.needs_rset = false;
        Ok(())
    }

    /// True when the connection may take `extra` + 1 more transactions.
    fn may_chain(&self, cfg: &DeliveryConfig, extra: u32) -> bool {
        !self.broken
            && (cfg.reuse_count_limit == 0 || self.transactions + extra + 1 < cfg.reuse_count_limit)
            && self.opened.elapsed() < cfg.reuse_time_limit
    }

    /// Starts a transaction for `msg`: checks the MAIL parameters (a
    /// message the server cannot take gets its result at once, `None`),
    /// then queues its first commands in `out`.
    fn begin<T>(
        &mut self,
        tag: T,
        msg: Outgoing,
        out: &mut Vec<u8>,
        done: &mut impl FnMut(T, ChainResult),
    ) -> Option<Active<T>> {
        // SIZE, BODY=8BITMIME and SMTPUTF8 as the server announced them. As
        // Postfix, an 8-bit body goes out unchanged when 8BITMIME is not
        // offered; a message needing SMTPUTF8 bounces (5.6.7) when it is not,
        // and one over the announced SIZE bounces (5.3.4).
        let params = match self.caps.mail_params(
            msg.wire.len() as u64,
            msg.flags.has(MessageFlags::BODY_8BIT),
            msg.flags.has(MessageFlags::SMTPUTF8),
        ) {
            Ok(p) => p,
            Err(e) => {
                let text = format!("host {}: {e}", self.peer.named());
                let result = if e.is_transient() {
                    RcptResult::deferred(&e.dsn(), text)
                } else {
                    RcptResult::bounced(&e.dsn(), text)
                };
                let results = msg.recipients.iter().map(|_| result.clone()).collect();
                done(tag, ChainResult::Done(results));
                return None;
            }
        };
        // RFC 3461: the requests go on to a server that takes them (it
        // then reports success itself: see `Session::passes_dsn`).
        let dsn = if self.passes_dsn() {
            proto::DsnRequest {
                ret: msg.dsn.ret,
                envid: msg.dsn.envid.as_deref(),
                rcpts: &msg.dsn.rcpts,
            }
        } else {
            proto::DsnRequest::default()
        };
        let envelope = proto::Envelope {
            sender: &msg.sender,
            recipients: &msg.recipients,
            params,
            dsn,
        };
        let tx = match Transaction::new(&envelope, self.caps.pipelining && self.esmtp) {
            Ok(tx) => tx,
            Err(source) => {
                // An address the protocol cannot carry: this message fails,
                // the connection is fine.
                let e = DeliverError::Protocol {
                    peer: self.peer.named(),
                    source,
                };
                done(tag, ChainResult::Failed(e));
                return None;
            }
        };
        let mut a = Active {
            tag,
            chained: false,
            retry_of: None,
            tx,
            rcpts: msg.recipients.len(),
            msg,
            replies: 0,
            body_sent: false,
        };
        // Queue the opening command group (the whole envelope with
        // PIPELINING, MAIL FROM alone without).
        if let Action::Send(bytes) = a.tx.next_action() {
            out.extend_from_slice(&bytes);
        }
        Some(a)
    }

    /// The connection failed: the oldest transaction in flight fails with
    /// `e`, unless nothing of it was answered and it was chained, or the
    /// connection had carried mail before and was found gone: those were
    /// not attempted. The others were not attempted either.
    fn fail_all<T>(
        &mut self,
        active: &mut VecDeque<Active<T>>,
        e: DeliverError,
        used_before: bool,
        done: &mut impl FnMut(T, ChainResult),
    ) {
        self.broken = true;
        let lost = matches!(e, DeliverError::Lost { .. });
        let mut e = Some(e);
        for a in active.drain(..) {
            let silent = a.replies == 0 && !a.body_sent;
            let unanswered = silent && (a.chained || (used_before && lost));
            match e.take() {
                Some(e) if !unanswered => done(a.tag, ChainResult::Failed(e)),
                _ => done(a.tag, ChainResult::NotAttempted),
            }
        }
    }

    fn internal(&mut self) -> DeliverError {
        self.broken = true;
        DeliverError::Lost {
            peer: self.peer.named(),
            stage: "while sending commands",
            detail: "internal error: no transaction in flight".into(),
        }
    }

    /// Checks that a cached connection still works (RSET, expecting 2xx).
    pub async fn probe(&mut self, cfg: &DeliveryConfig) -> Result<(), DeliverError> {
        let mut cmd = Vec::new();
        proto::command::rset(&mut cmd);
        self.write(cmd, cfg.timeouts.quit, "after sending RSET")
            .await?;
        let reply = self.read_reply(cfg.timeouts.quit, "after RSET").await?;
        if reply.is_positive() {
            self.needs_rset = false;
            Ok(())
        } else {
            Err(self.refused(reply))
        }
    }

    /// Says QUIT and closes; errors are ignored.
    ///
    /// A server counts a connection against its limit until it sees the
    /// client's close, so a connection slot freed the moment this returned
    /// could let the next connection arrive while the server still counts
    /// this one (a site's connection limit overrun by one). So after the
    /// `221` it waits (at most a second) for the server to close its side,
    /// as RFC 5321 has it do, closes, and then waits one more round trip
    /// (the QUIT's, at most a second) for the server to see that close.
    pub async fn quit(mut self, cfg: &DeliveryConfig) {
        let mut round_trip = Duration::ZERO;
        if !self.broken {
            let mut cmd = Vec::new();
            proto::command::quit(&mut cmd);
            let sent = tokio::time::Instant::now();
            if self
                .write(cmd, cfg.timeouts.quit, "after sending QUIT")
                .await
                .is_ok()
                && self
                    .read_reply(cfg.timeouts.quit.min(Duration::from_secs(5)), "after QUIT")
                    .await
                    .is_ok()
            {
                round_trip = sent.elapsed().min(Duration::from_secs(1));
                self.wait_for_close(Duration::from_secs(1)).await;
            }
        }
        self.conn.close().await;
        if !round_trip.is_zero() {
            tokio::time::sleep(round_trip).await;
        }
    }

    /// Reads until the server closes the connection (or `limit` passes,
    /// or it sends more than a few kilobytes).
    async fn wait_for_close(&mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = 0usize;
        while seen < 16 * 1024 {
            let buf = std::mem::take(&mut self.rbuf);
            match tokio::time::timeout_at(deadline, self.conn.read(buf)).await {
                Ok((Ok(n), buf)) if n > 0 => {
                    seen += n;
                    self.rbuf = buf;
                }
                Ok((_, buf)) => {
                    self.rbuf = buf;
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// Closes without QUIT (the session is in an unknown state).
    pub async fn abort(self) {
        self.conn.close().await;
    }

    async fn write(
        &mut self,
        bytes: Vec<u8>,
        timeout: Duration,
        stage: &'static str,
    ) -> Result<(), DeliverError> {
        match tokio::time::timeout(timeout, self.conn.write_all(bytes)).await {
            Ok((Ok(()), _)) => Ok(()),
            Ok((Err(e), _)) => {
                self.broken = true;
                Err(DeliverError::Lost {
                    peer: self.peer.named(),
                    stage,
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                self.broken = true;
                Err(DeliverError::Timeout {
                    peer: self.peer.named(),
                    stage,
                })
            }
        }
    }

    /// Reads until one complete reply is available.
    async fn read_reply(
        &mut self,
        timeout: Duration,
        stage: &'static str,
    ) -> Result<Reply, DeliverError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.parser.next_reply() {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(source) => {
                    self.broken = true;
                    return Err(DeliverError::Protocol {
                        peer: self.peer.named(),
                        source,
                    });
                }
            }
            let buf = std::mem::take(&mut self.rbuf);
            let read = tokio::time::timeout_at(deadline, self.conn.read(buf)).await;
            match read {
                Ok((Ok(0), buf)) => {
                    self.rbuf = buf;
                    self.broken = true;
                    return Err(DeliverError::Lost {
                        peer: self.peer.named(),
                        stage,
                        detail: "connection closed by the server".into(),
                    });
                }
                Ok((Ok(n), buf)) => {
                    self.parser.feed(&buf[..n]);
                    self.rbuf = buf;
                }
                Ok((Err(e), buf)) => {
                    self.rbuf = buf;
                    self.broken = true;
                    return Err(DeliverError::Lost {
                        peer: self.peer.named(),
                        stage,
                        detail: e.to_string(),
                    });
                }
                Err(_) => {
                    self.broken = true;
                    if self.rbuf.capacity() == 0 {
                        self.rbuf = Vec::with_capacity(READ_BUF);
                    }
                    return Err(DeliverError::Timeout {
                        peer: self.peer.named(),
                        stage,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
