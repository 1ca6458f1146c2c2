//! Planning a message's delivery: its live recipients routed to next
//! hops and cut into jobs (Postfix's qmgr_message.c), campaign slices
//! admitted a few at a time.

use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::results::Timing;
use super::site_retry::RetryBounds;
use super::DestKey;
use super::{Dest, Job, MsgState, State, CAMPAIGN_RECHECK_MICROS, MAX_ACTIVE_SLICES};
use crate::deliver::session::SourceBinding;
use crate::deliver::{DeliverError, HopPolicy, RcptResult, ResultClass};
use crate::model::{now_micros, QueueId, RcptStatus};
use crate::queue::campaign_state::CampaignState;

impl State {
    /// Splits message `id`'s live recipients into jobs per next hop; returns
    /// the hops that got work.
    pub(super) fn plan(&mut self, id: QueueId) -> Vec<DestKey> {
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
        let mut by_hop: HashMap<DestKey, Vec<u32>> = HashMap::new();
        let mut unroutable: Vec<(u32, RcptResult)> = Vec::new();
        // The sending source of this pass (`[[pool]]`, `[[pool_rule]]`).
        let source = pick_source(self.cfg.shaper.as_deref(), &view);
        for (i, rcpt) in view.recipients.iter().enumerate() {
            if !RcptStatus::from_byte(status.get(i).unwrap_or(0)).is_live() {
                continue;
            }
            if expired && entry.attempts > 0 {
                unroutable.push((i as u32, RcptResult::expired()));
                continue;
            }
            match self.router.route(rcpt) {
                Ok(hop) => by_hop
                    .entry(DestKey {
                        hop,
                        source: source.as_ref().map(|s| Arc::clone(&s.name)),
                    })
                    .or_default()
                    .push(i as u32),
                Err(e) => {
                    unroutable.push((i as u32, RcptResult::from_error(&DeliverError::Route(e))))
                }
            }
        }
        drop(store);
        let mut kicks = Vec::new();
        let mut jobs_out = 0;
        // Dead destinations, and how many recipients are deferred for each
        // without a try.
        let mut dead = Vec::new();
        for (hop, rcpts) in by_hop {
            // Dead with its site and hosts (`dead_site.rs`).
            self.inherit_site_death(&hop);
            let router = &self.router;
            let d = self.dests.entry(hop.clone()).or_insert_with(|| Dest {
                jobs: VecDeque::new(),
                ready: Rc::new(Notify::new()),
                active: 0,
                job_waits: Rc::default(),
                window: cfg.initial_concurrency as f64,
                ramping: true,
                dead_until: None,
                policy: Rc::new(HopPolicy {
                    source: source.as_ref().map(|s| SourceBinding {
                        name: s.name.to_string(),
                        address: s.address,
                        ehlo_name: (!s.ehlo_name.is_empty()).then(|| s.ehlo_name.clone()),
                    }),
                    ..router.policy(&hop.hop)
                }),
                site: None,
                hosts: None,
                domain: hop.hop.mx_lookup.then(|| hop.hop.host.to_ascii_lowercase()),
                resolving: false,
                last_used: Instant::now(),
                limits: std::cell::RefCell::new(None),
                counters: std::cell::RefCell::new(None),
            });
            d.last_used = Instant::now();
            if let Some((until, _)) = &d.dead_until {
                if Instant::now() >= *until {
                    d.dead_until = None;
                }
            }
            if let Some((_, reason)) = d.dead_until.clone() {
                let n = rcpts.len();
                for r in rcpts {
                    unroutable.push((
                        r,
                        RcptResult::deferred(
                            "4.4.1",
                            format!("delivery temporarily suspended: {reason}"),
                        ),
                    ));
                }
                dead.push((hop, n));
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
                // One lingering worker per job: the others keep waiting.
                d.ready.notify_one();
            }
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
                conn_use: 0,
            };
            if let Some(m) = self.msgs.get_mut(&id) {
                m.outstanding += 1;
            }
            // A dead destination's deferrals follow its site's retry
            // delays; any other deferral the configuration's.
            let deferred = results
                .iter()
                .filter(|r| r.class == ResultClass::Deferred)
                .count();
            let global = RetryBounds::global(&cfg);
            let bounds = dead
                .iter()
                .map(|(hop, _)| self.hop_retry_bounds(hop))
                .chain((deferred > dead.iter().map(|(_, n)| n).sum()).then_some(global))
                .reduce(RetryBounds::tighter)
                .unwrap_or(global);
            self.record_results(&job, &results, None, &timing, bounds);
            self.job_done(id, &cfg);
        } else if jobs_out == 0 {
            self.job_done_if_idle(id, &cfg);
        }
        kicks
    }
}

/// The source a message is sent from in this pass: its pool (by sender
/// domain, header or campaign) and the pool's next member. `None` without
/// shaping or pools.
fn pick_source(
    shaper: Option<&crate::shape::Shaper>,
    view: &crate::queue::record::MessageView<'_>,
) -> Option<crate::shape::Source> {
    let shaper = shaper?;
    if shaper.table().pools().is_empty() {
        return None;
    }
    let sender_domain = view.sender.rsplit_once('@').map_or("", |(_, d)| d);
    let campaign = view.campaign.map(|f| f.campaign.to_string());
    let headers = header_fields(view.wire);
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    shaper
        .pick_source(&crate::shape::MessageFacts {
            sender_domain,
            campaign: campaign.as_deref(),
            headers: &refs,
        })
        .cloned()
}

/// The header fields of a wire-form message (unfolded, names as written).
fn header_fields(wire: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(wire);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    out
}
