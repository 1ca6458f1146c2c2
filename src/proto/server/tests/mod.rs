//! The session driven with byte strings, split every which way, by a
//! harness that does what a socket driver does.

use std::sync::Arc;

use super::*;

mod auth;
mod basics;
mod bdat;
mod limits;
mod parameters;
mod strict;

/// One received message, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    sender: String,
    recipients: Vec<String>,
    content: Vec<u8>,
    params: MailParams,
    dsn: DsnParams,
    transfer: Transfer,
    auth: Option<String>,
    tls: bool,
}

/// A policy that records what it was asked and refuses on demand.
#[derive(Default)]
struct TestPolicy {
    /// Recipients containing this are refused with 554 5.7.1.
    refuse_rcpt: Option<&'static str>,
    /// Senders containing this make the session hang up with 421.
    drop_sender: Option<&'static str>,
    /// Messages containing this are refused with 554 5.7.0.
    refuse_content: Option<&'static str>,
    /// What the policy saw at RCPT: (client, helo, tls, auth, sender, count).
    seen: Vec<String>,
}

impl ServerPolicy for TestPolicy {
    fn mail(&mut self, _: &Context<'_>, sender: &str, _: &MailParams) -> Decision {
        match self.drop_sender {
            Some(s) if sender.contains(s) => {
                Decision::Disconnect(Reply::fixed(421, "4.7.0", "go away"))
            }
            _ => Decision::Accept,
        }
    }

    fn rcpt(&mut self, ctx: &Context<'_>, recipient: &str, _: &RcptDsn) -> Decision {
        self.seen.push(format!(
            "{:?} {:?} {} {:?} {:?} {}",
            ctx.client,
            ctx.helo,
            ctx.tls,
            ctx.auth_user,
            ctx.sender,
            ctx.recipients.len()
        ));
        match self.refuse_rcpt {
            Some(s) if recipient.contains(s) => {
                Decision::Reject(Reply::fixed(554, "5.7.1", "Relay access denied"))
            }
            _ => Decision::Accept,
        }
    }

    fn data_end(&mut self, message: &PendingMessage<'_>) -> Decision {
        match self.refuse_content {
            Some(s) if message.content.windows(s.len()).any(|w| w == s.as_bytes()) => {
                Decision::Reject(Reply::fixed(554, "5.7.0", "content refused"))
            }
            _ => Decision::Accept,
        }
    }
}

/// Drives a session the way a socket loop does.
struct Harness {
    session: Session,
    policy: TestPolicy,
    pending: Vec<u8>,
    out: Vec<u8>,
    next: u64,
    messages: Vec<Got>,
    /// (user, password) AUTH accepts.
    credentials: (&'static str, &'static [u8]),
    tls_starts: u32,
    closed: bool,
}

impl Harness {
    /// A greeted session with `config`.
    fn new(config: SessionConfig) -> Harness {
        let mut h = Harness::ungreeted(config);
        h.session.greeting(&mut h.out);
        h
    }

    fn ungreeted(config: SessionConfig) -> Harness {
        let params = Arc::new(SessionParams::new(config));
        let client = Some("192.0.2.7".parse().unwrap());
        Harness {
            session: Session::new(params, client),
            policy: TestPolicy::default(),
            pending: Vec::new(),
            out: Vec::new(),
            next: 1,
            messages: Vec::new(),
            credentials: ("alice", b"s3cret"),
            tls_starts: 0,
            closed: false,
        }
    }

    /// The default configuration, greeted, replies emptied.
    fn ready() -> Harness {
        let mut h = Harness::new(SessionConfig::default());
        h.replies();
        h
    }

    fn send(&mut self, bytes: &[u8]) {
        if self.closed {
            return; // the driver has closed the connection
        }
        self.pending.extend_from_slice(bytes);
        loop {
            let (n, progress) = self
                .session
                .feed(&self.pending, &mut self.out, &mut self.policy);
            assert!(n <= self.pending.len());
            self.pending.drain(..n);
            match progress {
                Progress::NeedInput => break,
                Progress::Close => {
                    self.closed = true;
                    break;
                }
                Progress::StartTls => {
                    self.pending.clear();
                    self.session.tls_started();
                    self.tls_starts += 1;
                    break;
                }
                Progress::Auth => {
                    let req = self.session.pending_auth().unwrap();
                    let ok = (req.user, req.password) == self.credentials;
                    self.session.auth_result(ok, &mut self.out);
                }
                Progress::Message => {
                    let m = self.session.pending_message().unwrap();
                    assert_eq!(m.recipients.len(), m.rcpt_dsn.len());
                    assert_eq!(m.size, m.content.len() as u64);
                    self.messages.push(Got {
                        sender: m.sender.to_string(),
                        recipients: m.recipients.to_vec(),
                        content: m.content.to_vec(),
                        params: m.params.clone(),
                        dsn: m.dsn(),
                        transfer: m.transfer,
                        auth: m.auth_user.map(str::to_string),
                        tls: m.tls,
                    });
                    let id = format!("Q{}", self.next);
                    self.next += 1;
                    self.session.finish_message(Ok(&id), &mut self.out);
                }
            }
        }
        // No test sets max_line above 4096.
        assert!(
            self.pending.len() <= 4096,
            "kept {} bytes",
            self.pending.len()
        );
    }

    /// The replies so far as text, emptied.
    fn replies(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.out)).unwrap()
    }

    /// The reply codes so far (multi-line replies once), emptied.
    fn codes(&mut self) -> Vec<u16> {
        self.replies()
            .split("\r\n")
            .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
            .map(|l| l[..3].parse().unwrap())
            .collect()
    }

    /// Sends `input` whole, then at every split into two and byte by
    /// byte, each to a fresh harness made by `make`; all must give the same
    /// replies and messages. Returns the whole run.
    fn every_split(make: impl Fn() -> Harness, input: &[u8]) -> Harness {
        let mut whole = make();
        whole.send(input);
        let expected = whole.replies();
        for i in 0..=input.len() {
            let mut h = make();
            h.send(&input[..i]);
            h.send(&input[i..]);
            assert_eq!(h.replies(), expected, "split at {i}");
            assert_eq!(h.messages, whole.messages, "split at {i}");
            assert_eq!(h.closed, whole.closed, "split at {i}");
        }
        let mut h = make();
        for b in input.chunks(1) {
            h.send(b);
        }
        assert_eq!(h.replies(), expected, "byte by byte");
        assert_eq!(h.messages, whole.messages, "byte by byte");
        whole.out = expected.into_bytes();
        whole
    }
}
