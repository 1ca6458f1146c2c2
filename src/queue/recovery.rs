//! Replaying segments at start: walking the records of a segment, stopping
//! at the end marker or at a torn (incomplete or damaged) record.

use std::time::{Duration, Instant};

use crate::model::{FileIdentity, QueueId};

use super::record::{self, Kind, Scan};
use super::segment::FILE_HEADER_LEN;

/// One valid record found while walking a segment.
#[derive(Debug)]
pub struct Found<'a> {
    /// Offset of the record in the segment.
    pub offset: usize,
    /// Its kind.
    pub kind: Kind,
    /// The CRC-checked payload.
    pub payload: &'a [u8],
    /// The mutable status area (recipient status bytes for messages).
    pub aux: &'a [u8],
}

/// Iterator over the valid records of a segment's bytes. When it stops
/// early on a torn record, [`Records::torn`] says where and why.
pub struct Records<'a> {
    buf: &'a [u8],
    pos: usize,
    torn: Option<(usize, &'static str)>,
    done: bool,
}

impl<'a> Records<'a> {
    /// Walks the records of a whole segment file's bytes (header included).
    pub fn new(segment_bytes: &'a [u8]) -> Records<'a> {
        Records {
            buf: segment_bytes,
            pos: FILE_HEADER_LEN.min(segment_bytes.len()),
            torn: None,
            done: false,
        }
    }

    /// Where the walk stopped on a torn record, and why; `None` when it
    /// reached the end marker cleanly (or has not finished yet).
    pub fn torn(&self) -> Option<(usize, &'static str)> {
        self.torn
    }

    /// Offset just past the last valid record seen so far.
    pub fn end(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Found<'a>;

    fn next(&mut self) -> Option<Found<'a>> {
        if self.done {
            return None;
        }
        match record::scan(&self.buf[self.pos..]) {
            Scan::Record {
                kind,
                payload,
                aux_offset,
                aux_len,
                total_len,
            } => {
                let offset = self.pos;
                let aux = &self.buf[offset + aux_offset..offset + aux_offset + aux_len];
                self.pos += total_len;
                Some(Found {
                    offset,
                    kind,
                    payload,
                    aux,
                })
            }
            Scan::End => {
                self.done = true;
                None
            }
            Scan::Torn(reason) => {
                self.torn = Some((self.pos, reason));
                self.done = true;
                None
            }
        }
    }
}

/// What recovery found in one shard's queue, for the start-up log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The shard that recovered (so what it reports goes back to it).
    pub shard: usize,
    /// Segment files read.
    pub segments: usize,
    /// Segment files deleted because none of their messages was live.
    pub segments_removed: usize,
    /// Messages with at least one live recipient, now in the index.
    pub messages: usize,
    /// Live recipients over those messages.
    pub recipients: usize,
    /// Torn records cut (one at most per segment).
    pub torn: usize,
    /// Message records whose spool file is among the leftovers recovery
    /// was asked about (see [`Store::open_matching`](super::Store::open_matching)),
    /// delivered or not: those files are queued already. Their segments
    /// are kept until each is released
    /// ([`Store::release_file`](super::Store::release_file)).
    pub already_queued: Vec<(FileIdentity, QueueId)>,
    /// The segment new records are appended to, when the last one of the
    /// shard's directory was continued rather than a new one created.
    pub continued: Option<std::path::PathBuf>,
    /// Time taken.
    pub elapsed: Duration,
}

/// Measures a recovery.
pub(crate) struct Stopwatch(Instant);

impl Stopwatch {
    pub(crate) fn start() -> Stopwatch {
        Stopwatch(Instant::now())
    }
    pub(crate) fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DsnParams, MessageFlags};
    use crate::queue::record::{encode_message, message_payload_len, record_len, MessageRef};

    fn segment_with(n: usize) -> (Vec<u8>, Vec<usize>) {
        let mut buf = vec![0u8; FILE_HEADER_LEN];
        let rcpts = vec!["a@b.example".to_string()];
        let mut offsets = vec![];
        for i in 0..n {
            let m = MessageRef {
                id: QueueId::new(0, i as u64),
                arrival_micros: 0,
                flags: MessageFlags::default(),
                uid: 0,
                sender: "s@x.example",
                recipients: &rcpts,
                message_id: "m@x",
                wire: b"x\r\n",
                file_identity: None,
                dsn: &DsnParams::default(),
            };
            let mut rec = vec![0u8; record_len(message_payload_len(&m).unwrap(), 1)];
            encode_message(&m, &mut rec).unwrap();
            offsets.push(buf.len());
            buf.extend_from_slice(&rec);
        }
        buf.extend_from_slice(&[0u8; 256]);
        (buf, offsets)
    }

    #[test]
    fn walks_all_records_to_the_end_marker() {
        let (buf, offsets) = segment_with(5);
        let mut it = Records::new(&buf);
        let found: Vec<usize> = it.by_ref().map(|f| f.offset).collect();
        assert_eq!(found, offsets);
        assert_eq!(it.torn(), None);
    }

    #[test]
    fn stops_at_a_record_cut_in_the_middle() {
        let (mut buf, offsets) = segment_with(5);
        // Zero the second half of record 3: a write that never finished.
        let cut = offsets[3] + 20;
        buf[cut..offsets[4] + 200].fill(0);
        let mut it = Records::new(&buf);
        assert_eq!(it.by_ref().count(), 3);
        assert_eq!(it.torn().map(|t| t.0), Some(offsets[3]));
    }
}
