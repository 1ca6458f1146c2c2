//! Running the sink in the foreground for `ringmail sink`: periodic
//! statistics on stderr, one JSON line with the final counters on stdout.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::SinkConfig;
use super::server::start;
use super::stats::SinkSnapshot;
use super::SinkError;

/// How often `stop` is looked at.
const POLL: Duration = Duration::from_millis(50);

/// Runs a sink until `stop` becomes true. Prints
/// `ringmail sink: listening on ADDR` to stderr once listening, a
/// statistics line to stderr every `stats_every` (when given), and on stop
/// the final [`SinkSnapshot`] as one JSON line to stdout, which it also
/// returns. The caller sets `stop` (from a signal handler, say).
pub fn run_foreground(
    config: SinkConfig,
    stop: Arc<AtomicBool>,
    stats_every: Option<Duration>,
) -> Result<SinkSnapshot, SinkError> {
    run_with(
        config,
        &stop,
        stats_every,
        &mut std::io::stderr(),
        &mut std::io::stdout(),
    )
}

fn run_with(
    config: SinkConfig,
    stop: &AtomicBool,
    stats_every: Option<Duration>,
    log: &mut dyn Write,
    out: &mut dyn Write,
) -> Result<SinkSnapshot, SinkError> {
    let handle = start(config)?;
    // Diagnostics are best effort: a closed stderr must not stop the sink.
    let _ = writeln!(log, "ringmail sink: listening on {}", handle.local_addr);
    let mut last = (Instant::now(), handle.stats());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL);
        if let Some(every) = stats_every {
            let elapsed = last.0.elapsed();
            if elapsed >= every {
                let now = handle.stats();
                let _ = writeln!(log, "{}", stats_line(&now, &last.1, elapsed));
                last = (Instant::now(), now);
            }
        }
    }
    let last = handle.shutdown();
    let json = serde_json::to_string(&last).map_err(|e| SinkError::Output(e.into()))?;
    writeln!(out, "{json}")
        .and_then(|()| out.flush())
        .map_err(SinkError::Output)?;
    Ok(last)
}

/// One human-readable line: totals and the message rate since `before`.
pub(crate) fn stats_line(now: &SinkSnapshot, before: &SinkSnapshot, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = now.messages.saturating_sub(before.messages) as f64 / secs;
    format!(
        "sink: {} msgs ({rate:.0}/s), {} rcpts, {:.1} MB, conns {} open (max {}, {} total, {} refused), \
         ids {} unique {} dup {} missing, rejected mail {} rcpt {} data {} pipelined {}, 421 {}, \
         tls {}, auth {} ok {} failed",
        now.messages,
        now.recipients,
        now.bytes as f64 / 1e6,
        now.open_connections,
        now.max_concurrent_connections,
        now.connections,
        now.refused_connections,
        now.unique_message_ids,
        now.duplicate_message_ids,
        now.missing_message_ids,
        now.rejected_mail,
        now.rejected_rcpt,
        now.rejected_data,
        now.pipelined_after_data,
        now.disconnects,
        now.tls_sessions,
        now.auth_ok,
        now.auth_failed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpStream;

    #[test]
    fn prints_stats_and_a_final_json_line() {
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = Arc::clone(&stop);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let runner = std::thread::spawn(move || {
            let mut log = Vec::new();
            let mut out = Vec::new();
            let snap = run_with(
                SinkConfig::default(),
                &stopper,
                Some(Duration::from_millis(60)),
                &mut TeeFirstLine(&mut log, Some(addr_tx)),
                &mut out,
            )
            .unwrap();
            (snap, log, out)
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        let mut greeting = String::new();
        BufReader::new(&stream).read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("220 "));
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let (snap, log, out) = runner.join().unwrap();
        let log = String::from_utf8(log).unwrap();
        assert!(
            log.starts_with("ringmail sink: listening on 127.0.0.1:"),
            "{log}"
        );
        assert!(log.contains("sink: 0 msgs (0/s), 0 rcpts"), "{log}");
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.lines().count(), 1);
        let back: SinkSnapshot = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(back, snap);
        assert_eq!(snap.connections, 1);
    }

    /// Collects everything and sends the address of the first line.
    struct TeeFirstLine<'a>(
        &'a mut Vec<u8>,
        Option<std::sync::mpsc::Sender<std::net::SocketAddr>>,
    );

    impl Write for TeeFirstLine<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(buf);
            if let Some(tx) = &self.1 {
                let text = std::str::from_utf8(self.0).unwrap();
                if let Some((line, _)) = text.split_once('\n') {
                    if let Some(addr) = line.strip_prefix("ringmail sink: listening on ") {
                        if let Ok(addr) = addr.parse() {
                            tx.send(addr).unwrap();
                            self.1 = None;
                        }
                    }
                }
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
