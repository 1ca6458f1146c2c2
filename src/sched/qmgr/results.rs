//! Recording what became of a job's recipients: status bytes, deferral
//! records, the Postfix-style log line, campaign results, and what the
//! notices of the pass will report. The typed result becomes text here.

use std::time::Duration;

use super::admin::set_attempt_status;
use super::chain::Relay;
use super::delays::{secs, Secs};
use super::events::{result_event, JobFacts};
use super::site_retry::RetryBounds;
use super::status::write_statuses;
use super::{Job, State};
use crate::deliver::{RcptResult, ResultClass};
use crate::model::{now_micros, DsnParams, RcptStatus};
use crate::sched::campaigns::suppress_hard_bounce;
use crate::sched::notices::{failed_recipient, relayed_recipient};

/// When a transaction's phases happened, for `delays=a/b/c/d`.
pub(super) struct Timing {
    pub(super) started: u64,
    pub(super) setup: Duration,
    pub(super) xfer: Duration,
    /// Which use of its connection the transaction was (1: the first;
    /// 0: no connection), logged as Postfix's `conn_use=` from the second.
    pub(super) conn_use: u32,
}

impl State {
    /// Records `results` of `job`; `bounds` are the retry delays of its
    /// destination (see `site_retry.rs`), used when some are deferred.
    pub(super) fn record_results(
        &mut self,
        job: &Job,
        results: &[RcptResult],
        relay: Option<&Relay>,
        timing: &Timing,
        bounds: RetryBounds,
    ) {
        self.note_retry_bounds(job.id, results, bounds);
        let dsn_passed = relay.is_some_and(|r| r.dsn_passed);
        let now = now_micros();
        let queued = self
            .msgs
            .get(&job.id)
            .map(|m| m.queued_micros)
            .unwrap_or(now);
        let attempts = self.msgs.get(&job.id).map(|m| m.attempts).unwrap_or(0);
        let next_retry = now + self.backoff(bounds, attempts + 1).as_micros() as u64;
        let events_on = self.cfg.events.is_enabled();
        let mut store = self.store.borrow_mut();
        // The sender and Message-ID of an ordinary message, for its events.
        let message_facts: Option<(String, String)> = if events_on {
            store
                .peek(job.id)
                .filter(|(v, _)| v.campaign.is_none())
                .map(|(v, _)| (v.sender.to_string(), v.message_id.to_string()))
        } else {
            None
        };
        // What the log lines and notices need: for a campaign slice, read
        // through its index (the job's recipients only).
        let (arrival, null_sender, campaign, dsn, addrs) = if store.slice_campaign(job.id).is_some()
        {
            let mut slice = None;
            let addrs: Vec<String> = job
                .rcpts
                .iter()
                .map(|&i| match store.slice_entry(job.id, i as usize) {
                    Some((ix, e)) => {
                        slice = Some(ix);
                        e.email.to_string()
                    }
                    None => String::new(),
                })
                .collect();
            let Some(slice) = slice else {
                return;
            };
            // Campaign recipients are reported in the campaign, never by a
            // notice to the (VERP) sender.
            (
                slice.arrival_micros,
                true,
                Some((slice.campaign, slice.first_index)),
                DsnParams::default(),
                addrs,
            )
        } else {
            let Some((view, _)) = store.peek(job.id) else {
                return;
            };
            let addrs: Vec<String> = job
                .rcpts
                .iter()
                .map(|&i| {
                    view.recipients
                        .get(i as usize)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                })
                .collect();
            (
                view.arrival_micros,
                view.sender.is_empty(),
                None,
                view.dsn.clone(),
                addrs,
            )
        };
        let relay_site = relay.map(|r| &*r.site);
        let relay = relay.map_or("none", |r| r.name.as_str());
        let a = secs(queued.saturating_sub(arrival));
        let b = secs(timing.started.saturating_sub(queued));
        let c = timing.setup.as_secs_f64();
        let d = timing.xfer.as_secs_f64();
        let delay = secs(now.saturating_sub(arrival));
        let facts = JobFacts {
            id: job.id,
            sender: message_facts.as_ref().map(|(s, _)| s.as_str()),
            message_id: message_facts.as_ref().map(|(_, m)| m.as_str()),
            campaign,
            site: relay_site,
            attempts: attempts + 1,
        };
        for ((&i, addr), result) in job.rcpts.iter().zip(&addrs).zip(results) {
            let word = result.class.as_str();
            let status = match result.class {
                ResultClass::Sent => RcptStatus::Sent,
                ResultClass::Deferred => RcptStatus::Deferred,
                ResultClass::Bounced | ResultClass::Expired => RcptStatus::Bounced,
            };
            if let Some(m) = &self.cfg.metrics {
                use crate::obs::metrics::Outcome;
                m.outcome(match result.class {
                    ResultClass::Sent => {
                        m.delivery_seconds.observe(secs(now.saturating_sub(queued)));
                        Outcome::Delivered
                    }
                    ResultClass::Deferred => Outcome::Deferred,
                    ResultClass::Bounced => Outcome::Bounced,
                    ResultClass::Expired => Outcome::Expired,
                });
            }
            crate::info_line!(
                target: "smtp",
                "{}: to=<{addr}>, relay={relay}, {}delay={}, delays={}/{}/{}/{}, dsn={}, status={word} ({})",
                job.id,
                ConnUse(timing.conn_use),
                Secs(delay),
                Secs(a),
                Secs(b),
                Secs(c),
                Secs(d),
                result.dsn(),
                result.display_text()
            );
            if events_on {
                self.cfg.events.emit(result_event(&facts, i, addr, result));
            }
            if let Some((cid, first)) = campaign {
                let text = result.text();
                self.campaigns.note(
                    cid,
                    first.saturating_add(i),
                    addr,
                    word,
                    result.dsn(),
                    &text,
                );
                if let (ResultClass::Bounced, Some(settings)) =
                    (result.class, self.campaigns.settings())
                {
                    suppress_hard_bounce(settings, cid, addr, result.dsn(), &text);
                }
            }
            // What the sender asked to be told (RFC 3461 NOTIFY; without
            // it: failures and delays).
            let notify = dsn.notify(i as usize);
            let orcpt = dsn.orcpt(i as usize);
            if result.class == ResultClass::Deferred {
                match store.append_defer(job.id, i, next_retry, &result.text()) {
                    // Without room (logged by the store) only the reason
                    // shown by `mailq` is lost: the status byte below is
                    // written in place.
                    Err(e) if !e.is_no_room() => {
                        tracing::error!(target: "qmgr", "{}: cannot record deferral: {e}", job.id)
                    }
                    _ => {}
                }
                if let Some(m) = self
                    .msgs
                    .get_mut(&job.id)
                    .filter(|_| notify.wants_delay() && !null_sender)
                {
                    m.delayed.push(failed_recipient(addr, orcpt, result));
                }
            }
            if status == RcptStatus::Bounced && !null_sender && notify.wants_failure() {
                // Written once the notice reporting it is committed.
                if let Some(m) = self.msgs.get_mut(&job.id) {
                    m.failed.push((i, failed_recipient(addr, orcpt, result)));
                    continue;
                }
            }
            // A server that took the NOTIFY reports success itself (RFC 3461
            // section 6.2.2: no "relayed" notice from here then).
            let passed_on = dsn_passed && notify.is_specified();
            if status == RcptStatus::Sent && !null_sender && notify.wants_success() && !passed_on {
                // Written once the success notice is committed.
                if let Some(m) = self.msgs.get_mut(&job.id) {
                    m.relayed
                        .push((i, relayed_recipient(addr, orcpt, relay, result)));
                    continue;
                }
            }
            set_attempt_status(&mut store, job.id, i, status);
        }
        write_statuses(&mut store);
        if campaign.is_some() {
            self.campaigns.write_results();
        }
    }
}

/// `conn_use=N, ` for a transaction on a connection that carried mail
/// before (Postfix logs it from the second use on); nothing otherwise.
struct ConnUse(u32);

impl std::fmt::Display for ConnUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 > 1 {
            write!(f, "conn_use={}, ", self.0)
        } else {
            Ok(())
        }
    }
}
