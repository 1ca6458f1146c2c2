//! The spool directory layout, the daemon's lock, and its control socket.
//!
//! ```text
//! spool_dir/
//!   maildrop/     written by `ringmail sendmail` (temp name, fsync, rename)
//!   pickup/       the drop-in directory for users and programs
//!   queue/<n>/    shard n's segment files
//!   corrupt/      quarantined input, each file with a `.reason` beside it
//!   ringmail.pid  locked (flock) by the running daemon
//!   control.sock  the daemon's control socket (`flush`)
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// Errors about the spool directory.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A directory or file could not be created or opened.
    #[error("{path}: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another daemon holds the lock.
    #[error("{path}: another ringmail daemon is running on this spool (pid {pid})")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The pid written in it.
        pid: String,
    },
    /// No daemon listens on the control socket.
    #[error("the ringmail daemon is not running ({path}: {source})")]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl SpoolError {
    /// True when trying again later may work.
    pub fn is_transient(&self) -> bool {
        true
    }

    fn io(op: &'static str, path: &Path, source: std::io::Error) -> SpoolError {
        SpoolError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Paths inside a spool directory.
#[derive(Clone, Debug)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    /// The spool rooted at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Spool {
        Spool { root: root.into() }
    }

    /// The spool's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Where `sendmail` drops messages.
    pub fn maildrop(&self) -> PathBuf {
        self.root.join("maildrop")
    }
    /// The user drop-in directory.
    pub fn pickup(&self) -> PathBuf {
        self.root.join("pickup")
    }
    /// The shards' queue directories.
    pub fn queue(&self) -> PathBuf {
        self.root.join("queue")
    }
    /// Quarantined input.
    pub fn corrupt(&self) -> PathBuf {
        self.root.join("corrupt")
    }
    /// The daemon's lock file.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("ringmail.pid")
    }
    /// The daemon's control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// Creates the spool's directories if missing. `maildrop/` and `pickup/`
    /// are made writable by all with the sticky bit (like /tmp), so local
    /// users can submit without privileges.
    pub fn create_dirs(&self) -> Result<(), SpoolError> {
        for (dir, mode) in [
            (self.root.clone(), 0o755),
            (self.maildrop(), 0o1733),
            (self.pickup(), 0o1777),
            (self.queue(), 0o700),
            (self.corrupt(), 0o700),
        ] {
            if !dir.is_dir() {
                std::fs::create_dir_all(&dir).map_err(|e| SpoolError::io("mkdir", &dir, e))?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| SpoolError::io("chmod", &dir, e))?;
            }
        }
        Ok(())
    }

    /// Takes the daemon lock (flock on `ringmail.pid`, which then holds our
    /// pid). The lock lasts as long as the returned file is open.
    pub fn lock(&self) -> Result<File, SpoolError> {
        use rustix::fs::{flock, FlockOperation};
        let path = self.pid_file();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(|e| SpoolError::io("open", &path, e))?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let pid = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .trim()
                .to_string();
            return Err(SpoolError::Locked { path, pid });
        }
        file.set_len(0)
            .map_err(|e| SpoolError::io("truncate", &path, e))?;
        writeln!(file, "{}", std::process::id()).map_err(|e| SpoolError::io("write", &path, e))?;
        Ok(file)
    }

    /// Binds the daemon's control socket, replacing a stale one.
    pub fn bind_control(&self) -> Result<UnixDatagram, SpoolError> {
        let path = self.control_socket();
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).map_err(|e| SpoolError::io("bind", &path, e))?;
        sock.set_nonblocking(true)
            .map_err(|e| SpoolError::io("set_nonblocking", &path, e))?;
        Ok(sock)
    }

    /// Sends a control command (`flush`) to the running daemon.
    pub fn send_control(&self, command: &str) -> Result<(), SpoolError> {
        let path = self.control_socket();
        let sock = UnixDatagram::unbound().map_err(|e| SpoolError::io("socket", &path, e))?;
        sock.send_to(command.as_bytes(), &path)
            .map(|_| ())
            .map_err(|source| SpoolError::NotRunning { path, source })
    }
}

/// fsyncs a directory so that creations, renames and unlinks in it are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_control_reaches_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        spool.create_dirs().unwrap();
        assert!(spool.maildrop().is_dir() && spool.corrupt().is_dir());
        let held = spool.lock().unwrap();
        assert!(matches!(spool.lock(), Err(SpoolError::Locked { .. })));
        drop(held);
        spool.lock().unwrap();

        assert!(matches!(
            spool.send_control("flush"),
            Err(SpoolError::NotRunning { .. })
        ));
        let sock = spool.bind_control().unwrap();
        spool.send_control("flush").unwrap();
        let mut buf = [0u8; 16];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"flush");
    }
}
