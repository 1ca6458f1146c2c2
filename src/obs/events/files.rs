//! The events files on disk: the active file (`events.jsonl`) and its
//! rotated generations (`events.jsonl.<N>`, `N` counting up from 1, never
//! reused), so a cursor can name a file by its generation across
//! rotations.
//!
//! The active file holds generation `max(rotated) + 1`; a rotation renames
//! it to `events.jsonl.<N>` and starts `N + 1`. A reader that opened the
//! active file just before a rotation holds the renamed file: it tells the
//! two apart by inode ([`EventFiles::open_generation`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The active events file and the names of its generations.
#[derive(Clone, Debug)]
pub struct EventFiles {
    dir: PathBuf,
    base: String,
}

/// A generation opened for reading.
#[derive(Debug)]
pub struct Opened {
    /// The file.
    pub file: File,
    /// The generation it holds.
    pub generation: u64,
    /// True when it is rotated: nothing more will be appended to it.
    pub complete: bool,
}

impl EventFiles {
    /// The files around `active` (which must name a file, not a directory).
    pub fn new(active: &Path) -> io::Result<EventFiles> {
        let base = active
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: not a file name", active.display()),
                )
            })?
            .to_string();
        let dir = match active.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(EventFiles { dir, base })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The active file.
    pub fn active(&self) -> PathBuf {
        self.dir.join(&self.base)
    }

    /// Rotated generation `generation`.
    pub fn rotated(&self, generation: u64) -> PathBuf {
        self.dir.join(format!("{}.{generation}", self.base))
    }

    /// The rotated generations on disk, oldest first.
    pub fn rotated_generations(&self) -> io::Result<Vec<u64>> {
        let prefix = format!("{}.", self.base);
        let mut found = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(n) = rest.parse::<u64>() {
                    found.push(n);
                }
            }
        }
        found.sort_unstable();
        Ok(found)
    }

    /// The generation of the active file: one past the newest rotated one,
    /// and at least `floor` (a cursor's generation, should the rotated
    /// files have been removed by hand).
    pub fn active_generation(&self, floor: u64) -> io::Result<u64> {
        let newest = self.rotated_generations()?.last().copied().unwrap_or(0);
        Ok((newest + 1).max(floor).max(1))
    }

    /// Opens generation `generation` for reading. `Ok(None)`: it does not
    /// exist yet (the writer has not created it). A generation that is
    /// gone (removed by hand) while later ones exist gives the oldest
    /// later one, which the caller sees in [`Opened::generation`].
    pub fn open_generation(&self, generation: u64) -> io::Result<Option<Opened>> {
        if let Some(file) = open_if_exists(&self.rotated(generation))? {
            return Ok(Some(Opened {
                file,
                generation,
                complete: true,
            }));
        }
        let rotated = self.rotated_generations()?;
        if let Some(&later) = rotated.iter().find(|&&g| g > generation) {
            // `generation` is gone: the active file is a later one.
            return self.open_generation(later);
        }
        let Some(file) = open_if_exists(&self.active())? else {
            return Ok(None);
        };
        // Rotated between the two opens? Then this is the renamed file if
        // the inodes agree, else the next generation's (not ours).
        match std::fs::metadata(self.rotated(generation)) {
            Ok(m) if m.ino() == file.metadata()?.ino() => Ok(Some(Opened {
                file,
                generation,
                complete: true,
            })),
            Ok(_) => Ok(
                open_if_exists(&self.rotated(generation))?.map(|file| Opened {
                    file,
                    generation,
                    complete: true,
                }),
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Some(Opened {
                file,
                generation,
                complete: false,
            })),
            Err(e) => Err(e),
        }
    }
}

/// Opens `path` read-only; `None` when it does not exist.
fn open_if_exists(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_are_listed_in_order_and_others_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let files = EventFiles::new(&dir.path().join("events.jsonl")).unwrap();
        assert_eq!(files.active_generation(0).unwrap(), 1);
        for name in [
            "events.jsonl",
            "events.jsonl.10",
            "events.jsonl.9",
            "events.jsonl.cursor",
            "events.jsonl.2.tmp",
            "other.1",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(files.rotated_generations().unwrap(), [9, 10]);
        assert_eq!(files.active_generation(0).unwrap(), 11);
        assert_eq!(files.active_generation(20).unwrap(), 20);
    }

    #[test]
    fn open_tells_rotated_from_active_and_skips_missing() {
        let dir = tempfile::tempdir().unwrap();
        let files = EventFiles::new(&dir.path().join("events.jsonl")).unwrap();
        assert!(files.open_generation(1).unwrap().is_none());
        std::fs::write(files.active(), b"a\n").unwrap();
        let o = files.open_generation(1).unwrap().unwrap();
        assert_eq!((o.generation, o.complete), (1, false));
        std::fs::rename(files.active(), files.rotated(1)).unwrap();
        std::fs::write(files.active(), b"b\n").unwrap();
        let o = files.open_generation(1).unwrap().unwrap();
        assert_eq!((o.generation, o.complete), (1, true));
        let o = files.open_generation(2).unwrap().unwrap();
        assert_eq!((o.generation, o.complete), (2, false));
        // Generation 1 removed by hand, 2 and 3 rotated: 1 opens as 2.
        std::fs::rename(files.active(), files.rotated(2)).unwrap();
        std::fs::write(files.rotated(3), b"c\n").unwrap();
        std::fs::remove_file(files.rotated(1)).unwrap();
        let o = files.open_generation(1).unwrap().unwrap();
        assert_eq!((o.generation, o.complete), (2, true));
    }
}
