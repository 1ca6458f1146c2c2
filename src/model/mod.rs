//! Plain data types shared by every stage: queue IDs, envelopes, recipient
//! status, message flags and submissions. No I/O happens here.

mod envelope;
pub mod queue_id;
mod submission;

pub use envelope::{Envelope, MessageFlags, RcptStatus};
pub use queue_id::QueueId;
pub use submission::{Ack, AckError, Source, Submission};
