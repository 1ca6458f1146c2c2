//! Writing accepted messages to the dump directory: `n.eml` (the message)
//! and `n.json` (its envelope). The format is described in the module
//! documentation of [`crate::sink`].

use std::io;
use std::path::Path;

use serde::Serialize;

use super::session::PendingMessage;

#[derive(Serialize)]
struct Envelope<'a> {
    number: u64,
    mail_from: &'a str,
    mail_params: &'a str,
    rcpt_to: &'a [String],
    size: u64,
    message_id: Option<&'a str>,
    helo: &'a str,
    tls: bool,
    auth: Option<&'a str>,
}

/// Writes message `number` to `dir`. The `.eml` is written first, so a
/// `.json` file means its message is complete.
pub(crate) fn write(
    dir: &Path,
    number: u64,
    message: &PendingMessage<'_>,
    message_id: Option<&str>,
) -> io::Result<()> {
    std::fs::write(dir.join(format!("{number}.eml")), message.content)?;
    let envelope = Envelope {
        number,
        mail_from: message.mail_from,
        mail_params: message.mail_params,
        rcpt_to: message.rcpt_to,
        size: message.size,
        message_id,
        helo: message.helo,
        tls: message.tls,
        auth: message.auth,
    };
    let mut json = serde_json::to_vec(&envelope).map_err(io::Error::other)?;
    json.push(b'\n');
    std::fs::write(dir.join(format!("{number}.json")), json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let rcpts = vec!["b@y".to_string()];
        let m = PendingMessage {
            helo: "c",
            mail_from: "",
            mail_params: "SIZE=3",
            rcpt_to: &rcpts,
            size: 5,
            content: b"x\r\ny\n",
            tls: true,
            auth: None,
        };
        write(dir.path(), 7, &m, None).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("7.eml")).unwrap(),
            b"x\r\ny\n"
        );
        let json = std::fs::read_to_string(dir.path().join("7.json")).unwrap();
        assert_eq!(
            json,
            "{\"number\":7,\"mail_from\":\"\",\"mail_params\":\"SIZE=3\",\"rcpt_to\":[\"b@y\"],\
             \"size\":5,\"message_id\":null,\"helo\":\"c\",\"tls\":true,\"auth\":null}\n"
        );
        assert!(write(&dir.path().join("missing"), 8, &m, None).is_err());
    }
}
