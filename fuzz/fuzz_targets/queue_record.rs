//! Segment bytes from the fuzzer: walking records and decoding payloads must
//! never panic, whatever the bytes (a damaged or foreign segment). The
//! decoders are also fed the raw bytes as a payload, and records are read
//! without their checksum as `Store::peek` reads them, so the fuzzer need
//! not forge CRCs to reach the field parsers. `decode_message` also reads
//! the DSN block of format version 3 (flag bit 30), and
//! `decode_file_identity` skips it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::queue::record::{
    decode_defer, decode_file_identity, decode_message, peek_message, scan_unverified, Kind, Scan,
};
use ringmail::queue::recovery::Records;

fn decode_all(payload: &[u8]) {
    let _ = decode_message(payload);
    let _ = peek_message(payload);
    let _ = decode_file_identity(payload);
    let _ = decode_defer(payload);
}

fuzz_target!(|data: &[u8]| {
    // Pretend the data follows a 64-byte file header.
    let mut seg = vec![0u8; 64];
    seg.extend_from_slice(data);
    let mut records = Records::new(&seg);
    for found in records.by_ref() {
        match found.kind {
            Kind::Message => {
                let _ = decode_message(found.payload);
                let _ = peek_message(found.payload);
                let _ = decode_file_identity(found.payload);
            }
            Kind::Defer => {
                let _ = decode_defer(found.payload);
            }
        }
    }
    let _ = records.torn();
    decode_all(data);
    if let Scan::Record { payload, .. } = scan_unverified(data) {
        decode_all(payload);
    }
});
