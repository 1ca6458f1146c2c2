//! What a protocol state machine asks its driver to do next.
//!
//! Every machine here ([`Transaction`](super::Transaction),
//! [`SessionSetup`](super::SessionSetup),
//! [`SimpleCommand`](super::SimpleCommand)) has the same two methods:
//! `next_action(&mut self) -> Action<Outcome>` and
//! `on_reply(&mut self, Reply) -> Result<(), ProtoError>`. The driver loops
//! on `next_action`, does what it says on its connection, and hands every
//! awaited reply to `on_reply`. `on_reply` fails only when the machine is
//! driven wrongly ([`ProtoError::Misuse`](super::ProtoError::Misuse));
//! everything the server says ends up in the outcome.

use super::transaction::TxOutcome;

/// What the caller does next on the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<T = TxOutcome> {
    /// Write these bytes. The machine counts them as sent once it has
    /// returned them.
    Send(Vec<u8>),
    /// Write the message's stored wire form (dot-stuffed, CRLF-terminated),
    /// then [`END_OF_DATA`](super::command::END_OF_DATA). Only a
    /// [`Transaction`](super::Transaction) asks for this.
    SendBody,
    /// Read one complete reply and pass it to the machine's `on_reply`.
    /// Asking again before that gives `AwaitReply` again.
    AwaitReply,
    /// Finished with this outcome; asking again gives it again.
    Done(T),
}
