//! Server bytes from the fuzzer. The reply parser must never panic, must
//! give the same replies and error however the input is split into reads,
//! and every reply it gives must keep its invariants; EHLO capability
//! parsing, connection setup and the transaction state machine must take
//! any reply without panicking and give one result per recipient.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::proto::parser::{MAX_LINE, MAX_LINES};
use ringmail::proto::{
    Action, Capabilities, Envelope, MailParams, ProtoError, Reply, ReplyParser, SessionSetup,
    Transaction,
};

fuzz_target!(|data: &[u8]| {
    // The first byte steers the read sizes and the pipelining switch; the
    // rest is what the server sent.
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let (whole, whole_err) = parse(stream, |_| stream.len());
    let (chunked, chunked_err) = parse(stream, |at| read_size(seed, stream, at));
    assert_eq!(whole, chunked, "replies depend on how the input was split");
    assert_eq!(
        whole_err, chunked_err,
        "error depends on how the input was split"
    );

    for reply in &whole {
        check(reply);
        let _ = Capabilities::from_ehlo(reply);
    }
    transaction(&whole, seed & 1 == 1);
    setup(&whole);
});

/// The size of the read that starts at `at`: 1 to 64 bytes, drawn from the
/// seed and the data itself.
fn read_size(seed: u8, stream: &[u8], at: usize) -> usize {
    let b = stream.get(at).copied().unwrap_or(0);
    1 + usize::from(b.wrapping_mul(31) ^ seed) % 64
}

/// Feeds `stream` in reads of `size(offset)` bytes and collects the replies
/// up to the first error.
fn parse(stream: &[u8], size: impl Fn(usize) -> usize) -> (Vec<Reply>, Option<ProtoError>) {
    let mut parser = ReplyParser::new();
    let mut replies = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let end = stream.len().min(at + size(at).max(1));
        parser.feed(&stream[at..end]);
        at = end;
        loop {
            match parser.next_reply() {
                Ok(Some(r)) => replies.push(r),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(parser.next_reply(), Err(e.clone()), "errors stick");
                    return (replies, Some(e));
                }
            }
        }
    }
    (replies, None)
}

/// What every parsed reply must satisfy.
fn check(reply: &Reply) {
    assert!((200..=599).contains(&reply.code));
    assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_LINES);
    for line in &reply.lines {
        // Lossy decoding turns one bad byte into one U+FFFD.
        assert!(line.chars().count() <= MAX_LINE);
        assert!(!line.contains('\n'));
    }
    if let Some(e) = reply.enhanced {
        assert_eq!(u16::from(e.class), reply.code / 100);
    }
    assert!(reply.to_string().starts_with(&reply.code.to_string()));
    let dsn = reply.dsn();
    assert!(dsn.starts_with(['2', '4', '5']));
}

/// Runs a two-recipient transaction on `replies`, in order.
fn transaction(replies: &[Reply], pipelining: bool) {
    let recipients = vec!["a@example.net".to_string(), "b@example.net".to_string()];
    let envelope = Envelope {
        sender: "s@example.org",
        recipients: &recipients,
        params: MailParams::default(),
    };
    let Ok(mut tx) = Transaction::new(&envelope, pipelining) else {
        panic!("valid envelope refused");
    };
    let mut replies = replies.iter();
    for _ in 0..64 {
        match tx.next_action() {
            Action::Send(_) | Action::SendBody => {}
            Action::AwaitReply => match replies.next() {
                Some(r) => assert_eq!(tx.on_reply(r.clone()), Ok(())),
                None => return,
            },
            Action::Done(outcome) => {
                assert_eq!(outcome.rcpts.len(), recipients.len());
                return;
            }
        }
    }
    panic!("transaction did not finish");
}

/// Runs connection setup on `replies`, in order.
fn setup(replies: &[Reply]) {
    let Ok(mut s) = SessionSetup::new("client.example") else {
        panic!("valid host name refused");
    };
    let mut replies = replies.iter();
    for _ in 0..16 {
        match s.next_action() {
            Action::Send(_) | Action::SendBody => {}
            Action::AwaitReply => match replies.next() {
                Some(r) => assert_eq!(s.on_reply(r.clone()), Ok(())),
                None => return,
            },
            Action::Done(_) => return,
        }
    }
    panic!("setup did not finish");
}
