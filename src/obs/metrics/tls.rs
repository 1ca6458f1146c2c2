//! TLS handshakes by direction and protocol version, and failed ones.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::header;

/// Which side ringmail was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Delivering: ringmail is the client (STARTTLS to the next hop).
    Outbound,
    /// Receiving: a client of the SMTP listener started TLS.
    Inbound,
}

impl Direction {
    fn index(self) -> usize {
        self as usize
    }

    fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// Protocol versions as Postfix writes them (`TlsInfo::version`); `TLS`
/// for one rustls did not name.
const VERSIONS: [&str; 5] = ["TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1", "TLS"];

/// Handshake counters (one atomic add per connection: no shard split).
#[derive(Debug, Default)]
pub struct TlsCounters {
    done: [[AtomicU64; 5]; 2],
    failed: [AtomicU64; 2],
}

impl TlsCounters {
    /// A handshake finished with protocol `version` (`TLSv1.3`, ...).
    pub fn handshake(&self, direction: Direction, version: &str) {
        let i = VERSIONS
            .iter()
            .position(|v| *v == version)
            .unwrap_or(VERSIONS.len() - 1);
        self.done[direction.index()][i].fetch_add(1, Ordering::Relaxed);
    }

    /// A handshake failed (or timed out).
    pub fn failed(&self, direction: Direction) {
        self.failed[direction.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Writes the TLS metrics.
    pub(super) fn render(&self, out: &mut String) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        header(
            out,
            "ringmail_tls_handshakes_total",
            "counter",
            "TLS handshakes completed, by direction and protocol version.",
        );
        for d in [Direction::Outbound, Direction::Inbound] {
            for (i, v) in VERSIONS.iter().enumerate() {
                let n = load(&self.done[d.index()][i]);
                if n > 0 || i < 2 {
                    let _ = writeln!(
                        out,
                        "ringmail_tls_handshakes_total{{direction=\"{}\",version=\"{v}\"}} {n}",
                        d.as_str()
                    );
                }
            }
        }
        header(
            out,
            "ringmail_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out, by direction.",
        );
        for d in [Direction::Outbound, Direction::Inbound] {
            let _ = writeln!(
                out,
                "ringmail_tls_handshake_failures_total{{direction=\"{}\"}} {}",
                d.as_str(),
                load(&self.failed[d.index()])
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_labels_and_unknown_ones_are_tls() {
        let t = TlsCounters::default();
        t.handshake(Direction::Outbound, "TLSv1.3");
        t.handshake(Direction::Outbound, "TLSv1.3");
        t.handshake(Direction::Inbound, "TLSv1.2");
        t.handshake(Direction::Inbound, "SSLv3");
        t.failed(Direction::Outbound);
        let mut out = String::new();
        t.render(&mut out);
        assert!(out.contains(
            "ringmail_tls_handshakes_total{direction=\"outbound\",version=\"TLSv1.3\"} 2\n"
        ));
        assert!(out.contains(
            "ringmail_tls_handshakes_total{direction=\"outbound\",version=\"TLSv1.2\"} 0\n"
        ));
        assert!(out.contains(
            "ringmail_tls_handshakes_total{direction=\"inbound\",version=\"TLSv1.2\"} 1\n"
        ));
        assert!(out
            .contains("ringmail_tls_handshakes_total{direction=\"inbound\",version=\"TLS\"} 1\n"));
        assert!(out.contains("ringmail_tls_handshake_failures_total{direction=\"outbound\"} 1\n"));
        assert!(out.contains("ringmail_tls_handshake_failures_total{direction=\"inbound\"} 0\n"));
    }
}
