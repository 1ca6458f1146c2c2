//! Unlinks spool files whose messages are durably queued, on a small pool
//! of threads owned by pickup.
//!
//! On a file system mounted with `discard` (as many cloud disks are), an
//! unlink frees the file's blocks with a discard request and waits for the
//! device, so one thread unlinks only a few thousand files a second; many
//! unlinks in flight overlap those waits. They used to be io_uring
//! operations of the shard that committed the message, which woke the shard
//! once per file for the completion: a context switch per message on the
//! thread that also runs SMTP. Here the shard only acknowledges; pickup
//! hands the committed files, a few at a time, to these threads and
//! collects the results when it next looks, so no thread is woken per file
//! just to be told.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::rt::Handoff;

/// Threads that unlink by default (`pickup_unlink_threads`; each waits on
/// the device for one file at a time).
pub const UNLINK_THREADS: usize = 16;

/// Most files handed to one thread at once: small enough that the threads
/// share a burst, large enough that a thread is not woken per file.
const CHUNK: usize = 8;

/// What became of one file handed to the unlinker.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnlinkOutcome {
    /// The name is gone (unlinked now, or already gone).
    Removed,
    /// Another file has been put under the name since the file was read
    /// (renamed over it, which removed the file that was read): the name
    /// is left alone, so the new file is read by a later scan.
    Replaced,
    /// The unlink failed: why.
    Failed(String),
}

/// The outcome of one unlink, with the path it was for.
pub type Unlinked = (PathBuf, UnlinkOutcome);

/// The device and inode numbers of a file as it was read.
pub type Inode = (u64, u64);

/// A file to unlink: the directory it was read from, open, its path, and
/// the device and inode it had when read (if known). The name is removed
/// relative to that directory (`unlinkat`), which spares the kernel a walk
/// of the whole path per file and removes the entry that was read even if
/// the directory was renamed meanwhile; and only while it still names that
/// inode (a stat just before the unlink), so that a new file renamed over
/// the name after the read is not deleted unread.
pub type Doomed = (Arc<OwnedFd>, PathBuf, Option<Inode>);

/// The pool: queue paths with [`Unlinker::push`], send them off with
/// [`Unlinker::flush`], collect outcomes with [`Unlinker::try_done`].
pub struct Unlinker {
    /// Chunks for the threads (which sleep while there is none).
    jobs: Option<Arc<Handoff<Vec<Doomed>>>>,
    done_rx: Receiver<Vec<Unlinked>>,
    done_tx: Sender<Vec<Unlinked>>,
    threads: Vec<JoinHandle<()>>,
    pending: Vec<Doomed>,
    /// Paths sent to the threads whose outcome has not been collected.
    outstanding: usize,
}

impl Unlinker {
    /// A pool of `threads` threads. With 0 threads, or when threads cannot
    /// be started, [`Unlinker::flush`] unlinks on the caller's thread.
    pub fn new(threads: usize) -> Unlinker {
        let jobs = Arc::new(Handoff::<Vec<Doomed>>::default());
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Vec<Unlinked>>();
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let jobs = Arc::clone(&jobs);
            let done = done_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("unlink-{i}"))
                .spawn(move || {
                    while let Some(chunk) = jobs.take() {
                        let outcomes = chunk.into_iter().map(unlink_one).collect();
                        if done.send(outcomes).is_err() {
                            return;
                        }
                    }
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    tracing::warn!(target: "pickup", "cannot start unlink thread {i}: {e}");
                    break;
                }
            }
        }
        Unlinker {
            jobs: (!handles.is_empty()).then_some(jobs),
            done_rx,
            done_tx,
            threads: handles,
            pending: Vec::new(),
            outstanding: 0,
        }
    }

    /// Queues `path`, found in the open directory `dir`, for unlinking; it
    /// goes out with the next flush (or at once, with others, when enough
    /// are queued).
    pub fn push(&mut self, dir: Arc<OwnedFd>, path: PathBuf, inode: Option<Inode>) {
        self.pending.push((dir, path, inode));
        if self.pending.len() >= CHUNK * self.threads.len().max(1) {
            self.flush();
        }
    }

    /// Sends every queued path to the threads, a few per thread.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        self.outstanding += pending.len();
        if self.threads.iter().all(|t| t.is_finished()) {
            // Every thread is gone (only if each panicked): nobody would
            // take the work, so it is done on this thread from now on.
            self.jobs = None;
        }
        let Some(jobs) = &self.jobs else {
            let outcomes = pending.into_iter().map(unlink_one).collect();
            // The receiver lives in `self`, so this cannot fail.
            let _ = self.done_tx.send(outcomes);
            return;
        };
        let per_thread = pending
            .len()
            .div_ceil(self.threads.len().max(1))
            .clamp(1, CHUNK);
        let mut rest = pending;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(per_thread));
            if let Err(back) = jobs.give(rest) {
                // Closed (only while dropping): do it here.
                let outcomes = back.into_iter().map(unlink_one).collect();
                let _ = self.done_tx.send(outcomes);
            }
            rest = tail;
        }
    }

    /// Outcomes collected so far, without waiting.
    pub fn try_done(&mut self) -> Vec<Unlinked> {
        let mut out = Vec::new();
        while let Ok(batch) = self.done_rx.try_recv() {
            out.extend(batch);
        }
        self.outstanding -= out.len();
        out
    }

    /// Waits up to `timeout` for at least one outcome, then collects all.
    pub fn wait_done(&mut self, timeout: Duration) -> Vec<Unlinked> {
        match self.done_rx.recv_timeout(timeout) {
            Ok(batch) => {
                self.outstanding -= batch.len();
                let mut out = batch;
                out.extend(self.try_done());
                out
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => Vec::new(),
        }
    }

    /// Paths queued or sent whose outcome has not been collected.
    pub fn outstanding(&self) -> usize {
        self.outstanding + self.pending.len()
    }
}

impl Drop for Unlinker {
    /// Sends what is queued, lets the threads finish it, and joins them.
    fn drop(&mut self) {
        self.flush();
        if let Some(jobs) = self.jobs.take() {
            // The threads finish what is queued, then end.
            jobs.close();
        }
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

/// Unlinks one file if its name still holds the inode that was read; a
/// file already gone counts as removed.
fn unlink_one((dir, path, inode): Doomed) -> Unlinked {
    use rustix::fs::AtFlags;
    let failed = |e: rustix::io::Errno| UnlinkOutcome::Failed(std::io::Error::from(e).to_string());
    let Some(name) = path.file_name() else {
        return (path, UnlinkOutcome::Failed("not a file name".into()));
    };
    if let Some((dev, ino)) = inode {
        match rustix::fs::statat(&*dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_dev != dev || st.st_ino != ino => {
                return (path, UnlinkOutcome::Replaced);
            }
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) => return (path, UnlinkOutcome::Removed),
            Err(e) => return (path, failed(e)),
        }
    }
    match rustix::fs::unlinkat(&*dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => (path, UnlinkOutcome::Removed),
        Err(e) => (path, failed(e)),
    }
}

/// Opens directory `path` for `unlinkat` and `openat` (`O_PATH`: no read
/// permission needed, nothing read through it).
pub fn open_dir(path: &std::path::Path) -> std::io::Result<Arc<OwnedFd>> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(Arc::new(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doomed(paths: &[PathBuf]) -> Vec<Doomed> {
        paths
            .iter()
            .map(|p| (open_dir(p.parent().unwrap()).unwrap(), p.clone(), None))
            .collect()
    }

    fn files(dir: &std::path::Path, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("f{i}"));
                std::fs::write(&p, b"x").unwrap();
                p
            })
            .collect()
    }

    fn collect_all(u: &mut Unlinker) -> Vec<Unlinked> {
        let mut got = Vec::new();
        while u.outstanding() > 0 {
            got.extend(u.wait_done(Duration::from_secs(10)));
        }
        got
    }

    #[test]
    fn unlinks_every_file_once_on_threads() {
        let dir = tempfile::tempdir().unwrap();
        let paths = files(dir.path(), 300);
        let mut u = Unlinker::new(4);
        for (d, p, i) in doomed(&paths) {
            u.push(d, p, i);
        }
        u.flush();
        let mut got = collect_all(&mut u);
        got.sort();
        assert_eq!(got.len(), 300);
        assert!(got.iter().all(|(_, o)| *o == UnlinkOutcome::Removed));
        let mut want = paths.clone();
        want.sort();
        assert_eq!(got.into_iter().map(|(p, _)| p).collect::<Vec<_>>(), want);
        assert!(paths.iter().all(|p| !p.exists()));
        assert_eq!(u.outstanding(), 0);
    }

    #[test]
    fn without_threads_unlinks_on_flush() {
        let dir = tempfile::tempdir().unwrap();
        let paths = files(dir.path(), 3);
        let mut u = Unlinker::new(0);
        for (d, p, i) in doomed(&paths) {
            u.push(d, p, i);
        }
        assert!(paths[0].exists(), "nothing happens before the flush");
        u.flush();
        assert!(paths.iter().all(|p| !p.exists()));
        assert_eq!(u.try_done().len(), 3);
        assert_eq!(u.outstanding(), 0);
    }

    #[test]
    fn when_every_thread_is_gone_flush_unlinks_itself() {
        let dir = tempfile::tempdir().unwrap();
        let paths = files(dir.path(), 3);
        // A pool whose one thread has ended (as after a panic) while its
        // queue is still open: nobody would take the work.
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let mut u = Unlinker {
            jobs: Some(Arc::new(Handoff::default())),
            done_rx,
            done_tx,
            threads: vec![std::thread::spawn(|| {})],
            pending: Vec::new(),
            outstanding: 0,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !u.threads.iter().all(|t| t.is_finished()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the thread did not end"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        for (d, p, i) in doomed(&paths) {
            u.push(d, p, i);
        }
        u.flush();
        assert!(paths.iter().all(|p| !p.exists()), "unlinked on this thread");
        assert_eq!(u.try_done().len(), 3);
        assert_eq!(u.outstanding(), 0);
    }

    #[test]
    fn a_vanished_file_counts_as_unlinked_and_a_failure_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let not_a_file = dir.path().join("d");
        std::fs::create_dir(&not_a_file).unwrap();
        std::fs::write(not_a_file.join("inside"), b"x").unwrap();
        let mut u = Unlinker::new(2);
        for (d, p, i) in doomed(&[gone.clone(), not_a_file.clone()]) {
            u.push(d, p, i);
        }
        u.flush();
        let mut got = collect_all(&mut u);
        got.sort();
        assert_eq!(got[0].0, not_a_file);
        assert!(
            matches!(got[0].1, UnlinkOutcome::Failed(_)),
            "unlinking a directory fails"
        );
        assert_eq!(got[1], (gone, UnlinkOutcome::Removed));
    }

    #[test]
    fn a_name_that_now_holds_another_file_is_left_alone() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = files(dir.path(), 2);
        let read: Vec<Inode> = paths
            .iter()
            .map(|p| {
                let m = std::fs::metadata(p).unwrap();
                (m.dev(), m.ino())
            })
            .collect();
        // A new file renamed over the first name after it was read.
        let new = dir.path().join(".new");
        std::fs::write(&new, b"new message").unwrap();
        std::fs::rename(&new, &paths[0]).unwrap();
        let mut u = Unlinker::new(1);
        let d = open_dir(dir.path()).unwrap();
        for (p, i) in paths.iter().zip(&read) {
            u.push(Arc::clone(&d), p.clone(), Some(*i));
        }
        u.flush();
        let mut got = collect_all(&mut u);
        got.sort();
        assert_eq!(
            got,
            [
                (paths[0].clone(), UnlinkOutcome::Replaced),
                (paths[1].clone(), UnlinkOutcome::Removed)
            ]
        );
        assert_eq!(
            std::fs::read(&paths[0]).unwrap(),
            b"new message",
            "not deleted unread"
        );
        assert!(!paths[1].exists());
    }

    #[test]
    fn drop_finishes_what_was_queued() {
        let dir = tempfile::tempdir().unwrap();
        let paths = files(dir.path(), 50);
        {
            let mut u = Unlinker::new(3);
            for (d, p, i) in doomed(&paths) {
                u.push(d, p, i);
            }
        }
        assert!(paths.iter().all(|p| !p.exists()));
    }
}
