//! The webhook's durable cursor: the generation and byte offset of the
//! first event not yet acknowledged by the receiver. It is written whole
//! (temporary file, fsync, rename, fsync of the directory) after every
//! acknowledged batch, so after a crash the poster resends at most the
//! batch in flight.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why the cursor could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// Reading or writing the file failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file holds something else than a cursor.
    #[error("{path}: not an events cursor: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
}

impl CursorError {
    /// I/O errors may pass (disk full, permissions fixed); a corrupt file
    /// stays corrupt until removed.
    pub fn is_transient(&self) -> bool {
        matches!(self, CursorError::Io { .. })
    }
}

/// A position in the events files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    /// The file's generation (see [`EventFiles`](super::files::EventFiles)).
    pub generation: u64,
    /// Bytes of that file already acknowledged (always at a line start).
    pub offset: u64,
}

/// The file a cursor is kept in.
#[derive(Clone, Debug)]
pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    /// The cursor kept at `path`.
    pub fn new(path: impl Into<PathBuf>) -> CursorFile {
        CursorFile { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored cursor; `None` when there is no file yet.
    pub fn load(&self) -> Result<Option<Cursor>, CursorError> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CursorError::Io {
                    op: "read",
                    path: self.path.clone(),
                    source,
                })
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| CursorError::Corrupt {
                path: self.path.clone(),
                detail: e.to_string(),
            })
    }

    /// Stores `cursor` durably: written to `PATH.tmp`, fsynced, renamed
    /// over `PATH`, and the directory fsynced.
    pub fn store(&self, cursor: Cursor) -> Result<(), CursorError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| CursorError::Io { op, path, source }
        };
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut text = serde_json::to_vec(&cursor).map_err(|e| CursorError::Corrupt {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        text.push(b'\n');
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(&text).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io("rename", &self.path))?;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        crate::spool::sync_dir(dir).map_err(io("fsync directory", dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_cursor_is_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl.cursor");
        assert_eq!(CursorFile::new(&path).load().unwrap(), None);
        let c = Cursor {
            generation: 3,
            offset: 12_345,
        };
        CursorFile::new(&path).store(c).unwrap();
        assert_eq!(CursorFile::new(&path).load().unwrap(), Some(c));
        let later = Cursor {
            generation: 4,
            offset: 0,
        };
        CursorFile::new(&path).store(later).unwrap();
        assert_eq!(CursorFile::new(&path).load().unwrap(), Some(later));
        assert!(!dir.path().join("events.jsonl.cursor.tmp").exists());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"generation\":4,\"offset\":0}\n"
        );
    }

    #[test]
    fn a_damaged_cursor_is_an_error_not_a_restart_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        std::fs::write(&path, b"{\"generation\":").unwrap();
        let e = CursorFile::new(&path).load().unwrap_err();
        assert!(!e.is_transient());
        assert!(e.to_string().contains("not an events cursor"), "{e}");
    }
}
