//! The identity of a spool file a message was read from, kept in its queue
//! record so that a restart recognises a file that was queued but not yet
//! unlinked when the daemon was killed, instead of queueing it again.

/// What identifies a spool file before it is read: where it is, which inode
/// it is, and its size and times as `fstat` reports them. A file replaced
/// or rewritten since gets a different key (a new inode, or new times).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// The path relative to the spool directory: `pickup/NAME` or
    /// `maildrop/NAME`, as raw bytes (file names need not be UTF-8).
    pub name: Vec<u8>,
    /// The device the file is on.
    pub dev: u64,
    /// Its inode number.
    pub ino: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Its status change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
}

/// A [`FileKey`] plus a checksum of the file's bytes, which is checked once
/// the file is read again: only a file with the same key *and* the same
/// contents counts as already queued.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Where and which file.
    pub key: FileKey,
    /// CRC-32C of the file's contents as read.
    pub crc32c: u32,
}

impl FileKey {
    /// A 64-bit digest of the whole key, for sets of many keys (a spool
    /// with a million files left in it at start): equal keys have equal
    /// digests within one process; a digest that matches by chance is
    /// caught by the full comparison that follows it.
    pub fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    /// The key of a file named `name` (relative to the spool) with this
    /// metadata.
    pub fn from_metadata(name: Vec<u8>, meta: &std::fs::Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        FileKey {
            name,
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            // Saturating: `touch` can set times past the year 2262.
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_gets_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"one").unwrap();
        let a = FileKey::from_metadata(b"pickup/f".to_vec(), &std::fs::metadata(&p).unwrap());
        assert_eq!(
            a,
            FileKey::from_metadata(b"pickup/f".to_vec(), &std::fs::metadata(&p).unwrap())
        );
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, b"three").unwrap();
        let b = FileKey::from_metadata(b"pickup/f".to_vec(), &std::fs::metadata(&p).unwrap());
        assert_ne!(a, b, "the size differs at least");
        assert_eq!(b.size, 5);
    }
}
