//! Administrative queue commands carried out on this shard's queue (Postfix's
//! postsuper): hold, release, delete, requeue and bounce, over the messages a
//! selector picks. Every change is a status byte written in place like a
//! delivery result; the shard commits it before it answers, so what the
//! command reports is durable.
//!
//! A recipient whose transaction is in progress at that moment may still be
//! delivered: the command changes what the queue holds, it does not abort a
//! conversation. Its result is then recorded as usual, except that a
//! deferral does not take a recipient off hold.

use std::cmp::Reverse;
use std::time::Duration;

use super::results::Timing;
use super::site_retry::RetryBounds;
use super::status::{set_final_status, write_statuses};
use super::{Job, MsgState, Qmgr, State};
use crate::deliver::RcptResult;
use crate::model::queue_command::{QueueCommand, QueueCommandHit, QueueCommandReport, QueueOp};
use crate::model::{now_micros, QueueId, RcptStatus};

/// The enhanced status code of an administrative bounce.
const ADMIN_BOUNCE_DSN: &str = "5.0.0";

impl Qmgr {
    /// Carries out `cmd` on the messages of this shard it selects (`ids`:
    /// the selector's parsed queue IDs) and reports what it did. The
    /// caller commits before it answers.
    pub fn administer(&self, cmd: &QueueCommand, ids: &[QueueId]) -> QueueCommandReport {
        let targets = self.state.borrow().select(cmd, ids);
        let mut report = QueueCommandReport {
            op: cmd.op.as_str().to_string(),
            dry_run: cmd.dry_run,
            ..QueueCommandReport::default()
        };
        for (id, rcpts) in &targets {
            report.recipients += rcpts.len();
            report.messages.push(QueueCommandHit {
                queue_id: id.to_string(),
                recipients: rcpts.len(),
            });
        }
        if cmd.dry_run || targets.is_empty() {
            return report;
        }
        match &cmd.op {
            QueueOp::Hold => self.set_all(&targets, RcptStatus::Held, "placed on hold"),
            QueueOp::Release => {
                self.set_all(&targets, RcptStatus::Deferred, "released from hold");
                for (id, _) in &targets {
                    self.schedule(*id);
                }
            }
            QueueOp::Delete => self.delete(&targets),
            QueueOp::Requeue => self.requeue(&targets),
            QueueOp::Bounce { reason } => self.bounce(&targets, reason),
            // Site operations never reach a shard (see `QueueAdmin`).
            QueueOp::Suspend { .. } | QueueOp::Resume { .. } => {}
        }
        self.dirty_wake.notify_one();
        self.timer_wake.notify_one();
        report
    }

    /// Gives every selected recipient `status`, logging `ID: what` once per
    /// message.
    fn set_all(&self, targets: &[(QueueId, Vec<u32>)], status: RcptStatus, what: &str) {
        let st = self.state.borrow();
        let mut store = st.store.borrow_mut();
        for (id, rcpts) in targets {
            for &i in rcpts {
                if let Err(e) = store.set_status(*id, i as usize, status) {
                    tracing::error!(target: "postsuper", "{id}: cannot record {what}: {e}");
                }
            }
            crate::info_line!(target: "postsuper", "{id}: {what}");
        }
        write_statuses(&mut store);
    }

    /// Removes the selected recipients without a notice; campaign
    /// recipients are reported as deleted in their campaign.
    fn delete(&self, targets: &[(QueueId, Vec<u32>)]) {
        let mut st = self.state.borrow_mut();
        for (id, rcpts) in targets {
            let campaign_rows: Vec<(u64, u32, String)> = {
                let store = st.store.borrow();
                rcpts
                    .iter()
                    .filter_map(|&i| {
                        store
                            .slice_entry(*id, i as usize)
                            .map(|(s, e)| (s.campaign, s.first_index + i, e.email.to_string()))
                    })
                    .collect()
            };
            for (cid, index, addr) in &campaign_rows {
                st.campaigns.note(
                    *cid,
                    *index,
                    addr,
                    "deleted",
                    "5.0.0",
                    "deleted by the administrator",
                );
            }
            if !campaign_rows.is_empty() {
                st.campaigns.write_results();
            }
            let mut store = st.store.borrow_mut();
            let mut removed = false;
            for &i in rcpts {
                match store.set_status(*id, i as usize, RcptStatus::Dropped) {
                    Ok(last) => removed |= last,
                    Err(e) => tracing::error!(target: "postsuper", "{id}: cannot delete: {e}"),
                }
            }
            if removed {
                crate::info_line!(target: "postsuper", "{id}: removed");
            } else {
                crate::info_line!(target: "postsuper", "{id}: {} recipients removed", rcpts.len());
            }
            write_statuses(&mut store);
            drop(store);
            if removed {
                st.msgs.remove(id);
            }
        }
    }

    /// Makes the selected messages due now (those waiting for a retry; one
    /// with a transaction out is tried again when it comes back).
    fn requeue(&self, targets: &[(QueueId, Vec<u32>)]) {
        let mut st = self.state.borrow_mut();
        let wanted: std::collections::HashSet<QueueId> =
            targets.iter().map(|(id, _)| *id).collect();
        let entries: Vec<(u64, QueueId)> = st.retry.drain().map(|Reverse(e)| e).collect();
        for (at, id) in entries {
            let at = if wanted.contains(&id) { 0 } else { at };
            st.retry.push(Reverse((at, id)));
        }
        for id in &wanted {
            crate::info_line!(target: "postsuper", "{id}: requeued");
        }
    }

    /// Fails the selected recipients with `reason`: logged, recorded and
    /// reported to the sender (NOTIFY permitting) exactly as a permanent
    /// failure from a next hop would be.
    fn bounce(&self, targets: &[(QueueId, Vec<u32>)], reason: &str) {
        let text = format!("bounced by the administrator: {reason}");
        for (id, rcpts) in targets {
            crate::info_line!(target: "postsuper", "{id}: bounced ({reason})");
            let job = Job {
                id: *id,
                rcpts: rcpts.clone(),
            };
            let results: Vec<RcptResult> = rcpts
                .iter()
                .map(|_| RcptResult::bounced(ADMIN_BOUNCE_DSN, text.clone()))
                .collect();
            let timing = Timing {
                started: now_micros(),
                setup: Duration::ZERO,
                xfer: Duration::ZERO,
                conn_use: 0,
            };
            let mut st = self.state.borrow_mut();
            let cfg = st.cfg.clone();
            let now = now_micros();
            st.msgs
                .entry(*id)
                .or_insert_with(|| MsgState {
                    queued_micros: now,
                    ..MsgState::default()
                })
                .outstanding += 1;
            let bounds = RetryBounds::global(&cfg);
            st.record_results(&job, &results, None, &timing, bounds);
            st.job_done(*id, &cfg);
        }
    }
}

impl State {
    /// The messages of this shard `cmd` selects, each with the recipients
    /// it acts on (none selected: not listed).
    fn select(&self, cmd: &QueueCommand, ids: &[QueueId]) -> Vec<(QueueId, Vec<u32>)> {
        let store = self.store.borrow();
        let candidates: Vec<QueueId> = if cmd.selector.ids.is_empty() {
            let mut all: Vec<QueueId> = store.ids().collect();
            all.sort();
            all
        } else {
            ids.iter()
                .copied()
                .filter(|id| store.contains(*id))
                .collect()
        };
        // Next hop → site, for `--site` (the destinations planned so far).
        let sites: std::collections::HashMap<&crate::model::Nexthop, &str> = self
            .dests
            .iter()
            .filter_map(|(k, d)| d.site.as_ref().map(|s| (&k.hop, s.as_str())))
            .collect();
        let in_site = |address: &str| match &cmd.selector.site {
            None => true,
            Some(want) => self
                .router
                .route(address)
                .ok()
                .and_then(|hop| sites.get(&hop).copied())
                .is_some_and(|site| site.eq_ignore_ascii_case(want)),
        };
        let mut out = Vec::new();
        for id in candidates {
            let Some((view, status)) = store.peek(id) else {
                continue;
            };
            let campaign = view.campaign.map(|f| f.campaign);
            if !cmd.selector.takes_message(ids, id, view.sender, campaign) {
                continue;
            }
            let statuses = status.to_vec();
            let rcpts: Vec<u32> = statuses
                .iter()
                .enumerate()
                .filter(|(_, &b)| {
                    let s = RcptStatus::from_byte(b);
                    (cmd.op.takes_live() && s.is_live())
                        || (cmd.op.takes_held() && s == RcptStatus::Held)
                })
                .filter(|(i, _)| {
                    let address = match campaign {
                        Some(_) => store.slice_entry(id, *i).map(|(_, e)| e.email.to_string()),
                        None => view.recipients.get(*i).map(|r| r.to_string()),
                    };
                    address.is_some_and(|a| cmd.selector.takes_recipient(&a) && in_site(&a))
                })
                .map(|(i, _)| i as u32)
                .collect();
            if !rcpts.is_empty() {
                out.push((id, rcpts));
            }
        }
        out
    }
}

/// Sets a recipient's status after a delivery attempt, unless the
/// administrator put it on hold meanwhile and the attempt only deferred it.
pub(super) fn set_attempt_status(
    store: &mut crate::queue::Store,
    id: QueueId,
    rcpt: u32,
    status: RcptStatus,
) {
    if status == RcptStatus::Deferred && store.status(id, rcpt as usize) == Some(RcptStatus::Held) {
        return;
    }
    set_final_status(store, id, rcpt, status);
}
