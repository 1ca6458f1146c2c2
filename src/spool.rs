//! The spool directory layout, the daemon's lock, and its control socket.
//!
//! ```text
//! spool_dir/
//!   maildrop/     written by `ringmail sendmail` (temp name, fsync, rename)
//!   pickup/       the drop-in directory for users and programs (`pickup_group`, `pickup_mode`)
//!   queue/<n>/    shard n's segment files
//!   corrupt/      quarantined input, each file with a `.reason` beside it
//!   suppress/     the suppression list's journal (created by its first writer)
//!   ringmail.pid  locked (flock) by the running daemon
//!   control.sock  the daemon's control socket (`flush`)
//!   admin.sock    queue commands (`queue hold|release|delete|requeue|bounce`)
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
    /// This user may not use the control socket (only root and the
    /// daemon's user may).
    #[error(
        "permission denied: {path}: only root or the user running the daemon may send it commands"
    )]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// `pickup_group` names no group.
    #[error("pickup_group {0:?}: no such group in /etc/group (a group number works too)")]
    NoSuchGroup(String),
}

impl SpoolError {
    /// True when trying again later may work: not for a missing permission
    /// or group, which need an administrator.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            SpoolError::PermissionDenied { .. } | SpoolError::NoSuchGroup(_)
        )
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
    /// The suppression list's directory (its journal and nothing else;
    /// see `queue::suppress`).
    pub fn suppress(&self) -> PathBuf {
        self.root.join("suppress")
    }
    /// The daemon's lock file.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("ringmail.pid")
    }
    /// The daemon's control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// The daemon's admin socket (queue commands).
    pub fn admin_socket(&self) -> PathBuf {
        self.root.join("admin.sock")
    }

    /// `spool_dir/submit.sock`: the running daemon takes `sendmail`'s
    /// messages here and answers once they are committed.
    pub fn submit_socket(&self) -> PathBuf {
        self.root.join("submit.sock")
    }

    /// `spool_dir/campaign.sock`: the running daemon takes campaigns here
    /// (`ringmail campaign send`) and answers once they are committed.
    pub fn campaign_socket(&self) -> PathBuf {
        self.root.join("campaign.sock")
    }

    /// `spool_dir/campaigns/`: one state file per accepted campaign.
    pub fn campaigns(&self) -> PathBuf {
        self.root.join("campaigns")
    }

    /// `spool_dir/campaign.key`: the secret of the campaign tokens (VERP
    /// and unsubscribe addresses), mode 0600.
    pub fn campaign_key(&self) -> PathBuf {
        self.root.join("campaign.key")
    }

    /// The campaign token secret: read from [`Spool::campaign_key`], or
    /// made (32 bytes from the system's random source) and written durably
    /// the first time. A key file of another size is an error, never
    /// replaced: tokens already sent would stop working.
    pub fn load_or_create_campaign_key(&self) -> Result<[u8; 32], SpoolError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.campaign_key();
        let io = |op: &'static str, e: std::io::Error| SpoolError::Io {
            op,
            path: path.clone(),
            source: e,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                return <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    io(
                        "read",
                        std::io::Error::other(format!(
                            "{} bytes, expected 32: not replaced (tokens already sent use it)",
                            bytes.len()
                        )),
                    )
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("read", e)),
        }
        let mut key = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| io("getrandom", std::io::Error::other("no random bytes")))?;
        let tmp = self.root.join(".campaign.key.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("create", e))?;
        f.write_all(&key)
            .and_then(|()| f.sync_all())
            .map_err(|e| io("write", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("rename", e))?;
        std::fs::File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync", e))?;
        Ok(key)
    }

    /// Creates the spool's directories if missing, with the modes of the
    /// permission model (docs/ARCHITECTURE.md, "Spool permissions"):
    /// `maildrop/` writable by all with the sticky bit and without read
    /// permission (1733), so any local user can submit but not list or
    /// remove other users' files; `pickup/` private until
    /// [`Spool::apply_pickup_permissions`] sets its group and mode.
    pub fn create_dirs(&self) -> Result<(), SpoolError> {
        for (dir, mode) in [
            (self.root.clone(), 0o755),
            (self.maildrop(), 0o1733),
            (self.pickup(), 0o700),
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

    /// Gives `pickup/` its group and mode (`pickup_group`, `pickup_mode`),
    /// at every start, so a changed configuration (or the world-writable
    /// 1777 of older versions) takes effect. `group` is a name from
    /// /etc/group or a number; `None` means this process's group.
    pub fn apply_pickup_permissions(
        &self,
        group: Option<&str>,
        mode: u32,
    ) -> Result<(), SpoolError> {
        let dir = self.pickup();
        let gid = match group {
            Some(g) => group_id(g)?,
            None => rustix::process::getegid().as_raw(),
        };
        // Only what differs is changed: a daemon that is not root may be
        // unable to chown a directory that already has the right group.
        let meta = std::fs::metadata(&dir).map_err(|e| SpoolError::io("stat", &dir, e))?;
        if std::os::unix::fs::MetadataExt::gid(&meta) != gid {
            std::os::unix::fs::chown(&dir, None, Some(gid))
                .map_err(|e| SpoolError::io("chown (pickup_group)", &dir, e))?;
        }
        if meta.permissions().mode() & 0o7777 != mode {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                .map_err(|e| SpoolError::io("chmod (pickup_mode)", &dir, e))?;
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
        // Only root and the daemon's user may send commands, whatever the umask.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| SpoolError::io("chmod", &path, e))?;
        sock.set_nonblocking(true)
            .map_err(|e| SpoolError::io("set_nonblocking", &path, e))?;
        Ok(sock)
    }

    /// Binds the daemon's admin socket (mode 0600), replacing a stale one.
    pub fn bind_admin(&self) -> Result<std::os::unix::net::UnixListener, SpoolError> {
        let path = self.admin_socket();
        let _ = std::fs::remove_file(&path);
        let sock = std::os::unix::net::UnixListener::bind(&path)
            .map_err(|e| SpoolError::io("bind", &path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| SpoolError::io("chmod", &path, e))?;
        Ok(sock)
    }

    /// Connects to the running daemon's admin socket.
    pub fn connect_admin(&self) -> Result<std::os::unix::net::UnixStream, SpoolError> {
        let path = self.admin_socket();
        std::os::unix::net::UnixStream::connect(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::PermissionDenied => SpoolError::PermissionDenied { path },
            _ => SpoolError::NotRunning { path, source },
        })
    }

    /// Sends a control command (`flush`) to the running daemon.
    pub fn send_control(&self, command: &str) -> Result<(), SpoolError> {
        let path = self.control_socket();
        let sock = UnixDatagram::unbound().map_err(|e| SpoolError::io("socket", &path, e))?;
        sock.send_to(command.as_bytes(), &path)
            .map(|_| ())
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::PermissionDenied => SpoolError::PermissionDenied { path },
                _ => SpoolError::NotRunning { path, source },
            })
    }
}

/// The number of group `name` (a number is taken as it is), looked up in
/// /etc/group as `inject::user` looks up login names in /etc/passwd.
pub fn group_id(name: &str) -> Result<u32, SpoolError> {
    if let Ok(gid) = name.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    group_id_in(&groups, name).ok_or_else(|| SpoolError::NoSuchGroup(name.to_string()))
}

/// The number of group `name` in the text of a group file.
fn group_id_in(groups: &str, name: &str) -> Option<u32> {
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        let group = fields.next()?;
        let _password = fields.next()?;
        let gid = fields.next()?.parse().ok()?;
        (group == name).then_some(gid)
    })
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
        let mode = std::fs::metadata(spool.control_socket())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        spool.send_control("flush").unwrap();
        let mut buf = [0u8; 16];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"flush");
    }

    #[test]
    fn pickup_gets_its_group_and_mode_at_every_start() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        spool.create_dirs().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&spool.maildrop()), 0o1733);
        assert_eq!(mode(&spool.pickup()), 0o700);
        // An older spool's world-writable pickup/ is narrowed.
        std::fs::set_permissions(spool.pickup(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        spool.apply_pickup_permissions(None, 0o1770).unwrap();
        assert_eq!(mode(&spool.pickup()), 0o1770);
        let gid = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(spool.pickup()).unwrap());
        assert_eq!(gid, rustix::process::getegid().as_raw());
        assert!(matches!(
            spool.apply_pickup_permissions(Some("no-such-group-here"), 0o1770),
            Err(SpoolError::NoSuchGroup(_))
        ));
    }

    #[test]
    fn groups_are_found_by_name_or_number() {
        let groups = "root:x:0:\n# comment\nmail:x:8:\npostdrop:x:115:alice,bob\n";
        assert_eq!(group_id_in(groups, "postdrop"), Some(115));
        assert_eq!(group_id_in(groups, "mail"), Some(8));
        assert_eq!(group_id_in(groups, "post"), None);
        assert_eq!(group_id("4242").unwrap(), 4242);
        assert_eq!(group_id("root").unwrap(), 0);
    }
}
