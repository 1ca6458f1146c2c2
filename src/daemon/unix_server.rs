//! A unix stream socket served by connection threads, as the daemon's local
//! sockets are (`submit.sock`, `campaign.sock`): one thread per connection
//! being served, made when no thread waits and kept for the next one; a
//! bounded number at once (beyond it the client gets a one-line busy answer), each
//! connection answered with the one reply its handler returns, and an
//! orderly stop that removes the socket.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::rt::Handoff;

/// Answers one connection: the bytes to write back before closing it.
pub(super) type Handler = dyn Fn(&mut UnixStream) -> String + Send + Sync;

/// How a socket is served.
pub(super) struct ServerSpec {
    /// The socket's file mode.
    pub mode: u32,
    /// The accept thread's name; connection threads get `NAME-conn`.
    pub name: &'static str,
    /// Connections served at once.
    pub max_connections: usize,
    /// The answer beyond that many.
    pub busy: &'static [u8],
}

/// A running socket server.
pub(super) struct UnixServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UnixServer {
    /// Binds `path` (replacing a stale socket) and serves it.
    pub(super) fn start(
        path: &Path,
        spec: ServerSpec,
        handler: Arc<Handler>,
    ) -> std::io::Result<UnixServer> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(spec.mode))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(spec.name.into())
                .spawn(move || accept_loop(listener, spec, handler, stop))?
        };
        Ok(UnixServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// Stops accepting, waits for the accept thread, removes the socket.
    /// Connections being served finish on their own threads.
    pub(super) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(
    listener: UnixListener,
    spec: ServerSpec,
    handler: Arc<Handler>,
    stop: Arc<AtomicBool>,
) {
    // Connections being served or handed over, and connection threads
    // waiting for one. Threads are made on demand (when none waits) and
    // kept: a sendmail per message would otherwise pay a thread's start
    // and exit each time.
    let open = Arc::new(AtomicUsize::new(0));
    let idle = Arc::new(AtomicUsize::new(0));
    // Connections for waiting connection threads (which sleep at once).
    let handoff = Arc::new(Handoff::<UnixStream>::default());
    let conn_name = format!("{}-conn", spec.name);
    for conn in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let Ok(mut conn) = conn else { continue };
        if open.fetch_add(1, Ordering::AcqRel) >= spec.max_connections {
            open.fetch_sub(1, Ordering::AcqRel);
            let _ = conn.write_all(spec.busy);
            continue;
        }
        // A waiting thread takes it; claimed here, so two connections in
        // a row never count on the same one.
        let claimed = idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if claimed {
            // Closed only after this loop: the connection is taken.
            let _ = handoff.give(conn);
            continue;
        }
        let worker = Worker {
            handoff: Arc::clone(&handoff),
            handler: Arc::clone(&handler),
            open: Arc::clone(&open),
            idle: Arc::clone(&idle),
        };
        let spawned = std::thread::Builder::new()
            .name(conn_name.clone())
            .spawn(move || worker.run(conn));
        if spawned.is_err() {
            open.fetch_sub(1, Ordering::AcqRel);
        }
    }
    // Ends the waiting threads; busy ones end after their connection.
    handoff.close();
}

/// A connection thread: serves its first connection, then waits for the
/// next one the accept thread hands it.
struct Worker {
    handoff: Arc<Handoff<UnixStream>>,
    handler: Arc<Handler>,
    open: Arc<AtomicUsize>,
    idle: Arc<AtomicUsize>,
}

impl Worker {
    fn run(self, first: UnixStream) {
        let mut conn = first;
        loop {
            let answer = (self.handler)(&mut conn);
            let _ = conn.write_all(answer.as_bytes());
            drop(conn);
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.idle.fetch_add(1, Ordering::AcqRel);
            match self.handoff.take() {
                Some(next) => conn = next,
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Connects, and reads the one-line answer.
    fn ask(path: &Path) -> String {
        let mut conn = UnixStream::connect(path).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn one_connection_after_another_is_served_by_the_same_kept_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.sock");
        let server = UnixServer::start(
            &path,
            ServerSpec {
                mode: 0o600,
                name: "test",
                max_connections: 4,
                busy: b"BUSY\n",
            },
            Arc::new(|_conn: &mut UnixStream| format!("{:?}\n", std::thread::current().id())),
        )
        .unwrap();
        let first = ask(&path);
        assert!(first.starts_with("ThreadId("), "{first}");
        for _ in 0..3 {
            // The thread answers, then waits for the next connection; give
            // it the moment between its write and its wait.
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert_eq!(ask(&path), first, "the same connection thread");
        }
        server.stop();
        assert!(!path.exists(), "the socket is removed at stop");
    }
}
