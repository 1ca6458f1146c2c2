//! The connection cache (Postfix's smtp_reuse.c): idle connections per
//! destination, taken again by the next worker, closed with QUIT when they
//! idle longer than `smtp_connection_cache_time_limit`.

use std::time::Instant;

use super::shaping::ConnSlot;
use super::DestKey;
use super::Qmgr;
use crate::deliver::Session;

impl Qmgr {
    /// Closes every idle connection with QUIT.
    pub async fn close_idle(&self, all: bool) {
        let now = Instant::now();
        let mut closing = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            let limit = st.cfg.delivery.idle_time_limit;
            for d in st.dests.values_mut() {
                let (old, keep): (Vec<_>, Vec<_>) = d
                    .idle
                    .drain(..)
                    .partition(|(_, _, since)| all || now.duration_since(*since) >= limit);
                d.idle = keep;
                closing.extend(old.into_iter().map(|(s, g, _)| (s, g)));
            }
        }
        let cfg = self.state.borrow().cfg.clone();
        for (s, guard) in closing {
            s.quit(&cfg.delivery).await;
            drop(guard);
        }
    }

    pub(super) fn take_idle(&self, hop: &DestKey) -> Option<(Session, ConnSlot)> {
        let mut st = self.state.borrow_mut();
        let limit = st.cfg.delivery.idle_time_limit;
        let d = st.dests.get_mut(hop)?;
        while let Some((s, g, since)) = d.idle.pop() {
            if since.elapsed() < limit {
                return Some((s, g));
            }
            // Too old: let it drop (closing a socket needs no reply).
            drop((s, g));
        }
        None
    }
}
