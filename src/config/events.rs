//! The `[events]` table: delivery events written to a file and, with a
//! `webhook_url`, POSTed to an application (docs/OPERATIONS.md "Delivery
//! events and webhooks"). Events are on only when the table is present;
//! every key in it has a default.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Default largest events file before it is rotated: 64 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 << 20;

/// Default number of rotated events files kept.
pub const DEFAULT_KEEP: usize = 10;

/// Default most events per webhook request.
pub const DEFAULT_WEBHOOK_BATCH: usize = 100;

/// Most events per webhook request accepted in the configuration.
pub const MAX_WEBHOOK_BATCH: usize = 10_000;

/// When the events file is synced to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventsFsync {
    /// fdatasync after every batch of events written.
    #[default]
    Batch,
    /// Never (the kernel writes the file back in its own time).
    None,
}

/// The `[events]` table.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// The events file; unset: `<spool_dir>/events/events.jsonl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Rotate the file once it reaches this many bytes.
    pub max_file_size: u64,
    /// Rotated files to keep (more while the webhook has not sent them).
    pub keep: usize,
    /// When to sync the file.
    pub fsync: EventsFsync,
    /// POST events to this URL (`http://host[:port]/path`); unset: the
    /// file only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Most events per request.
    pub webhook_batch: usize,
    /// Sent as `Authorization: Bearer TOKEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_token: Option<String>,
    /// Seconds one request may take.
    pub webhook_timeout: u64,
}

impl fmt::Debug for EventsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventsConfig")
            .field("file", &self.file)
            .field("max_file_size", &self.max_file_size)
            .field("keep", &self.keep)
            .field("fsync", &self.fsync)
            .field("webhook_url", &self.webhook_url)
            .field("webhook_batch", &self.webhook_batch)
            .field(
                "webhook_token",
                &self.webhook_token.as_ref().map(|_| "<hidden>"),
            )
            .field("webhook_timeout", &self.webhook_timeout)
            .finish()
    }
}

impl Default for EventsConfig {
    fn default() -> EventsConfig {
        EventsConfig {
            file: None,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            keep: DEFAULT_KEEP,
            fsync: EventsFsync::Batch,
            webhook_url: None,
            webhook_batch: DEFAULT_WEBHOOK_BATCH,
            webhook_token: None,
            webhook_timeout: 10,
        }
    }
}

impl EventsConfig {
    /// The events file for a spool at `spool_dir`.
    pub fn file_in(&self, spool_dir: &std::path::Path) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| spool_dir.join("events").join("events.jsonl"))
    }

    /// Checks the values; the message names the offending key.
    pub fn check(&self) -> Result<(), String> {
        if let Some(file) = &self.file {
            if !file.is_absolute() {
                return Err(format!("file {}: must be an absolute path", file.display()));
            }
            if file.file_name().is_none() || file.to_str().is_some_and(|s| s.ends_with('/')) {
                return Err(format!("file {}: must name a file", file.display()));
            }
        }
        if self.max_file_size < 4096 {
            return Err("max_file_size must be at least 4096 bytes".into());
        }
        if self.keep == 0 {
            return Err("keep must be at least 1".into());
        }
        if self.webhook_batch == 0 || self.webhook_batch > MAX_WEBHOOK_BATCH {
            return Err(format!(
                "webhook_batch must be between 1 and {MAX_WEBHOOK_BATCH}"
            ));
        }
        if self.webhook_timeout == 0 {
            return Err("webhook_timeout must be at least 1 second".into());
        }
        if let Some(url) = &self.webhook_url {
            crate::obs::events::webhook::parse_url(url).map_err(|e| e.to_string())?;
        }
        if let Some(token) = &self.webhook_token {
            if self.webhook_url.is_none() {
                return Err("webhook_token without webhook_url".into());
            }
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("webhook_token must be printable characters without spaces".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = EventsConfig::default();
        assert_eq!(c.check(), Ok(()));
        assert_eq!(
            c.file_in(std::path::Path::new("/var/spool/ringmail")),
            PathBuf::from("/var/spool/ringmail/events/events.jsonl")
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let with = |f: fn(&mut EventsConfig)| {
            let mut c = EventsConfig::default();
            f(&mut c);
            c.check().unwrap_err()
        };
        assert!(with(|c| c.file = Some("events.jsonl".into())).contains("absolute"));
        assert!(with(|c| c.max_file_size = 10).contains("max_file_size"));
        assert!(with(|c| c.keep = 0).contains("keep"));
        assert!(with(|c| c.webhook_batch = 0).contains("webhook_batch"));
        assert!(with(|c| c.webhook_timeout = 0).contains("webhook_timeout"));
        assert!(with(|c| c.webhook_url = Some("https://a.example/".into())).contains("https"));
        assert!(with(|c| c.webhook_token = Some("abc".into())).contains("without webhook_url"));
    }

    #[test]
    fn debug_hides_the_token() {
        let c = EventsConfig {
            webhook_url: Some("http://127.0.0.1:9000/".into()),
            webhook_token: Some("s3cret-token".into()),
            ..EventsConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret-token") && shown.contains("<hidden>"),
            "{shown}"
        );
    }
}
