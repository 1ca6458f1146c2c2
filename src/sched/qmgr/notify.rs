//! Notices at the end of a pass: one failure or success notice for the
//! recipients that got their final result, and the one-time delay warning.

use super::status::{set_final_status, write_statuses};
use super::{QmgrConfig, State};
use crate::bounce::{FailedRecipient, NoticeKind};
use crate::model::{now_micros, QueueId, RcptStatus};
use crate::sched::notices::queue_notice;

impl State {
    /// Queues one notice of `kind` (failure or success) for `reported`,
    /// recipients of `id` that got their final result in this pass; their
    /// status (bounced or sent) is written after the notice's commit.
    pub(super) fn notify_final(
        &mut self,
        id: QueueId,
        kind: NoticeKind,
        reported: Vec<(u32, FailedRecipient)>,
        cfg: &QmgrConfig,
    ) {
        let status = match kind {
            NoticeKind::Success => RcptStatus::Sent,
            NoticeKind::Failure | NoticeKind::Delay => RcptStatus::Bounced,
        };
        let reports: Vec<FailedRecipient> = reported.iter().map(|(_, f)| f.clone()).collect();
        let result = queue_notice(
            &mut self.store.borrow_mut(),
            id,
            kind,
            &reports,
            &cfg.notices,
        );
        let set_now = |qmgr: &mut State| {
            let mut store = qmgr.store.borrow_mut();
            for (i, _) in &reported {
                set_final_status(&mut store, id, *i, status);
            }
            write_statuses(&mut store);
        };
        match result {
            Ok(Some(notice)) => {
                self.new_notices.push(notice);
                self.after_commit
                    .extend(reported.iter().map(|(i, _)| (id, *i, status)));
            }
            Ok(None) => set_now(self),
            Err(e) if e.is_transient() && kind == NoticeKind::Failure => {
                // The recipients stay live: tried again, bounced again, and
                // the notice with them. Never lost. A full disk is logged
                // by the store, once a minute.
                if !e.is_no_room() {
                    tracing::error!(target: "bounce", "{id}: {e}; will try again");
                }
            }
            Err(e) if kind == NoticeKind::Success => {
                // Keeping them live would deliver the message again: the
                // recipients are sent, the success notice is not.
                tracing::error!(target: "bounce", "{id}: {e}; recipients marked sent without the success notice");
                set_now(self);
            }
            Err(e) => {
                tracing::error!(target: "bounce", "{id}: {e}; recipients marked bounced without a notice");
                set_now(self);
            }
        }
    }

    /// Sends one delay warning when `id` has been queued longer than
    /// `delay_warning_time` and still has deferred recipients.
    pub(super) fn maybe_warn(
        &mut self,
        id: QueueId,
        delayed: &[FailedRecipient],
        cfg: &QmgrConfig,
    ) {
        let Some(after) = cfg.delay_warning else {
            return;
        };
        let age = {
            let store = self.store.borrow();
            let Some((view, _)) = store.get(id) else {
                return;
            };
            if view.sender.is_empty() || view.campaign.is_some() {
                return;
            }
            now_micros().saturating_sub(view.arrival_micros)
        };
        if age < after.as_micros() as u64 {
            return;
        }
        let result = queue_notice(
            &mut self.store.borrow_mut(),
            id,
            NoticeKind::Delay,
            delayed,
            &cfg.notices,
        );
        match result {
            Ok(notice) => {
                self.new_notices.extend(notice);
                if let Some(m) = self.msgs.get_mut(&id) {
                    m.warned = true;
                }
            }
            // Not warned yet: tried again with the next deferral.
            Err(e) if e.is_no_room() => {}
            Err(e) => tracing::error!(target: "bounce", "{id}: delay warning: {e}"),
        }
    }
}
