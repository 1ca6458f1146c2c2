//! The maildrop file format: what `ringmail sendmail` writes into
//! `maildrop/` and pickup reads back. A short text envelope, an empty line,
//! then the message exactly as submitted (after the `-i` dot rule):
//!
//! ```text
//! RINGMAIL-MAILDROP 2                (1 when no DSN line follows)
//! uid 1000
//! sender me@example.com              (empty value: the null sender <>)
//! fullname Jane Doe                  (optional, from -F)
//! ret HDRS                           (optional, version 2: -R, FULL or HDRS)
//! envid 1234-abcd                    (optional, version 2: -V, printable ASCII)
//! body 8BITMIME                      (optional, version 2: -B, 7BIT or 8BITMIME)
//! rcpt you@example.net               (one line per recipient, at least one)
//! notify SUCCESS,FAILURE             (optional, version 2: -N, for the rcpt above)
//! orcpt rfc822;you@example.net       (optional, version 2: ORCPT of the rcpt above)
//!
//! <message>
//! ```
//!
//! A file without DSN requests is written as version 1, which every
//! ringmail reads; version 2 adds the DSN lines. Both are read. Every
//! address must be a complete address as the sendmail command checked it
//! (`mail::parse_smtp_path` gives it back unchanged): maildrop/ is writable
//! by every local user, so pickup trusts nothing it did not check.
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

use crate::mail::parse_smtp_path;
use crate::model::dsn::{valid_envid, valid_orcpt};
use crate::model::{BodyType, DsnParams, DsnRet, Envelope, Notify, RcptDsn};

/// First line of a maildrop file without DSN lines (format version 1).
pub const MAGIC_LINE: &str = "RINGMAIL-MAILDROP 1";
/// First line of a maildrop file with DSN lines (format version 2).
pub const MAGIC_LINE_V2: &str = "RINGMAIL-MAILDROP 2";

/// Errors reading or writing maildrop files.
#[derive(Debug, thiserror::Error)]
pub enum MaildropError {
    /// The file is not in maildrop format.
    #[error("not a maildrop file: {0}")]
    Format(&'static str),
    /// An envelope line holds a value that is not valid there.
    #[error("bad maildrop envelope line {key:?}: {reason}")]
    BadValue {
        /// The line's keyword (`sender`, `rcpt`, `notify`, ...).
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
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
    /// DSN requests and the declared body type (empty in version 1).
    pub dsn: DsnParams,
    /// The message.
    pub message: &'a [u8],
}

/// Encodes a maildrop file: version 1 when `dsn` is empty, else version 2.
/// `dsn.rcpts`, when not empty, follows `envelope.recipients`.
pub fn encode(
    uid: u32,
    envelope: &Envelope,
    full_name: Option<&str>,
    dsn: &DsnParams,
    message: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 256);
    let magic = if dsn.is_empty() {
        MAGIC_LINE
    } else {
        MAGIC_LINE_V2
    };
    out.extend_from_slice(magic.as_bytes());
    out.push(b'\n');
    // Values are checked before they get here; a line break must still
    // never start a second line.
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    let mut line = |key: &str, value: &str| {
        out.extend_from_slice(format!("{key} {}\n", clean(value)).as_bytes());
    };
    line("uid", &uid.to_string());
    line("sender", &envelope.sender);
    if let Some(name) = full_name {
        line("fullname", name);
    }
    if let Some(ret) = dsn.ret {
        line("ret", ret.as_str());
    }
    if let Some(envid) = &dsn.envid {
        line("envid", envid);
    }
    if let Some(body) = dsn.body {
        line("body", body.as_str());
    }
    for (i, r) in envelope.recipients.iter().enumerate() {
        line("rcpt", r);
        let notify = dsn.notify(i);
        if notify.is_specified() {
            line("notify", &notify.to_string());
        }
        if let Some(orcpt) = dsn.orcpt(i) {
            line("orcpt", orcpt);
        }
    }
    out.push(b'\n');
    out.extend_from_slice(message);
    out
}

/// Decodes a maildrop file of version 1 or 2, checking every value: the
/// addresses (complete, as `sendmail` wrote them), the DSN lines (only in
/// version 2, each at most once, `notify`/`orcpt` after a `rcpt`).
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
    let version2 = match next_line()? {
        MAGIC_LINE => false,
        MAGIC_LINE_V2 => true,
        _ => {
            return Err(MaildropError::Format(
                "missing RINGMAIL-MAILDROP 1 or 2 line",
            ))
        }
    };
    let bad = |key: &str, reason: String| MaildropError::BadValue {
        key: key.to_string(),
        reason,
    };
    let mut uid = None;
    let mut sender = None;
    let mut full_name = None;
    let mut recipients = Vec::new();
    let mut dsn = DsnParams::default();
    loop {
        let line = next_line()?;
        if line.is_empty() {
            break;
        }
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let dsn_line = matches!(key, "ret" | "envid" | "body" | "notify" | "orcpt");
        if dsn_line && !version2 {
            return Err(MaildropError::Format("DSN line in a version 1 file"));
        }
        let once = |set: bool| {
            if set {
                Err(MaildropError::Format("envelope line repeated"))
            } else {
                Ok(())
            }
        };
        match key {
            "uid" => {
                uid = Some(
                    value
                        .parse()
                        .map_err(|_| MaildropError::Format("bad uid"))?,
                )
            }
            "sender" => sender = Some(checked_address(value, true).map_err(|e| bad(key, e))?),
            "fullname" => full_name = Some(value.to_string()),
            "rcpt" => {
                recipients.push(checked_address(value, false).map_err(|e| bad(key, e))?);
                dsn.rcpts.push(RcptDsn::default());
            }
            "ret" => {
                once(dsn.ret.is_some())?;
                dsn.ret =
                    Some(DsnRet::parse(value).ok_or_else(|| bad(key, "not FULL or HDRS".into()))?);
            }
            "envid" => {
                once(dsn.envid.is_some())?;
                if !valid_envid(value) {
                    return Err(bad(key, "not 1 to 100 printable ASCII characters".into()));
                }
                dsn.envid = Some(value.to_string());
            }
            "body" => {
                once(dsn.body.is_some())?;
                dsn.body = Some(
                    BodyType::parse(value)
                        .ok_or_else(|| bad(key, "not 7BIT or 8BITMIME".into()))?,
                );
            }
            "notify" => {
                let last = dsn
                    .rcpts
                    .last_mut()
                    .ok_or(MaildropError::Format("notify line before any rcpt line"))?;
                once(last.notify.is_specified())?;
                last.notify = Notify::parse(value)
                    .filter(|n| n.is_specified())
                    .ok_or_else(|| {
                        bad(key, "not NEVER or a list of SUCCESS, FAILURE, DELAY".into())
                    })?;
            }
            "orcpt" => {
                let last = dsn
                    .rcpts
                    .last_mut()
                    .ok_or(MaildropError::Format("orcpt line before any rcpt line"))?;
                once(last.orcpt.is_some())?;
                if !valid_orcpt(value) {
                    return Err(bad(key, "not addr-type;address".into()));
                }
                last.orcpt = Some(value.to_string());
            }
            _ => return Err(MaildropError::Format("unknown envelope line")),
        }
    }
    if recipients.is_empty() {
        return Err(MaildropError::Format("no recipients"));
    }
    if dsn.rcpts.iter().all(|r| *r == RcptDsn::default()) {
        dsn.rcpts.clear();
    }
    Ok(MaildropFile {
        uid: uid.ok_or(MaildropError::Format("no uid line"))?,
        envelope: Envelope {
            sender: sender.ok_or(MaildropError::Format("no sender line"))?,
            recipients,
        },
        full_name,
        dsn,
        message: &data[pos..],
    })
}

/// Mode of maildrop files: readable by their owner (the submitter) only.
/// `maildrop/` is writable by every local user, so the file mode is what
/// keeps one user's pending mail from another; the daemon reads them as
/// root (see docs/ARCHITECTURE.md, "Spool permissions").
pub const FILE_MODE: u32 = 0o600;

/// `value` when it is a complete address that the strict SMTP path check
/// gives back unchanged (the null sender only when `null_ok`).
fn checked_address(value: &str, null_ok: bool) -> Result<String, String> {
    match parse_smtp_path(value, "", null_ok) {
        Ok(a) if a == value => Ok(a),
        Ok(a) => Err(format!("{value:?} is not written as the address {a:?}")),
        Err(e) => Err(e.to_string()),
    }
}

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
        let data = encode(7, &env, Some("Jane\nDoe"), &DsnParams::default(), msg);
        assert!(
            data.starts_with(b"RINGMAIL-MAILDROP 1\n"),
            "no DSN: version 1"
        );
        let back = decode(&data).unwrap();
        assert_eq!(back.uid, 7);
        assert_eq!(back.envelope, env);
        assert_eq!(back.full_name.as_deref(), Some("Jane Doe"));
        assert_eq!(back.dsn, DsnParams::default());
        assert_eq!(back.message, msg);
    }

    #[test]
    fn dsn_requests_round_trip_in_version_2() {
        let env = Envelope {
            sender: "s@x.example".into(),
            recipients: vec!["a@x.example".into(), "b@y.example".into()],
        };
        let dsn = DsnParams {
            ret: Some(DsnRet::Headers),
            envid: Some("env 42+=".into()),
            body: Some(BodyType::EightBitMime),
            rcpts: vec![
                RcptDsn {
                    notify: Notify::parse("success,delay").unwrap(),
                    orcpt: Some("rfc822;a@x.example".into()),
                },
                RcptDsn::default(),
            ],
        };
        let data = encode(0, &env, None, &dsn, b"Subject: x\n\nbody\n");
        let text = String::from_utf8_lossy(&data);
        assert!(
            text.starts_with(
                "RINGMAIL-MAILDROP 2\nuid 0\nsender s@x.example\nret HDRS\nenvid env 42+=\n\
                 body 8BITMIME\nrcpt a@x.example\nnotify SUCCESS,DELAY\n\
                 orcpt rfc822;a@x.example\nrcpt b@y.example\n\n"
            ),
            "{text}"
        );
        let back = decode(&data).unwrap();
        assert_eq!(back.dsn, dsn);
        assert_eq!(back.envelope, env);
        // The same NOTIFY for every recipient, as sendmail -N writes it.
        let mut all = DsnParams::default();
        all.set_notify_all(Notify::NEVER, 2);
        assert_eq!(decode(&encode(0, &env, None, &all, b"")).unwrap().dsn, all);
    }

    /// A file written by ringmail before format version 2 (a fixture, not
    /// produced by today's encoder).
    #[test]
    fn reads_version_1_files() {
        let old = b"RINGMAIL-MAILDROP 1\nuid 1000\nsender me@example.com\nfullname Jane Doe\n\
                    rcpt you@example.net\nrcpt root@example.org\n\nSubject: old\n\nbody\n";
        let f = decode(old).unwrap();
        assert_eq!(f.uid, 1000);
        assert_eq!(f.envelope.sender, "me@example.com");
        assert_eq!(
            f.envelope.recipients,
            ["you@example.net", "root@example.org"]
        );
        assert_eq!(f.full_name.as_deref(), Some("Jane Doe"));
        assert!(f.dsn.is_empty());
        assert_eq!(f.message, b"Subject: old\n\nbody\n");
    }

    #[test]
    fn bad_envelope_values_are_refused() {
        let head = "RINGMAIL-MAILDROP 2\nuid 0\nsender s@x.example\n";
        for bad in [
            "rcpt evil@x.test <good@example.net>\n",
            "rcpt <good@example.net>\n",
            "rcpt root\n",
            "rcpt \n",
            "rcpt a@x.example\rRCPT TO:<evil@x.test>\n",
            "ret ALL\nrcpt a@x.example\n",
            "ret FULL\nret HDRS\nrcpt a@x.example\n",
            "envid \nrcpt a@x.example\n",
            "envid a\tb\nrcpt a@x.example\n",
            "body BINARYMIME\nrcpt a@x.example\n",
            "notify NEVER\nrcpt a@x.example\n",
            "rcpt a@x.example\nnotify NEVER,SUCCESS\n",
            "rcpt a@x.example\nnotify NEVER\nnotify DELAY\n",
            "rcpt a@x.example\norcpt a@x.example\n",
        ] {
            let data = format!("{head}{bad}\nbody");
            assert!(decode(data.as_bytes()).is_err(), "{bad:?} accepted");
        }
        let v1_with_dsn =
            b"RINGMAIL-MAILDROP 1\nuid 0\nsender s@x.example\nrcpt a@x.example\nnotify NEVER\n\n";
        assert!(decode(v1_with_dsn).is_err());
        assert!(decode(b"RINGMAIL-MAILDROP 1\nuid 0\nsender <bad\nrcpt a@x.example\n\n").is_err());
        assert!(decode(b"RINGMAIL-MAILDROP 3\nuid 0\nsender \nrcpt a@x.example\n\n").is_err());
    }

    #[test]
    fn rejects_foreign_or_incomplete_files() {
        assert!(decode(b"Subject: hi\n\nbody").is_err());
        assert!(decode(b"RINGMAIL-MAILDROP 1\nuid 0\nsender a@b\n\nmsg").is_err());
        assert!(decode(b"RINGMAIL-MAILDROP 1\nuid 0\nsender a@b\nrcpt c@d").is_err());
        assert!(decode(b"RINGMAIL-MAILDROP 1\nuid 0\nsender a@b\nrcpt c@d\n\n").is_ok());
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
