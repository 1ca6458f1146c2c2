//! The daemon's side of the queue commands: a command goes to the shards
//! that may hold its messages (by queue ID when it names them, else all),
//! each carries it out on its own queue and answers after a commit; the
//! answers are merged into one report. The admin socket and the HTTP API
//! both call [`QueueAdmin::execute`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::queue_command::{QueueCommand, QueueCommandReport, SelectorError};
use crate::model::QueueId;
use crate::sched::mailbox::{ShardMailbox, ShardRequest};

/// How long a command waits for every shard's answer (a shard answers
/// between commit batches, so within milliseconds unless its disk stalls).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a queue command was not carried out (or not completely).
#[derive(Debug, thiserror::Error)]
pub enum QueueAdminError {
    /// The selector is unusable.
    #[error("{0}")]
    Selector(#[from] SelectorError),
    /// Some shards did not answer in time: their part may or may not be
    /// done.
    #[error("{0} shards did not answer within {ANSWER_TIMEOUT:?}; run the command again to see what is left")]
    Timeout(usize),
    /// The daemon is stopping.
    #[error("the daemon is stopping")]
    Stopping,
}

impl QueueAdminError {
    /// True when running the command again may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, QueueAdminError::Selector(_))
    }
}

/// Sends queue commands to the shards. Cheap to share.
#[derive(Clone)]
pub struct QueueAdmin {
    mailboxes: Arc<Vec<Arc<ShardMailbox>>>,
}

impl QueueAdmin {
    /// Over the shards' mailboxes, in shard order.
    pub fn new(mailboxes: Vec<Arc<ShardMailbox>>) -> QueueAdmin {
        QueueAdmin {
            mailboxes: Arc::new(mailboxes),
        }
    }

    /// Carries out `command` on every shard concerned and merges what they
    /// did. Each shard's part is durable when it answers.
    pub fn execute(&self, command: QueueCommand) -> Result<QueueCommandReport, QueueAdminError> {
        let ids = command.selector.check()?;
        let shards: Vec<usize> = if command.selector.ids.is_empty() {
            (0..self.mailboxes.len()).collect()
        } else {
            let mut s: Vec<usize> = ids
                .iter()
                .map(|id| id.shard())
                .filter(|&s| s < self.mailboxes.len())
                .collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        let mut report = QueueCommandReport {
            op: command.op.as_str().to_string(),
            dry_run: command.dry_run,
            ..QueueCommandReport::default()
        };
        let (tx, rx) = crossbeam_channel::bounded(shards.len().max(1));
        for &shard in &shards {
            let ids: Vec<QueueId> = ids
                .iter()
                .copied()
                .filter(|id| id.shard() == shard)
                .collect();
            self.mailboxes[shard].send(ShardRequest::Queue {
                command: command.clone(),
                ids,
                reply: tx.clone(),
            });
        }
        drop(tx);
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        for answered in 0..shards.len() {
            match rx.recv_deadline(deadline) {
                Ok(part) => report.merge(part),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    return Err(QueueAdminError::Timeout(shards.len() - answered))
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(QueueAdminError::Stopping)
                }
            }
        }
        Ok(report)
    }
}
