//! The socket loop of one connection: read into a reusable 64 KiB buffer,
//! let the session consume it, store accepted messages, write all replies
//! of one read in one write, and switch the stream to TLS after STARTTLS.
//! Everything SMTP is in [`super::session`].

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fastrand::Rng;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::config::{AcceptHook, Accepted, Latency};
use super::dump;
use super::faults::delay;
use super::session::{PendingMessage, Progress, Session, SessionParams};
use super::stats::{OpenConnection, SinkStats};
use crate::rt::tls::ServerStream as Stream;

/// Size of each connection's read buffer.
const READ_BUFFER: usize = 64 * 1024;

/// After the last reply, how long to read and discard what the client
/// still sends, so that closing does not reset the connection before the
/// client has read that reply.
const LINGER: Duration = Duration::from_secs(1);

/// Longest a TLS handshake after STARTTLS may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) params: Arc<SessionParams>,
    pub(crate) stats: Arc<SinkStats>,
    pub(crate) latency: Latency,
    pub(crate) dump_dir: Option<PathBuf>,
    pub(crate) on_accept: Option<AcceptHook>,
    pub(crate) tls: Option<Arc<ServerConfig>>,
}

/// One accepted connection.
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    /// Keeps the connection counted as open until dropped.
    pub(crate) guard: OpenConnection,
    /// Refuse it with 421: it is beyond `max_connections`.
    pub(crate) refuse: bool,
    /// Seeds the fault and latency draws.
    pub(crate) seed: u64,
}

/// Serves one connection until QUIT, an injected disconnect, the client
/// closing, an I/O error or `stop`.
pub(crate) async fn serve(conn: Connection, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let Connection {
        stream,
        guard,
        refuse,
        seed,
    } = conn;
    let io = Io {
        stream: Stream::Plain(stream),
        out: Vec::with_capacity(4096),
        rng: Rng::with_seed(seed.rotate_left(32)),
        latency: shared.latency,
    };
    if let Err(e) = run(io, &shared, refuse, seed, stop).await {
        tracing::debug!(error = %e, "sink: connection ended");
    }
    drop(guard);
}

/// The socket with its output buffer and latency draws.
struct Io {
    stream: Stream,
    out: Vec<u8>,
    rng: Rng,
    latency: Latency,
}

impl Io {
    /// Runs the TLS handshake; the same connection over TLS.
    async fn start_tls(self, config: Arc<ServerConfig>) -> io::Result<Io> {
        let stream = self.stream.start_tls(config).await?;
        Ok(Io { stream, ..self })
    }

    /// Waits the reply latency, then writes the output in one go.
    async fn flush(&mut self, replies: u32) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let wait = delay(self.latency, &mut self.rng, replies);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Flushes, sends FIN, then discards input until the client closes
    /// too, [`LINGER`] passes or the sink stops, so that the last reply is
    /// not lost to a reset.
    async fn close(mut self, replies: u32, stop: &mut watch::Receiver<bool>) -> io::Result<()> {
        self.flush(replies).await?;
        self.stream.shutdown().await?;
        let mut scratch = [0u8; 4096];
        let drain = async {
            while let Ok(n) = self.stream.read(&mut scratch).await {
                if n == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(LINGER, drain) => {}
            _ = stop.wait_for(|stopping| *stopping) => {}
        }
        Ok(())
    }
}

/// What to do after the session consumed a read.
enum Next {
    Read,
    Close,
    StartTls,
}

async fn run(
    mut io: Io,
    shared: &Shared,
    refuse: bool,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    if let Stream::Plain(s) = &io.stream {
        let _ = s.set_nodelay(true);
    }
    if refuse {
        shared.params.too_many_connections(&mut io.out);
        return io.close(1, &mut stop).await;
    }
    let mut session = Session::new(Arc::clone(&shared.params), Rng::with_seed(seed));
    session.greeting(&mut io.out);
    io.flush(session.take_tally().replies).await?;
    let mut buf = vec![0u8; READ_BUFFER];
    let (mut start, mut end) = (0, 0);
    loop {
        let n = tokio::select! {
            read = io.stream.read(&mut buf[end..]) => read?,
            _ = stop.changed() => {
                shared.params.shutting_down(&mut io.out);
                return io.close(1, &mut stop).await;
            }
        };
        if n == 0 {
            return Ok(());
        }
        end += n;
        let next = loop {
            let (used, progress) = session.feed(&buf[start..end], &mut io.out);
            start += used;
            match progress {
                Progress::NeedInput => break Next::Read,
                Progress::Close => break Next::Close,
                Progress::StartTls => break Next::StartTls,
                Progress::Message => {
                    let number = session.pending_message().and_then(|m| store(shared, &m));
                    session.finish_message(number, &mut io.out);
                }
            }
        };
        let tally = session.take_tally();
        shared.stats.add(tally);
        match next {
            Next::Close => return io.close(tally.replies, &mut stop).await,
            Next::Read => io.flush(tally.replies).await?,
            Next::StartTls => {
                io.flush(tally.replies).await?;
                // Whatever the client sent after STARTTLS in plaintext is
                // dropped unread (RFC 3207 section 6, CVE-2011-0411).
                (start, end) = (0, 0);
                let Some(config) = shared.tls.clone() else {
                    return Err(io::Error::other(
                        "sink: STARTTLS without a TLS configuration",
                    ));
                };
                io = tokio::select! {
                    upgraded = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, io.start_tls(config)) => {
                        upgraded.map_err(|_| io::Error::other("TLS handshake timed out"))??
                    }
                    _ = stop.changed() => return Ok(()),
                };
                shared.stats.tls_session();
                session.tls_started();
                continue;
            }
        }
        if start == end {
            (start, end) = (0, 0);
        } else if start > 0 {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        if end == buf.len() {
            // The session leaves at most a command line and its CR (MAX_LINE + 1) or two
            // bytes of message unconsumed, far less than the buffer.
            return Err(io::Error::other(
                "sink: session consumed nothing from a full buffer",
            ));
        }
    }
}

/// Counts, dumps and announces an accepted message; its number, or `None`
/// when it could not be stored.
fn store(shared: &Shared, message: &PendingMessage<'_>) -> Option<u64> {
    let message_id = message.message_id();
    let number = shared.stats.next_number();
    if let Some(dir) = &shared.dump_dir {
        if let Err(e) = dump::write(dir, number, message, message_id.as_deref()) {
            tracing::warn!(dir = %dir.display(), number, error = %e, "sink: cannot dump message");
            return None;
        }
    }
    shared
        .stats
        .accepted(message_id.as_deref(), message.rcpt_to, message.size);
    if let Some(hook) = &shared.on_accept {
        hook(&Accepted {
            number,
            mail_from: message.mail_from,
            rcpt_to: message.rcpt_to,
            size: message.size,
            message_id: message_id.as_deref(),
            head: message.content,
            at: SystemTime::now(),
            tls: message.tls,
            auth: message.auth,
        });
    }
    Some(number)
}
