//! The envelope lines of the pickup-directory format written by .NET's
//! `SmtpClient` (`SpecifiedPickupDirectory`) and IIS: `X-Sender:` and
//! `X-Receiver:` lines in front of the real message.

use super::address::{parse_envelope_address, AddressError};
use super::bytes::find_byte;
use super::envelope_headers::dedup_addresses;

/// The envelope found at the start of a pickup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XEnvelope {
    /// The `X-Sender:` address (`Some("")` for `<>`), if the file had one.
    /// With several, the first one counts.
    pub sender: Option<String>,
    /// The `X-Receiver:` addresses, deduplicated, in order.
    pub recipients: Vec<String>,
    /// Byte offset where the real message starts.
    pub body_offset: usize,
}

/// Which envelope line a line is.
enum Kind {
    /// `X-Sender:`.
    Sender,
    /// `X-Receiver:`.
    Receiver,
}

/// When `raw` begins with one or more `X-Sender:` / `X-Receiver:` lines
/// (names case-insensitive, LF or CRLF line ends), parses their values with
/// [`parse_envelope_address`] (the null sender allowed for `X-Sender:`) and
/// returns them with the offset just after the last such line. Returns
/// `Ok(None)` when the file does not start with one of them.
pub fn strip_x_envelope(raw: &[u8], origin: &str) -> Result<Option<XEnvelope>, AddressError> {
    let mut sender: Option<String> = None;
    let mut recipients = Vec::new();
    let mut pos = 0;
    let mut found = false;
    while pos < raw.len() {
        let rest = &raw[pos..];
        let (line, next) = match find_byte(b'\n', rest) {
            Some(i) => (&rest[..i], pos + i + 1),
            None => (rest, raw.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some((kind, value)) = envelope_line(line) else {
            break;
        };
        let value = std::str::from_utf8(value).map_err(|_| AddressError::Syntax {
            address: String::from_utf8_lossy(value).trim().to_string(),
            reason: "not valid UTF-8",
        })?;
        match kind {
            Kind::Sender => {
                let address = parse_envelope_address(value, origin, true)?;
                sender.get_or_insert(address);
            }
            Kind::Receiver => recipients.push(parse_envelope_address(value, origin, false)?),
        }
        found = true;
        pos = next;
    }
    if !found {
        return Ok(None);
    }
    Ok(Some(XEnvelope {
        sender,
        recipients: dedup_addresses(recipients),
        body_offset: pos,
    }))
}

/// Recognises an envelope line and returns its kind and value.
fn envelope_line(line: &[u8]) -> Option<(Kind, &[u8])> {
    const SENDER: &[u8] = b"x-sender:";
    const RECEIVER: &[u8] = b"x-receiver:";
    let starts = |prefix: &[u8]| {
        line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    if starts(SENDER) {
        Some((Kind::Sender, &line[SENDER.len()..]))
    } else if starts(RECEIVER) {
        Some((Kind::Receiver, &line[RECEIVER.len()..]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_crlf_envelope_lines() {
        let raw = b"X-Sender: app@x.example\r\nX-Receiver: a@y.example\r\nX-Receiver: <b@y.example>\r\nFrom: app@x.example\r\n\r\nhi\r\n";
        let env = strip_x_envelope(raw, "o.example").unwrap().unwrap();
        assert_eq!(env.sender.as_deref(), Some("app@x.example"));
        assert_eq!(env.recipients, ["a@y.example", "b@y.example"]);
        assert!(raw[env.body_offset..].starts_with(b"From: app@x.example\r\n"));
    }

    #[test]
    fn strips_lf_lowercase_lines_and_null_sender() {
        let raw = b"x-sender: <>\nx-receiver: root\nx-receiver: root@O.Example\nSubject: s\n\n";
        let env = strip_x_envelope(raw, "o.example").unwrap().unwrap();
        assert_eq!(env.sender.as_deref(), Some(""));
        assert_eq!(env.recipients, ["root@o.example"]);
        assert_eq!(&raw[env.body_offset..], b"Subject: s\n\n");
    }

    #[test]
    fn receivers_only_and_whole_file() {
        let raw = b"X-Receiver: a@y.example";
        let env = strip_x_envelope(raw, "o.example").unwrap().unwrap();
        assert_eq!(env.sender, None);
        assert_eq!(env.body_offset, raw.len());
    }

    #[test]
    fn other_files_are_left_alone() {
        assert_eq!(
            strip_x_envelope(b"From: a@x.example\n\n", "o.example"),
            Ok(None)
        );
        assert_eq!(strip_x_envelope(b"", "o.example"), Ok(None));
        // Only at the very start.
        assert_eq!(
            strip_x_envelope(b"Subject: s\nX-Sender: a@x.example\n\n", "o.example"),
            Ok(None)
        );
    }

    #[test]
    fn bad_addresses_are_errors() {
        assert!(strip_x_envelope(b"X-Sender: a@x.example\nX-Receiver: <>\n", "o").is_err());
        assert!(strip_x_envelope(b"X-Receiver: a b@x.example\n", "o").is_err());
        assert!(strip_x_envelope(b"X-Receiver: a@\xffx.example\n", "o").is_err());
    }

    #[test]
    fn control_characters_and_tricks_in_envelope_lines_are_errors() {
        for raw in [
            &b"X-Receiver: good@example.net\rRCPT TO:<evil@x.test>\r\n\r\n"[..],
            b"X-Receiver: good@example.net\r\r\n\r\n",
            b"X-Sender: a@b.example\x0b<evil@x.test>\n\n",
            b"X-Receiver: evil@x.test <good@example.net>\n\n",
            b"X-Receiver: \tgood@example.net\n\n",
        ] {
            assert!(
                strip_x_envelope(raw, "o.example").is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let env = strip_x_envelope(b"X-Receiver: Bob <b@y.example>\r\n\r\n", "o")
            .unwrap()
            .unwrap();
        assert_eq!(env.recipients, ["b@y.example"]);
    }
}
