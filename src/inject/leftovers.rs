//! Spool files left behind by a killed daemon: queued (their records are
//! durable) but not yet unlinked. Without care, the next start would queue
//! them a second time.
//!
//! Each message record read from a spool file keeps that file's identity
//! ([`FileIdentity`]: its name, inode, size, times and a CRC of its bytes).
//! At start the daemon lists the files still in `maildrop/` and `pickup/`
//! ([`scan_leftovers`]), recovery reports the records that came from one of
//! them, and pickup, meeting such a file with the same contents, removes
//! it instead of queueing it again ([`AlreadyQueued`]).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::Path;

use crate::model::{FileIdentity, FileKey, QueueId};

use super::pickup::SpoolKind;

impl SpoolKind {
    /// The directory's name under the spool directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            SpoolKind::Maildrop => "maildrop",
            SpoolKind::Pickup => "pickup",
        }
    }
}

/// The key of the file `name` in the `kind` directory, with this metadata.
pub fn file_key(kind: SpoolKind, name: &OsStr, meta: &std::fs::Metadata) -> FileKey {
    let mut rel = Vec::with_capacity(kind.dir_name().len() + 1 + name.len());
    rel.extend_from_slice(kind.dir_name().as_bytes());
    rel.push(b'/');
    rel.extend_from_slice(name.as_encoded_bytes());
    FileKey::from_metadata(rel, meta)
}

/// The digests ([`FileKey::digest`]) of the keys of the regular files (not
/// dot-files) now in `maildrop` and `pickup`: eight bytes a file, so a
/// large backlog costs little memory. A directory that cannot be read adds
/// nothing: its files are then queued as usual, as they would have been
/// without this.
pub fn scan_leftovers(maildrop: &Path, pickup: &Path) -> HashSet<u64> {
    let mut keys = HashSet::new();
    for (dir, kind) in [(maildrop, SpoolKind::Maildrop), (pickup, SpoolKind::Pickup)] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            // Relative to the directory, not following a symbolic link.
            if let Ok(meta) = entry.metadata() {
                if meta.is_file() {
                    keys.insert(file_key(kind, &name, &meta).digest());
                }
            }
        }
    }
    keys
}

/// Where a message read from a spool file is queued: the shard that holds
/// its record, and its queue ID. That shard keeps the record's segment
/// until pickup releases the message (the file's unlink is durable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuedAs {
    /// The shard whose store holds the record.
    pub shard: usize,
    /// The message's queue ID.
    pub id: QueueId,
}

/// Leftover files whose messages are queued already, as recovery found
/// them. Empty in a daemon that started with clean spool directories.
#[derive(Debug, Default)]
pub struct AlreadyQueued {
    files: HashMap<FileKey, (u32, QueuedAs)>,
}

impl AlreadyQueued {
    /// From what recovery reported, every shard's list together.
    pub fn new(found: impl IntoIterator<Item = (FileIdentity, QueuedAs)>) -> AlreadyQueued {
        AlreadyQueued {
            files: found
                .into_iter()
                .map(|(file, queued)| (file.key, (file.crc32c, queued)))
                .collect(),
        }
    }

    /// How many files are still expected.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when no file is expected (the usual case).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// If `file` (same key, same contents) is queued already, forgets it and
    /// returns where it was queued. A file with the same key but other
    /// contents was rewritten in place: it is not the queued one.
    pub fn take(&mut self, file: &FileIdentity) -> Option<QueuedAs> {
        match self.files.get(&file.key) {
            Some(&(crc, queued)) if crc == file.crc32c => {
                self.files.remove(&file.key);
                Some(queued)
            }
            _ => None,
        }
    }

    /// Forgets every file still expected and returns where each was
    /// queued: once pickup has looked at every file in the spool, those
    /// records match no file there, and their segments need not be kept.
    pub fn drain(&mut self) -> Vec<QueuedAs> {
        self.files.drain().map(|(_, (_, queued))| queued).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(dir: &Path, name: &str, crc: u32) -> FileIdentity {
        let meta = std::fs::symlink_metadata(dir.join(name)).unwrap();
        FileIdentity {
            key: file_key(SpoolKind::Pickup, OsStr::new(name), &meta),
            crc32c: crc,
        }
    }

    #[test]
    fn lists_regular_files_of_both_directories_under_their_spool_names() {
        let spool = tempfile::tempdir().unwrap();
        let (md, pu) = (spool.path().join("maildrop"), spool.path().join("pickup"));
        std::fs::create_dir_all(&md).unwrap();
        std::fs::create_dir_all(&pu).unwrap();
        std::fs::write(md.join("m1"), b"x").unwrap();
        std::fs::write(pu.join("p1"), b"yy").unwrap();
        std::fs::write(pu.join(".tmp"), b"z").unwrap();
        std::fs::create_dir(pu.join("sub")).unwrap();
        std::os::unix::fs::symlink(pu.join("p1"), pu.join("link")).unwrap();
        let found = scan_leftovers(&md, &pu);
        let key = |dir: &Path, kind, name: &str| {
            let meta = std::fs::symlink_metadata(dir.join(name)).unwrap();
            file_key(kind, OsStr::new(name), &meta)
        };
        let m1 = key(&md, SpoolKind::Maildrop, "m1");
        let p1 = key(&pu, SpoolKind::Pickup, "p1");
        assert_eq!(m1.name, b"maildrop/m1");
        assert_eq!(p1.name, b"pickup/p1");
        let want: HashSet<u64> = [m1.digest(), p1.digest()].into_iter().collect();
        assert_eq!(found, want, "no dot-file, directory or link");
        assert_eq!(scan_leftovers(&spool.path().join("none"), &pu).len(), 1);
    }

    #[test]
    fn a_file_matches_once_and_only_with_the_same_contents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"hello").unwrap();
        std::fs::write(dir.path().join("b"), b"hello").unwrap();
        let a = identity(dir.path(), "a", 7);
        let b = identity(dir.path(), "b", 7);
        let id = QueuedAs {
            shard: 1,
            id: QueueId::new(0, 42),
        };
        let mut known = AlreadyQueued::new([(a.clone(), id)]);
        assert_eq!(known.len(), 1);
        assert_eq!(known.take(&b), None, "another file");
        let rewritten = FileIdentity {
            crc32c: 8,
            ..a.clone()
        };
        assert_eq!(known.take(&rewritten), None, "same key, other bytes");
        assert_eq!(known.take(&a), Some(id));
        assert_eq!(known.take(&a), None, "forgotten once matched");
        assert!(known.is_empty());
    }

    #[test]
    fn drain_gives_back_the_records_no_file_matched() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"1").unwrap();
        std::fs::write(dir.path().join("b"), b"2").unwrap();
        let queued = |seq| QueuedAs {
            shard: 0,
            id: QueueId::new(0, seq),
        };
        let a = identity(dir.path(), "a", 1);
        let mut known = AlreadyQueued::new([
            (a.clone(), queued(1)),
            (identity(dir.path(), "b", 2), queued(2)),
        ]);
        assert_eq!(known.take(&a), Some(queued(1)));
        assert_eq!(known.drain(), [queued(2)]);
        assert!(known.is_empty());
        assert!(known.drain().is_empty());
    }
}
