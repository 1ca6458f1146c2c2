//! The daemon's side of `spool_dir/campaign.sock` (protocol in
//! [`crate::inject::campaign`]): the template is compiled (refused at once
//! if it does not), the list is read as it arrives and cut into slices of
//! [`SLICE_RECIPIENTS`] that go through the pickup ring like any message,
//! and once every slice is committed the campaign's state file is written
//! (the seal) and the client is told. Slices of a campaign that is never
//! sealed are never sent (the queue manager drops them).
//!
//! Only the daemon's own user and root may submit (the socket is 0600 and
//! the peer's uid is checked with SO_PEERCRED).

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::compose::recipients::{ListFormat, RowError};
use crate::compose::{CampaignTemplate, RecipientReader, TemplateOptions};
use crate::inject::campaign::{CampaignRequest, MAX_REQUEST_LINE, MAX_TEMPLATE};
use crate::model::{
    now_micros, AckSender, CampaignSlice, CampaignSpec, Envelope, MessageFlags, SliceRow, Source,
    Submission, SLICE_RECIPIENTS,
};
use crate::queue::campaign_state::{CampaignInfo, CampaignRegistry, CampaignState};
use crate::sched::PickupRing;

/// Campaigns accepted at once.
const MAX_CONNECTIONS: usize = 4;

/// Slices offered and not yet acknowledged, per campaign: bounds the
/// memory a large list takes while it is accepted.
const MAX_IN_FLIGHT: usize = 64;

/// Refused rows reported back in detail (all are counted).
const MAX_REPORTED_ROWS: usize = 100;

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
    ring: Arc<PickupRing>,
    closed: Arc<AtomicBool>,
    registry: Arc<CampaignRegistry>,
    open: AtomicUsize,
    last_id: AtomicU64,
    next_ack: AtomicU64,
    own_uid: u32,
}

/// Listens on `path`.
pub(super) fn start(
    path: &Path,
    ring: Arc<PickupRing>,
    closed: Arc<AtomicBool>,
    registry: Arc<CampaignRegistry>,
) -> std::io::Result<CampaignServer> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let last = registry.list().iter().map(|c| c.id).max().unwrap_or(0);
    let shared = Arc::new(Shared {
        ring,
        closed,
        registry,
        open: AtomicUsize::new(0),
        last_id: AtomicU64::new(last),
        next_ack: AtomicU64::new(0),
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
                let answer = accept(&mut conn, &s);
                let _ = conn.write_all(answer.as_bytes());
                s.open.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            shared.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A unique campaign ID: the time in microseconds, above every earlier ID.
fn new_id(shared: &Shared) -> u64 {
    let now = now_micros();
    let mut last = shared.last_id.load(Ordering::Acquire);
    loop {
        let id = now.max(last + 1);
        match shared
            .last_id
            .compare_exchange(last, id, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return id,
            Err(seen) => last = seen,
        }
    }
}

/// Handles one submission; the answer to write.
fn accept(conn: &mut UnixStream, shared: &Shared) -> String {
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
        return control(shared, op, req.id);
    }
    if req.template_len > MAX_TEMPLATE {
        return format!("FAIL template larger than {MAX_TEMPLATE} bytes\n");
    }
    let format = match req.format.as_str() {
        "csv" => ListFormat::Csv,
        "jsonl" => ListFormat::JsonLines,
        other => return format!("FAIL unknown list format {other:?} (csv or jsonl)\n"),
    };
    let mut template = vec![0u8; req.template_len];
    if let Err(e) = input.read_exact(&mut template) {
        return format!("TEMP reading the template: {e}\n");
    }
    let id = new_id(shared);
    let opts = TemplateOptions {
        campaign: id,
        from: req.from.clone(),
        bounce_domain: req.bounce_domain.clone(),
        unsubscribe_base: req.unsubscribe.clone(),
    };
    let compiled = match CampaignTemplate::compile(&template, &opts) {
        Ok(t) => t,
        Err(e) => return format!("FAIL {}\n", one_line(&e.to_string())),
    };
    let mut list = match RecipientReader::new(input, format) {
        Ok(l) => l,
        Err(e) => return format!("FAIL {}\n", one_line(&e.to_string())),
    };
    let mut info = CampaignInfo {
        id,
        name: req.name.clone(),
        created_micros: now_micros(),
        state: CampaignState::Accepting,
        recipients: 0,
        refused: 0,
        duplicates: 0,
        slices: 0,
    };
    shared.registry.begin(info.clone());
    let mut intake = Intake {
        shared,
        spec: None,
        req: &req,
        template: Some(template),
        id,
        pending: Vec::new(),
        in_flight: 0,
        acks: tokio::sync::mpsc::unbounded_channel(),
        failed: None,
    };
    let result = read_list(&compiled, &mut list, &mut intake, &mut info);
    let result = result.and_then(|refused_rows| {
        intake.flush_slice(&mut info)?;
        intake.wait_all()?;
        Ok(refused_rows)
    });
    let refused_rows = match result {
        Ok(rows) => rows,
        Err(answer) => {
            shared.registry.abandon(id);
            // Slices already committed are dropped by the queue manager
            // (their campaign is not in the registry).
            tracing::warn!(target: "campaign", "campaign {id} not accepted: {}", answer.trim_end());
            return answer;
        }
    };
    if info.recipients == 0 {
        shared.registry.abandon(id);
        return "FAIL the list has no recipient that can be sent to\n".into();
    }
    if let Err(e) = shared.registry.seal(info.clone()) {
        shared.registry.abandon(id);
        tracing::error!(target: "campaign", "campaign {id}: cannot write its state file: {e}");
        return format!(
            "TEMP cannot record the campaign: {}\n",
            one_line(&e.to_string())
        );
    }
    crate::info_line!(
        target: "campaign",
        "campaign {id} accepted: name={}, recipients={}, refused={}, duplicates={}, slices={}",
        info.name,
        info.recipients,
        info.refused,
        info.duplicates,
        info.slices
    );
    let mut out = String::new();
    for r in refused_rows {
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
        "OK {id} recipients={} refused={} duplicates={} slices={}\n",
        info.recipients, info.refused, info.duplicates, info.slices
    ));
    out
}

/// Pauses, resumes or cancels a campaign: durable (its state file) and
/// seen by every shard within a second.
fn control(shared: &Shared, op: &str, id: Option<u64>) -> String {
    let Some(id) = id else {
        return format!("FAIL {op} needs a campaign ID\n");
    };
    let state = match op {
        "pause" => CampaignState::Paused,
        "resume" => CampaignState::Running,
        "cancel" => CampaignState::Cancelled,
        other => return format!("FAIL unknown operation {other:?}\n"),
    };
    match shared.registry.set_state(id, state) {
        Ok(Some(before)) => {
            let now = shared.registry.state(id).unwrap_or(before);
            if now != before {
                crate::info_line!(target: "campaign", "campaign {id}: {} (was {})", now.as_str(), before.as_str());
            }
            format!("OK {id} was={} now={}\n", before.as_str(), now.as_str())
        }
        Ok(None) => format!("FAIL no campaign {id}\n"),
        Err(e) => format!("TEMP {}\n", one_line(&e.to_string())),
    }
}

/// The slices being offered for one campaign.
struct Intake<'a> {
    shared: &'a Shared,
    spec: Option<Arc<CampaignSpec>>,
    req: &'a CampaignRequest,
    template: Option<Vec<u8>>,
    id: u64,
    pending: Vec<SliceRow>,
    in_flight: usize,
    acks: (
        tokio::sync::mpsc::UnboundedSender<crate::model::Ack>,
        tokio::sync::mpsc::UnboundedReceiver<crate::model::Ack>,
    ),
    failed: Option<String>,
}

impl Intake<'_> {
    /// The campaign's spec, made with the columns of the first row.
    fn spec(&mut self, columns: &[String]) -> Arc<CampaignSpec> {
        if let Some(s) = &self.spec {
            return Arc::clone(s);
        }
        let spec = Arc::new(CampaignSpec {
            id: self.id,
            created_micros: now_micros(),
            from: self.req.from.clone().unwrap_or_default(),
            bounce_domain: self.req.bounce_domain.clone().unwrap_or_default(),
            unsubscribe_base: self.req.unsubscribe.clone().unwrap_or_default(),
            columns: columns.to_vec(),
            template: self.template.take().unwrap_or_default(),
        });
        self.spec = Some(Arc::clone(&spec));
        spec
    }

    /// Offers the rows gathered so far as one slice.
    fn flush_slice(&mut self, info: &mut CampaignInfo) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(spec) = self.spec.clone() else {
            return Ok(());
        };
        let rows = std::mem::take(&mut self.pending);
        let first_index = (info.recipients - rows.len() as u64) as u32;
        let mut sub = Box::new(Submission {
            envelope: Envelope::default(),
            wire: Vec::new(),
            flags: MessageFlags::default(),
            dsn: Default::default(),
            message_id: String::new(),
            arrival_micros: now_micros(),
            uid: 0,
            source: Source::Reply {
                id: self.shared.next_ack.fetch_add(1, Ordering::Relaxed),
                to: AckSender(self.acks.0.clone()),
            },
            file_identity: None,
            campaign: Some(Box::new(CampaignSlice {
                spec,
                first_index,
                rows,
            })),
        });
        while self.in_flight >= MAX_IN_FLIGHT {
            self.wait_one()?;
        }
        loop {
            if self.shared.closed.load(Ordering::Acquire) {
                return Err("TEMP the daemon is stopping\n".into());
            }
            match self.shared.ring.push(sub) {
                Ok(()) => break,
                Err(back) => {
                    sub = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        self.in_flight += 1;
        info.slices += 1;
        Ok(())
    }

    /// Waits for one slice's commit.
    fn wait_one(&mut self) -> Result<(), String> {
        match self.acks.1.blocking_recv() {
            Some(ack) => {
                self.in_flight -= 1;
                if let Err(e) = ack.result {
                    self.failed.get_or_insert(e.to_string());
                }
            }
            None => return Err("TEMP the daemon stopped before the commit\n".into()),
        }
        match &self.failed {
            Some(e) => Err(format!("TEMP queueing the campaign: {}\n", one_line(e))),
            None => Ok(()),
        }
    }

    /// Waits for every slice offered.
    fn wait_all(&mut self) -> Result<(), String> {
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        Ok(())
    }
}

/// Reads the whole list into slices; the first refused rows.
fn read_list<R: Read>(
    template: &CampaignTemplate,
    list: &mut RecipientReader<R>,
    intake: &mut Intake<'_>,
    info: &mut CampaignInfo,
) -> Result<Vec<RowError>, String> {
    let mut refused = Vec::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let hasher = std::collections::hash_map::RandomState::new();
    let mut columns: Option<Vec<String>> = None;
    loop {
        let row = match list.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => return Err(format!("FAIL {}\n", one_line(&e.to_string()))),
        };
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                info.refused += 1;
                if refused.len() < MAX_REPORTED_ROWS {
                    refused.push(e);
                }
                continue;
            }
        };
        let names: Vec<String> = row.fields.iter().map(|(k, _)| k.clone()).collect();
        if columns.is_none() {
            template
                .check_columns(&names)
                .map_err(|e| format!("FAIL {}\n", one_line(&e.to_string())))?;
        }
        let cols = columns.get_or_insert_with(|| names.clone());
        if *cols != names {
            // JSON Lines: every object must have the first one's keys.
            info.refused += 1;
            if refused.len() < MAX_REPORTED_ROWS {
                refused.push(RowError {
                    line: row.line,
                    email: Some(row.email.clone()),
                    reason: format!(
                        "its fields ({}) differ from the first row's ({})",
                        names.join(", "),
                        cols.join(", ")
                    ),
                });
            }
            continue;
        }
        if !seen.insert(hasher.hash_one(row.email.to_ascii_lowercase())) {
            info.duplicates += 1;
            continue;
        }
        intake.spec(cols);
        intake.pending.push(SliceRow {
            email: row.email,
            values: row.fields.into_iter().map(|(_, v)| v).collect(),
        });
        info.recipients += 1;
        if info.recipients > u32::MAX as u64 {
            return Err("FAIL more than 4,294,967,295 recipients\n".into());
        }
        if intake.pending.len() >= SLICE_RECIPIENTS {
            intake.flush_slice(info)?;
        }
    }
    Ok(refused)
}

/// `text` on one line.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// `text` as one word (for an address in a ROW line).
fn one_word(text: &str) -> String {
    text.replace(|c: char| c.is_whitespace(), "_")
}
