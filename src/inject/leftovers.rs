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

/// True when the file `key` names (`maildrop/NAME` or `pickup/NAME`, as
/// [`file_key`] writes it) is still in the spool with that key. When in
/// doubt (the name cannot be placed, or stat fails for another reason than
/// the file being gone), says yes: a record kept too long costs disk space,
/// one released too early could let its file be queued twice.
pub fn still_in_spool(maildrop: &Path, pickup: &Path, key: &FileKey) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let placed = [(SpoolKind::Maildrop, maildrop), (SpoolKind::Pickup, pickup)]
        .into_iter()
        .find_map(|(kind, dir)| {
            let rest = key
                .name
                .strip_prefix(kind.dir_name().as_bytes())?
                .strip_prefix(b"/")?;
            Some(dir.join(OsStr::from_bytes(rest)))
        });
    let Some(path) = placed else {
        return true;
    };
    match std::fs::symlink_metadata(&path) {
        Ok(meta) => FileKey::from_metadata(key.name.clone(), &meta) == *key,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
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
    /// Per file, every record recovery matched to it (normally one; more
    /// if the file was queued again after an earlier failure), with the
    /// CRC-32C of the bytes it was queued with.
    files: HashMap<FileKey, Vec<(u32, QueuedAs)>>,
}

impl AlreadyQueued {
    /// From what recovery reported, every shard's list together.
    pub fn new(found: impl IntoIterator<Item = (FileIdentity, QueuedAs)>) -> AlreadyQueued {
        let mut files: HashMap<FileKey, Vec<(u32, QueuedAs)>> = HashMap::new();
        for (file, queued) in found {
            files
                .entry(file.key)
                .or_default()
                .push((file.crc32c, queued));
        }
        AlreadyQueued { files }
    }

    /// How many files are still expected.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when no file is expected (the usual case).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// If `file` (same key, same contents) is queued already, forgets the
    /// records that match it and returns where it was queued: the first is
    /// the one to keep until the file is removed, any others are spare
    /// (one record is enough to recognise the file). Empty when the file is
    /// not known; a file with the same key but other contents was rewritten
    /// in place, and is not the queued one (those records stay, and go
    /// with [`AlreadyQueued::drain_gone`]).
    pub fn take(&mut self, file: &FileIdentity) -> Vec<QueuedAs> {
        let Some(records) = self.files.get_mut(&file.key) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        records.retain(|&(crc, queued)| {
            let same = crc == file.crc32c;
            if same {
                taken.push(queued);
            }
            !same
        });
        if records.is_empty() {
            self.files.remove(&file.key);
        }
        taken
    }

    /// Forgets the files for which `still_there` says no (gone from the
    /// spool, or another file under that name now) and returns where their
    /// records are: those records match no file any more, and their
    /// segments need not be kept. A file still there (one that could not
    /// be read yet, or that was rewritten in place) keeps its records.
    pub fn drain_gone(&mut self, mut still_there: impl FnMut(&FileKey) -> bool) -> Vec<QueuedAs> {
        let mut gone = Vec::new();
        self.files.retain(|key, records| {
            if still_there(key) {
                return true;
            }
            gone.extend(records.iter().map(|&(_, queued)| queued));
            false
        });
        gone
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
        assert_eq!(known.take(&b), [], "another file");
        let rewritten = FileIdentity {
            crc32c: 8,
            ..a.clone()
        };
        assert_eq!(known.take(&rewritten), [], "same key, other bytes");
        assert_eq!(known.take(&a), [id]);
        assert_eq!(known.take(&a), [], "forgotten once matched");
        assert!(known.is_empty());
    }

    #[test]
    fn a_file_queued_twice_gives_back_both_records() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"1").unwrap();
        let a = identity(dir.path(), "a", 1);
        let queued = |shard, seq| QueuedAs {
            shard,
            id: QueueId::new(shard, seq),
        };
        let mut known = AlreadyQueued::new([(a.clone(), queued(0, 1)), (a.clone(), queued(1, 2))]);
        assert_eq!(known.len(), 1, "one file");
        assert_eq!(known.take(&a), [queued(0, 1), queued(1, 2)]);
        assert!(known.is_empty());
    }

    #[test]
    fn drain_gone_gives_back_the_records_of_files_no_longer_there() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [("a", "1"), ("b", "2"), ("c", "3")] {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let queued = |seq| QueuedAs {
            shard: 0,
            id: QueueId::new(0, seq),
        };
        let (a, b, c) = (
            identity(dir.path(), "a", 1),
            identity(dir.path(), "b", 2),
            identity(dir.path(), "c", 3),
        );
        let mut known = AlreadyQueued::new([
            (a.clone(), queued(1)),
            (b.clone(), queued(2)),
            (c.clone(), queued(3)),
        ]);
        assert_eq!(known.take(&a), [queued(1)]);
        // b is gone, c is still there (not read yet).
        let mut gone = known.drain_gone(|key| key == &c.key);
        gone.sort_by_key(|q| q.id);
        assert_eq!(gone, [queued(2)]);
        assert_eq!(known.len(), 1);
        assert_eq!(known.drain_gone(|_| false), [queued(3)]);
        assert!(known.is_empty());
    }

    #[test]
    fn still_in_spool_follows_the_name_and_the_key() {
        let spool = tempfile::tempdir().unwrap();
        let (md, pu) = (spool.path().join("maildrop"), spool.path().join("pickup"));
        std::fs::create_dir_all(&md).unwrap();
        std::fs::create_dir_all(&pu).unwrap();
        std::fs::write(md.join("m"), b"x").unwrap();
        std::fs::write(pu.join("p"), b"y").unwrap();
        let key = |dir: &Path, kind, name: &str| {
            file_key(
                kind,
                OsStr::new(name),
                &std::fs::symlink_metadata(dir.join(name)).unwrap(),
            )
        };
        let m = key(&md, SpoolKind::Maildrop, "m");
        let p = key(&pu, SpoolKind::Pickup, "p");
        assert!(still_in_spool(&md, &pu, &m));
        assert!(still_in_spool(&md, &pu, &p));
        // Another file under p's name: not the same key.
        std::fs::remove_file(pu.join("p")).unwrap();
        std::fs::write(pu.join(".n"), b"longer").unwrap();
        std::fs::rename(pu.join(".n"), pu.join("p")).unwrap();
        assert!(!still_in_spool(&md, &pu, &p));
        std::fs::remove_file(md.join("m")).unwrap();
        assert!(!still_in_spool(&md, &pu, &m), "gone");
        let odd = FileKey {
            name: b"elsewhere/x".to_vec(),
            ..m.clone()
        };
        assert!(still_in_spool(&md, &pu, &odd), "cannot be placed: kept");
    }
}
