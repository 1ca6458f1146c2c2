//! `ringmail queue list`, `mailq`, `sendmail -bp`: the queue listing in
//! Postfix's format, or JSON lines.

use std::io::Write;

use ringmail::config::Config;
use ringmail::queue::{list_queue, QueueError, QueuedMessage};
use ringmail::spool::Spool;

/// The queue could not be listed because this user may not read it
/// (EX_NOPERM, 77).
#[derive(Debug, thiserror::Error)]
#[error("cannot list the mail queue: permission denied: {path} (the queue is readable by root and the daemon's user only)")]
pub struct PermissionDenied {
    /// The directory or file that could not be read.
    pub path: std::path::PathBuf,
}

/// Prints the listing of the queue under `config.spool_dir`.
pub fn print(config: &Config, json: bool) -> anyhow::Result<()> {
    let messages = match list_queue(&Spool::new(&config.spool_dir).queue()) {
        Ok(m) => m,
        Err(QueueError::Io { path, source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            return Err(PermissionDenied { path }.into())
        }
        Err(e) => return Err(e.into()),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        for m in &messages {
            serde_json::to_writer(&mut out, m)?;
            writeln!(out)?;
        }
    } else {
        write!(out, "{}", format_listing(&messages))?;
    }
    out.flush()?;
    Ok(())
}

/// Formats messages as Postfix's `mailq` does.
pub fn format_listing(messages: &[QueuedMessage]) -> String {
    if messages.is_empty() {
        return "Mail queue is empty\n".to_string();
    }
    let mut s =
        String::from("-Queue ID-   --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    let mut bytes = 0u64;
    for m in messages {
        bytes += m.size;
        let arrival = chrono::DateTime::from_timestamp(m.arrival_time as i64, 0)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%a %b %e %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default();
        // '*' marks mail not yet tried (Postfix: in the active queue), '!'
        // mail on hold (Postfix: in the hold queue).
        let active = m.recipients.iter().any(|r| r.status == "pending");
        let held = m.recipients.iter().any(|r| r.status == "held");
        let marker = if held {
            "!"
        } else if active {
            "*"
        } else {
            ""
        };
        let id = format!("{}{marker}", m.queue_id);
        let sender = if m.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &m.sender
        };
        s.push_str(&format!("{id:<13}{:>8} {arrival:>20}  {sender}\n", m.size));
        for r in m
            .recipients
            .iter()
            .filter(|r| matches!(r.status, "pending" | "deferred" | "held"))
        {
            if let Some(reason) = &r.reason {
                s.push_str(&format!("{:>44}({reason})\n", ""));
            }
            s.push_str(&format!("{:>44}{}\n", "", r.address));
        }
        s.push('\n');
    }
    let n = messages.len();
    s.push_str(&format!(
        "-- {} Kbytes in {n} Request{}.\n",
        bytes.div_ceil(1024),
        if n == 1 { "" } else { "s" }
    ));
    s
}
