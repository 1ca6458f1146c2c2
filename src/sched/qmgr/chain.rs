//! Transactions chained on one connection: the next job to send while the
//! previous one is still answering, and what became of each.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::results::Timing;
use super::DestKey;
use super::{Job, Qmgr};
use crate::deliver::session::{ChainResult, Outgoing};
use crate::deliver::{HopPolicy, RcptResult};
use crate::model::now_micros;

/// A job on its way out in a chain, with what its log line needs.
pub(super) struct Sent {
    pub(super) job: Job,
    /// When the job left the destination's queue.
    pub(super) started: u64,
    /// Connection setup time (first job of a new connection only).
    pub(super) setup: Duration,
    /// When its transaction began.
    pub(super) at: Instant,
    /// The chain's first job (a stale reused connection retries it at once).
    pub(super) first: bool,
    /// Which use of the connection its transaction is (1: the first).
    pub(super) conn_use: u32,
    /// Its recipients in their site's in-flight gauge until it is done.
    pub(super) _in_flight: Option<crate::obs::metrics::InFlight>,
}

/// Where a job's results came from.
pub(super) struct Relay {
    /// `host[ip]:port`, for `relay=`.
    pub(super) name: String,
    /// The server took the RFC 3461 requests (it announced DSN): it, not
    /// ringmail, reports a successful delivery to a NOTIFY=SUCCESS.
    pub(super) dsn_passed: bool,
    /// The destination's site (its next hop until shaping names one), for
    /// events.
    pub(super) site: Rc<str>,
}

impl Qmgr {
    /// The next job for `hop` to chain onto a busy connection, as the
    /// connection's `conn_use`-th transaction: none while stopping, or
    /// when the rate limit has no token right now.
    pub(super) fn next_chained(
        &self,
        hop: &DestKey,
        policy: Option<&HopPolicy>,
        conn_use: u32,
    ) -> Option<(Sent, Outgoing)> {
        let mut st = self.state.borrow_mut();
        if st.stopping {
            return None;
        }
        let cfg = Rc::clone(&st.cfg);
        loop {
            let job = st.dests.get_mut(hop)?.jobs.pop_front()?;
            if let Some(rate) = policy.and_then(|p| p.rate) {
                if st.slots.rates.take(&hop.hop, rate).is_err() {
                    if let Some(d) = st.dests.get_mut(hop) {
                        d.jobs.push_front(job);
                    }
                    return None;
                }
            }
            if st.campaign_rate_wait(&job).is_some() {
                if let Some(d) = st.dests.get_mut(hop) {
                    d.jobs.push_front(job);
                }
                return None;
            }
            let Some(msg) = st.outgoing(&job) else {
                st.job_done(job.id, &cfg);
                continue;
            };
            let sent = Sent {
                _in_flight: st.site_counters(hop).map(|c| c.in_flight(job.rcpts.len())),
                job,
                started: now_micros(),
                setup: Duration::ZERO,
                at: Instant::now(),
                first: false,
                conn_use,
            };
            return Some((sent, msg));
        }
    }

    /// Records what became of one job of a chain; false when the
    /// connection failed with it.
    pub(super) fn chain_done(
        &self,
        hop: &DestKey,
        sent: Sent,
        result: ChainResult,
        relay: &Relay,
        retry_fresh: &mut Option<Job>,
    ) -> bool {
        let timing = Timing {
            started: sent.started,
            setup: sent.setup,
            xfer: sent.at.elapsed(),
            conn_use: sent.conn_use,
        };
        match result {
            ChainResult::Done(results) => {
                self.site_feedback(hop, &results);
                self.count_site_results(hop, &results);
                if results.iter().any(RcptResult::is_sent) {
                    self.warmup_record(hop, 1);
                }
                self.finish_job(hop, &sent.job, &results, Some(relay), &timing);
                self.feedback(hop, true);
                true
            }
            ChainResult::NotAttempted => {
                // Nothing of it was accepted: again, on another connection,
                // without charging the message (as Postfix does with its
                // connection cache).
                if sent.first {
                    *retry_fresh = Some(sent.job);
                } else if let Some(d) = self.state.borrow_mut().dests.get_mut(hop) {
                    d.jobs.push_front(sent.job);
                    self.kick_later(hop);
                }
                true
            }
            ChainResult::Failed(e) => {
                let results: Vec<RcptResult> = sent
                    .job
                    .rcpts
                    .iter()
                    .map(|_| RcptResult::from_error(&e))
                    .collect();
                self.site_feedback(hop, &results);
                self.count_site_results(hop, &results);
                self.finish_job(hop, &sent.job, &results, Some(relay), &timing);
                self.feedback(hop, false);
                false
            }
        }
    }
}
