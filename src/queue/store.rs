//! A shard's queue: its segment files, the in-memory index of live
//! messages, group-commit bookkeeping and garbage collection.
//!
//! The store itself never blocks on fdatasync: [`Store::take_dirty`] hands
//! the files written since the last commit to the caller, which syncs them
//! (on io_uring or a blocking thread) and only then acknowledges the
//! submitters. One fdatasync per dirty file covers every record appended
//! before `take_dirty` was called: that is the group commit.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::fast_hash::FastMap;
use crate::model::{now_micros, CampaignSlice, QueueId, RcptStatus, Submission};

use super::campaign_record::{self, CampaignView, SliceEntry, SliceIndex};
use super::record::{self, Kind, MessageRef, MessageView};
use super::recovery::{Records, RecoveryReport, Stopwatch};
use super::room::{intake_reserve, Room};
use super::segment::{self, Segment, SegmentHeader, FILE_HEADER_LEN};
use super::QueueError;

/// Where a message record lives: which of the store's segments, at what offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Index of the segment in the store.
    pub seg: u32,
    /// Offset of the record in the segment.
    pub offset: u32,
}

/// What the index keeps per live message: 16 bytes plus the 8-byte key.
#[derive(Clone, Copy, Debug)]
struct Slot {
    loc: Location,
    /// Offset of the recipient status bytes relative to the record.
    aux_rel: u32,
    /// Recipients still live (pending or deferred).
    live: u32,
}

struct SegState {
    seg: Segment,
    live_msgs: u32,
    dirty: bool,
    /// Message records in it whose spool file may still exist (see
    /// [`Store::release_file`]): the segment is kept while any is.
    held_files: u32,
}

/// The recipient status bytes of one message as last set, written to the
/// file or not (see [`Store::get`]).
#[derive(Clone, Copy)]
pub struct RcptStatuses<'a> {
    seg: &'a Segment,
    /// Offset of the first status byte in the segment.
    base: usize,
    len: usize,
}

impl RcptStatuses<'_> {
    /// The status byte of recipient `i`, if the message has that many.
    pub fn get(&self, i: usize) -> Option<u8> {
        if i < self.len {
            self.seg.byte_at(self.base + i)
        } else {
            None
        }
    }

    /// All status bytes, in recipient order.
    pub fn to_vec(&self) -> Vec<u8> {
        (0..self.len).filter_map(|i| self.get(i)).collect()
    }
}

/// One shard's queue.
pub struct Store {
    shard: usize,
    dir: PathBuf,
    segs: Vec<Option<SegState>>,
    /// Where records are appended: the newest segment, unsealed; or, when
    /// none could be continued or created, the last segment of the shard's
    /// directory, sealed, kept so that its records keep the queue ID
    /// sequence (see [`Store::open_matching`]) until a new one exists.
    active: Option<u32>,
    next_segno: u64,
    next_seq: u64,
    segment_size: u64,
    /// Bytes of the active segment that [`Store::append`] (new mail) leaves
    /// free for [`Store::append_notice`] and [`Store::append_defer`]: when
    /// the disk is full and no new segment can be created, the queue
    /// manager can still record deferrals and queue bounce notices.
    intake_reserve: usize,
    /// Whether segments can be created (a full disk), and its log.
    room: Room,
    index: FastMap<QueueId, Slot>,
    /// Segments with status bytes set since the last
    /// [`Store::flush_statuses`] (so it need not look at every segment).
    statuses_set: Vec<u32>,
    /// Messages whose spool file may still exist, with their segment: a
    /// restart recognises such a file only by its record, so the segment
    /// stays until pickup says the file's unlink is durable.
    held: FastMap<QueueId, u32>,
    /// Campaign records of this shard, with how many of its slices here are
    /// live: the record counts as one live message of its segment while any is.
    campaigns: HashMap<u64, CampaignSlot>,
    /// The campaign of each live slice.
    slice_of: FastMap<QueueId, u64>,
    /// Recipient offsets of the slices read so far (built on first use,
    /// dropped with the slice).
    slice_index: std::cell::RefCell<HashMap<QueueId, std::rc::Rc<SliceIndex>>>,
    poisoned: bool,
    /// Messages that left the queue since it was opened (every recipient
    /// done), for the metrics.
    completed: u64,
}

/// Where a campaign record is and how many live slices need it.
#[derive(Clone, Copy, Debug)]
struct CampaignSlot {
    loc: Location,
    live_slices: u32,
}

impl Store {
    /// Opens shard `shard` of `shard_count` under `queue_root`: recovers
    /// every segment in `queue_root/<k>` for each `k` with
    /// `k % shard_count == shard` (so mail queued under an earlier, larger
    /// shard count is adopted, never orphaned), deletes segments with no live
    /// message, and continues the last segment of `queue_root/<shard>`
    /// where it is intact, else creates a new one (see
    /// [`Store::open_matching`]).
    pub fn open(
        queue_root: &Path,
        shard: usize,
        shard_count: usize,
        segment_size: u64,
    ) -> Result<(Store, RecoveryReport), QueueError> {
        Store::open_matching(
            queue_root,
            shard,
            shard_count,
            segment_size,
            &HashSet::new(),
        )
    }

    /// [`Store::open`], and also reports in
    /// [`RecoveryReport::already_queued`] every message record (live or
    /// not) read from a spool file whose key's digest
    /// ([`crate::model::FileKey::digest`]) is in `leftovers`: the files
    /// still in the spool directories at start, which a killed daemon may
    /// have queued without unlinking.
    ///
    /// The last segment of the shard's own directory is kept even when
    /// none of its messages is live, and appends continue in it when it
    /// can be continued safely ([`Segment::resume_at`]: it ends at its end
    /// marker, not at a torn record, with nothing but zeros after it, in
    /// the current format). No disk space is needed for that, so a shard
    /// starts on a full disk. Otherwise a new segment is created; when that
    /// fails, the shard still starts: its queued mail is delivered, status
    /// bytes are written in place, and appends fail with
    /// [`QueueError::NoRoom`] until a segment can be created. The kept
    /// segment carries the queue ID sequence across restarts until then
    /// (IDs issued after a segment's creation are in its records, those
    /// before are below its `seq_floor`).
    pub fn open_matching(
        queue_root: &Path,
        shard: usize,
        shard_count: usize,
        segment_size: u64,
        leftovers: &HashSet<u64>,
    ) -> Result<(Store, RecoveryReport), QueueError> {
        let clock = Stopwatch::start();
        let dir = queue_root.join(shard.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| QueueError::io("mkdir", &dir, e))?;
        let mut store = Store {
            shard,
            dir: dir.clone(),
            segs: Vec::new(),
            active: None,
            next_segno: 1,
            next_seq: 0,
            segment_size,
            intake_reserve: intake_reserve(segment_size),
            room: Room::new(shard),
            index: FastMap::default(),
            statuses_set: Vec::new(),
            held: FastMap::default(),
            campaigns: HashMap::new(),
            slice_of: FastMap::default(),
            slice_index: std::cell::RefCell::new(HashMap::new()),
            poisoned: false,
            completed: 0,
        };
        let mut report = RecoveryReport {
            shard,
            ..RecoveryReport::default()
        };
        for d in owned_dirs(queue_root, shard, shard_count)? {
            store.recover_dir(&d, d == dir, leftovers, &mut report)?;
        }
        store.settle_campaigns()?;
        if !report.already_queued.is_empty() {
            // A matching record may be only in the page cache (written but
            // not yet fdatasync'd when the previous run was killed). Pickup
            // deletes the files these records came from, so the records
            // must be on disk first; if that fails, no file is deleted.
            if let Err(e) = store.sync_recovered() {
                tracing::warn!(target: "qmgr", "{e}; the {} files left in the spool that are queued already will be queued again", report.already_queued.len());
                for (_, id) in std::mem::take(&mut report.already_queued) {
                    // Not fatal: a segment that cannot go now goes at the
                    // next start (no file will match it then).
                    if let Err(e) = store.release_file(id) {
                        tracing::warn!(target: "qmgr", "{e}");
                    }
                }
            }
        }
        store.next_seq = store.next_seq.max(now_micros() / 1000);
        let continued = store.active.filter(|&a| store.seg_free(a) > 0);
        match continued {
            Some(a) => {
                if let Some(state) = &store.segs[a as usize] {
                    report.continued = Some(state.seg.path().to_path_buf());
                }
            }
            None => {
                // Today, not on the first message: its header records the
                // sequence floor. Failing is not fatal (see above).
                let old = store.active;
                match store.roll_over(0) {
                    Ok(()) | Err(QueueError::NoRoom { .. }) => {}
                    Err(e) => return Err(e),
                }
                if old.is_some_and(|o| store.segs[o as usize].is_none()) {
                    report.segments_removed += 1;
                }
            }
        }
        report.elapsed = clock.elapsed();
        Ok((store, report))
    }

    /// fdatasyncs every recovered segment (the records of a matched
    /// leftover file may be in any of them, and so may bounce notices for
    /// its message).
    fn sync_recovered(&self) -> Result<(), QueueError> {
        for state in self.segs.iter().flatten() {
            state
                .seg
                .file()
                .sync_data()
                .map_err(|e| QueueError::io("fdatasync", state.seg.path(), e))?;
        }
        Ok(())
    }

    fn recover_dir(
        &mut self,
        dir: &Path,
        own: bool,
        leftovers: &HashSet<u64>,
        report: &mut RecoveryReport,
    ) -> Result<(), QueueError> {
        let mut segnos = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| QueueError::io("readdir", dir, e))? {
            let entry = entry.map_err(|e| QueueError::io("readdir", dir, e))?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(segment::parse_file_name)
            {
                segnos.push(n);
            }
        }
        segnos.sort_unstable();
        let last = segnos.last().copied();
        for segno in segnos {
            if own {
                self.next_segno = self.next_segno.max(segno + 1);
            }
            let path = dir.join(segment::file_name(segno));
            let seg = match Segment::open(&path) {
                Ok(s) => s,
                Err(e @ QueueError::BadSegment { .. }) => {
                    // Not ours or from a newer version: keep it, skip it, say so.
                    tracing::error!(target: "qmgr", "{e}; segment left in place and not read");
                    continue;
                }
                Err(e) => return Err(e),
            };
            report.segments += 1;
            if own {
                self.next_seq = self.next_seq.max(seg.header().seq_floor);
            }
            let last_own = own && Some(segno) == last;
            self.adopt_segment(seg, last_own, leftovers, report)?;
        }
        Ok(())
    }

    /// Reads `seg` into the index. `last_own` marks the newest segment of
    /// the shard's own directory: it is kept and becomes the active
    /// segment, continued if it can be (see [`Store::open_matching`]).
    fn adopt_segment(
        &mut self,
        mut seg: Segment,
        last_own: bool,
        leftovers: &HashSet<u64>,
        report: &mut RecoveryReport,
    ) -> Result<(), QueueError> {
        let seg_idx = self.segs.len() as u32;
        let mut live_msgs = 0u32;
        let mut held_files = 0u32;
        let mut has_campaign = false;
        let mut records = Records::new(seg.bytes());
        for found in records.by_ref() {
            if found.kind == Kind::Campaign {
                match campaign_record::peek_campaign(found.payload) {
                    Ok(cid) => {
                        has_campaign = true;
                        self.campaigns.entry(cid).or_insert(CampaignSlot {
                            loc: Location {
                                seg: seg_idx,
                                offset: found.offset as u32,
                            },
                            live_slices: 0,
                        });
                    }
                    Err(e) => {
                        tracing::error!(target: "qmgr", "{}: campaign record at offset {}: {e}; skipped", seg.path().display(), found.offset);
                    }
                }
                continue;
            }
            if found.kind != Kind::Message && found.kind != Kind::Recipients {
                continue;
            }
            let (id, _, nrcpt) = match record::peek_message(found.payload) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(target: "qmgr", "{}: record at offset {}: {e}; skipped", seg.path().display(), found.offset);
                    continue;
                }
            };
            if id.shard() == self.shard {
                self.next_seq = self.next_seq.max(id.seq() + 1);
            }
            if !leftovers.is_empty() {
                match record::decode_file_identity(found.payload) {
                    Ok(Some(file)) if leftovers.contains(&file.key.digest()) => {
                        // Held until pickup has removed the file (or found
                        // it gone); counted once, where first found.
                        if let std::collections::hash_map::Entry::Vacant(e) = self.held.entry(id) {
                            e.insert(seg_idx);
                            held_files += 1;
                        }
                        report.already_queued.push((file, id));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(target: "qmgr", "{}: record at offset {}: spool file identity unreadable: {e}", seg.path().display(), found.offset);
                    }
                }
            }
            let live = found
                .aux
                .iter()
                .take(nrcpt)
                .filter(|&&b| RcptStatus::from_byte(b).is_open())
                .count() as u32;
            if live == 0 {
                continue;
            }
            let slot = Slot {
                loc: Location {
                    seg: seg_idx,
                    offset: found.offset as u32,
                },
                aux_rel: (found.aux.as_ptr() as usize - found.payload.as_ptr() as usize
                    + record::HEADER_LEN) as u32,
                live,
            };
            if found.kind == Kind::Recipients {
                match campaign_record::decode_slice(found.payload) {
                    Ok(v) => {
                        if let Some(f) = v.campaign {
                            self.slice_of.insert(id, f.campaign);
                        }
                    }
                    Err(e) => {
                        tracing::error!(target: "qmgr", "{}: campaign slice at offset {}: {e}; skipped", seg.path().display(), found.offset);
                        continue;
                    }
                }
            }
            if self.index.insert(id, slot).is_some() {
                tracing::warn!(target: "qmgr", "{id}: queue ID found twice; keeping the later record");
            } else {
                live_msgs += 1;
                report.messages += 1;
            }
            report.recipients += live as usize;
        }
        let end = records.end();
        let torn = records.torn();
        if let Some((offset, reason)) = torn {
            report.torn += 1;
            let rest = &seg.bytes()[offset..];
            let nonzero = rest
                .iter()
                .rposition(|&b| b != 0)
                .map(|p| p + 1)
                .unwrap_or(0);
            tracing::warn!(
                target: "qmgr",
                "{}: torn record at offset {offset} cut ({reason}); {nonzero} bytes after it ignored",
                seg.path().display()
            );
        }
        if last_own {
            // Continued only where nothing can be behind the end marker;
            // else kept sealed, and a new segment is created.
            let continued =
                torn.is_none() && seg.header().shard as usize == self.shard && seg.resume_at(end);
            if !continued && torn.is_none() {
                tracing::info!(target: "qmgr", "{}: not continued (another format version or shard, or bytes after the last record); new mail goes to a new segment", seg.path().display());
            }
            self.active = Some(seg_idx);
            self.segs.push(Some(SegState {
                seg,
                live_msgs,
                dirty: false,
                held_files,
            }));
        } else if live_msgs == 0 && held_files == 0 && !has_campaign {
            let path = seg.path().to_path_buf();
            drop(seg);
            remove_segment_file(&path)?;
            report.segments_removed += 1;
            self.segs.push(None);
        } else {
            self.segs.push(Some(SegState {
                seg,
                live_msgs,
                dirty: false,
                held_files,
            }));
        }
        Ok(())
    }

    /// After recovery: each campaign record with live slices counts as a
    /// live message of its segment; records without any are forgotten and
    /// segments kept only for them are deleted.
    fn settle_campaigns(&mut self) -> Result<(), QueueError> {
        for cid in self.slice_of.values() {
            match self.campaigns.get_mut(cid) {
                Some(c) => c.live_slices += 1,
                None => {
                    tracing::error!(target: "qmgr", "campaign {cid}: slices queued but no campaign record found; they are deferred until it is");
                }
            }
        }
        self.campaigns.retain(|_, c| c.live_slices > 0);
        for c in self.campaigns.values() {
            if let Some(state) = self.segs[c.loc.seg as usize].as_mut() {
                state.live_msgs += 1;
            }
        }
        for idx in 0..self.segs.len() as u32 {
            self.collect_if_empty(idx)?;
        }
        Ok(())
    }

    /// Appends a campaign slice (and, the first time this shard sees the
    /// campaign, its campaign record in front of it). Durable with the next
    /// commit, as [`Store::append`].
    fn append_slice(
        &mut self,
        slice: &CampaignSlice,
        arrival_micros: u64,
    ) -> Result<QueueId, QueueError> {
        if self.poisoned {
            return Err(QueueError::Poisoned);
        }
        let cid = slice.spec.id;
        let slice_payload = campaign_record::slice_payload_len(slice)?;
        let slice_len = record::record_len(slice_payload, slice.rows.len());
        let new_campaign = !self.campaigns.contains_key(&cid);
        if new_campaign {
            let payload_len = campaign_record::campaign_payload_len(&slice.spec)?;
            let len = record::record_len(payload_len, 0);
            let active = self.active_with_room(len + slice_len, self.intake_reserve)?;
            let state = self.segs[active as usize]
                .as_mut()
                .ok_or(QueueError::BadRecord("active segment missing"))?;
            let offset = match state.seg.append(len, |buf| {
                campaign_record::encode_campaign(&slice.spec, buf)
            }) {
                Some(r) => r?,
                None => return Err(QueueError::BadRecord("segment full after roll-over")),
            };
            state.dirty = true;
            state.live_msgs += 1;
            self.campaigns.insert(
                cid,
                CampaignSlot {
                    loc: Location {
                        seg: active,
                        offset: offset as u32,
                    },
                    live_slices: 0,
                },
            );
        }
        let id = QueueId::new(self.shard, self.next_seq);
        let appended = self
            .active_with_room(slice_len, self.intake_reserve)
            .and_then(|active| {
                let state = self.segs[active as usize]
                    .as_mut()
                    .ok_or(QueueError::BadRecord("active segment missing"))?;
                let offset = match state.seg.append(slice_len, |buf| {
                    campaign_record::encode_slice(id, arrival_micros, slice, buf).map(|_| ())
                }) {
                    Some(r) => r?,
                    None => return Err(QueueError::BadRecord("segment full after roll-over")),
                };
                state.dirty = true;
                state.live_msgs += 1;
                Ok((active, offset))
            });
        let (active, offset) = match appended {
            Ok(v) => v,
            Err(e) => {
                if new_campaign {
                    self.drop_campaign_ref(cid)?;
                }
                return Err(e);
            }
        };
        self.next_seq += 1;
        self.index.insert(
            id,
            Slot {
                loc: Location {
                    seg: active,
                    offset: offset as u32,
                },
                aux_rel: (record::HEADER_LEN + slice_payload) as u32,
                live: slice.rows.len() as u32,
            },
        );
        self.slice_of.insert(id, cid);
        if let Some(c) = self.campaigns.get_mut(&cid) {
            c.live_slices += 1;
        }
        Ok(id)
    }

    /// Forgets campaign `cid`'s record here (no live slice needs it): its
    /// segment may go.
    fn drop_campaign_ref(&mut self, cid: u64) -> Result<(), QueueError> {
        let Some(c) = self.campaigns.remove(&cid) else {
            return Ok(());
        };
        if let Some(state) = self.segs[c.loc.seg as usize].as_mut() {
            state.live_msgs = state.live_msgs.saturating_sub(1);
        }
        self.collect_if_empty(c.loc.seg)
    }

    /// Recipient `i` of campaign slice `id` (address and merge-field
    /// values) with the slice's index, without decoding the rest of the
    /// slice: the delivery path reads one recipient per job.
    pub fn slice_entry(
        &self,
        id: QueueId,
        i: usize,
    ) -> Option<(std::rc::Rc<SliceIndex>, SliceEntry<'_>)> {
        self.slice_of.get(&id)?;
        let slot = self.index.get(&id)?;
        let state = self.segs.get(slot.loc.seg as usize)?.as_ref()?;
        let record::Scan::Record {
            kind: Kind::Recipients,
            payload,
            ..
        } = record::scan_unverified(state.seg.record_at(slot.loc.offset as usize))
        else {
            return None;
        };
        let index = {
            let mut cache = self.slice_index.borrow_mut();
            match cache.get(&id) {
                Some(ix) => std::rc::Rc::clone(ix),
                None => {
                    let ix = std::rc::Rc::new(SliceIndex::build(payload).ok()?);
                    cache.insert(id, std::rc::Rc::clone(&ix));
                    ix
                }
            }
        };
        let entry = index.entry(payload, i).ok()?;
        Some((index, entry))
    }

    /// The campaign of slice `id`, or `None` for a message (a hash lookup:
    /// the delivery path asks it of every job).
    pub fn slice_campaign(&self, id: QueueId) -> Option<u64> {
        self.slice_of.get(&id).copied()
    }

    /// The campaign record of `cid`, checksum verified, while a slice of it
    /// on this shard is live.
    pub fn campaign(&self, cid: u64) -> Option<CampaignView<'_>> {
        let c = self.campaigns.get(&cid)?;
        let state = self.segs.get(c.loc.seg as usize)?.as_ref()?;
        match record::scan(state.seg.record_at(c.loc.offset as usize)) {
            record::Scan::Record {
                kind: Kind::Campaign,
                payload,
                ..
            } => campaign_record::decode_campaign(payload).ok(),
            _ => None,
        }
    }

    /// Seals the active segment and starts a new one big enough for `need`
    /// bytes. When that fails (full disk), fails with
    /// [`QueueError::NoRoom`], and so does every call in the next
    /// second without trying (see [`super::room`]).
    fn roll_over(&mut self, need: usize) -> Result<(), QueueError> {
        self.room.check()?;
        let size = self
            .segment_size
            .max((need + FILE_HEADER_LEN + record::ALIGN) as u64);
        let header = SegmentHeader {
            shard: self.shard as u32,
            segno: self.next_segno,
            created_micros: now_micros(),
            seq_floor: self.next_seq,
            size,
        };
        let seg = self
            .create_segment(header)
            .map_err(|e| self.room.failed(&e))?;
        self.room.created();
        self.next_segno += 1;
        let old = self.active.replace(self.segs.len() as u32);
        self.segs.push(Some(SegState {
            seg,
            live_msgs: 0,
            dirty: false,
            held_files: 0,
        }));
        if let Some(old) = old {
            if let Some(state) = self.segs[old as usize].as_mut() {
                state.seg.seal();
            }
            self.collect_if_empty(old)?;
        }
        Ok(())
    }

    /// [`Segment::create`], or a full disk at the test fail point.
    fn create_segment(&self, header: SegmentHeader) -> Result<Segment, QueueError> {
        #[cfg(test)]
        {
            use super::room::fail::{CREATES, DISK_FULL};
            CREATES.with(|c| c.set(c.get() + 1));
            if DISK_FULL.with(|f| f.get()) {
                return Err(QueueError::io(
                    "fallocate",
                    self.dir.join(segment::file_name(header.segno)),
                    std::io::Error::from_raw_os_error(28),
                ));
            }
        }
        Segment::create(&self.dir, header)
    }

    /// Appends a message record of new mail with a new queue ID. The record
    /// is in the mapping but not durable until the next commit
    /// ([`Store::take_dirty`] plus fdatasync). New mail leaves the last
    /// part of the active segment to [`Store::append_notice`] and
    /// [`Store::append_defer`]: when it does not fit in front of that, a
    /// new segment is created, and if that fails (full disk) the append
    /// fails with [`QueueError::NoRoom`].
    pub fn append(&mut self, sub: &Submission) -> Result<QueueId, QueueError> {
        match &sub.campaign {
            Some(slice) => self.append_slice(slice, sub.arrival_micros),
            None => self.append_message(sub, self.intake_reserve),
        }
    }

    /// [`Store::append`] for a message the queue manager makes (a bounce
    /// or delay notice): it may use the whole active segment.
    pub fn append_notice(&mut self, sub: &Submission) -> Result<QueueId, QueueError> {
        self.append_message(sub, 0)
    }

    /// Appends a message record, leaving `keep_free` bytes of the active
    /// segment free.
    fn append_message(
        &mut self,
        sub: &Submission,
        keep_free: usize,
    ) -> Result<QueueId, QueueError> {
        if self.poisoned {
            return Err(QueueError::Poisoned);
        }
        let id = QueueId::new(self.shard, self.next_seq);
        let m = MessageRef {
            id,
            arrival_micros: sub.arrival_micros,
            flags: sub.flags,
            uid: sub.uid,
            sender: &sub.envelope.sender,
            recipients: &sub.envelope.recipients,
            message_id: clip(&sub.message_id, MAX_MESSAGE_ID),
            wire: &sub.wire,
            file_identity: sub.file_identity.as_ref(),
            dsn: &sub.dsn,
        };
        if m.recipients.is_empty() {
            return Err(QueueError::TooBig("a message needs at least one recipient"));
        }
        let payload_len = record::message_payload_len(&m)?;
        let len = record::record_len(payload_len, m.recipients.len());
        let active = self.active_with_room(len, keep_free)?;
        let state = self.segs[active as usize]
            .as_mut()
            .ok_or(QueueError::BadRecord("active segment missing"))?;
        let offset = match state
            .seg
            .append(len, |buf| record::encode_message(&m, buf).map(|_| ()))
        {
            Some(r) => r?,
            None => return Err(QueueError::BadRecord("segment full after roll-over")),
        };
        state.dirty = true;
        state.live_msgs += 1;
        if sub.file_identity.is_some() {
            state.held_files += 1;
            self.held.insert(id, active);
        }
        self.next_seq += 1;
        self.index.insert(
            id,
            Slot {
                loc: Location {
                    seg: active,
                    offset: offset as u32,
                },
                aux_rel: (record::HEADER_LEN + payload_len) as u32,
                live: m.recipients.len() as u32,
            },
        );
        Ok(id)
    }

    /// Appends a defer record: why recipient `rcpt` of `id` was deferred
    /// and when it is retried (shown by `mailq`). Durable with the next
    /// commit. May use the whole active segment (see [`Store::append`]).
    pub fn append_defer(
        &mut self,
        id: QueueId,
        rcpt: u32,
        next_attempt_micros: u64,
        reason: &str,
    ) -> Result<(), QueueError> {
        if self.poisoned {
            return Err(QueueError::Poisoned);
        }
        let rec = record::encode_defer(&record::DeferView {
            id,
            rcpt,
            next_attempt_micros,
            reason,
        });
        let active = self.active_with_room(rec.len(), 0)?;
        let state = self.segs[active as usize]
            .as_mut()
            .ok_or(QueueError::BadRecord("active segment missing"))?;
        match state.seg.append(rec.len(), |buf| {
            buf.copy_from_slice(&rec);
            Ok::<(), QueueError>(())
        }) {
            Some(r) => r.map(|_| ())?,
            None => return Err(QueueError::BadRecord("segment full after roll-over")),
        }
        state.dirty = true;
        Ok(())
    }

    /// True when something was written since the last [`Store::take_dirty`].
    pub fn has_dirty(&self) -> bool {
        self.segs.iter().flatten().any(|s| s.dirty)
    }

    /// The active segment if `len` more bytes fit with `keep_free` bytes to
    /// spare, else a new one where they do.
    fn active_with_room(&mut self, len: usize, keep_free: usize) -> Result<u32, QueueError> {
        let need = len.saturating_add(keep_free);
        match self.active {
            Some(a) if self.seg_free(a) >= need => Ok(a),
            _ => {
                self.roll_over(need)?;
                self.active
                    .ok_or(QueueError::BadRecord("no active segment"))
            }
        }
    }

    fn seg_free(&self, idx: u32) -> usize {
        self.segs[idx as usize].as_ref().map_or(0, |s| s.seg.free())
    }

    /// Writes what the segments gathered since the last call (appends and
    /// status bytes, see [`segment`]) and hands out the files written,
    /// clearing their dirty marks. The caller fdatasyncs each; every append
    /// made before this call is durable once they all succeed. A failed
    /// write poisons the store, as a failed fdatasync does.
    pub fn take_dirty(&mut self) -> Result<Vec<Arc<File>>, QueueError> {
        let mut files = Vec::new();
        for s in self.segs.iter_mut().flatten().filter(|s| s.dirty) {
            if let Err(e) = s.seg.flush() {
                self.poisoned = true;
                return Err(e);
            }
            s.dirty = false;
            files.push(Arc::clone(s.seg.file()));
        }
        Ok(files)
    }

    /// Writes the status bytes set since the last call (see
    /// [`Store::set_status`]) to the files, where they survive the daemon
    /// being killed; durable with the next commit. A failed write poisons
    /// the store.
    pub fn flush_statuses(&mut self) -> Result<(), QueueError> {
        while let Some(&idx) = self.statuses_set.last() {
            if let Some(Some(s)) = self.segs.get_mut(idx as usize) {
                if let Err(e) = s.seg.flush_statuses() {
                    self.poisoned = true;
                    return Err(e);
                }
            }
            self.statuses_set.pop();
        }
        Ok(())
    }

    /// Records that an fdatasync failed: nothing more is written until restart.
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Messages that left the queue (their last live recipient got a final
    /// status) since the store was opened.
    pub fn completed_messages(&self) -> u64 {
        self.completed
    }

    /// True after a failed fdatasync.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Reads a live message back, with its recipients' statuses; the
    /// record's checksum is verified (use this for what is sent).
    pub fn get(&self, id: QueueId) -> Option<(MessageView<'_>, RcptStatuses<'_>)> {
        self.read(id, true)
    }

    /// [`Store::get`] without verifying the checksum again: for reading the
    /// envelope (planning, logging results) of a record that was verified
    /// when it was appended or recovered. Saves a CRC over the whole
    /// message each time; the data that goes out is read with `get`.
    pub fn peek(&self, id: QueueId) -> Option<(MessageView<'_>, RcptStatuses<'_>)> {
        self.read(id, false)
    }

    fn read(&self, id: QueueId, verify: bool) -> Option<(MessageView<'_>, RcptStatuses<'_>)> {
        let slot = self.index.get(&id)?;
        let state = self.segs.get(slot.loc.seg as usize)?.as_ref()?;
        let bytes = state.seg.record_at(slot.loc.offset as usize);
        let scanned = if verify {
            record::scan(bytes)
        } else {
            record::scan_unverified(bytes)
        };
        match scanned {
            record::Scan::Record {
                kind,
                payload,
                aux_len,
                ..
            } => {
                let view = match kind {
                    Kind::Recipients => campaign_record::decode_slice(payload).ok()?,
                    _ => record::decode_message(payload).ok()?,
                };
                let statuses = RcptStatuses {
                    seg: &state.seg,
                    base: slot.loc.offset as usize + slot.aux_rel as usize,
                    len: aux_len,
                };
                Some((view, statuses))
            }
            _ => None,
        }
    }

    /// The status of recipient `rcpt` of live message `id`, as last set.
    pub fn status(&self, id: QueueId, rcpt: usize) -> Option<RcptStatus> {
        let (_, status) = self.peek(id)?;
        status.get(rcpt).map(RcptStatus::from_byte)
    }

    /// Sets the status of recipient `rcpt` of message `id` in place, in
    /// memory until [`Store::flush_statuses`] (callers setting several call
    /// it once after them) or the next commit writes it. Returns
    /// true when this left the message with no live recipient: it is then
    /// dropped from the index, and its segment deleted once empty.
    pub fn set_status(
        &mut self,
        id: QueueId,
        rcpt: usize,
        status: RcptStatus,
    ) -> Result<bool, QueueError> {
        if self.poisoned {
            return Err(QueueError::Poisoned);
        }
        let Some(slot) = self.index.get_mut(&id) else {
            return Ok(false);
        };
        let seg_idx = slot.loc.seg;
        let Some(state) = self.segs[seg_idx as usize].as_mut() else {
            return Ok(false);
        };
        let pos = slot.loc.offset as usize + slot.aux_rel as usize + rcpt;
        let was_live = state
            .seg
            .byte_at(pos)
            .is_some_and(|b| RcptStatus::from_byte(b).is_open());
        state.seg.set_byte(pos, status as u8);
        state.dirty = true;
        if self.statuses_set.last() != Some(&seg_idx) && !self.statuses_set.contains(&seg_idx) {
            self.statuses_set.push(seg_idx);
        }
        if was_live && !status.is_open() {
            slot.live -= 1;
            if slot.live == 0 {
                self.index.remove(&id);
                state.live_msgs -= 1;
                self.collect_if_empty(seg_idx)?;
                self.slice_index.borrow_mut().remove(&id);
                if let Some(cid) = self.slice_of.remove(&id) {
                    let last = self.campaigns.get_mut(&cid).is_some_and(|c| {
                        c.live_slices = c.live_slices.saturating_sub(1);
                        c.live_slices == 0
                    });
                    if last {
                        self.drop_campaign_ref(cid)?;
                    }
                }
                self.completed += 1;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Says that the spool file message `id` was read from is gone for
    /// good (its unlink is durable, or recovery's match was not that
    /// file): the record no longer needs to outlive delivery, and its
    /// segment is deleted once nothing else keeps it. Unknown IDs (not
    /// from a file, or released already) are ignored.
    pub fn release_file(&mut self, id: QueueId) -> Result<(), QueueError> {
        let Some(idx) = self.held.remove(&id) else {
            return Ok(());
        };
        if let Some(state) = self.segs.get_mut(idx as usize).and_then(Option::as_mut) {
            state.held_files = state.held_files.saturating_sub(1);
        }
        self.collect_if_empty(idx)
    }

    /// Number of messages whose spool file may still exist.
    pub fn held_files(&self) -> usize {
        self.held.len()
    }

    /// Deletes a sealed segment that holds no live message and no record
    /// of a spool file that may still exist.
    fn collect_if_empty(&mut self, idx: u32) -> Result<(), QueueError> {
        let Some(state) = self.segs[idx as usize].as_ref() else {
            return Ok(());
        };
        if state.live_msgs > 0
            || state.held_files > 0
            || !state.seg.is_sealed()
            || self.active == Some(idx)
        {
            return Ok(());
        }
        let path = state.seg.path().to_path_buf();
        if let Some(mut state) = self.segs[idx as usize].take() {
            // Nothing in it is live: what it gathered need not be written.
            state.seg.discard_unflushed();
        }
        remove_segment_file(&path)
    }

    /// True while message `id` has a live recipient.
    pub fn contains(&self, id: QueueId) -> bool {
        self.index.contains_key(&id)
    }

    /// Number of live messages.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no message is live.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// IDs of all live messages, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = QueueId> + '_ {
        self.index.keys().copied()
    }

    /// Number of segment files currently open.
    pub fn segment_count(&self) -> usize {
        self.segs.iter().flatten().count()
    }

    /// Heap bytes used by the index, for the memory benchmark.
    pub fn index_bytes(&self) -> usize {
        self.index.capacity() * (std::mem::size_of::<(QueueId, Slot)>() + 1)
    }
}

/// Longest Message-ID kept in a record: it only serves logs and listings,
/// and a folded header can be longer than a length prefix allows.
const MAX_MESSAGE_ID: usize = 1024;

/// `s` cut to at most `max` bytes, on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The queue directories shard `shard` of `shard_count` owns.
fn owned_dirs(
    queue_root: &Path,
    shard: usize,
    shard_count: usize,
) -> Result<Vec<PathBuf>, QueueError> {
    let mut dirs = Vec::new();
    for entry in
        std::fs::read_dir(queue_root).map_err(|e| QueueError::io("readdir", queue_root, e))?
    {
        let entry = entry.map_err(|e| QueueError::io("readdir", queue_root, e))?;
        let Some(k) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if k % shard_count.max(1) == shard && entry.path().is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn remove_segment_file(path: &Path) -> Result<(), QueueError> {
    std::fs::remove_file(path).map_err(|e| QueueError::io("unlink", path, e))?;
    tracing::debug!(target: "qmgr", "{}: segment removed (no live messages)", path.display());
    if let Some(dir) = path.parent() {
        segment::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "store_room_tests.rs"]
mod room_tests;

#[cfg(test)]
#[path = "store_campaign_tests.rs"]
mod campaign_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Envelope, MessageFlags, Source};

    pub(super) fn sub(i: usize, rcpts: usize) -> Submission {
        Submission {
            envelope: Envelope {
                sender: "s@example.com".into(),
                recipients: (0..rcpts)
                    .map(|r| format!("r{i}.{r}@example.net"))
                    .collect(),
            },
            wire: format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes(),
            flags: MessageFlags::default(),
            dsn: Default::default(),
            message_id: format!("{i}@test"),
            arrival_micros: now_micros(),
            uid: 0,
            source: Source::Internal(i as u64),
            origin: Default::default(),
            file_identity: None,
            campaign: None,
        }
    }

    pub(super) fn sync(store: &mut Store) {
        for f in store.take_dirty().unwrap() {
            f.sync_data().unwrap();
        }
    }

    #[test]
    fn appended_messages_survive_reopen_with_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids = vec![];
        {
            let (mut store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
            assert_eq!(report.messages, 0);
            for i in 0..100 {
                ids.push(store.append(&sub(i, 2)).unwrap());
            }
            assert!(!store.set_status(ids[0], 0, RcptStatus::Sent).unwrap());
            assert!(store.set_status(ids[0], 1, RcptStatus::Bounced).unwrap());
            store.set_status(ids[1], 1, RcptStatus::Sent).unwrap();
            sync(&mut store);
        }
        let (store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        assert_eq!(report.messages, 99);
        assert_eq!(report.recipients, 99 * 2 - 1);
        assert!(store.get(ids[0]).is_none());
        let (view, status) = store.get(ids[1]).unwrap();
        assert_eq!(
            view.recipients,
            vec!["r1.0@example.net", "r1.1@example.net"]
        );
        assert_eq!(status.to_vec(), [0, RcptStatus::Sent as u8]);
        // New IDs continue above the recovered ones.
        assert!(ids.iter().all(|&id| id < QueueId::new(0, store.next_seq)));
    }

    #[test]
    fn recovery_reports_the_records_of_leftover_spool_files_delivered_or_not() {
        use crate::model::{FileIdentity, FileKey};
        let file = |name: &str, ino: u64| FileIdentity {
            key: FileKey {
                name: format!("pickup/{name}").into_bytes(),
                dev: 1,
                ino,
                size: 100,
                mtime_ns: 5,
                ctime_ns: 6,
            },
            crc32c: ino as u32,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut ids = vec![];
        {
            let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
            for (i, name) in ["a", "b", "c"].iter().enumerate() {
                let mut s = sub(i, 1);
                s.file_identity = Some(file(name, i as u64 + 10));
                ids.push(store.append(&s).unwrap());
            }
            ids.push(store.append(&sub(3, 1)).unwrap());
            // a was delivered before the kill: still reported.
            store.set_status(ids[0], 0, RcptStatus::Sent).unwrap();
            sync(&mut store);
        }
        let leftovers: HashSet<u64> = [file("a", 10), file("c", 12), file("x", 99)]
            .iter()
            .map(|f| f.key.digest())
            .collect();
        let (_, report) = Store::open_matching(dir.path(), 0, 1, 1 << 20, &leftovers).unwrap();
        let mut found = report.already_queued.clone();
        found.sort_by_key(|(_, id)| *id);
        assert_eq!(found, [(file("a", 10), ids[0]), (file("c", 12), ids[2])]);
        assert_eq!(report.messages, 3, "a is delivered, the rest live");
        let (_, plain) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        assert!(
            plain.already_queued.is_empty(),
            "nothing asked, nothing reported"
        );
    }

    fn identity(name: &str, ino: u64) -> crate::model::FileIdentity {
        crate::model::FileIdentity {
            key: crate::model::FileKey {
                name: format!("pickup/{name}").into_bytes(),
                dev: 1,
                ino,
                size: 300_000,
                mtime_ns: 5,
                ctime_ns: 6,
            },
            crc32c: ino as u32,
        }
    }

    /// A message of about 300 kB read from spool file `name` (so a few
    /// fill a 1 MiB segment).
    fn big_from_file(name: &str, ino: u64) -> Submission {
        let mut s = sub(ino as usize, 1);
        s.wire = vec![b'x'; 300_000];
        s.file_identity = Some(identity(name, ino));
        s
    }

    fn segment_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("0")).unwrap().count()
    }

    #[test]
    fn a_delivered_message_from_a_spool_file_keeps_its_segment_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        let a = store.append(&big_from_file("a", 1)).unwrap();
        let internal = {
            let mut s = sub(9, 1);
            s.wire = vec![b'y'; 300_000];
            store.append(&s).unwrap()
        };
        assert_eq!(store.held_files(), 1, "only the message read from a file");
        // Fill the segment until it rolls over and is sealed.
        let later: Vec<_> = (2..6)
            .map(|i| store.append(&big_from_file("n", i)).unwrap())
            .collect();
        sync(&mut store);
        let before = segment_files(dir.path());
        // The first segment holds a and internal (new mail leaves the
        // reserve free, so a third does not fit); later[0] is in the next.
        store.set_status(a, 0, RcptStatus::Sent).unwrap();
        store.set_status(internal, 0, RcptStatus::Sent).unwrap();
        store.set_status(later[0], 0, RcptStatus::Sent).unwrap();
        store.release_file(later[0]).unwrap();
        assert_eq!(
            segment_files(dir.path()),
            before,
            "delivered, but a's file may still be in the spool"
        );
        store.release_file(internal).unwrap();
        store.release_file(QueueId::new(0, 999_999)).unwrap();
        assert_eq!(
            segment_files(dir.path()),
            before,
            "unknown IDs change nothing"
        );
        store.release_file(a).unwrap();
        assert_eq!(segment_files(dir.path()), before - 1, "now it goes");
        // Released before delivery: the segment goes with the last delivery.
        for id in &later[1..] {
            store.release_file(*id).unwrap();
        }
        assert_eq!(store.held_files(), 0);
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn recovery_keeps_a_matched_segment_across_restarts_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<QueueId> = {
            let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
            let ids: Vec<_> = (1..6)
                .map(|i| store.append(&big_from_file("f", i)).unwrap())
                .collect();
            for id in &ids {
                store.set_status(*id, 0, RcptStatus::Sent).unwrap();
            }
            sync(&mut store);
            ids
        };
        // Killed with everything delivered but file 1 not yet unlinked.
        let leftovers: HashSet<u64> = [identity("f", 1).key.digest()].into_iter().collect();
        for restart in 0..2 {
            let (store, report) =
                Store::open_matching(dir.path(), 0, 1, 1 << 20, &leftovers).unwrap();
            assert_eq!(
                report.already_queued,
                [(identity("f", 1), ids[0])],
                "restart {restart}: still recognised"
            );
            assert_eq!(report.messages, 0);
            assert_eq!(store.held_files(), 1);
            // Killed again before pickup removed the file.
        }
        let (mut store, report) =
            Store::open_matching(dir.path(), 0, 1, 1 << 20, &leftovers).unwrap();
        assert_eq!(report.already_queued.len(), 1);
        let with_held = segment_files(dir.path());
        store.release_file(ids[0]).unwrap();
        assert_eq!(
            segment_files(dir.path()),
            with_held - 1,
            "released: deleted"
        );
        drop(store);
        let (_, report) = Store::open_matching(dir.path(), 0, 1, 1 << 20, &leftovers).unwrap();
        assert!(report.already_queued.is_empty());
    }

    #[test]
    fn get_verifies_the_checksum_and_peek_does_not() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        let id = store.append(&sub(7, 1)).unwrap();
        sync(&mut store);
        assert!(store.get(id).is_some() && store.peek(id).is_some());
        // Damage the last byte of the body in the file (the mapping shows it).
        let seg = store.segs[store.active.unwrap() as usize].as_ref().unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .open(seg.seg.path())
            .unwrap();
        let mut header = [0u8; 16];
        file.read_exact_at(&mut header, FILE_HEADER_LEN as u64)
            .unwrap();
        let payload_len = u32::from_le_bytes(header[4..8].try_into().unwrap()) as u64;
        let at = FILE_HEADER_LEN as u64 + record::HEADER_LEN as u64 + payload_len - 1;
        file.write_all_at(b"#", at).unwrap();
        assert!(store.get(id).is_none(), "a damaged record is not sent");
        let (view, _) = store.peek(id).unwrap();
        assert_eq!(
            view.recipients,
            ["r7.0@example.net"],
            "its envelope still reads"
        );
    }

    /// What a `kill -9` keeps: statuses written with `flush_statuses` are
    /// in the file (the page cache outlives the process), statuses set
    /// after it and records appended after the last commit are not.
    #[test]
    fn a_killed_store_keeps_flushed_statuses_and_nothing_unflushed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        let ids: Vec<_> = (0..4).map(|i| store.append(&sub(i, 1)).unwrap()).collect();
        sync(&mut store);
        assert!(store.set_status(ids[0], 0, RcptStatus::Sent).unwrap());
        assert!(store.set_status(ids[1], 0, RcptStatus::Sent).unwrap());
        store.flush_statuses().unwrap();
        assert!(store.set_status(ids[2], 0, RcptStatus::Sent).unwrap());
        let late = store.append(&sub(9, 1)).unwrap();
        assert!(store.get(late).is_some(), "readable before the commit");
        std::mem::forget(store); // as if killed: nothing more is written
        let (store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        assert_eq!(
            report.messages, 2,
            "ids 2 and 3 are live, the late one was never written"
        );
        assert!(store.get(ids[0]).is_none() && store.get(ids[1]).is_none());
        assert!(store.get(ids[2]).is_some() && store.get(ids[3]).is_some());
        assert!(store.get(late).is_none());
    }

    #[test]
    fn rolls_over_and_collects_empty_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        let big = {
            let mut s = sub(0, 1);
            s.wire = vec![b'x'; 300_000];
            s
        };
        let ids: Vec<_> = (0..10).map(|_| store.append(&big).unwrap()).collect();
        assert!(store.segment_count() >= 3, "{}", store.segment_count());
        let files = || std::fs::read_dir(dir.path().join("0")).unwrap().count();
        let before = files();
        for id in &ids[..9] {
            store.set_status(*id, 0, RcptStatus::Sent).unwrap();
        }
        assert!(files() < before);
        assert_eq!(store.len(), 1);
        // A record bigger than a segment gets a segment of its own.
        let mut huge = sub(1, 1);
        huge.wire = vec![b'y'; 3 << 20];
        let id = store.append(&huge).unwrap();
        assert_eq!(store.get(id).unwrap().0.wire.len(), 3 << 20);
    }

    #[test]
    fn overlong_message_id_is_clipped_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        let mut s = sub(1, 1);
        s.message_id = "é".repeat(40_000);
        let id = store.append(&s).unwrap();
        let (view, _) = store.get(id).unwrap();
        assert!(view.message_id.len() <= MAX_MESSAGE_ID && view.message_id.starts_with('é'));
    }

    #[test]
    fn adopts_directories_of_a_larger_shard_count() {
        let dir = tempfile::tempdir().unwrap();
        for shard in 0..4 {
            let (mut store, _) = Store::open(dir.path(), shard, 4, 1 << 20).unwrap();
            store.append(&sub(shard, 1)).unwrap();
            sync(&mut store);
        }
        let (a, ra) = Store::open(dir.path(), 0, 2, 1 << 20).unwrap();
        let (b, rb) = Store::open(dir.path(), 1, 2, 1 << 20).unwrap();
        assert_eq!((ra.messages, rb.messages), (2, 2));
        assert_eq!(a.len() + b.len(), 4);
    }

    #[test]
    fn torn_tail_is_cut_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let last_off;
        {
            let (mut store, _) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
            for i in 0..10 {
                store.append(&sub(i, 1)).unwrap();
            }
            let id = store.append(&sub(10, 1)).unwrap();
            last_off = store.index[&id].loc.offset as usize;
            sync(&mut store);
        }
        // Corrupt the last record's payload, as a write cut short would.
        let seg = std::fs::read_dir(dir.path().join("0"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max()
            .unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[last_off + 30..last_off + 60].fill(0);
        std::fs::write(&seg, &bytes).unwrap();
        let (store, report) = Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        assert_eq!(report.torn, 1);
        assert_eq!(report.messages, 10);
        assert_eq!(store.len(), 10);
    }
}
