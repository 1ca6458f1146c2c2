//! The connection cache (Postfix's smtp_reuse.c): idle connections per
//! destination, taken again by the next worker, closed with QUIT when they
//! idle longer than `smtp_connection_cache_time_limit`, or at once when
//! another shard was refused a connection slot of their site (a cached
//! connection must not keep a shard with mail waiting below the site's
//! limit).

use std::time::Instant;

use super::shaping::ConnSlot;
use super::DestKey;
use super::Qmgr;
use crate::deliver::Session;

impl Qmgr {
    /// Closes the idle connections that idled too long (every one with
    /// `all`) with QUIT. Each QUIT runs as a task of its own: the timer
    /// that calls this must not wait for a slow server's `221` (up to 5 s
    /// per connection) while retries fall due. With `all` (stopping) it
    /// waits until every one is closed.
    pub async fn close_idle(&self, all: bool) {
        let now = Instant::now();
        let mut closing = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            let limit = st.cfg.delivery.idle_time_limit;
            for d in st.dests.values_mut() {
                let (old, keep): (Vec<_>, Vec<_>) =
                    d.idle.drain(..).partition(|(_, slot, since)| {
                        all || now.duration_since(*since) >= limit || slot.is_wanted()
                    });
                d.idle = keep;
                closing.extend(old.into_iter().map(|(s, g, _)| (s, g)));
            }
        }
        let cfg = self.state.borrow().cfg.clone();
        let quits: Vec<_> = closing
            .into_iter()
            .map(|(s, guard)| {
                let cfg = std::rc::Rc::clone(&cfg);
                tokio::task::spawn_local(async move {
                    s.quit(&cfg.delivery).await;
                    // The slot is free once the connection is closed.
                    drop(guard);
                })
            })
            .collect();
        if all {
            for quit in quits {
                let _ = quit.await;
            }
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
