//! Queue IDs: short, unique, stable across restarts.

use std::fmt;
use std::str::FromStr;

/// Number of bits of a queue ID that hold the per-shard sequence number.
const SEQ_BITS: u32 = 42;
/// Largest shard index a queue ID can carry (6 bits).
pub const MAX_SHARDS: usize = 64;

/// The identity of one queued message, printed as 12 upper-case hex digits
/// (`3F2A1C0B9D1E`) in logs, `mailq` and JSON.
///
/// The top 6 of its 48 bits name the shard that owns the message, the low 42
/// bits are that shard's sequence number. A shard starts its sequence at
/// `max(highest ID recovered + 1, unix time in milliseconds)`, so IDs only
/// grow while the queue holds mail and stay distinct across restarts. The ID
/// is stored in the queue record, so it never changes once assigned.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct QueueId(u64);

impl QueueId {
    /// Builds the ID for `seq` on `shard`. Sequence bits above 42 are dropped.
    pub fn new(shard: usize, seq: u64) -> QueueId {
        let shard = (shard % MAX_SHARDS) as u64;
        QueueId((shard << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1)))
    }

    /// Wraps a raw 48-bit value read back from a queue record.
    pub fn from_raw(raw: u64) -> QueueId {
        QueueId(raw & ((1 << 48) - 1))
    }

    /// The raw 48-bit value, as stored in queue records.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The shard that owns this message.
    pub fn shard(self) -> usize {
        (self.0 >> SEQ_BITS) as usize
    }

    /// The per-shard sequence number.
    pub fn seq(self) -> u64 {
        self.0 & ((1 << SEQ_BITS) - 1)
    }
}

impl fmt::Display for QueueId {
    /// Twelve upper-case hex digits (padding and alignment flags apply).
    /// Written by hand: every log line of a message starts with its queue
    /// ID, and `{:012X}` goes through the generic integer padding code.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut buf = [b'0'; 12];
        let mut v = self.0;
        for b in buf.iter_mut().rev() {
            *b = DIGITS[(v & 0xf) as usize];
            v >>= 4;
        }
        if v != 0 {
            // Wider than 48 bits (not a queue ID this code makes): all digits.
            return f.pad(&format!("{:012X}", self.0));
        }
        // The buffer holds only ASCII hex digits.
        f.pad(std::str::from_utf8(&buf).unwrap_or("????????????"))
    }
}

/// Error for a string that is not a queue ID.
#[derive(Debug, thiserror::Error)]
#[error("not a queue ID (expected 12 hex digits): {0:?}")]
pub struct BadQueueId(pub String);

impl FromStr for QueueId {
    type Err = BadQueueId;
    fn from_str(s: &str) -> Result<QueueId, BadQueueId> {
        if s.len() != 12 {
            return Err(BadQueueId(s.to_string()));
        }
        u64::from_str_radix(s, 16)
            .map(QueueId)
            .map_err(|_| BadQueueId(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_keeps_shard() {
        let id = QueueId::new(5, 1_764_300_000_123);
        let text = id.to_string();
        assert_eq!(text.len(), 12);
        let back: QueueId = text.parse().unwrap();
        assert_eq!(back, id);
        assert_eq!(back.shard(), 5);
        assert_eq!(back.seq(), 1_764_300_000_123);
    }

    #[test]
    fn prints_like_the_format_string_it_replaces() {
        for raw in [
            0u64,
            1,
            0xABC,
            0xFFFF_FFFF_FFFF,
            0x1_0000_0000_0000,
            u64::MAX,
        ] {
            let id = QueueId(raw);
            assert_eq!(id.to_string(), format!("{raw:012X}"));
            assert_eq!(
                format!("[{id:>14}]"),
                format!("[{:>14}]", format!("{raw:012X}"))
            );
        }
    }

    #[test]
    fn rejects_bad_text() {
        assert!("xyz".parse::<QueueId>().is_err());
        assert!("GGGGGGGGGGGG".parse::<QueueId>().is_err());
    }
}
