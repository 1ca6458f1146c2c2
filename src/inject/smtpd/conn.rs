//! One SMTP injection connection: the socket loop around the shared
//! sans-IO server session ([`crate::proto::server`]). Reads into a reusable
//! buffer, lets the session consume it, writes all replies of one read in
//! one write, runs STARTTLS, checks AUTH credentials off the runtime's
//! thread, and hands each message to the queue: `250` is written only once
//! the shard's group commit holding the message is done (its ack comes
//! back on this connection's own channel).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::model::{Ack, AckSender, Source};
use crate::obs::metrics::Direction;
use crate::proto::server::{Progress, Reply, Session, Stage, Verb};
use crate::rt::tls::ServerStream;

use super::listener::Shared;
use super::relay::RelayPolicy;
use super::{Incoming, LocalMessage, Offered};

/// Size of each connection's read buffer.
const READ_BUFFER: usize = 64 * 1024;

/// How long to wait, between offers, while the pickup ring is full.
const RING_FULL_NAP: Duration = Duration::from_millis(2);

/// How far a read's deadline may lie beyond its stage's timeout. Each
/// connection keeps one timer and moves it only when it would fire too
/// early (or more than twice this too late): a new timer per read, four
/// per message from a client that does not pipeline, cost the listener
/// about 7 % of its CPU in tokio's timer wheel. A timeout thus fires
/// between its configured time and two seconds after.
const DEADLINE_SLACK: Duration = Duration::from_secs(1);

/// Moves `deadline` so that it fires between `timeout` and `timeout` + 2 ×
/// [`DEADLINE_SLACK`] from now; leaves it alone when it already does.
fn keep_deadline(deadline: std::pin::Pin<&mut tokio::time::Sleep>, timeout: Duration) {
    let want = tokio::time::Instant::now() + timeout;
    let at = deadline.deadline();
    if at < want || at > want + 2 * DEADLINE_SLACK {
        deadline.reset(want + DEADLINE_SLACK);
    }
}

/// `host[ip]` as Postfix names a client without a reverse DNS name.
pub(super) fn client_name(peer: SocketAddr) -> String {
    format!("unknown[{}]", peer.ip())
}

/// Serves one connection until QUIT, the client closing, a timeout, an
/// I/O error or `stop` (then `421` at the next command).
pub(super) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let name = client_name(peer);
    tracing::info!(target: "smtpd", "connect from {name}");
    let mut session = Session::new(Arc::clone(&shared.params), Some(peer.ip()));
    let mut conn = Conn {
        stream: ServerStream::Plain(tcp),
        out: Vec::with_capacity(4096),
        buf: vec![0; READ_BUFFER].into_boxed_slice(),
        start: 0,
        end: 0,
    };
    let mut policy = RelayPolicy {
        mynetworks: Arc::clone(&shared.mynetworks),
        client_name: name.clone(),
        local: shared.hooks.local.clone(),
    };
    let (ack_tx, mut acks) = mpsc::unbounded_channel();
    let ack_to = AckSender(ack_tx);
    let mut next_id = 0u64;
    let deadline = tokio::time::sleep(shared.timeouts.command + DEADLINE_SLACK);
    tokio::pin!(deadline);
    let result = async {
        // A client that talks before the greeting (a spammer's shortcut,
        // or a smuggling attempt) is refused by the session: read what is
        // already there without waiting.
        if let ServerStream::Plain(tcp) = &conn.stream {
            if let Ok(n) = tcp.try_read(&mut conn.buf) {
                conn.end = n;
            }
        }
        if conn.end == 0 {
            session.greeting(&mut conn.out);
        }
        loop {
            let (used, progress) =
                session.feed(&conn.buf[conn.start..conn.end], &mut conn.out, &mut policy);
            conn.start += used;
            match progress {
                Progress::NeedInput => {
                    conn.flush().await?;
                    if *stop.borrow() {
                        session.shutting_down(&mut conn.out);
                        conn.flush().await?;
                        return conn.stream.shutdown().await;
                    }
                    let timeout = match session.stage() {
                        Stage::Data => shared.timeouts.data,
                        _ => shared.timeouts.command,
                    };
                    keep_deadline(deadline.as_mut(), timeout);
                    let n = tokio::select! {
                        r = conn.read() => r?,
                        _ = &mut deadline => {
                            let after = stage_name(&session);
                            session.timeout(&mut conn.out);
                            conn.flush().await?;
                            tracing::info!(target: "smtpd", "timeout after {after} from {name}");
                            return conn.stream.shutdown().await;
                        }
                        _ = stop.changed() => continue,
                    };
                    if n == 0 {
                        if session.stage() != Stage::Closed {
                            tracing::info!(target: "smtpd", "lost connection after {} from {name}", stage_name(&session));
                        }
                        return Ok(());
                    }
                }
                Progress::Message => {
                    next_id += 1;
                    let summary = conn.stream.tls_summary();
                    let reply = submit(
                        &mut session,
                        &shared,
                        &name,
                        summary.as_deref(),
                        next_id,
                        &ack_to,
                        &mut acks,
                    )
                    .await;
                    let id;
                    let result = match &reply {
                        Ok(q) => {
                            id = q.clone();
                            Ok(id.as_str())
                        }
                        Err(r) => Err(r.clone()),
                    };
                    session.finish_message(result, &mut conn.out);
                }
                Progress::Auth => {
                    let ok = check_auth(&session, &shared, peer).await;
                    session.auth_result(ok, &mut conn.out);
                    if ok {
                        if let (Some(m), Some(u)) = (session.auth_mechanism(), session.auth_user()) {
                            tracing::debug!(target: "smtpd", "{name}: authenticated as {u} ({})", m.name());
                        }
                    }
                }
                Progress::StartTls => {
                    conn.flush().await?;
                    let Some(config) = shared.tls.clone() else {
                        return conn.stream.shutdown().await;
                    };
                    // RFC 3207 section 6: nothing read before the
                    // handshake counts.
                    (conn.start, conn.end) = (0, 0);
                    let stream = std::mem::replace(&mut conn.stream, ServerStream::Closed);
                    match tokio::time::timeout(shared.timeouts.tls_handshake, stream.start_tls(config)).await {
                        Ok(Ok(tls)) => {
                            if let Some(summary) = tls.tls_summary() {
                                tracing::info!(target: "smtpd", "Anonymous TLS connection established from {name}: {summary}");
                                if let Some(c) = &shared.hooks.tls_counters {
                                    let version = summary.split(' ').next().unwrap_or("TLS");
                                    c.handshake(Direction::Inbound, version);
                                }
                            }
                            conn.stream = tls;
                            session.tls_started();
                        }
                        Ok(Err(e)) => {
                            tracing::info!(target: "smtpd", "SSL_accept error from {name}: {e}");
                            if let Some(c) = &shared.hooks.tls_counters {
                                c.failed(Direction::Inbound);
                            }
                            return Ok(());
                        }
                        Err(_) => {
                            tracing::info!(target: "smtpd", "timeout after STARTTLS from {name}");
                            if let Some(c) = &shared.hooks.tls_counters {
                                c.failed(Direction::Inbound);
                            }
                            return Ok(());
                        }
                    }
                }
                Progress::Close => {
                    conn.flush().await?;
                    return conn.stream.shutdown().await;
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(target: "smtpd", "{name}: {e}");
    }
    tracing::info!(target: "smtpd", "disconnect from {name} {}", session.command_counts());
}

/// The connection's socket and buffers.
struct Conn {
    stream: ServerStream,
    out: Vec<u8>,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Conn {
    /// Writes the replies gathered so far in one write.
    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Moves the unconsumed bytes to the front and reads more after them.
    async fn read(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // The session never leaves a full buffer unconsumed (it
            // discards overlong lines); this is an invariant breach.
            return Err(io::Error::other("read buffer full"));
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

/// What Postfix's `timeout after X` / `lost connection after X` lines
/// name: the last command (`END-OF-MESSAGE` once a message was answered,
/// `CONNECT` before any command).
fn stage_name(session: &Session) -> &'static str {
    let last = session.command_counts().last();
    match (session.stage(), last) {
        (Stage::AuthResponse, _) => "AUTH",
        (Stage::Data, Some(verb)) => verb.command(),
        (Stage::Data, None) => "DATA",
        (_, Some(Verb::Data)) => "END-OF-MESSAGE",
        (_, Some(verb)) => verb.command(),
        (_, None) => "CONNECT",
    }
}

/// Checks the pending AUTH credentials against the password file, on a
/// blocking thread (Argon2 takes tens of milliseconds). A client whose
/// attempts failed before waits longer for each answer.
async fn check_auth(session: &Session, shared: &Arc<Shared>, peer: SocketAddr) -> bool {
    let Some(req) = session.pending_auth() else {
        return false;
    };
    let (user, password) = (req.user.to_string(), req.password.to_vec());
    let ok = match shared.users.clone() {
        Some(users) => tokio::task::spawn_blocking(move || users.verify(&user, &password))
            .await
            .unwrap_or(false),
        None => false,
    };
    let failures = shared.auth_failures(peer.ip(), ok);
    if !ok {
        tracing::warn!(
            target: "smtpd",
            "{}: SASL {} authentication failed ({failures} failures from this client)",
            client_name(peer),
            req.mechanism.name()
        );
        // Slow guessing down: half a second per earlier failure, at most 5 s.
        let delay = Duration::from_millis(500 * u64::from(failures.min(10)));
        tokio::time::sleep(delay).await;
    }
    ok
}

/// Turns the pending message into a submission, offers it to the shards
/// and waits for the commit. `Ok(queue ID)`, or the reply to send. A
/// message for local addresses (campaign bounces and unsubscribes) is
/// handed to the local hook instead: `Ok(what it did)`.
async fn submit(
    session: &mut Session,
    shared: &Arc<Shared>,
    name: &str,
    tls_summary: Option<&str>,
    id: u64,
    ack_to: &AckSender,
    acks: &mut mpsc::UnboundedReceiver<Ack>,
) -> Result<String, Reply> {
    let tls_summary = tls_summary.map(str::to_string);
    let content = session.take_content();
    let Some(m) = session.pending_message() else {
        return Err(Reply::new(451, "4.3.0", "Error: no message"));
    };
    if let Some(local) = shared.hooks.local.clone() {
        if !m.recipients.is_empty() && m.recipients.iter().all(|r| local.is_local(r)) {
            let message = LocalMessage {
                content,
                sender: m.sender.to_string(),
                recipients: m.recipients.to_vec(),
                client_name: name.to_string(),
            };
            let done = tokio::task::spawn_blocking(move || local.deliver(&message)).await;
            return match done {
                Ok(Ok(what)) => Ok(what),
                Ok(Err(e)) => {
                    tracing::warn!(target: "smtpd", "NOQUEUE: reject: END-OF-MESSAGE from {name}: {e}");
                    Err(e.reply())
                }
                Err(_) => Err(Reply::new(451, "4.3.0", "Error: local delivery failed")),
            };
        }
    }
    let incoming = Incoming {
        content: &content,
        sender: m.sender,
        recipients: m.recipients,
        dsn: m.dsn(),
        client_name: name,
        helo: m.helo,
        tls: session.is_tls(),
        tls_summary,
        auth_user: m.auth_user,
        source: Source::Reply {
            id,
            to: ack_to.clone(),
        },
    };
    let mut sub = match (shared.hooks.prepare)(incoming) {
        Ok(sub) => Box::new(sub),
        Err(e) => {
            tracing::warn!(target: "smtpd", "NOQUEUE: reject: END-OF-MESSAGE from {name}: {e}");
            return Err(e.reply());
        }
    };
    loop {
        match (shared.hooks.offer)(sub) {
            Offered::Yes => break,
            Offered::Full(back) => {
                sub = back;
                tokio::time::sleep(RING_FULL_NAP).await;
            }
            Offered::Closed => return Err(Reply::new(421, "4.3.2", "Service shutting down")),
        }
    }
    loop {
        let Some(ack) = acks.recv().await else {
            return Err(Reply::new(451, "4.3.0", "Error: queue file write error"));
        };
        if !matches!(ack.source, Source::Reply { id: got, .. } if got == id) {
            continue;
        }
        return match ack.result {
            Ok(queue_id) => {
                let sasl = auth_fields(session).unwrap_or_default();
                tracing::info!(target: "smtpd", "{queue_id}: client={name}{sasl}");
                Ok(queue_id.to_string())
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(target: "smtpd", "{name}: not queued: {e}");
                Err(Reply::new(451, "4.3.0", "Error: queue file write error"))
            }
            Err(e) => {
                tracing::warn!(target: "smtpd", "{name}: not queued: {e}");
                Err(Reply::new(554, "5.3.0", format!("Error: {e}")))
            }
        };
    }
}

/// `, sasl_method=PLAIN, sasl_username=u` for an authenticated session.
fn auth_fields(session: &Session) -> Option<String> {
    let user = session.auth_user()?;
    let method = session
        .auth_mechanism()
        .map(|m| m.name())
        .unwrap_or("PLAIN");
    Some(format!(", sasl_method={method}, sasl_username={user}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test]
    async fn a_read_deadline_moves_only_when_out_of_its_window() {
        let start = Instant::now();
        let deadline = tokio::time::sleep_until(start + Duration::from_secs(3));
        tokio::pin!(deadline);
        let within = |d: &tokio::time::Sleep, lo: u64, hi: u64| {
            let from_start = d.deadline() - start;
            from_start >= Duration::from_secs(lo) && from_start <= Duration::from_secs(hi)
        };
        // 3 s away serves a 2 s timeout (fires within 2..4 s): kept.
        keep_deadline(deadline.as_mut(), Duration::from_secs(2));
        assert_eq!(deadline.deadline(), start + Duration::from_secs(3));
        // Too early for a 5 s timeout: moved to about 6 s.
        keep_deadline(deadline.as_mut(), Duration::from_secs(5));
        assert!(within(&deadline, 6, 7), "{:?}", deadline.deadline() - start);
        // Far too late for a 1 s timeout: brought back to about 2 s.
        keep_deadline(deadline.as_mut(), Duration::from_secs(1));
        assert!(within(&deadline, 2, 3), "{:?}", deadline.deadline() - start);
    }
}
