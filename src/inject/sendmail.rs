//! `ringmail sendmail` in its default mode (`-bm`): read a message from
//! stdin, work out the envelope, check the message, and write it durably to
//! `maildrop/`. It needs no running daemon; exit 0 means the maildrop file
//! is on disk.

use std::io::{BufRead, BufReader, Read};

use crate::config::Config;
use crate::mail::{
    argument_addresses, dedup_addresses, parse_envelope_address, recipients_from_headers,
    split_message,
};
use crate::model::{DsnParams, Envelope};
use crate::spool::Spool;

use super::sendmail_args::SendmailArgs;
use super::submit::{submit_to_daemon, Submitted};
use super::{maildrop, user};

/// Why a submission was refused, with the sysexits code to exit with.
#[derive(Debug, thiserror::Error)]
pub enum SendmailError {
    /// No recipients, or a bad flag (EX_USAGE, 64).
    #[error("{0}")]
    Usage(String),
    /// The message is malformed or too large (EX_DATAERR, 65).
    #[error("{0}")]
    Data(String),
    /// An address is not valid (EX_NOUSER, 67).
    #[error("{0}")]
    Address(String),
    /// The spool is missing or not writable, or the disk is full (EX_TEMPFAIL, 75).
    #[error("{0}")]
    TempFail(String),
}

impl SendmailError {
    /// The sysexits code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            SendmailError::Usage(_) => 64,
            SendmailError::Data(_) => 65,
            SendmailError::Address(_) => 67,
            SendmailError::TempFail(_) => 75,
        }
    }

    /// True for failures that a later retry may get past.
    pub fn is_transient(&self) -> bool {
        matches!(self, SendmailError::TempFail(_))
    }
}

/// Reads the message from `input`, builds the envelope from `args` and
/// queues it (see [`queue_envelope`]). Returns the queue ID or the
/// maildrop file's name.
pub fn submit(
    args: &SendmailArgs,
    config: &Config,
    input: &mut dyn Read,
) -> Result<String, SendmailError> {
    let origin = config.origin();
    let limit = config.message_size_limit;
    let message = read_message(input, args.ignore_dots, limit)?;

    let uid = user::current_uid();
    let sender = match &args.sender {
        Some(s) => parse_envelope_address(s, origin, true)
            .map_err(|e| SendmailError::Address(format!("bad sender address {s:?}: {e}")))?,
        None => format!("{}@{origin}", user::default_sender(uid)),
    };

    let mut recipients = Vec::new();
    for arg in &args.recipients {
        recipients.extend(
            argument_addresses(arg, origin).map_err(|e| {
                SendmailError::Address(format!("bad recipient address {arg:?}: {e}"))
            })?,
        );
    }

    let parts = split_message(&message)
        .map_err(|e| SendmailError::Data(format!("malformed message: {e}")))?;
    if args.extract_recipients {
        let found = recipients_from_headers(&parts, origin)
            .map_err(|e| SendmailError::Address(format!("bad address in message header: {e}")))?;
        recipients.extend(found);
    }
    let recipients = dedup_addresses(recipients);
    if recipients.is_empty() {
        return Err(SendmailError::Usage(if args.extract_recipients {
            "no recipient addresses found in message header".into()
        } else {
            "recipient addresses must be specified on the command line or via the -t option".into()
        }));
    }

    let dsn = dsn_params(args, recipients.len());
    let envelope = Envelope { sender, recipients };
    queue_envelope(config, &envelope, args.full_name.as_deref(), &dsn, &message)
}

/// What `-N`, `-R`, `-V` and `-B` ask, for a message with `nrcpt`
/// recipients (`-N` applies to each of them).
pub fn dsn_params(args: &SendmailArgs, nrcpt: usize) -> DsnParams {
    let mut dsn = DsnParams {
        ret: args.dsn_ret,
        envid: args.envid.clone(),
        body: args.body_type,
        rcpts: Vec::new(),
    };
    if let Some(notify) = args.dsn_notify {
        dsn.set_notify_all(notify, nrcpt);
    }
    dsn
}

/// Queues `message` with `envelope` and its DSN requests: through the
/// running daemon when it listens on `submit.sock` (it answers after its
/// group commit), else durably into `maildrop/` (as the current user).
/// Returns the queue ID, or the maildrop file's name. Used by plain
/// `sendmail` and by `sendmail -bs` for each message of the dialogue.
pub fn queue_envelope(
    config: &Config,
    envelope: &Envelope,
    full_name: Option<&str>,
    dsn: &DsnParams,
    message: &[u8],
) -> Result<String, SendmailError> {
    let uid = user::current_uid();
    let data = maildrop::encode(uid, envelope, full_name, dsn, message);
    let spool = Spool::new(&config.spool_dir);
    match submit_to_daemon(&spool.submit_socket(), &data) {
        Submitted::NoDaemon => {}
        Submitted::Queued(id) => return Ok(id),
        Submitted::Temporary(e) => return Err(SendmailError::TempFail(e)),
        Submitted::Refused(e) => return Err(SendmailError::Data(e)),
        Submitted::Unknown(e) => {
            // It may be queued: a retry may send it twice, but writing
            // maildrop/ now surely would.
            return Err(SendmailError::TempFail(format!(
                "{e}; the message may have been queued"
            )));
        }
    }
    let dir = spool.maildrop();
    if !dir.is_dir() {
        return Err(SendmailError::TempFail(format!(
            "{}: maildrop directory missing (start `ringmail serve` once to create the spool)",
            dir.display()
        )));
    }
    let path =
        maildrop::write_durably(&dir, &data).map_err(|e| SendmailError::TempFail(e.to_string()))?;
    Ok(path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default())
}

/// Reads the message. Without `ignore_dots`, a line holding only `.` ends
/// it (the rest of the input is not read). Larger than `limit` is an error.
fn read_message(
    input: &mut dyn Read,
    ignore_dots: bool,
    limit: u64,
) -> Result<Vec<u8>, SendmailError> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut message = Vec::new();
    let too_large = || SendmailError::Data(format!("message too large: limit is {limit} bytes"));
    if ignore_dots {
        reader
            .take(limit + 1)
            .read_to_end(&mut message)
            .map_err(|e| SendmailError::TempFail(format!("cannot read standard input: {e}")))?;
        return if message.len() as u64 > limit {
            Err(too_large())
        } else {
            Ok(message)
        };
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| SendmailError::TempFail(format!("cannot read standard input: {e}")))?;
        if n == 0 || matches!(line.as_slice(), b".\n" | b".\r\n" | b".") {
            return Ok(message);
        }
        message.extend_from_slice(&line);
        if message.len() as u64 > limit {
            return Err(too_large());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_dot_ends_input_unless_ignored() {
        let input = b"Subject: a\n\nline\n.\nafter\n";
        let m = read_message(&mut &input[..], false, 1000).unwrap();
        assert_eq!(m, b"Subject: a\n\nline\n");
        let m = read_message(&mut &input[..], true, 1000).unwrap();
        assert_eq!(m, input);
        let crlf = b"x\r\n.\r\ny\r\n";
        assert_eq!(read_message(&mut &crlf[..], false, 1000).unwrap(), b"x\r\n");
    }

    #[test]
    fn oversize_is_a_data_error() {
        let input = vec![b'x'; 5000];
        for dots in [false, true] {
            let e = read_message(&mut &input[..], dots, 4096).unwrap_err();
            assert_eq!(e.exit_code(), 65);
        }
    }
}
