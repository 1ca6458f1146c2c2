//! Starting the delivery events of `[events]` (`obs::events`): the events
//! file's writer thread and, with a `webhook_url`, the webhook poster.
//! The daemon hands the [`EventSink`] to whatever emits events; without
//! `[events]` it is a disabled sink, so emitters never check.

use std::time::Duration;

use crate::config::{Config, EventsConfig, EventsFsync};
use crate::obs::events::{
    EventService, EventSink, EventsError, EventsOptions, FsyncPolicy, WebhookOptions,
};

/// The options of `events` for the spool of `config`.
pub fn options(config: &Config, events: &EventsConfig) -> EventsOptions {
    let file = events.file_in(&config.spool_dir);
    let webhook = events.webhook_url.as_ref().map(|url| {
        let mut w = WebhookOptions::new(url.clone(), crate::obs::events::cursor_path(&file));
        w.batch = events.webhook_batch;
        w.token = events.webhook_token.clone();
        w.timeout = Duration::from_secs(events.webhook_timeout);
        w
    });
    let fsync = match events.fsync {
        EventsFsync::Batch => FsyncPolicy::Batch,
        EventsFsync::None => FsyncPolicy::None,
    };
    EventsOptions::new(file, events.max_file_size, events.keep, fsync, webhook)
}

/// Starts the events threads when `[events]` is configured; returns the
/// running service (stop it at shutdown) and the sink to emit through.
pub fn start(config: &Config) -> Result<(Option<EventService>, EventSink), EventsError> {
    let Some(events) = &config.events else {
        return Ok((None, EventSink::disabled()));
    };
    let options = options(config, events);
    let service = EventService::start(options.clone())?;
    match &options.webhook {
        Some(w) => {
            tracing::info!(target: "events", "writing delivery events to {} and posting them to {}", options.writer.file.display(), w.url);
        }
        None => {
            tracing::info!(target: "events", "writing delivery events to {}", options.writer.file.display());
        }
    }
    let sink = service.sink();
    Ok((Some(service), sink))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_the_table() {
        let config = Config::parse(
            "spool_dir = \"/srv/spool\"\n[events]\nwebhook_url = \"http://127.0.0.1:9/hook\"\nwebhook_batch = 7\nfsync = \"none\"\n",
            std::path::Path::new("c.toml"),
        )
        .unwrap();
        let o = options(&config, config.events.as_ref().unwrap());
        assert_eq!(
            o.writer.file,
            std::path::Path::new("/srv/spool/events/events.jsonl")
        );
        assert_eq!(o.writer.fsync, FsyncPolicy::None);
        let w = o.webhook.unwrap();
        assert_eq!(w.batch, 7);
        assert_eq!(
            w.cursor,
            std::path::Path::new("/srv/spool/events/events.jsonl.cursor")
        );
        assert_eq!(o.writer.cursor.as_deref(), Some(w.cursor.as_path()));
    }

    #[test]
    fn without_the_table_the_sink_is_disabled() {
        let config = Config::parse("", std::path::Path::new("c.toml")).unwrap();
        let (service, sink) = start(&config).unwrap();
        assert!(service.is_none() && !sink.is_enabled());
    }
}
