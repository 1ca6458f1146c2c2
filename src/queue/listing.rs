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
    /// `pending`, `deferred`, `sent`, `bounced` or `dropped`.
    pub status: &'static str,
    /// The last deferral reason, if any.
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

/// Lists the messages with at least one live recipient under `queue_root`
/// (every shard directory), oldest first.
pub fn list_queue(queue_root: &Path) -> Result<Vec<QueuedMessage>, QueueError> {
    let mut out = Vec::new();
    let mut reasons: HashMap<(QueueId, u32), String> = HashMap::new();
    let dirs = match std::fs::read_dir(queue_root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
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
                match found.kind {
                    Kind::Message | Kind::Recipients => {
                        let decoded = if found.kind == Kind::Message {
                            record::decode_message(found.payload)
                        } else {
                            super::campaign_record::decode_slice(found.payload)
                        };
                        let Ok(m) = decoded else {
                            continue;
                        };
                        let statuses: Vec<RcptStatus> = (0..m.recipients.len())
                            .map(|i| RcptStatus::from_byte(found.aux.get(i).copied().unwrap_or(0)))
                            .collect();
                        if !statuses.iter().any(|s| s.is_live()) {
                            continue;
                        }
                        out.push(QueuedMessage {
                            queue_id: m.id.to_string(),
                            arrival_time: m.arrival_micros / 1_000_000,
                            sender: m.sender.to_string(),
                            size: m.wire.len() as u64,
                            message_id: match m.campaign {
                                Some(c) => format!(
                                    "campaign {} recipients {}..",
                                    c.campaign, c.first_index
                                ),
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
                            campaign: m.campaign.map(|c| SliceOf {
                                id: c.campaign,
                                first_index: c.first_index,
                            }),
                            source_file: (found.kind == Kind::Message)
                                .then(|| record::decode_file_identity(found.payload).ok().flatten())
                                .flatten()
                                .map(|f| String::from_utf8_lossy(&f.key.name).into_owned()),
                        });
                    }
                    Kind::Defer => {
                        if let Ok(d) = record::decode_defer(found.payload) {
                            reasons.insert((d.id, d.rcpt), d.reason.to_string());
                        }
                    }
                    // Shown through its slices.
                    Kind::Campaign => {}
                }
            }
        }
    }
    if !reasons.is_empty() {
        for m in &mut out {
            let Ok(id) = m.queue_id.parse::<QueueId>() else {
                continue;
            };
            for (i, r) in m.recipients.iter_mut().enumerate() {
                if r.status == RcptStatus::Deferred.as_str() {
                    r.reason = reasons.remove(&(id, i as u32));
                }
            }
        }
    }
    out.sort_by(|a, b| (a.arrival_time, &a.queue_id).cmp(&(b.arrival_time, &b.queue_id)));
    Ok(out)
}
