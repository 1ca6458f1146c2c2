//! Durations (`30s`, `15m`, `2h`, `1d`) and rates (`100/s`, `3000/h`) as
//! `shaping.toml` writes them, and their printed forms.

use std::time::Duration;

use crate::config::Rate;

/// Parses a rate: `N/s`, `N/m`, `N/h` (also `sec`, `min`, `hour`), N ≥ 1;
/// the same syntax as `[[rate_limit]]`.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    Rate::parse(s)
}

/// A rate as `shaping.toml` writes it: `100/s`, `10/m`, `3000/h`.
pub fn rate_text(r: Rate) -> String {
    let unit = match r.per.as_secs() {
        1 => "s".to_string(),
        60 => "m".to_string(),
        3600 => "h".to_string(),
        n => format!("{n}s"),
    };
    format!("{}/{unit}", r.count)
}

/// `r` with its count multiplied by `factor` (rounded down, at least 1).
pub fn scale_rate(r: Rate, factor: f64) -> Rate {
    Rate {
        count: scale(r.count, factor),
        per: r.per,
    }
}

/// `n × factor`, rounded down, at least 1, at most `n` when `factor ≤ 1`.
pub fn scale(n: u32, factor: f64) -> u32 {
    let scaled = (f64::from(n) * factor).floor();
    if scaled < 1.0 {
        1
    } else if scaled >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        scaled as u32
    }
}

/// Parses a duration: a whole number followed by `s`, `m`, `h` or `d`
/// (also `sec`, `min`, `hour(s)`, `day(s)`), e.g. `90m`, `2h`. Must not be 0.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("bad duration {s:?}: expected e.g. 30s, 15m, 2h or 1d");
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let secs = match t[digits..].trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(format!("bad duration {s:?}: must not be 0"));
    }
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(bad)
}

/// A duration in the largest unit that divides it: `1h`, `90m`, `45s`.
pub fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s % size == 0 {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_print_and_scale() {
        let r = parse_rate("3000/h").unwrap();
        assert_eq!(rate_text(r), "3000/h");
        assert_eq!(rate_text(parse_rate("100/s").unwrap()), "100/s");
        assert_eq!(rate_text(parse_rate("10/min").unwrap()), "10/m");
        assert!(parse_rate("100").is_err() && parse_rate("0/s").is_err());
        assert_eq!(scale_rate(r, 0.5).count, 1500);
        assert_eq!(scale_rate(parse_rate("1/s").unwrap(), 0.1).count, 1);
    }

    #[test]
    fn scaling_never_reaches_zero() {
        assert_eq!(scale(20, 0.5), 10);
        assert_eq!(scale(3, 0.5), 1);
        assert_eq!(scale(1, 0.01), 1);
        assert_eq!(scale(10, 1.0), 10);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration(" 2 hours").unwrap(),
            Duration::from_secs(7200)
        );
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        for bad in ["", "m", "5", "5 weeks", "-1h", "0s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(duration_text(Duration::from_secs(3600)), "1h");
        assert_eq!(duration_text(Duration::from_secs(5400)), "90m");
        assert_eq!(duration_text(Duration::from_secs(45)), "45s");
    }
}
