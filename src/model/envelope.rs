//! The envelope of a message and the status of each recipient.

/// Sender and recipients of one message, as they will be used in SMTP's
/// `MAIL FROM` and `RCPT TO`. Addresses are stored without angle brackets;
/// the empty sender is the null sender `<>` used by bounces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Envelope sender (`MAIL FROM`), empty for the null sender.
    pub sender: String,
    /// Envelope recipients (`RCPT TO`), in submission order, no duplicates.
    pub recipients: Vec<String>,
}

/// Facts about a message that delivery needs to know (RFC 6152, RFC 6531).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageFlags(pub u32);

impl MessageFlags {
    /// The body has bytes above 127: send `BODY=8BITMIME`.
    pub const BODY_8BIT: u32 = 1;
    /// An envelope address is not ASCII: the receiver must offer SMTPUTF8.
    pub const SMTPUTF8: u32 = 2;
    /// A header has bytes above 127 (UTF-8 headers, RFC 6532).
    pub const HEADERS_8BIT: u32 = 4;

    /// True when `flag` (one of the constants) is set.
    pub fn has(self, flag: u32) -> bool {
        self.0 & flag != 0
    }

    /// Sets `flag` (one of the constants).
    pub fn set(&mut self, flag: u32) {
        self.0 |= flag;
    }
}

/// Delivery status of one recipient, stored as one byte in the queue's
/// mutable status area and updated in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RcptStatus {
    /// Not yet tried (the zero byte of a freshly written record).
    Pending = 0,
    /// Tried and failed temporarily; will be retried.
    Deferred = 1,
    /// Accepted by the next hop.
    Sent = 2,
    /// Failed permanently; a bounce is due or was sent.
    Bounced = 3,
    /// Removed by the administrator or expired and bounced.
    Dropped = 4,
    /// Put on hold by the administrator (`queue hold`): kept, not tried,
    /// until `queue release` makes it deferred again.
    Held = 5,
}

impl RcptStatus {
    /// Decodes a status byte. Unknown values count as `Pending`, so a damaged
    /// byte can cause a second delivery attempt but never a lost recipient.
    pub fn from_byte(b: u8) -> RcptStatus {
        match b {
            1 => RcptStatus::Deferred,
            2 => RcptStatus::Sent,
            3 => RcptStatus::Bounced,
            4 => RcptStatus::Dropped,
            5 => RcptStatus::Held,
            _ => RcptStatus::Pending,
        }
    }

    /// True while the recipient still needs a delivery attempt.
    pub fn is_live(self) -> bool {
        matches!(self, RcptStatus::Pending | RcptStatus::Deferred)
    }

    /// True while the recipient keeps its message in the queue: it needs
    /// an attempt, or it is on hold.
    pub fn is_open(self) -> bool {
        self.is_live() || self == RcptStatus::Held
    }

    /// The word used in `mailq --json` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RcptStatus::Pending => "pending",
            RcptStatus::Deferred => "deferred",
            RcptStatus::Sent => "sent",
            RcptStatus::Bounced => "bounced",
            RcptStatus::Dropped => "dropped",
            RcptStatus::Held => "held",
        }
    }
}
