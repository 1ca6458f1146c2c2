//! Fast byte searches for whole-message scans (NUL check, line splitting).
//!
//! Messages pass through these loops tens of thousands of times a second,
//! so they use vectorised searches.

/// Index of the first `needle` in `haystack` (the `memchr` crate's
/// vectorised search).
pub fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    memchr::memchr(needle, haystack)
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
    fn counts_bytes() {
        assert_eq!(count_byte(b'\n', b"a\nb\n\nc"), 3);
        assert_eq!(count_byte(b'\n', b""), 0);
    }
}
