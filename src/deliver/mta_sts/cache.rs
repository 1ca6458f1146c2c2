//! Fetched policies kept on disk, so that a restart does not forget an
//! `enforce` policy (RFC 8461 section 5.1: a policy stays in force until its
//! `max_age` runs out, even when the policy server cannot be reached).
//!
//! One file per policy domain, `spool_dir/mta-sts/<domain>.json` (0600 in a
//! 0700 directory), written whole: a temporary file, fsync, rename, fsync
//! of the directory. A shard reads a domain's file the first time it needs
//! that domain's policy, and writes it after each successful fetch; the
//! shards of one daemon may write the same file, and the last rename wins
//! (each writes a complete policy). The file holds the policy text as
//! served, parsed again when read.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::policy::{Policy, PolicyError};

/// The format number written into each file.
const FORMAT: u32 = 1;

/// Why a cached policy could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading, writing or renaming the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file exists but does not hold a policy of this format.
    #[error("{}: unreadable cached MTA-STS policy: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The domain cannot be a file name (only `a-z 0-9 - _ .` are kept on
    /// disk); its policy is kept in memory only.
    #[error("domain {0:?} is not kept on disk")]
    BadName(String),
}

impl CacheError {
    /// A full or failing disk may recover; a corrupt file is replaced at
    /// the next fetch. The policy in memory is used meanwhile.
    pub fn is_transient(&self) -> bool {
        true
    }
}

/// A policy as fetched, with the TXT record id it was fetched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedPolicy {
    /// The `id` of the `_mta-sts` TXT record when it was fetched.
    pub id: String,
    /// The policy file as served.
    pub text: String,
    /// The parsed policy.
    pub policy: Policy,
    /// When it was fetched (seconds since the Unix epoch).
    pub fetched_at: u64,
}

impl CachedPolicy {
    /// A policy fetched at `now` (Unix seconds) for record id `id`.
    pub fn new(id: &str, text: String, now: u64) -> Result<CachedPolicy, PolicyError> {
        let policy = Policy::parse(&text)?;
        Ok(CachedPolicy {
            id: id.to_string(),
            text,
            policy,
            fetched_at: now,
        })
    }

    /// When it stops being valid (Unix seconds).
    pub fn expires_at(&self) -> u64 {
        self.fetched_at.saturating_add(self.policy.max_age)
    }

    /// True once `max_age` has passed since the fetch.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at()
    }

    /// True once half of `max_age` has passed: fetch again (keeping this
    /// one if that fails), so that a policy in use never runs out while
    /// its server is reachable.
    pub fn wants_refresh(&self, now: u64) -> bool {
        now >= self.fetched_at.saturating_add(self.policy.max_age / 2)
    }
}

/// The file's contents.
#[derive(Serialize, Deserialize)]
struct OnDisk {
    format: u32,
    domain: String,
    id: String,
    fetched_at: u64,
    policy: String,
}

/// The directory of cached policies.
#[derive(Clone, Debug)]
pub struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    /// The cache in `dir` (created at the first write).
    pub fn new(dir: impl Into<PathBuf>) -> DiskCache {
        DiskCache { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `domain`.
    fn path(&self, domain: &str) -> Result<PathBuf, CacheError> {
        let ok = !domain.is_empty()
            && !domain.starts_with('.')
            && !domain.contains("..")
            && domain.len() <= 253
            && domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !ok {
            return Err(CacheError::BadName(domain.to_string()));
        }
        Ok(self.dir.join(format!("{domain}.json")))
    }

    /// The cached policy of `domain`, if there is a file for it.
    pub fn load(&self, domain: &str) -> Result<Option<CachedPolicy>, CacheError> {
        let path = self.path(domain)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::Io { path, source }),
        };
        let corrupt = |reason: String| CacheError::Corrupt {
            path: path.clone(),
            reason,
        };
        let d: OnDisk = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if d.format != FORMAT {
            return Err(corrupt(format!("format {} (expected {FORMAT})", d.format)));
        }
        if d.domain != domain {
            return Err(corrupt(format!("holds the policy of {}", d.domain)));
        }
        let p =
            CachedPolicy::new(&d.id, d.policy, d.fetched_at).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some(p))
    }

    /// Writes `policy` as the cached policy of `domain`, durably.
    pub fn store(&self, domain: &str, policy: &CachedPolicy) -> Result<(), CacheError> {
        let path = self.path(domain)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io(&self.dir))?;
        let json = serde_json::to_vec_pretty(&OnDisk {
            format: FORMAT,
            domain: domain.to_string(),
            id: policy.id.clone(),
            fetched_at: policy.fetched_at,
            policy: policy.text.clone(),
        })
        .map_err(|e| CacheError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let tmp = self
            .dir
            .join(format!(".{domain}.{:016x}.tmp", fastrand::u64(..)));
        let written = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()
        })();
        if let Err(source) = written {
            let _ = fs::remove_file(&tmp);
            return Err(CacheError::Io { path: tmp, source });
        }
        if let Err(source) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(CacheError::Io { path, source });
        }
        crate::spool::sync_dir(&self.dir).map_err(io(&self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 86400\r\n";

    #[test]
    fn stored_policies_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().join("mta-sts"));
        assert!(cache.load("example.com").unwrap().is_none());
        let p = CachedPolicy::new("id1", TEXT.into(), 1_000).unwrap();
        cache.store("example.com", &p).unwrap();
        assert_eq!(cache.load("example.com").unwrap(), Some(p.clone()));
        let p2 = CachedPolicy::new("id2", TEXT.into(), 2_000).unwrap();
        cache.store("example.com", &p2).unwrap();
        assert_eq!(cache.load("example.com").unwrap().unwrap().id, "id2");
        let names: Vec<_> = fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["example.com.json"], "no temporary file left");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(cache.dir().join("example.com.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn expiry_and_refresh() {
        let p = CachedPolicy::new("x", TEXT.into(), 1_000).unwrap();
        assert_eq!(p.expires_at(), 87_400);
        assert!(!p.is_expired(87_399));
        assert!(p.is_expired(87_400));
        assert!(!p.wants_refresh(44_199));
        assert!(p.wants_refresh(44_200));
    }

    #[test]
    fn bad_names_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path());
        for bad in ["", "../etc", "a/b", ".hidden", "UPPER.example", "a..b"] {
            assert!(
                matches!(cache.load(bad), Err(CacheError::BadName(_))),
                "{bad}"
            );
        }
        fs::write(dir.path().join("broken.example.json"), b"{not json").unwrap();
        let e = cache.load("broken.example").unwrap_err();
        assert!(matches!(e, CacheError::Corrupt { .. }), "{e}");
        assert!(e.is_transient());
        // A file renamed by hand to another domain is not trusted.
        let p = CachedPolicy::new("x", TEXT.into(), 1).unwrap();
        cache.store("a.example", &p).unwrap();
        fs::rename(
            dir.path().join("a.example.json"),
            dir.path().join("b.example.json"),
        )
        .unwrap();
        assert!(matches!(
            cache.load("b.example"),
            Err(CacheError::Corrupt { .. })
        ));
    }
}
