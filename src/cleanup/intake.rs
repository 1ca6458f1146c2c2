//! Turning the bytes of a spool file into a queue submission: the envelope
//! (from the maildrop envelope, from leading `X-Sender:`/`X-Receiver:`
//! lines, or from the headers, as Postfix's cleanup extracts recipients),
//! then the header fixes and wire form of [`cleanup_parts`]. Pickup reads
//! the files; the daemon hands it this function, so the input stage never
//! depends on a later one.

use std::path::Path;

use super::{cleanup_parts, CleanupOptions};
use crate::inject::{maildrop, user, SpoolKind};
use crate::mail::MessageParts;
use crate::mail::{recipients_from_headers, sender_from_headers, split_message, strip_x_envelope};
use crate::model::{DsnParams, Envelope, Source, Submission};

/// Site settings cleanup needs.
#[derive(Clone, Debug)]
pub struct SiteParams {
    /// `myhostname`.
    pub myhostname: String,
    /// Domain for unqualified addresses.
    pub origin: String,
    /// `message_size_limit`.
    pub message_size_limit: u64,
}

/// Builds the submission for a spool file, or says why it cannot be queued
/// (the reason goes into `corrupt/<name>.reason`).
pub fn prepare(
    data: &[u8],
    kind: SpoolKind,
    owner_uid: u32,
    path: &Path,
    site: &SiteParams,
) -> Result<Submission, String> {
    let limit = site.message_size_limit;
    let (uid, envelope, full_name, dsn, parts) = match kind {
        SpoolKind::Maildrop => {
            let m = maildrop::decode(data).map_err(|e| e.to_string())?;
            check_size(m.message, limit)?;
            let parts = split_message(m.message).map_err(|e| format!("malformed message: {e}"))?;
            // The file owner, not the uid line the writer claims: maildrop/ is
            // writable by every local user, so the owner is what can be trusted.
            (owner_uid, m.envelope, m.full_name, m.dsn, parts)
        }
        SpoolKind::Pickup => {
            let (envelope, parts) = pickup_envelope(data, owner_uid, site)?;
            (owner_uid, envelope, None, DsnParams::default(), parts)
        }
    };
    if envelope.recipients.is_empty() {
        return Err("no recipients: no X-Receiver: line and no To:, Cc: or Bcc: address".into());
    }
    let opts = CleanupOptions {
        myhostname: &site.myhostname,
        message_size_limit: site.message_size_limit,
        full_name: full_name.as_deref(),
        now: chrono::Local::now(),
    };
    let cleaned = cleanup_parts(&parts, &envelope, &opts).map_err(|e| e.to_string())?;
    Ok(Submission {
        envelope,
        wire: cleaned.wire,
        flags: cleaned.flags,
        dsn,
        message_id: cleaned.message_id,
        arrival_micros: crate::model::now_micros(),
        uid,
        source: Source::File(path.to_path_buf()),
        origin: match kind {
            SpoolKind::Maildrop => crate::obs::metrics::Origin::Sendmail,
            SpoolKind::Pickup => crate::obs::metrics::Origin::Pickup,
        },
        file_identity: None,
        campaign: None,
    })
}

/// Refuses a message larger than `limit` before any parsing.
fn check_size(message: &[u8], limit: u64) -> Result<(), String> {
    if message.len() as u64 > limit {
        Err(format!(
            "message too large: {} bytes, limit {limit}",
            message.len()
        ))
    } else {
        Ok(())
    }
}

/// The envelope of a pickup file and its message, split into header fields and body.
fn pickup_envelope<'a>(
    data: &'a [u8],
    owner_uid: u32,
    site: &SiteParams,
) -> Result<(Envelope, MessageParts<'a>), String> {
    let x = strip_x_envelope(data, &site.origin)
        .map_err(|e| format!("bad X-Sender/X-Receiver line: {e}"))?;
    let (x_sender, mut recipients, message) = match x {
        Some(x) => (x.sender, x.recipients, &data[x.body_offset..]),
        None => (None, Vec::new(), data),
    };
    check_size(message, site.message_size_limit)?;
    let parts = split_message(message).map_err(|e| format!("malformed message: {e}"))?;
    if recipients.is_empty() {
        recipients = recipients_from_headers(&parts, &site.origin).map_err(|e| e.to_string())?;
    }
    let sender = match x_sender {
        Some(s) => s,
        None => match sender_from_headers(&parts, &site.origin).map_err(|e| e.to_string())? {
            Some(s) => s,
            None => format!("{}@{}", user::default_sender(owner_uid), site.origin),
        },
    };
    Ok((Envelope { sender, recipients }, parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> SiteParams {
        SiteParams {
            myhostname: "mx.example.org".into(),
            origin: "example.org".into(),
            message_size_limit: 100_000,
        }
    }

    #[test]
    fn x_lines_give_the_envelope_and_are_stripped() {
        let data = b"X-Sender: a@x.example\r\nX-Receiver: b@y.example\r\nX-Receiver: c@y.example\r\nTo: other@z.example\r\nSubject: s\r\n\r\nbody\r\n";
        let s = prepare(data, SpoolKind::Pickup, 0, Path::new("p/f"), &site()).unwrap();
        assert_eq!(s.envelope.sender, "a@x.example");
        assert_eq!(s.envelope.recipients, vec!["b@y.example", "c@y.example"]);
        assert!(s.wire.starts_with(b"To: other@z.example\r\n"));
        assert!(!s.wire.windows(8).any(|w| w == b"X-Sender"));
    }

    #[test]
    fn headers_give_the_envelope_otherwise() {
        let data = b"From: Jane <jane@x.example>\nTo: b@y.example, c\nBcc: d@y.example\nSubject: s\n\nbody\n";
        let s = prepare(data, SpoolKind::Pickup, 0, Path::new("p/f"), &site()).unwrap();
        assert_eq!(s.envelope.sender, "jane@x.example");
        assert_eq!(
            s.envelope.recipients,
            vec!["b@y.example", "c@example.org", "d@y.example"]
        );
        assert!(!s.wire.windows(4).any(|w| w == b"Bcc:"));
    }

    #[test]
    fn unqueueable_files_say_why() {
        let no_rcpt = prepare(
            b"Subject: s\n\nbody\n",
            SpoolKind::Pickup,
            0,
            Path::new("f"),
            &site(),
        );
        assert!(no_rcpt.unwrap_err().contains("no recipients"));
        let garbage = prepare(
            b"\x00\x01\x02binary",
            SpoolKind::Pickup,
            0,
            Path::new("f"),
            &site(),
        );
        assert!(garbage.is_err());
        let mut big = b"To: a@b.example\n\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', 200_000));
        assert!(prepare(&big, SpoolKind::Pickup, 0, Path::new("f"), &site()).is_err());
        let not_maildrop = prepare(
            b"To: a@b.example\n\nx\n",
            SpoolKind::Maildrop,
            0,
            Path::new("f"),
            &site(),
        );
        assert!(not_maildrop.unwrap_err().contains("maildrop"));
    }
}
