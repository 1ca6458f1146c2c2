//! Compaction: the live set written to a new journal that replaces the
//! old one. Done under the writers' lock: the new file is written under a
//! temporary name, locked, fsync'd, renamed over the journal, and the
//! directory fsync'd before the lock is released, so a writer that opens
//! the new file waits until the rename is durable.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use super::journal::Journal;
use super::line;
use super::set::LiveSet;
use super::SuppressError;

/// The temporary file's name prefix.
const TEMP_PREFIX: &str = "journal.compact.";

/// What a compaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compacted {
    /// Lines in the journal before.
    pub lines_before: u64,
    /// Lines after: the header and one per live entry.
    pub lines_after: u64,
}

/// Rewrites the journal as `set`. Call with the lock held and every line
/// read into `set`. On an error before the rename the old journal stays.
pub(crate) fn compact(journal: &mut Journal, set: &LiveSet) -> Result<Compacted, SuppressError> {
    let lines_before = journal.lines();
    let old = journal.file_meta()?;
    remove_stale_temp_files(journal.dir());
    let temp = journal
        .dir()
        .join(format!("{TEMP_PREFIX}{}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| SuppressError::io("create", &temp, e))?;
    let written = write_temp(&file, &temp, &old, set);
    let (bytes, lines) = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&temp, journal.path()) {
        let _ = std::fs::remove_file(&temp);
        return Err(SuppressError::io("rename", &temp, e));
    }
    let replaced = journal.replace_with(file, bytes, lines);
    if let Err(e) = crate::spool::sync_dir(journal.dir()) {
        // The rename may or may not survive a crash: take no more writes.
        journal.poison();
        return Err(SuppressError::io("fsync", journal.dir(), e));
    }
    replaced?;
    Ok(Compacted {
        lines_before,
        lines_after: lines,
    })
}

/// Locks the new file, gives it the old one's owner and mode, writes the
/// header and the entries and fsyncs it. Returns its bytes and lines.
fn write_temp(
    file: &File,
    temp: &Path,
    old: &std::fs::Metadata,
    set: &LiveSet,
) -> Result<(u64, u64), SuppressError> {
    let io = |op, e| SuppressError::io(op, temp, e);
    flock(file, FlockOperation::LockExclusive).map_err(|e| io("flock", e.into()))?;
    let mine = file.metadata().map_err(|e| io("fstat", e))?;
    if (mine.uid(), mine.gid()) != (old.uid(), old.gid()) {
        std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid()))
            .map_err(|e| io("fchown", e))?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o7777))
        .map_err(|e| io("fchmod", e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut buf = Vec::with_capacity(256);
    line::encode_header(&mut buf);
    let mut bytes = 0u64;
    let mut lines = 1u64;
    for i in set.sorted() {
        line::encode_add(&set.entry(i), &mut buf);
        lines += 1;
        if buf.len() >= 64 * 1024 {
            out.write_all(&buf).map_err(|e| io("write", e))?;
            bytes += buf.len() as u64;
            buf.clear();
        }
    }
    out.write_all(&buf).map_err(|e| io("write", e))?;
    bytes += buf.len() as u64;
    out.flush().map_err(|e| io("write", e))?;
    drop(out);
    file.sync_all().map_err(|e| io("fsync", e))?;
    Ok((bytes, lines))
}

/// Removes the temporary files of compactions that were killed. Only
/// called under the lock, which every compaction holds while its file
/// exists, so none of them is in use.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let stale: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
        .map(|e| e.path())
        .collect();
    for path in stale {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            // Left for the next compaction; it does no harm meanwhile.
            Err(_) => {}
        }
    }
}
