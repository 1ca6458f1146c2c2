//! Concurrency feedback (Postfix's qmgr_feedback.c): slow start on
//! success, a narrower window on failure, and dead destinations.
//!
//! Slow start has two phases, as TCP's: while a destination has not failed
//! yet, each new connection set up and each successful transaction widen
//! its window by one, so the window more than doubles every round of
//! transactions (2 to 100 connections in about four rounds, well under a
//! second at 30 ms replies); from its first
//! failure on, a success widens it by 1/window (Postfix's
//! `default_destination_concurrency_positive_feedback = 1/concurrency`:
//! one more connection per window's worth of successes) and a failure
//! narrows it by the same. The site's connection limit caps both.

use std::time::{Duration, Instant};

use super::results::Timing;
use super::DestKey;
use super::{Job, Qmgr};
use crate::deliver::{DeliverError, RcptResult};

impl Qmgr {
    /// Slow start: a success widens the window by 1/window (and starts
    /// another worker when that makes room), a failure narrows it.
    pub(super) fn feedback(&self, hop: &DestKey, ok: bool) {
        {
            let mut st = self.state.borrow_mut();
            // The site's connection limit once shaping knows it (it may be
            // above `default_destination_concurrency_limit`).
            let limit = st
                .site_limits(hop)
                .map_or(st.cfg.concurrency_limit, |l| l.max_connections())
                as f64;
            if let Some(d) = st.dests.get_mut(hop) {
                if ok && d.ramping {
                    d.window = (d.window + 1.0).min(limit);
                } else if ok {
                    d.window = (d.window + 1.0 / d.window).min(limit);
                } else {
                    d.ramping = false;
                    d.window = (d.window - 1.0 / d.window).max(1.0);
                }
            }
        }
        if ok {
            self.kick(hop);
        }
    }

    /// A new connection to `hop` is set up (greeting, EHLO and TLS as its
    /// level asks): while slow start has seen no failure, that widens the
    /// window by one as a successful transaction does, and starts another
    /// worker when jobs wait. A site that answers well then gets its
    /// connections about twice as fast: each new connection asks for the
    /// next after two replies instead of after its first message's six.
    /// A failure later ends the ramp as before.
    pub(super) fn connected(&self, hop: &DestKey) {
        let widened = {
            let mut st = self.state.borrow_mut();
            let limit = st
                .site_limits(hop)
                .map_or(st.cfg.concurrency_limit, |l| l.max_connections())
                as f64;
            match st.dests.get_mut(hop) {
                Some(d) if d.ramping && d.window < limit => {
                    d.window = (d.window + 1.0).min(limit);
                    true
                }
                _ => false,
            }
        };
        if widened {
            self.kick(hop);
        }
    }

    /// A connection to `hop` failed: defer this job; at a window of one the
    /// destination is dead and every queued job is deferred with it.
    pub(super) fn destination_failed(
        &self,
        hop: &DestKey,
        job: Job,
        e: &DeliverError,
        started: u64,
    ) {
        let timing = Timing {
            started,
            setup: Duration::ZERO,
            xfer: Duration::ZERO,
            conn_use: 0,
        };
        let result = RcptResult::from_error(e);
        self.site_feedback(hop, std::slice::from_ref(&result));
        let mut jobs = vec![job];
        {
            let mut st = self.state.borrow_mut();
            // Dead for the site's shortest retry delay.
            let min_backoff = st.hop_retry_bounds(hop).min;
            let mut died = None;
            if let Some(d) = st.dests.get_mut(hop) {
                d.ramping = false;
                if !e.is_transient() {
                    // The destination refuses mail for good (null MX, no
                    // such domain, 5xx greeting): everything queued for it
                    // fails the same way; later mail asks again.
                    jobs.extend(d.jobs.drain(..));
                } else if d.window <= 1.0 {
                    let until = Instant::now() + min_backoff;
                    d.dead_until = Some((until, e.to_string()));
                    died = Some(until);
                    jobs.extend(d.jobs.drain(..));
                    tracing::info!(target: "qmgr", "destination {hop} marked dead: {e}");
                } else {
                    d.window = (d.window - 1.0 / d.window).max(1.0);
                }
            }
            if let Some(until) = died {
                // So is every destination of its site behind the same hosts.
                st.site_died(hop, until, &e.to_string());
            }
        }
        for job in jobs {
            let results: Vec<RcptResult> = job.rcpts.iter().map(|_| result.clone()).collect();
            self.count_site_results(hop, &results);
            self.finish_job(hop, &job, &results, None, &timing);
        }
    }
}
