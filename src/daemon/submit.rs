//! The daemon's side of `sendmail` through `spool_dir/submit.sock` (the
//! protocol is in [`crate::inject::submit`]): a thread accepts, a connection
//! thread (at most [`MAX_CONNECTIONS`] at once, kept between connections)
//! reads the maildrop-format
//! message, runs the same cleanup as pickup with the peer's uid from
//! SO_PEERCRED, offers it to the pickup ring and answers `OK QUEUEID` once
//! the shard's group commit holds it.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cleanup::intake::{prepare, SiteParams};
use crate::inject::SpoolKind;
use crate::model::{AckSender, Source};
use crate::sign::SignStage;

use super::unix_server::{ServerSpec, UnixServer};

/// Most submissions served at once; more are told `BUSY` (they write
/// `maildrop/` instead).
pub const MAX_CONNECTIONS: usize = 64;

/// How long a submitter may take to send its message.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Room for the maildrop envelope lines beyond the message itself.
const ENVELOPE_SLACK: u64 = 1 << 20;

/// Listens on `path` (mode 0666: any local user may submit, as with
/// `maildrop/`; the uid comes from SO_PEERCRED).
pub(super) fn start(
    path: &Path,
    site: SiteParams,
    ring: Arc<SignStage>,
    closed: Arc<AtomicBool>,
) -> std::io::Result<UnixServer> {
    let shared = Arc::new(Shared {
        site,
        ring,
        closed,
        path: path.to_path_buf(),
        next_id: AtomicU64::new(0),
    });
    UnixServer::start(
        path,
        ServerSpec {
            mode: 0o666,
            name: "submit",
            max_connections: MAX_CONNECTIONS,
            busy: b"BUSY\n",
        },
        Arc::new(move |conn: &mut UnixStream| handle(conn, &shared)),
    )
}

struct Shared {
    site: SiteParams,
    ring: Arc<SignStage>,
    closed: Arc<AtomicBool>,
    path: PathBuf,
    next_id: AtomicU64,
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
