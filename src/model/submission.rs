//! A cleaned message on its way from pickup to a shard, and the answer that
//! comes back once it is durable.

use std::path::PathBuf;

use super::{DsnParams, Envelope, FileIdentity, MessageFlags, QueueId};

/// Where a submission came from, so the submitter can be told once the message
/// is durable (for a spool file: unlink it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file in `maildrop/` or `pickup/`, to be unlinked after the commit.
    File(PathBuf),
    /// Generated inside the daemon (tests, benchmarks, later bounces).
    Internal(u64),
    /// A submitter waiting for its own answer (an SMTP session, which
    /// replies `250` only after the commit): the shard sends the [`Ack`]
    /// to `to` instead of the pickup channel.
    Reply {
        /// The submitter's number for this message.
        id: u64,
        /// Where the answer goes.
        to: AckSender,
    },
}

/// The sending half of a submitter's own answer channel.
#[derive(Clone, Debug)]
pub struct AckSender(pub tokio::sync::mpsc::UnboundedSender<Ack>);

impl PartialEq for AckSender {
    fn eq(&self, other: &AckSender) -> bool {
        self.0.same_channel(&other.0)
    }
}

impl Eq for AckSender {}

/// A message ready to be queued: envelope plus canonical wire form.
#[derive(Clone, Debug)]
pub struct Submission {
    /// Envelope sender and recipients.
    pub envelope: Envelope,
    /// The message as it goes on the wire: CRLF line ends, dot-stuffed once,
    /// without the final `.` line.
    pub wire: Vec<u8>,
    /// 8BITMIME / SMTPUTF8 needs.
    pub flags: MessageFlags,
    /// DSN requests (NOTIFY, RET, ENVID, ORCPT) and the declared BODY;
    /// per-recipient entries follow `envelope.recipients`.
    pub dsn: DsnParams,
    /// The Message-ID (without angle brackets), for the cleanup log line.
    pub message_id: String,
    /// Arrival time in microseconds since the Unix epoch.
    pub arrival_micros: u64,
    /// The submitting user's uid, for the pickup log line.
    pub uid: u32,
    /// Whom to tell once the message is durable.
    pub source: Source,
    /// Where it came in (the metrics' `source` label).
    pub origin: crate::obs::metrics::Origin,
    /// For a spool file, which file it was (kept in the queue record, so a
    /// restart does not queue a leftover file twice); `None` otherwise.
    pub file_identity: Option<FileIdentity>,
    /// A campaign slice instead of a message: the recipients are in it
    /// (`envelope` and `wire` unused) and their messages are rendered at
    /// delivery.
    pub campaign: Option<Box<super::CampaignSlice>>,
}

impl Submission {
    /// A bare message for unit tests: `wire` from `Source::Internal(i)`,
    /// no envelope.
    #[cfg(test)]
    pub(crate) fn for_test(i: u64, wire: &[u8]) -> Box<Submission> {
        Box::new(Submission {
            envelope: Envelope::default(),
            wire: wire.to_vec(),
            flags: MessageFlags::default(),
            dsn: DsnParams::default(),
            message_id: format!("{i}@test.example"),
            arrival_micros: 0,
            uid: 0,
            source: Source::Internal(i),
            origin: Default::default(),
            file_identity: None,
            campaign: None,
        })
    }

    /// A campaign slice to queue, acknowledged to `source`.
    pub fn campaign_slice(slice: super::CampaignSlice, source: Source) -> Submission {
        Submission {
            envelope: Envelope::default(),
            wire: Vec::new(),
            flags: MessageFlags::default(),
            dsn: DsnParams::default(),
            message_id: String::new(),
            arrival_micros: super::now_micros(),
            uid: 0,
            source,
            origin: crate::obs::metrics::Origin::Campaign,
            file_identity: None,
            campaign: Some(Box::new(slice)),
        }
    }
}

/// Why a shard could not queue a submission.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// The queue could not be written (disk full, I/O error): temporary,
    /// the input stays where it is and is retried.
    #[error("queue write failed: {0}")]
    QueueWrite(String),
    /// The message can never be queued (it does not fit the record format):
    /// the submitter must set the input aside (quarantine), not retry it.
    #[error("message cannot be queued: {0}")]
    Rejected(String),
    /// The daemon is shutting down and did not take the message.
    #[error("shutting down")]
    ShuttingDown,
}

impl AckError {
    /// True when retrying the same input later may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, AckError::Rejected(_))
    }
}

/// The answer from a shard for one submission.
#[derive(Clone, Debug)]
pub struct Ack {
    /// The submission's source, echoed back.
    pub source: Source,
    /// The queue ID once committed (fdatasync done), or why not. For a
    /// file source, `Ok` is the submitter's cue to unlink the file.
    pub result: Result<QueueId, AckError>,
}
