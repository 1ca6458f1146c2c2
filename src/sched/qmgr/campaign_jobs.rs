//! Campaign slices in the queue manager: the campaign's own rate, rendering
//! a recipient's message, suppressed recipients and cancelled slices.

use std::time::Duration;

use super::status::{set_final_status, write_statuses};
use super::{CampaignJob, Job, LiveOfSlice, State};
use crate::deliver::RcptResult;
use crate::model::{QueueId, RcptStatus};
use crate::queue::campaign_state::CampaignState;
use crate::sched::campaigns::Unsendable;

impl State {
    /// How long `job` must wait for its campaign's rate limit, if it is a
    /// campaign job and has no token yet (one is taken when it may go).
    pub(super) fn campaign_rate_wait(&mut self, job: &Job) -> Option<Duration> {
        let cid = self.store.borrow().slice_campaign(job.id)?;
        self.campaigns.rate_wait(cid)
    }

    /// Drops a campaign recipient found on the suppression list.
    pub(super) fn suppressed(&mut self, job: &Job, why: &str) {
        let Some(&i) = job.rcpts.first() else { return };
        let (addr, campaign) = {
            let store = self.store.borrow();
            let Some((slice, e)) = store.slice_entry(job.id, i as usize) else {
                return;
            };
            (
                e.email.to_string(),
                Some((slice.campaign, slice.first_index)),
            )
        };
        crate::info_line!(target: "qmgr", "{}: to=<{addr}>, status=suppressed ({why})", job.id);
        if let Some(m) = &self.cfg.metrics {
            m.outcome(crate::obs::metrics::Outcome::Suppressed);
        }
        if self.cfg.events.is_enabled() {
            self.cfg.events.emit(super::events::suppressed_event(
                job.id, campaign, i, &addr, why,
            ));
        }
        if let Some((cid, first)) = campaign {
            self.campaigns.note(
                cid,
                first.saturating_add(i),
                &addr,
                "suppressed",
                "5.7.1",
                why,
            );
            self.campaigns.write_results();
        }
        let mut store = self.store.borrow_mut();
        set_final_status(&mut store, job.id, i, RcptStatus::Dropped);
        write_statuses(&mut store);
    }

    /// Drops every live recipient of campaign slice `id` (cancelled, or
    /// never accepted), logging `status=cancelled` for each.
    pub(super) fn drop_slice(&mut self, id: QueueId, why: &str) {
        let (live, campaign): LiveOfSlice = {
            let store = self.store.borrow();
            let Some((view, status)) = store.peek(id) else {
                return;
            };
            let campaign = view.campaign.map(|f| (f.campaign, f.first_index));
            let live = view
                .recipients
                .iter()
                .enumerate()
                .filter(|(i, _)| RcptStatus::from_byte(status.get(*i).unwrap_or(0)).is_live())
                .map(|(i, r)| (i as u32, r.to_string()))
                .collect();
            (live, campaign)
        };
        if let Some((cid, first)) = campaign {
            for (i, addr) in &live {
                self.campaigns.note(
                    cid,
                    first.saturating_add(*i),
                    addr,
                    "cancelled",
                    "5.0.0",
                    why,
                );
            }
        }
        self.campaigns.write_results();
        let mut store = self.store.borrow_mut();
        for (i, addr) in &live {
            crate::info_line!(target: "qmgr", "{id}: to=<{addr}>, status=cancelled ({why})");
            if let Some(m) = &self.cfg.metrics {
                m.outcome(crate::obs::metrics::Outcome::Cancelled);
            }
            set_final_status(&mut store, id, *i, RcptStatus::Dropped);
        }
        write_statuses(&mut store);
        drop(store);
        self.msgs.remove(&id);
    }

    /// For a job of a campaign slice: its recipient's rendered message, or
    /// the result to record instead. `None` for an ordinary message.
    pub(super) fn outgoing_campaign(&mut self, job: &Job) -> Option<CampaignJob> {
        let store = self.store.clone();
        let store = store.borrow();
        store.slice_campaign(job.id)?;
        let &row = job.rcpts.first()?;
        let Some((slice, recipient)) = store.slice_entry(job.id, row as usize) else {
            // Unreadable since it was planned: deferred, tried again.
            return Some(CampaignJob::Record(RcptResult::deferred(
                "4.3.0",
                "campaign slice unreadable".into(),
            )));
        };
        if self.campaigns.state(slice.campaign) != Some(CampaignState::Running) {
            // Paused (or cancelled) since it was planned: not sent; the
            // pass ends and the slice is looked at again.
            return Some(CampaignJob::Skip);
        }
        Some(
            match self.campaigns.render(
                || store.campaign(slice.campaign),
                &slice,
                row as usize,
                &recipient,
            ) {
                Ok(msg) => CampaignJob::Send(msg),
                Err(Unsendable::Result(result)) => CampaignJob::Record(result),
                Err(Unsendable::Suppressed(why)) => CampaignJob::Suppressed(why),
            },
        )
    }
}
