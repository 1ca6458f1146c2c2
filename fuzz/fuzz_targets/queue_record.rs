//! Segment bytes from the fuzzer: walking records and decoding payloads must
//! never panic, whatever the bytes (a damaged or foreign segment).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::queue::record::{
    decode_defer, decode_file_identity, decode_message, peek_message, Kind,
};
use ringmail::queue::recovery::Records;

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
});
