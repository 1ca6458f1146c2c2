//! One segment file: preallocated, memory-mapped, append-only.
//!
//! ```text
//! file header (64 bytes):
//!   magic "RMQSEG\r\n" | version u32 | shard u32 | segno u64 | created_micros u64
//!   | seq_floor u64 | size u64 | reserved (12 zero bytes) | crc32c u32 of bytes 0..60
//! records from offset 64, see `record`
//! ```
//!
//! The file is preallocated with `fallocate`, so a full disk shows up as an
//! error when a segment is created, not halfway through a record.
//!
//! Reads go through a read-only shared mapping; writes (appends, status
//! bytes) go through `pwrite` into the same page cache, which the mapping
//! sees. Writing through a writable mapping instead costs, on every
//! commit, a write-protect pass over the dirty pages with a TLB shootdown
//! (an inter-processor interrupt to every core running a shard) and then a
//! write fault on the next store to each such page; a `pwrite` costs neither.
//!
//! Writes are gathered until [`Segment::flush`], which the group commit
//! calls just before its fdatasync: records appended since the last flush
//! wait in a tail buffer and go out in one `pwrite`, and status bytes set
//! in older records wait in a sorted map and go out as a few `pwrite`s of
//! the ranges around them (the unchanged bytes in between are rewritten as
//! they are). A `pwrite` per record and per status byte was, at ten
//! thousand messages a second, about 6 µs of kernel time per message. Until
//! the flush, reads through [`Segment::record_at`] and [`Segment::byte_at`]
//! see the gathered bytes; the file (and `mailq`, which maps it) does not,
//! which changes nothing about durability: nothing is durable before the
//! fdatasync that follows the flush.
//!
//! **Zeroing ahead.** `fallocate` leaves the reserved space as *unwritten*
//! extents, and the first write into one changes the extent map: the
//! fdatasync that follows must write the inode too (a second I/O, or a
//! journal commit), which made a small commit about half again as slow and
//! costly. So a flush that ends within [`ZERO_LEAD`] of the zeroed part
//! writes the next [`ZERO_CHUNK`] after the data as zeros (as databases
//! zero their log files ahead): that commit converts the extents once for
//! a whole chunk, and the small commits after it write data only. Zeros go
//! only after the end of the data, where the file is zero anyway, so a
//! crash at any point leaves what it would have left before. Large flushes
//! (a commit of many messages, where one inode write per commit is
//! nothing) skip it rather than write their size twice. Only ext4 and XFS
//! get it (the file systems whose `fallocate` leaves unwritten extents);
//! on a copy-on-write one such as btrfs, data written over zeros would be
//! written elsewhere anyway, so zeroing would only double the writes.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};

use super::QueueError;

/// First bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"RMQSEG\r\n";
/// The on-disk format version this code writes. Version 2 added the spool
/// file identity to message records, version 3 the DSN block, version 4
/// the campaign records (kinds 3 and 4); an older
/// reader refuses such files rather than misread them.
pub const FORMAT_VERSION: u32 = 4;
/// The oldest format version this code still reads (a version-1 segment is
/// a version-2 segment in which no record has a file identity, and a
/// version-2 one a version-3 segment in which no record has a DSN block).
pub const OLDEST_READABLE_VERSION: u32 = 1;
/// Size of the file header; the first record starts here.
pub const FILE_HEADER_LEN: usize = 64;

/// The fields of a segment's file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The shard that created the segment.
    pub shard: u32,
    /// Sequence number of the segment within its directory.
    pub segno: u64,
    /// Creation time, microseconds since the epoch.
    pub created_micros: u64,
    /// No queue ID issued after this segment was created has a lower
    /// sequence number: recovery starts the sequence above it.
    pub seq_floor: u64,
    /// File size at creation.
    pub size: u64,
}

impl SegmentHeader {
    fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut b = [0u8; FILE_HEADER_LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.shard.to_le_bytes());
        b[16..24].copy_from_slice(&self.segno.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_micros.to_le_bytes());
        b[32..40].copy_from_slice(&self.seq_floor.to_le_bytes());
        b[40..48].copy_from_slice(&self.size.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a file header.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, String> {
        if b.len() < FILE_HEADER_LEN {
            return Err("file shorter than its header".into());
        }
        if &b[0..8] != MAGIC {
            return Err("bad magic".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        if crc32c::crc32c(&b[0..60]) != u32_at(60) {
            return Err("header checksum mismatch".into());
        }
        let version = u32_at(8);
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(format!(
                "format version {version}, this ringmail reads {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}"
            ));
        }
        Ok(SegmentHeader {
            shard: u32_at(12),
            segno: u64_at(16),
            created_micros: u64_at(24),
            seq_floor: u64_at(32),
            size: u64_at(40),
        })
    }
}

/// The file name of segment `segno`.
pub fn file_name(segno: u64) -> String {
    format!("{segno:016x}.seg")
}

/// Parses a segment file name back into its number.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Largest stretch of unchanged bytes that [`Segment::flush`] rewrites to
/// join two status bytes into one `pwrite`: the copy it costs stays below
/// the cost of a separate system call.
const STATUS_GAP: usize = 8 * 1024;

/// Longest range one status `pwrite` covers.
const STATUS_RUN_MAX: usize = 1 << 20;

/// A tail buffer that would grow past this is written before the next
/// record is added rather than at the next flush, so a burst of large
/// messages does not pile up in memory.
const TAIL_FLUSH_AT: usize = 8 << 20;

/// How far past the end of the data the zeroed part must reach before a
/// flush, or the flush zeroes the next chunk (see the module doc).
const ZERO_LEAD: usize = 256 << 10;

/// How much a flush zeroes ahead at a time.
const ZERO_CHUNK: usize = 1 << 20;

/// The zeros written ahead (in the binary's zero-filled data, not the heap).
static ZEROS: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];

/// An open segment: mapped for reading, written with `pwrite`.
pub struct Segment {
    path: PathBuf,
    file: Arc<File>,
    map: Mmap,
    /// Records appended since the last flush, in order; they start at
    /// offset `tail_start`.
    tail: Vec<u8>,
    /// File offset of `tail[0]`.
    tail_start: usize,
    /// Status bytes set in flushed records since the last flush, by offset.
    pending: BTreeMap<usize, u8>,
    /// Where a status range is built before it is written (kept to reuse
    /// its allocation).
    scratch: Vec<u8>,
    header: SegmentHeader,
    /// The format version in the file header.
    version: u32,
    /// Next append offset.
    write_pos: usize,
    /// True once no more records may be appended (recovered or rolled over).
    sealed: bool,
    /// The file is written (data or zeros) up to here: appends below it
    /// change no extent (see the module doc).
    zeroed_upto: usize,
    /// Small flushes zero ahead (the file system leaves unwritten extents).
    zero_ahead: bool,
}

impl Segment {
    /// Creates, preallocates and maps a new segment in `dir`, then makes the
    /// file durable (fdatasync of the file, fsync of the directory).
    pub fn create(dir: &Path, header: SegmentHeader) -> Result<Segment, QueueError> {
        let path = dir.join(file_name(header.segno));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| QueueError::io("create", &path, e))?;
        if let Err(e) = preallocate(&file, header.size) {
            let _ = std::fs::remove_file(&path);
            return Err(QueueError::io("fallocate", &path, e));
        }
        // From here on a failure removes the file again: a segment that was
        // never handed out must not keep its number (the next attempt
        // creates the same name) nor its disk space.
        let remove_on_error = |e: QueueError| {
            let _ = std::fs::remove_file(&path);
            e
        };
        let map = map_ro(&file).map_err(|e| remove_on_error(QueueError::io("mmap", &path, e)))?;
        file.write_all_at(&header.encode(), 0)
            .map_err(|e| remove_on_error(QueueError::io("write", &path, e)))?;
        file.sync_data()
            .map_err(|e| remove_on_error(QueueError::io("fdatasync", &path, e)))?;
        sync_dir(dir).map_err(remove_on_error)?;
        let zero_ahead = has_unwritten_extents(&file);
        Ok(Segment {
            path,
            file: Arc::new(file),
            map,
            tail: Vec::new(),
            tail_start: FILE_HEADER_LEN,
            pending: BTreeMap::new(),
            scratch: Vec::new(),
            header,
            version: FORMAT_VERSION,
            write_pos: FILE_HEADER_LEN,
            sealed: false,
            zeroed_upto: FILE_HEADER_LEN,
            zero_ahead,
        })
    }

    /// Opens an existing segment for recovery. It starts sealed: nothing is
    /// appended to it unless recovery continues it with
    /// [`Segment::resume_at`] (never after a torn record, so a cut tail
    /// stays untouched).
    pub fn open(path: &Path) -> Result<Segment, QueueError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| QueueError::io("open", path, e))?;
        let map = map_ro(&file).map_err(|e| QueueError::io("mmap", path, e))?;
        let header = SegmentHeader::decode(&map).map_err(|reason| QueueError::BadSegment {
            path: path.to_path_buf(),
            reason,
        })?;
        // Checked by `decode`: the header is there and its checksum matches.
        let version = u32::from_le_bytes([map[8], map[9], map[10], map[11]]);
        let zero_ahead = has_unwritten_extents(&file);
        Ok(Segment {
            path: path.to_path_buf(),
            file: Arc::new(file),
            map,
            tail: Vec::new(),
            tail_start: FILE_HEADER_LEN,
            pending: BTreeMap::new(),
            scratch: Vec::new(),
            header,
            version,
            write_pos: FILE_HEADER_LEN,
            sealed: true,
            zeroed_upto: FILE_HEADER_LEN,
            zero_ahead,
        })
    }

    /// Unseals a segment opened with [`Segment::open`] so that appends
    /// continue at `end`, the offset just past the last record recovery
    /// found (which stopped at the end marker, not at a torn record).
    /// Refused (returning false, the segment stays sealed) unless every
    /// byte from `end` to the end of the file is zero: anything else there
    /// is left from a write that was cut short (pages written out of order
    /// before a power loss), and records appended in front of it could
    /// make a later recovery walk on into it. Also refused for a segment of
    /// an older format version and while anything is unflushed.
    pub fn resume_at(&mut self, end: usize) -> bool {
        if self.version != FORMAT_VERSION
            || self.has_unflushed()
            || end < FILE_HEADER_LEN
            || end > self.map.len()
            || !all_zero(&self.map[end..])
        {
            return false;
        }
        self.tail_start = end;
        self.write_pos = end;
        self.zeroed_upto = end;
        self.sealed = false;
        true
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The decoded file header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// The format version the file header names.
    pub fn format_version(&self) -> u32 {
        self.version
    }

    /// The file, shared so a commit can fdatasync it off the shard's thread.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// The whole mapped file: what was written to it, without the appends
    /// and status bytes gathered since the last [`Segment::flush`]. For
    /// recovery, which reads a segment before writing to it.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The segment from `offset` on, including records appended since the
    /// last flush (a record starting in the tail buffer is read from it).
    /// Status bytes set since the last flush are not applied: read those
    /// with [`Segment::byte_at`].
    pub fn record_at(&self, offset: usize) -> &[u8] {
        if offset >= self.tail_start && !self.tail.is_empty() {
            self.tail.get(offset - self.tail_start..).unwrap_or(&[])
        } else {
            self.map.get(offset..).unwrap_or(&[])
        }
    }

    /// The byte at `offset` as last set, flushed or not.
    pub fn byte_at(&self, offset: usize) -> Option<u8> {
        if let Some(b) = self.tail_byte(offset) {
            return Some(b);
        }
        if let Some(&b) = self.pending.get(&offset) {
            return Some(b);
        }
        self.map.get(offset).copied()
    }

    fn tail_byte(&self, offset: usize) -> Option<u8> {
        offset
            .checked_sub(self.tail_start)
            .and_then(|i| self.tail.get(i))
            .copied()
    }

    /// True when appends or status bytes wait for [`Segment::flush`].
    pub fn has_unflushed(&self) -> bool {
        !self.tail.is_empty() || !self.pending.is_empty()
    }

    /// Writes the gathered appends (one `pwrite`) and status bytes (one
    /// `pwrite` per run of nearby bytes) to the file. On error nothing is
    /// dropped: the next flush tries again.
    pub fn flush(&mut self) -> Result<(), QueueError> {
        self.flush_tail()?;
        self.flush_statuses()
    }

    /// Writes the status bytes gathered since the last flush (one `pwrite`
    /// per run of nearby bytes), leaving appends for the next
    /// [`Segment::flush`]. A status written with `pwrite` survives the
    /// daemon being killed, which is what keeps redeliveries after a
    /// `kill -9` down to the messages in flight.
    pub fn flush_statuses(&mut self) -> Result<(), QueueError> {
        while let Some((&lo, _)) = self.pending.first_key_value() {
            // A run: status bytes at most STATUS_GAP apart, within
            // STATUS_RUN_MAX, all inside flushed records.
            let mut hi = lo;
            for (&pos, _) in self.pending.range(lo..) {
                if pos - hi > STATUS_GAP || pos - lo >= STATUS_RUN_MAX {
                    break;
                }
                hi = pos;
            }
            let Some(current) = self.map.get(lo..=hi) else {
                // Past the mapping (cannot happen: positions come from
                // records in it); drop them rather than loop forever.
                self.pending.retain(|&p, _| p < lo || p > hi);
                continue;
            };
            self.scratch.clear();
            self.scratch.extend_from_slice(current);
            for (&pos, &value) in self.pending.range(lo..=hi) {
                self.scratch[pos - lo] = value;
            }
            self.file
                .write_all_at(&self.scratch, lo as u64)
                .map_err(|e| QueueError::io("write", &self.path, e))?;
            let rest = self.pending.split_off(&(hi + 1));
            self.pending = rest;
        }
        Ok(())
    }

    /// Forgets what was gathered and not written: for a segment about to
    /// be deleted.
    pub fn discard_unflushed(&mut self) {
        self.tail_start += self.tail.len();
        self.tail.clear();
        self.pending.clear();
    }

    /// Writes the tail buffer, if any, with one `pwrite`.
    fn flush_tail(&mut self) -> Result<(), QueueError> {
        if self.tail.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(&self.tail, self.tail_start as u64)
            .map_err(|e| QueueError::io("write", &self.path, e))?;
        let small = self.tail.len() < ZERO_CHUNK / 4;
        self.tail_start += self.tail.len();
        self.tail.clear();
        self.zeroed_upto = self.zeroed_upto.max(self.tail_start);
        if self.zero_ahead && small && self.zeroed_upto < self.tail_start + ZERO_LEAD {
            self.zero_ahead();
        }
        Ok(())
    }

    /// Writes zeros over the next [`ZERO_CHUNK`] after the data (see the
    /// module doc). Only an optimisation: a failure is logged and the
    /// appends go on into the unwritten space as they would have.
    fn zero_ahead(&mut self) {
        let from = self.zeroed_upto;
        let to = (from + ZERO_CHUNK).min(self.map.len());
        if from >= to {
            return;
        }
        match self.file.write_all_at(&ZEROS[..to - from], from as u64) {
            Ok(()) => self.zeroed_upto = to,
            Err(e) => {
                tracing::debug!(target: "queue", "{}: cannot zero ahead: {e}", self.path.display());
                // Not tried again for this segment.
                self.zeroed_upto = self.map.len();
            }
        }
    }

    /// True once the segment takes no more appends.
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// Stops appends to this segment.
    pub fn seal(&mut self) {
        self.sealed = true;
    }

    /// Bytes still free for appends.
    pub fn free(&self) -> usize {
        if self.sealed {
            0
        } else {
            self.map.len() - self.write_pos
        }
    }

    /// Lets `fill` build a record of `len` bytes (handed out zeroed) at the
    /// end of the data; returns the record's offset. The record is readable
    /// at once through [`Segment::record_at`] and written to the file by the
    /// next [`Segment::flush`]. Fails (returning `None`) when the segment is
    /// sealed or full; a failed `fill` leaves the end of the data where it
    /// was.
    pub fn append<E: From<QueueError>>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Option<Result<usize, E>> {
        if len > self.free() {
            return None;
        }
        if !self.tail.is_empty() && self.tail.len() + len > TAIL_FLUSH_AT {
            // Written before this record is added, so a failure leaves no
            // trace of it (the earlier records stay for the next flush).
            if let Err(e) = self.flush_tail() {
                return Some(Err(e.into()));
            }
        }
        let off = self.write_pos;
        debug_assert_eq!(off, self.tail_start + self.tail.len());
        let start = self.tail.len();
        self.tail.resize(start + len, 0);
        if let Err(e) = fill(&mut self.tail[start..]) {
            self.tail.truncate(start);
            return Some(Err(e));
        }
        self.write_pos += len;
        Some(Ok(off))
    }

    /// Sets one byte in place (a recipient status byte); written by the
    /// next [`Segment::flush_statuses`] or [`Segment::flush`].
    pub fn set_byte(&mut self, offset: usize, value: u8) {
        if offset >= self.map.len() {
            return;
        }
        if let Some(i) = offset.checked_sub(self.tail_start) {
            if let Some(b) = self.tail.get_mut(i) {
                *b = value;
                return;
            }
        }
        self.pending.insert(offset, value);
    }
}

impl Drop for Segment {
    /// Writes what is gathered (a clean stop commits first, so this is only
    /// a fallback; errors cannot be reported here).
    fn drop(&mut self) {
        if self.has_unflushed() {
            let _ = self.flush();
        }
    }
}

/// Maps a whole file read-only: the daemon's view of its segments, and
/// `mailq`'s.
pub fn map_ro(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: the mapping is shared with the file. The daemon never
    // truncates a segment file (it only unlinks whole files, which leaves
    // existing mappings valid), so the mapped range stays backed for the
    // mapping's whole lifetime and no SIGBUS can come from a shrinking file.
    // Bytes written concurrently (by this daemon's `pwrite`, or seen by
    // `mailq` from another process) may be read half-written; the record
    // checksums detect that, and the daemon only reads a record after
    // writing it.
    unsafe { MmapOptions::new().map(file) }
}

/// True when every byte of `b` is zero (checked a page at a time, which
/// the compiler vectorises).
fn all_zero(b: &[u8]) -> bool {
    b.chunks(4096)
        .all(|page| page.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

/// True when `file` is on ext4 or XFS, whose `fallocate` leaves unwritten
/// extents that a commit's fdatasync must convert (see the module doc).
fn has_unwritten_extents(file: &File) -> bool {
    /// `EXT4_SUPER_MAGIC` (ext2, ext3 and ext4 share it) and
    /// `XFS_SUPER_MAGIC`, from linux/magic.h.
    const EXT4: u64 = 0xEF53;
    const XFS: u64 = 0x5846_5342;
    match rustix::fs::fstatfs(file) {
        // `f_type` is signed on some targets: the magic numbers fit either way.
        Ok(fs) => matches!(fs.f_type as u64, EXT4 | XFS),
        Err(_) => false,
    }
}

/// Reserves `size` bytes of disk for `file`, falling back to writing zeros
/// where the file system has no fallocate.
fn preallocate(file: &File, size: u64) -> std::io::Result<()> {
    use rustix::fs::{fallocate, FallocateFlags};
    match fallocate(file, FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
            use std::io::Write;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let zeros = vec![0u8; 1 << 20];
            let mut left = size;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                w.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            w.flush()
        }
        Err(e) => Err(e.into()),
    }
}

/// fsyncs a directory so that file creations, renames and unlinks in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    crate::spool::sync_dir(dir).map_err(|e| QueueError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(segno: u64) -> SegmentHeader {
        SegmentHeader {
            shard: 1,
            segno,
            created_micros: 5,
            seq_floor: 99,
            size: 1 << 20,
        }
    }

    #[test]
    fn create_append_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), header(7)).unwrap();
        assert_eq!(std::fs::metadata(seg.path()).unwrap().len(), 1 << 20);
        let off = seg
            .append(16, |b| {
                b.copy_from_slice(&[1u8; 16]);
                Ok::<(), QueueError>(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(off, FILE_HEADER_LEN);
        assert!(seg.append(2 << 20, |_| Ok::<(), QueueError>(())).is_none());
        seg.set_byte(70, 9);
        assert_eq!(seg.byte_at(70), Some(9));
        assert_eq!(&seg.record_at(64)[..8], &[1, 1, 1, 1, 1, 1, 9, 1]);
        assert_eq!(
            &seg.bytes()[64..72],
            &[0; 8],
            "not written before the flush"
        );
        seg.flush().unwrap();
        assert_eq!(&seg.bytes()[64..72], &[1, 1, 1, 1, 1, 1, 9, 1]);
        drop(seg);
        let seg = Segment::open(&dir.path().join(file_name(7))).unwrap();
        assert_eq!(seg.header(), &header(7));
        assert!(seg.is_sealed());
        let mut want = [1u8; 16];
        want[6] = 9;
        assert_eq!(&seg.bytes()[64..80], &want);
    }

    /// Zeroing ahead is on exactly where `stat -f` names ext4 or XFS: the
    /// test directory's file system as it is, and never procfs.
    #[test]
    fn zeroing_ahead_follows_the_file_system_type() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Segment::create(dir.path(), header(10)).unwrap();
        let out = std::process::Command::new("stat")
            .args(["-f", "--format=%t"])
            .arg(dir.path())
            .output()
            .unwrap();
        let fs_type = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            seg.zero_ahead,
            matches!(fs_type.trim(), "ef53" | "58465342"),
            "file system type {fs_type:?}"
        );
        let proc_file = File::open("/proc/self/stat").unwrap();
        assert!(!has_unwritten_extents(&proc_file));
    }

    #[test]
    fn small_flushes_zero_ahead_and_large_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = header(9);
        h.size = 4 << 20;
        let mut seg = Segment::create(dir.path(), h).unwrap();
        // Whatever file system the test directory is on.
        seg.zero_ahead = true;
        let record = |len: usize, v: u8| {
            move |b: &mut [u8]| {
                assert_eq!(b.len(), len);
                b.fill(v);
                Ok::<(), QueueError>(())
            }
        };
        seg.append(100, record(100, 1)).unwrap().unwrap();
        seg.flush().unwrap();
        let end = FILE_HEADER_LEN + 100;
        assert_eq!(seg.zeroed_upto, end + ZERO_CHUNK, "a chunk after the data");
        // Within the lead of the zeroed end: nothing more yet.
        seg.append(1000, record(1000, 2)).unwrap().unwrap();
        seg.flush().unwrap();
        assert_eq!(seg.zeroed_upto, end + ZERO_CHUNK);
        // A large flush goes past the zeroed part and zeroes nothing.
        let big = ZERO_CHUNK + 4096;
        seg.append(big, record(big, 3)).unwrap().unwrap();
        seg.flush().unwrap();
        let data_end = end + 1000 + big;
        assert_eq!(seg.zeroed_upto, data_end);
        // The next small one zeroes again, up to the end of the file at most.
        seg.append(10, record(10, 4)).unwrap().unwrap();
        seg.flush().unwrap();
        assert_eq!(seg.zeroed_upto, (data_end + 10 + ZERO_CHUNK).min(4 << 20));
        // The data is intact and everything after it zero, reopened too.
        drop(seg);
        let seg = Segment::open(&dir.path().join(file_name(9))).unwrap();
        let b = seg.bytes();
        assert!(b[FILE_HEADER_LEN..end].iter().all(|&x| x == 1));
        assert!(b[end..end + 1000].iter().all(|&x| x == 2));
        assert!(b[end + 1000..data_end].iter().all(|&x| x == 3));
        assert!(b[data_end..data_end + 10].iter().all(|&x| x == 4));
        assert!(all_zero(&b[data_end + 10..]));
    }

    /// Appends, status bytes near and far apart, flushes at odd moments:
    /// reads before a flush, the file after it and the file after a reopen
    /// all match a plain model of the bytes.
    #[test]
    fn gathered_writes_match_a_model_before_and_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), header(3)).unwrap();
        let mut model = vec![0u8; 1 << 20];
        model[..FILE_HEADER_LEN].copy_from_slice(&seg.bytes()[..FILE_HEADER_LEN]);
        let mut offsets = Vec::new();
        let mut rng = fastrand::Rng::with_seed(7);
        for i in 0..120usize {
            // Small records (statuses a few hundred bytes apart) and large
            // ones (statuses further apart than STATUS_GAP).
            let len = if i % 7 == 0 { 20_000 } else { 300 + i };
            let fill = (i % 251) as u8 + 1;
            let off = seg
                .append(len, |b| {
                    b.fill(fill);
                    Ok::<(), QueueError>(())
                })
                .unwrap()
                .unwrap();
            model[off..off + len].fill(fill);
            offsets.push((off, len));
            if i % 40 == 39 {
                seg.flush().unwrap();
            }
            // Status bytes in this record (still in the tail) and in
            // earlier, flushed ones.
            for _ in 0..3 {
                let (o, l) = offsets[rng.usize(..offsets.len())];
                let pos = o + rng.usize(..l);
                let v = rng.u8(..);
                seg.set_byte(pos, v);
                model[pos] = v;
            }
            for &(o, l) in offsets.iter().rev().take(3) {
                assert_eq!(seg.byte_at(o + l - 1), Some(model[o + l - 1]));
            }
            if i % 40 != 39 {
                // The newest record is in the tail, statuses applied.
                let (o, l) = offsets[i];
                assert_eq!(&seg.record_at(o)[..l], &model[o..o + l]);
            }
        }
        for pos in (0..model.len()).step_by(97) {
            assert_eq!(seg.byte_at(pos), Some(model[pos]), "at {pos}");
        }
        assert!(seg.has_unflushed());
        seg.flush().unwrap();
        assert!(!seg.has_unflushed());
        assert!(
            seg.bytes() == &model[..],
            "the file matches the model after the flush"
        );
        drop(seg);
        let seg = Segment::open(&dir.path().join(file_name(3))).unwrap();
        assert!(seg.bytes() == &model[..], "and after a reopen");
    }

    #[test]
    fn a_large_tail_is_written_before_it_grows_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = header(5);
        h.size = 32 << 20;
        let mut seg = Segment::create(dir.path(), h).unwrap();
        let mb = 1 << 20;
        let mut offs = Vec::new();
        for i in 0..20u8 {
            offs.push(
                seg.append(mb, |b| {
                    b.fill(i + 1);
                    Ok::<(), QueueError>(())
                })
                .unwrap()
                .unwrap(),
            );
            assert!(
                seg.tail.len() <= TAIL_FLUSH_AT,
                "tail {} at record {i}",
                seg.tail.len()
            );
        }
        // The first records reached the file without a flush.
        assert_eq!(seg.bytes()[offs[0]], 1);
        assert_eq!(seg.bytes()[offs[7] + mb - 1], 8);
        assert_eq!(seg.bytes()[offs[19]], 0, "the last one waits");
        assert_eq!(seg.record_at(offs[19])[0], 20);
        seg.flush().unwrap();
        for (i, &o) in offs.iter().enumerate() {
            assert_eq!(seg.bytes()[o], i as u8 + 1);
            assert_eq!(seg.bytes()[o + mb - 1], i as u8 + 1);
        }
    }

    #[test]
    fn discarded_writes_never_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), header(4)).unwrap();
        let off = seg
            .append(8, |b| {
                b.fill(5);
                Ok::<(), QueueError>(())
            })
            .unwrap()
            .unwrap();
        seg.flush().unwrap();
        seg.set_byte(off, 9);
        seg.append(8, |b| {
            b.fill(6);
            Ok::<(), QueueError>(())
        })
        .unwrap()
        .unwrap();
        seg.discard_unflushed();
        drop(seg);
        let seg = Segment::open(&dir.path().join(file_name(4))).unwrap();
        assert_eq!(
            &seg.bytes()[off..off + 16],
            &[5, 5, 5, 5, 5, 5, 5, 5, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn refuses_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(file_name(1));
        std::fs::write(&p, vec![7u8; 4096]).unwrap();
        assert!(matches!(
            Segment::open(&p),
            Err(QueueError::BadSegment { .. })
        ));
        let mut h = header(1).encode();
        h[8] = 9; // version
        std::fs::write(&p, h).unwrap();
        assert!(Segment::open(&p).is_err());
        let newer = with_version(header(1).encode(), FORMAT_VERSION + 1);
        std::fs::write(&p, newer).unwrap();
        let Err(QueueError::BadSegment { reason, .. }) = Segment::open(&p) else {
            panic!("a newer version opened");
        };
        assert!(
            reason.contains(&format!("format version {}", FORMAT_VERSION + 1)),
            "{reason}"
        );
    }

    /// A header as `version` wrote it (checksum recomputed).
    fn with_version(h: [u8; FILE_HEADER_LEN], version: u32) -> Vec<u8> {
        let mut h = h.to_vec();
        h[8..12].copy_from_slice(&version.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    #[test]
    fn reads_version_1_segments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(file_name(1));
        let mut bytes = with_version(header(1).encode(), 1);
        bytes.resize(4096, 0);
        std::fs::write(&p, bytes).unwrap();
        let seg = Segment::open(&p).unwrap();
        assert_eq!(seg.header().segno, 1);
    }

    #[test]
    fn resume_at_continues_only_before_zeros_in_the_current_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), header(8)).unwrap();
        let fill = |v: u8| {
            move |b: &mut [u8]| {
                b.fill(v);
                Ok::<(), QueueError>(())
            }
        };
        seg.append(32, fill(1)).unwrap().unwrap();
        seg.flush().unwrap();
        drop(seg);
        let path = dir.path().join(file_name(8));
        let end = FILE_HEADER_LEN + 32;
        let mut seg = Segment::open(&path).unwrap();
        assert_eq!(seg.free(), 0, "opened sealed");
        assert!(!seg.resume_at(end - 1), "not in front of written bytes");
        assert!(seg.resume_at(end));
        assert_eq!(seg.free(), (1 << 20) - end);
        assert_eq!(seg.append(16, fill(2)).unwrap().unwrap(), end);
        assert_eq!(seg.record_at(end)[..16], [2; 16]);
        seg.flush().unwrap();
        drop(seg);
        let seg = Segment::open(&path).unwrap();
        assert_eq!(seg.bytes()[end - 1..end + 17], {
            let mut want = [2u8; 18];
            want[0] = 1;
            want[17] = 0;
            want
        });
        drop(seg);
        // A byte far behind the end: refused.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&[9], 500_000)
            .unwrap();
        let mut seg = Segment::open(&path).unwrap();
        assert!(!seg.resume_at(end + 16));
        assert!(seg.is_sealed());
        // An older format version: refused.
        let p1 = dir.path().join(file_name(1));
        let mut bytes = with_version(header(1).encode(), 1);
        bytes.resize(4096, 0);
        std::fs::write(&p1, bytes).unwrap();
        let mut old = Segment::open(&p1).unwrap();
        assert_eq!(old.format_version(), 1);
        assert!(!old.resume_at(FILE_HEADER_LEN));
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_file_name(&file_name(0xabc)), Some(0xabc));
        assert_eq!(parse_file_name("x.seg"), None);
        assert_eq!(parse_file_name(".tmp"), None);
    }
}
