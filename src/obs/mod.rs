//! Observability: log lines in Postfix's shape, to stderr and optionally a file.
//!
//! Every line reads like the seed's syslog lines:
//! `Nov 28 04:53:11 host ringmail/pickup[4242]: 3F2A1C0B9D1E: uid=0 from=<me@example.com>`.
//! The part after `ringmail/` is the tracing target, named after the
//! Postfix program that does the same step: `pickup`, `cleanup`, `qmgr`,
//! `smtp`, `master`, `sendmail`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Errors setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum ObsError {
    /// The log file could not be opened.
    #[error("{path}: cannot open log file: {source}")]
    LogFile {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ObsError {
    /// Opening a log file may work later (permissions fixed, disk freed).
    pub fn is_transient(&self) -> bool {
        true
    }
}

thread_local! {
    /// The syslog-style time stamp of the current second, formatted once per
    /// second per thread: at tens of thousands of lines a second,
    /// formatting dates was a visible cost.
    static STAMP: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
}

/// Formats events as Postfix-style syslog lines.
struct PostfixFormat {
    host: String,
    pid: u32,
}

impl<S, N> FormatEvent<S, N> for PostfixFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = chrono::Local::now();
        let meta = event.metadata();
        let target = meta.target().rsplit("::").next().unwrap_or("ringmail");
        write!(
            w,
            "{} {} ringmail/{}[{}]: ",
            now.format("%b %e %H:%M:%S"),
            self.host,
            target,
            self.pid
        )?;
        match *meta.level() {
            Level::ERROR => write!(w, "error: ")?,
            Level::WARN => write!(w, "warning: ")?,
            _ => {}
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Writes each formatted line to stderr and, when configured, to a file.
#[derive(Clone)]
struct Tee {
    file: Option<Arc<Mutex<File>>>,
}

struct TeeWriter {
    file: Option<Arc<Mutex<File>>>,
}

impl Write for TeeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Logging must never take the daemon down: errors are ignored.
        let _ = std::io::stderr().write_all(buf);
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                let _ = f.write_all(buf);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Tee {
    type Writer = TeeWriter;
    fn make_writer(&'a self) -> TeeWriter {
        TeeWriter {
            file: self.file.clone(),
        }
    }
}

/// Installs the global logger. `verbose` adds debug lines. Calling it twice
/// keeps the first logger.
pub fn init(hostname: &str, log_file: Option<&Path>, verbose: bool) -> Result<(), ObsError> {
    let file = match log_file {
        Some(p) => Some(Arc::new(Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|source| ObsError::LogFile {
                    path: p.display().to_string(),
                    source,
                })?,
        ))),
        None => None,
    };
    let level = if verbose { Level::DEBUG } else { Level::INFO };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .event_format(PostfixFormat {
            host: hostname.split('.').next().unwrap_or(hostname).to_string(),
            pid: std::process::id(),
        })
        .with_writer(Tee { file })
        .try_init();
    Ok(())
}
