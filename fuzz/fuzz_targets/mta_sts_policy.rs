//! MTA-STS text from the fuzzer, as an HTTPS server or a TXT record would
//! give it: the policy and record parsers never panic, a parsed policy's
//! MX patterns can be matched against any host name, and a parsed policy
//! keeps `max_age` within the RFC 8461 cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::deliver::mta_sts::policy::{Policy, MAX_AGE_CAP};
use ringmail::deliver::mta_sts::record::StsRecord;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(p) = Policy::parse(&text) {
        assert!(p.max_age <= MAX_AGE_CAP);
        for host in ["mx.example.com", "a.b.example.com", "", ".", "*.example.com"] {
            for pattern in &p.mx {
                let _ = pattern.matches(host);
            }
        }
    }
    let _ = StsRecord::parse(&text);
});
