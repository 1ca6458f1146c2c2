//! The record codec: every record in a segment is a 16-byte header, a
//! CRC-protected payload, an optional mutable status area, and zero padding
//! to an 8-byte boundary. Little-endian throughout.
//!
//! ```text
//! header:  kind u16 | reserved u16 | payload_len u32 | aux_len u32 | crc32c u32
//! payload: payload_len bytes, covered by the CRC together with header bytes 0..12
//! aux:     aux_len bytes, NOT covered by the CRC (recipient status bytes)
//! pad:     zeros up to the next multiple of 8
//! ```
//!
//! A header of all zeros marks the end of the data (segments are
//! preallocated with zeros).

use crate::model::{
    BodyType, DsnParams, DsnRet, FileIdentity, FileKey, MessageFlags, Notify, QueueId, RcptDsn,
};

use super::QueueError;

/// Size of a record header.
pub const HEADER_LEN: usize = 16;
/// Records start and end on multiples of this.
pub const ALIGN: usize = 8;

/// Record kinds. 0 is never written: it marks the end of data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// A queued message: envelope, flags and wire form; aux = recipient status bytes.
    Message = 1,
    /// Why a recipient was deferred and when it is retried (appended by delivery).
    Defer = 2,
    /// A newsletter campaign: its template and options, once per shard that
    /// holds recipients of it (format version 4).
    Campaign = 3,
    /// A slice of a campaign's recipient list: laid out as a message
    /// record (so the index treats it as one) with the recipients' merge
    /// fields after; aux = recipient status bytes (format version 4).
    Recipients = 4,
}

impl Kind {
    fn from_u16(v: u16) -> Option<Kind> {
        match v {
            1 => Some(Kind::Message),
            2 => Some(Kind::Defer),
            3 => Some(Kind::Campaign),
            4 => Some(Kind::Recipients),
            _ => None,
        }
    }
}

/// Total bytes a record with these lengths occupies, padding included.
pub fn record_len(payload_len: usize, aux_len: usize) -> usize {
    (HEADER_LEN + payload_len + aux_len).div_ceil(ALIGN) * ALIGN
}

/// The borrowed contents of a message record, for encoding.
#[derive(Clone, Copy, Debug)]
pub struct MessageRef<'a> {
    /// The queue ID.
    pub id: QueueId,
    /// Arrival time, microseconds since the epoch.
    pub arrival_micros: u64,
    /// 8BITMIME/SMTPUTF8 flags.
    pub flags: MessageFlags,
    /// Submitting uid.
    pub uid: u32,
    /// Envelope sender ("" for `<>`).
    pub sender: &'a str,
    /// Envelope recipients.
    pub recipients: &'a [String],
    /// Message-ID without angle brackets.
    pub message_id: &'a str,
    /// The wire form.
    pub wire: &'a [u8],
    /// The spool file the message was read from, if any.
    pub file_identity: Option<&'a FileIdentity>,
    /// DSN requests and the declared body type (format version 3); not
    /// written when empty.
    pub dsn: &'a DsnParams,
}

/// A decoded message record, borrowing from the segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// The queue ID.
    pub id: QueueId,
    /// Arrival time, microseconds since the epoch.
    pub arrival_micros: u64,
    /// 8BITMIME/SMTPUTF8 flags.
    pub flags: MessageFlags,
    /// Submitting uid.
    pub uid: u32,
    /// Envelope sender ("" for `<>`).
    pub sender: &'a str,
    /// Envelope recipients, in order; their status bytes are the record's aux area.
    pub recipients: Vec<&'a str>,
    /// Message-ID without angle brackets.
    pub message_id: &'a str,
    /// The wire form.
    pub wire: &'a [u8],
    /// DSN requests and the declared body type (empty for a record without
    /// them, as every record of format versions 1 and 2).
    pub dsn: DsnParams,
    /// For a campaign slice ([`Kind::Recipients`]): the campaign and the
    /// recipients' merge fields; the wire form is rendered at delivery.
    pub campaign: Option<super::campaign_record::SliceFields<'a>>,
}

/// A decoded defer record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeferView<'a> {
    /// The message.
    pub id: QueueId,
    /// Index of the recipient in the message record.
    pub rcpt: u32,
    /// When the next attempt is due, microseconds since the epoch.
    pub next_attempt_micros: u64,
    /// The reason, as shown by `mailq`.
    pub reason: &'a str,
}

/// Payload length of a message record, or an error when a field is too long
/// for its length prefix.
pub fn message_payload_len(m: &MessageRef<'_>) -> Result<usize, QueueError> {
    let mut len = 8 + 8 + 4 + 4 + 4;
    len += 2 + short_len(m.sender.len(), "sender")?;
    for r in m.recipients {
        len += 2 + short_len(r.len(), "recipient")?;
    }
    len += 2 + short_len(m.message_id.len(), "message-id")?;
    if let Some(f) = m.file_identity {
        len += FILE_IDENTITY_FIXED_LEN + 2 + short_len(f.key.name.len(), "spool file name")?;
    }
    if !m.dsn.is_empty() {
        len += 1 + 1 + 2 + short_len(m.dsn.envid.as_deref().map_or(0, str::len), "ENVID")?;
        for i in 0..m.recipients.len() {
            len += 1 + 2 + short_len(m.dsn.orcpt(i).map_or(0, str::len), "ORCPT")?;
        }
    }
    if m.wire.len() > (u32::MAX as usize).saturating_sub(len + 64) {
        return Err(QueueError::TooBig("message body"));
    }
    u32::try_from(m.recipients.len()).map_err(|_| QueueError::TooBig("recipient count"))?;
    len += 4 + m.wire.len();
    Ok(len)
}

pub(super) fn short_len(n: usize, what: &'static str) -> Result<usize, QueueError> {
    if n > u16::MAX as usize {
        Err(QueueError::TooBig(what))
    } else {
        Ok(n)
    }
}

/// Set in a message record's flags word when a spool file identity follows
/// the wire form (format version 2). Not a message property: never part of
/// the decoded [`MessageFlags`].
const FLAG_FILE_IDENTITY: u32 = 1 << 31;

/// Set in a message record's flags word when a DSN block follows the wire
/// form and the file identity (format version 3). Not a message property
/// either.
const FLAG_DSN: u32 = 1 << 30;

/// The flag bits that describe the record's layout, not the message.
const LAYOUT_FLAGS: u32 = FLAG_FILE_IDENTITY | FLAG_DSN;

/// Bytes of a file identity before its name: dev, ino, size, mtime, ctime
/// (8 each) and the CRC (4).
const FILE_IDENTITY_FIXED_LEN: usize = 5 * 8 + 4;

/// Encodes a complete message record (header, payload, zeroed status area,
/// padding) into `out`, which must be exactly [`record_len`] long and zeroed.
/// Returns the offset of the status area within `out`.
pub fn encode_message(m: &MessageRef<'_>, out: &mut [u8]) -> Result<usize, QueueError> {
    let payload_len = message_payload_len(m)?;
    let aux_len = m.recipients.len();
    debug_assert_eq!(out.len(), record_len(payload_len, aux_len));
    let mut w = Writer {
        buf: out,
        pos: HEADER_LEN,
    };
    w.u64(m.id.raw());
    w.u64(m.arrival_micros);
    let mut layout = 0;
    if m.file_identity.is_some() {
        layout |= FLAG_FILE_IDENTITY;
    }
    if !m.dsn.is_empty() {
        layout |= FLAG_DSN;
    }
    w.u32((m.flags.0 & !LAYOUT_FLAGS) | layout);
    w.u32(m.uid);
    w.u32(m.recipients.len() as u32);
    w.short_bytes(m.sender.as_bytes());
    for r in m.recipients {
        w.short_bytes(r.as_bytes());
    }
    w.short_bytes(m.message_id.as_bytes());
    w.u32(m.wire.len() as u32);
    w.bytes(m.wire);
    if let Some(f) = m.file_identity {
        w.u64(f.key.dev);
        w.u64(f.key.ino);
        w.u64(f.key.size);
        w.u64(f.key.mtime_ns as u64);
        w.u64(f.key.ctime_ns as u64);
        w.u32(f.crc32c);
        w.short_bytes(&f.key.name);
    }
    if layout & FLAG_DSN != 0 {
        write_dsn(&mut w, m.dsn, m.recipients.len());
    }
    debug_assert_eq!(w.pos, HEADER_LEN + payload_len);
    finish_header(out, Kind::Message, payload_len, aux_len);
    Ok(HEADER_LEN + payload_len)
}

/// Writes the DSN block: RET (u8: 0 none, 1 FULL, 2 HDRS), BODY (u8: 0
/// none, 1 7BIT, 2 8BITMIME), ENVID (2+n, empty for none), then per
/// recipient NOTIFY (u8, [`Notify::bits`]) and ORCPT (2+n, empty for none).
fn write_dsn(w: &mut Writer<'_>, dsn: &DsnParams, nrcpt: usize) {
    w.bytes(&[
        match dsn.ret {
            None => 0,
            Some(DsnRet::Full) => 1,
            Some(DsnRet::Headers) => 2,
        },
        match dsn.body {
            None => 0,
            Some(BodyType::SevenBit) => 1,
            Some(BodyType::EightBitMime) => 2,
        },
    ]);
    w.short_bytes(dsn.envid.as_deref().unwrap_or("").as_bytes());
    for i in 0..nrcpt {
        w.bytes(&[dsn.notify(i).bits()]);
        w.short_bytes(dsn.orcpt(i).unwrap_or("").as_bytes());
    }
}

/// Reads the DSN block [`write_dsn`] wrote for `nrcpt` recipients.
fn read_dsn(r: &mut Reader<'_>, nrcpt: usize) -> Result<DsnParams, QueueError> {
    let codes = r.take(2)?;
    let ret = match codes[0] {
        0 => None,
        1 => Some(DsnRet::Full),
        2 => Some(DsnRet::Headers),
        _ => return Err(QueueError::BadRecord("unknown RET in message record")),
    };
    let body = match codes[1] {
        0 => None,
        1 => Some(BodyType::SevenBit),
        2 => Some(BodyType::EightBitMime),
        _ => return Err(QueueError::BadRecord("unknown BODY in message record")),
    };
    let envid = Some(r.short_str()?)
        .filter(|e| !e.is_empty())
        .map(str::to_string);
    let mut rcpts = Vec::with_capacity(nrcpt.min(r.buf.len() / 3));
    for _ in 0..nrcpt {
        let notify = Notify::from_bits(r.take(1)?[0])
            .ok_or(QueueError::BadRecord("bad NOTIFY in message record"))?;
        let orcpt = Some(r.short_str()?)
            .filter(|o| !o.is_empty())
            .map(str::to_string);
        rcpts.push(RcptDsn { notify, orcpt });
    }
    Ok(DsnParams {
        ret,
        envid,
        body,
        rcpts,
    })
}

/// Encodes a defer record into a fresh vector.
pub fn encode_defer(d: &DeferView<'_>) -> Vec<u8> {
    let reason = &d.reason.as_bytes()[..d.reason.len().min(u16::MAX as usize)];
    let payload_len = 8 + 4 + 8 + 2 + reason.len();
    let mut out = vec![0u8; record_len(payload_len, 0)];
    let mut w = Writer {
        buf: &mut out,
        pos: HEADER_LEN,
    };
    w.u64(d.id.raw());
    w.u32(d.rcpt);
    w.u64(d.next_attempt_micros);
    w.short_bytes(reason);
    finish_header(&mut out, Kind::Defer, payload_len, 0);
    out
}

pub(super) fn finish_header(out: &mut [u8], kind: Kind, payload_len: usize, aux_len: usize) {
    out[0..2].copy_from_slice(&(kind as u16).to_le_bytes());
    out[2..4].copy_from_slice(&0u16.to_le_bytes());
    out[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[8..12].copy_from_slice(&(aux_len as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&out[0..12]),
        &out[HEADER_LEN..HEADER_LEN + payload_len],
    );
    out[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// What the scanner found at one position of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan<'a> {
    /// A valid record.
    Record {
        /// Its kind.
        kind: Kind,
        /// The CRC-checked payload.
        payload: &'a [u8],
        /// Offset of the status area relative to the record start.
        aux_offset: usize,
        /// Length of the status area.
        aux_len: usize,
        /// Total length including padding: the next record starts here.
        total_len: usize,
    },
    /// An all-zero header: no more records.
    End,
    /// Something that is not a complete valid record: a torn write or damage.
    Torn(&'static str),
}

/// Examines the record starting at the beginning of `buf` (the rest of the segment).
pub fn scan(buf: &[u8]) -> Scan<'_> {
    scan_checked(buf, true)
}

/// [`scan`] without the checksum, for a record already verified (when it
/// was appended or recovered) whose envelope is read again: the length
/// checks still hold, so a damaged record can give wrong fields but never
/// a read out of bounds.
pub fn scan_unverified(buf: &[u8]) -> Scan<'_> {
    scan_checked(buf, false)
}

fn scan_checked(buf: &[u8], verify: bool) -> Scan<'_> {
    if buf.len() < HEADER_LEN {
        return if buf.iter().all(|&b| b == 0) {
            Scan::End
        } else {
            Scan::Torn("header runs past the end of the segment")
        };
    }
    let header = &buf[..HEADER_LEN];
    if header.iter().all(|&b| b == 0) {
        return Scan::End;
    }
    let kind = u16::from_le_bytes([header[0], header[1]]);
    let payload_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let aux_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let crc = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    let Some(kind) = Kind::from_u16(kind) else {
        return Scan::Torn("unknown record kind");
    };
    let total_len = record_len(payload_len, aux_len);
    if total_len > buf.len() {
        return Scan::Torn("record length runs past the end of the segment");
    }
    let payload = &buf[HEADER_LEN..HEADER_LEN + payload_len];
    if verify && crc32c::crc32c_append(crc32c::crc32c(&header[0..12]), payload) != crc {
        return Scan::Torn("checksum mismatch");
    }
    Scan::Record {
        kind,
        payload,
        aux_offset: HEADER_LEN + payload_len,
        aux_len,
        total_len,
    }
}

/// Decodes a message payload (already CRC-checked by [`scan`]).
pub fn decode_message(payload: &[u8]) -> Result<MessageView<'_>, QueueError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let id = QueueId::from_raw(r.u64()?);
    let arrival_micros = r.u64()?;
    let raw_flags = r.u32()?;
    let flags = MessageFlags(raw_flags & !LAYOUT_FLAGS);
    let uid = r.u32()?;
    let nrcpt = r.u32()? as usize;
    let sender = r.short_str()?;
    let mut recipients = Vec::with_capacity(nrcpt.min(payload.len() / 2));
    for _ in 0..nrcpt {
        recipients.push(r.short_str()?);
    }
    let message_id = r.short_str()?;
    let wire_len = r.u32()? as usize;
    let wire = r.take(wire_len)?;
    if raw_flags & FLAG_FILE_IDENTITY != 0 {
        r.take(FILE_IDENTITY_FIXED_LEN)?;
        r.short_bytes()?;
    }
    let dsn = if raw_flags & FLAG_DSN != 0 {
        read_dsn(&mut r, nrcpt)?
    } else {
        DsnParams::default()
    };
    if r.pos != payload.len() {
        return Err(QueueError::BadRecord("trailing bytes in message record"));
    }
    Ok(MessageView {
        id,
        arrival_micros,
        flags,
        uid,
        sender,
        recipients,
        message_id,
        wire,
        dsn,
        campaign: None,
    })
}

/// The spool file identity of a message payload (already CRC-checked by
/// [`scan`]), or `None` for a message that did not come from a spool file.
/// Recovery and the queue listing ask; the fields before it are skipped,
/// not decoded.
pub fn decode_file_identity(payload: &[u8]) -> Result<Option<FileIdentity>, QueueError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    r.take(16)?;
    let raw_flags = r.u32()?;
    if raw_flags & FLAG_FILE_IDENTITY == 0 {
        return Ok(None);
    }
    r.take(4)?;
    let nrcpt = r.u32()? as usize;
    // The sender, each recipient, the Message-ID.
    for _ in 0..nrcpt.saturating_add(2) {
        r.short_bytes()?;
    }
    let wire_len = r.u32()? as usize;
    r.take(wire_len)?;
    let dev = r.u64()?;
    let ino = r.u64()?;
    let size = r.u64()?;
    let mtime_ns = r.u64()? as i64;
    let ctime_ns = r.u64()? as i64;
    let crc32c = r.u32()?;
    let name = r.short_bytes()?.to_vec();
    if raw_flags & FLAG_DSN != 0 {
        read_dsn(&mut r, nrcpt)?;
    }
    if r.pos != payload.len() {
        return Err(QueueError::BadRecord("trailing bytes in message record"));
    }
    Ok(Some(FileIdentity {
        key: FileKey {
            name,
            dev,
            ino,
            size,
            mtime_ns,
            ctime_ns,
        },
        crc32c,
    }))
}

/// Reads only the queue ID and recipient count of a message payload: what
/// recovery needs for the index, without walking the recipient list.
pub fn peek_message(payload: &[u8]) -> Result<(QueueId, u64, usize), QueueError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let id = QueueId::from_raw(r.u64()?);
    let arrival = r.u64()?;
    r.take(8)?;
    let nrcpt = r.u32()? as usize;
    Ok((id, arrival, nrcpt))
}

/// Decodes a defer payload.
pub fn decode_defer(payload: &[u8]) -> Result<DeferView<'_>, QueueError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let id = QueueId::from_raw(r.u64()?);
    let rcpt = r.u32()?;
    let next_attempt_micros = r.u64()?;
    let reason = r.short_str()?;
    Ok(DeferView {
        id,
        rcpt,
        next_attempt_micros,
        reason,
    })
}

pub(super) struct Writer<'a> {
    pub(super) buf: &'a mut [u8],
    pub(super) pos: usize,
}

impl Writer<'_> {
    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    pub(super) fn short_bytes(&mut self, b: &[u8]) {
        // Lengths were checked by message_payload_len / truncated by the caller.
        self.bytes(&(b.len() as u16).to_le_bytes());
        self.bytes(b);
    }
}

pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], QueueError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(QueueError::BadRecord(
                "field runs past the end of the record",
            ))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub(super) fn u64(&mut self) -> Result<u64, QueueError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub(super) fn u32(&mut self) -> Result<u32, QueueError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn short_bytes(&mut self) -> Result<&'a [u8], QueueError> {
        let b = self.take(2)?;
        let n = u16::from_le_bytes([b[0], b[1]]) as usize;
        self.take(n)
    }
    pub(super) fn short_str(&mut self) -> Result<&'a str, QueueError> {
        std::str::from_utf8(self.short_bytes()?)
            .map_err(|_| QueueError::BadRecord("address is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NO_DSN: DsnParams = DsnParams {
        ret: None,
        envid: None,
        body: None,
        rcpts: Vec::new(),
    };

    fn sample(rcpts: &[String]) -> MessageRef<'_> {
        MessageRef {
            id: QueueId::new(3, 12345),
            arrival_micros: 1_700_000_000_000_000,
            flags: MessageFlags(MessageFlags::BODY_8BIT),
            uid: 1000,
            sender: "me@example.com",
            recipients: rcpts,
            message_id: "abc@host",
            wire: b"Subject: hi\r\n\r\nhello\r\n",
            file_identity: None,
            dsn: &NO_DSN,
        }
    }

    fn encode(m: &MessageRef<'_>) -> Vec<u8> {
        let len = record_len(message_payload_len(m).unwrap(), m.recipients.len());
        let mut out = vec![0u8; len];
        encode_message(m, &mut out).unwrap();
        out
    }

    #[test]
    fn message_round_trips() {
        let rcpts = vec!["a@x.example".to_string(), "b@y.example".to_string()];
        let m = sample(&rcpts);
        let buf = encode(&m);
        assert_eq!(buf.len() % ALIGN, 0);
        let Scan::Record {
            kind,
            payload,
            aux_offset,
            aux_len,
            total_len,
        } = scan(&buf)
        else {
            panic!("not a record")
        };
        assert_eq!(kind, Kind::Message);
        assert_eq!(aux_len, 2);
        assert_eq!(total_len, buf.len());
        assert_eq!(&buf[aux_offset..aux_offset + 2], &[0, 0]);
        let v = decode_message(payload).unwrap();
        assert_eq!(v.id, m.id);
        assert_eq!(v.sender, "me@example.com");
        assert_eq!(v.recipients, vec!["a@x.example", "b@y.example"]);
        assert_eq!(v.message_id, "abc@host");
        assert_eq!(v.wire, m.wire);
        assert_eq!(v.flags, m.flags);
        assert_eq!(peek_message(payload).unwrap(), (m.id, m.arrival_micros, 2));
    }

    fn identity() -> FileIdentity {
        FileIdentity {
            key: FileKey {
                name: b"pickup/msg-\xff.eml".to_vec(),
                dev: 0x0803,
                ino: 1_234_567,
                size: 2048,
                mtime_ns: 1_700_000_000_123_456_789,
                ctime_ns: -5,
            },
            crc32c: 0xdead_beef,
        }
    }

    #[test]
    fn a_file_identity_round_trips_and_leaves_the_message_as_it_was() {
        let rcpts = vec!["a@x.example".to_string()];
        let id = identity();
        let plain = sample(&rcpts);
        let m = MessageRef {
            file_identity: Some(&id),
            ..plain
        };
        let buf = encode(&m);
        let Scan::Record { payload, .. } = scan(&buf) else {
            panic!("not a record")
        };
        let v = decode_message(payload).unwrap();
        assert_eq!(v.flags, m.flags, "the identity bit is not a message flag");
        assert_eq!(v.wire, m.wire);
        assert_eq!(v.recipients, vec!["a@x.example"]);
        assert_eq!(decode_file_identity(payload).unwrap(), Some(id));
        let buf = encode(&plain);
        let Scan::Record { payload, .. } = scan(&buf) else {
            panic!("not a record")
        };
        assert_eq!(decode_file_identity(payload).unwrap(), None);
    }

    #[test]
    fn a_cut_file_identity_is_an_error_not_a_guess() {
        let rcpts = vec!["a@x.example".to_string()];
        let id = identity();
        let m = MessageRef {
            file_identity: Some(&id),
            ..sample(&rcpts)
        };
        let len = message_payload_len(&m).unwrap();
        let mut out = vec![0u8; record_len(len, 1)];
        encode_message(&m, &mut out).unwrap();
        let payload = &out[HEADER_LEN..HEADER_LEN + len];
        for cut in [1, 3, 10] {
            let short = &payload[..len - cut];
            assert!(decode_message(short).is_err(), "cut {cut}");
            assert!(decode_file_identity(short).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn status_bytes_are_outside_the_checksum() {
        let rcpts = vec!["a@x.example".to_string()];
        let mut buf = encode(&sample(&rcpts));
        let Scan::Record { aux_offset, .. } = scan(&buf) else {
            panic!()
        };
        buf[aux_offset] = 2;
        assert!(matches!(scan(&buf), Scan::Record { .. }));
    }

    #[test]
    fn any_flipped_payload_byte_is_detected() {
        let rcpts = vec!["a@x.example".to_string()];
        let buf = encode(&sample(&rcpts));
        let Scan::Record { aux_offset, .. } = scan(&buf) else {
            panic!()
        };
        for i in 0..aux_offset {
            if (12..16).contains(&i) {
                continue;
            }
            let mut b = buf.clone();
            b[i] ^= 0x40;
            assert!(
                matches!(scan(&b), Scan::Torn(_)),
                "flip at {i} not detected"
            );
        }
    }

    #[test]
    fn truncated_record_is_torn_and_zeros_are_end() {
        let rcpts = vec!["a@x.example".to_string()];
        let buf = encode(&sample(&rcpts));
        assert!(matches!(scan(&buf[..buf.len() - 9]), Scan::Torn(_)));
        assert_eq!(scan(&[0u8; 64]), Scan::End);
        assert_eq!(scan(&[0u8; 3]), Scan::End);
    }

    #[test]
    fn defer_round_trips() {
        let d = DeferView {
            id: QueueId::new(1, 9),
            rcpt: 4,
            next_attempt_micros: 77,
            reason: "451 4.3.0 try later",
        };
        let buf = encode_defer(&d);
        let Scan::Record { kind, payload, .. } = scan(&buf) else {
            panic!()
        };
        assert_eq!(kind, Kind::Defer);
        assert_eq!(decode_defer(payload).unwrap(), d);
    }

    #[test]
    fn overlong_fields_are_refused() {
        let long = "x".repeat(70_000);
        let rcpts = vec![long];
        assert!(matches!(
            message_payload_len(&sample(&rcpts)),
            Err(QueueError::TooBig(_))
        ));
    }

    #[test]
    fn dsn_requests_round_trip_and_are_not_flags() {
        let rcpts = vec!["a@x.example".to_string(), "b@y.example".to_string()];
        let dsn = DsnParams {
            ret: Some(DsnRet::Headers),
            envid: Some("env-1".into()),
            body: Some(BodyType::EightBitMime),
            rcpts: vec![RcptDsn {
                notify: Notify::NEVER,
                orcpt: Some("rfc822;a@x.example".into()),
            }],
        };
        let id = identity();
        for file_identity in [None, Some(&id)] {
            let m = MessageRef {
                dsn: &dsn,
                file_identity,
                ..sample(&rcpts)
            };
            let buf = encode(&m);
            let Scan::Record { payload, .. } = scan(&buf) else {
                panic!("not a record")
            };
            let v = decode_message(payload).unwrap();
            assert_eq!(v.flags, m.flags, "layout bits are not message flags");
            assert_eq!(v.recipients, vec!["a@x.example", "b@y.example"]);
            assert_eq!(v.dsn.ret, dsn.ret);
            assert_eq!(v.dsn.envid, dsn.envid);
            assert_eq!(v.dsn.body, dsn.body);
            // Every recipient has an entry once decoded; the second has
            // no request.
            assert_eq!(v.dsn.notify(0), Notify::NEVER);
            assert_eq!(v.dsn.orcpt(0), Some("rfc822;a@x.example"));
            assert_eq!(v.dsn.rcpts[1], RcptDsn::default());
            assert_eq!(
                decode_file_identity(payload).unwrap(),
                file_identity.cloned()
            );
            for cut in [1, 5] {
                let short = &payload[..payload.len() - cut];
                assert!(decode_message(short).is_err(), "cut {cut}");
            }
        }
        // No request: no block, the record is as version 2 wrote it.
        let plain = encode(&sample(&rcpts));
        let with = encode(&MessageRef {
            dsn: &dsn,
            ..sample(&rcpts)
        });
        assert!(plain.len() < with.len());
    }

    #[test]
    fn a_bad_dsn_block_is_an_error() {
        let rcpts = vec!["a@x.example".to_string()];
        let dsn = DsnParams {
            ret: Some(DsnRet::Full),
            ..DsnParams::default()
        };
        let mut buf = encode(&MessageRef {
            dsn: &dsn,
            ..sample(&rcpts)
        });
        let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        let payload_end = HEADER_LEN + len;
        // RET, BODY, ENVID (2), NOTIFY, ORCPT (2): 7 bytes before the end.
        let ret_at = payload_end - 7;
        assert_eq!(buf[ret_at], 1);
        for (at, value) in [(ret_at, 3u8), (ret_at + 1, 9), (payload_end - 3, 0x18)] {
            let mut b = buf.clone();
            b[at] = value;
            assert!(
                decode_message(&b[HEADER_LEN..payload_end]).is_err(),
                "{at}={value}"
            );
        }
        buf[ret_at] = 2;
        let v = decode_message(&buf[HEADER_LEN..payload_end]).unwrap();
        assert_eq!(v.dsn.ret, Some(DsnRet::Headers));
    }

    /// A segment written by format version 2 (before the DSN block):
    /// `fixtures/segment_v2.bin` is the head of a real segment file, made
    /// by the version-2 code (two messages, one with a spool file
    /// identity, one from the null sender with the 8-bit flag).
    #[test]
    fn reads_a_version_2_segment() {
        let bytes = include_bytes!("fixtures/segment_v2.bin");
        assert_eq!(
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            2
        );
        let mut pos = crate::queue::segment::FILE_HEADER_LEN;
        let mut views = Vec::new();
        while let Scan::Record {
            kind,
            payload,
            total_len,
            ..
        } = scan(&bytes[pos..])
        {
            assert_eq!(kind, Kind::Message);
            views.push((
                decode_message(payload).unwrap(),
                decode_file_identity(payload).unwrap(),
            ));
            pos += total_len;
        }
        assert_eq!(scan(&bytes[pos..]), Scan::End);
        assert_eq!(views.len(), 2);
        let (a, a_file) = &views[0];
        assert_eq!(a.sender, "s@example.com");
        assert_eq!(a.recipients, ["r1.0@example.net", "r1.1@example.net"]);
        assert_eq!(a.message_id, "1@test");
        assert_eq!(a.wire, b"Subject: 1\r\n\r\nbody 1\r\n");
        assert!(a.dsn.is_empty());
        assert_eq!(
            a_file.as_ref().map(|f| f.key.name.as_slice()),
            Some(&b"pickup/fixture.eml"[..])
        );
        let (b, b_file) = &views[1];
        assert_eq!(b.sender, "");
        assert_eq!(b.flags, MessageFlags(MessageFlags::BODY_8BIT));
        assert!(b.dsn.is_empty());
        assert_eq!(*b_file, None);

        // Through the store, as a daemon starting on an old spool does.
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("0");
        std::fs::create_dir_all(&shard).unwrap();
        let mut file = bytes.to_vec();
        file.resize(64 * 1024, 0);
        std::fs::write(shard.join(crate::queue::segment::file_name(1)), file).unwrap();
        let (store, report) = crate::queue::Store::open(dir.path(), 0, 1, 1 << 20).unwrap();
        assert_eq!(report.messages, 2, "{report:?}");
        assert_eq!(store.peek(a.id).map(|(v, _)| v.recipients.len()), Some(2));
        assert!(store.get(b.id).is_some_and(|(v, _)| v.dsn.is_empty()));
    }
}
