//! Helpers for the state machine tests: replies from text and a driver that
//! records what a machine sent.

use super::action::Action;
use super::error::ProtoError;
use super::parser::ReplyParser;
use super::reply::Reply;
use super::session::{SessionSetup, SetupOutcome, SimpleCommand};
use super::transaction::{Transaction, TxOutcome};

/// The `next_action` / `on_reply` pair every machine has, so one test
/// driver runs them all.
pub trait Machine {
    /// What `Done` carries.
    type Outcome;
    fn next_action(&mut self) -> Action<Self::Outcome>;
    fn on_reply(&mut self, reply: Reply) -> Result<(), ProtoError>;
}

macro_rules! machine {
    ($t:ty, $o:ty) => {
        impl Machine for $t {
            type Outcome = $o;
            fn next_action(&mut self) -> Action<$o> {
                <$t>::next_action(self)
            }
            fn on_reply(&mut self, reply: Reply) -> Result<(), ProtoError> {
                <$t>::on_reply(self, reply)
            }
        }
    };
}

machine!(Transaction, TxOutcome);
machine!(SessionSetup, Result<SetupOutcome, ProtoError>);
machine!(SimpleCommand, Result<Reply, ProtoError>);

/// Parses one reply written with `\n` line ends, e.g. `"250-a\n250 b"`.
pub fn reply(text: &str) -> Reply {
    let mut p = ReplyParser::new();
    p.feed(text.as_bytes());
    p.feed(b"\r\n");
    let r = p
        .next_reply()
        .expect("valid reply")
        .expect("complete reply");
    assert!(!p.has_pending(), "one reply only: {text:?}");
    r
}

/// What a driven machine did.
#[derive(Debug)]
pub struct Run<T> {
    /// Each write in order: the bytes of a `Send`, or `<body>` for `SendBody`.
    pub writes: Vec<String>,
    /// The actions in order, as `send`, `body`, `await`.
    pub actions: Vec<&'static str>,
    /// What `Done` carried.
    pub outcome: T,
}

/// Runs `machine` as a driver would, answering each `AwaitReply` with the
/// next of `replies`. Panics if the replies run out or are not all used, if
/// `on_reply` fails, or after 1000 steps.
pub fn drive<M: Machine>(mut machine: M, replies: &[&str]) -> Run<M::Outcome>
where
    M::Outcome: PartialEq + std::fmt::Debug,
{
    let mut replies = replies.iter();
    let mut writes = Vec::new();
    let mut actions = Vec::new();
    for _ in 0..1000 {
        match machine.next_action() {
            Action::Send(bytes) => {
                actions.push("send");
                writes.push(String::from_utf8(bytes).expect("commands are UTF-8"));
            }
            Action::SendBody => {
                actions.push("body");
                writes.push("<body>".to_string());
            }
            Action::AwaitReply => {
                actions.push("await");
                let text = replies
                    .next()
                    .expect("machine awaited more replies than given");
                machine.on_reply(reply(text)).expect("reply was awaited");
            }
            Action::Done(outcome) => {
                assert_eq!(replies.len(), 0, "replies left unread");
                assert_eq!(
                    machine.next_action(),
                    Action::Done(outcome),
                    "Done is stable"
                );
                let Action::Done(outcome) = machine.next_action() else {
                    unreachable!()
                };
                assert!(
                    matches!(
                        machine.on_reply(reply("250 late")),
                        Err(ProtoError::Misuse(_))
                    ),
                    "no reply awaited after Done"
                );
                return Run {
                    writes,
                    actions,
                    outcome,
                };
            }
        }
    }
    panic!("machine did not finish");
}
