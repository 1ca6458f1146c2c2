//! The queue manager's metrics (docs/OPERATIONS.md): each destination
//! holds its site's counters (its next hop's until shaping names a site)
//! and counts connections, recipients in flight, outcomes with their
//! deferral class, automation actions and TLS handshakes; the timer
//! refreshes the age of the oldest queued message.

use std::sync::Arc;

use super::shaping::ConnSlot;
use super::{DestKey, Job, Qmgr, State};
use crate::deliver::{DeliverError, RcptResult, ResultClass, Session};
use crate::obs::metrics::{AutomationKind, DeferralClass, Direction, InFlight, SiteCounters};
use crate::shape::Action;

impl State {
    /// The counters of `hop`'s site; `None` without metrics.
    pub(super) fn site_counters(&self, hop: &DestKey) -> Option<Arc<SiteCounters>> {
        let metrics = self.cfg.metrics.as_ref()?;
        let d = self.dests.get(hop)?;
        if let Some(c) = &*d.counters.borrow() {
            return Some(Arc::clone(c));
        }
        let c = match &d.site {
            Some(site) => metrics.all().sites.site(site.as_str()),
            None => metrics.all().sites.site(&hop.hop.to_string()),
        };
        *d.counters.borrow_mut() = Some(Arc::clone(&c));
        Some(c)
    }
}

impl Qmgr {
    /// A connection to `hop` is open on `slot`: counted in its site's
    /// gauge while the slot lives, with its TLS handshake.
    pub(super) fn count_connection(&self, hop: &DestKey, session: &Session, slot: &mut ConnSlot) {
        let st = self.state.borrow();
        let Some(metrics) = st.cfg.metrics.as_ref() else {
            return;
        };
        if let Some(tls) = session.tls() {
            metrics
                .all()
                .tls
                .handshake(Direction::Outbound, tls.version);
        }
        if let Some(c) = st.site_counters(hop) {
            slot.opened(c.connection_opened());
        }
    }

    /// A connection could not be opened: a failed TLS handshake counts.
    pub(super) fn count_connection_failure(&self, e: &DeliverError) {
        if let DeliverError::TlsHandshake { .. } = e {
            if let Some(m) = self.state.borrow().cfg.metrics.as_ref() {
                m.all().tls.failed(Direction::Outbound);
            }
        }
    }

    /// `job`'s recipients are in a transaction to `hop`'s site until the
    /// guard drops.
    pub(super) fn in_flight(&self, hop: &DestKey, job: &Job) -> Option<InFlight> {
        self.state
            .borrow()
            .site_counters(hop)
            .map(|c| c.in_flight(job.rcpts.len()))
    }

    /// Counts the outcomes of an attempt to `hop`'s site.
    pub(super) fn count_site_results(&self, hop: &DestKey, results: &[RcptResult]) {
        let Some(c) = self.state.borrow().site_counters(hop) else {
            return;
        };
        for r in results {
            match r.class {
                ResultClass::Sent => c.delivered(),
                ResultClass::Deferred => c.deferred(DeferralClass::of_dsn(r.dsn())),
                ResultClass::Bounced => c.bounced(),
                ResultClass::Expired => c.expired(),
            }
        }
    }
}

impl Qmgr {
    /// Stores the arrival time of the oldest message in this shard's queue
    /// for `ringmail_queue_oldest_message_age_seconds`. Queue IDs grow in
    /// arrival order, so the smallest is the oldest; finding it walks the
    /// index (about a millisecond per 100,000 messages), which is why the
    /// timer calls this only every few seconds.
    pub(super) fn refresh_queue_age(&self) {
        let st = self.state.borrow();
        let Some(metrics) = st.cfg.metrics.as_ref() else {
            return;
        };
        let store = st.store.borrow();
        let oldest = store
            .ids()
            .min()
            .and_then(|id| store.peek(id).map(|(view, _)| view.arrival_micros));
        metrics
            .oldest_arrival_micros
            .store(oldest.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    }
}

/// Counts what automation did to a site.
pub(super) fn count_automation(counters: Option<&Arc<SiteCounters>>, actions: &[Action]) {
    let Some(c) = counters else { return };
    for action in actions {
        c.automation(match action {
            Action::Suspended { .. } => AutomationKind::Suspended,
            Action::Cut { .. } => AutomationKind::Cut,
            Action::Restored { .. } => AutomationKind::Restored,
            Action::Resumed { .. } => AutomationKind::Resumed,
        });
    }
}
