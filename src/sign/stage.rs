//! The signing stage between cleanup and the queue: every intake (pickup,
//! `sendmail`, SMTP, HTTP) offers its submissions here instead of to the
//! pickup ring. Without keys a submission goes straight on; with keys it is
//! handed to one of a few signing threads (RSA signing costs about a
//! millisecond, too long for the single pickup thread or a listener), which
//! put the signature in front of the wire form and pass it to the ring.
//!
//! Ordinary mail is signed here once, so retries resend the same bytes.
//! Acknowledgements still come from the shard that commits: a submission
//! held here has not been acknowledged, so nothing is lost when the daemon
//! stops with one in a signing thread (the client is told to try again).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::rt::Handoff;

use super::current::CurrentKeys;
use crate::model::Submission;
use crate::sched::ring::PickupRing;

/// Submissions waiting for a signing thread, per thread.
const QUEUE_PER_THREAD: usize = 256;

/// Most submissions a signing thread signs before offering them.
const BATCH: usize = 32;

/// Longest a signing thread keeps signed submissions before offering them
/// (about ten RSA-2048 signatures).
const BATCH_TIME: Duration = Duration::from_millis(5);

/// How long a signing thread naps when the ring is full.
const RING_FULL_NAP: Duration = Duration::from_micros(200);

/// Once the stage is closed, how long a signing thread waits for room in
/// a full ring before it lets its signed messages go.
const STOP_GIVE_UP: Duration = Duration::from_secs(2);

/// The stage: an offer point with the push semantics of the ring.
pub struct SignStage {
    ring: Arc<PickupRing>,
    keys: Arc<CurrentKeys>,
    /// True while keys are configured (read per offer).
    active: Arc<AtomicBool>,
    /// Submissions waiting for a signing thread (a mutex and condition
    /// variable: a channel's receive spun and yielded before sleeping).
    jobs: Arc<Handoff<Box<Submission>>>,
    /// Most submissions taken and not yet in the ring.
    capacity: usize,
    /// Submissions taken but not yet in the ring.
    in_flight: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for SignStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignStage")
            .field("threads", &self.threads.len())
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish()
    }
}

impl SignStage {
    /// A stage passing to `ring`, signing with `keys` on `threads` threads
    /// (none are started while no key is configured and `threads` is 0).
    pub fn start(ring: Arc<PickupRing>, keys: Arc<CurrentKeys>, threads: usize) -> SignStage {
        let active = Arc::new(AtomicBool::new(!keys.get().is_empty()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let threads = threads.max(1);
        let jobs: Arc<Handoff<Box<Submission>>> = Arc::new(Handoff::default());
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let jobs = Arc::clone(&jobs);
            let ring = Arc::clone(&ring);
            let keys = Arc::clone(&keys);
            let in_flight = Arc::clone(&in_flight);
            let spawned = std::thread::Builder::new()
                .name(format!("dkim-{i}"))
                .spawn(move || sign_loop(&jobs, &ring, &keys, &in_flight));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => tracing::error!(target: "cleanup", "cannot start a signing thread: {e}"),
            }
        }
        if handles.is_empty() {
            // Without a thread nothing could be signed: say so at each
            // offer rather than queue mail unsigned.
            tracing::error!(target: "cleanup", "no DKIM signing thread: mail is queued unsigned");
            active.store(false, Ordering::Release);
        }
        SignStage {
            ring,
            keys,
            active,
            jobs,
            capacity: QUEUE_PER_THREAD * threads,
            in_flight,
            threads: handles,
        }
    }

    /// Offers a submission; gives it back when the stage (or the ring) is
    /// full, as [`PickupRing::push`] does.
    pub fn push(&self, sub: Box<Submission>) -> Result<(), Box<Submission>> {
        if !self.active.load(Ordering::Acquire) || sub.campaign.is_some() {
            return self.ring.push(sub);
        }
        // Full: as many taken as the threads' queues hold, or no signing
        // thread left (only a panic in each could end them; the mail waits
        // unsigned in its intake rather than going out unsigned).
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.capacity
            || self.threads.iter().all(|t| t.is_finished())
        {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(sub);
        }
        self.jobs.give(sub).inspect_err(|_| {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Says whether keys are configured now (after a reload).
    pub fn keys_changed(&self) {
        self.active.store(
            !self.keys.get().is_empty() && !self.threads.is_empty(),
            Ordering::Release,
        );
    }

    /// Waits until every submission taken has reached the ring, at most
    /// `limit`; true when none is left.
    pub fn drain(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while self.in_flight.load(Ordering::Acquire) > 0 {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

impl Drop for SignStage {
    fn drop(&mut self) {
        self.jobs.close();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

fn sign_loop(
    jobs: &Handoff<Box<Submission>>,
    ring: &PickupRing,
    keys: &Arc<CurrentKeys>,
    in_flight: &AtomicUsize,
) {
    let mut reader = keys.reader();
    let mut done: Vec<Box<Submission>> = Vec::with_capacity(BATCH);
    while let Some(first) = jobs.take() {
        // Whatever else is already waiting is signed too before the batch
        // goes to the ring: the shard then commits it in one group commit
        // instead of one per message. Nothing waits for more to come.
        let started = Instant::now();
        done.push(sign_one(first, &mut reader));
        while done.len() < BATCH && started.elapsed() < BATCH_TIME {
            match jobs.try_take() {
                Some(sub) => done.push(sign_one(sub, &mut reader)),
                None => break,
            }
        }
        let n = done.len();
        let mut full_since: Option<Instant> = None;
        let mut let_go = 0;
        for mut sub in done.drain(..) {
            loop {
                match ring.push(sub) {
                    Ok(()) => {
                        full_since = None;
                        break;
                    }
                    Err(back) => {
                        // Stopping, and nobody empties the ring: let the
                        // rest go rather than hang the stop. None of it was
                        // acknowledged, so its sender offers it again.
                        let since = *full_since.get_or_insert_with(Instant::now);
                        if jobs.is_closed() && since.elapsed() >= STOP_GIVE_UP {
                            drop(back);
                            let_go += 1;
                            break;
                        }
                        sub = back;
                        std::thread::sleep(RING_FULL_NAP);
                    }
                }
            }
        }
        if let_go > 0 {
            tracing::warn!(target: "cleanup", "stopping with the pickup ring full: {let_go} signed messages not queued (not acknowledged; offered again by their senders)");
        }
        in_flight.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Puts the signatures in front of one submission's wire form.
fn sign_one(mut sub: Box<Submission>, reader: &mut super::KeysReader) -> Box<Submission> {
    let wire = std::mem::take(&mut sub.wire);
    match reader.keys().sign(&wire) {
        Ok(signed) => sub.wire = signed.prepend_to(wire),
        Err(e) => {
            // A key that loaded but cannot sign this message: queue it
            // unsigned rather than lose or refuse it, and say so.
            tracing::warn!(target: "cleanup", "message-id=<{}>: DKIM signing failed, queued unsigned: {e}", sub.message_id);
            sub.wire = wire;
        }
    }
    sub
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DkimAlgorithm, DkimKeyConfig};
    use crate::model::Source;
    use crate::sign::{keygen, PrivateKey, Signers};

    fn sub(i: u64) -> Box<Submission> {
        Submission::for_test(i, b"From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n")
    }

    fn keys() -> Arc<CurrentKeys> {
        let config: DkimKeyConfig =
            toml::from_str("domain = \"example.com\"\nselector = \"s\"\nkey_file = \"unused\"\n")
                .unwrap();
        let pem = keygen::generate(DkimAlgorithm::Ed25519Sha256, 0).unwrap();
        let key = PrivateKey::from_pem(pem.as_bytes()).unwrap();
        Arc::new(CurrentKeys::new(
            Signers::from_keys(vec![(config, key)]).unwrap(),
        ))
    }

    #[test]
    fn every_submission_reaches_the_ring_signed_and_a_full_stage_gives_back() {
        // A ring of 4 that nobody empties: the threads fill it, then hold
        // what they signed, and the stage refuses more than it may hold.
        let ring = Arc::new(PickupRing::new(4));
        let stage = SignStage::start(Arc::clone(&ring), keys(), 2);
        let mut taken = 0u64;
        let refused = loop {
            match stage.push(sub(taken)) {
                Ok(()) => taken += 1,
                Err(back) => break back,
            }
            assert!(taken <= 2 * QUEUE_PER_THREAD as u64 + 4, "never full");
        };
        assert_eq!(refused.source, Source::Internal(taken), "given back whole");
        // The stage holds its capacity; a batch that went whole into the
        // ring (at most 4) no longer counts against it.
        let capacity = 2 * QUEUE_PER_THREAD as u64;
        assert!((capacity..=capacity + 4).contains(&taken), "{taken}");
        // Emptying the ring lets every taken submission through, signed.
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while (seen.len() as u64) < taken {
            assert!(
                Instant::now() < deadline,
                "{} of {taken} arrived",
                seen.len()
            );
            match ring.pop() {
                Some(s) => {
                    assert!(s
                        .wire
                        .starts_with(b"DKIM-Signature: v=1; a=ed25519-sha256;"));
                    seen.push(s.source);
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert!(
            stage.drain(Duration::from_secs(5)),
            "nothing left in flight"
        );
        seen.sort_by_key(|s| match s {
            Source::Internal(i) => *i,
            _ => u64::MAX,
        });
        let want: Vec<Source> = (0..taken).map(Source::Internal).collect();
        assert_eq!(seen, want, "each exactly once");
        assert!(stage.push(sub(9999)).is_ok(), "room again");
    }

    #[test]
    fn a_stop_with_the_ring_full_does_not_hang() {
        let ring = Arc::new(PickupRing::new(1));
        let stage = SignStage::start(Arc::clone(&ring), keys(), 1);
        for i in 0..5 {
            assert!(stage.push(sub(i)).is_ok());
        }
        // Nobody empties the ring: dropping the stage closes it, and the
        // thread lets its signed messages go after STOP_GIVE_UP.
        let began = Instant::now();
        drop(stage);
        assert!(began.elapsed() < STOP_GIVE_UP + Duration::from_secs(10));
        assert_eq!(ring.len(), 1);
    }
}
