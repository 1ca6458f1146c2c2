//! The admin socket (`spool_dir/admin.sock`, mode 0600: root and the
//! daemon's user only): `ringmail queue hold|release|delete|requeue|bounce`
//! send one JSON [`QueueCommand`] line and read one JSON line back,
//! `{"report": ...}` or `{"error": "..."}`; `ringmail queue sites` sends
//! `{"query": "sites"}` and reads `{"sites": [...]}`. Commands are rare and each is
//! answered after the shards committed it, so one thread serves them in
//! turn.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::queue_command::{QueueCommand, QueueCommandReport};
use crate::model::site_status::SiteStatus;
use crate::sched::queue_admin::QueueAdmin;

/// Longest request line taken.
const MAX_REQUEST: u64 = 1 << 20;

/// The answer line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminAnswer {
    /// What the command did.
    Report(QueueCommandReport),
    /// The shaping sites' state (`{"query": "sites"}`).
    Sites(Vec<SiteStatus>),
    /// Why it was not done.
    Error(String),
}

/// A question that changes nothing, sent as `{"query": "..."}` instead of
/// a command.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdminQuery {
    /// `sites`.
    pub query: String,
}

/// The answer to `line`: a query, or a command carried out.
fn answer(line: &str, admin: &QueueAdmin) -> AdminAnswer {
    if let Ok(q) = serde_json::from_str::<AdminQuery>(line) {
        return match q.query.as_str() {
            "sites" => match admin.sites() {
                Ok(sites) => AdminAnswer::Sites(sites),
                Err(e) => AdminAnswer::Error(e.to_string()),
            },
            other => AdminAnswer::Error(format!("bad request: no query {other:?} (sites)")),
        };
    }
    match serde_json::from_str::<QueueCommand>(line) {
        Ok(command) => match admin.execute(command) {
            Ok(report) => AdminAnswer::Report(report),
            Err(e) => AdminAnswer::Error(e.to_string()),
        },
        Err(e) => AdminAnswer::Error(format!("bad request: {e}")),
    }
}

/// Serves `listener` until `stop` is set.
pub fn spawn(listener: UnixListener, admin: QueueAdmin, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let _ = listener.set_nonblocking(true);
        while !stop.load(Ordering::Acquire) {
            match listener.accept() {
                Ok((stream, _)) => serve_one(stream, &admin),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    tracing::warn!(target: "master", "admin socket: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    })
}

/// Reads one command from `stream`, carries it out, writes the answer.
fn serve_one(stream: UnixStream, admin: &QueueAdmin) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let read = BufReader::new(std::io::Read::take(&stream, MAX_REQUEST)).read_line(&mut line);
    let answer = match read {
        Ok(_) => answer(&line, admin),
        Err(e) => AdminAnswer::Error(format!("cannot read the request: {e}")),
    };
    let mut out = match serde_json::to_string(&answer) {
        Ok(s) => s,
        Err(e) => format!("{{\"error\":\"cannot encode the answer: {e}\"}}"),
    };
    out.push('\n');
    let mut stream = stream;
    // The asker may be gone: nothing to do about it.
    let _ = stream.write_all(out.as_bytes());
}
