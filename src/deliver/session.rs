//! One SMTP client session: connect, greeting, EHLO (HELO fallback), then
//! any number of transactions over the same connection, then QUIT. Drives
//! the sans-IO `proto` state machines over an owned-buffer [`Conn`], with a
//! timeout for every stage. The message body goes out as stored (wire
//! form, already dot-stuffed), never re-encoded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::MessageFlags;
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
    /// The last transaction found the connection already closing (421 or
    /// end of stream before the MAIL reply).
    stale: bool,
    /// The TLS session, once STARTTLS succeeded.
    tls: Option<TlsInfo>,
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
        let conn = match tokio::time::timeout(t.connect, Conn::connect(addr, cfg.backend)).await {
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
            stale: false,
            tls: None,
        };
        let greeting = s.read_reply(t.helo, STAGE_GREETING).await?;
        if !greeting.is_positive() {
            return Err(s.refused(greeting));
        }
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
        let t = &cfg.timeouts;
        let s = self;
        let mut cmd = Vec::new();
        proto::command::ehlo(&mut cmd, &cfg.helo_name).map_err(|source| s.protocol(source))?;
        s.write(cmd, t.helo, "after sending EHLO").await?;
        let reply = s.read_reply(t.helo, "after EHLO").await?;
        if reply.is_positive() {
            s.caps = Capabilities::from_ehlo(&reply);
        } else if reply.code != 421 {
            // As Postfix: any refusal of EHLO but 421 falls back to HELO.
            let mut cmd = Vec::new();
            proto::command::helo(&mut cmd, &cfg.helo_name).map_err(|source| s.protocol(source))?;
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
                    peer: self.peer.to_string(),
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
                    peer: self.peer.to_string(),
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
                    peer: self.peer.to_string(),
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
                    peer: self.peer.to_string(),
                    detail: e.to_string(),
                });
            }
            Err(_) => {
                self.broken = true;
                return Err(DeliverError::TlsHandshake {
                    peer: self.peer.to_string(),
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
                peer: s.peer.to_string(),
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
            peer: self.peer.to_string(),
            source,
        }
    }

    fn refused(&mut self, reply: Reply) -> DeliverError {
        self.broken = true;
        DeliverError::Refused {
            peer: self.peer.to_string(),
            reply,
        }
    }

    /// The remote end.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// What the server announced in its EHLO reply (empty after HELO).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// True when another transaction may use this connection.
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
        let t = &cfg.timeouts;
        self.stale = false;
        if self.needs_rset {
            let mut cmd = Vec::new();
            proto::command::rset(&mut cmd);
            self.write(cmd, t.quit, "after sending RSET").await?;
            let reply = self.read_reply(t.quit, "after RSET").await?;
            if !reply.is_positive() {
                self.broken = true;
                return Err(DeliverError::Refused {
                    peer: self.peer.to_string(),
                    reply,
                });
            }
            self.needs_rset = false;
        }
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
                let text = format!("host {}: {e}", self.peer);
                let result = if e.is_transient() {
                    RcptResult::deferred(&e.dsn(), text)
                } else {
                    RcptResult::Bounced { dsn: e.dsn(), text }
                };
                return Ok(msg.recipients.iter().map(|_| result.clone()).collect());
            }
        };
        let envelope = proto::Envelope {
            sender: &msg.sender,
            recipients: &msg.recipients,
            params,
        };
        let mut tx =
            Transaction::new(&envelope, self.caps.pipelining && self.esmtp).map_err(|source| {
                DeliverError::Protocol {
                    peer: self.peer.to_string(),
                    source,
                }
            })?;
        let n = msg.recipients.len();
        let mut replies = 0usize;
        let mut body_sent = false;
        loop {
            match tx.next_action() {
                Action::Send(bytes) => self.write(bytes, t.mail, "while sending commands").await?,
                Action::SendBody => {
                    let mut body = Vec::with_capacity(msg.wire.len() + 3);
                    body.extend_from_slice(&msg.wire);
                    proto::command::end_of_data(&mut body);
                    self.write(body, t.data_xfer, "while sending message content")
                        .await?;
                    body_sent = true;
                }
                Action::AwaitReply => {
                    let (timeout, stage) = if body_sent || replies > n + 1 {
                        (t.data_done, "after end of data")
                    } else if replies == 0 {
                        (t.mail, "after MAIL FROM")
                    } else if replies <= n {
                        (t.rcpt, "after RCPT TO")
                    } else {
                        (t.data_init, "after DATA")
                    };
                    let reply = self.read_reply(timeout, stage).await?;
                    replies += 1;
                    tx.on_reply(reply).map_err(|source| {
                        self.broken = true;
                        DeliverError::Protocol {
                            peer: self.peer.to_string(),
                            source,
                        }
                    })?;
                }
                Action::Done(outcome) => {
                    self.transactions += 1;
                    self.needs_rset = outcome.needs_rset;
                    if outcome.closing {
                        // 421: the server is closing the connection.
                        self.broken = true;
                        self.stale = outcome.mail.code == 421;
                    }
                    let peer = self.peer.clone();
                    return Ok(outcome
                        .rcpts
                        .iter()
                        .zip(&outcome.rcpt_stages)
                        .map(|(r, &stage)| RcptResult::from_outcome(&peer, r, stage))
                        .collect());
                }
            }
        }
    }

    /// True when the last transaction found the connection already being
    /// closed by the server (421 to MAIL FROM): nothing was attempted, so
    /// the caller may retry at once on a new connection.
    pub fn was_stale(&self) -> bool {
        self.stale
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
    pub async fn quit(mut self, cfg: &DeliveryConfig) {
        if !self.broken {
            let mut cmd = Vec::new();
            proto::command::quit(&mut cmd);
            if self
                .write(cmd, cfg.timeouts.quit, "after sending QUIT")
                .await
                .is_ok()
            {
                let _ = self
                    .read_reply(cfg.timeouts.quit.min(Duration::from_secs(5)), "after QUIT")
                    .await;
            }
        }
        self.conn.close().await;
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
                    peer: self.peer.to_string(),
                    stage,
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                self.broken = true;
                Err(DeliverError::Timeout {
                    peer: self.peer.to_string(),
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
                        peer: self.peer.to_string(),
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
                        peer: self.peer.to_string(),
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
                        peer: self.peer.to_string(),
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
                        peer: self.peer.to_string(),
                        stage,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::Timeouts;
    use crate::rt::IoBackend;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    fn cfg() -> DeliveryConfig {
        let s = Duration::from_secs(5);
        DeliveryConfig {
            helo_name: "client.test".into(),
            timeouts: Timeouts {
                connect: s,
                helo: s,
                mail: s,
                rcpt: s,
                data_init: s,
                data_xfer: s,
                data_done: s,
                quit: s,
            },
            reuse_count_limit: 0,
            reuse_time_limit: Duration::from_secs(300),
            idle_time_limit: Duration::from_secs(2),
            backend: IoBackend::Epoll,
            dns: crate::config::DnsConfig::default(),
            inet_protocols: crate::config::InetProtocols::All,
            tls_ca_file: None,
            sasl_plaintext: false,
        }
    }

    /// A scripted server on the other end of an in-memory pipe: pipelined
    /// MAIL/RCPT/RCPT/DATA, one recipient refused, the body checked byte
    /// for byte, then QUIT.
    #[test]
    fn pipelined_transaction_over_an_in_memory_pipe() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, server) = tokio::io::duplex(1 << 16);
            let wire = b"Subject: t\r\n\r\n..dot\r\nbody\r\n".to_vec();
            let expect_body = [wire.as_slice(), b".\r\n"].concat();
            let srv = tokio::spawn(async move {
                let mut r = BufReader::new(server);
                r.get_mut()
                    .write_all(b"220 pipe.test ESMTP\r\n")
                    .await
                    .unwrap();
                let mut line = String::new();
                r.read_line(&mut line).await.unwrap();
                assert_eq!(line, "EHLO client.test\r\n");
                r.get_mut()
                    .write_all(b"250-pipe.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                    .await
                    .unwrap();
                let mut cmds = Vec::new();
                for _ in 0..4 {
                    line.clear();
                    r.read_line(&mut line).await.unwrap();
                    cmds.push(line.clone());
                }
                assert_eq!(
                    cmds,
                    [
                        "MAIL FROM:<s@x.test>\r\n",
                        "RCPT TO:<a@y.test>\r\n",
                        "RCPT TO:<b@y.test>\r\n",
                        "DATA\r\n"
                    ]
                );
                r.get_mut()
                    .write_all(
                        b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n354 go\r\n",
                    )
                    .await
                    .unwrap();
                let mut body = vec![0u8; expect_body.len()];
                r.read_exact(&mut body).await.unwrap();
                assert_eq!(body, expect_body);
                r.get_mut()
                    .write_all(b"250 2.0.0 queued\r\n")
                    .await
                    .unwrap();
                line.clear();
                r.read_line(&mut line).await.unwrap();
                assert_eq!(line, "QUIT\r\n");
                r.get_mut().write_all(b"221 bye\r\n").await.unwrap();
            });
            let peer = Peer {
                host: "pipe.test".into(),
                addr: "127.0.0.1:25".parse().unwrap(),
            };
            let c = cfg();
            let mut s = Session::over(Conn::Pipe(client), peer, &c, &Security::default())
                .await
                .unwrap();
            assert!(s.capabilities().pipelining);
            let msg = Outgoing {
                sender: "s@x.test".into(),
                recipients: vec!["a@y.test".into(), "b@y.test".into()],
                wire,
                flags: MessageFlags::default(),
            };
            let results = s.send(&msg, &c).await.unwrap();
            assert!(matches!(results[0], RcptResult::Sent { .. }), "{results:?}");
            assert!(
                matches!(&results[1], RcptResult::Bounced { dsn, .. } if dsn == "5.1.1"),
                "{results:?}"
            );
            assert!(s.reusable(&c));
            s.quit(&c).await;
            srv.await.unwrap();
        });
    }
}
