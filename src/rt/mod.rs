//! The thread-per-core runtime: choosing io_uring or epoll once at start,
//! running each shard on its own pinned thread with a single-threaded
//! runtime, and the few I/O operations the shards need from it.
//!
//! Shard code is ordinary `async` code using tokio's timers and sync
//! primitives; it runs unchanged on tokio-uring (which is tokio's
//! current-thread runtime plus an io_uring driver) and on plain tokio.
//! Futures need not be `Send`: a shard owns its state.

mod handoff;
mod sync;
pub mod sync_policy;
pub mod tls;
mod transport;

use std::future::Future;
use std::thread::JoinHandle;

use crate::config::IoBackendChoice;

pub use handoff::Handoff;
pub use sync::{forget_closed_files, sync_data};
pub use tls::{client_config, TlsError, TlsInfo, TlsLevel, Trust};
pub use transport::Conn;

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum RtError {
    /// The thread could not be started.
    #[error("cannot start shard thread {index}: {source}")]
    Spawn {
        /// The shard.
        index: usize,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Neither runtime could be built.
    #[error("cannot build the shard runtime: {0}")]
    Build(std::io::Error),
}

impl RtError {
    /// Thread or runtime creation may work later (resource limits).
    pub fn is_transient(&self) -> bool {
        true
    }
}

/// The I/O backend the shards actually run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoBackend {
    /// tokio-uring on io_uring.
    Uring,
    /// Plain tokio on epoll.
    Epoll,
}

impl IoBackend {
    /// The name used in logs, `ringmail bench` and docs.
    pub fn name(self) -> &'static str {
        match self {
            IoBackend::Uring => "io_uring",
            IoBackend::Epoll => "epoll",
        }
    }
}

/// Picks the backend for `choice`, probing io_uring once. When io_uring is
/// refused (EPERM, ENOSYS, ENOMEM: container seccomp profiles often forbid
/// `io_uring_setup`), says why in one log line and uses epoll.
pub fn choose_backend(choice: IoBackendChoice) -> IoBackend {
    if choice == IoBackendChoice::Epoll {
        return IoBackend::Epoll;
    }
    match io_uring::IoUring::new(8) {
        Ok(_) => IoBackend::Uring,
        Err(e) => {
            tracing::warn!(target: "master", "io_uring unavailable ({e}); using epoll");
            IoBackend::Epoll
        }
    }
}

/// A tokio-uring runtime whose ring completes network operations
/// cooperatively: with `IORING_SETUP_COOP_TASKRUN` a completion does not
/// interrupt the running shard thread with an inter-processor interrupt and
/// a signal-like detour; it is delivered at the shard's next system call
/// (which comes soon: the shard enters the ring every loop), or wakes the
/// shard if it sleeps. `IORING_SETUP_SINGLE_ISSUER` tells the kernel only
/// this thread submits, which is true: one ring per shard thread. Kernels
/// without these flags (before 6.0) get a ring with default flags.
#[cfg(not(target_env = "musl"))]
fn uring_runtime() -> std::io::Result<tokio_uring::Runtime> {
    let mut ring = tokio_uring::uring_builder();
    ring.setup_coop_taskrun().setup_single_issuer();
    match tokio_uring::Runtime::new(tokio_uring::builder().uring_builder(&ring)) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            tokio_uring::Runtime::new(&tokio_uring::builder())
        }
        other => other,
    }
}

/// musl builds carry no tokio-uring (it does not build there; they exist
/// for the static sendmail command): every shard falls back to epoll.
#[cfg(target_env = "musl")]
fn uring_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Runs `make()`'s future to completion on the current thread with
/// `backend`'s runtime. If tokio-uring's runtime cannot be built (for example
/// locked-memory limits), falls back to epoll and says so. Returns the
/// backend actually used with the future's output.
pub fn block_on<F, Fut>(backend: IoBackend, make: F) -> Result<(IoBackend, Fut::Output), RtError>
where
    F: FnOnce(IoBackend) -> Fut,
    Fut: Future,
{
    if backend == IoBackend::Uring {
        match uring_runtime() {
            Ok(rt) => return Ok((IoBackend::Uring, rt.block_on(make(IoBackend::Uring)))),
            Err(e) => {
                tracing::warn!(target: "master", "cannot start an io_uring runtime ({e}); this shard uses epoll");
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RtError::Build)?;
    let local = tokio::task::LocalSet::new();
    Ok((
        IoBackend::Epoll,
        local.block_on(&rt, make(IoBackend::Epoll)),
    ))
}

/// Starts shard thread `index`, pinned to a core (`index` modulo the number
/// of cores), running `body` on it.
pub fn spawn_pinned<T: Send + 'static>(
    index: usize,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, RtError> {
    std::thread::Builder::new()
        .name(format!("shard-{index}"))
        .spawn(move || {
            if let Some(cores) = core_affinity::get_core_ids() {
                if !cores.is_empty() {
                    core_affinity::set_for_current(cores[index % cores.len()]);
                }
            }
            body()
        })
        .map_err(|source| RtError::Spawn { index, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_run_shard_code_and_sync_files() {
        for choice in [IoBackendChoice::Auto, IoBackendChoice::Epoll] {
            let backend = choose_backend(choice);
            let dir = tempfile::tempdir().unwrap();
            let file = std::sync::Arc::new(std::fs::File::create(dir.path().join("f")).unwrap());
            let (used, out) = block_on(backend, |b| async move {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                sync_data(file, b, false).await.map(|()| 7)
            })
            .unwrap();
            assert_eq!(out.unwrap(), 7);
            if choice == IoBackendChoice::Epoll {
                assert_eq!(used, IoBackend::Epoll);
            }
        }
    }
}
