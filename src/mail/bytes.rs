//! Fast byte searches for whole-message scans (NUL check, line splitting).
//!
//! Messages pass through these loops tens of thousands of times a second,
//! so they look at eight bytes per step instead of one.

/// 0x01 in every byte of a word.
const LO: u64 = 0x0101_0101_0101_0101;
/// 0x80 in every byte of a word.
const HI: u64 = 0x8080_8080_8080_8080;

/// Index of the first `needle` in `haystack`, like `iter().position` but
/// eight bytes per step.
pub fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    let pattern = LO * u64::from(needle);
    let mut chunks = haystack.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // Bytes equal to the needle become zero; the classic "has a zero
        // byte" test marks them. The lowest mark is always exact.
        let x = u64::from_le_bytes(word) ^ pattern;
        let marks = x.wrapping_sub(LO) & !x & HI;
        if marks != 0 {
            return Some(offset + (marks.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| offset + i)
}

/// Number of `needle` bytes in `haystack`.
pub fn count_byte(needle: u8, haystack: &[u8]) -> usize {
    // This shape is vectorised by the compiler.
    haystack.iter().filter(|&&b| b == needle).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_matches_the_naive_search() {
        let mut data: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        data.extend_from_slice(b"\x80\xff\x7f\x81\n\n");
        for start in 0..data.len() {
            let hay = &data[start..];
            for needle in [0u8, b'\n', 0x80, 0xff, 0x7f, 0x81, 1, 250, 251] {
                assert_eq!(
                    find_byte(needle, hay),
                    hay.iter().position(|&b| b == needle),
                    "needle {needle} from {start}"
                );
            }
        }
        assert_eq!(find_byte(b'\n', b""), None);
    }

    #[test]
    fn counts_bytes() {
        assert_eq!(count_byte(b'\n', b"a\nb\n\nc"), 3);
        assert_eq!(count_byte(b'\n', b""), 0);
    }
}
