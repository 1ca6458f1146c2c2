//! Byte scanning for the hot path: finding a byte eight at a time, and the
//! end of a message's header section.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The index of the first `needle` in `hay`, scanning a word at a time.
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    let pattern = LO.wrapping_mul(u64::from(needle));
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        // A byte of x is zero where the needle is; the lowest flagged byte
        // is always a true zero (borrows only propagate upwards).
        let zeros = x.wrapping_sub(LO) & !x & HI;
        if zeros != 0 {
            return Some(base + (zeros.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| base + i)
}

/// True when `buf` contains the end of a header section (an empty line:
/// `\n\r\n`, `\n\n`, or the buffer starting with an empty line) at or after
/// `from`, looking back up to two bytes so that the empty line may have
/// been appended in pieces.
pub(crate) fn has_header_end(buf: &[u8], from: usize) -> bool {
    if buf.starts_with(b"\r\n") || buf.starts_with(b"\n") {
        return true;
    }
    let start = from.saturating_sub(2);
    let mut at = start;
    while let Some(i) = find_byte(b'\n', &buf[at..]) {
        let lf = at + i;
        let next = &buf[lf + 1..];
        if next.starts_with(b"\n") || next.starts_with(b"\r\n") {
            return true;
        }
        at = lf + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_matches_naive_search() {
        let mut rng = fastrand::Rng::with_seed(7);
        for len in 0..80 {
            for _ in 0..50 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        *rng.choice(&[b'a', b'\n', b'\r', 0x80, 0xff, 0x0a ^ 0x80])
                            .unwrap()
                    })
                    .collect();
                let naive = hay.iter().position(|&b| b == b'\n');
                assert_eq!(find_byte(b'\n', &hay), naive, "{hay:?}");
            }
        }
        assert_eq!(find_byte(b'x', b""), None);
        assert_eq!(find_byte(b'.', b"abcdefghijklmnop."), Some(16));
    }

    #[test]
    fn header_end() {
        assert!(has_header_end(b"\r\nbody", 0));
        assert!(has_header_end(b"A: b\r\n\r\nbody", 0));
        assert!(has_header_end(b"A: b\n\nbody", 0));
        assert!(!has_header_end(b"A: b\r\nC: d\r\n", 0));
        // The empty line completed by the last append.
        assert!(has_header_end(b"A: b\r\n\r\n", 7));
        assert!(!has_header_end(b"A: b\r\n\r", 7));
    }
}
