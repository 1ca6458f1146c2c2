//! Fast byte searches for whole-message scans (NUL check, line splitting).
//!
//! Messages pass through these loops tens of thousands of times a second,
//! so they use vectorised searches.

/// Index of the first `needle` in `haystack` (the `memchr` crate's
/// vectorised search).
#[cfg(not(target_env = "musl"))]
pub fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    memchr::memchr(needle, haystack)
}

/// Index of the first `needle` in `haystack`. The musl build is the static
/// sendmail command, which queues one message per process: the `memchr`
/// crate's first call detects the CPU's features (a series of `cpuid`
/// instructions, each a trap to the hypervisor on a virtual machine),
/// which costs more there than a plain loop over one message.
#[cfg(target_env = "musl")]
pub fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
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
