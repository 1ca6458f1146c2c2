//! Original message bytes (and remote replies) from the fuzzer. Building a
//! delivery status notification must never panic, and the notice must be
//! strict CRLF text, dot-stuffed once, with no line over 998 octets before
//! the stuffing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::bounce::{build, BounceError, BounceRequest, FailedRecipient, NoticeKind};

fuzz_target!(|data: &[u8]| {
    // The first byte steers the options; the rest is the queued original.
    let Some((&seed, original)) = data.split_first() else {
        return;
    };
    let reply = String::from_utf8_lossy(&original[..original.len().min(600)]).into_owned();
    let recipients = [
        FailedRecipient {
            address: "r@example.net".into(),
            original_recipient: (seed & 4 != 0).then(|| format!("rfc822;{reply}")),
            status: "5.1.1".into(),
            diagnostic: Some(reply.clone()),
            remote_mta: Some(reply.clone()),
            reason: reply,
        },
        FailedRecipient {
            address: "ü@example.net".into(),
            original_recipient: None,
            status: "4.4.1".into(),
            diagnostic: None,
            remote_mta: None,
            reason: String::new(),
        },
    ];
    let now = chrono::Local::now();
    let req = BounceRequest {
        kind: match seed % 3 {
            0 => NoticeKind::Failure,
            1 => NoticeKind::Delay,
            _ => NoticeKind::Success,
        },
        queue_id: "3F2A1C0B9D1E",
        envid: (seed & 8 != 0).then_some("envelope 1"),
        original_sender: "s@example.org",
        original_wire: original,
        arrival: now,
        recipients: &recipients,
        myhostname: "mx.example.org",
        now,
        return_full_message: seed & 2 == 0,
        bounce_size_limit: usize::from(seed >> 2) * 64,
    };
    let bounce = match build(&req) {
        Ok(Some(b)) => b,
        Ok(None) => panic!("no notice for a non-null sender"),
        Err(BounceError::NoBoundary) => return,
        // An ORCPT made of the fuzzer's bytes may be unreportable.
        Err(BounceError::BadAddress { .. }) if req.recipients[0].original_recipient.is_some() => {
            return
        }
        Err(e) => panic!("refused: {e}"),
    };
    let wire = &bounce.wire;
    assert!(wire.ends_with(b"\r\n"));
    for (i, &b) in wire.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && wire[i - 1] == b'\r', "bare LF in the notice");
        }
        if b == b'\r' {
            assert_eq!(wire.get(i + 1), Some(&b'\n'), "bare CR in the notice");
        }
    }
    assert!(!wire.windows(5).any(|w| w == b"\r\n.\r\n"), "unstuffed dot line");
    for line in wire.split(|&b| b == b'\n') {
        let stuffed = usize::from(line.first() == Some(&b'.'));
        assert!(line.len() - stuffed <= 999, "line over 998 octets");
    }
});
