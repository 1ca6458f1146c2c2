//! Key file bytes from the fuzzer: reading a DKIM private key (PEM,
//! PKCS#1 or PKCS#8) never panics, and a key that loads gives a DNS record
//! of the documented shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::sign::PrivateKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = PrivateKey::from_pem(data) {
        let record = key.dns_record();
        assert!(record.starts_with("v=DKIM1; k="));
    }
});
