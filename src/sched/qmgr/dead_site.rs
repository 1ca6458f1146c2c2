//! The dead-site cache: when a destination is marked dead (its hosts did
//! not answer at a window of one), every other destination of the same
//! site and source whose MX hosts are the very same ones is dead too, for
//! the same time and with the same reason. So two hundred Google
//! Workspace domains behind an unreachable Google do not each try their
//! own connection (each up to `smtp_connect_timeout`) before deferring.
//!
//! The key includes the MX host set, not only the site: a site rolled up by
//! name patterns may group domains whose hosts differ, and a failure of one
//! set of hosts says nothing about another.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::results::Timing;
use super::DestKey;
use super::{Qmgr, State};
use crate::deliver::RcptResult;
use crate::shape::SiteKey;

/// A site, a source and one set of MX hosts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct DeadKey {
    site: SiteKey,
    source: Option<Arc<str>>,
    hosts: u64,
}

/// A fingerprint of a destination's MX host names and port (order and
/// case do not matter).
pub(super) fn hosts_fingerprint(names: &[String], port: u16) -> u64 {
    let mut sorted: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    sorted.sort();
    sorted.dedup();
    let mut h = DefaultHasher::new();
    sorted.hash(&mut h);
    port.hash(&mut h);
    h.finish()
}

impl State {
    /// `hop`'s key in the dead-site cache, once its site and hosts are
    /// known.
    fn dead_key(&self, hop: &DestKey) -> Option<DeadKey> {
        let d = self.dests.get(hop)?;
        Some(DeadKey {
            site: d.site.clone()?,
            source: hop.source.clone(),
            hosts: d.hosts?,
        })
    }

    /// Remembers that `hop`'s site and hosts are dead until `until`.
    pub(super) fn site_died(&mut self, hop: &DestKey, until: Instant, reason: &str) {
        if let Some(key) = self.dead_key(hop) {
            self.dead_sites.insert(key, (until, reason.to_string()));
        }
    }

    /// Marks `hop` dead when its site and hosts are: true when it is now
    /// (it was not before).
    pub(super) fn inherit_site_death(&mut self, hop: &DestKey) -> bool {
        if self.dead_sites.is_empty() {
            // The common case, on every plan and kick: nothing to look up.
            return false;
        }
        let Some(key) = self.dead_key(hop) else {
            return false;
        };
        let now = Instant::now();
        let Some((until, reason)) = self.dead_sites.get(&key).cloned() else {
            return false;
        };
        if now >= until {
            self.dead_sites.remove(&key);
            return false;
        }
        match self.dests.get_mut(hop) {
            Some(d) if d.dead_until.is_none() => {
                d.dead_until = Some((until, reason));
                true
            }
            _ => false,
        }
    }

    /// Forgets the entries that expired (and all of them with `all`).
    pub(super) fn forget_dead_sites(&mut self, all: bool) {
        let now = Instant::now();
        self.dead_sites.retain(|_, (until, _)| !all && now < *until);
    }
}

impl Qmgr {
    /// `hop` just learnt its site and hosts: when those are dead, it is
    /// dead too and the jobs it holds are deferred at once, as the
    /// destination that found them dead deferred its own.
    pub(super) fn join_dead_site(&self, hop: &DestKey) {
        let (jobs, reason) = {
            let mut st = self.state.borrow_mut();
            if !st.inherit_site_death(hop) {
                return;
            }
            let Some(d) = st.dests.get_mut(hop) else {
                return;
            };
            let reason = d
                .dead_until
                .as_ref()
                .map(|(_, r)| r.clone())
                .unwrap_or_default();
            (d.jobs.drain(..).collect::<Vec<_>>(), reason)
        };
        tracing::info!(target: "qmgr", "destination {hop} marked dead with its site: {reason}");
        let timing = Timing {
            started: crate::model::now_micros(),
            setup: Duration::ZERO,
            xfer: Duration::ZERO,
            conn_use: 0,
        };
        for job in jobs {
            let result =
                RcptResult::deferred("4.4.1", format!("delivery temporarily suspended: {reason}"));
            let results: Vec<RcptResult> = job.rcpts.iter().map(|_| result.clone()).collect();
            self.finish_job(hop, &job, &results, None, &timing);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_order_and_case_but_not_hosts_or_port() {
        let a = hosts_fingerprint(
            &[
                "ASPMX.l.google.com".into(),
                "alt1.aspmx.l.google.com".into(),
            ],
            25,
        );
        let b = hosts_fingerprint(
            &[
                "alt1.aspmx.l.google.com".into(),
                "aspmx.l.google.com".into(),
            ],
            25,
        );
        assert_eq!(a, b);
        assert_ne!(a, hosts_fingerprint(&["aspmx.l.google.com".into()], 25));
        assert_ne!(
            a,
            hosts_fingerprint(
                &[
                    "aspmx.l.google.com".into(),
                    "alt1.aspmx.l.google.com".into()
                ],
                2525
            )
        );
    }
}
