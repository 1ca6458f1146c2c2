//! `sendmail` through the running daemon: the message, in maildrop format,
//! goes over the unix socket `spool_dir/submit.sock`; the daemon queues it
//! in the same group commit as everything else and answers one line:
//!
//! - `OK QUEUEID`: committed (fdatasync done): exit 0.
//! - `TEMP reason`: not queued now (full disk...): exit 75.
//! - `FAIL reason`: never (malformed, too large): exit 65.
//! - `BUSY`: the daemon is stopping: write `maildrop/` instead.
//!
//! The submitter's uid is the socket peer's (SO_PEERCRED), never the uid
//! line of the data. No daemon listening: `maildrop/` as before.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long `sendmail` waits for the daemon's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// What became of a message offered to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// No daemon took it (no socket, refused, or it is stopping): nothing
    /// was queued; write `maildrop/`.
    NoDaemon,
    /// Committed under this queue ID.
    Queued(String),
    /// Not queued, try again later.
    Temporary(String),
    /// Not queued, never will be.
    Refused(String),
    /// The connection ended after the message was sent and before the
    /// answer: it may or may not be queued.
    Unknown(String),
}

/// Offers `data` (a maildrop file's bytes) to the daemon at `socket`.
pub fn submit_to_daemon(socket: &Path, data: &[u8]) -> Submitted {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return Submitted::NoDaemon;
    };
    let _ = s.set_read_timeout(Some(ANSWER_TIMEOUT));
    let _ = s.set_write_timeout(Some(ANSWER_TIMEOUT));
    if s.write_all(data)
        .and_then(|()| s.shutdown(std::net::Shutdown::Write))
        .is_err()
    {
        // Nothing is queued before the whole message arrived.
        return Submitted::NoDaemon;
    }
    let mut line = String::new();
    match BufReader::new(&s).read_line(&mut line) {
        Ok(n) if n > 0 => parse_answer(line.trim_end()),
        Ok(_) => Submitted::Unknown("the daemon closed the connection without an answer".into()),
        Err(e) => Submitted::Unknown(format!("no answer from the daemon: {e}")),
    }
}

/// One answer line.
fn parse_answer(line: &str) -> Submitted {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    match word {
        "OK" if !rest.is_empty() => Submitted::Queued(rest.to_string()),
        "TEMP" => Submitted::Temporary(rest.to_string()),
        "FAIL" => Submitted::Refused(rest.to_string()),
        "BUSY" => Submitted::NoDaemon,
        _ => Submitted::Unknown(format!("unexpected answer from the daemon: {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(
            parse_answer("OK 01A2B3C4D5E6"),
            Submitted::Queued("01A2B3C4D5E6".into())
        );
        assert_eq!(
            parse_answer("TEMP disk full"),
            Submitted::Temporary("disk full".into())
        );
        assert_eq!(
            parse_answer("FAIL too large"),
            Submitted::Refused("too large".into())
        );
        assert_eq!(parse_answer("BUSY"), Submitted::NoDaemon);
        assert!(matches!(parse_answer("OK"), Submitted::Unknown(_)));
        assert!(matches!(parse_answer("what"), Submitted::Unknown(_)));
    }

    #[test]
    fn no_socket_is_no_daemon() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            submit_to_daemon(&dir.path().join("submit.sock"), b"x"),
            Submitted::NoDaemon
        );
    }
}
