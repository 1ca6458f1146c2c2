//! Certificate bytes from the fuzzer, as a server would present them. The
//! DER walk to the subjectPublicKeyInfo must never panic, and what it
//! finds must be a whole DER SEQUENCE inside the input; matching TLSA
//! records of every selector and matching type against the bytes must
//! never panic, and an exact full-certificate record must match them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::rt::tls::dane::{spki, Tlsa};

fuzz_target!(|data: &[u8]| {
    if let Ok(found) = spki(data) {
        assert!(!found.is_empty() && found[0] == 0x30, "not a SEQUENCE");
        let start = found.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + found.len() <= data.len(), "outside the input");
    }
    for selector in 0..3u8 {
        for matching in 0..4u8 {
            let record = Tlsa {
                usage: 3,
                selector,
                matching,
                data: data.iter().take(64).copied().collect(),
            };
            let _ = record.is_usable();
            let _ = record.matches(data);
        }
    }
    if !data.is_empty() {
        let exact = Tlsa {
            usage: 3,
            selector: 0,
            matching: 0,
            data: data.to_vec(),
        };
        assert!(exact.is_usable() && exact.matches(data));
    }
});
