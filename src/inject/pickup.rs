//! The pickup scanner: polls `maildrop/` and `pickup/`, turns each file into
//! a submission and offers it to the queue. The shard that queues it
//! acknowledges after the commit; only then does pickup unlink the file (on
//! its [`Unlinker`] threads), so a file is gone only once its message is
//! durable. Until it is unlinked the file is "in flight" and not read again.
//!
//! Files whose name starts with `.` are ignored, so writers can write under
//! a temporary dot-name and rename. A `pickup/` file modified less than
//! `settle` ago is left for a later scan, so a plain `cp` into the
//! directory is not read half-written. A file that cannot be queued moves to
//! `corrupt/` with a `.reason` file. Polling (every `interval` when idle,
//! back-to-back while files keep coming) is used rather than inotify: it
//! needs no extra thread or kernel watch limits and finds files that were
//! already there at start the same way as new ones.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::model::fast_hash::FastMap;
use crate::model::{Ack, FileIdentity, Source, Submission};
use crate::obs::throttle::{Throttle, REPEAT_EVERY};

use super::leftovers::{file_key, still_in_spool, AlreadyQueued, QueuedAs};
use super::quarantine::quarantine;
use super::release::{ReleaseSink, Releases};
use super::unlinker::{open_dir, Inode, UnlinkOutcome, Unlinked, Unlinker};

/// How long shutdown waits for the queue to acknowledge files in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How long pickup naps when the ring is full before offering again. Not
/// woken by each acknowledgement: at thousands of messages a second, a
/// wake-up per acknowledgement costs a context switch per message on both
/// sides, while a nap lets acknowledgements pile up and be handled at once.
const RING_FULL_NAP: Duration = Duration::from_millis(2);

/// Which directory a file came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpoolKind {
    /// `maildrop/`: written by `ringmail sendmail`, envelope already resolved.
    Maildrop,
    /// `pickup/`: dropped in by users; envelope from X- lines or headers.
    Pickup,
}

/// Turns a file's bytes (its kind, owner uid and path given) into a
/// submission, or says why it cannot be queued. The daemon passes cleanup's
/// intake here.
pub type Prepare = dyn Fn(&[u8], SpoolKind, u32, &Path) -> Result<Submission, String> + Send;

/// Where pickup looks.
#[derive(Clone, Debug)]
pub struct PickupConfig {
    /// `spool_dir/maildrop`.
    pub maildrop: PathBuf,
    /// `spool_dir/pickup`.
    pub pickup: PathBuf,
    /// `spool_dir/corrupt`.
    pub corrupt: PathBuf,
    /// `message_size_limit`: larger files are quarantined unread.
    pub message_size_limit: u64,
    /// Idle poll interval.
    pub interval: Duration,
    /// Minimum age of a `pickup/` file before it is read.
    pub settle: Duration,
    /// Threads that unlink committed files (`pickup_unlink_threads`).
    pub unlink_threads: usize,
}

/// Counters kept by pickup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PickupStats {
    /// Files offered to the queue.
    pub offered: u64,
    /// Files acknowledged and unlinked.
    pub queued: u64,
    /// Files moved to `corrupt/`.
    pub quarantined: u64,
    /// Files found queued already (left behind by a killed daemon) and
    /// removed without being queued again.
    pub already_queued: u64,
    /// Acknowledgements that reported a queue failure (file kept, retried).
    pub failed: u64,
}

/// The scanner's state: which files are in flight.
pub struct Pickup {
    cfg: PickupConfig,
    prepare: Box<Prepare>,
    /// Files offered and not yet retired, by path (as bytes: hashing an
    /// `OsString` is one pass over the bytes, hashing a `PathBuf` walks its
    /// components, which showed in profiles of scans of large directories),
    /// with the directory it was read from, open, to unlink it relative to.
    inflight: FastMap<OsString, InFlight>,
    /// Queued files that could not be unlinked: never read again.
    stuck: HashSet<OsString>,
    /// Files this process may not read (another user's 0600 maildrop file
    /// under a daemon that is not root): tried on every pass, logged once.
    unreadable: HashSet<OsString>,
    /// Leftover files that recovery found queued already.
    already_queued: AlreadyQueued,
    /// After each complete scan that starts at or after this, the leftover
    /// records whose file is no longer in the spool are released.
    leftovers_settled_at: Instant,
    /// Those of them being unlinked now (not counted as queued by this run).
    leftovers_unlinking: HashSet<OsString>,
    /// Unlinks queued files.
    unlinker: Unlinker,
    /// Tells the shards which files are gone for good.
    releases: Releases,
    stats: PickupStats,
    /// After a queue failure, wait this long before offering files again.
    pause_until: Option<Instant>,
    /// Files not queued for a temporary reason (a full disk refuses every
    /// one): logged once, then once a minute.
    retry_log: Throttle,
    /// The buffer each file is read into, kept from file to file: a fresh
    /// one per message made glibc consolidate its free lists each time.
    read_buf: Vec<u8>,
}

/// A read buffer that grew past this (a large message) is let go after
/// use rather than kept.
const KEEP_READ_BUF: usize = 1 << 20;

impl Pickup {
    /// A scanner for `cfg` that builds submissions with `prepare`.
    pub fn new(cfg: PickupConfig, prepare: Box<Prepare>) -> Pickup {
        Pickup {
            prepare,
            inflight: FastMap::default(),
            stuck: HashSet::new(),
            unreadable: HashSet::new(),
            already_queued: AlreadyQueued::default(),
            leftovers_settled_at: Instant::now() + cfg.settle,
            leftovers_unlinking: HashSet::new(),
            unlinker: Unlinker::new(cfg.unlink_threads.max(1)),
            releases: Releases::new(vec![cfg.maildrop.clone(), cfg.pickup.clone()]),
            read_buf: Vec::new(),
            stats: PickupStats::default(),
            pause_until: None,
            retry_log: Throttle::new(REPEAT_EVERY),
            cfg,
        }
    }

    /// Where to say that a queued message's spool file is gone for good
    /// (unlinked, and the unlink made durable): the shard holding its
    /// record may then delete the record's segment once delivered.
    pub fn set_release(&mut self, sink: Box<ReleaseSink>) {
        self.releases.set_sink(sink);
    }

    /// Tells the scanner which leftover files are queued already (from
    /// recovery): they are removed when met, not queued again.
    pub fn set_already_queued(&mut self, known: AlreadyQueued) {
        if !known.is_empty() {
            tracing::info!(target: "pickup", "{} files left in the spool by the previous run are queued already; they will be removed, not queued again", known.len());
        }
        self.already_queued = known;
    }

    /// Scans until `stop` is set, offering submissions through `offer`
    /// (which hands a submission back when the queue is full) and handling
    /// acknowledgements from `acks`. On stop, waits briefly for the
    /// acknowledgements of files in flight, so they are not queued twice.
    pub fn run(
        &mut self,
        offer: &mut dyn FnMut(Box<Submission>) -> Result<(), Box<Submission>>,
        acks: &Receiver<Ack>,
        stop: &AtomicBool,
    ) -> PickupStats {
        while !stop.load(Ordering::Acquire) {
            self.drain_acks(acks);
            let paused = self.is_paused();
            let scan_started = Instant::now();
            let offered = if paused {
                0
            } else {
                self.scan_once(offer, acks, stop)
            };
            if !paused
                && !stop.load(Ordering::Acquire)
                && !self.already_queued.is_empty()
                && scan_started >= self.leftovers_settled_at
            {
                // Every file in the spool has been looked at: the records
                // still expected whose file is gone match nothing any more.
                // (A file still there that could not be read yet keeps its
                // records until it is.)
                let (maildrop, pickup) = (&self.cfg.maildrop, &self.cfg.pickup);
                for queued in self
                    .already_queued
                    .drain_gone(|key| still_in_spool(maildrop, pickup, key))
                {
                    self.releases.push(queued, None);
                }
            }
            if offered == 0 && !self.idle_until_next_scan(acks, stop) {
                break;
            }
        }
        self.retire_in_flight(acks, Instant::now() + SHUTDOWN_GRACE);
        self.stats
    }

    /// Handles acknowledgements and unlink outcomes until no file is in
    /// flight, or the acknowledgement channel is closed with no unlink
    /// outstanding, or `deadline` passes.
    fn retire_in_flight(&mut self, acks: &Receiver<Ack>, deadline: Instant) {
        loop {
            self.drain_acks(acks);
            let left = deadline.saturating_duration_since(Instant::now());
            if self.inflight.is_empty() || left.is_zero() {
                return;
            }
            if self.unlinker.outstanding() > 0 {
                let done = self.unlinker.wait_done(left.min(Duration::from_millis(5)));
                self.handle_unlinked(done);
                continue;
            }
            match acks.recv_timeout(left) {
                Ok(ack) => self.handle_ack(ack),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Handles acknowledgements until the next scan is due (one `interval`
    /// from now) or `stop` is set. An acknowledgement only retires a file,
    /// it brings no new one, so it does not make the scan come sooner.
    /// Returns false when the acknowledgement channel is gone.
    fn idle_until_next_scan(&mut self, acks: &Receiver<Ack>, stop: &AtomicBool) -> bool {
        let next_scan = Instant::now() + self.cfg.interval;
        loop {
            let left = next_scan.saturating_duration_since(Instant::now());
            if left.is_zero() || stop.load(Ordering::Acquire) {
                return true;
            }
            match acks.recv_timeout(left) {
                Ok(ack) => {
                    self.handle_ack(ack);
                    self.drain_acks(acks);
                }
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// One pass over both directories; returns how many files were offered.
    pub fn scan_once(
        &mut self,
        offer: &mut dyn FnMut(Box<Submission>) -> Result<(), Box<Submission>>,
        acks: &Receiver<Ack>,
        stop: &AtomicBool,
    ) -> usize {
        let mut offered = 0;
        for (dir, kind) in [
            (self.cfg.maildrop.clone(), SpoolKind::Maildrop),
            (self.cfg.pickup.clone(), SpoolKind::Pickup),
        ] {
            // Files are opened and unlinked relative to this, which spares
            // the kernel a walk of the whole path for each of them.
            let dir_fd = match open_dir(&dir) {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::warn!(target: "pickup", "{}: cannot open: {e}", dir.display());
                    continue;
                }
            };
            let listed = self.list(&dir);
            if !self.unreadable.is_empty() {
                // Forget the ones that are gone.
                let names: HashSet<&std::ffi::OsStr> =
                    listed.iter().map(|p| p.as_os_str()).collect();
                self.unreadable
                    .retain(|p| !Path::new(p).starts_with(&dir) || names.contains(p.as_os_str()));
            }
            for path in listed {
                // After a temporary failure the rest of the scan waits for
                // the retry: a full disk refuses the next file as well.
                if stop.load(Ordering::Acquire) || self.is_paused() {
                    return offered;
                }
                let (mut sub, inode) = match self.read_one(&dir_fd, &path, kind) {
                    Some(ReadOutcome::Offer(sub)) => {
                        let inode = sub.file_identity.as_ref().map(|f| (f.key.dev, f.key.ino));
                        (sub, inode)
                    }
                    Some(ReadOutcome::AlreadyQueued(queued, inode)) => {
                        self.stats.already_queued += 1;
                        self.inflight.insert(
                            path.clone().into_os_string(),
                            InFlight {
                                dir: Arc::clone(&dir_fd),
                                inode: Some(inode),
                                queued_as: Some(queued),
                            },
                        );
                        self.leftovers_unlinking
                            .insert(path.clone().into_os_string());
                        self.unlinker.push(Arc::clone(&dir_fd), path, Some(inode));
                        // At once: the name is unlinked, so the sooner the
                        // less room for a new file renamed over it.
                        self.unlinker.flush();
                        continue;
                    }
                    None => continue,
                };
                loop {
                    match offer(sub) {
                        Ok(()) => break,
                        Err(back) => {
                            // The ring is full: nap, then handle whatever
                            // acknowledgements came meanwhile.
                            sub = back;
                            if stop.load(Ordering::Acquire) {
                                return offered;
                            }
                            std::thread::sleep(RING_FULL_NAP);
                            self.drain_acks(acks);
                        }
                    }
                }
                self.inflight.insert(
                    path.into_os_string(),
                    InFlight {
                        dir: Arc::clone(&dir_fd),
                        inode,
                        queued_as: None,
                    },
                );
                self.stats.offered += 1;
                offered += 1;
                if !acks.is_empty() {
                    // Committed files are unlinked as soon as possible: a
                    // committed file not yet unlinked when the daemon is
                    // killed waits in the spool for the next start (which
                    // recognises it, see `leftovers`).
                    self.drain_acks(acks);
                }
            }
        }
        offered
    }
}

/// What reading a spool file came to.
enum ReadOutcome {
    /// A submission to offer to the queue.
    Offer(Box<Submission>),
    /// The file (this inode) was queued before a restart, as this: remove it.
    AlreadyQueued(QueuedAs, Inode),
}

/// A file offered and not yet retired.
struct InFlight {
    /// The directory it was read from, open.
    dir: Arc<OwnedFd>,
    /// Its device and inode when read: only that file is unlinked.
    inode: Option<Inode>,
    /// Where its message is queued, once acknowledged (or recognised).
    queued_as: Option<QueuedAs>,
}

/// Opens a spool file for reading: never through a symbolic link, never
/// blocking (a FIFO), and without updating its access time when the
/// daemon may (it owns the file or runs with CAP_FOWNER): an atime update
/// dirties the inode, one more write per message for a file about to be
/// deleted.
fn open_spool_file(dir: &OwnedFd, path: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let Some(name) = path.file_name() else {
        return Err(std::io::Error::from(rustix::io::Errno::INVAL));
    };
    let base = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let open = |flags: OFlags| rustix::fs::openat(dir, name, flags, Mode::empty());
    let fd = match open(base | OFlags::NOATIME) {
        Err(rustix::io::Errno::PERM) => open(base),
        other => other,
    }?;
    Ok(std::fs::File::from(fd))
}

/// Reads all of `file`, whose size was `size` when it was stat'ed, into
/// `data`. `read_to_end` would ask the size again and seek to learn the
/// position, then read once more to see the end: three system calls per
/// message that this avoids. The bytes go straight into `data`'s spare
/// capacity (no zero-filling first). A read shorter than asked is the end
/// of a regular file; if the file grew since the stat, the buffer grows
/// and reading goes on.
fn read_whole(file: &mut std::fs::File, size: u64, data: &mut Vec<u8>) -> std::io::Result<()> {
    let mut want = usize::try_from(size)
        .unwrap_or(usize::MAX / 2)
        .saturating_add(1);
    data.clear();
    loop {
        data.reserve(want);
        let asked = data.capacity() - data.len();
        match rustix::io::read(&*file, rustix::buffer::spare_capacity(data)) {
            Ok(n) if n < asked => return Ok(()),
            Ok(_) => want = want.max(64 * 1024),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

impl Pickup {
    /// Names in `dir` that are candidates: not dot-files, not in flight.
    fn list(&self, dir: &Path) -> Vec<PathBuf> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(target: "pickup", "{}: cannot scan: {e}", dir.display());
                return Vec::new();
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
            .map(|e| e.path())
            .filter(|p| {
                !self.inflight.contains_key(p.as_os_str()) && !self.stuck.contains(p.as_os_str())
            })
            .collect();
        // All in one directory, so byte order is name order (and much
        // cheaper than comparing paths component by component).
        paths.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        paths
    }

    /// Reads and prepares one file; quarantines it when it cannot be queued.
    fn read_one(&mut self, dir: &OwnedFd, path: &Path, kind: SpoolKind) -> Option<ReadOutcome> {
        let file = match open_spool_file(dir, path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None, // vanished meanwhile
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                self.reject(path, "not a regular file (a symbolic link)");
                return None;
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {
                self.reject(path, "not a regular file");
                return None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                if self.unreadable.insert(path.as_os_str().to_owned()) {
                    let uid = rustix::process::geteuid();
                    let why = if uid.is_root() {
                        e.to_string() // a security module, not the mode
                    } else {
                        format!("permission denied: this daemon runs as uid {} and reads only its own files there (run `ringmail serve` as root)", uid.as_raw())
                    };
                    tracing::warn!(
                        target: "pickup",
                        "{}: cannot open: {why}; the file stays and is tried again",
                        path.display()
                    );
                }
                return None;
            }
            Err(e) => {
                tracing::warn!(target: "pickup", "{}: cannot open: {e}", path.display());
                return None;
            }
        };
        if !self.unreadable.is_empty() {
            self.unreadable.remove(path.as_os_str());
        }
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(target: "pickup", "{}: cannot stat: {e}", path.display());
                return None;
            }
        };
        if !meta.is_file() {
            if !meta.is_dir() {
                self.reject(path, "not a regular file");
            }
            return None;
        }
        if kind == SpoolKind::Pickup && !self.cfg.settle.is_zero() {
            let age = meta
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .unwrap_or(Duration::MAX);
            if age < self.cfg.settle {
                return None;
            }
        }
        let limit = self.cfg.message_size_limit;
        if meta.len() > limit.saturating_add(64 * 1024) {
            self.reject(
                path,
                &format!("message too large: {} bytes, limit {limit}", meta.len()),
            );
            return None;
        }
        let mut data = std::mem::take(&mut self.read_buf);
        let outcome = self.read_opened(path, kind, file, &meta, &mut data);
        if data.capacity() <= KEEP_READ_BUF {
            self.read_buf = data;
        }
        outcome
    }

    /// [`Pickup::read_one`] once `file` is open and checked: reads it into
    /// `data` and makes its submission.
    fn read_opened(
        &mut self,
        path: &Path,
        kind: SpoolKind,
        mut file: std::fs::File,
        meta: &std::fs::Metadata,
        data: &mut Vec<u8>,
    ) -> Option<ReadOutcome> {
        if let Err(e) = read_whole(&mut file, meta.len(), data) {
            tracing::warn!(target: "pickup", "{}: cannot read: {e}", path.display());
            return None;
        }
        drop(file);
        let identity = FileIdentity {
            key: file_key(kind, path.file_name().unwrap_or_default(), meta),
            crc32c: crc32c::crc32c(data),
        };
        if !self.already_queued.is_empty() {
            let taken = self.already_queued.take(&identity);
            if let Some((&queued, spare)) = taken.split_first() {
                tracing::info!(target: "pickup", "{}: queued already as {} before the restart; removing the file", path.display(), queued.id);
                // One held record is enough to recognise the file.
                for &q in spare {
                    self.releases.push(q, None);
                }
                return Some(ReadOutcome::AlreadyQueued(
                    queued,
                    (identity.key.dev, identity.key.ino),
                ));
            }
        }
        match (self.prepare)(data, kind, meta.uid(), path) {
            Ok(mut sub) => {
                sub.file_identity = Some(identity);
                Some(ReadOutcome::Offer(Box::new(sub)))
            }
            Err(reason) => {
                self.reject(path, &reason);
                None
            }
        }
    }

    fn reject(&mut self, path: &Path, reason: &str) {
        match quarantine(path, &self.cfg.corrupt, reason) {
            Ok(dest) => {
                self.stats.quarantined += 1;
                tracing::warn!(
                    target: "pickup",
                    "{}: moved to {}: {reason}",
                    path.display(),
                    dest.display()
                );
            }
            Err(e) => {
                tracing::error!(target: "pickup", "{}: cannot quarantine ({reason}): {e}", path.display())
            }
        }
    }

    /// Handles the acknowledgements and unlink outcomes that have come in,
    /// and sends the newly committed files off to be unlinked.
    fn drain_acks(&mut self, acks: &Receiver<Ack>) {
        while let Ok(ack) = acks.try_recv() {
            self.handle_ack(ack);
        }
        self.unlinker.flush();
        let done = self.unlinker.try_done();
        self.handle_unlinked(done);
        self.releases.flush(false);
    }

    fn handle_ack(&mut self, ack: Ack) {
        let Source::File(path) = ack.source else {
            return;
        };
        let e = match ack.result {
            Ok(id) => {
                // Queueing works (again): the next failure is logged at once.
                self.retry_log.reset();
                // Durable now: unlink, and keep it in flight until it is gone.
                let queued = QueuedAs {
                    shard: id.shard(),
                    id,
                };
                let dir = match self.inflight.get_mut(path.as_os_str()) {
                    Some(f) => {
                        f.queued_as = Some(queued);
                        Ok((Arc::clone(&f.dir), f.inode))
                    }
                    // Not offered by this scanner (cannot happen): still
                    // the file is queued, so it must go.
                    None => open_dir(path.parent().unwrap_or(Path::new("."))).map(|d| (d, None)),
                };
                match dir {
                    Ok((dir, inode)) => self.unlinker.push(dir, path, inode),
                    Err(e) => {
                        tracing::error!(target: "pickup", "{}: queued but cannot unlink: {e}", path.display())
                    }
                }
                return;
            }
            Err(e) => e,
        };
        self.inflight.remove(path.as_os_str());
        if !e.is_transient() {
            self.reject(&path, &e.to_string());
        } else {
            self.stats.failed += 1;
            self.pause_until = Some(Instant::now() + self.cfg.interval * 5);
            match self.retry_log.hit() {
                Some(0) => {
                    tracing::warn!(target: "pickup", "{}: not queued, will retry: {e}", path.display())
                }
                Some(held) => tracing::warn!(
                    target: "pickup",
                    "{}: not queued, will retry: {e} ({held} more files not queued since the last warning)",
                    path.display()
                ),
                None => {}
            }
        }
    }

    /// True while offering files waits after a temporary failure.
    fn is_paused(&self) -> bool {
        self.pause_until.is_some_and(|t| Instant::now() < t)
    }

    /// Called once the shards have stopped: handles acknowledgements that
    /// came after [`Pickup::run`] returned and waits for every unlink, so no
    /// committed file is left behind for the next start to recognise.
    /// Gives up after `limit` (logging how many unlinks were left).
    pub fn finish(&mut self, acks: &Receiver<Ack>, limit: Duration) -> PickupStats {
        self.retire_in_flight(acks, Instant::now() + limit);
        self.releases.flush(true);
        if self.unlinker.outstanding() > 0 {
            tracing::warn!(
                target: "pickup",
                "{} committed files not unlinked at exit: the next start recognises them as queued and removes them",
                self.unlinker.outstanding()
            );
        }
        self.stats
    }

    /// Retires unlinked files; a queued file that cannot be unlinked is
    /// never read again (its message is queued already).
    fn handle_unlinked(&mut self, done: Vec<Unlinked>) {
        for (path, outcome) in done {
            let queued_as = self
                .inflight
                .remove(path.as_os_str())
                .and_then(|f| f.queued_as);
            if self.leftovers_unlinking.is_empty()
                || !self.leftovers_unlinking.remove(path.as_os_str())
            {
                self.stats.queued += 1;
            }
            match outcome {
                UnlinkOutcome::Removed | UnlinkOutcome::Replaced => {
                    if outcome == UnlinkOutcome::Replaced {
                        // The file that was read is gone (the rename
                        // removed it); the new one is read by the next scan.
                        tracing::info!(target: "pickup", "{}: another file was put under this name after it was read; that file is left to be picked up", path.display());
                    }
                    if let Some(queued) = queued_as {
                        self.releases.push(queued, path.parent());
                    }
                }
                UnlinkOutcome::Failed(e) => {
                    // Still in the spool: its record must stay, so the next
                    // start recognises it.
                    tracing::error!(target: "pickup", "{}: queued but cannot unlink: {e}", path.display());
                    self.stuck.insert(path.into_os_string());
                }
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> PickupStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::unlinker::UNLINK_THREADS;
    use crate::model::{AckError, Envelope, MessageFlags, QueueId};
    use std::io::Write;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A spool whose `pickup/` holds `files`; returns it and `pickup/`.
    fn spool_with(files: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        for d in ["maildrop", "pickup", "corrupt"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let pickup = dir.path().join("pickup");
        for name in files {
            let body = format!("Subject: {name}\n\nbody\n");
            std::fs::write(pickup.join(name), body).unwrap();
        }
        (dir, pickup)
    }

    /// A scanner for the spool at `root` whose submissions carry the
    /// file's bytes as their wire form.
    fn scanner(root: &Path) -> Pickup {
        let cfg = PickupConfig {
            maildrop: root.join("maildrop"),
            pickup: root.join("pickup"),
            corrupt: root.join("corrupt"),
            message_size_limit: 1 << 20,
            interval: Duration::from_millis(10),
            settle: Duration::ZERO,
            unlink_threads: UNLINK_THREADS,
        };
        let prepare = Box::new(|data: &[u8], _: SpoolKind, uid: u32, path: &Path| {
            Ok(Submission {
                envelope: Envelope::default(),
                wire: data.to_vec(),
                flags: MessageFlags::default(),
                dsn: Default::default(),
                message_id: String::new(),
                arrival_micros: 0,
                uid,
                source: Source::File(path.to_path_buf()),
                origin: Default::default(),
                file_identity: None,
                campaign: None,
            })
        });
        Pickup::new(cfg, prepare)
    }

    /// Collects what `p` releases, as (shard, queue ID) pairs.
    fn releases_of(p: &mut Pickup) -> Arc<std::sync::Mutex<Vec<(usize, QueueId)>>> {
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&got);
        p.set_release(Box::new(move |shard, ids| {
            sink.lock()
                .unwrap()
                .extend(ids.into_iter().map(|id| (shard, id)))
        }));
        got
    }

    /// One pass of `p` over its spool, taking every submission offered.
    fn scan_all(p: &mut Pickup, acks: &Receiver<Ack>) -> Vec<Submission> {
        let mut offered = Vec::new();
        let n = p.scan_once(
            &mut |sub| {
                offered.push(*sub);
                Ok(())
            },
            acks,
            &AtomicBool::new(false),
        );
        assert_eq!(n, offered.len(), "the count is what was offered");
        offered
    }

    /// A full disk refuses every file: once the first refusal is back, the
    /// scan stops offering (and reading) files until the retry, instead of
    /// offering every file in the spool to be refused one by one.
    #[test]
    fn a_temporary_failure_stops_the_scan_until_the_retry() {
        let (dir, pickup) = spool_with(&["a", "b", "c", "d", "e"]);
        let mut p = scanner(dir.path());
        p.cfg.interval = Duration::from_secs(60);
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = AtomicBool::new(false);
        let mut offered = Vec::new();
        let n = p.scan_once(
            &mut |sub| {
                offered.push(sub.source.clone());
                let _ = tx.send(Ack {
                    source: sub.source,
                    result: Err(AckError::QueueWrite("no room in the queue".into())),
                });
                Ok(())
            },
            &rx,
            &stop,
        );
        assert_eq!(n, 1, "{offered:?}");
        assert!(p.is_paused());
        assert_eq!(
            p.scan_once(&mut |_| panic!("offered while paused"), &rx, &stop),
            0
        );
        assert_eq!(
            names(&pickup),
            ["a", "b", "c", "d", "e"],
            "all left in place"
        );
        assert_eq!(p.stats().failed, 1);
        // The retry offers them again.
        p.pause_until = None;
        assert_eq!(scan_all(&mut p, &rx).len(), 5);
    }

    #[test]
    fn a_file_is_unlinked_only_after_its_ack_and_finish_handles_late_acks() {
        let (dir, pickup) = spool_with(&["a", "b", "c"]);
        let mut p = scanner(dir.path());
        let released = releases_of(&mut p);
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = AtomicBool::new(false);
        let offered = scan_all(&mut p, &rx);
        assert_eq!(offered.len(), 3);
        assert_eq!(
            names(&pickup),
            ["a", "b", "c"],
            "nothing unlinked before an ack"
        );
        assert_eq!(
            p.scan_once(&mut |_| panic!("offered twice"), &rx, &stop),
            0,
            "files in flight are not offered again"
        );
        // Acks that arrive after pickup stopped listening: two committed,
        // one that failed and must stay.
        for (i, sub) in offered.into_iter().enumerate() {
            let result = match i {
                0 | 1 => Ok(QueueId::new(i, 7)),
                _ => Err(AckError::QueueWrite("disk full".into())),
            };
            tx.send(Ack {
                source: sub.source,
                result,
            })
            .unwrap();
        }
        drop(tx);
        let stats = p.finish(&rx, Duration::from_secs(10));
        assert_eq!(stats.queued, 2);
        assert_eq!(stats.failed, 1);
        assert_eq!(names(&pickup), ["c"]);
        let mut released = released.lock().unwrap().clone();
        released.sort();
        assert_eq!(
            released,
            [(0, QueueId::new(0, 7)), (1, QueueId::new(1, 7))],
            "the unlinked files' messages are released to their shards, the failed one is not"
        );
    }

    #[test]
    fn a_new_file_renamed_over_a_name_in_flight_is_not_deleted_but_read() {
        let (dir, pickup) = spool_with(&["m.eml"]);
        let mut p = scanner(dir.path());
        let released = releases_of(&mut p);
        let (tx, rx) = crossbeam_channel::unbounded();
        let offered = scan_all(&mut p, &rx);
        assert_eq!(offered.len(), 1);
        // A writer that reuses the name puts the next message there before
        // the first one's acknowledgement.
        let tmp = pickup.join(".tmp");
        std::fs::write(&tmp, "Subject: second\n\nbody\n").unwrap();
        std::fs::rename(&tmp, pickup.join("m.eml")).unwrap();
        tx.send(Ack {
            source: offered[0].source.clone(),
            result: Ok(QueueId::new(0, 1)),
        })
        .unwrap();
        let stats = p.finish(&rx, Duration::from_secs(10));
        assert_eq!(stats.queued, 1, "the first message is queued");
        assert_eq!(names(&pickup), ["m.eml"], "the second file is still there");
        assert_eq!(
            *released.lock().unwrap(),
            [(0, QueueId::new(0, 1))],
            "the first file is gone, so its record may go"
        );
        let again = scan_all(&mut p, &rx);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].wire, b"Subject: second\n\nbody\n");
    }

    #[test]
    fn a_leftover_file_queued_before_a_restart_is_removed_not_offered() {
        let (dir, pickup) = spool_with(&["a", "b", "c"]);
        let mut first = scanner(dir.path());
        let (_tx, rx) = crossbeam_channel::unbounded();
        let offered = scan_all(&mut first, &rx);
        // Each submission carries its file's identity.
        let ids: Vec<FileIdentity> = offered
            .iter()
            .map(|s| s.file_identity.clone().unwrap())
            .collect();
        assert_eq!(ids[0].key.name, b"pickup/a");
        assert_eq!(
            ids[0].key.size,
            std::fs::metadata(pickup.join("a")).unwrap().len()
        );
        assert_eq!(ids[0].crc32c, crc32c::crc32c(&offered[0].wire));
        drop(first); // killed: nothing acknowledged, all three files stay

        // The restart: recovery found a and b queued; b's record has other
        // contents (as if b had been rewritten in place since).
        let mut restarted = scanner(dir.path());
        let released = releases_of(&mut restarted);
        let mut other_b = ids[1].clone();
        other_b.crc32c ^= 1;
        let queued_as = |seq| QueuedAs {
            shard: 1,
            id: QueueId::new(0, seq),
        };
        restarted.set_already_queued(AlreadyQueued::new([
            (ids[0].clone(), queued_as(1)),
            (other_b, queued_as(2)),
        ]));
        // Runs until the acknowledgement channel is gone (no ack comes).
        drop(_tx);
        let mut offered_again = Vec::new();
        restarted.run(
            &mut |sub| {
                offered_again.push(*sub);
                Ok(())
            },
            &rx,
            &AtomicBool::new(false),
        );
        assert_eq!(
            offered_again.len(),
            2,
            "b (other contents) and c are queued"
        );
        let names_offered: Vec<_> = offered_again
            .iter()
            .map(|s| s.file_identity.as_ref().unwrap().key.name.clone())
            .collect();
        assert_eq!(names_offered, [b"pickup/b".to_vec(), b"pickup/c".to_vec()]);
        let stats = restarted.finish(&rx, Duration::from_secs(10));
        assert_eq!(stats.already_queued, 1);
        assert_eq!(
            stats.queued, 0,
            "a recognised file is not counted as queued by this run"
        );
        assert_eq!(
            names(&pickup),
            ["b", "c"],
            "a is gone, the others wait for their acks"
        );
        assert_eq!(
            *released.lock().unwrap(),
            [(1, QueueId::new(0, 1))],
            "a's record once a was unlinked; b's stale record waits while a file with its key is there"
        );
        // b goes (as once its new message is queued): the next complete
        // scan finds its file gone and lets the stale record go.
        std::fs::remove_file(pickup.join("b")).unwrap();
        restarted.run(&mut |_| panic!("nothing new"), &rx, &AtomicBool::new(false));
        restarted.finish(&rx, Duration::from_secs(10));
        let mut released = released.lock().unwrap().clone();
        released.sort();
        assert_eq!(released, [(1, QueueId::new(0, 1)), (1, QueueId::new(0, 2))]);
    }

    fn file_with(bytes: &[u8]) -> std::fs::File {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        std::fs::File::open(&path).unwrap()
    }

    #[test]
    fn reads_a_file_of_the_stated_size() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut data = vec![9u8; 3];
        read_whole(&mut file_with(&body), body.len() as u64, &mut data).unwrap();
        assert_eq!(data, body);
    }

    #[test]
    fn reads_everything_when_the_file_grew_since_the_stat() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut data = Vec::new();
        read_whole(&mut file_with(&body), 10, &mut data).unwrap();
        assert_eq!(data.len(), body.len());
        assert_eq!(data, body);
    }

    #[test]
    fn a_reused_buffer_keeps_nothing_of_the_file_before() {
        let mut data = Vec::new();
        read_whole(&mut file_with(&[b'x'; 5000]), 5000, &mut data).unwrap();
        read_whole(&mut file_with(b"short"), 5, &mut data).unwrap();
        assert_eq!(data, b"short");
        read_whole(&mut file_with(b""), 0, &mut data).unwrap();
        assert!(data.is_empty());
    }

    #[test]
    fn reads_an_empty_file() {
        let mut data = Vec::new();
        read_whole(&mut file_with(b""), 0, &mut data).unwrap();
        assert!(data.is_empty());
    }
}
