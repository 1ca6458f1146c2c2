//! Message text from the fuzzer: header splitting, envelope extraction,
//! address parsing and cleanup must never panic, and cleanup's wire form
//! must never contain a bare LF or a line that would end the DATA phase.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::cleanup::{cleanup, CleanupOptions};
use ringmail::mail::{
    header_addresses, parse_envelope_address, recipients_from_headers, sender_from_headers,
    split_message, strip_x_envelope,
};
use ringmail::model::Envelope;

fuzz_target!(|data: &[u8]| {
    let _ = strip_x_envelope(data, "example.org");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_envelope_address(text, "example.org", true);
        let _ = header_addresses(text, "example.org");
    }
    let Ok(parts) = split_message(data) else { return };
    let _ = recipients_from_headers(&parts, "example.org");
    let _ = sender_from_headers(&parts, "example.org");
    let env = Envelope {
        sender: "s@example.org".into(),
        recipients: vec!["r@example.net".into()],
    };
    let opts = CleanupOptions {
        myhostname: "mx.example.org",
        message_size_limit: 1 << 20,
        full_name: None,
        now: chrono::Local::now(),
    };
    if let Ok(c) = cleanup(data, &env, &opts) {
        assert!(c.wire.ends_with(b"\r\n"));
        for (i, &b) in c.wire.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && c.wire[i - 1] == b'\r', "bare LF in wire form");
            }
        }
        assert!(!c.wire.windows(5).any(|w| w == b"\r\n.\r\n"), "unstuffed dot line");
    }
});
