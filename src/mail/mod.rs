//! RFC 5322 header and address parsing shared by injection and cleanup.
//!
//! Everything here works on bytes and strings in memory (no I/O):
//!
//! - [`address`]: one envelope address, RFC 5321 syntax checks.
//! - [`address_list`]: the addresses in an address-list header value.
//! - [`bytes`]: fast byte searches for whole-message scans.
//! - [`header`]: splitting a message into header fields and body.
//! - [`line`](mod@line): where a line ends (CRLF, a bare LF or a bare CR).
//! - [`envelope_headers`]: sender and recipients taken from header fields.
//! - [`x_envelope`]: `X-Sender:`/`X-Receiver:` lines of .NET/IIS pickup files.
//! - [`xtext`]: the encoding of the DSN parameters ENVID and ORCPT.

pub mod address;
pub mod address_list;
pub mod bytes;
pub mod envelope_headers;
pub mod header;
pub mod line;
pub mod x_envelope;
pub mod xtext;

pub use address::{
    needs_smtputf8, parse_envelope_address, parse_smtp_path, refuse_control, split_address,
    AddressError,
};
pub use address_list::{argument_addresses, header_addresses};
pub use envelope_headers::{dedup_addresses, recipients_from_headers, sender_from_headers};
pub use header::{split_message, HeaderError, HeaderField, MessageParts, MAX_HEADER_LINE};
pub use x_envelope::{strip_x_envelope, XEnvelope};
