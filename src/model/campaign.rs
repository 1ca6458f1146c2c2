//! A newsletter campaign as the queue stores it: the template and options
//! once, and the recipient list in slices, each queued like a message.

use std::sync::Arc;

/// Most recipients in one slice: a slice is queued, indexed and scheduled
/// like one message, so a campaign of any size is many bounded records.
pub const SLICE_RECIPIENTS: usize = 1024;

/// What every slice of a campaign shares (stored once per shard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignSpec {
    /// The campaign ID (unique in this spool).
    pub id: u64,
    /// When it was accepted, microseconds since the epoch.
    pub created_micros: u64,
    /// `From:` when the template has none (empty: none).
    pub from: String,
    /// Domain of the VERP and mailto unsubscribe addresses (empty: the
    /// From: domain).
    pub bounce_domain: String,
    /// Base of the one-click unsubscribe URL (empty: none).
    pub unsubscribe_base: String,
    /// Names of the merge-field columns, in the order of each row's values.
    pub columns: Vec<String>,
    /// The template: a whole message with merge fields, as given.
    pub template: Vec<u8>,
}

/// One recipient of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceRow {
    /// The address.
    pub email: String,
    /// Merge-field values, parallel to [`CampaignSpec::columns`].
    pub values: Vec<String>,
}

/// Up to [`SLICE_RECIPIENTS`] recipients of a campaign, handed to a shard.
#[derive(Clone, Debug)]
pub struct CampaignSlice {
    /// The campaign.
    pub spec: Arc<CampaignSpec>,
    /// Index of the first row in the campaign (recipient indices name a
    /// recipient in tokens and reports).
    pub first_index: u32,
    /// The recipients.
    pub rows: Vec<SliceRow>,
}
