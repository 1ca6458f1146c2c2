//! `ringmail queue shape` (Postfix's `qshape`) and `ringmail queue show`
//! (`postcat -q`): read-only views of the queue files, with or without the
//! daemon running.

use std::io::Write;

use anyhow::Context;
use ringmail::config::Config;
use ringmail::model::QueueId;
use ringmail::queue::listing::{show_message, ShownMessage};
use ringmail::queue::shape::{self, ShapeBy};
use ringmail::queue::{list_queue, QueueError};
use ringmail::spool::Spool;

use super::mailq::PermissionDenied;

fn denied(e: QueueError) -> anyhow::Error {
    match e {
        QueueError::Io { path, source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            PermissionDenied { path }.into()
        }
        e => e.into(),
    }
}

/// Prints the queue's shape: live recipients by domain and age.
pub fn print_shape(
    config: &Config,
    by_sender: bool,
    top: usize,
    buckets: usize,
    json: bool,
) -> anyhow::Result<()> {
    let messages = list_queue(&Spool::new(&config.spool_dir).queue()).map_err(denied)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let by = if by_sender {
        ShapeBy::Sender
    } else {
        ShapeBy::Recipient
    };
    let s = shape::shape(&messages, by, now, buckets, top);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &s)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", shape::render(&s))?;
    }
    Ok(())
}

/// What `queue show` prints.
#[derive(Clone, Copy, Debug)]
pub struct ShowParts {
    /// The envelope: sender, recipients with their states, arrival.
    pub envelope: bool,
    /// The header section.
    pub header: bool,
    /// The body.
    pub body: bool,
}

/// Prints one queued message, as `postcat -q` does. Exit 1 (an error) when
/// no queue file holds it.
pub fn print_message(config: &Config, id: &str, parts: ShowParts) -> anyhow::Result<()> {
    let qid: QueueId = id
        .parse()
        .map_err(|_| anyhow::anyhow!("{id}: not a queue ID (12 hexadecimal digits)"))?;
    let shown = show_message(&Spool::new(&config.spool_dir).queue(), qid)
        .map_err(denied)?
        .with_context(|| format!("{id}: no such message in the queue"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&render_message(&shown, parts))?;
    Ok(())
}

fn render_message(m: &ShownMessage, parts: ShowParts) -> Vec<u8> {
    let id = &m.listed.queue_id;
    let mut out = Vec::new();
    if parts.envelope {
        let arrival = chrono::DateTime::from_timestamp(m.listed.arrival_time as i64, 0)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%a %b %e %H:%M:%S %Y")
                    .to_string()
            })
            .unwrap_or_default();
        out.extend_from_slice(format!("*** ENVELOPE RECORDS {id} ***\n").as_bytes());
        out.extend_from_slice(format!("message_size: {:>16}\n", m.listed.size).as_bytes());
        out.extend_from_slice(format!("message_arrival_time: {arrival}\n").as_bytes());
        out.extend_from_slice(format!("uid: {}\n", m.uid).as_bytes());
        if !m.flags.is_empty() {
            out.extend_from_slice(format!("needs: {}\n", m.flags.join(" ")).as_bytes());
        }
        if let Some(f) = &m.listed.source_file {
            out.extend_from_slice(format!("source_file: {f}\n").as_bytes());
        }
        if let Some(c) = &m.listed.campaign {
            out.extend_from_slice(
                format!(
                    "campaign: {} (recipients from index {})\n",
                    c.id, c.first_index
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(format!("sender: {}\n", m.listed.sender).as_bytes());
        for r in &m.listed.recipients {
            let reason = r
                .reason
                .as_deref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default();
            out.extend_from_slice(
                format!("recipient: {} [{}]{reason}\n", r.address, r.status).as_bytes(),
            );
        }
    }
    let split = m
        .content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(m.content.len(), |p| p + 2);
    let (header, body) = m.content.split_at(split);
    if parts.header {
        out.extend_from_slice(format!("*** MESSAGE CONTENTS {id} ***\n").as_bytes());
        if m.listed.campaign.is_some() {
            out.extend_from_slice(b"(a campaign slice: each recipient's message is rendered at delivery; see ringmail campaign show)\n");
        }
        out.extend_from_slice(&crlf_to_lf(header));
    }
    if parts.body {
        // The empty line between header and body goes with the body only
        // when the header is shown too.
        let body = if parts.header {
            body
        } else {
            out.extend_from_slice(format!("*** MESSAGE CONTENTS {id} ***\n").as_bytes());
            body.strip_prefix(b"\r\n").unwrap_or(body)
        };
        out.extend_from_slice(&crlf_to_lf(body));
    }
    out.extend_from_slice(format!("*** MESSAGE FILE END {id} ***\n").as_bytes());
    out
}

fn crlf_to_lf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}
