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
        let meta = event.metadata();
        let target = meta.target().rsplit("::").next().unwrap_or("ringmail");
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        STAMP.with(|stamp| -> fmt::Result {
            let mut stamp = stamp.borrow_mut();
            if stamp.0 != secs {
                stamp.1 = chrono::Local::now().format("%b %e %H:%M:%S").to_string();
                stamp.0 = secs;
            }
            write!(
                w,
                "{} {} ringmail/{}[{}]: ",
                stamp.1, self.host, target, self.pid
            )
        })?;
        match *meta.level() {
            Level::ERROR => write!(w, "error: ")?,
            Level::WARN => write!(w, "warning: ")?,
            _ => {}
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// A message to the log writer thread.
enum LogMsg {
    /// One formatted line.
    Line(Vec<u8>),
    /// Answer once every earlier line is written.
    Flush(crossbeam_channel::Sender<()>),
}

/// Lines queued for the writer thread; bounded, so a stuck stderr slows the
/// daemon down instead of eating memory.
const LOG_QUEUE: usize = 64 * 1024;

/// The writer thread's queue, for [`flush`].
static LOG_TX: std::sync::OnceLock<crossbeam_channel::Sender<LogMsg>> = std::sync::OnceLock::new();

/// Hands each formatted line to the writer thread, which writes batches of
/// lines with one system call each to stderr and, when configured, a file:
/// at tens of thousands of lines a second, a write per line on the shard
/// threads was a visible cost.
#[derive(Clone)]
struct Tee {
    tx: crossbeam_channel::Sender<LogMsg>,
}

struct TeeWriter {
    tx: crossbeam_channel::Sender<LogMsg>,
}

impl Write for TeeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Logging must never take the daemon down: a closed queue is ignored.
        let _ = self.tx.send(LogMsg::Line(buf.to_vec()));
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
            tx: self.tx.clone(),
        }
    }
}

/// The writer thread: drains whatever is queued and writes it in one go.
fn writer_thread(rx: crossbeam_channel::Receiver<LogMsg>, mut file: Option<File>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut acks = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                LogMsg::Line(line) => batch.extend_from_slice(&line),
                LogMsg::Flush(ack) => acks.push(ack),
            }
            next = if batch.len() < 1 << 20 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        // Errors are ignored: logging must never take the daemon down.
        let _ = std::io::stderr().write_all(&batch);
        if let Some(f) = file.as_mut() {
            let _ = f.write_all(&batch);
        }
        batch.clear();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// Waits (up to a second) until every line logged so far is written.
pub fn flush() {
    if let Some(tx) = LOG_TX.get() {
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        if tx.send(LogMsg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(std::time::Duration::from_secs(1));
        }
    }
}

/// Installs the global logger. `verbose` adds debug lines. Calling it twice
/// keeps the first logger.
pub fn init(hostname: &str, log_file: Option<&Path>, verbose: bool) -> Result<(), ObsError> {
    let file = match log_file {
        Some(p) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|source| ObsError::LogFile {
                    path: p.display().to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    if LOG_TX.get().is_some() {
        return Ok(());
    }
    let (tx, rx) = crossbeam_channel::bounded(LOG_QUEUE);
    std::thread::Builder::new()
        .name("log".into())
        .spawn(move || writer_thread(rx, file))
        .map_err(|source| ObsError::LogFile {
            path: "<log writer thread>".into(),
            source,
        })?;
    let _ = LOG_TX.set(tx.clone());
    let level = if verbose { Level::DEBUG } else { Level::INFO };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .event_format(PostfixFormat {
            host: hostname.split('.').next().unwrap_or(hostname).to_string(),
            pid: std::process::id(),
        })
        .with_writer(Tee { tx })
        .try_init();
    Ok(())
}
