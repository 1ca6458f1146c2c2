//! The daemon's side of the queue commands: a command goes to the shards
//! that may hold its messages (by queue ID when it names them, else all),
//! each carries it out on its own queue and answers after a commit; the
//! answers are merged into one report. The admin socket and the HTTP API
//! both call [`QueueAdmin::execute`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::queue_command::{QueueCommand, QueueCommandReport, QueueOp, SelectorError};
use crate::model::site_status::SiteStatus;
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
    /// A site command without shaping.
    #[error("shaping is not running in this daemon")]
    NoShaping,
}

impl QueueAdminError {
    /// True when running the command again may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            QueueAdminError::Selector(_) | QueueAdminError::NoShaping
        )
    }
}

/// Sends queue commands to the shards. Cheap to share.
#[derive(Clone)]
pub struct QueueAdmin {
    mailboxes: Arc<Vec<Arc<ShardMailbox>>>,
    shaper: Option<Arc<crate::shape::Shaper>>,
}

impl QueueAdmin {
    /// Over the shards' mailboxes, in shard order.
    pub fn new(
        mailboxes: Vec<Arc<ShardMailbox>>,
        shaper: Option<Arc<crate::shape::Shaper>>,
    ) -> QueueAdmin {
        QueueAdmin {
            mailboxes: Arc::new(mailboxes),
            shaper,
        }
    }

    /// Suspends or resumes a site (no messages are selected: the shards
    /// see it in the shared shaper at their next look, within a second).
    fn site_command(&self, command: &QueueCommand) -> Result<QueueCommandReport, QueueAdminError> {
        let shaper = self.shaper.as_ref().ok_or(QueueAdminError::NoShaping)?;
        let now = Instant::now();
        let (site, until) = match &command.op {
            QueueOp::Suspend { site, seconds } => (site, Some(now + Duration::from_secs(*seconds))),
            QueueOp::Resume { site } => (site, None),
            _ => return Err(QueueAdminError::NoShaping),
        };
        let key = crate::shape::SiteKey::new(site);
        if !command.dry_run {
            shaper.set_suspended(&key, until, now);
            match &command.op {
                QueueOp::Suspend { seconds, .. } => crate::info_line!(
                    target: "postsuper",
                    "site {site}: suspended for {} by the administrator",
                    crate::shape::units::duration_text(Duration::from_secs(*seconds))
                ),
                _ => {
                    crate::info_line!(target: "postsuper", "site {site}: resumed by the administrator")
                }
            }
        }
        Ok(QueueCommandReport {
            op: command.op.as_str().to_string(),
            dry_run: command.dry_run,
            ..QueueCommandReport::default()
        })
    }

    /// Every site the shared shaper holds state for (automation, open
    /// connections), for `ringmail queue sites`. Reads only; no shard is
    /// asked.
    pub fn sites(&self) -> Result<Vec<SiteStatus>, QueueAdminError> {
        let shaper = self.shaper.as_ref().ok_or(QueueAdminError::NoShaping)?;
        let now = Instant::now();
        let unix_now = chrono::Utc::now().timestamp();
        let at =
            |d: Duration| unix_now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Ok(shaper
            .site_states(now)
            .into_iter()
            .map(|s| SiteStatus {
                site: s.site.as_str().to_string(),
                source: s.source.as_deref().map(str::to_string),
                connections: s.connections,
                max_connections: s.max_connections,
                suspended_until: s.suspended_for.map(at),
                connection_factor: s.connection_factor,
                message_rate_factor: s.message_rate_factor,
                next_change: s.next_change_in.map(at),
            })
            .collect())
    }

    /// Carries out `command` on every shard concerned and merges what they
    /// did. Each shard's part is durable when it answers.
    pub fn execute(&self, command: QueueCommand) -> Result<QueueCommandReport, QueueAdminError> {
        if command.op.site().is_some() {
            return self.site_command(&command);
        }
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
