//! `sendmail -bs`: SMTP on standard input and output, as programs that
//! speak SMTP to a local MTA through a pipe expect. A driver of the shared
//! sans-IO server session ([`crate::proto::server`]), like the listener
//! and the sink: it reads into a reusable buffer, lets the session consume
//! it, writes all replies of one read in one write, and writes each
//! accepted message durably to `maildrop/` (with its RFC 3461 requests,
//! exactly as plain `sendmail` does) before the session answers `250`; a
//! message that cannot be written gets `451 4.3.0`.
//!
//! The session has no client address, offers neither STARTTLS nor AUTH (a
//! local pipe needs neither), and qualifies addresses without a domain
//! with `myorigin`.

use std::io::{self, Read, Write};
use std::sync::Arc;

use crate::config::Config;
use crate::model::Envelope;
use crate::proto::server::{
    AcceptAll, Limits, PendingMessage, Progress, Reply, Session, SessionConfig, SessionParams,
    Stage,
};

use super::sendmail::queue_envelope;

/// Size of the read buffer (far more than a command line and its CR,
/// the most the session leaves unconsumed).
const READ_BUFFER: usize = 64 * 1024;

/// Why a `-bs` session stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SmtpStdinError {
    /// Standard input could not be read.
    #[error("cannot read standard input: {0}")]
    Read(#[source] io::Error),
    /// Standard output could not be written.
    #[error("cannot write standard output: {0}")]
    Write(#[source] io::Error),
    /// The session stopped where this driver cannot go on (an invariant
    /// breach: STARTTLS is never offered, input never fills the buffer).
    #[error("SMTP session: {0}")]
    Session(&'static str),
}

impl SmtpStdinError {
    /// True for failures that a later retry may get past (I/O).
    pub fn is_transient(&self) -> bool {
        matches!(self, SmtpStdinError::Read(_) | SmtpStdinError::Write(_))
    }

    /// The sysexits code: EX_IOERR (74) for I/O, EX_SOFTWARE (70) else.
    pub fn exit_code(&self) -> u8 {
        match self {
            SmtpStdinError::Read(_) | SmtpStdinError::Write(_) => 74,
            SmtpStdinError::Session(_) => 70,
        }
    }
}

/// How a `-bs` session ended without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The session closed (QUIT, or a limit such as too many errors).
    Closed,
    /// Standard input ended between commands.
    EndOfInput,
    /// Standard input ended inside message data: that message was not
    /// queued (and never acknowledged).
    EndOfInputInData,
}

/// The session settings of `sendmail -bs` for `config`: its host name,
/// `myorigin` for unqualified addresses, the SMTP recipient limit and the
/// message size limit; no STARTTLS, no AUTH.
pub fn session_params(config: &Config) -> SessionParams {
    SessionParams::new(SessionConfig {
        // As Postfix's `sendmail -bs` (smtpd_helo_required = no) and the
        // dialogue it replaced: programs may start with MAIL.
        helo_required: false,
        hostname: config.myhostname.clone(),
        starttls: false,
        auth: None,
        origin: Some(config.origin().to_string()),
        limits: Limits {
            max_recipients: config.smtpd_recipient_limit,
            max_message_size: Some(config.message_size_limit),
            ..Limits::default()
        },
        ..SessionConfig::default()
    })
}

/// Runs `sendmail -bs` on `input` and `output`: each accepted message is
/// written to `maildrop/` (with `full_name` when `-F` gave one) before its
/// `250`.
pub fn serve(
    config: &Config,
    full_name: Option<&str>,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<Ended, SmtpStdinError> {
    let params = Arc::new(session_params(config));
    let mut store = |m: &PendingMessage<'_>| -> Result<String, String> {
        let envelope = Envelope {
            sender: m.sender.to_string(),
            recipients: m.recipients.to_vec(),
        };
        queue_envelope(config, &envelope, full_name, &m.dsn(), m.content).map_err(|e| e.to_string())
    };
    drive(params, input, output, &mut store)
}

/// The loop: `store` writes one message durably and returns its name (the
/// `queued as`), or why it could not.
fn drive(
    params: Arc<SessionParams>,
    input: &mut dyn Read,
    output: &mut dyn Write,
    store: &mut dyn FnMut(&PendingMessage<'_>) -> Result<String, String>,
) -> Result<Ended, SmtpStdinError> {
    let mut session = Session::new(params, None);
    let mut out = Vec::with_capacity(4096);
    let mut buf = vec![0u8; READ_BUFFER];
    let (mut start, mut end) = (0, 0);
    session.greeting(&mut out);
    loop {
        let (used, progress) = session.feed(&buf[start..end], &mut out, &mut AcceptAll);
        start += used;
        match progress {
            Progress::NeedInput => {
                // Every reply to what was read goes out before blocking
                // on more (a pipelining client gets them in one write).
                flush(output, &mut out)?;
                buf.copy_within(start..end, 0);
                (start, end) = (0, end - start);
                if end == buf.len() {
                    return Err(SmtpStdinError::Session("read buffer full"));
                }
                let n = read(input, &mut buf[end..])?;
                if n == 0 {
                    return Ok(if session.stage() == Stage::Data {
                        Ended::EndOfInputInData
                    } else {
                        Ended::EndOfInput
                    });
                }
                end += n;
            }
            Progress::Message => {
                let stored = match session.pending_message() {
                    Some(m) => store(&m),
                    None => Err("no message".to_string()),
                };
                match stored {
                    Ok(name) => session.finish_message(Ok(&name), &mut out),
                    Err(why) => {
                        let reply = Reply::new(
                            451,
                            "4.3.0",
                            format!("Error: queue file write error: {why}"),
                        );
                        session.finish_message(Err(reply), &mut out);
                    }
                }
            }
            // AUTH is never offered, so never pending; refuse it anyway.
            Progress::Auth => session.auth_result(false, &mut out),
            Progress::StartTls => {
                flush(output, &mut out)?;
                return Err(SmtpStdinError::Session("STARTTLS on a pipe"));
            }
            Progress::Close => {
                flush(output, &mut out)?;
                return Ok(Ended::Closed);
            }
        }
    }
}

/// Reads once, retrying when interrupted.
fn read(input: &mut dyn Read, buf: &mut [u8]) -> Result<usize, SmtpStdinError> {
    loop {
        match input.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SmtpStdinError::Read(e)),
        }
    }
}

/// Writes and flushes the replies gathered so far.
fn flush(output: &mut dyn Write, out: &mut Vec<u8>) -> Result<(), SmtpStdinError> {
    if out.is_empty() {
        return Ok(());
    }
    output
        .write_all(out)
        .and_then(|()| output.flush())
        .map_err(SmtpStdinError::Write)?;
    out.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BodyType, Notify};

    /// Reads at most `step` bytes at a time, as a pipe may.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn params() -> Arc<SessionParams> {
        let config = Config {
            myhostname: "mx.example.org".into(),
            myorigin: "example.org".into(),
            ..Config::default()
        };
        Arc::new(session_params(&config))
    }

    /// Runs `input` (read `step` bytes at a time); the replies, how it
    /// ended, and what `store` saw: (sender, recipients, DSN, content).
    type Stored = (String, Vec<String>, crate::model::DsnParams, Vec<u8>);

    fn run(input: &[u8], step: usize, fail: bool) -> (String, Ended, Vec<Stored>) {
        let mut stored = Vec::new();
        let mut out = Vec::new();
        let mut store = |m: &PendingMessage<'_>| {
            if fail {
                return Err("disk\nfull".to_string());
            }
            stored.push((
                m.sender.to_string(),
                m.recipients.to_vec(),
                m.dsn(),
                m.content.to_vec(),
            ));
            Ok(format!("M{}", stored.len()))
        };
        let mut input = Trickle { data: input, step };
        let ended = drive(params(), &mut input, &mut out, &mut store).expect("no I/O error");
        (String::from_utf8(out).expect("replies"), ended, stored)
    }

    const DIALOGUE: &[u8] = b"EHLO client\r\n\
MAIL FROM:<a@b.example> BODY=8BITMIME RET=HDRS\r\nRCPT TO:<c@d.example> NOTIFY=SUCCESS\r\n\
RCPT TO:<root>\r\nDATA\r\nSubject: hi\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n";

    #[test]
    fn a_pipelined_dialogue_in_any_read_size() {
        for step in [1, 7, 4096] {
            let (replies, ended, stored) = run(DIALOGUE, step, false);
            assert_eq!(ended, Ended::Closed);
            assert!(replies.starts_with("220 mx.example.org ESMTP"), "{replies}");
            assert!(!replies.contains("STARTTLS") && !replies.contains("AUTH"));
            assert!(replies.contains("250 2.0.0 Ok: queued as M1\r\n221 "));
            assert_eq!(stored.len(), 1);
            let (sender, rcpts, dsn, content) = &stored[0];
            assert_eq!(sender, "a@b.example");
            assert_eq!(rcpts, &["c@d.example", "root@example.org"]);
            assert_eq!(dsn.body, Some(BodyType::EightBitMime));
            assert_eq!(dsn.notify(0), Notify::parse("success").unwrap());
            assert_eq!(content, b"Subject: hi\r\n\r\n.leading dot\r\n");
        }
    }

    #[test]
    fn a_failed_write_is_a_451_and_the_session_goes_on() {
        let (replies, ended, _) = run(DIALOGUE, 4096, true);
        assert_eq!(ended, Ended::Closed);
        assert!(
            replies.contains("451 4.3.0 Error: queue file write error: disk full\r\n221 "),
            "{replies}"
        );
        assert!(!replies.contains("queued as"));
    }

    #[test]
    fn end_of_input_in_data_queues_nothing() {
        let input =
            b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: x\r\n";
        let (replies, ended, stored) = run(input, 4096, false);
        assert_eq!(ended, Ended::EndOfInputInData, "{replies}");
        assert!(stored.is_empty());
        // As Postfix's `sendmail -bs`, a program may start with MAIL.
        let (replies, ended, _) = run(b"MAIL FROM:<a@b.example>\r\n", 4096, false);
        assert_eq!(ended, Ended::EndOfInput);
        assert!(replies.ends_with("250 2.1.0 Ok\r\n"), "{replies}");
    }

    #[test]
    fn an_overlong_line_is_refused_not_fatal() {
        let mut input = vec![b'x'; 3 * READ_BUFFER];
        input.extend_from_slice(b"\r\nQUIT\r\n");
        let (replies, ended, _) = run(&input, 4096, false);
        assert_eq!(ended, Ended::Closed);
        assert!(replies.contains("500 5.5.2"), "{replies}");
    }
}
