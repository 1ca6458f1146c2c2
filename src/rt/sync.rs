//! fdatasync without blocking the shard's event loop: an io_uring
//! `IORING_OP_FSYNC` (datasync) on the io_uring backend, a blocking-pool
//! thread on epoll. Either way the shard keeps serving other tasks while
//! the disk flushes.

use std::fs::File;
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
