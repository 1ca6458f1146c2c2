//! What became of each campaign recipient: one append-only journal per
//! campaign and shard, `spool_dir/campaigns/<ID>.<SHARD>.results`, one line
//! per delivery result (tab-separated: recipient index, address, status,
//! DSN code, Unix time, reply). The shard writes each batch of lines as
//! soon as the results are recorded (as it writes the status bytes in
//! place, so a killed daemon keeps both) and its next group commit
//! fdatasyncs them before the segments whose status bytes it makes
//! durable ([`ResultsWriter::take_unsynced`]); a
//! line whose status byte was lost (a crash before the commit) is followed
//! by a later line for the same recipient, and the last line wins.
//! `campaign show` and `campaign report` read these files; they stay when
//! the queue segments of a finished campaign are gone.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::QueueError;

/// One line of a journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultLine {
    /// The recipient's index in the campaign.
    pub index: u32,
    /// Its address.
    pub email: String,
    /// `sent`, `deferred`, `bounced`, `expired`, `suppressed`, `cancelled`.
    pub status: String,
    /// The enhanced status code.
    pub dsn: String,
    /// When, Unix seconds.
    pub time: u64,
    /// The reply or reason.
    pub reply: String,
}

/// Counts of one campaign, by the last line of each recipient.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultCounts {
    /// Accepted by the receiver.
    pub sent: u64,
    /// Last tried and deferred (will be tried again).
    pub deferred: u64,
    /// Refused for good.
    pub bounced: u64,
    /// Too long in the queue.
    pub expired: u64,
    /// On the suppression list when their turn came.
    pub suppressed: u64,
    /// Not sent: the campaign was cancelled.
    pub cancelled: u64,
}

impl ResultCounts {
    /// Recipients with a line.
    pub fn seen(&self) -> u64 {
        self.sent + self.deferred + self.bounced + self.expired + self.suppressed + self.cancelled
    }

    /// Recipients whose outcome is final.
    pub fn done(&self) -> u64 {
        self.seen() - self.deferred
    }
}

/// A shard's journal writer: lines gathered between commits.
pub struct ResultsWriter {
    dir: PathBuf,
    /// The file's middle name: the shard number, or `async` for results
    /// learnt later (bounce reports).
    label: String,
    pending: HashMap<u64, Vec<u8>>,
    /// Shared with the commit that syncs them (see
    /// [`ResultsWriter::take_unsynced`]).
    files: HashMap<u64, Arc<File>>,
    unsynced: std::collections::HashSet<u64>,
}

impl ResultsWriter {
    /// A writer for `shard` into `dir` (the spool's `campaigns/`).
    pub fn new(dir: &Path, shard: usize) -> ResultsWriter {
        ResultsWriter::named(dir, &shard.to_string())
    }

    /// A writer of results learnt after delivery (bounce reports that
    /// arrive later): `<ID>.async.results`. Its lines win over a shard's
    /// line of the same second.
    pub fn for_async(dir: &Path) -> ResultsWriter {
        ResultsWriter::named(dir, ASYNC)
    }

    fn named(dir: &Path, label: &str) -> ResultsWriter {
        ResultsWriter {
            dir: dir.to_path_buf(),
            label: label.to_string(),
            pending: HashMap::new(),
            files: HashMap::new(),
            unsynced: std::collections::HashSet::new(),
        }
    }

    /// Notes a result of recipient `index` of campaign `cid`.
    pub fn note(
        &mut self,
        cid: u64,
        index: u32,
        email: &str,
        status: &str,
        dsn: &str,
        reply: &str,
    ) {
        let time = crate::model::now_micros() / 1_000_000;
        let buf = self.pending.entry(cid).or_default();
        let clean = |s: &str| s.replace(['\t', '\r', '\n'], " ");
        let _ = writeln!(
            buf,
            "{index}\t{}\t{status}\t{}\t{time}\t{}",
            clean(email),
            clean(dsn),
            clean(reply)
        );
    }

    /// True when lines wait to be written.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the lines noted so far into the files (the page cache: they
    /// survive the daemon being killed, as the status bytes written in
    /// place do). Called after each batch of results.
    pub fn write_out(&mut self) -> Result<(), QueueError> {
        self.write(false)
    }

    /// Writes and fdatasyncs every file written since the last call (before
    /// a commit makes the status bytes durable).
    pub fn flush(&mut self) -> Result<(), QueueError> {
        self.write(true)
    }

    /// Writes the lines noted so far and hands over every file written
    /// since the last call, for the caller to fdatasync (a shard's group
    /// commit, on its I/O backend, before it syncs the segments). The
    /// files are no longer counted as unsynced: a failed sync is the
    /// caller's to report.
    pub fn take_unsynced(&mut self) -> Result<Vec<(Arc<File>, PathBuf)>, QueueError> {
        self.write(false)?;
        Ok(std::mem::take(&mut self.unsynced)
            .into_iter()
            .filter_map(|cid| {
                let f = self.files.get(&cid)?;
                Some((Arc::clone(f), results_path(&self.dir, cid, &self.label)))
            })
            .collect())
    }

    fn write(&mut self, sync: bool) -> Result<(), QueueError> {
        for (cid, buf) in std::mem::take(&mut self.pending) {
            let path = results_path(&self.dir, cid, &self.label);
            let f = match self.files.entry(cid) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(Arc::new(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .map_err(|e| QueueError::io("open", &path, e))?,
                )),
            };
            (&**f)
                .write_all(&buf)
                .map_err(|e| QueueError::io("write", &path, e))?;
            self.unsynced.insert(cid);
        }
        if sync {
            for cid in std::mem::take(&mut self.unsynced) {
                if let Some(f) = self.files.get(&cid) {
                    let path = results_path(&self.dir, cid, &self.label);
                    f.sync_data()
                        .map_err(|e| QueueError::io("fdatasync", &path, e))?;
                }
            }
        }
        Ok(())
    }

    /// True when lines were written and not yet synced.
    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty()
    }

    /// Closes campaign `cid`'s file (its last slice here is done).
    pub fn close(&mut self, cid: u64) {
        self.files.remove(&cid);
    }
}

/// The label of the results learnt after delivery.
const ASYNC: &str = "async";

fn results_path(dir: &Path, cid: u64, label: &str) -> PathBuf {
    dir.join(format!("{cid}.{label}.results"))
}

/// Every journal of campaign `cid` in `dir`, read; calls `each` with the
/// last line of each recipient (in no particular order). Torn or
/// unreadable lines (a crash while writing) are skipped.
pub fn read_results(
    dir: &Path,
    cid: u64,
    mut each: impl FnMut(&ResultLine),
) -> Result<ResultCounts, QueueError> {
    let mut last: HashMap<u32, (ResultLine, bool)> = HashMap::new();
    for (path, later) in journals(dir, cid)? {
        let f = File::open(&path).map_err(|e| QueueError::io("open", &path, e))?;
        for line in BufReader::new(f).split(b'\n') {
            let line = line.map_err(|e| QueueError::io("read", &path, e))?;
            let Some(r) = parse_line(&line) else { continue };
            // Later lines of one recipient replace earlier ones: in one
            // file the order is the order of events (a recipient is only
            // ever on one shard); between a shard's file and the async one
            // the time decides, and a bounce report wins its second.
            let newer = match last.get(&r.index) {
                Some((t, was_later)) => replaces(r.time, later, t.time, *was_later),
                None => true,
            };
            if newer {
                last.insert(r.index, (r, later));
            }
        }
    }
    let mut counts = ResultCounts::default();
    for (r, _) in last.values() {
        match r.status.as_str() {
            "sent" => counts.sent += 1,
            "deferred" => counts.deferred += 1,
            "bounced" => counts.bounced += 1,
            "expired" => counts.expired += 1,
            "suppressed" => counts.suppressed += 1,
            "cancelled" => counts.cancelled += 1,
            _ => continue,
        }
        each(r);
    }
    Ok(counts)
}

/// Whether a line of time `time` (from the async journal when `later`)
/// replaces a recipient's line of `old_time` (`old_later`): see
/// [`read_results`].
fn replaces(time: u64, later: bool, old_time: u64, old_later: bool) -> bool {
    time > old_time || (time == old_time && (later || !old_later))
}

/// A campaign's counts kept up to date by reading only what its journals
/// gained since the last [`ResultTally::update`] (the metrics scrape
/// calls it often; a whole journal of a large campaign is read once).
/// Holds 16 bytes per recipient seen.
#[derive(Debug, Default)]
pub struct ResultTally {
    /// Per recipient: its last status (index into `STATUSES`), time and
    /// whether it came from the async journal.
    last: HashMap<u32, (u8, u64, bool)>,
    /// Bytes of complete lines read so far, per journal.
    read: HashMap<PathBuf, u64>,
    counts: ResultCounts,
}

/// The statuses a journal line may carry, in `ResultTally`'s numbering.
const STATUSES: [&str; 6] = [
    "sent",
    "deferred",
    "bounced",
    "expired",
    "suppressed",
    "cancelled",
];

impl ResultTally {
    /// Reads what campaign `cid`'s journals in `dir` gained and returns
    /// the counts (as [`read_results`] would). A journal that shrank
    /// (replaced) makes it start over.
    pub fn update(&mut self, dir: &Path, cid: u64) -> Result<ResultCounts, QueueError> {
        use std::io::{Read, Seek, SeekFrom};
        for (path, later) in journals(dir, cid)? {
            let mut f = File::open(&path).map_err(|e| QueueError::io("open", &path, e))?;
            let len = f
                .metadata()
                .map_err(|e| QueueError::io("stat", &path, e))?
                .len();
            let done = self.read.get(&path).copied().unwrap_or(0);
            if len < done {
                *self = ResultTally::default();
                return self.update(dir, cid);
            }
            if len == done {
                continue;
            }
            f.seek(SeekFrom::Start(done))
                .map_err(|e| QueueError::io("seek", &path, e))?;
            let mut buf = Vec::with_capacity((len - done) as usize);
            f.take(len - done)
                .read_to_end(&mut buf)
                .map_err(|e| QueueError::io("read", &path, e))?;
            // A line still being written waits for the next call.
            let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for line in buf[..complete].split(|&b| b == b'\n') {
                if let Some(r) = parse_line(line) {
                    self.apply(&r, later);
                }
            }
            self.read.insert(path, done + complete as u64);
        }
        Ok(self.counts.clone())
    }

    fn apply(&mut self, r: &ResultLine, later: bool) {
        let Some(status) = STATUSES.iter().position(|s| *s == r.status) else {
            return;
        };
        let status = status as u8;
        if let Some((old, time, was_later)) = self.last.get(&r.index).copied() {
            if !replaces(r.time, later, time, was_later) {
                return;
            }
            *self.count(old) -= 1;
        }
        *self.count(status) += 1;
        self.last.insert(r.index, (status, r.time, later));
    }

    fn count(&mut self, status: u8) -> &mut u64 {
        let c = &mut self.counts;
        match status {
            0 => &mut c.sent,
            1 => &mut c.deferred,
            2 => &mut c.bounced,
            3 => &mut c.expired,
            4 => &mut c.suppressed,
            _ => &mut c.cancelled,
        }
    }
}

/// The address of recipient `index` of campaign `cid`, from the first line
/// that names it in any of the campaign's journals in `dir` (stops there:
/// every line of a recipient has its address). `None` when the recipient
/// has no line yet (it was never tried).
pub fn find_recipient(dir: &Path, cid: u64, index: u32) -> Result<Option<String>, QueueError> {
    let wanted = format!("{index}\t");
    for (path, _) in journals(dir, cid)? {
        let f = File::open(&path).map_err(|e| QueueError::io("open", &path, e))?;
        for line in BufReader::new(f).split(b'\n') {
            let line = line.map_err(|e| QueueError::io("read", &path, e))?;
            if !line.starts_with(wanted.as_bytes()) {
                continue;
            }
            if let Some(r) = parse_line(&line) {
                return Ok(Some(r.email));
            }
        }
    }
    Ok(None)
}

/// The journals of campaign `cid` in `dir`, each with whether it is the
/// async one (results learnt later); none when `dir` does not exist.
fn journals(dir: &Path, cid: u64) -> Result<Vec<(PathBuf, bool)>, QueueError> {
    let prefix = format!("{cid}.");
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(QueueError::io("readdir", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| QueueError::io("readdir", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".results") {
            out.push((entry.path(), name.ends_with(&format!(".{ASYNC}.results"))));
        }
    }
    Ok(out)
}

fn parse_line(line: &[u8]) -> Option<ResultLine> {
    let text = std::str::from_utf8(line).ok()?;
    let mut f = text.split('\t');
    let index = f.next()?.parse().ok()?;
    let email = f.next()?.to_string();
    let status = f.next()?.to_string();
    let dsn = f.next()?.to_string();
    let time = f.next()?.parse().ok()?;
    let reply = f.next()?.to_string();
    f.next().is_none().then_some(ResultLine {
        index,
        email,
        status,
        dsn,
        time,
        reply,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_journals_are_handed_over_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResultsWriter::new(dir.path(), 2);
        assert!(w.take_unsynced().unwrap().is_empty(), "nothing written yet");
        w.note(7, 0, "a@x", "sent", "2.0.0", "250 ok");
        w.note(8, 3, "b@x", "deferred", "4.0.0", "later");
        let mut taken: Vec<PathBuf> = w
            .take_unsynced()
            .unwrap()
            .into_iter()
            .map(|(f, path)| {
                f.sync_data().unwrap();
                path
            })
            .collect();
        taken.sort();
        assert_eq!(
            taken,
            vec![
                dir.path().join("7.2.results"),
                dir.path().join("8.2.results")
            ]
        );
        assert!(!w.has_pending() && !w.has_unsynced());
        assert!(w.take_unsynced().unwrap().is_empty(), "handed over once");
        // The lines were written before the files were handed over.
        let c = read_results(dir.path(), 8, |_| {}).unwrap();
        assert_eq!(c.deferred, 1);
        w.note(7, 1, "c@x", "sent", "2.0.0", "250 ok");
        let again = w.take_unsynced().unwrap();
        assert_eq!(again.len(), 1, "only the journal written since");
        assert_eq!(again[0].1, dir.path().join("7.2.results"));
    }

    #[test]
    fn last_line_wins_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut w0 = ResultsWriter::new(dir.path(), 0);
        let mut w1 = ResultsWriter::new(dir.path(), 1);
        w0.note(5, 0, "a@x", "deferred", "4.0.0", "busy\ttry later");
        w0.note(5, 1, "b@x", "bounced", "5.1.1", "no such user");
        w0.flush().unwrap();
        w0.note(5, 0, "a@x", "sent", "2.0.0", "250 ok");
        w1.note(5, 1024, "c@x", "deferred", "4.0.0", "later");
        w1.note(6, 0, "z@x", "sent", "2.0.0", "other campaign");
        w0.flush().unwrap();
        w1.flush().unwrap();
        // A torn line at the end (a crash mid-write).
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("5.1.results"))
            .unwrap();
        f.write_all(b"1025\tq@x\tsent\t2.0").unwrap();
        let mut lines = Vec::new();
        let c = read_results(dir.path(), 5, |r| lines.push(r.clone())).unwrap();
        assert_eq!((c.sent, c.deferred, c.bounced), (1, 1, 1));
        assert_eq!((c.seen(), c.done()), (3, 2));
        let a = lines.iter().find(|r| r.index == 0).unwrap();
        assert_eq!((a.status.as_str(), a.reply.as_str()), ("sent", "250 ok"));
        let b = lines.iter().find(|r| r.index == 1).unwrap();
        assert_eq!(b.dsn, "5.1.1");
        assert_eq!(
            read_results(dir.path(), 7, |_| {}).unwrap(),
            ResultCounts::default()
        );
    }

    #[test]
    fn a_tally_reads_only_what_was_added_and_agrees_with_a_full_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut tally = ResultTally::default();
        assert_eq!(
            tally.update(dir.path(), 5).unwrap(),
            ResultCounts::default()
        );
        let mut w0 = ResultsWriter::new(dir.path(), 0);
        w0.note(5, 0, "a@x", "deferred", "4.0.0", "busy");
        w0.note(5, 1, "b@x", "sent", "2.0.0", "ok");
        w0.flush().unwrap();
        let c = tally.update(dir.path(), 5).unwrap();
        assert_eq!((c.sent, c.deferred), (1, 1));
        // A line still being written is not counted until it is whole.
        let path = dir.path().join("5.0.results");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"2\tc@x\tbounced\t5.1.1").unwrap();
        let c = tally.update(dir.path(), 5).unwrap();
        assert_eq!((c.sent, c.deferred, c.bounced), (1, 1, 0));
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        f.write_all(format!("\t{t}\tno such user\n").as_bytes())
            .unwrap();
        w0.note(5, 0, "a@x", "sent", "2.0.0", "ok now");
        w0.flush().unwrap();
        let c = tally.update(dir.path(), 5).unwrap();
        assert_eq!((c.sent, c.deferred, c.bounced), (2, 0, 1), "{c:?}");
        assert_eq!(c, read_results(dir.path(), 5, |_| {}).unwrap());
        // A journal replaced by a shorter one: counted again from the start.
        std::fs::write(&path, format!("0\ta@x\tsent\t2.0.0\t{t}\tok\n")).unwrap();
        let c = tally.update(dir.path(), 5).unwrap();
        assert_eq!((c.sent, c.deferred, c.bounced), (1, 0, 0), "{c:?}");
    }

    #[test]
    fn find_recipient_reads_any_shard_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find_recipient(dir.path(), 5, 0).unwrap(), None);
        let mut w0 = ResultsWriter::new(dir.path(), 0);
        let mut w1 = ResultsWriter::new(dir.path(), 1);
        w0.note(5, 0, "a@x", "deferred", "4.0.0", "busy");
        w0.note(5, 10, "ten@x", "sent", "2.0.0", "ok");
        w1.note(5, 1024, "c@x", "sent", "2.0.0", "ok");
        w1.note(6, 1, "other@x", "sent", "2.0.0", "other campaign");
        w0.flush().unwrap();
        w1.flush().unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("5.1.results"))
            .unwrap();
        f.write_all(b"1\ttorn@x\tse").unwrap();
        let find = |cid, i| find_recipient(dir.path(), cid, i).unwrap();
        assert_eq!(find(5, 0).as_deref(), Some("a@x"));
        assert_eq!(find(5, 10).as_deref(), Some("ten@x"));
        assert_eq!(find(5, 1024).as_deref(), Some("c@x"));
        // Index 1 is not index 10 or 1024, and its only line is torn.
        assert_eq!(find(5, 1), None);
        // Campaign 6's lines are not campaign 5's (nor 56's).
        assert_eq!(find(6, 1).as_deref(), Some("other@x"));
        assert_eq!(find(56, 1), None);
        assert_eq!(find(5, 2), None);
    }
}
