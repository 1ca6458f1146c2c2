//! File operations that may block on the disk, done without blocking the
//! shard's event loop: io_uring operations (`IORING_OP_FSYNC` with
//! datasync, `IORING_OP_UNLINKAT`) on the io_uring backend, a blocking-pool
//! thread on epoll. Either way the shard keeps serving other tasks, and
//! many such operations can be in flight at once.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::IoBackend;

/// fdatasyncs `file` on `backend`'s terms. A memory-mapped segment's dirty
/// pages belong to the file's page cache, so this makes writes done through
/// the mapping durable too.
pub async fn sync_data(file: Arc<File>, backend: IoBackend) -> std::io::Result<()> {
    match backend {
        IoBackend::Uring => {
            let dup = tokio_uring::fs::File::from_std(file.try_clone()?);
            let result = dup.sync_data().await;
            let closed = dup.close().await;
            result.and(closed)
        }
        IoBackend::Epoll => tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(std::io::Error::other)?,
    }
}

/// Unlinks `path`. On file systems mounted with `discard`, an unlink can
/// wait for the device; in flight concurrently, many of them overlap.
pub async fn remove_file(path: PathBuf, backend: IoBackend) -> std::io::Result<()> {
    match backend {
        IoBackend::Uring => tokio_uring::fs::remove_file(&path).await,
        IoBackend::Epoll => tokio::task::spawn_blocking(move || std::fs::remove_file(path))
            .await
            .map_err(std::io::Error::other)?,
    }
}
