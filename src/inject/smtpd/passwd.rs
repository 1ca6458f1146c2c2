//! Submission users: the password file that AUTH on a submission listener
//! checks, and the edits `ringmail passwd add|remove` make to it.
//!
//! The file (`smtpd_passwd_file`, default `/etc/ringmail/passwd`) holds one
//! `USER:HASH` a line, where HASH is a PHC string made with Argon2id
//! (`$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`); blank lines and lines
//! starting with `#` are ignored. A password is never stored, and a line
//! whose HASH is not a PHC Argon2 string (a plaintext password, say) makes
//! the whole file unusable, with its line number in the error.
//!
//! Like Postfix with its private files, the file is refused when group or
//! others have any access to it (it must be mode 0600 or stricter). It is
//! only ever replaced whole: a temp file beside it, fsync, rename, fsync of
//! the directory (the file's owner and group are kept). Edits hold an
//! `flock` on the directory, so two `ringmail passwd` commands cannot lose
//! each other's change.
//!
//! [`PasswdFile::load`] is what the listener calls, at start and whenever it
//! wants to pick up changes: it reads and checks the file and costs no
//! hashing. [`Users::verify`] runs Argon2 once per call, also for an unknown
//! user (against a fixed dummy hash), so the time it takes does not tell
//! which users exist. One verification costs tens of milliseconds of CPU:
//! call it off the thread that serves connections.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Longest user name, in bytes.
pub const MAX_USER_LEN: usize = 64;

/// Longest password, in bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Mode of the password file.
pub const FILE_MODE: u32 = 0o600;

/// What a new file starts with.
const HEADER: &str = "# ringmail submission users: USER:ARGON2-HASH, one a line.\n\
                      # Edit with `ringmail passwd add|remove USER`; never put a password here.\n";

/// The hash an unknown user's password is checked against, so that a wrong
/// user name costs as long as a wrong password. Made with the default
/// parameters from 32 random bytes, thrown away.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$pVRwVfAkc2+Q+Hck65bhmQ$B0IiOfd57evp4N2KVC+VzORZqpdXQ6uwelWh6YXgb94";

/// Errors of the password file.
#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    /// The file does not exist.
    #[error("{path}: no such file (add a user with `ringmail passwd add USER`)")]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// This user may not read or write the file (or its directory).
    #[error("{path}: {op}: permission denied")]
    PermissionDenied {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
    },
    /// The file is not private to its owner, or has the wrong owner.
    #[error("{path}: refusing a password file {problem}; {fix}")]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// The command that fixes it.
        fix: String,
    },
    /// A line of the file is not `USER:HASH`, a comment or blank.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the line's content: it might be a password).
        message: String,
    },
    /// A user name that is not allowed.
    #[error("bad user name {name:?}: {why}")]
    BadUser {
        /// The name as given.
        name: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// A password that is not allowed.
    #[error("bad password: {0}")]
    BadPassword(&'static str),
    /// `remove` of a user the file does not have.
    #[error("{path}: no such user {user:?}")]
    UnknownUser {
        /// The file.
        path: PathBuf,
        /// The user.
        user: String,
    },
    /// Reading failed.
    #[error("{path}: {op}: {source}")]
    Read {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing the new file failed; the old one is unchanged.
    #[error("{path}: {op}: {source}")]
    Write {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Hashing failed (the system's random source, most likely).
    #[error("cannot hash the password: {0}")]
    Hash(argon2::password_hash::Error),
}

impl PasswdError {
    /// I/O errors other than a missing file or a refused permission may
    /// clear up, as may a failed hash (the random source); everything else
    /// needs someone to fix the file, the name or the password.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PasswdError::Read { .. } | PasswdError::Write { .. } | PasswdError::Hash(_)
        )
    }

    fn read(op: &'static str, path: &Path, source: std::io::Error) -> PasswdError {
        match source.kind() {
            std::io::ErrorKind::NotFound if op == "open" => PasswdError::NotFound {
                path: path.to_path_buf(),
            },
            std::io::ErrorKind::PermissionDenied => PasswdError::PermissionDenied {
                op,
                path: path.to_path_buf(),
            },
            _ => PasswdError::Read {
                op,
                path: path.to_path_buf(),
                source,
            },
        }
    }

    fn write(op: &'static str, path: &Path, source: std::io::Error) -> PasswdError {
        match source.kind() {
            std::io::ErrorKind::PermissionDenied => PasswdError::PermissionDenied {
                op,
                path: path.to_path_buf(),
            },
            _ => PasswdError::Write {
                op,
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

/// The users of a password file, for checking passwords. Cheap to make
/// (no hashing), so load it again to pick up changes.
#[derive(Clone, Default)]
pub struct Users {
    /// `(user, PHC hash)` in file order; every hash parses as PHC Argon2.
    entries: Vec<(String, String)>,
    /// User name → index into `entries`.
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: hashes stay out of logs.
        f.debug_struct("Users")
            .field("names", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

impl Users {
    /// Whether `password` is `user`'s. Takes one Argon2 verification
    /// whether or not the user exists.
    pub fn verify(&self, user: &str, password: impl AsRef<[u8]>) -> bool {
        let (phc, known) = match self.index.get(user) {
            Some(&i) => (self.entries[i].1.as_str(), true),
            None => (DUMMY_HASH, false),
        };
        // Every stored hash parsed when the file was loaded, and the dummy
        // is checked by a test: a failure here cannot happen, and would
        // only refuse the login.
        let Ok(hash) = PasswordHash::new(phc) else {
            return false;
        };
        let matched = Argon2::default()
            .verify_password(password.as_ref(), &hash)
            .is_ok();
        matched && known
    }

    /// The user names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(name, _)| name.as_str())
    }

    /// Whether `user` is in the file.
    pub fn contains(&self, user: &str) -> bool {
        self.index.contains_key(user)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Checks a user name: 1 to [`MAX_USER_LEN`] ASCII letters, digits and
/// `.` `_` `-` `@` `+`.
pub fn check_user_name(name: &str) -> Result<(), PasswdError> {
    let bad = |why| {
        Err(PasswdError::BadUser {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_USER_LEN {
        return bad("longer than 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-@+".contains(&b))
    {
        return bad("only letters, digits and . _ - @ + are allowed");
    }
    Ok(())
}

/// Checks a password: not empty, at most [`MAX_PASSWORD_LEN`] bytes, no NUL
/// (AUTH PLAIN could not carry it), no line break.
pub fn check_password(password: &[u8]) -> Result<(), PasswdError> {
    if password.is_empty() {
        return Err(PasswdError::BadPassword("empty"));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswdError::BadPassword("longer than 1024 bytes"));
    }
    if password.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
        return Err(PasswdError::BadPassword(
            "contains a NUL or line break character",
        ));
    }
    Ok(())
}

/// Hashes a password for the file: Argon2id with the crate's default
/// parameters (19 MiB, 2 passes, 1 lane) and a random 16-byte salt.
pub fn hash_password(password: &[u8]) -> Result<String, PasswdError> {
    check_password(password)?;
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(password, &salt)
        .map_err(PasswdError::Hash)?;
    Ok(hash.to_string())
}

/// One line of the file, kept so that an edit leaves comments in place.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Line {
    /// A comment or a blank line, as written.
    Other(String),
    /// `user:hash`.
    Entry {
        /// The user name.
        user: String,
        /// The PHC string.
        hash: String,
    },
}

/// Parses the file's bytes into lines; `path` is only for errors.
fn parse(bytes: &[u8], path: &Path) -> Result<Vec<Line>, PasswdError> {
    let mut lines = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if text.is_empty() {
        return Ok(lines);
    }
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let err = |message: String| PasswdError::Parse {
            path: path.to_path_buf(),
            line: n,
            message,
        };
        let raw = std::str::from_utf8(raw).map_err(|_| err("not UTF-8".into()))?;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            lines.push(Line::Other(raw.trim_end().to_string()));
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(err("expected USER:HASH (no ':')".into()));
        };
        check_user_name(user).map_err(|e| err(e.to_string()))?;
        check_hash(hash).map_err(err)?;
        if let Some(first) = seen.insert(user, n) {
            return Err(err(format!("user {user:?} is already on line {first}")));
        }
        lines.push(Line::Entry {
            user: user.to_string(),
            hash: hash.to_string(),
        });
    }
    Ok(lines)
}

/// Checks that `hash` is a PHC string that Argon2 can verify against.
/// The message never quotes `hash`: it might be a password.
fn check_hash(hash: &str) -> Result<(), String> {
    const EXPECTED: &str =
        "expected an Argon2 hash ($argon2id$...) after the ':' (plaintext passwords are not accepted)";
    let parsed = PasswordHash::new(hash).map_err(|_| EXPECTED.to_string())?;
    if !matches!(
        parsed.algorithm.as_str(),
        "argon2id" | "argon2i" | "argon2d"
    ) {
        return Err(format!(
            "hash algorithm {:?} is not supported; {EXPECTED}",
            parsed.algorithm.as_str()
        ));
    }
    argon2::Params::try_from(&parsed).map_err(|e| format!("bad Argon2 parameters: {e}"))?;
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err(format!("incomplete hash; {EXPECTED}"));
    }
    Ok(())
}

/// Refuses a file that is not a regular file, or that group or others
/// have any mode bits on. (Another user's private file cannot be opened in
/// the first place, unless by root.)
fn check_safe(path: &Path, meta: &std::fs::Metadata) -> Result<(), PasswdError> {
    let unsafe_file = |problem: String, fix: String| PasswdError::Unsafe {
        path: path.to_path_buf(),
        problem,
        fix,
    };
    if !meta.is_file() {
        return Err(unsafe_file(
            "that is not a regular file".into(),
            "point smtpd_passwd_file at a file".into(),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(unsafe_file(
            format!("that group or others may access (mode {mode:04o})"),
            format!("run `chmod 600 {}`", path.display()),
        ));
    }
    Ok(())
}

/// Reads and checks the file: `Ok(None)` when it does not exist.
fn read_file(path: &Path) -> Result<Option<(Vec<Line>, std::fs::Metadata)>, PasswdError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PasswdError::read("open", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| PasswdError::read("stat", path, e))?;
    check_safe(path, &meta)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| PasswdError::read("read", path, e))?;
    Ok(Some((parse(&bytes, path)?, meta)))
}

fn users_of(lines: &[Line]) -> Users {
    let mut users = Users::default();
    for line in lines {
        if let Line::Entry { user, hash } = line {
            users.index.insert(user.clone(), users.entries.len());
            users.entries.push((user.clone(), hash.clone()));
        }
    }
    users
}

/// The password file opened for an edit. The directory stays locked
/// (`flock`) until this is dropped; [`save`](PasswdFile::save) writes the
/// new file atomically.
#[derive(Debug)]
pub struct PasswdFile {
    /// Where the file is written: the path given, with symlinks resolved.
    path: PathBuf,
    /// The lines, comments included.
    lines: Vec<Line>,
    /// Owner and group of the existing file, kept by `save`.
    owner: Option<(u32, u32)>,
    /// The locked directory.
    dir: File,
}

impl PasswdFile {
    /// Reads and checks the file at `path` for the listener: no such file,
    /// loose permissions or a bad line are errors. Does no hashing.
    pub fn load(path: &Path) -> Result<Users, PasswdError> {
        match read_file(path)? {
            Some((lines, _)) => Ok(users_of(&lines)),
            None => Err(PasswdError::NotFound {
                path: path.to_path_buf(),
            }),
        }
    }

    /// Opens the file at `path` for an edit, locking its directory (waits
    /// for another edit to finish). A file that does not exist yet is
    /// empty; its directory must exist. Leftover temp files of an edit that
    /// was killed are removed.
    pub fn open(path: &Path) -> Result<PasswdFile, PasswdError> {
        // Edit the file a symlink points to, not the symlink.
        let path = match std::fs::canonicalize(path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
            Err(e) => return Err(PasswdError::read("resolve", path, e)),
        };
        let dir_path = parent_dir(&path);
        let dir = File::open(&dir_path)
            .map_err(|e| PasswdError::write("open directory", &dir_path, e))?;
        rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| PasswdError::write("lock directory", &dir_path, e.into()))?;
        remove_stale_temp_files(&path);
        let (lines, owner) = match read_file(&path)? {
            Some((lines, meta)) => (lines, Some((meta.uid(), meta.gid()))),
            None => (
                HEADER.lines().map(|l| Line::Other(l.to_string())).collect(),
                None,
            ),
        };
        Ok(PasswdFile {
            path,
            lines,
            owner,
            dir,
        })
    }

    /// The file being edited (symlinks resolved).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file existed when opened.
    pub fn existed(&self) -> bool {
        self.owner.is_some()
    }

    /// The users as they are now, edits included.
    pub fn users(&self) -> Users {
        users_of(&self.lines)
    }

    /// Sets `user`'s password hash (from [`hash_password`]), adding the user
    /// at the end or replacing the hash in place. Returns whether the user
    /// was already there.
    pub fn set(&mut self, user: &str, hash: &str) -> Result<bool, PasswdError> {
        check_user_name(user)?;
        check_hash(hash).map_err(|message| PasswdError::Parse {
            path: self.path.clone(),
            line: 0,
            message,
        })?;
        for line in &mut self.lines {
            if let Line::Entry { user: u, hash: h } = line {
                if u == user {
                    *h = hash.to_string();
                    return Ok(true);
                }
            }
        }
        self.lines.push(Line::Entry {
            user: user.to_string(),
            hash: hash.to_string(),
        });
        Ok(false)
    }

    /// Removes `user`; [`PasswdError::UnknownUser`] when not there.
    pub fn remove(&mut self, user: &str) -> Result<(), PasswdError> {
        let before = self.lines.len();
        self.lines
            .retain(|l| !matches!(l, Line::Entry { user: u, .. } if u == user));
        if self.lines.len() == before {
            return Err(PasswdError::UnknownUser {
                path: self.path.clone(),
                user: user.to_string(),
            });
        }
        Ok(())
    }

    /// Replaces the file with the current lines, durably: a temp file of
    /// mode 0600 (the old file's owner and group kept), fsync, rename over
    /// the file, fsync of the directory. On error the old file is intact.
    pub fn save(&self) -> Result<(), PasswdError> {
        let dir_path = parent_dir(&self.path);
        let (prefix, suffix) = temp_affixes(&self.path);
        let mut tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(suffix)
            .permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .tempfile_in(&dir_path)
            .map_err(|e| PasswdError::write("create temp file", &dir_path, e))?;
        let tmp_path = tmp.path().to_path_buf();
        let tmp_path = &tmp_path;
        let write = |op| move |e| PasswdError::write(op, tmp_path, e);
        let mut text = String::new();
        for line in &self.lines {
            match line {
                Line::Other(s) => text.push_str(s),
                Line::Entry { user, hash } => {
                    text.push_str(user);
                    text.push(':');
                    text.push_str(hash);
                }
            }
            text.push('\n');
        }
        let file = tmp.as_file_mut();
        // The umask may have narrowed the mode; make it exactly 0600.
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(write("chmod"))?;
        if let Some((uid, gid)) = self.owner {
            let meta = file.metadata().map_err(write("stat"))?;
            if (meta.uid(), meta.gid()) != (uid, gid) {
                std::os::unix::fs::fchown(&*file, Some(uid), Some(gid))
                    .map_err(write("chown (keeping the file's owner)"))?;
            }
        }
        file.write_all(text.as_bytes()).map_err(write("write"))?;
        file.sync_all().map_err(write("fsync"))?;
        tmp.persist(&self.path)
            .map_err(|e| PasswdError::write("rename", &self.path, e.error))?;
        self.dir
            .sync_all()
            .map_err(|e| PasswdError::write("fsync directory", &dir_path, e))
    }
}

/// The directory holding `path` (`.` for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Prefix and suffix of temp files for `path`: `.NAME.` and `.tmp`.
fn temp_affixes(path: &Path) -> (String, &'static str) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (format!(".{name}."), ".tmp")
}

/// Removes temp files of `path` left by an edit that was killed before its
/// rename. Called with the directory locked, so none is in use. Best effort:
/// a leftover is harmless (mode 0600, never read).
fn remove_stale_temp_files(path: &Path) {
    let (prefix, suffix) = temp_affixes(path);
    let Ok(entries) = std::fs::read_dir(parent_dir(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(suffix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_mode(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn dummy_hash_is_valid_with_default_parameters() {
        check_hash(DUMMY_HASH).unwrap();
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        let params = argon2::Params::try_from(&parsed).unwrap();
        let default = argon2::Params::default();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (default.m_cost(), default.t_cost(), default.p_cost())
        );
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }

    #[test]
    fn hash_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let hash = hash_password(b"s3cret pass").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains("s3cret"));
        // Two hashes of one password differ (random salt).
        assert_ne!(hash, hash_password(b"s3cret pass").unwrap());
        write_mode(&path, &format!("alice:{hash}\n"), 0o600);
        let users = PasswdFile::load(&path).unwrap();
        assert!(users.verify("alice", "s3cret pass"));
        assert!(!users.verify("alice", "s3cret pas"));
        assert!(!users.verify("alice", ""));
        assert!(!users.verify("Alice", "s3cret pass"));
        // An unknown user is refused, even with the dummy's parameters.
        assert!(!users.verify("bob", "s3cret pass"));
        assert!(!format!("{users:?}").contains("argon2"));
    }

    #[test]
    fn verifies_hashes_made_elsewhere_with_other_costs() {
        let params = argon2::Params::new(8192, 1, 1, None).unwrap();
        let other = Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let hash = other.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(hash.starts_with("$argon2i$v=19$m=8192,t=1,p=1$"), "{hash}");
        let lines = parse(format!("u:{hash}\n").as_bytes(), Path::new("p")).unwrap();
        let users = users_of(&lines);
        assert!(users.verify("u", "pw"));
        assert!(!users.verify("u", "pW"));
    }

    #[test]
    fn parses_comments_blank_lines_and_crlf() {
        let h = hash_password(b"pw").unwrap();
        let text = format!("# users\n\n  # indented comment\nalice:{h}\r\nbob@example.com:{h}\n");
        let lines = parse(text.as_bytes(), Path::new("p")).unwrap();
        let users = users_of(&lines);
        assert_eq!(
            users.names().collect::<Vec<_>>(),
            ["alice", "bob@example.com"]
        );
        assert!(users.contains("bob@example.com"));
        assert_eq!(users.len(), 2);
        assert!(parse(b"", Path::new("p")).unwrap().is_empty());
    }

    #[test]
    fn bad_lines_name_their_line_and_never_the_value() {
        let h = hash_password(b"pw").unwrap();
        let err = |text: String| {
            parse(text.as_bytes(), Path::new("/etc/p"))
                .unwrap_err()
                .to_string()
        };
        let e = err(format!("# c\nalice:{h}\nbob:hunter2\n"));
        assert!(e.starts_with("/etc/p:3: expected an Argon2 hash"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = err("# c\n\nnocolon\n".into());
        assert!(e.starts_with("/etc/p:3: expected USER:HASH"), "{e}");
        let e = err(format!("bad user:{h}\n"));
        assert!(e.starts_with("/etc/p:1: bad user name"), "{e}");
        let e = err(format!(":{h}\n"));
        assert!(e.contains("/etc/p:1: bad user name \"\": empty"), "{e}");
        let e = err(format!("a:{h}\nb:{h}\na:{h}\n"));
        assert_eq!(e, "/etc/p:3: user \"a\" is already on line 1");
        let e = err("a:$2y$10$abcdefghijklmnopqrstuv\n".into());
        assert!(e.starts_with("/etc/p:1:"), "{e}");
        let e = err(
            "a:$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$B0IiOfd57evp4N2KVC+VzORZqpdXQ6uwelWh6YXgb94\n"
                .into(),
        );
        assert!(e.contains("\"pbkdf2-sha256\" is not supported"), "{e}");
        let e = err("a:$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHQ$B0IiOfd57evp4N2KVC+VzORZqpdXQ6uwelWh6YXgb94\n".into());
        assert!(e.contains("bad Argon2 parameters"), "{e}");
        let mut bytes = b"# ok\n".to_vec();
        bytes.extend_from_slice(b"\xff:x\n");
        let e = parse(&bytes, Path::new("/etc/p")).unwrap_err();
        assert_eq!(e.to_string(), "/etc/p:2: not UTF-8");
        assert!(!e.is_transient());
    }

    #[test]
    fn user_names() {
        for ok in [
            "a",
            "newsletter",
            "a.b_c-d@example.com",
            "x+tag",
            &"u".repeat(64),
        ] {
            check_user_name(ok).unwrap();
        }
        for bad in ["", &"u".repeat(65), "a b", "a:b", "ä", "a\n", "a/b", "#x"] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        check_password(b"x").unwrap();
        check_password(&[b'p'; 1024]).unwrap();
        for bad in [&b""[..], &[b'p'; 1025], b"a\0b", b"a\nb", b"a\rb"] {
            assert!(matches!(
                check_password(bad),
                Err(PasswdError::BadPassword(_))
            ));
        }
    }

    #[test]
    fn refuses_a_file_others_may_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        for mode in [0o640, 0o604, 0o620, 0o660, 0o644, 0o610] {
            write_mode(&path, "# empty\n", mode);
            let e = PasswdFile::load(&path).unwrap_err();
            assert!(matches!(e, PasswdError::Unsafe { .. }), "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("mode {mode:04o}")) && msg.contains("chmod 600"),
                "{msg}"
            );
            assert!(!e.is_transient());
            // Not edited either.
            assert!(matches!(
                PasswdFile::open(&path),
                Err(PasswdError::Unsafe { .. })
            ));
        }
        write_mode(&path, "# empty\n", 0o400);
        assert!(PasswdFile::load(&path).unwrap().is_empty());
        let e = PasswdFile::load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let e = PasswdFile::load(&path).unwrap_err();
        assert!(matches!(e, PasswdError::NotFound { .. }), "{e}");
        assert!(!e.is_transient());
        let f = PasswdFile::open(&path).unwrap();
        assert!(!f.existed() && f.users().is_empty());
        let e = PasswdFile::open(&dir.path().join("no/such/dir/passwd")).unwrap_err();
        assert!(matches!(e, PasswdError::Write { .. }), "{e}");
    }

    #[test]
    fn edit_keeps_comments_and_writes_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let h1 = hash_password(b"one").unwrap();
        let h2 = hash_password(b"two").unwrap();
        write_mode(&path, &format!("# mine\nalice:{h1}\n# end\n"), 0o400);
        std::fs::write(dir.path().join(".passwd.stale.tmp"), "x").unwrap();
        let mut f = PasswdFile::open(&path).unwrap();
        assert!(!dir.path().join(".passwd.stale.tmp").exists());
        assert!(f.existed());
        assert!(!f.set("bob", &h2).unwrap());
        assert!(f.set("alice", &h2).unwrap());
        assert!(matches!(
            f.set("bob", "plain"),
            Err(PasswdError::Parse { .. })
        ));
        assert!(matches!(
            f.set("b b", &h2),
            Err(PasswdError::BadUser { .. })
        ));
        f.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("# mine\nalice:{h2}\n# end\nbob:{h2}\n"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        drop(f); // releases the lock: a second open would wait for it
        let mut f = PasswdFile::open(&path).unwrap();
        f.remove("alice").unwrap();
        let e = f.remove("alice").unwrap_err();
        assert!(matches!(e, PasswdError::UnknownUser { .. }), "{e}");
        f.save().unwrap();
        drop(f);
        let users = PasswdFile::load(&path).unwrap();
        assert_eq!(users.names().collect::<Vec<_>>(), ["bob"]);
        assert!(users.verify("bob", "two"));
        // Only the file is left in the directory: no temp files.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["passwd"]);
    }

    #[test]
    fn new_file_gets_a_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let mut f = PasswdFile::open(&path).unwrap();
        f.set("alice", &hash_password(b"pw").unwrap()).unwrap();
        f.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(HEADER), "{text}");
        assert!(PasswdFile::load(&path).unwrap().verify("alice", "pw"));
    }

    #[test]
    fn edits_through_a_symlink_change_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        let link = dir.path().join("link");
        write_mode(&real, "", 0o600);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut f = PasswdFile::open(&link).unwrap();
        f.set("alice", &hash_password(b"pw").unwrap()).unwrap();
        f.save().unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(PasswdFile::load(&real).unwrap().contains("alice"));
    }
}
