//! Campaign composition: a newsletter template (a full RFC 5322 message
//! with merge fields) parsed and compiled once, then rendered per
//! recipient into a message in wire form with its own Message-ID, VERP
//! envelope sender and RFC 8058 unsubscribe headers.
//!
//! Sans-IO: the callers read files and hand bytes in. The pieces:
//!
//! - [`check`]: `ringmail campaign check`, a campaign checked before
//!   anything is queued;
//! - [`mime`]: the template's MIME tree (headers, parts, decoded text);
//! - [`template`]: the compiled campaign template ([`CampaignTemplate`]);
//! - [`encode`]: header (RFC 2047) and body (quoted-printable, base64)
//!   encoding of rendered text;
//! - [`recipients`]: the recipient list (CSV with a header row, or JSON
//!   Lines), one [`RecipientRow`] at a time;
//! - [`token`]: the HMAC tokens that name a campaign recipient in VERP
//!   addresses and unsubscribe links, unforgeable without the key.

pub mod check;
pub mod encode;
pub mod mime;
pub mod recipients;
pub mod template;
pub mod token;

pub use recipients::{RecipientReader, RecipientRow};
pub use template::{CampaignTemplate, RenderContext, Rendered, TemplateOptions};
pub use token::{RecipientToken, TokenKey};

/// What can go wrong composing a campaign. None of these is transient: the
/// same input fails the same way again.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The template is not a message we can work with.
    #[error("template: {0}")]
    Template(String),
    /// A merge field does not compile (syntax error), with where it is.
    #[error("template {place}: {reason}")]
    Syntax {
        /// `header Subject`, `part 2 (text/html)`.
        place: String,
        /// minijinja's message.
        reason: String,
    },
    /// One recipient's fields do not render (missing field, bad address).
    #[error("{0}")]
    Render(String),
    /// The recipient list is malformed at a given line.
    #[error("recipients line {line}: {reason}")]
    Recipients {
        /// 1-based line (CSV record or JSON line).
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

impl ComposeError {
    /// Always false: composing is deterministic.
    pub fn is_transient(&self) -> bool {
        false
    }

    /// True when the failure belongs to one recipient only (the campaign
    /// goes on without it).
    pub fn is_per_recipient(&self) -> bool {
        matches!(self, ComposeError::Render(_))
    }
}
