//! Reading every shard's queue read-only, for `ringmail queue list` and
//! `mailq`. Works whether or not the daemon runs: segment files are mapped
//! read-only and only records with a valid checksum are shown, so a record
//! being written at that moment is simply not listed yet.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use serde::Serialize;

use crate::model::{QueueId, RcptStatus};

use super::record::{self, Kind};
use super::recovery::Records;
use super::segment;
use super::QueueError;

/// One recipient in a listing.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct QueuedRecipient {
    /// The address.
    pub address: String,
    /// `pending`, `deferred`, `held`, `sent`, `bounced` or `dropped`.
    pub status: &'static str,
    /// The last deferral reason of a deferred or held recipient, if any.
    pub reason: Option<String>,
}

/// One message in a listing.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Queue ID, 12 hex digits.
    pub queue_id: String,
    /// Arrival time, seconds since the epoch.
    pub arrival_time: u64,
    /// Envelope sender ("" for `<>`).
    pub sender: String,
    /// Size of the queued wire form in bytes.
    pub size: u64,
    /// The Message-ID.
    pub message_id: String,
    /// Every recipient with its status.
    pub recipients: Vec<QueuedRecipient>,
    /// The spool file the message was read from (`pickup/NAME` or
    /// `maildrop/NAME`, invalid UTF-8 replaced), if it came from one.
    pub source_file: Option<String>,
    /// For a campaign slice: the campaign and the index of its first
    /// recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<SliceOf>,
}

/// The campaign a listed slice belongs to.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct SliceOf {
    /// The campaign ID.
    pub id: u64,
    /// Index of the slice's first recipient in the campaign.
    pub first_index: u32,
}

/// Every record with a valid checksum in every shard's segments under
/// `queue_root`, oldest segment first per shard, given to `each` as
/// (kind, payload, status bytes).
fn for_each_record(
    queue_root: &Path,
    mut each: impl FnMut(Kind, &[u8], &[u8]),
) -> Result<(), QueueError> {
    let dirs = match std::fs::read_dir(queue_root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(QueueError::io("readdir", queue_root, e)),
    };
    let mut ids = Vec::new();
    for d in dirs {
        let d = d.map_err(|e| QueueError::io("readdir", queue_root, e))?;
        if d.file_name()
            .to_str()
            .is_some_and(|n| n.parse::<usize>().is_ok())
        {
            ids.push(d.path());
        }
    }
    for dir in ids {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => return Err(QueueError::io("readdir", &dir, e)),
        };
        let mut segs: Vec<_> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(segment::parse_file_name)
                    .map(|n| (n, e.path()))
            })
            .collect();
        segs.sort();
        for (_, path) in segs {
            // A segment deleted between readdir and open was emptied: skip
            // it. Any other error (no permission) is not an empty queue.
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(QueueError::io("open", &path, e)),
            };
            let map = segment::map_ro(&file).map_err(|e| QueueError::io("mmap", &path, e))?;
            if segment::SegmentHeader::decode(&map).is_err() {
                continue;
            }
            for found in Records::new(&map) {
                each(found.kind, found.payload, found.aux);
            }
        }
    }
    Ok(())
}

/// Lists every message with at least one recipient still to deliver, in
/// arrival order, with the last deferral reason of each deferred
/// recipient.
pub fn list_queue(queue_root: &Path) -> Result<Vec<QueuedMessage>, QueueError> {
    let mut out = Vec::new();
    let mut reasons: HashMap<(QueueId, u32), String> = HashMap::new();
    for_each_record(queue_root, |kind, payload, aux| match kind {
        Kind::Message | Kind::Recipients => {
            let Ok(m) = decode(kind, payload) else {
                return;
            };
            let statuses = statuses(&m, aux);
            if !statuses.iter().any(|s| s.is_open()) {
                return;
            }
            out.push(listed(kind, payload, &m, statuses));
        }
        Kind::Defer => {
            if let Ok(d) = record::decode_defer(payload) {
                reasons.insert((d.id, d.rcpt), d.reason.to_string());
            }
        }
        // Shown through its slices.
        Kind::Campaign => {}
    })?;
    if !reasons.is_empty() {
        for m in &mut out {
            let Ok(id) = m.queue_id.parse::<QueueId>() else {
                continue;
            };
            for (i, r) in m.recipients.iter_mut().enumerate() {
                // A held recipient keeps the reason of its last deferral,
                // as Postfix's hold queue keeps the defer log.
                if has_reason(r.status) {
                    r.reason = reasons.remove(&(id, i as u32));
                }
            }
        }
    }
    out.sort_by(|a, b| (a.arrival_time, &a.queue_id).cmp(&(b.arrival_time, &b.queue_id)));
    Ok(out)
}

/// Whether a recipient in this state is shown with its last deferral
/// reason: deferred, or held (perhaps after a deferral).
fn has_reason(status: &str) -> bool {
    status == RcptStatus::Deferred.as_str() || status == RcptStatus::Held.as_str()
}

/// A message record or a campaign slice record, decoded alike.
fn decode(kind: Kind, payload: &[u8]) -> Result<record::MessageView<'_>, QueueError> {
    if kind == Kind::Message {
        record::decode_message(payload)
    } else {
        super::campaign_record::decode_slice(payload)
    }
}

/// Each recipient's state, from the record's status bytes.
fn statuses(m: &record::MessageView<'_>, aux: &[u8]) -> Vec<RcptStatus> {
    (0..m.recipients.len())
        .map(|i| RcptStatus::from_byte(aux.get(i).copied().unwrap_or(0)))
        .collect()
}

/// The listing entry of a message or campaign slice record.
fn listed(
    kind: Kind,
    payload: &[u8],
    m: &record::MessageView<'_>,
    statuses: Vec<RcptStatus>,
) -> QueuedMessage {
    QueuedMessage {
        queue_id: m.id.to_string(),
        arrival_time: m.arrival_micros / 1_000_000,
        sender: m.sender.to_string(),
        size: m.wire.len() as u64,
        message_id: match &m.campaign {
            Some(c) => format!("campaign {} recipients {}..", c.campaign, c.first_index),
            None => m.message_id.to_string(),
        },
        recipients: m
            .recipients
            .iter()
            .zip(statuses)
            .map(|(a, s)| QueuedRecipient {
                address: a.to_string(),
                status: s.as_str(),
                reason: None,
            })
            .collect(),
        campaign: m.campaign.as_ref().map(|c| SliceOf {
            id: c.campaign,
            first_index: c.first_index,
        }),
        source_file: (kind == Kind::Message)
            .then(|| record::decode_file_identity(payload).ok().flatten())
            .flatten()
            .map(|f| String::from_utf8_lossy(&f.key.name).into_owned()),
    }
}

/// One queued message in full, for `ringmail queue show` (Postfix's
/// `postcat -q`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShownMessage {
    /// What the listing shows (every recipient, done or not).
    pub listed: QueuedMessage,
    /// The message as it is sent (dot-stuffing undone); empty for a
    /// campaign slice, whose messages are rendered at delivery.
    pub content: Vec<u8>,
    /// 8BITMIME / SMTPUTF8 needs, as words.
    pub flags: Vec<&'static str>,
    /// The submitting uid.
    pub uid: u32,
}

/// The message `id` (its newest valid record), whatever its recipients'
/// states; `None` when no segment holds it.
pub fn show_message(queue_root: &Path, id: QueueId) -> Result<Option<ShownMessage>, QueueError> {
    let mut shown: Option<ShownMessage> = None;
    let mut reasons: HashMap<u32, String> = HashMap::new();
    for_each_record(queue_root, |kind, payload, aux| match kind {
        Kind::Message | Kind::Recipients => {
            let Ok(m) = decode(kind, payload) else {
                return;
            };
            if m.id != id {
                return;
            }
            let mut flags = Vec::new();
            if m.flags.has(crate::model::MessageFlags::BODY_8BIT) {
                flags.push("8bitmime");
            }
            if m.flags.has(crate::model::MessageFlags::SMTPUTF8) {
                flags.push("smtputf8");
            }
            let content = if kind == Kind::Message {
                unstuff(m.wire)
            } else {
                Vec::new()
            };
            let statuses = statuses(&m, aux);
            shown = Some(ShownMessage {
                listed: listed(kind, payload, &m, statuses),
                content,
                flags,
                uid: m.uid,
            });
        }
        Kind::Defer => {
            if let Ok(d) = record::decode_defer(payload) {
                if d.id == id {
                    reasons.insert(d.rcpt, d.reason.to_string());
                }
            }
        }
        Kind::Campaign => {}
    })?;
    if let Some(s) = &mut shown {
        for (i, r) in s.listed.recipients.iter_mut().enumerate() {
            if has_reason(r.status) {
                r.reason = reasons.remove(&(i as u32));
            }
        }
    }
    Ok(shown)
}

/// The wire form with the stuffed dot of each line removed.
pub(crate) fn unstuff(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut at_line_start = true;
    for &b in wire {
        // The first dot of a line is the stuffed one; the next is kept.
        if !(at_line_start && b == b'.') {
            out.push(b);
        }
        at_line_start = b == b'\n';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstuffing_drops_the_first_dot_of_each_line() {
        assert_eq!(
            unstuff(b"a\r\n..b\r\n...\r\nc.d\r\n"),
            b"a\r\n.b\r\n..\r\nc.d\r\n"
        );
        assert_eq!(unstuff(b"..x\r\n"), b".x\r\n");
    }
}
