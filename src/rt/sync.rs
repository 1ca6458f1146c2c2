//! The file operation that blocks on the disk, done without blocking the
//! shard's event loop: an io_uring operation (`IORING_OP_FSYNC` with
//! datasync) on the io_uring backend, a blocking-pool thread on epoll.
//! Either way the shard keeps serving other tasks meanwhile.

use std::fs::File;
use std::sync::Arc;

use super::IoBackend;

/// fdatasyncs `file` on `backend`'s terms: makes a segment's writes (its
/// dirty page-cache pages) durable.
pub async fn sync_data(file: Arc<File>, backend: IoBackend) -> std::io::Result<()> {
    match backend {
        #[cfg(not(target_env = "musl"))]
        IoBackend::Uring => {
            let dup = tokio_uring::fs::File::from_std(file.try_clone()?);
            let result = dup.sync_data().await;
            let closed = dup.close().await;
            result.and(closed)
        }
        #[cfg(target_env = "musl")]
        IoBackend::Uring => Err(std::io::Error::from(std::io::ErrorKind::Unsupported)),
        IoBackend::Epoll => tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(std::io::Error::other)?,
    }
}
