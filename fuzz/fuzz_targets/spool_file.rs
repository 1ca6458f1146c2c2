//! A spool file from the fuzzer, read as a maildrop file and as a pickup
//! file: either a submission or a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::cleanup::intake::{prepare, SiteParams};
use ringmail::inject::SpoolKind;

fuzz_target!(|data: &[u8]| {
    let site = SiteParams {
        myhostname: "mx.example.org".into(),
        origin: "example.org".into(),
        message_size_limit: 1 << 20,
    };
    for kind in [SpoolKind::Maildrop, SpoolKind::Pickup] {
        if let Ok(sub) = prepare(data, kind, 0, std::path::Path::new("f"), &site) {
            assert!(!sub.envelope.recipients.is_empty());
        }
    }
});
