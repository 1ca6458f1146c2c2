//! Observability: log lines in Postfix's shape, to stderr and optionally a file.
//!
//! Every line reads like the seed's syslog lines:
//! `Nov 28 04:53:11 host ringmail/pickup[4242]: 3F2A1C0B9D1E: uid=0 from=<me@example.com>`.
//! The part after `ringmail/` is the tracing target, named after the
//! Postfix program that does the same step: `pickup`, `cleanup`, `qmgr`,
//! `smtp`, `master`, `sendmail`.
//!
//! Also: the Prometheus counters (`metrics`), a throttle for repeated
//! warnings, and the delivery events for applications (`events`: the
//! events file and the webhook).

pub mod events;
pub mod metrics;
pub mod throttle;

pub use throttle::Throttle;

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
    /// `host syslog_name`: what comes between the time stamp and `/TARGET`.
    origin: String,
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
        write_prefix(&mut w, &self.origin, self.pid, target)?;
        match *meta.level() {
            Level::ERROR => write!(w, "error: ")?,
            Level::WARN => write!(w, "warning: ")?,
            _ => {}
        }
        let _ = ctx;
        let mut fields = FieldWriter {
            out: Clean(w.by_ref()),
            result: Ok(()),
            first: true,
        };
        event.record(&mut fields);
        fields.result?;
        writeln!(w)
    }
}

/// Writes the start of a line: `Nov 28 04:53:11 host ringmail/TARGET[PID]: `,
/// where `origin` is `host ringmail` (the host name and the syslog name).
fn write_prefix(w: &mut impl fmt::Write, origin: &str, pid: u32, target: &str) -> fmt::Result {
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
        write!(w, "{} {}/{}[{}]: ", stamp.1, origin, target, pid)
    })
}

/// Writes an event's fields: the message as it is, other fields as
/// ` name=value`. Replaces tracing's default field formatter, which writes
/// through a character-by-character escaping writer (a visible cost at tens
/// of thousands of lines a second); [`Clean`] does the escaping that
/// matters here, per chunk.
struct FieldWriter<'a> {
    out: Clean<Writer<'a>>,
    result: fmt::Result,
    first: bool,
}

impl tracing::field::Visit for FieldWriter<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        use fmt::Write as _;
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            write!(self.out, "{sep}{value:?}")
        } else {
            write!(self.out, "{sep}{}={value:?}", field.name())
        };
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }
}

/// A `fmt::Write` that keeps a log line one line: control characters
/// (CR, LF, ESC ...) in what is written, such as a remote server's reply
/// text, become `?`, so no peer can forge or garble log lines.
struct Clean<W>(W);

impl<W: fmt::Write> fmt::Write for Clean<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Control characters are C0 (below 0x20), DEL and C1 (U+0080 to
        // U+009F, in UTF-8 0xC2 followed by 0x80..=0x9F): a byte scan finds
        // every candidate without decoding characters (this runs for every
        // piece of every log line).
        let suspect = |b: &u8| *b < 0x20 || *b == 0x7f || *b == 0xc2;
        if !s.as_bytes().iter().any(suspect) {
            return self.0.write_str(s);
        }
        let mut rest = s;
        while let Some(i) = rest.find(|c: char| c.is_control()) {
            self.0.write_str(&rest[..i])?;
            self.0.write_char('?')?;
            let c = rest[i..].chars().next().map(char::len_utf8).unwrap_or(1);
            rest = &rest[i + c..];
        }
        self.0.write_str(rest)
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
        let flushed = !acks.is_empty();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        if !flushed {
            // Let lines pile up: a thread parked in `recv` is woken (a futex
            // call by the logging thread and a context switch) for every
            // line that finds it parked.
            std::thread::sleep(WRITER_NAP);
        }
    }
}

/// What [`info`] needs to write a line itself: set by [`init`].
struct Direct {
    tx: crossbeam_channel::Sender<LogMsg>,
    /// As [`PostfixFormat::origin`].
    origin: String,
    pid: u32,
}

/// Set once the global logger is installed.
static DIRECT: std::sync::OnceLock<Direct> = std::sync::OnceLock::new();

thread_local! {
    /// The line [`info`] builds (kept to reuse its allocation).
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Logs one informational line for `target` (a Postfix program name such
/// as `smtp` or `qmgr`), in the same shape and to the same writer as
/// `tracing::info!(target: ...)`, without going through tracing's dispatch:
/// for the lines logged for every message (five per message, where tracing
/// cost about 1 µs a line). Before [`init`] (in unit tests), it goes
/// through tracing, so a test's subscriber sees it. Use it through
/// [`info_line!`](crate::info_line).
pub fn info(target: &'static str, args: fmt::Arguments<'_>) {
    let Some(direct) = DIRECT.get() else {
        match target {
            "pickup" => tracing::info!(target: "pickup", "{args}"),
            "cleanup" => tracing::info!(target: "cleanup", "{args}"),
            "qmgr" => tracing::info!(target: "qmgr", "{args}"),
            "smtp" => tracing::info!(target: "smtp", "{args}"),
            _ => tracing::info!("{target}: {args}"),
        }
        return;
    };
    LINE.with(|line| {
        let mut line = line.borrow_mut();
        if direct_line(&mut line, &direct.origin, direct.pid, target, args).is_ok() {
            // Logging must never take the daemon down: a closed queue is ignored.
            let _ = direct.tx.send(LogMsg::Line(line.as_bytes().to_vec()));
        }
    });
}

/// Builds in `line` what [`PostfixFormat`] writes for an informational
/// event with message `args`.
fn direct_line(
    line: &mut String,
    origin: &str,
    pid: u32,
    target: &str,
    args: fmt::Arguments<'_>,
) -> fmt::Result {
    use fmt::Write as _;
    line.clear();
    write_prefix(line, origin, pid, target)?;
    write!(Clean(&mut *line), "{args}")?;
    line.push('\n');
    Ok(())
}

/// `info_line!(target: "smtp", "{id}: to=<{}>, ...", ...)`: an
/// informational line through [`obs::info`](crate::obs::info).
#[macro_export]
macro_rules! info_line {
    (target: $target:literal, $($arg:tt)+) => {
        $crate::obs::info($target, format_args!($($arg)+))
    };
}

/// How long the writer thread naps after writing a batch: lines reach the
/// log at most this much later, and busy shards rarely have to wake it.
const WRITER_NAP: std::time::Duration = std::time::Duration::from_millis(2);

/// Waits (up to a second) until every line logged so far is written.
pub fn flush() {
    if let Some(tx) = LOG_TX.get() {
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        if tx.send(LogMsg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(std::time::Duration::from_secs(1));
        }
    }
}

/// Installs the global logger: lines name the first label of `hostname`
/// and `syslog_name/PROGRAM` (Postfix's `syslog_name`: an operator whose
/// log tools look for `postfix/` can set it). `verbose` adds debug lines.
/// Calling it twice keeps the first logger.
pub fn init(
    hostname: &str,
    syslog_name: &str,
    log_file: Option<&Path>,
    verbose: bool,
) -> Result<(), ObsError> {
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
    let host = hostname.split('.').next().unwrap_or(hostname);
    let origin = format!("{host} {syslog_name}");
    let pid = std::process::id();
    let installed = tracing_subscriber::fmt()
        .with_max_level(level)
        .event_format(PostfixFormat {
            origin: origin.clone(),
            pid,
        })
        .with_writer(Tee { tx: tx.clone() })
        .try_init();
    if installed.is_ok() {
        // Only when this logger is the global one: otherwise lines keep
        // going to whichever subscriber is installed.
        let _ = DIRECT.set(Direct { tx, origin, pid });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fmt::Write as _;

    #[test]
    fn control_characters_cannot_break_a_line() {
        let mut out = String::new();
        write!(
            Clean(&mut out),
            "said: 550 no\r\nJan  1 00:00:00 forged ringmail/smtp[1]: x \u{1b}[31mred é"
        )
        .unwrap();
        assert_eq!(
            out,
            "said: 550 no??Jan  1 00:00:00 forged ringmail/smtp[1]: x ?[31mred é"
        );
        assert!(!out.contains('\n'));
        // C1 controls and DEL go too; other characters from U+0080 up stay.
        let mut out = String::new();
        write!(Clean(&mut out), "a\u{85}b\u{9f}c\u{7f}d\u{a0}e\u{100}f ¢").unwrap();
        assert_eq!(out, "a?b?c?d\u{a0}e\u{100}f ¢");
    }

    /// What `f` logs through tracing with [`PostfixFormat`] (host `mx`,
    /// pid 42).
    fn capture(f: impl FnOnce()) -> String {
        use tracing_subscriber::layer::SubscriberExt;
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let make = move || SharedBuf(sink.clone());
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(PostfixFormat {
                    origin: "mx ringmail".into(),
                    pid: 42,
                })
                .with_writer(make),
        );
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn lines_have_postfix_shape_and_plain_fields() {
        let text = capture(|| {
            tracing::info!(target: "smtp", "ABC: to=<{}>, status=sent ({})", "a@b", "250 ok\r\nX");
            tracing::warn!(target: "qmgr", peer = "p", "slow");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with(" mx ringmail/smtp[42]: ABC: to=<a@b>, status=sent (250 ok??X)"),
            "{text}"
        );
        assert!(
            lines[1].ends_with(" mx ringmail/qmgr[42]: warning: slow peer=\"p\""),
            "{text}"
        );
    }

    /// The direct path writes exactly what tracing with [`PostfixFormat`]
    /// writes, control characters cleaned the same way; before `init`,
    /// `info` goes through tracing.
    #[test]
    fn direct_lines_match_tracing_lines() {
        let (id, reply) = ("4F1A", "250 2.0.0 ok\r\nforged");
        let mut direct = String::new();
        let text = capture(|| {
            tracing::info!(target: "smtp", "{id}: to=<a@b>, status=sent ({reply})");
            info("qmgr", format_args!("{id}: removed"));
            direct_line(
                &mut direct,
                "mx ringmail",
                42,
                "smtp",
                format_args!("{id}: to=<a@b>, status=sent ({reply})"),
            )
            .unwrap();
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        // Equal after the time stamp ("Nov 28 04:53:11 ", 16 bytes), which
        // may have ticked between the two.
        assert_eq!(&direct[16..], &format!("{}\n", lines[0])[16..]);
        assert!(
            direct.ends_with(
                " mx ringmail/smtp[42]: 4F1A: to=<a@b>, status=sent (250 2.0.0 ok??forged)\n"
            ),
            "{direct}"
        );
        assert!(
            lines[1].ends_with(" mx ringmail/qmgr[42]: 4F1A: removed"),
            "{text}"
        );
    }

    struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for SharedBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
