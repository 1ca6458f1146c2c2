//! The daemon's side of `sendmail` through `spool_dir/submit.sock` (the
//! protocol is in [`crate::inject::submit`]): a thread accepts, a thread per
//! connection (at most [`MAX_CONNECTIONS`]) reads the maildrop-format
//! message, runs the same cleanup as pickup with the peer's uid from
//! SO_PEERCRED, offers it to the pickup ring and answers `OK QUEUEID` once
//! the shard's group commit holds it.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cleanup::intake::{prepare, SiteParams};
use crate::inject::SpoolKind;
use crate::model::{AckSender, Source};
use crate::sched::PickupRing;

/// Most submissions served at once; more are told `BUSY` (they write
/// `maildrop/` instead).
pub const MAX_CONNECTIONS: usize = 64;

/// How long a submitter may take to send its message.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Room for the maildrop envelope lines beyond the message itself.
const ENVELOPE_SLACK: u64 = 1 << 20;

/// The running submit socket.
pub(super) struct SubmitServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SubmitServer {
    /// Stops accepting (submissions in progress still get their answer).
    pub(super) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` (replacing a stale socket; mode 0666: every local user may
/// submit, as every local user may write `maildrop/`) and serves it.
pub(super) fn start(
    path: &Path,
    site: SiteParams,
    ring: Arc<PickupRing>,
    closed: Arc<AtomicBool>,
) -> std::io::Result<SubmitServer> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        site,
        ring,
        closed,
        path: path.to_path_buf(),
        open: AtomicUsize::new(0),
        next_id: AtomicU64::new(0),
    });
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("submit".into())
            .spawn(move || accept_loop(listener, shared, stop))?
    };
    Ok(SubmitServer {
        path: path.to_path_buf(),
        stop,
        thread: Some(thread),
    })
}

struct Shared {
    site: SiteParams,
    ring: Arc<PickupRing>,
    closed: Arc<AtomicBool>,
    path: PathBuf,
    open: AtomicUsize,
    next_id: AtomicU64,
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let Ok(mut conn) = conn else { continue };
        if shared.open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            shared.open.fetch_sub(1, Ordering::AcqRel);
            let _ = conn.write_all(b"BUSY\n");
            continue;
        }
        let s = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("submit-conn".into())
            .spawn(move || {
                serve(&mut conn, &s);
                s.open.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            shared.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One submission: read, clean up, offer, wait for the commit, answer.
fn serve(conn: &mut UnixStream, shared: &Shared) {
    let answer = handle(conn, shared);
    let _ = conn.write_all(answer.as_bytes());
}

fn handle(conn: &mut UnixStream, shared: &Shared) -> String {
    let uid = match rustix::net::sockopt::socket_peercred(&*conn) {
        Ok(cred) => cred.uid.as_raw(),
        Err(e) => return format!("TEMP cannot tell who is submitting: {e}\n"),
    };
    let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
    let limit = shared
        .site
        .message_size_limit
        .saturating_add(ENVELOPE_SLACK);
    let mut data = Vec::new();
    if let Err(e) = conn.take(limit + 1).read_to_end(&mut data) {
        return format!("TEMP reading the message: {e}\n");
    }
    if data.len() as u64 > limit {
        return format!(
            "FAIL message too large: limit {}\n",
            shared.site.message_size_limit
        );
    }
    if shared.closed.load(Ordering::Acquire) {
        return "BUSY\n".into();
    }
    let mut sub = match prepare(&data, SpoolKind::Maildrop, uid, &shared.path, &shared.site) {
        Ok(sub) => Box::new(sub),
        Err(e) => return format!("FAIL {}\n", one_line(&e)),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    sub.source = Source::Reply {
        id,
        to: AckSender(tx),
    };
    let sender = sub.envelope.sender.clone();
    loop {
        if shared.closed.load(Ordering::Acquire) {
            return "BUSY\n".into();
        }
        match shared.ring.push(sub) {
            Ok(()) => break,
            Err(back) => {
                sub = back;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    // Every submission in the ring is acked, also when the shards stop.
    match rx.blocking_recv() {
        Some(ack) => match ack.result {
            Ok(queue_id) => {
                crate::info_line!(target: "pickup", "{queue_id}: uid={uid} from=<{sender}>");
                format!("OK {queue_id}\n")
            }
            Err(e) if e.is_transient() => format!("TEMP {}\n", one_line(&e.to_string())),
            Err(e) => format!("FAIL {}\n", one_line(&e.to_string())),
        },
        None => "TEMP the daemon stopped before the commit\n".into(),
    }
}

/// `text` on one line.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}
