//! The writer thread: takes events from the sinks' queue, gives each its
//! id, appends them as JSON lines to the events file in batches (one write
//! and, by default, one fdatasync per batch), and rotates the file by size.
//!
//! Rotation renames `events.jsonl` to `events.jsonl.<N>` (its generation)
//! and starts generation `N + 1`; then rotated files beyond `keep` are
//! removed, oldest first, but never one the webhook's cursor has not
//! passed: a webhook receiver that is down for long makes the files pile
//! up rather than lose events.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::cursor::CursorFile;
use super::event::{Event, IdMaker};
use super::files::EventFiles;
use super::sink::EventStats;
use crate::obs::Throttle;

/// Most events written in one batch (one write, one fdatasync).
const MAX_BATCH: usize = 4096;

/// How long the thread naps after a batch, letting events pile up: a
/// thread parked in `recv` would be woken (a futex call by the emitting
/// shard) for every event that finds it parked.
const NAP: Duration = Duration::from_millis(2);

/// How often an idle writer looks at its stop flag.
const IDLE_WAKE: Duration = Duration::from_millis(100);

/// Why the events file could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// A file operation failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl WriterError {
    /// File errors may pass (disk freed, permissions fixed).
    pub fn is_transient(&self) -> bool {
        true
    }
}

/// When the events file is synced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fdatasync after every batch: an event in the file survives a crash,
    /// so the webhook sees it after a restart.
    #[default]
    Batch,
    /// Never: the kernel writes the file back when it likes; a crash of
    /// the machine may lose the last seconds of events.
    None,
}

/// Where and how the writer writes.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// The active events file (`<spool_dir>/events/events.jsonl`).
    pub file: PathBuf,
    /// Rotate once the file reaches this many bytes.
    pub max_file_size: u64,
    /// Rotated files to keep (more while the webhook has not passed them).
    pub keep: usize,
    /// When to sync.
    pub fsync: FsyncPolicy,
    /// The webhook's cursor file, when there is a webhook: rotated files
    /// it has not passed are kept.
    pub cursor: Option<PathBuf>,
}

/// The running writer thread.
#[derive(Debug)]
pub struct Writer {
    handle: JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl Writer {
    /// Opens (or creates, mode 0600, in a directory made 0700) the events
    /// file, cuts a half-written last line left by a crash, and starts the
    /// thread reading `rx`. After each batch it pokes `wake` (the
    /// webhook's poster), without blocking.
    pub fn start(
        options: WriterOptions,
        rx: Receiver<Event>,
        stats: Arc<EventStats>,
        wake: Option<Sender<()>>,
    ) -> Result<Writer, WriterError> {
        let mut log = EventLog::open(options, stats)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || run(&mut log, &rx, &stop_flag, wake.as_ref()))
            .map_err(|source| WriterError::Io {
                op: "start the events writer thread",
                path: PathBuf::new(),
                source,
            })?;
        Ok(Writer { handle, stop })
    }

    /// Writes what is queued, syncs, and ends the thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        if self.handle.join().is_err() {
            tracing::error!(target: "events", "the events writer thread panicked");
        }
    }
}

/// The thread's loop: a batch, a nap, until stopped (then what is still
/// queued is written) or every sink is gone.
fn run(log: &mut EventLog, rx: &Receiver<Event>, stop: &AtomicBool, wake: Option<&Sender<()>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        match rx.recv_timeout(IDLE_WAKE) {
            Ok(e) => batch.push(e),
            Err(RecvTimeoutError::Timeout) if stop.load(Ordering::Acquire) => break,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        log.write_batch(&mut batch);
        batch.clear();
        if let Some(w) = wake {
            let _ = w.try_send(());
        }
        if !stop.load(Ordering::Acquire) {
            std::thread::sleep(NAP);
        }
    }
    if let Some(w) = wake {
        let _ = w.try_send(());
    }
}

/// The open events file and the writer's state.
struct EventLog {
    options: WriterOptions,
    files: EventFiles,
    file: File,
    generation: u64,
    size: u64,
    ids: IdMaker,
    buf: Vec<u8>,
    stats: Arc<EventStats>,
    failing: Throttle,
}

impl EventLog {
    fn open(options: WriterOptions, stats: Arc<EventStats>) -> Result<EventLog, WriterError> {
        let io = |op: &'static str, path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| WriterError::Io { op, path, source }
        };
        let files = EventFiles::new(&options.file).map_err(io("open", &options.file))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(files.dir())
            .map_err(io("create directory", files.dir()))?;
        // A cursor ahead of every file on disk (files removed by hand)
        // keeps generations from being reused under it.
        let floor = options
            .cursor
            .as_ref()
            .and_then(|c| CursorFile::new(c).load().ok().flatten())
            .map_or(0, |c| c.generation);
        let generation = files
            .active_generation(floor)
            .map_err(io("list", files.dir()))?;
        let active = files.active();
        let file = open_append(&active).map_err(io("open", &active))?;
        let size = cut_torn_tail(&file).map_err(io("repair", &active))?;
        Ok(EventLog {
            options,
            files,
            file,
            generation,
            size,
            ids: IdMaker::new(),
            buf: Vec::with_capacity(1 << 20),
            stats,
            failing: Throttle::new(crate::obs::throttle::REPEAT_EVERY),
        })
    }

    /// Appends `batch` with one write (and one fdatasync); when the file
    /// fills up within the batch, what fits is written and synced, the
    /// file rotated, and the rest goes to the next one. A file never goes
    /// past `max_file_size` unless one event is larger.
    fn write_batch(&mut self, batch: &mut [Event]) {
        self.buf.clear();
        // One rotation attempt per batch: a rename that fails (a read-only
        // directory) is not retried for every event.
        let mut may_rotate = true;
        let mut pending = 0u64;
        for e in batch.iter_mut() {
            if e.id.is_empty() {
                e.id = self.ids.next_id();
            }
            let before = self.buf.len();
            if e.write_line(&mut self.buf).is_err() {
                // Cannot happen for these types; never write half a line.
                self.buf.truncate(before);
                self.stats.write_failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let filled = self.size + before as u64;
            let line = (self.buf.len() - before) as u64;
            if may_rotate && filled > 0 && filled + line > self.options.max_file_size {
                let rest = self.buf.split_off(before);
                self.flush(pending);
                pending = 0;
                self.buf = rest;
                if let Err(e) = self.rotate() {
                    may_rotate = false;
                    self.complain(format!("cannot rotate the events file: {e}; it grows on"));
                }
            }
            pending += 1;
        }
        self.flush(pending);
    }

    /// Writes the `n` events in `buf` (and syncs them, by the policy).
    fn flush(&mut self, n: u64) {
        if self.buf.is_empty() {
            return;
        }
        let written = self
            .file
            .write_all(&self.buf)
            .and_then(|()| match self.options.fsync {
                FsyncPolicy::Batch => self.file.sync_data(),
                FsyncPolicy::None => Ok(()),
            });
        match written {
            Ok(()) => {
                self.size += self.buf.len() as u64;
                self.stats.written.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                // Cut what may have been written, so no half line stays
                // (after a failed fdatasync the bytes' fate is unknown:
                // they are dropped and counted as lost).
                let _ = self.file.set_len(self.size);
                self.stats.write_failed.fetch_add(n, Ordering::Relaxed);
                let what = format!(
                    "{}: cannot write {n} events: {e}; they are lost",
                    self.files.active().display()
                );
                self.complain(what);
            }
        }
        self.buf.clear();
    }

    /// Renames the active file to its generation's name, starts the next,
    /// and removes rotated files beyond `keep` that the webhook passed.
    fn rotate(&mut self) -> io::Result<()> {
        let active = self.files.active();
        std::fs::rename(&active, self.files.rotated(self.generation))?;
        let file = open_append(&active)?;
        crate::spool::sync_dir(self.files.dir())?;
        self.file = file;
        self.generation += 1;
        self.size = 0;
        self.stats.rotations.fetch_add(1, Ordering::Relaxed);
        self.trim();
        Ok(())
    }

    /// Removes the oldest rotated files beyond `keep`, stopping at the
    /// first one the webhook's cursor has not passed.
    fn trim(&mut self) {
        let rotated = match self.files.rotated_generations() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target: "events", "{}: cannot list: {e}", self.files.dir().display());
                return;
            }
        };
        let excess = rotated.len().saturating_sub(self.options.keep);
        if excess == 0 {
            return;
        }
        let passed = match &self.options.cursor {
            None => u64::MAX,
            Some(path) => match CursorFile::new(path).load() {
                Ok(Some(c)) => c.generation,
                // No cursor yet: the poster starts at the oldest file.
                Ok(None) => 0,
                Err(e) => {
                    tracing::warn!(target: "events", "{e}; rotated events files are kept");
                    0
                }
            },
        };
        for &g in &rotated[..excess] {
            if g >= passed {
                break;
            }
            let path = self.files.rotated(g);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(target: "events", "{}: cannot remove: {e}", path.display());
            }
        }
    }

    fn complain(&mut self, what: String) {
        if let Some(held) = self.failing.hit() {
            tracing::error!(target: "events", "{what} ({held} more such errors since the last line)");
        }
    }
}

/// Opens `path` for appending (and reading, to check its last line),
/// creating it with mode 0600.
fn open_append(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Cuts a last line without its `\n` (a write cut short by a crash) and
/// returns the file's length after. Readers only ever consume whole lines,
/// so nothing read is cut.
fn cut_torn_tail(file: &File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let window = len.min(1 << 20);
    let mut tail = vec![0u8; window as usize];
    file.read_exact_at(&mut tail, len - window)?;
    if tail.last() == Some(&b'\n') {
        return Ok(len);
    }
    let keep = match memchr::memrchr(b'\n', &tail) {
        Some(i) => len - window + i as u64 + 1,
        None if window == len => 0,
        // A line over 1 MiB without an end: leave it, readers skip it.
        None => return Ok(len),
    };
    tracing::warn!(target: "events", "events file: cut a half-written last line of {} bytes (a crash during a write)", len - keep);
    file.set_len(keep)?;
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::obs::events::cursor::Cursor;
    use crate::obs::events::EventKind;

    fn options(dir: &std::path::Path, cursor: Option<PathBuf>) -> WriterOptions {
        WriterOptions {
            file: dir.join("events").join("events.jsonl"),
            max_file_size: 1000,
            keep: 1,
            fsync: FsyncPolicy::Batch,
            cursor,
        }
    }

    fn batch(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event::new(EventKind::Delivered, format!("Q{i:04}")))
            .collect()
    }

    #[test]
    fn rotation_keeps_files_the_cursor_has_not_passed() {
        let dir = tempfile::tempdir().unwrap();
        let cursor_path = dir.path().join("cursor");
        let stats = Arc::new(EventStats::default());
        let mut log = EventLog::open(
            options(dir.path(), Some(cursor_path.clone())),
            Arc::clone(&stats),
        )
        .unwrap();
        let files = log.files.clone();
        // Each batch of 5 events is about 500 bytes: two fill a file.
        for _ in 0..8 {
            log.write_batch(&mut batch(5));
        }
        assert_eq!(EventStats::get(&stats.written), 40);
        let rotated = files.rotated_generations().unwrap();
        assert!(
            rotated.len() >= 3,
            "no cursor yet: every rotated file stays: {rotated:?}"
        );
        assert_eq!(rotated[0], 1);
        // The webhook has passed generation 1 and 2 (it reads 3).
        CursorFile::new(&cursor_path)
            .store(Cursor {
                generation: 3,
                offset: 0,
            })
            .unwrap();
        for _ in 0..2 {
            log.write_batch(&mut batch(5));
        }
        let after = files.rotated_generations().unwrap();
        assert_eq!(
            after[0], 3,
            "1 and 2 removed, 3 kept although keep = 1: {after:?}"
        );
        assert!(after.len() > 1);
        // Every line in every file is a whole event.
        let mut lines = 0;
        for g in after
            .iter()
            .map(|&g| files.rotated(g))
            .chain([files.active()])
        {
            let text = std::fs::read_to_string(g).unwrap();
            for l in text.lines() {
                serde_json::from_str::<Event>(l).unwrap();
                lines += 1;
            }
        }
        assert!(lines > 0);
    }

    #[test]
    fn without_a_webhook_only_keep_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let mut log =
            EventLog::open(options(dir.path(), None), Arc::new(EventStats::default())).unwrap();
        for _ in 0..10 {
            log.write_batch(&mut batch(5));
        }
        let rotated = log.files.rotated_generations().unwrap();
        assert_eq!(rotated.len(), 1, "{rotated:?}");
        assert_eq!(rotated[0] + 1, log.generation);
    }

    #[test]
    fn a_torn_last_line_is_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), None);
        std::fs::create_dir_all(opts.file.parent().unwrap()).unwrap();
        std::fs::write(&opts.file, b"{\"a\":1}\n{\"b\":").unwrap();
        let log = EventLog::open(opts.clone(), Arc::new(EventStats::default())).unwrap();
        assert_eq!(log.size, 8);
        assert_eq!(std::fs::read(&opts.file).unwrap(), b"{\"a\":1}\n");
    }

    #[test]
    fn the_thread_writes_everything_queued_before_stop() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path(), None);
        opts.max_file_size = 64 << 20;
        let (tx, rx) = crossbeam_channel::bounded(10_000);
        let stats = Arc::new(EventStats::default());
        let writer = Writer::start(opts.clone(), rx, Arc::clone(&stats), None).unwrap();
        for e in batch(3000) {
            tx.send(e).unwrap();
        }
        writer.stop();
        let text = std::fs::read_to_string(&opts.file).unwrap();
        let ids: std::collections::HashSet<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Event>(l).unwrap().id)
            .collect();
        assert_eq!(ids.len(), 3000);
        assert_eq!(EventStats::get(&stats.written), 3000);
    }
}
