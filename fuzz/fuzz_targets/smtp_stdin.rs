//! Client lines from the fuzzer for `sendmail -bs`: the session must never
//! panic, every reply must be one or more CRLF-terminated lines starting
//! with a three-digit code, and every finished message must have a
//! recipient and respect the size limit, no envelope address may hold a
//! control character, and the DSN requests must be storable (at most one
//! entry per recipient, valid ENVID and ORCPT).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::inject::smtp_stdin::{StdinSession, Step};

const LIMIT: u64 = 4096;

fuzz_target!(|data: &[u8]| {
    let mut s = StdinSession::new("mx.example.org", "example.org", LIMIT);
    for line in data.split_inclusive(|&b| b == b'\n') {
        match s.on_line(line) {
            Step::Nothing => {}
            Step::Reply(r) | Step::Quit(r) => {
                assert!(r.ends_with("\r\n"), "{r:?}");
                for l in r.strip_suffix("\r\n").unwrap_or(&r).split("\r\n") {
                    let code = l.get(..3).unwrap_or("");
                    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{r:?}");
                    assert!(!l.contains('\n') && !l.contains('\r'), "{r:?}");
                }
            }
            Step::Message {
                envelope,
                dsn,
                message,
            } => {
                assert!(!envelope.recipients.is_empty());
                assert!(message.len() as u64 <= LIMIT + 2);
                for a in std::iter::once(&envelope.sender).chain(&envelope.recipients) {
                    assert!(!a.chars().any(char::is_control), "{a:?}");
                }
                assert!(dsn.rcpts.len() <= envelope.recipients.len());
                if let Some(envid) = &dsn.envid {
                    assert!(ringmail::model::dsn::valid_envid(envid), "{envid:?}");
                }
                for r in &dsn.rcpts {
                    if let Some(o) = &r.orcpt {
                        assert!(ringmail::model::dsn::valid_orcpt(o), "{o:?}");
                    }
                }
            }
        }
    }
});
