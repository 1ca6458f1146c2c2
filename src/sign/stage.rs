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

use crossbeam_channel::{Receiver, Sender, TrySendError};

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

/// The stage: an offer point with the push semantics of the ring.
pub struct SignStage {
    ring: Arc<PickupRing>,
    keys: Arc<CurrentKeys>,
    /// True while keys are configured (read per offer).
    active: Arc<AtomicBool>,
    jobs: Option<Sender<Box<Submission>>>,
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
        let (tx, rx) = crossbeam_channel::bounded::<Box<Submission>>(QUEUE_PER_THREAD * threads);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = rx.clone();
            let ring = Arc::clone(&ring);
            let keys = Arc::clone(&keys);
            let in_flight = Arc::clone(&in_flight);
            let spawned = std::thread::Builder::new()
                .name(format!("dkim-{i}"))
                .spawn(move || sign_loop(&rx, &ring, &keys, &in_flight));
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
            jobs: Some(tx),
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
        let Some(jobs) = &self.jobs else {
            return self.ring.push(sub);
        };
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        match jobs.try_send(sub) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(sub)) | Err(TrySendError::Disconnected(sub)) => {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                Err(sub)
            }
        }
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
        self.jobs = None;
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

fn sign_loop(
    rx: &Receiver<Box<Submission>>,
    ring: &PickupRing,
    keys: &Arc<CurrentKeys>,
    in_flight: &AtomicUsize,
) {
    let mut reader = keys.reader();
    let mut done: Vec<Box<Submission>> = Vec::with_capacity(BATCH);
    while let Ok(first) = rx.recv() {
        // Whatever else is already waiting is signed too before the batch
        // goes to the ring: the shard then commits it in one group commit
        // instead of one per message. Nothing waits for more to come.
        let started = Instant::now();
        done.push(sign_one(first, &mut reader));
        while done.len() < BATCH && started.elapsed() < BATCH_TIME {
            match rx.try_recv() {
                Ok(sub) => done.push(sign_one(sub, &mut reader)),
                Err(_) => break,
            }
        }
        let n = done.len();
        for mut sub in done.drain(..) {
            loop {
                match ring.push(sub) {
                    Ok(()) => break,
                    Err(back) => {
                        sub = back;
                        std::thread::sleep(RING_FULL_NAP);
                    }
                }
            }
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
