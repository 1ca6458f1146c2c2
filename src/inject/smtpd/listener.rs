//! The SMTP injection listeners: one thread with its own small tokio
//! runtime (never a shard's), an accept loop per `[[listener]]`, a task per
//! connection, connection limits per listener and per client address, and
//! an orderly stop (idle sessions get `421`, a message waiting for its
//! commit still gets its answer).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{ListenerKind, Networks};
use crate::proto::server::SessionParams;

use super::passwd::Users;
use super::{Hooks, SmtpdError};

/// How long a stop waits for sessions to answer their last message.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Failed AUTH attempts of a client are forgotten after this long.
const AUTH_FAILURE_MEMORY: Duration = Duration::from_secs(600);

/// Per-stage timeouts of a session.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Waiting for a command (Postfix `smtpd_timeout`, 300 s).
    pub command: Duration,
    /// Waiting for message data.
    pub data: Duration,
    /// Finishing the TLS handshake after STARTTLS.
    pub tls_handshake: Duration,
}

/// One listener, ready to start.
pub struct ListenerSpec {
    /// Where to listen.
    pub address: SocketAddr,
    /// Relay or submission.
    pub kind: ListenerKind,
    /// The session settings (STARTTLS, AUTH, limits, extensions).
    pub params: Arc<SessionParams>,
    /// The STARTTLS configuration, if offered.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// What all listeners share.
pub struct SmtpdSettings {
    /// The listeners.
    pub listeners: Vec<ListenerSpec>,
    /// Clients that may relay without AUTH (relay listeners only).
    pub mynetworks: Networks,
    /// Submission users, when a password file is configured.
    pub users: Option<Arc<Users>>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Most connections open at once, per listener.
    pub max_connections: usize,
    /// Most connections open at once from one client address.
    pub max_connections_per_client: usize,
}

/// What one listener's connections share.
pub(super) struct Shared {
    pub(super) params: Arc<SessionParams>,
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    /// Empty for submission listeners: AUTH is required there.
    pub(super) mynetworks: Arc<Networks>,
    pub(super) users: Option<Arc<Users>>,
    pub(super) hooks: Arc<Hooks>,
    pub(super) timeouts: Timeouts,
    pub(super) failures: Arc<Mutex<HashMap<IpAddr, (u32, Instant)>>>,
}

impl Shared {
    /// Records an AUTH outcome of `ip`; returns its failures so far
    /// (0 after a success, which forgets them).
    pub(super) fn auth_failures(&self, ip: IpAddr, ok: bool) -> u32 {
        // A poisoned lock only means another session panicked while
        // holding it; the counts stay usable.
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            f.remove(&ip);
            return 0;
        }
        let now = Instant::now();
        f.retain(|_, (_, at)| now.duration_since(*at) < AUTH_FAILURE_MEMORY);
        let e = f.entry(ip).or_insert((0, now));
        e.0 = e.0.saturating_add(1);
        e.1 = now;
        e.0
    }
}

/// The running listeners.
pub struct SmtpdHandle {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    /// The addresses actually bound, in the order of the configuration
    /// (a port 0 gets its real port here).
    pub addresses: Vec<SocketAddr>,
}

impl SmtpdHandle {
    /// Stops accepting, lets sessions answer what they are committing,
    /// says `421` to the others and joins the thread (at most a few
    /// seconds).
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SmtpdHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Binds every listener (failing at once when one cannot be bound) and
/// starts serving on a thread of its own.
pub fn start(settings: SmtpdSettings, hooks: Hooks) -> Result<SmtpdHandle, SmtpdError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SmtpdError::Runtime)?;
    let hooks = Arc::new(hooks);
    let mynetworks = Arc::new(settings.mynetworks);
    let failures = Arc::new(Mutex::new(HashMap::new()));
    let mut bound = Vec::new();
    let mut addresses = Vec::new();
    for spec in settings.listeners {
        let listener = runtime
            .block_on(async { bind(spec.address) })
            .map_err(|source| SmtpdError::Bind {
                address: spec.address,
                source,
            })?;
        addresses.push(listener.local_addr().unwrap_or(spec.address));
        let shared = Arc::new(Shared {
            params: spec.params,
            tls: spec.tls,
            mynetworks: match spec.kind {
                ListenerKind::Relay => Arc::clone(&mynetworks),
                ListenerKind::Submission => Arc::new(Networks::default()),
            },
            users: settings.users.clone(),
            hooks: Arc::clone(&hooks),
            timeouts: settings.timeouts,
            failures: Arc::clone(&failures),
        });
        bound.push((listener, shared));
    }
    let (stop, stop_rx) = watch::channel(false);
    let limits = (
        settings.max_connections,
        settings.max_connections_per_client,
    );
    let thread = std::thread::Builder::new()
        .name("smtpd".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut loops = JoinSet::new();
                for (listener, shared) in bound {
                    loops.spawn(accept_loop(listener, shared, stop_rx.clone(), limits));
                }
                while loops.join_next().await.is_some() {}
            });
        })
        .map_err(SmtpdError::Runtime)?;
    Ok(SmtpdHandle {
        stop,
        thread: Some(thread),
        addresses,
    })
}

/// A listening socket with SO_REUSEADDR (a restart finds the port in
/// TIME_WAIT).
fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// Open connections per client address, shared by one listener's tasks.
type Open = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Accepts connections until `stop`; then waits for its sessions.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    (max_total, max_per_client): (usize, usize),
) {
    let open: Open = Arc::default();
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        while tasks.try_join_next().is_some() {}
        let (mut tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(target: "smtpd", "accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let refusal = {
            let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
            let total: usize = o.values().sum();
            let mine = o.get(&peer.ip()).copied().unwrap_or(0);
            if total >= max_total {
                Some("421 4.7.0 Error: too many connections\r\n".to_string())
            } else if mine >= max_per_client {
                Some(format!(
                    "421 4.7.0 Error: too many connections from {}\r\n",
                    peer.ip()
                ))
            } else {
                *o.entry(peer.ip()).or_insert(0) += 1;
                None
            }
        };
        if let Some(reply) = refusal {
            tracing::warn!(
                target: "smtpd",
                "{}: {}",
                super::conn::client_name(peer),
                reply.trim_end()
            );
            tasks.spawn(async move {
                let _ = tcp.write_all(reply.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
            continue;
        }
        let guard = OpenGuard {
            open: Arc::clone(&open),
            ip: peer.ip(),
        };
        let (shared, stop) = (Arc::clone(&shared), stop.clone());
        tasks.spawn(async move {
            super::conn::serve(tcp, peer, shared, stop).await;
            drop(guard);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
}

/// Counts a connection as open until dropped.
struct OpenGuard {
    open: Open,
    ip: IpAddr,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = o.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                o.remove(&self.ip);
            }
        }
    }
}
