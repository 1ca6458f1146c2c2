//! The bytes and envelope a job sends: the queued message, or a campaign
//! recipient's rendered one.

use std::time::Duration;

use super::results::Timing;
use super::site_retry::RetryBounds;
use super::{CampaignJob, Job, State};
use crate::deliver::session::Outgoing;
use crate::model::{now_micros, BodyType, DsnParams, MessageFlags};

impl State {
    /// The message data a job sends. `None` when there is nothing to send:
    /// the message is gone or damaged, or (a campaign recipient) its
    /// message could not be rendered, which is recorded as its result here.
    pub(super) fn outgoing(&mut self, job: &Job) -> Option<Outgoing> {
        match self.outgoing_campaign(job) {
            Some(CampaignJob::Send(msg)) => return Some(msg),
            Some(CampaignJob::Skip) => return None,
            Some(CampaignJob::Suppressed(why)) => {
                self.suppressed(job, &why);
                return None;
            }
            Some(CampaignJob::Record(result)) => {
                let timing = Timing {
                    started: now_micros(),
                    setup: Duration::ZERO,
                    xfer: Duration::ZERO,
                    conn_use: 0,
                };
                let bounds = RetryBounds::global(&self.cfg);
                self.record_results(job, std::slice::from_ref(&result), None, &timing, bounds);
                return None;
            }
            None => {}
        }
        let store = self.store.borrow();
        let Some((view, _)) = store.get(job.id) else {
            if store.peek(job.id).is_some() {
                // Readable but damaged since it was verified: never send
                // it, and say so at each attempt (the record stays for
                // inspection; it is retried like a deferral).
                tracing::error!(target: "qmgr", "{}: queue record fails its checksum: not sent; left in the queue", job.id);
            }
            return None;
        };
        Some(Outgoing {
            sender: view.sender.to_string(),
            recipients: job
                .rcpts
                .iter()
                .filter_map(|&i| view.recipients.get(i as usize).map(|r| r.to_string()))
                .collect(),
            wire: view.wire.to_vec(),
            flags: delivery_flags(view.flags, view.dsn.body),
            dsn: DsnParams {
                ret: view.dsn.ret,
                envid: view.dsn.envid.clone(),
                body: view.dsn.body,
                // Parallel to the job's recipients; empty when none asked.
                rcpts: if view.dsn.rcpts.is_empty() {
                    Vec::new()
                } else {
                    job.rcpts
                        .iter()
                        .map(|&i| view.dsn.rcpts.get(i as usize).cloned().unwrap_or_default())
                        .collect()
                },
            },
        })
    }
}

/// The flags delivery goes by: those cleanup found in the message, plus
/// `BODY=8BITMIME` when the submitter declared it (`sendmail -B8BITMIME`,
/// `BODY=8BITMIME` at injection) even if every byte is 7-bit. A declared
/// `7BIT` does not hide 8-bit content cleanup found.
pub(super) fn delivery_flags(found: MessageFlags, declared: Option<BodyType>) -> MessageFlags {
    let mut flags = found;
    if declared == Some(BodyType::EightBitMime) {
        flags.set(MessageFlags::BODY_8BIT);
    }
    flags
}
