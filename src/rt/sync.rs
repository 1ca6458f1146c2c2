//! The file operation that blocks on the disk: on the shard's own thread
//! while the disk answers fast ([`super::sync_policy`]), otherwise without
//! blocking the shard's event loop: an io_uring operation
//! (`IORING_OP_FSYNC` with datasync) on the io_uring backend, a
//! blocking-pool thread on epoll, so the shard keeps serving other tasks
//! meanwhile.
//!
//! An io_uring operation needs the file as tokio-uring's own handle, which
//! owns its descriptor. Each shard thread keeps one such handle (a
//! duplicate descriptor) per segment file it has synced, for as long as the
//! segment exists: a commit then costs the fsync operation alone, where
//! duplicating and closing a descriptor per commit cost an `fcntl` and an
//! io_uring close operation (with its own completion and wake-up) each
//! time. [`forget_closed_files`] lets go of the handles of segments that
//! are gone, so a deleted segment's disk space is not held.

use std::cell::Cell;
use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use super::sync_policy::SyncPolicy;
use super::IoBackend;

thread_local! {
    /// This shard thread's choice of where its fdatasyncs run.
    static POLICY: Cell<SyncPolicy> = Cell::new(SyncPolicy::default());
}

/// fdatasyncs `file` on `backend`'s terms: makes a segment's writes (its
/// dirty page-cache pages) durable. `small`: the caller wrote little since
/// the last sync, so the sync may run on this thread when the disk answers
/// fast.
pub async fn sync_data(file: Arc<File>, backend: IoBackend, small: bool) -> std::io::Result<()> {
    let mut policy = POLICY.get();
    let inline = small && policy.next_inline();
    if inline {
        let began = Instant::now();
        let synced = file.sync_data();
        policy.inline_took(began.elapsed());
        POLICY.set(policy);
        return synced;
    }
    POLICY.set(policy);
    match backend {
        #[cfg(not(target_env = "musl"))]
        IoBackend::Uring => ring_files::handle(&file)?.sync_data().await,
        #[cfg(target_env = "musl")]
        IoBackend::Uring => Err(std::io::Error::from(std::io::ErrorKind::Unsupported)),
        IoBackend::Epoll => tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(std::io::Error::other)?,
    }
}

/// Closes this thread's io_uring handles of files nobody else holds any
/// more (segments deleted since). Cheap: the shard loop calls it every
/// turn.
pub fn forget_closed_files() {
    #[cfg(not(target_env = "musl"))]
    ring_files::prune();
}

#[cfg(not(target_env = "musl"))]
mod ring_files {
    use std::cell::RefCell;
    use std::fs::File;
    use std::rc::Rc;
    use std::sync::{Arc, Weak};

    thread_local! {
        /// This thread's io_uring handles, each beside the file it
        /// duplicates (weakly: the handle must not keep a segment alive).
        static HANDLES: RefCell<Vec<(Weak<File>, Rc<tokio_uring::fs::File>)>> =
            const { RefCell::new(Vec::new()) };
    }

    /// The handle of `file`, made (by duplicating its descriptor) on
    /// first use.
    pub(super) fn handle(file: &Arc<File>) -> std::io::Result<Rc<tokio_uring::fs::File>> {
        HANDLES.with(|handles| {
            let mut handles = handles.borrow_mut();
            // Dropped files first: a new file may sit at a freed one's
            // address.
            handles.retain(|(f, _)| f.strong_count() > 0);
            if let Some((_, h)) = handles
                .iter()
                .find(|(f, _)| std::ptr::eq(f.as_ptr(), Arc::as_ptr(file)))
            {
                return Ok(Rc::clone(h));
            }
            let h = Rc::new(tokio_uring::fs::File::from_std(file.try_clone()?));
            handles.push((Arc::downgrade(file), Rc::clone(&h)));
            Ok(h)
        })
    }

    /// Drops (closing their descriptors) the handles of dropped files.
    pub(super) fn prune() {
        HANDLES.with(|handles| {
            if let Ok(mut handles) = handles.try_borrow_mut() {
                handles.retain(|(f, _)| f.strong_count() > 0);
            }
        });
    }

    /// How many handles this thread holds (tests).
    #[cfg(test)]
    pub(super) fn count() -> usize {
        HANDLES.with(|handles| handles.borrow().len())
    }
}

#[cfg(all(test, not(target_env = "musl")))]
mod tests {
    use super::*;

    /// Descriptors of this process open on `path`.
    fn open_on(path: &std::path::Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target == path)
            .count()
    }

    #[test]
    fn one_ring_handle_per_file_closed_once_the_file_is_gone() {
        if super::super::choose_backend(crate::config::IoBackendChoice::Auto) != IoBackend::Uring {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let file = Arc::new(File::create(&path).unwrap());
        let rt = tokio_uring::Runtime::new(&tokio_uring::builder()).unwrap();
        POLICY.set(SyncPolicy::always_offload());
        rt.block_on(async {
            for _ in 0..3 {
                sync_data(Arc::clone(&file), IoBackend::Uring, true)
                    .await
                    .unwrap();
            }
        });
        assert_eq!(ring_files::count(), 1, "one handle, kept across commits");
        assert_eq!(open_on(&path), 2, "the file and its one duplicate");
        drop(file);
        assert_eq!(
            open_on(&path),
            1,
            "the duplicate outlives the file until pruned"
        );
        forget_closed_files();
        assert_eq!(ring_files::count(), 0);
        assert_eq!(open_on(&path), 0, "a deleted segment's space is not held");
    }

    #[test]
    fn a_fast_disk_is_synced_on_the_calling_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let file = Arc::new(File::create(&path).unwrap());
        POLICY.set(SyncPolicy::default());
        // No runtime at all: an fdatasync handed off would need one (a
        // tokio blocking pool or an io_uring driver) and panic without.
        let synced = std::pin::pin!(sync_data(Arc::clone(&file), IoBackend::Epoll, true));
        struct Nothing;
        impl std::task::Wake for Nothing {
            fn wake(self: Arc<Self>) {}
        }
        let waker = std::task::Waker::from(Arc::new(Nothing));
        let mut cx = std::task::Context::from_waker(&waker);
        let polled = std::future::Future::poll(synced, &mut cx);
        assert!(
            matches!(polled, std::task::Poll::Ready(Ok(()))),
            "{polled:?}"
        );
    }
}
