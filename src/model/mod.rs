//! Plain data types shared by every stage: queue IDs, envelopes, recipient
//! status, message flags, DSN requests and submissions. No I/O happens here.

pub mod campaign;
pub mod dsn;
mod envelope;
pub mod fast_hash;
mod file_identity;
mod nexthop;
pub mod queue_command;
pub mod queue_id;
pub mod site_status;
mod submission;

pub use campaign::{CampaignSlice, CampaignSpec, SliceRow, SLICE_RECIPIENTS};
pub use dsn::{BodyType, DsnParams, DsnRet, Notify, RcptDsn};
pub use envelope::{Envelope, MessageFlags, RcptStatus};
pub use file_identity::{FileIdentity, FileKey};
pub use nexthop::{BadNexthop, Nexthop};
pub use queue_id::QueueId;
pub use submission::{Ack, AckError, AckSender, Source, Submission};

/// Microseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
