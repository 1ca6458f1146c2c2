//! The maildrop file format: what `ringmail sendmail` writes into
//! `maildrop/` and pickup reads back. A short text envelope, an empty line,
//! then the message exactly as submitted (after the `-i` dot rule):
//!
//! ```text
//! RINGMAIL-MAILDROP 1
//! uid 1000
//! sender me@example.com          (empty value: the null sender <>)
//! fullname Jane Doe              (optional, from -F)
//! rcpt you@example.net           (one line per recipient, at least one)
//!
//! <message>
//! ```
//!
//! Files are written with mode 0600 under a name starting with `.`
//! (ignored by pickup), fsynced, renamed to their final name, and the new
//! directory entry is made durable (see [`write_durably`]): a visible
//! maildrop file is always complete, and `sendmail` exits 0 only once it
//! is durable.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::Envelope;

/// First line of every maildrop file.
pub const MAGIC_LINE: &str = "RINGMAIL-MAILDROP 1";

/// Errors reading or writing maildrop files.
#[derive(Debug, thiserror::Error)]
pub enum MaildropError {
    /// The file is not in maildrop format.
    #[error("not a maildrop file: {0}")]
    Format(&'static str),
    /// Writing the file failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl MaildropError {
    /// Write failures (disk full, permissions) may clear up; format errors do not.
    pub fn is_transient(&self) -> bool {
        matches!(self, MaildropError::Io { .. })
    }
}

/// A parsed maildrop file.
#[derive(Debug, PartialEq, Eq)]
pub struct MaildropFile<'a> {
    /// The submitter's uid.
    pub uid: u32,
    /// Sender and recipients.
    pub envelope: Envelope,
    /// The `-F` full name.
    pub full_name: Option<String>,
    /// The message.
    pub message: &'a [u8],
}

/// Encodes a maildrop file.
pub fn encode(uid: u32, envelope: &Envelope, full_name: Option<&str>, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 256);
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    out.extend_from_slice(MAGIC_LINE.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(format!("uid {uid}\nsender {}\n", clean(&envelope.sender)).as_bytes());
    if let Some(name) = full_name {
        out.extend_from_slice(format!("fullname {}\n", clean(name)).as_bytes());
    }
    for r in &envelope.recipients {
        out.extend_from_slice(format!("rcpt {}\n", clean(r)).as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(message);
    out
}

/// Decodes a maildrop file.
pub fn decode(data: &[u8]) -> Result<MaildropFile<'_>, MaildropError> {
    let mut pos = 0;
    let mut next_line = || -> Result<&str, MaildropError> {
        let rest = &data[pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(MaildropError::Format("envelope not terminated"))?;
        pos += end + 1;
        std::str::from_utf8(&rest[..end])
            .map_err(|_| MaildropError::Format("envelope is not UTF-8"))
    };
    if next_line()? != MAGIC_LINE {
        return Err(MaildropError::Format("missing RINGMAIL-MAILDROP 1 line"));
    }
    let mut uid = None;
    let mut sender = None;
    let mut full_name = None;
    let mut recipients = Vec::new();
    loop {
        let line = next_line()?;
        if line.is_empty() {
            break;
        }
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "uid" => {
                uid = Some(
                    value
                        .parse()
                        .map_err(|_| MaildropError::Format("bad uid"))?,
                )
            }
            "sender" => sender = Some(value.to_string()),
            "fullname" => full_name = Some(value.to_string()),
            "rcpt" => recipients.push(value.to_string()),
            _ => return Err(MaildropError::Format("unknown envelope line")),
        }
    }
    if recipients.is_empty() {
        return Err(MaildropError::Format("no recipients"));
    }
    Ok(MaildropFile {
        uid: uid.ok_or(MaildropError::Format("no uid line"))?,
        envelope: Envelope {
            sender: sender.ok_or(MaildropError::Format("no sender line"))?,
            recipients,
        },
        full_name,
        message: &data[pos..],
    })
}

/// Mode of maildrop files: readable by their owner (the submitter) only.
/// `maildrop/` is writable by every local user, so the file mode is what
/// keeps one user's pending mail from another; the daemon reads them as
/// root (see docs/ARCHITECTURE.md, "Spool permissions").
pub const FILE_MODE: u32 = 0o600;

/// Writes `contents` durably into `dir` under a fresh name: a dot-named
/// temp file (mode [`FILE_MODE`]), fsync, rename, then the new directory
/// entry made durable (an fsync of `dir`, or `syncfs` for a user who
/// cannot open it: see `sync_new_entry`). Returns the final path.
///
/// When the entry cannot be made durable, the file is removed again before
/// the error is returned, so a failure means the message was not queued.
/// If the file is already gone at that point, the daemon took it, and it
/// only removes a file after queueing its message durably: that is a
/// success.
pub fn write_durably(dir: &Path, contents: &[u8]) -> Result<PathBuf, MaildropError> {
    write_durably_with(dir, contents, &sync_new_entry)
}

/// [`write_durably`] with the directory sync given, so tests can make it fail.
fn write_durably_with(
    dir: &Path,
    contents: &[u8],
    sync_entry: &dyn Fn(&Path, &File) -> std::io::Result<()>,
) -> Result<PathBuf, MaildropError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let micros = crate::model::now_micros();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{micros}.{}.{n}", std::process::id());
    let tmp = dir.join(format!(".tmp.{name}"));
    let dest = dir.join(&name);
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| MaildropError::Io { op, path, source }
    };
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(contents).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        std::fs::rename(&tmp, &dest).map_err(io("rename", &dest))?;
        Ok(f)
    })();
    let file = match written {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let Err(source) = sync_entry(dir, &file) else {
        return Ok(dest);
    };
    // Not durable: take the file back, unless the daemon already has.
    match std::fs::remove_file(&dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(dest),
        Ok(()) => Err(io("fsync directory", dir)(source)),
        Err(_) => Err(io(
            "fsync directory (and the file could not be removed)",
            dir,
        )(source)),
    }
}

/// Makes the directory entry of `file`, just renamed into `dir`, durable.
///
/// The owner of `dir` (and root) fsyncs the directory. Anyone else cannot:
/// fsync needs an open file descriptor, `maildrop/` (mode 1733) cannot be
/// opened for reading by them, and an `O_PATH` descriptor cannot be
/// fsync'd (EBADF). For them `syncfs(2)` on the new file does it: it
/// writes back the whole file system the file lives on, its metadata
/// included (the new directory entry), and waits for it; since Linux 5.8
/// it reports writeback errors. It costs more than a directory fsync on a
/// busy file system, which is why the owner's path stays the fsync. An
/// fsync of the file after the rename would be enough on ext4 and XFS (the
/// rename is in the same journal transaction) but POSIX does not promise
/// it, so it is not relied on.
fn sync_new_entry(dir: &Path, file: &File) -> std::io::Result<()> {
    match crate::spool::sync_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            rustix::fs::syncfs(file).map_err(std::io::Error::from)
        }
        other => other,
    }
}

/// Removes temp files (`.tmp.*`) older than `max_age` that a `sendmail`
/// killed before its rename left in `dir`. Their message was never
/// acknowledged (sendmail did not exit 0), so nothing is lost. Returns how
/// many were removed.
pub fn remove_stale_temp_files(dir: &Path, max_age: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().as_encoded_bytes().starts_with(b".tmp.") {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if old && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_message_bytes() {
        let env = Envelope {
            sender: String::new(),
            recipients: vec!["a@x.example".into(), "b@y.example".into()],
        };
        let msg = b"Subject: x\n\nbody\nrcpt not-envelope\n";
        let data = encode(7, &env, Some("Jane\nDoe"), msg);
        let back = decode(&data).unwrap();
        assert_eq!(back.uid, 7);
        assert_eq!(back.envelope, env);
        assert_eq!(back.full_name.as_deref(), Some("Jane Doe"));
        assert_eq!(back.message, msg);
    }

    #[test]
    fn rejects_foreign_or_incomplete_files() {
        assert!(decode(b"Subject: hi\n\nbody").is_err());
        assert!(decode(b"RINGMAIL-MAILDROP 1\nuid 0\nsender a@b\n\nmsg").is_err());
        assert!(decode(b"RINGMAIL-MAILDROP 1\nuid 0\nsender a@b\nrcpt c@d").is_err());
    }

    #[test]
    fn only_old_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".tmp.1.2.3"), b"x").unwrap();
        std::fs::write(dir.path().join("final"), b"x").unwrap();
        assert_eq!(
            remove_stale_temp_files(dir.path(), std::time::Duration::from_secs(3600)),
            0
        );
        assert_eq!(
            remove_stale_temp_files(dir.path(), std::time::Duration::ZERO),
            1
        );
        assert!(dir.path().join("final").exists());
    }

    #[test]
    fn files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = write_durably(dir.path(), b"hello").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
    }

    #[test]
    fn a_file_whose_entry_cannot_be_made_durable_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let failing = |_: &Path, _: &File| Err(std::io::Error::other("injected"));
        let e = write_durably_with(dir.path(), b"hello", &failing).unwrap_err();
        assert!(e.is_transient());
        assert!(e.to_string().contains("fsync directory"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_file_the_daemon_took_meanwhile_counts_as_queued() {
        let dir = tempfile::tempdir().unwrap();
        // The daemon queued and removed the file before the sync failed.
        let taken = |dir: &Path, _: &File| {
            for e in std::fs::read_dir(dir)? {
                std::fs::remove_file(e?.path())?;
            }
            Err(std::io::Error::other("injected"))
        };
        assert!(write_durably_with(dir.path(), b"hello", &taken).is_ok());
    }

    #[test]
    fn writes_under_a_final_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_durably(dir.path(), b"hello").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(!names[0].to_string_lossy().starts_with('.'));
    }
}
