//! Starting the sink on its own thread and tokio runtime, the accept loop,
//! and the handle that reads the counters and stops it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fastrand::Rng;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::config::SinkConfig;
use super::conn::{self, Connection, Shared};
use super::session::SessionParams;
use super::stats::{SinkSnapshot, SinkStats};
use super::SinkError;

/// Listen backlog: a benchmark opens hundreds of connections at once.
const BACKLOG: u32 = 1024;

/// How long open connections get to close after a stop before their tasks
/// are cancelled.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A running sink. Dropping it stops the sink as [`SinkHandle::shutdown`]
/// does.
#[derive(Debug)]
pub struct SinkHandle {
    /// The address the sink listens on (with the actual port when port 0
    /// was asked for).
    pub local_addr: SocketAddr,
    stats: Arc<SinkStats>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts a sink on its own thread with its own tokio runtime. Returns once
/// the socket is listening: connections made after this are accepted.
pub fn start(config: SinkConfig) -> Result<SinkHandle, SinkError> {
    config.validate()?;
    if let Some(dir) = &config.dump_dir {
        std::fs::create_dir_all(dir).map_err(|source| SinkError::DumpDir {
            path: dir.clone(),
            source,
        })?;
    }
    let runtime = build_runtime(config.threads).map_err(SinkError::Runtime)?;
    let bound = {
        let _context = runtime.enter();
        listen(config.listen)
    };
    let bind_error = |source| SinkError::Bind {
        addr: config.listen,
        source,
    };
    let listener = bound.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let stats = Arc::new(SinkStats::default());
    let shared = Arc::new(Shared {
        params: Arc::new(SessionParams::new(&config)),
        stats: Arc::clone(&stats),
        latency: config.latency,
        dump_dir: config.dump_dir.clone(),
        on_accept: config.on_accept.clone(),
        tls: config.tls.clone(),
    });
    let (stop, stopped) = watch::channel(false);
    let seed = config.seed.unwrap_or_else(|| fastrand::u64(..));
    let max_connections = config.max_connections;
    let thread = std::thread::Builder::new()
        .name("ringmail-sink".into())
        .spawn(move || {
            runtime.block_on(accept_loop(
                listener,
                shared,
                stopped,
                seed,
                max_connections,
            ));
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(SinkError::Runtime)?;
    tracing::info!(%local_addr, "sink: listening");
    Ok(SinkHandle {
        local_addr,
        stats,
        stop,
        thread: Some(thread),
    })
}

fn build_runtime(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("ringmail-sink-worker")
            .enable_all()
            .build()
    }
}

/// Binds and listens (inside a runtime context).
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

enum Event {
    Stop,
    Accepted(io::Result<tokio::net::TcpStream>),
    Reaped,
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    seed: u64,
    max_connections: Option<usize>,
) {
    let mut seeds = Rng::with_seed(seed);
    let mut tasks = JoinSet::new();
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.changed() => Event::Stop,
            accepted = listener.accept() => Event::Accepted(accepted.map(|(s, _)| s)),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => Event::Reaped,
        };
        match event {
            Event::Stop => break,
            Event::Reaped => {}
            Event::Accepted(Ok(stream)) => {
                let (mut guard, serving) = shared.stats.open();
                let refuse = max_connections.is_some_and(|max| serving > max as u64);
                if refuse {
                    guard.refuse();
                } else {
                    shared.stats.served(serving);
                }
                let conn = Connection {
                    stream,
                    guard,
                    refuse,
                    seed: seeds.u64(..),
                };
                tasks.spawn(conn::serve(conn, Arc::clone(&shared), stop.clone()));
            }
            Event::Accepted(Err(e)) => {
                // Out of file descriptors and the like: wait for
                // connections to close rather than spin.
                tracing::warn!(error = %e, "sink: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    drop(listener);
    // Every connection saw the same stop and is closing.
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(STOP_GRACE, drain).await.is_err() {
        tasks.shutdown().await;
    }
}

impl SinkHandle {
    /// The counters now.
    pub fn stats(&self) -> SinkSnapshot {
        self.stats.snapshot()
    }

    /// The live counters, to keep after the handle is gone or to poll
    /// cheaply.
    pub fn counters(&self) -> Arc<SinkStats> {
        Arc::clone(&self.stats)
    }

    /// How many accepted messages carried each Message-ID.
    pub fn message_id_counts(&self) -> HashMap<String, u32> {
        self.stats.message_id_counts()
    }

    /// Polls the counters every 5 ms until `done` holds or `timeout`
    /// passes; returns the last snapshot and whether `done` held.
    pub fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&SinkSnapshot) -> bool,
    ) -> (SinkSnapshot, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let snap = self.stats();
            if done(&snap) {
                return (snap, true);
            }
            if Instant::now() >= deadline {
                return (snap, false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops accepting, closes open connections (with `421 4.3.2`), joins
    /// the sink's thread and returns the final counters.
    pub fn shutdown(mut self) -> SinkSnapshot {
        self.stop_and_join();
        self.stats()
    }

    fn stop_and_join(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("sink: the sink thread panicked");
            }
        }
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
