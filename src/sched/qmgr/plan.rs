//! Planning a message's delivery: its live recipients routed to next
//! hops and cut into jobs (Postfix's qmgr_message.c), campaign slices
//! admitted a few at a time.

use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::results::Timing;
use super::{Dest, Job, MsgState, State, CAMPAIGN_RECHECK_MICROS, MAX_ACTIVE_SLICES};
use crate::deliver::{DeliverError, RcptResult};
use crate::model::{now_micros, Nexthop, QueueId, RcptStatus};
use crate::queue::campaign_state::CampaignState;

impl State {
    /// Splits message `id`'s live recipients into jobs per next hop; returns
    /// the hops that got work.
    pub(super) fn plan(&mut self, id: QueueId) -> Vec<Nexthop> {
        let cfg = self.cfg.clone();
        let store = self.store.clone();
        let store = store.borrow();
        let Some((view, status)) = store.peek(id) else {
            self.msgs.remove(&id);
            return Vec::new();
        };
        let now = now_micros();
        let entry = self.msgs.entry(id).or_insert_with(|| MsgState {
            queued_micros: now,
            ..MsgState::default()
        });
        let lifetime = if view.sender.is_empty() {
            cfg.bounce_lifetime
        } else {
            cfg.lifetime
        };
        let expired = now.saturating_sub(view.arrival_micros) > lifetime.as_micros() as u64;
        let campaign = view.campaign.is_some();
        let gate = view
            .campaign
            .map(|f| {
                let mut state = self.campaigns.state(f.campaign);
                if state == Some(CampaignState::Running)
                    && self.campaigns.starts_in(f.campaign).is_some()
                {
                    // Not before its start time (`--at`): held as if paused.
                    state = Some(CampaignState::Paused);
                }
                (f.campaign, state)
            })
            .filter(|(_, state)| *state != Some(CampaignState::Running));
        if let Some((cid, state)) = gate {
            drop((view, status));
            drop(store);
            match state {
                Some(CampaignState::Cancelled) => {
                    self.drop_slice(id, &format!("campaign {cid} cancelled"));
                }
                None => self.drop_slice(
                    id,
                    &format!("campaign {cid} was never accepted (its acceptance was interrupted)"),
                ),
                // Accepting or paused: looked at again within a second (the
                // timer runs at least that often); not an attempt.
                _ => self
                    .retry
                    .push(Reverse((now + CAMPAIGN_RECHECK_MICROS, id))),
            }
            return Vec::new();
        }
        if campaign && !self.campaign_active.contains(&id) {
            if self.campaign_active.len() >= MAX_ACTIVE_SLICES {
                if !self.campaign_waiting.contains(&id) {
                    self.campaign_waiting.push_back(id);
                }
                return Vec::new();
            }
            self.campaign_active.insert(id);
        }
        let mut by_hop: HashMap<Nexthop, Vec<u32>> = HashMap::new();
        let mut unroutable: Vec<(u32, RcptResult)> = Vec::new();
        for (i, rcpt) in view.recipients.iter().enumerate() {
            if !RcptStatus::from_byte(status.get(i).unwrap_or(0)).is_live() {
                continue;
            }
            if expired && entry.attempts > 0 {
                unroutable.push((i as u32, RcptResult::expired()));
                continue;
            }
            match self.router.route(rcpt) {
                Ok(hop) => by_hop.entry(hop).or_default().push(i as u32),
                Err(e) => {
                    unroutable.push((i as u32, RcptResult::from_error(&DeliverError::Route(e))))
                }
            }
        }
        drop(store);
        let mut kicks = Vec::new();
        let mut jobs_out = 0;
        for (hop, rcpts) in by_hop {
            let router = &self.router;
            let d = self.dests.entry(hop.clone()).or_insert_with(|| Dest {
                jobs: VecDeque::new(),
                ready: Rc::new(Notify::new()),
                active: 0,
                window: cfg.initial_concurrency as f64,
                dead_until: None,
                idle: Vec::new(),
                policy: Rc::new(router.policy(&hop)),
                site: None,
                domain: hop.mx_lookup.then(|| hop.host.to_ascii_lowercase()),
                resolving: false,
                last_used: Instant::now(),
            });
            d.last_used = Instant::now();
            if let Some((until, _)) = &d.dead_until {
                if Instant::now() >= *until {
                    d.dead_until = None;
                }
            }
            if let Some((_, reason)) = d.dead_until.clone() {
                for r in rcpts {
                    unroutable.push((
                        r,
                        RcptResult::deferred(
                            "4.4.1",
                            format!("delivery temporarily suspended: {reason}"),
                        ),
                    ));
                }
                continue;
            }
            // A campaign recipient is its own transaction: its message and
            // VERP sender are its own.
            let per_job = if campaign {
                1
            } else {
                cfg.recipient_limit.max(1)
            };
            for chunk in rcpts.chunks(per_job) {
                d.jobs.push_back(Job {
                    id,
                    rcpts: chunk.to_vec(),
                });
                jobs_out += 1;
            }
            d.ready.notify_waiters();
            kicks.push(hop);
        }
        if let Some(m) = self.msgs.get_mut(&id) {
            m.outstanding += jobs_out;
        }
        if !unroutable.is_empty() {
            let job = Job {
                id,
                rcpts: unroutable.iter().map(|(i, _)| *i).collect(),
            };
            let results: Vec<RcptResult> = unroutable.into_iter().map(|(_, r)| r).collect();
            let timing = Timing {
                started: now,
                setup: Duration::ZERO,
                xfer: Duration::ZERO,
            };
            if let Some(m) = self.msgs.get_mut(&id) {
                m.outstanding += 1;
            }
            self.record_results(&job, &results, None, &timing);
            self.job_done(id, &cfg);
        } else if jobs_out == 0 {
            self.job_done_if_idle(id, &cfg);
        }
        kicks
    }
}
