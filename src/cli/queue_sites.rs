//! `ringmail queue sites`: what the running daemon's shaping holds per
//! site, asked over the admin socket: open connections, a suspension (by
//! automation or `queue suspend`), automation's cuts of the connection
//! limit and the message rate, and when that next changes by itself.

use ringmail::config::Config;
use ringmail::daemon::admin_socket::{AdminAnswer, AdminQuery};
use ringmail::model::site_status::SiteStatus;

use super::queue_admin::ask;

/// Asks the daemon and prints the table (or one JSON array).
pub fn run(config: &Config, json: bool) -> anyhow::Result<()> {
    let query = AdminQuery {
        query: "sites".to_string(),
    };
    let sites = match ask(config, &query)? {
        AdminAnswer::Sites(s) => s,
        AdminAnswer::Error(e) => anyhow::bail!("{e}"),
        AdminAnswer::Report(_) => anyhow::bail!("the daemon answered with something else"),
    };
    if json {
        println!("{}", serde_json::to_string(&sites)?);
    } else {
        print!("{}", table(&sites, chrono::Utc::now().timestamp()));
    }
    Ok(())
}

/// The table, one line per site and source, times in UTC with how far
/// from `now` (Unix seconds) they are.
fn table(sites: &[SiteStatus], now: i64) -> String {
    if sites.is_empty() {
        return "no site state held (nothing sent since the start, or idle sites forgotten)\n"
            .to_string();
    }
    let when = |t: Option<i64>| match t {
        None => "-".to_string(),
        Some(t) => {
            let left = u64::try_from(t.saturating_sub(now)).unwrap_or(0);
            let at = chrono::DateTime::from_timestamp(t, 0).map_or_else(
                || t.to_string(),
                |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            );
            format!("{at} (in {})", remaining(left))
        }
    };
    let factor = |f: f64| {
        if f >= 1.0 {
            "-".to_string()
        } else {
            format!("x{f:.2}")
        }
    };
    let mut out = format!(
        "{:<30} {:<10} {:>7} {:<32} {:>7} {:>7}  {}\n",
        "SITE", "SOURCE", "CONNS", "SUSPENDED UNTIL", "CONN", "RATE", "NEXT CHANGE"
    );
    for s in sites {
        out.push_str(&format!(
            "{:<30} {:<10} {:>7} {:<32} {:>7} {:>7}  {}\n",
            s.site,
            s.source.as_deref().unwrap_or("-"),
            format!("{}/{}", s.connections, s.max_connections),
            when(s.suspended_until),
            factor(s.connection_factor),
            factor(s.message_rate_factor),
            when(s.next_change),
        ));
    }
    out
}

/// `1h05m`, `4m30s`, `12s`.
fn remaining(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_suspensions_and_cuts() {
        let now = 1_796_600_000;
        let sites = vec![
            SiteStatus {
                site: "google".into(),
                source: None,
                connections: 2,
                max_connections: 2,
                suspended_until: None,
                connection_factor: 0.5,
                message_rate_factor: 0.25,
                next_change: Some(now + 1800),
            },
            SiteStatus {
                site: "yahoo".into(),
                source: Some("ip-a".into()),
                connections: 0,
                max_connections: 10,
                suspended_until: Some(now + 7200),
                connection_factor: 1.0,
                message_rate_factor: 1.0,
                next_change: Some(now + 7200),
            },
        ];
        let t = table(&sites, now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("SITE"), "{t}");
        assert!(lines[1].starts_with("google"), "{t}");
        assert!(
            lines[1].contains("2/2") && lines[1].contains("x0.50") && lines[1].contains("x0.25"),
            "{t}"
        );
        assert!(lines[1].contains("(in 30m00s)"), "{t}");
        assert!(
            lines[2].contains("ip-a") && lines[2].contains("(in 2h00m)"),
            "{t}"
        );
        assert!(table(&[], now).starts_with("no site state"));
    }
}
