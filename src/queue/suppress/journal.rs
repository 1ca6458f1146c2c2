//! The journal file: reading the lines appended since the last read,
//! noticing when the file was replaced (a compaction elsewhere), the
//! writers' lock, and durable appends.
//!
//! Writers lock the journal itself with `flock`. Compaction replaces the
//! file by a rename, so a writer that waited for the lock checks, once it
//! has it, that its descriptor is still the file at the path, and opens
//! the path again when not. Readers take no lock: they read complete
//! lines only and leave a line without its LF for the next read (a write
//! in progress, or a writer that was killed: the next writer cuts it).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use super::line::{self, Line};
use super::{Notice, SuppressError};

/// A line longer than this is damaged (a real one is under 4 KiB).
const MAX_LINE: usize = 16 * 1024;

/// What the caller must do before applying what [`Journal::read`] gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// Go on: the lines continue what was read before.
    Continue,
    /// Start from an empty set: the file is new or was replaced.
    Fresh,
}

/// The journal of one suppression list, as this process reads it.
pub(crate) struct Journal {
    dir: PathBuf,
    path: PathBuf,
    /// The file as opened, if it exists.
    file: Option<File>,
    /// Whether `file` was opened for appending.
    writable: bool,
    /// Device and inode of `file`.
    id: (u64, u64),
    /// Bytes of complete lines read.
    offset: u64,
    /// Complete lines read.
    lines: u64,
    /// Where the last torn tail reported was, so it is reported once.
    torn_reported: Option<u64>,
    /// Set when an fdatasync failed.
    poisoned: bool,
}

impl Journal {
    /// The journal `journal` in the directory `dir`; nothing is opened yet.
    pub(crate) fn new(dir: &Path) -> Journal {
        Journal {
            dir: dir.to_path_buf(),
            path: dir.join("journal"),
            file: None,
            writable: false,
            id: (0, 0),
            offset: 0,
            lines: 0,
            torn_reported: None,
            poisoned: false,
        }
    }

    /// The journal's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The journal's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Complete lines read (or written) so far in the current file.
    pub(crate) fn lines(&self) -> u64 {
        self.lines
    }

    /// Checks whether the file at the path is still the one read, opening
    /// it when it appeared or was replaced (then [`Start::Fresh`]).
    pub(crate) fn poll(&mut self) -> Result<Start, SuppressError> {
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if self.file.take().is_some() {
                    // Removed: the list is now empty.
                    self.reset((0, 0));
                    return Ok(Start::Fresh);
                }
                Ok(Start::Continue)
            }
            Err(e) => Err(SuppressError::io("stat", &self.path, e)),
            Ok(meta) if self.file.is_some() && id_of(&meta) == self.id => {
                if meta.len() < self.offset {
                    // Shrunk under us (edited by hand): read it again.
                    self.open_read()?;
                    return Ok(Start::Fresh);
                }
                Ok(Start::Continue)
            }
            Ok(_) => {
                self.open_read()?;
                Ok(Start::Fresh)
            }
        }
    }

    /// Whether the file holds more than was read.
    pub(crate) fn has_more(&self) -> Result<bool, SuppressError> {
        match &self.file {
            None => Ok(false),
            Some(f) => Ok(f
                .metadata()
                .map_err(|e| SuppressError::io("fstat", &self.path, e))?
                .len()
                > self.offset),
        }
    }

    /// Reads the complete lines after the last read and hands each decoded
    /// line to `apply`. Damaged lines are skipped and reported in `notices`;
    /// so is a last line without its LF (once), which is left to be read
    /// again.
    pub(crate) fn read(
        &mut self,
        notices: &mut Vec<Notice>,
        mut apply: impl FnMut(&Line<'_>),
    ) -> Result<(), SuppressError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let io = |op, e| SuppressError::io(op, &self.path, e);
        let mut handle = file;
        handle
            .seek(SeekFrom::Start(self.offset))
            .map_err(|e| io("seek", e))?;
        let mut reader = BufReader::with_capacity(256 * 1024, handle);
        let mut buf = Vec::with_capacity(256);
        loop {
            buf.clear();
            let (used, complete, too_long) =
                next_line(&mut reader, &mut buf).map_err(|e| io("read", e))?;
            if used == 0 {
                break;
            }
            if !complete {
                if self.torn_reported != Some(self.offset) {
                    self.torn_reported = Some(self.offset);
                    notices.push(Notice::TornTail {
                        line: self.lines + 1,
                        bytes: used,
                    });
                }
                break;
            }
            self.offset += used;
            self.lines += 1;
            let decoded = if too_long {
                Err("line too long")
            } else {
                line::decode(&buf)
            };
            match decoded {
                Ok(Line::Comment(c)) if self.lines == 1 && c != line::HEADER => {
                    return Err(SuppressError::Version {
                        path: self.path.clone(),
                        header: c.to_string(),
                    });
                }
                Ok(l) => apply(&l),
                Err(reason) => notices.push(Notice::BadLine {
                    line: self.lines,
                    reason,
                }),
            }
        }
        Ok(())
    }

    /// Takes the writers' lock, opening (or creating) the file for
    /// appending. [`Start::Fresh`] when the file is another than the one
    /// read so far. Call [`Journal::unlock`] when done.
    pub(crate) fn lock(&mut self) -> Result<Start, SuppressError> {
        if self.poisoned {
            return Err(SuppressError::Poisoned {
                path: self.path.clone(),
            });
        }
        let mut start = Start::Continue;
        loop {
            if !self.writable || self.file.is_none() {
                let file = self.open_append()?;
                let id = id_of(&file.metadata().map_err(|e| self.err("fstat", e))?);
                if self.file.is_none() || id != self.id {
                    start = Start::Fresh;
                    self.reset(id);
                }
                self.file = Some(file);
                self.writable = true;
            }
            let Some(file) = &self.file else { continue };
            flock(file, FlockOperation::LockExclusive).map_err(|e| self.err("flock", e.into()))?;
            match std::fs::metadata(&self.path) {
                Ok(meta) if id_of(&meta) == self.id => return Ok(start),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    self.unlock();
                    return Err(self.err("stat", e));
                }
            }
            // Replaced while we waited: open the path again.
            self.unlock();
            self.file = None;
        }
    }

    /// Releases the writers' lock.
    pub(crate) fn unlock(&mut self) {
        if let Some(file) = &self.file {
            // Unlocking a descriptor we locked cannot fail; closing it
            // would release the lock anyway.
            let _ = flock(file, FlockOperation::Unlock);
        }
    }

    /// Appends `bytes` (`lines` complete lines) durably: cuts a torn tail
    /// first, writes the header first into an empty file, and returns
    /// after fdatasync. Call with the lock held and everything read.
    pub(crate) fn append(
        &mut self,
        bytes: &[u8],
        lines: u64,
        notices: &mut Vec<Notice>,
    ) -> Result<(), SuppressError> {
        let path = self.path.clone();
        let Some(mut file) = self.file.as_ref().filter(|_| self.writable) else {
            return Err(SuppressError::io(
                "append",
                path,
                ErrorKind::NotConnected.into(),
            ));
        };
        let len = file
            .metadata()
            .map_err(|e| SuppressError::io("fstat", &path, e))?
            .len();
        if len > self.offset {
            file.set_len(self.offset)
                .map_err(|e| SuppressError::io("ftruncate", &path, e))?;
            notices.push(Notice::TornTailCut {
                line: self.lines + 1,
                bytes: len - self.offset,
            });
        }
        let mut header = Vec::new();
        if self.offset == 0 {
            line::encode_header(&mut header);
        }
        let written = file.write_all(&header).and_then(|()| file.write_all(bytes));
        if let Err(e) = written {
            // Leave no half line behind; the next writer would cut it anyway.
            let _ = file.set_len(self.offset);
            return Err(SuppressError::io("write", &path, e));
        }
        if let Err(e) = file.sync_data() {
            self.poisoned = true;
            return Err(SuppressError::io("fdatasync", &path, e));
        }
        self.offset += (header.len() + bytes.len()) as u64;
        self.lines += lines + u64::from(!header.is_empty());
        self.torn_reported = None;
        Ok(())
    }

    /// Makes `file` (already renamed to the path, locked, `bytes` long with
    /// `lines` lines, all applied) the journal read from now on.
    pub(crate) fn replace_with(
        &mut self,
        file: File,
        bytes: u64,
        lines: u64,
    ) -> Result<(), SuppressError> {
        let id = id_of(&file.metadata().map_err(|e| self.err("fstat", e))?);
        // Dropping the old descriptor releases its lock.
        self.file = Some(file);
        self.writable = true;
        self.reset(id);
        self.offset = bytes;
        self.lines = lines;
        Ok(())
    }

    /// Forgets the open file, so the next [`Journal::poll`] or
    /// [`Journal::lock`] reads it from the start.
    pub(crate) fn invalidate(&mut self) {
        self.file = None;
        self.writable = false;
    }

    /// Marks the list as unwritable after a failed fsync.
    pub(crate) fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Device, inode and mode of the open file.
    pub(crate) fn file_meta(&self) -> Result<std::fs::Metadata, SuppressError> {
        match &self.file {
            Some(f) => f.metadata().map_err(|e| self.err("fstat", e)),
            None => Err(self.err("fstat", ErrorKind::NotFound.into())),
        }
    }

    fn open_read(&mut self) -> Result<(), SuppressError> {
        let file = File::open(&self.path).map_err(|e| self.err("open", e))?;
        let id = id_of(&file.metadata().map_err(|e| self.err("fstat", e))?);
        self.file = Some(file);
        self.writable = false;
        self.reset(id);
        Ok(())
    }

    /// Opens the journal for appending, creating it (and its directory)
    /// when missing: mode 0600 in a 0700 directory, owned by the spool
    /// directory's owner when we are root; the new entries are made
    /// durable at once.
    fn open_append(&self) -> Result<File, SuppressError> {
        let mut opts = OpenOptions::new();
        opts.read(true).append(true);
        match opts.open(&self.path) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(self.err("open", e)),
        }
        let spool = self.dir.parent().unwrap_or(Path::new("/"));
        let made_dir = !self.dir.is_dir();
        if made_dir {
            // The spool itself as `ringmail serve` would make it, if missing.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(spool)
                .map_err(|e| SuppressError::io("create directory", spool, e))?;
            match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
                Ok(()) => give_to_spool_owner(&self.dir, spool)?,
                // Another writer made it just now.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(SuppressError::io("create directory", &self.dir, e)),
            }
        }
        let file = opts
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| self.err("create", e))?;
        give_to_spool_owner(&self.path, spool)?;
        crate::spool::sync_dir(&self.dir).map_err(|e| SuppressError::io("fsync", &self.dir, e))?;
        if made_dir {
            crate::spool::sync_dir(spool).map_err(|e| SuppressError::io("fsync", spool, e))?;
        }
        Ok(file)
    }

    fn reset(&mut self, id: (u64, u64)) {
        self.id = id;
        self.offset = 0;
        self.lines = 0;
        self.torn_reported = None;
    }

    fn err(&self, op: &'static str, e: std::io::Error) -> SuppressError {
        SuppressError::io(op, &self.path, e)
    }
}

/// Device and inode.
pub(crate) fn id_of(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// When we are root, gives `path` to the owner of `spool` (the daemon's
/// user when it is not root), so a root CLI does not lock it out.
fn give_to_spool_owner(path: &Path, spool: &Path) -> Result<(), SuppressError> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let owner = std::fs::metadata(spool).map_err(|e| SuppressError::io("stat", spool, e))?;
    if owner.uid() == 0 && owner.gid() == 0 {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))
        .map_err(|e| SuppressError::io("chown", path, e))
}

/// Reads one line into `buf` (without its LF, at most [`MAX_LINE`]
/// bytes kept). Returns the bytes used, whether the line was complete and
/// whether it was too long.
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<(u64, bool, bool)> {
    let mut used = 0u64;
    let mut too_long = false;
    loop {
        let avail = match reader.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok((used, false, too_long));
        }
        let (take, complete) = match memchr::memchr(b'\n', avail) {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        if buf.len() + take <= MAX_LINE {
            buf.extend_from_slice(&avail[..take]);
        } else {
            too_long = true;
        }
        let consumed = take + usize::from(complete);
        reader.consume(consumed);
        used += consumed as u64;
        if complete {
            return Ok((used, true, too_long));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_long_ones_flagged_and_a_tail_left() {
        let data = format!("ab\n{}\ncd", "x".repeat(MAX_LINE + 5));
        let mut r = BufReader::with_capacity(7, data.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), (3, true, false));
        assert_eq!(buf, b"ab");
        buf.clear();
        assert_eq!(
            next_line(&mut r, &mut buf).unwrap(),
            (MAX_LINE as u64 + 6, true, true)
        );
        buf.clear();
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), (2, false, false));
        assert_eq!(buf, b"cd");
        buf.clear();
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), (0, false, false));
    }
}
