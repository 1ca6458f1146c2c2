//! Byte scanning for the hot path: finding a byte (memchr), and the
//! end of a message's header section.

/// The index of the first `needle` in `hay` (the `memchr` crate's
/// vectorised search).
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
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
