//! The sink's [`ServerPolicy`]: the rate limit and injected faults at MAIL
//! (421 and hang up), RCPT (451/550) and the end of the data (451/554),
//! drawn from the session's seeded random generator.

use std::sync::PoisonError;
use std::time::Instant;

use fastrand::Rng;

use crate::proto::server::ServerPolicy;
use crate::proto::server::{Context, Decision, MailParams, PendingMessage, RcptDsn, Reply};
use crate::sink::config::Faults;
use crate::sink::faults::{happens, verdict, Verdict};

use super::Throttle;

const RCPT_TEMP: Reply = Reply::fixed(451, "4.3.0", "Error: temporary failure (injected fault)");
const RCPT_PERM: Reply = Reply::fixed(550, "5.1.1", "Error: recipient rejected (injected fault)");
const DATA_TEMP: Reply = Reply::fixed(451, "4.3.0", "Error: temporary failure (injected fault)");
const DATA_PERM: Reply = Reply::fixed(554, "5.6.0", "Error: message rejected (injected fault)");

/// Fault injection for one connection.
#[derive(Debug)]
pub(super) struct FaultPolicy {
    rng: Rng,
    faults: Faults,
    /// `421 4.4.2 <host> Error: closing connection (injected fault)`.
    dropped: Reply,
    /// Connections closed by an injected 421 so far.
    pub(super) disconnects: u32,
    /// The listener's rate limit.
    throttle: Option<Throttle>,
    /// MAIL commands refused by the rate limit so far.
    pub(super) throttled: u32,
}

impl FaultPolicy {
    pub(super) fn new(
        rng: Rng,
        faults: Faults,
        dropped: Reply,
        throttle: Option<Throttle>,
    ) -> FaultPolicy {
        FaultPolicy {
            rng,
            faults,
            dropped,
            disconnects: 0,
            throttle,
            throttled: 0,
        }
    }
}

impl ServerPolicy for FaultPolicy {
    fn mail(&mut self, _: &Context<'_>, _: &str, _: &MailParams) -> Decision {
        if let Some(t) = &self.throttle {
            // The bucket is two numbers, consistent even if a holder
            // panicked.
            let mut bucket = t.bucket.lock().unwrap_or_else(PoisonError::into_inner);
            if !bucket.take(Instant::now()) {
                self.throttled += 1;
                return if t.reply.code == 421 {
                    Decision::Disconnect(t.reply.clone())
                } else {
                    Decision::Reject(t.reply.clone())
                };
            }
        }
        if happens(&mut self.rng, self.faults.disconnect_421) {
            self.disconnects += 1;
            return Decision::Disconnect(self.dropped.clone());
        }
        Decision::Accept
    }

    fn rcpt(&mut self, _: &Context<'_>, _: &str, _: &RcptDsn) -> Decision {
        let f = &self.faults;
        match verdict(&mut self.rng, f.rcpt_tempfail, f.rcpt_permfail) {
            Verdict::Pass => Decision::Accept,
            Verdict::Temp => Decision::Reject(RCPT_TEMP),
            Verdict::Perm => Decision::Reject(RCPT_PERM),
        }
    }

    fn data_end(&mut self, _: &PendingMessage<'_>) -> Decision {
        let f = &self.faults;
        match verdict(&mut self.rng, f.data_tempfail, f.data_permfail) {
            Verdict::Pass => Decision::Accept,
            Verdict::Temp => Decision::Reject(DATA_TEMP),
            Verdict::Perm => Decision::Reject(DATA_PERM),
        }
    }
}
