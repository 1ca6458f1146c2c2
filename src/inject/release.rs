//! Tells the shards when the spool files of queued messages are gone for
//! good, so they may delete the queue segments holding those records.
//!
//! A file left in the spool by a killed daemon is recognised at the next
//! start only by its message record (see `leftovers`), so a record read from
//! a file must outlive the file, not just the message's delivery. Unlinks are
//! not durable on their own: after a power loss an unlinked name can come
//! back. So released messages are gathered, and about once a second (and
//! when pickup finishes) pickup fsyncs `maildrop/` and `pickup/` and only
//! then hands the gathered IDs to their shards. If that fsync fails, the IDs
//! wait for the next try: a segment kept a little longer costs disk space,
//! a segment deleted too early could let a file be queued twice.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::model::QueueId;

use super::leftovers::QueuedAs;

/// How often gathered releases are made durable and handed over.
pub const RELEASE_INTERVAL: Duration = Duration::from_secs(1);

/// Receives, per shard, the IDs of messages whose spool file is gone.
pub type ReleaseSink = dyn FnMut(usize, Vec<QueueId>) + Send;

/// Gathers released messages and hands them over after a directory fsync.
pub struct Releases {
    dirs: Vec<PathBuf>,
    /// Per directory: names were removed from it since its last fsync.
    touched: Vec<bool>,
    pending: Vec<QueuedAs>,
    sink: Option<Box<ReleaseSink>>,
    last: Instant,
}

impl Releases {
    /// Releases whose unlinks happen in `dirs` (fsync'd before each hand-over).
    pub fn new(dirs: Vec<PathBuf>) -> Releases {
        Releases {
            touched: vec![false; dirs.len()],
            dirs,
            pending: Vec::new(),
            sink: None,
            last: Instant::now(),
        }
    }

    /// Where released IDs go. Without a sink (tests of the scanner alone)
    /// nothing is gathered.
    pub fn set_sink(&mut self, sink: Box<ReleaseSink>) {
        self.sink = Some(sink);
    }

    /// Gathers one message whose file was unlinked from `dir` (one of
    /// the directories given to [`Releases::new`]; only those touched are
    /// fsync'd), or that matched no file (`None`: all are fsync'd).
    pub fn push(&mut self, queued: QueuedAs, dir: Option<&std::path::Path>) {
        if self.sink.is_none() {
            return;
        }
        self.pending.push(queued);
        match dir.and_then(|d| self.dirs.iter().position(|known| known == d)) {
            Some(i) => self.touched[i] = true,
            None => self.touched.iter_mut().for_each(|t| *t = true),
        }
    }

    /// Messages gathered and not yet handed over.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Hands the gathered IDs over if [`RELEASE_INTERVAL`] has passed since
    /// the last time (or `now_anyway`), after fsyncing the directories.
    pub fn flush(&mut self, now_anyway: bool) {
        if self.pending.is_empty() || (!now_anyway && self.last.elapsed() < RELEASE_INTERVAL) {
            return;
        }
        self.last = Instant::now();
        for (dir, touched) in self.dirs.iter().zip(self.touched.iter_mut()) {
            if !*touched {
                continue;
            }
            if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
                tracing::warn!(target: "pickup", "{}: cannot fsync: {e}; queue segments of {} delivered messages are kept until it succeeds", dir.display(), self.pending.len());
                return;
            }
            *touched = false;
        }
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_unstable_by_key(|q| q.shard);
        for run in pending.chunk_by(|a, b| a.shard == b.shard) {
            // `chunk_by` yields no empty slice.
            let Some(first) = run.first() else { continue };
            sink(first.shard, run.iter().map(|q| q.id).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Got = Arc<Mutex<Vec<(usize, Vec<QueueId>)>>>;

    fn collecting(dirs: Vec<PathBuf>) -> (Releases, Got) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut r = Releases::new(dirs);
        let sink = Arc::clone(&got);
        r.set_sink(Box::new(move |shard, ids| {
            sink.lock().unwrap().push((shard, ids))
        }));
        (r, got)
    }

    fn q(shard: usize, seq: u64) -> QueuedAs {
        QueuedAs {
            shard,
            id: QueueId::new(shard, seq),
        }
    }

    #[test]
    fn hands_over_per_shard_after_the_interval_or_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let (mut r, got) = collecting(vec![dir.path().to_path_buf()]);
        let d = Some(dir.path());
        r.push(q(1, 10), d);
        r.push(q(0, 11), d);
        r.push(q(1, 12), d);
        r.flush(false);
        assert!(got.lock().unwrap().is_empty(), "not before the interval");
        assert_eq!(r.pending(), 3);
        r.flush(true);
        let mut got = got.lock().unwrap().clone();
        got.sort();
        assert_eq!(
            got,
            vec![
                (0, vec![QueueId::new(0, 11)]),
                (1, vec![QueueId::new(1, 10), QueueId::new(1, 12)])
            ]
        );
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn keeps_the_ids_while_a_directory_cannot_be_synced() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        std::fs::create_dir(&gone).unwrap();
        let (mut r, got) = collecting(vec![gone.clone()]);
        r.push(q(0, 1), Some(&gone));
        std::fs::remove_dir(&gone).unwrap();
        r.flush(true);
        assert!(got.lock().unwrap().is_empty());
        assert_eq!(r.pending(), 1, "kept for the next try");
        std::fs::create_dir(&gone).unwrap();
        r.flush(true);
        assert_eq!(got.lock().unwrap().len(), 1);
    }

    #[test]
    fn fsyncs_only_the_directories_names_were_removed_from() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        // b does not exist: fsyncing it would fail and keep the IDs.
        let (mut r, got) = collecting(vec![a.clone(), b.clone()]);
        r.push(q(0, 1), Some(&a));
        r.flush(true);
        assert_eq!(got.lock().unwrap().len(), 1, "only a was synced");
        r.push(q(0, 2), None);
        r.flush(true);
        assert_eq!(r.pending(), 1, "no file behind it: both synced, b fails");
    }

    #[test]
    fn gathers_nothing_without_a_sink() {
        let mut r = Releases::new(Vec::new());
        r.push(q(0, 1), None);
        assert_eq!(r.pending(), 0);
    }
}
