//! The `delay=` and `delays=a/b/c/d` figures of the log line.

pub(super) fn secs(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// Postfix's delay format: two decimals for small values, fewer for large.
/// Formats with integer arithmetic into the log line directly (a log line
/// carries five of these, and float formatting showed in profiles).
pub(super) struct Secs(pub(super) f64);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.0.is_finite() && self.0 > 0.0 {
            self.0
        } else {
            0.0
        };
        if s >= 10.0 {
            write!(f, "{}", s.round() as u64)
        } else if s >= 0.1 {
            let tenths = (s * 10.0).round() as u64;
            if tenths % 10 == 0 {
                write!(f, "{}", tenths / 10)
            } else {
                write!(f, "{}.{}", tenths / 10, tenths % 10)
            }
        } else {
            match (s * 100.0).round() as u64 {
                0 => f.write_str("0"),
                hundredths => write!(f, "0.{hundredths:02}"),
            }
        }
    }
}

/// [`Secs`] as a string.
#[cfg(test)]
pub(super) fn fmt_secs(s: f64) -> String {
    Secs(s).to_string()
}
