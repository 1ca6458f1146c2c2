//! `ringmail serve`: takes the spool lock, starts one shard per core (each
//! recovers its queue), then runs pickup until SIGTERM/SIGINT; on a signal,
//! pickup stops offering files, the shards commit what they hold, and the
//! daemon exits.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cleanup::intake::{prepare, SiteParams};
use crate::config::{Config, DkimKeyConfig};
use crate::deliver::{DeliveryConfig, Router};
use crate::inject::leftovers::{AlreadyQueued, QueuedAs};
use crate::inject::{Pickup, PickupConfig, PickupStats};
use crate::model::{Ack, QueueId};
use crate::obs::metrics::{DaemonInfo, Metrics, ShardCounters};
use crate::rt::{self, IoBackend};
use crate::sched::qmgr::QmgrConfig;
use crate::sched::{run_shard, PickupRing, ShardContext, ShardError};
use crate::sign::{CurrentKeys, SignError, SignStage, Signers};
use crate::spool::{Spool, SpoolError};

pub mod admin_socket;
mod campaign;
pub mod campaign_intake;
mod campaign_mail;
pub mod events;
mod smtpd;
mod submit;
mod unix_server;

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The spool could not be prepared or is locked by another daemon.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// A shard thread could not start.
    #[error(transparent)]
    Runtime(#[from] rt::RtError),
    /// A shard could not recover or create its queue.
    #[error("shard {index} failed to start: {reason}")]
    ShardStart {
        /// The shard.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A shard ended with an error.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// The routing configuration cannot be used.
    #[error(transparent)]
    Router(#[from] crate::deliver::RouterConfigError),
    /// The SMTP listeners could not start.
    #[error(transparent)]
    Smtpd(#[from] crate::inject::smtpd::SmtpdError),
    /// The HTTP server's address could not be bound.
    #[error(transparent)]
    Http(#[from] crate::admin::AdminError),
    /// A DKIM key could not be used.
    #[error(transparent)]
    Dkim(#[from] SignError),
    /// The events file or the webhook could not be set up.
    #[error(transparent)]
    Events(#[from] crate::obs::events::EventsError),
    /// The shaping rules (`shaping_file`) or sources and pools are wrong.
    #[error("shaping: {0}")]
    Shaping(#[from] crate::shape::ShapeError),
}

impl DaemonError {
    /// True when starting again later may work.
    pub fn is_transient(&self) -> bool {
        match self {
            DaemonError::Spool(e) => e.is_transient(),
            DaemonError::Runtime(e) => e.is_transient(),
            DaemonError::ShardStart { .. } => true,
            DaemonError::Shard(e) => e.is_transient(),
            DaemonError::Router(e) => e.is_transient(),
            DaemonError::Smtpd(e) => e.is_transient(),
            DaemonError::Http(e) => e.is_transient(),
            DaemonError::Dkim(e) => e.is_transient(),
            DaemonError::Events(e) => e.is_transient(),
            DaemonError::Shaping(_) => false,
        }
    }
}

/// What a daemon run did, returned at shutdown.
#[derive(Clone, Debug, Default)]
pub struct ServeReport {
    /// The backend the shards ran on (the last shard's, if they differ).
    pub backend: Option<IoBackend>,
    /// Number of shards.
    pub shards: usize,
    /// Messages queued by all shards.
    pub queued: u64,
    /// Pickup's counters.
    pub pickup: PickupStats,
}

/// How long shards get to stop after a signal before the daemon exits anyway.
const SHUTDOWN_WATCHDOG: Duration = Duration::from_secs(4);

/// After the shards stop, how long pickup may take to unlink the files
/// committed last (each normally takes well under a millisecond).
const PICKUP_FINISH_LIMIT: Duration = Duration::from_secs(3);

/// A shard thread: the backend it ran on and how many messages it queued.
type ShardHandle = JoinHandle<Result<(IoBackend, Result<u64, ShardError>), rt::RtError>>;

/// Runs the daemon until `stop` is set (the CLI sets it on SIGTERM/SIGINT).
///
/// `config_path` is the file `config` came from: SIGHUP re-reads its
/// `[[dkim]]` entries.
pub fn serve(
    config: &Config,
    config_path: Option<&Path>,
    stop: Arc<AtomicBool>,
) -> Result<ServeReport, DaemonError> {
    let spool = Spool::new(&config.spool_dir);
    spool.create_dirs()?;
    let _lock = spool.lock()?;
    match spool.apply_pickup_permissions(config.pickup_group.as_deref(), config.pickup_mode.bits())
    {
        Ok(()) => {}
        // The directory cannot be changed (append-only or immutable, a
        // read-only bind mount, not ours): mail must still flow; say so.
        Err(e @ SpoolError::Io { .. }) => {
            tracing::warn!(target: "master", "{e}; pickup/ keeps its current owner group and mode");
        }
        Err(e) => return Err(e.into()),
    }
    let control = spool.bind_control()?;
    let admin_listener = spool.bind_admin()?;
    // Bound now, so an address in use stops the start before anything runs.
    let http_listener = match &config.http {
        Some(h) => Some(crate::admin::bind(h.listen)?),
        None => None,
    };

    // DKIM: a key that cannot be used stops the start (mail must not go
    // out unsigned when the configuration says to sign it).
    let keys = Arc::new(CurrentKeys::new(Signers::load(&config.dkim)?));
    if !config.dkim.is_empty() {
        tracing::info!(target: "master", "DKIM signing with {} keys: {:?}", config.dkim.len(), keys.get());
    }

    // Delivery events: a bad webhook URL or a damaged cursor stops the
    // start. `event_sink` is what every emitter gets (a disabled sink
    // without `[events]`): each shard (received at commit; delivered,
    // deferred, bounced, expired, suppressed by its queue manager), late
    // bounces and unsubscribes.
    let (events, event_sink) = events::start(config)?;

    let stale = crate::inject::maildrop::remove_stale_temp_files(
        &spool.maildrop(),
        Duration::from_secs(3600),
    );
    if stale > 0 {
        tracing::info!(target: "pickup", "removed {stale} stale temp files left in maildrop/ by interrupted sendmail runs");
    }

    // Files a killed run queued but did not unlink: recovery says which.
    let leftovers = Arc::new(crate::inject::leftovers::scan_leftovers(
        &spool.maildrop(),
        &spool.pickup(),
    ));

    let backend = rt::choose_backend(config.io_backend);
    let shard_count = config.shard_count();
    tracing::info!(
        target: "master",
        "daemon started -- version {}, io backend {}, {} shards, spool {}",
        env!("CARGO_PKG_VERSION"),
        backend.name(),
        shard_count,
        config.spool_dir.display()
    );

    // Campaigns: the token secret and the accepted campaigns' states.
    let campaign_key = crate::compose::TokenKey::new(&spool.load_or_create_campaign_key()?);
    let registry = crate::queue::campaign_state::CampaignRegistry::load(&spool.campaigns())
        .map_err(|e| {
            DaemonError::Spool(SpoolError::Io {
                op: "load campaigns",
                path: spool.campaigns(),
                source: std::io::Error::other(e.to_string()),
            })
        })?;
    let suppressions = match crate::queue::suppress::SuppressionList::open(&config.spool_dir) {
        Ok(list) => Some(crate::queue::suppress::SharedSuppressions::new(list)),
        Err(e) => {
            // Campaign mail is held rather than sent past a list that
            // cannot be read: every campaign recipient is deferred.
            tracing::error!(target: "master", "suppression list: {e}; campaign mail is deferred until it can be read");
            None
        }
    };
    for n in suppressions.iter().flat_map(|s| s.take_notices()) {
        tracing::warn!(target: "master", "suppression list: {n}");
    }
    let mailbox: Arc<dyn crate::inject::smtpd::LocalMail> =
        Arc::new(campaign_mail::CampaignMailbox::new(
            campaign_key.clone(),
            suppressions.clone(),
            spool.campaigns(),
            event_sink.clone(),
        ));
    let http_suppressions = suppressions.clone();
    let campaign_settings = crate::sched::campaigns::CampaignSettings {
        key: campaign_key.clone(),
        myhostname: config.myhostname.clone(),
        message_size_limit: config.message_size_limit,
        registry: Arc::clone(&registry),
        results_dir: spool.campaigns(),
        shard: 0,
        suppressions: suppressions.clone(),
        rates: Arc::new(crate::sched::campaigns::CampaignRates::default()),
        keys: Some(Arc::clone(&keys)),
    };
    let suppress_refresh = suppressions.map(|s| spawn_suppress_refresh(s, Arc::clone(&stop)));

    let ring = Arc::new(PickupRing::new(config.pickup_ring_size));
    let metrics = Arc::new(Metrics::new(DaemonInfo {
        io_backend: backend.name().to_string(),
        shards: shard_count,
        version: env!("CARGO_PKG_VERSION"),
    }));
    if let Some(e) = &events {
        metrics.set_events(e.stats());
    }
    let signing_threads = match config.dkim_signing_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let stage = Arc::new(SignStage::start(
        Arc::clone(&ring),
        Arc::clone(&keys),
        signing_threads,
    ));
    let key_reload = spawn_key_reload(
        config_path.map(Path::to_path_buf),
        config.dkim.clone(),
        Arc::clone(&keys),
        Arc::clone(&stage),
        Arc::clone(&stop),
    );
    // One shaper for every shard: a site's connection count, rates and
    // automation hold for the whole daemon.
    let shaper = Arc::new(crate::shape::Shaper::new(Arc::new(
        crate::shape::ShapingTable::from_config(config)?,
    )));
    let flushes = Arc::new(AtomicU64::new(0));
    let slots = crate::sched::slots::DestinationSlots::new();
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded::<Ack>();
    let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
    let shard_stop = Arc::new(AtomicBool::new(false));
    let mut shards: Vec<ShardHandle> = Vec::new();
    let mut release_txs = Vec::with_capacity(shard_count);
    let shard_mailboxes: Vec<Arc<crate::sched::mailbox::ShardMailbox>> = (0..shard_count)
        .map(|_| Arc::new(crate::sched::mailbox::ShardMailbox::new()))
        .collect();
    for (index, mailbox) in shard_mailboxes.iter().enumerate() {
        let (release_tx, released) = crossbeam_channel::unbounded::<Vec<QueueId>>();
        release_txs.push(release_tx);
        let mut ctx = ShardContext {
            index,
            shard_count,
            queue_root: spool.queue(),
            segment_size: config.segment_size,
            ring: Arc::clone(&ring),
            acks: ack_tx.clone(),
            stop: Arc::clone(&shard_stop),
            ready: ready_tx.clone(),
            qmgr: QmgrConfig {
                shard: index,
                campaigns: Some(crate::sched::campaigns::CampaignSettings {
                    shard: index,
                    ..campaign_settings.clone()
                }),
                metrics: Some(ShardCounters::new(Arc::clone(&metrics), index)),
                events: event_sink.clone(),
                shaper: Some(Arc::clone(&shaper)),
                ..QmgrConfig::from_config(
                    config,
                    shard_count,
                    DeliveryConfig::from_config(config, backend),
                )
            },
            router: Router::from_config(config)?,
            flush: Arc::clone(&flushes),
            slots: Arc::clone(&slots),
            leftovers: Arc::clone(&leftovers),
            released,
            mailbox: Arc::clone(mailbox),
        };
        // Bounce, delay and success notices are signed as other mail is.
        ctx.qmgr.notices.keys = Some(Arc::clone(&keys));
        shards.push(rt::spawn_pinned(index, move || {
            rt::block_on(backend, move |b| run_shard(ctx, b))
        })?);
    }
    drop(ack_tx);
    drop(ready_tx);

    // Start pickup only once every shard has recovered its queue.
    let mut start_error: Option<(usize, String)> = None;
    let mut reported = vec![false; shard_count];
    let mut already_queued = Vec::new();
    for _ in 0..shard_count {
        let failed = match ready_rx.recv() {
            Ok(Ok(report)) => {
                let shard = report.shard;
                if let Some(r) = reported.get_mut(shard) {
                    *r = true;
                }
                already_queued.extend(
                    report
                        .already_queued
                        .into_iter()
                        .map(|(file, id)| (file, QueuedAs { shard, id })),
                );
                continue;
            }
            Ok(Err((index, reason))) => {
                if let Some(r) = reported.get_mut(index) {
                    *r = true;
                }
                (index, reason)
            }
            Err(_) => {
                // Every shard thread ended; one of those that did not
                // report ended without a word (it panicked).
                let index = reported.iter().position(|r| !r).unwrap_or(0);
                let failed = (index, "the shard thread ended during start".to_string());
                start_error = Some(first_failure(start_error, failed));
                break;
            }
        };
        start_error = Some(first_failure(start_error, failed));
    }
    if let Some((index, reason)) = start_error {
        shard_stop.store(true, Ordering::Release);
        for h in shards {
            let _ = h.join();
        }
        return Err(DaemonError::ShardStart { index, reason });
    }

    let intake_closed = Arc::new(AtomicBool::new(false));
    let listeners = match smtpd::start(
        config,
        Arc::clone(&stage),
        Arc::clone(&intake_closed),
        Some(mailbox),
        Arc::clone(&metrics.tls),
    ) {
        Ok(l) => l,
        Err(e) => {
            shard_stop.store(true, Ordering::Release);
            for h in shards {
                let _ = h.join();
            }
            return Err(e.into());
        }
    };
    if let Some(l) = &listeners {
        for a in &l.addresses {
            tracing::info!(target: "smtpd", "listening on {a}");
        }
    }
    let control_thread = spawn_control(control, Arc::clone(&stop), Arc::clone(&flushes));
    let queue_admin =
        crate::sched::queue_admin::QueueAdmin::new(shard_mailboxes, Some(Arc::clone(&shaper)));
    let admin_thread = admin_socket::spawn(admin_listener, queue_admin.clone(), Arc::clone(&stop));

    let site = SiteParams {
        myhostname: config.myhostname.clone(),
        origin: config.origin().to_string(),
        message_size_limit: config.message_size_limit,
    };
    // `sendmail` through the running daemon (it falls back to maildrop/
    // when this socket is missing).
    let submit_server = match submit::start(
        &spool.submit_socket(),
        site.clone(),
        Arc::clone(&stage),
        Arc::clone(&intake_closed),
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(target: "master", "{}: cannot listen: {e}; sendmail writes maildrop/", spool.submit_socket().display());
            None
        }
    };
    let campaign_intake = Arc::new(campaign_intake::CampaignIntake::new(
        Arc::clone(&ring),
        Arc::clone(&intake_closed),
        Arc::clone(&registry),
    ));
    let campaign_server = match campaign::start(
        &spool.campaign_socket(),
        Arc::clone(&campaign_intake),
    ) {
        Ok(s) => {
            tracing::info!(target: "campaign", "accepting campaigns on {}", spool.campaign_socket().display());
            Some(s)
        }
        Err(e) => {
            tracing::warn!(target: "master", "{}: cannot listen: {e}; campaigns cannot be sent", spool.campaign_socket().display());
            None
        }
    };
    let http_server = match (http_listener, &config.http) {
        (Some(listener), Some(http)) => {
            let ctx = crate::admin::AdminContext {
                intake: Arc::clone(&campaign_intake),
                key: campaign_key,
                suppressions: http_suppressions,
                campaigns_dir: spool.campaigns(),
                metrics: Arc::clone(&metrics),
                queue: Some(queue_admin.clone()),
                queue_root: spool.queue(),
                events: event_sink.clone(),
                messages: crate::admin::MessageIntake {
                    ring: Arc::clone(&stage),
                    closed: Arc::clone(&intake_closed),
                    site: site.clone(),
                },
            };
            match crate::admin::start(listener, http, ctx) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(target: "master", "{e}; the HTTP server does not run");
                    None
                }
            }
        }
        _ => None,
    };
    let mut pickup = Pickup::new(
        PickupConfig {
            maildrop: spool.maildrop(),
            pickup: spool.pickup(),
            corrupt: spool.corrupt(),
            message_size_limit: config.message_size_limit,
            interval: Duration::from_millis(config.pickup_interval_ms),
            settle: Duration::from_millis(config.pickup_settle_ms),
            unlink_threads: config.pickup_unlink_threads,
        },
        Box::new(move |data, kind, uid, path| prepare(data, kind, uid, path, &site)),
    );
    pickup.set_already_queued(AlreadyQueued::new(already_queued));
    pickup.set_release(Box::new(move |shard, ids| {
        if let Some(tx) = release_txs.get(shard) {
            // A shard that has stopped keeps the segment; the next start
            // finds the file gone and lets it go.
            let _ = tx.send(ids);
        }
    }));
    // The shards have let go of theirs: this frees the set.
    drop(leftovers);
    let stage_for_pickup = Arc::clone(&stage);
    pickup.run(&mut |sub| stage_for_pickup.push(sub), &ack_rx, &stop);

    tracing::info!(target: "master", "terminating on signal: stopping intake, committing pending messages");
    // SMTP sessions answer what the shards are committing (the shards
    // still run), idle ones get 421; then no more offers.
    if let Some(l) = listeners {
        l.stop();
    }
    if let Some(s) = submit_server {
        s.stop();
    }
    if let Some(s) = campaign_server {
        s.stop();
    }
    if let Some(h) = http_server {
        h.stop();
    }
    // Whatever the signing threads hold goes to the ring before the shards
    // stop (each is still unacknowledged: at worst it is offered again).
    if !stage.drain(Duration::from_secs(5)) {
        tracing::warn!(target: "master", "DKIM signing threads still busy at stop; their messages were not acknowledged and will be offered again");
    }
    intake_closed.store(true, Ordering::Release);
    shard_stop.store(true, Ordering::Release);
    // Safety net: a shard stuck in a delivery (a peer that stopped talking,
    // a runtime that will not drop) must not keep the daemon from exiting.
    // Every acknowledged message is on disk by now; at worst a delivery in
    // progress is repeated after the restart.
    let finished = Arc::new(AtomicBool::new(false));
    {
        let finished = Arc::clone(&finished);
        std::thread::spawn(move || {
            std::thread::sleep(SHUTDOWN_WATCHDOG);
            if !finished.load(Ordering::Acquire) {
                tracing::warn!(target: "master", "shards did not stop within {} s; exiting anyway (queued mail is safe on disk)", SHUTDOWN_WATCHDOG.as_secs());
                crate::obs::flush();
                std::process::exit(0);
            }
        });
    }
    let mut report = ServeReport {
        shards: shard_count,
        ..ServeReport::default()
    };
    let mut first_error = None;
    for h in shards {
        match h.join() {
            Ok(Ok((used, Ok(n)))) => {
                report.queued += n;
                report.backend = Some(used);
            }
            Ok(Ok((_, Err(e)))) => first_error = first_error.or(Some(DaemonError::Shard(e))),
            Ok(Err(e)) => first_error = first_error.or(Some(DaemonError::Runtime(e))),
            Err(_) => tracing::error!(target: "master", "a shard thread panicked"),
        }
    }
    finished.store(true, Ordering::Release);
    // The shards are gone, so every acknowledgement is in the channel:
    // unlink the files committed since pickup stopped listening.
    report.pickup = pickup.finish(&ack_rx, PICKUP_FINISH_LIMIT);
    let _ = control_thread.join();
    let _ = admin_thread.join();
    let _ = key_reload.join();
    if let Some(t) = suppress_refresh {
        let _ = t.join();
    }
    let _ = std::fs::remove_file(spool.control_socket());
    let _ = std::fs::remove_file(spool.admin_socket());
    // Last: every emitter has stopped, so the file gets all their events.
    if let Some(e) = events {
        e.stop(Duration::from_secs(1));
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Of two shards that failed to start, the lower-numbered one: the one
/// reported.
fn first_failure(earlier: Option<(usize, String)>, now: (usize, String)) -> (usize, String) {
    match earlier {
        Some(e) if e.0 <= now.0 => e,
        _ => now,
    }
}

/// Reloads the suppression list's changes (by `ringmail suppress`, another
/// process) once a second, so a suppression added mid-campaign is honoured
/// from the next recipient on.
/// Reloads the DKIM keys on SIGHUP: the `[[dkim]]` entries of the
/// configuration file (re-read) and their key files. A reload that fails
/// keeps the keys in use and says why.
fn spawn_key_reload(
    config_path: Option<PathBuf>,
    started_with: Vec<DkimKeyConfig>,
    keys: Arc<CurrentKeys>,
    stage: Arc<SignStage>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let hup = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup)) {
        tracing::warn!(target: "master", "cannot handle SIGHUP ({e}): DKIM keys are not reloadable");
    }
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(200));
            if !hup.swap(false, Ordering::AcqRel) {
                continue;
            }
            let entries = match &config_path {
                Some(path) => match Config::load(Some(path)) {
                    Ok(loaded) => loaded.config.dkim,
                    Err(e) => {
                        tracing::error!(target: "master", "reload: {e}; DKIM keys unchanged");
                        continue;
                    }
                },
                None => started_with.clone(),
            };
            match Signers::load(&entries) {
                Ok(signers) => {
                    tracing::info!(target: "master", "reload: DKIM signing with {} keys: {signers:?}", entries.len());
                    keys.replace(signers);
                    stage.keys_changed();
                }
                Err(e) => {
                    tracing::error!(target: "master", "reload: {e}; DKIM keys unchanged");
                }
            }
        }
    })
}

fn spawn_suppress_refresh(
    list: crate::queue::suppress::SharedSuppressions,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(250));
            if let Err(e) = list.refresh() {
                tracing::warn!(target: "master", "suppression list: {e}");
            }
            for n in list.take_notices() {
                tracing::warn!(target: "master", "suppression list: {n}");
            }
        }
    })
}

/// Serves the control socket: `flush` asks for deferred mail to be retried now.
fn spawn_control(
    sock: UnixDatagram,
    stop: Arc<AtomicBool>,
    flushes: Arc<AtomicU64>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let _ = sock.set_nonblocking(false);
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf = [0u8; 256];
        while !stop.load(Ordering::Acquire) {
            let Ok(n) = sock.recv(&mut buf) else { continue };
            match &buf[..n] {
                b"flush" => {
                    flushes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(target: "qmgr", "flush requested: deferred mail will be retried now");
                }
                other => tracing::warn!(
                    target: "master",
                    "unknown control command {:?}",
                    String::from_utf8_lossy(other)
                ),
            }
        }
    })
}
