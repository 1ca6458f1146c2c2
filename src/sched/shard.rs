//! The shard loop: recover the shard's queue, then drain the pickup ring
//! into it in batches with one group commit per batch.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::mailbox::ShardRequest;

use crate::model::{Ack, AckError, QueueId, Source, Submission};
use crate::queue::recovery::RecoveryReport;
use crate::queue::{QueueError, Store};
use crate::rt::{self, IoBackend};

use super::qmgr::{Qmgr, QmgrConfig};
use super::PickupRing;
use crate::deliver::Router;

/// Most submissions a shard appends before it commits.
pub const MAX_BATCH: usize = 1024;

/// How often an idle shard looks at the stop flag.
const IDLE_CHECK: Duration = Duration::from_millis(50);

/// Errors that end a shard.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The queue could not be recovered or created.
    #[error("shard {index}: {source}")]
    Queue {
        /// The shard.
        index: usize,
        /// The underlying error.
        source: QueueError,
    },
}

impl ShardError {
    /// True when a restart may succeed (I/O errors, full disk).
    pub fn is_transient(&self) -> bool {
        match self {
            ShardError::Queue { source, .. } => source.is_transient(),
        }
    }
}

/// Everything a shard needs, handed over when its thread starts.
pub struct ShardContext {
    /// This shard's index.
    pub index: usize,
    /// How many shards run.
    pub shard_count: usize,
    /// `spool_dir/queue`.
    pub queue_root: PathBuf,
    /// Segment file size.
    pub segment_size: u64,
    /// Work comes from here.
    pub ring: Arc<PickupRing>,
    /// Acknowledgements go back here, after the commit.
    pub acks: Sender<Ack>,
    /// Set once no more work will be pushed: drain the ring, commit, return.
    pub stop: Arc<AtomicBool>,
    /// Told once recovery is done (or failed: this shard's index and why),
    /// so the daemon starts pickup only when every shard is ready.
    pub ready: Sender<Result<RecoveryReport, (usize, String)>>,
    /// Delivery scheduling settings (this shard's share of the limits).
    pub qmgr: QmgrConfig,
    /// Recipient domain → next hop.
    pub router: Router,
    /// Bumped by `sendmail -q` / `queue flush`: retry deferred mail now.
    pub flush: Arc<AtomicU64>,
    /// Connection slots per next hop, shared by all shards.
    pub slots: Arc<super::slots::DestinationSlots>,
    /// Digests of the keys of the files in the spool directories at start:
    /// recovery reports the records that came from one of them (see
    /// `inject::leftovers`).
    pub leftovers: Arc<HashSet<u64>>,
    /// From pickup: messages whose spool file is gone for good, so their
    /// records need not outlive delivery (see [`Store::release_file`]).
    pub released: Receiver<Vec<QueueId>>,
    /// Requests only this shard may carry out (queue commands).
    pub mailbox: Arc<super::mailbox::ShardMailbox>,
}

/// Status bytes and defer records written by delivery are committed at most
/// this often: they acknowledge nothing to anyone (losing them in a crash
/// means a second delivery, not a lost message), so they ride in batches.
const STATUS_COMMIT_INTERVAL: Duration = Duration::from_millis(10);

/// How long a stopping shard waits for transactions in progress.
const DRAIN_DELIVERIES: Duration = Duration::from_millis(1500);

/// Runs one shard until `stop` is set and the ring is empty. Returns the
/// number of messages it queued.
pub async fn run_shard(mut ctx: ShardContext, backend: IoBackend) -> Result<u64, ShardError> {
    // Needed only for recovery: let it go afterwards.
    let leftovers = std::mem::take(&mut ctx.leftovers);
    let opened = Store::open_matching(
        &ctx.queue_root,
        ctx.index,
        ctx.shard_count,
        ctx.segment_size,
        &leftovers,
    );
    drop(leftovers);
    let store = match opened {
        Ok((store, report)) => {
            let continued = match &report.continued {
                Some(path) => format!("; continuing {}", path.display()),
                None => String::new(),
            };
            tracing::info!(
                target: "qmgr",
                "shard {}: recovered {} messages, {} recipients from {} segments in {} ms ({} torn records cut, {} empty segments removed{continued})",
                ctx.index,
                report.messages,
                report.recipients,
                report.segments,
                report.elapsed.as_millis(),
                report.torn,
                report.segments_removed
            );
            let _ = ctx.ready.send(Ok(report));
            store
        }
        Err(source) => {
            let _ = ctx.ready.send(Err((ctx.index, source.to_string())));
            return Err(ShardError::Queue {
                index: ctx.index,
                source,
            });
        }
    };
    let store = Rc::new(RefCell::new(store));
    let qmgr = Qmgr::new(
        Rc::clone(&store),
        ctx.qmgr.clone(),
        ctx.router.clone(),
        Arc::clone(&ctx.slots),
    );
    let timer = tokio::task::spawn_local({
        let q = qmgr.clone();
        async move { q.run_timer().await }
    });
    let recovered: Vec<QueueId> = store.borrow().ids().collect();
    for id in recovered {
        qmgr.schedule(id);
    }
    let mut flush_seen = ctx.flush.load(Ordering::Acquire);
    let mut last_commit = Instant::now();
    let mut queued = 0u64;
    let mut batch: Vec<(Box<Submission>, Result<QueueId, AckError>)> =
        Vec::with_capacity(MAX_BATCH);
    loop {
        release_files(&store, &ctx.released, ctx.index);
        // Segments deleted since: their io_uring handles go too.
        rt::forget_closed_files();
        while batch.len() < MAX_BATCH {
            let Some(sub) = ctx.ring.pop() else { break };
            let result = store.borrow_mut().append(&sub).map_err(|e| {
                // Without room the store says so once a minute, not for
                // every message refused (the submitter keeps it).
                if !e.is_no_room() {
                    tracing::error!(target: "qmgr", "shard {}: cannot queue message: {e}", ctx.index);
                }
                if e.is_transient() {
                    AckError::QueueWrite(e.to_string())
                } else {
                    AckError::Rejected(e.to_string())
                }
            });
            batch.push((sub, result));
        }
        if !batch.is_empty() {
            if !ctx.ring.is_empty() {
                // Leave the rest to an idle shard while this one commits.
                ctx.ring.wake_one();
            }
            let began = Instant::now();
            let committed = commit(&store, &qmgr, backend, batch.len()).await;
            last_commit = Instant::now();
            if let Some(m) = &ctx.qmgr.metrics {
                m.commit_seconds
                    .observe(last_commit.duration_since(began).as_secs_f64());
                m.commit_batch.observe(batch.len() as f64);
            }
            // Answers first: an SMTP session waits for its `250` (pickup,
            // to unlink the file), and none of the logging and planning
            // below changes what it is told. The counters move before the
            // answer, so whoever got a `250` sees the message counted.
            for (sub, result) in batch.iter_mut() {
                let answer = match (&*result, &committed) {
                    (Ok(id), Ok(())) => Ok(*id),
                    (Ok(_), Err(e)) | (Err(e), _) => Err(e.clone()),
                };
                if let (Ok(_), Some(m)) = (&answer, &ctx.qmgr.metrics) {
                    let rcpts = match &sub.campaign {
                        Some(slice) => slice.rows.len(),
                        None => sub.envelope.recipients.len(),
                    };
                    m.received(sub.origin, rcpts as u64);
                }
                match &sub.source {
                    Source::Reply { id, to } => {
                        let source = Source::Reply {
                            id: *id,
                            to: to.clone(),
                        };
                        // A session that went away no longer needs it.
                        let _ = to.0.send(Ack {
                            source,
                            result: answer,
                        });
                    }
                    // The submitter (pickup) unlinks a committed file itself.
                    // The source is taken, not cloned (no path copy per
                    // message): the bookkeeping below only asks whether it
                    // was a session.
                    _ => {
                        let source = std::mem::replace(&mut sub.source, Source::Internal(0));
                        let _ = ctx.acks.send(Ack {
                            source,
                            result: answer,
                        });
                    }
                }
            }
            for (sub, result) in batch.drain(..) {
                let (Ok(id), Ok(())) = (result, &committed) else {
                    continue;
                };
                queued += 1;
                log_queued(id, &sub);
                if ctx.qmgr.events.is_enabled() {
                    ctx.qmgr.events.emit(received_event(id, &sub));
                }
                qmgr.schedule(id);
            }
            continue;
        }
        if let Some(m) = &ctx.qmgr.metrics {
            m.queue_messages
                .store(qmgr.queued_messages() as i64, Ordering::Relaxed);
            m.messages_completed
                .store(store.borrow().completed_messages(), Ordering::Relaxed);
        }
        let dirty = store.borrow().has_dirty();
        if dirty && last_commit.elapsed() >= STATUS_COMMIT_INTERVAL {
            // Delivery status bytes, defer records and notices.
            let _ = commit(&store, &qmgr, backend, 0).await;
            last_commit = Instant::now();
        }
        if answer_requests(&ctx, &store, &qmgr, backend).await {
            last_commit = Instant::now();
        }
        let flush = ctx.flush.load(Ordering::Acquire);
        if flush != flush_seen {
            flush_seen = flush;
            qmgr.flush();
        }
        if ctx.stop.load(Ordering::Acquire) && ctx.ring.is_empty() {
            break;
        }
        let nap = if dirty {
            STATUS_COMMIT_INTERVAL.saturating_sub(last_commit.elapsed())
        } else {
            IDLE_CHECK
        };
        tokio::select! {
            _ = ctx.ring.wait() => {}
            _ = ctx.mailbox.wait() => {}
            _ = qmgr.dirty(), if !dirty => {}
            _ = tokio::time::sleep(nap) => {}
        }
    }
    // Let transactions in progress finish (briefly), record them, close
    // connections: a tokio-uring runtime must not be dropped with socket
    // operations in flight.
    qmgr.stop();
    let deadline = Instant::now() + DRAIN_DELIVERIES;
    while qmgr.active_workers() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = timer.await;
    if commit(&store, &qmgr, backend, 0).await.is_ok()
        && (qmgr.has_pending() || store.borrow().has_dirty())
    {
        // Statuses of recipients whose notices just became durable, and
        // notices appended during that commit.
        let _ = commit(&store, &qmgr, backend, 0).await;
    }
    tracing::debug!(target: "qmgr", "shard {}: stopped after queuing {queued} messages", ctx.index);
    Ok(queued)
}

/// Applies the releases pickup sent (segments of delivered messages whose
/// files are gone may be deleted now).
fn release_files(store: &RefCell<Store>, released: &Receiver<Vec<QueueId>>, shard: usize) {
    while let Ok(ids) = released.try_recv() {
        let mut store = store.borrow_mut();
        for id in ids {
            if let Err(e) = store.release_file(id) {
                tracing::warn!(target: "qmgr", "shard {shard}: {e}");
            }
        }
    }
}

/// A commit of at most this many new messages may fdatasync on the shard's
/// thread, when the disk answers fast ([`rt::sync_policy`]): its fdatasync
/// is short, and handing it off cost more than the sync itself (the SMTP
/// and `sendmail` paths, a few messages per commit, each waiting for its
/// acknowledgement). Larger commits (the spool path's, up to
/// [`MAX_BATCH`]) write more and sync longer, and commits of status bytes
/// only acknowledge nothing: their fdatasync is handed off so deliveries
/// go on meanwhile.
const INLINE_SYNC_BATCH: usize = 64;

/// One group commit of `messages` new messages: write what the segments
/// gathered and fdatasync every segment written since the last commit;
/// then let the queue manager act on what became durable (see
/// [`Qmgr::before_commit`]).
async fn commit(
    store: &RefCell<Store>,
    qmgr: &Qmgr,
    backend: IoBackend,
    messages: usize,
) -> Result<(), AckError> {
    let journals = qmgr.before_commit();
    let small = (1..=INLINE_SYNC_BATCH).contains(&messages);
    // Campaign results journals first: their lines explain the status
    // bytes this commit makes durable. A journal that cannot be synced is
    // reported, not fatal to the queue (its lines are in the page cache,
    // and a recipient's last line wins when it is written again).
    for (file, path) in journals {
        if let Err(e) = rt::sync_data(file, backend, small).await {
            tracing::error!(target: "qmgr", "campaign results: fdatasync {}: {e}", path.display());
        }
    }
    let synced = sync_dirty(store, backend, small).await;
    if synced.is_ok() {
        qmgr.after_commit();
    }
    synced
}

/// Writes and fdatasyncs every segment written since the last call.
async fn sync_dirty(
    store: &RefCell<Store>,
    backend: IoBackend,
    small: bool,
) -> Result<(), AckError> {
    let files = match store.borrow_mut().take_dirty() {
        Ok(files) => files,
        Err(e) => {
            tracing::error!(target: "qmgr", "queue write failed: {e}; queue writes stop until restart");
            return Err(AckError::QueueWrite(e.to_string()));
        }
    };
    for file in files {
        if let Err(e) = rt::sync_data(file, backend, small).await {
            store.borrow_mut().poison();
            tracing::error!(target: "qmgr", "fdatasync failed: {e}; queue writes stop until restart");
            return Err(AckError::QueueWrite(format!("fdatasync: {e}")));
        }
    }
    if store.borrow().is_poisoned() {
        return Err(AckError::QueueWrite(
            "queue writes disabled after an fdatasync failure".into(),
        ));
    }
    Ok(())
}

/// Carries out the requests waiting in the shard's mailbox, each answered
/// after a commit made its changes durable (or with the commit's error).
/// True when it committed.
async fn answer_requests(
    ctx: &ShardContext,
    store: &RefCell<Store>,
    qmgr: &Qmgr,
    backend: IoBackend,
) -> bool {
    let mut committed = false;
    while let Some(request) = ctx.mailbox.try_recv() {
        match request {
            ShardRequest::Queue {
                command,
                ids,
                reply,
            } => {
                let mut report = qmgr.administer(&command, &ids);
                if !command.dry_run && !report.messages.is_empty() {
                    if let Err(e) = commit(store, qmgr, backend, 0).await {
                        report.error = Some(e.to_string());
                    }
                    committed = true;
                }
                // The asker may have given up waiting.
                let _ = reply.send(report);
            }
        }
    }
    committed
}

/// The `received` event of a message (or campaign slice) just queued.
fn received_event(id: QueueId, sub: &Submission) -> crate::obs::events::Event {
    use crate::obs::events::{Event, EventKind, EventSource};
    let mut e = Event::new(EventKind::Received, id.to_string());
    e.source = Some(EventSource::from(sub.origin));
    match &sub.campaign {
        Some(slice) => {
            e.campaign = Some(slice.spec.id.to_string());
            e.recipient_index = Some(slice.first_index);
        }
        None => {
            e.sender = Some(sub.envelope.sender.clone());
            e.recipients = Some(sub.envelope.recipients.clone());
            e.message_id = Some(sub.message_id.clone());
        }
    }
    e
}

/// The three lines Postfix logs for a message entering the queue.
fn log_queued(id: QueueId, sub: &Submission) {
    if let Some(slice) = &sub.campaign {
        crate::info_line!(
            target: "qmgr",
            "{id}: campaign={}, recipients {}..{}, nrcpt={} (queue active)",
            slice.spec.id,
            slice.first_index,
            slice.first_index as usize + slice.rows.len(),
            slice.rows.len()
        );
        return;
    }
    // A message from an SMTP session has its `client=` line from smtpd
    // instead (as in Postfix, where pickup never sees it).
    if !matches!(sub.source, Source::Reply { .. }) {
        crate::info_line!(target: "pickup", "{id}: uid={} from=<{}>", sub.uid, sub.envelope.sender);
    }
    crate::info_line!(target: "cleanup", "{id}: message-id=<{}>", sub.message_id);
    // As OpenDKIM logs it beside Postfix: one line per signature added by
    // the signing stage.
    for (selector, domain) in crate::sign::signer::added_signatures(&sub.wire) {
        crate::info_line!(target: "cleanup", "{id}: DKIM-Signature field added (s={selector}, d={domain})");
    }
    crate::info_line!(
        target: "qmgr",
        "{id}: from=<{}>, size={}, nrcpt={} (queue active)",
        sub.envelope.sender,
        sub.wire.len(),
        sub.envelope.recipients.len()
    );
}
