//! The daemon's side of `spool_dir/campaign.sock` (protocol in
//! [`crate::inject::campaign`]): reads the request line and the template,
//! hands them and the rest of the stream (the list) to
//! [`CampaignIntake`], and writes its answer. Only the daemon's own user
//! and root may submit (the socket is 0600 and the peer's uid is checked
//! with SO_PEERCRED).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::inject::campaign::{CampaignRequest, MAX_REQUEST_LINE, MAX_TEMPLATE};

use super::campaign_intake::{CampaignIntake, Refusal};
use super::unix_server::{ServerSpec, UnixServer};

/// Campaigns accepted at once.
const MAX_CONNECTIONS: usize = 4;

/// How long the daemon waits for more of a list.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Listens on `path` (mode 0600).
pub(super) fn start(path: &Path, intake: Arc<CampaignIntake>) -> std::io::Result<UnixServer> {
    let own_uid = rustix::process::geteuid().as_raw();
    UnixServer::start(
        path,
        ServerSpec {
            mode: 0o600,
            name: "campaign",
            max_connections: MAX_CONNECTIONS,
            busy: b"TEMP too many campaigns being accepted at once\n",
        },
        Arc::new(move |conn: &mut UnixStream| serve(conn, &intake, own_uid)),
    )
}

/// The answer line of a refusal.
fn refusal_line(r: &Refusal) -> String {
    let word = if r.is_transient() { "TEMP" } else { "FAIL" };
    format!("{word} {}\n", one_line(&r.to_string()))
}

/// Handles one connection; the answer to write.
fn serve(conn: &mut UnixStream, intake: &CampaignIntake, own_uid: u32) -> String {
    let uid = match rustix::net::sockopt::socket_peercred(&*conn) {
        Ok(cred) => cred.uid.as_raw(),
        Err(e) => return format!("TEMP cannot tell who is submitting: {e}\n"),
    };
    if uid != 0 && uid != own_uid {
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
        return match intake.control(op, id) {
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
    let accepted = match intake.accept(&req, template, input) {
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
