//! The daemon's side of `spool_dir/campaign.sock` (protocol in
//! [`crate::inject::campaign`]): reads the request line and the template,
//! hands them and the rest of the stream (the list) to
//! [`CampaignIntake`], and writes its answer. Only the daemon's own user
//! and root may submit (the socket is 0600 and the peer's uid is checked
//! with SO_PEERCRED).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::inject::campaign::{CampaignRequest, MAX_REQUEST_LINE, MAX_TEMPLATE};

use super::campaign_intake::{CampaignIntake, Refusal};

/// Campaigns accepted at once.
const MAX_CONNECTIONS: usize = 4;

/// How long the daemon waits for more of a list.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The running acceptance server.
pub(super) struct CampaignServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CampaignServer {
    /// Stops accepting campaigns and removes the socket.
    pub(super) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Shared {
    intake: Arc<CampaignIntake>,
    open: AtomicUsize,
    own_uid: u32,
}

/// Listens on `path`.
pub(super) fn start(path: &Path, intake: Arc<CampaignIntake>) -> std::io::Result<CampaignServer> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let shared = Arc::new(Shared {
        intake,
        open: AtomicUsize::new(0),
        own_uid: rustix::process::geteuid().as_raw(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("campaign".into())
            .spawn(move || accept_loop(listener, shared, stop))?
    };
    Ok(CampaignServer {
        path: path.to_path_buf(),
        stop,
        thread: Some(thread),
    })
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let Ok(mut conn) = conn else { continue };
        if shared.open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            shared.open.fetch_sub(1, Ordering::AcqRel);
            let _ = conn.write_all(b"TEMP too many campaigns being accepted at once\n");
            continue;
        }
        let s = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("campaign-conn".into())
            .spawn(move || {
                let answer = serve(&mut conn, &s);
                let _ = conn.write_all(answer.as_bytes());
                s.open.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            shared.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The answer line of a refusal.
fn refusal_line(r: &Refusal) -> String {
    let word = if r.is_transient() { "TEMP" } else { "FAIL" };
    format!("{word} {}\n", one_line(&r.to_string()))
}

/// Handles one connection; the answer to write.
fn serve(conn: &mut UnixStream, shared: &Shared) -> String {
    let uid = match rustix::net::sockopt::socket_peercred(&*conn) {
        Ok(cred) => cred.uid.as_raw(),
        Err(e) => return format!("TEMP cannot tell who is submitting: {e}\n"),
    };
    if uid != 0 && uid != shared.own_uid {
        tracing::warn!(target: "campaign", "campaign refused from uid {uid}: only root and the daemon's user may send campaigns");
        return "FAIL only root and the daemon's user may send campaigns\n".into();
    }
    let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
    let mut input = BufReader::new(&*conn);
    let mut line = Vec::new();
    match (&mut input)
        .take(MAX_REQUEST_LINE as u64)
        .read_until(b'\n', &mut line)
    {
        Ok(_) if line.ends_with(b"\n") => {}
        Ok(_) => return "FAIL no request line\n".into(),
        Err(e) => return format!("TEMP reading the request: {e}\n"),
    }
    let req: CampaignRequest = match serde_json::from_slice(&line) {
        Ok(r) => r,
        Err(e) => return format!("FAIL bad request line: {}\n", one_line(&e.to_string())),
    };
    if req.v != 1 {
        return format!("FAIL protocol version {} not supported (1 is)\n", req.v);
    }
    if let Some(op) = req.op.as_deref().filter(|op| *op != "send") {
        let Some(id) = req.id else {
            return format!("FAIL {op} needs a campaign ID\n");
        };
        return match shared.intake.control(op, id) {
            Ok((before, now)) => format!("OK {id} was={} now={}\n", before.as_str(), now.as_str()),
            Err(r) => refusal_line(&r),
        };
    }
    if req.template_len > MAX_TEMPLATE {
        return format!("FAIL template larger than {MAX_TEMPLATE} bytes\n");
    }
    let mut template = vec![0u8; req.template_len];
    if let Err(e) = input.read_exact(&mut template) {
        return format!("TEMP reading the template: {e}\n");
    }
    let accepted = match shared.intake.accept(&req, template, input) {
        Ok(a) => a,
        Err(r) => return refusal_line(&r),
    };
    let info = accepted.info;
    let mut out = String::new();
    for r in accepted.refused_rows {
        out.push_str(&format!(
            "ROW {} {} {}\n",
            r.line,
            r.email
                .as_deref()
                .map(one_word)
                .unwrap_or_else(|| "-".into()),
            one_line(&r.reason)
        ));
    }
    out.push_str(&format!(
        "OK {} recipients={} refused={} duplicates={} slices={}\n",
        info.id, info.recipients, info.refused, info.duplicates, info.slices
    ));
    out
}

/// `text` on one line.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// `text` as one word (for an address in a ROW line).
fn one_word(text: &str) -> String {
    text.replace(|c: char| c.is_whitespace(), "_")
}
