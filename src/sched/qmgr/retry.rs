//! The end of a delivery pass and the retry schedule: notices for the
//! pass, then the message is forgotten or retried after an exponential,
//! jittered backoff; the timer that runs due retries.

use std::cmp::Reverse;
use std::time::Duration;

use super::site_retry::RetryBounds;
use super::DestKey;
use super::{Qmgr, QmgrConfig, State, CAMPAIGN_RECHECK_MICROS, MAX_ACTIVE_SLICES};
use crate::bounce::NoticeKind;
use crate::model::{now_micros, QueueId, RcptStatus};
use crate::queue::campaign_state::CampaignState;

impl Qmgr {
    /// Runs retries and idle-connection expiry until stopped.
    pub async fn run_timer(&self) {
        let mut last_eviction = std::time::Instant::now();
        let mut last_age: Option<std::time::Instant> = None;
        loop {
            if self.state.borrow().stopping {
                self.close_idle(true).await;
                return;
            }
            let now = now_micros();
            let mut due = Vec::new();
            let next = {
                let mut st = self.state.borrow_mut();
                while let Some(Reverse((at, id))) = st.retry.peek().copied() {
                    if at > now {
                        break;
                    }
                    st.retry.pop();
                    due.push(id);
                }
                st.retry.peek().map(|Reverse((at, _))| *at)
            };
            if !due.is_empty() {
                tracing::debug!(target: "qmgr", "{} messages due for another attempt", due.len());
            }
            for id in due {
                self.schedule(id);
            }
            // Destinations with waiting jobs: another shard may have freed a
            // connection slot since.
            let waiting: Vec<DestKey> = self
                .state
                .borrow()
                .dests
                .iter()
                .filter(|(_, d)| !d.jobs.is_empty())
                .map(|(h, _)| h.clone())
                .collect();
            for hop in waiting {
                self.kick(&hop);
            }
            self.close_idle(false).await;
            if last_age.map_or(true, |t| t.elapsed() >= QUEUE_AGE_INTERVAL) {
                last_age = Some(std::time::Instant::now());
                self.refresh_queue_age();
            }
            if last_eviction.elapsed() >= EVICTION_INTERVAL {
                last_eviction = std::time::Instant::now();
                let evicted = super::shaping::evict_idle(&mut self.state.borrow_mut(), DEST_IDLE);
                if evicted > 0 {
                    tracing::debug!(target: "qmgr", "forgot {evicted} idle destinations");
                }
            }
            let wait = next
                .map(|at| Duration::from_micros(at.saturating_sub(now_micros())))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            let _ = tokio::time::timeout(wait, self.timer_wake.notified()).await;
        }
    }
}

/// How often the age of the oldest queued message is refreshed.
const QUEUE_AGE_INTERVAL: Duration = Duration::from_secs(5);

/// How often idle destinations are looked for.
const EVICTION_INTERVAL: Duration = Duration::from_secs(30);

/// A destination with nothing queued, running or cached for this long is
/// forgotten (its state is rebuilt if mail comes again).
const DEST_IDLE: Duration = Duration::from_secs(300);

impl State {
    pub(super) fn job_done(&mut self, id: QueueId, cfg: &QmgrConfig) {
        if let Some(m) = self.msgs.get_mut(&id) {
            m.outstanding = m.outstanding.saturating_sub(1);
        }
        self.job_done_if_idle(id, cfg);
    }

    /// When no job of `id` is out: send the notices this pass calls for,
    /// then forget the message if it is done, else schedule a retry.
    pub(super) fn job_done_if_idle(&mut self, id: QueueId, cfg: &QmgrConfig) {
        let Some(m) = self.msgs.get_mut(&id) else {
            return;
        };
        if m.outstanding > 0 {
            return;
        }
        if self.campaign_active.remove(&id) {
            // The pass of a slice is over: let the next waiting ones start.
            let mut started = 0;
            while self.campaign_active.len() + started < MAX_ACTIVE_SLICES {
                let Some(next) = self.campaign_waiting.pop_front() else {
                    break;
                };
                self.retry.push(Reverse((now_micros(), next)));
                started += 1;
            }
            if started > 0 {
                self.timer_wake.notify_one();
            }
        }
        let bounds = self.take_retry_bounds(id);
        let Some(m) = self.msgs.get_mut(&id) else {
            return;
        };
        let failed = std::mem::take(&mut m.failed);
        let relayed = std::mem::take(&mut m.relayed);
        let delayed = std::mem::take(&mut m.delayed);
        let warn = !m.warned && !delayed.is_empty();
        let attempts = m.attempts + 1;
        if !failed.is_empty() {
            self.notify_final(id, NoticeKind::Failure, failed, cfg);
        }
        if !relayed.is_empty() {
            self.notify_final(id, NoticeKind::Success, relayed, cfg);
        }
        if warn {
            self.maybe_warn(id, &delayed, cfg);
        }
        // Gone, or every recipient left is on hold (`queue release`
        // schedules it again): no retry.
        let waiting = {
            let store = self.store.borrow();
            store.contains(id)
                && store.peek(id).is_some_and(|(_, status)| {
                    status
                        .to_vec()
                        .into_iter()
                        .any(|b| RcptStatus::from_byte(b).is_live())
                })
        };
        if !waiting {
            self.msgs.remove(&id);
            return;
        }
        let campaign = self.store.borrow().slice_campaign(id);
        if let Some(cid) = campaign {
            if self.campaigns.state(cid) != Some(CampaignState::Running) {
                // Paused while this pass ran: not an attempt; plan() looks
                // again (and keeps looking while it stays paused).
                self.retry
                    .push(Reverse((now_micros() + CAMPAIGN_RECHECK_MICROS, id)));
                return;
            }
        }
        let due = now_micros() + self.backoff(bounds, attempts).as_micros() as u64;
        if let Some(m) = self.msgs.get_mut(&id) {
            m.attempts = attempts;
        }
        self.retry.push(Reverse((due, id)));
    }

    /// Retry delay within `bounds` after `attempts` attempts, with ±20 %
    /// jitter.
    pub(super) fn backoff(&self, bounds: RetryBounds, attempts: u32) -> Duration {
        backoff(bounds.min, bounds.max, attempts, fastrand::f64())
    }
}

/// `min * 2^(attempts-1)`, capped at `max`, scaled by `0.8 + 0.4 * dice`
/// (`dice` in 0..1): the jitter keeps retries from arriving in lock step.
pub(super) fn backoff(min: Duration, max: Duration, attempts: u32, dice: f64) -> Duration {
    let base = min.as_secs_f64() * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
    Duration::from_secs_f64(base.min(max.as_secs_f64()) * (0.8 + 0.4 * dice))
}
