//! `ringmail shaping show DOMAIN [--mx HOST]... [--source NAME]`: the
//! site a domain belongs to and the effective limits, each with the rule
//! that set it (docs/SHAPING.md). The MX hosts come from the configured
//! resolver (`[dns]`, as `check-domain` asks), or from `--mx` without DNS.
//!
//! Exit codes: 0 shown, 64 bad argument, 75 the DNS did not answer, 78 bad
//! configuration or shaping file.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use ringmail::check::{is_domain_name, CheckResolver};
use ringmail::config::Config;
use ringmail::shape::feedback::AutomationAction;
use ringmail::shape::rules::RuleScope;
use ringmail::shape::site::canonical;
use ringmail::shape::units::duration_text;
use ringmail::shape::{ShapingTable, SiteOrigin};

/// `shaping` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ShapingAction {
    /// Show a domain's site and effective limits, and why.
    Show(ShowArgs),
}

/// `shaping show` arguments.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The recipient domain.
    pub domain: String,
    /// An MX host of the domain (repeat for several); skips the DNS.
    #[arg(long = "mx", value_name = "HOST")]
    pub mx: Vec<String>,
    /// The sending source (a `[[source]]` name).
    #[arg(long)]
    pub source: Option<String>,
    /// Configuration file (`shaping_file`, `[dns]`, `[[source]]`).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
}

/// Runs `shaping`.
pub fn run(action: ShapingAction) -> ExitCode {
    match action {
        ShapingAction::Show(args) => show(args),
    }
}

fn show(args: ShowArgs) -> ExitCode {
    let config = match super::load(args.config.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringmail: fatal: {e:#}");
            return ExitCode::from(78);
        }
    };
    let domain = canonical(&args.domain);
    if !is_domain_name(&domain) {
        eprintln!(
            "ringmail: shaping show: {:?} is not a domain name",
            args.domain
        );
        return ExitCode::from(64);
    }
    let table = match ShapingTable::from_config(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ringmail: fatal: {e}");
            return ExitCode::from(78);
        }
    };
    if let Some(s) = &args.source {
        if table.source(s).is_none() {
            eprintln!("ringmail: shaping show: no [[source]] named {s:?}");
            return ExitCode::from(64);
        }
    }
    let (mx, how) = if args.mx.is_empty() {
        match lookup_mx(&config, &domain) {
            Ok(mx) => (mx, "DNS"),
            Err((code, e)) => {
                eprintln!("ringmail: shaping show: {e}");
                return ExitCode::from(code);
            }
        }
    } else {
        let mx: Vec<String> = args.mx.iter().map(|h| canonical(h)).collect();
        (mx, "--mx")
    };
    let null_mx = mx.iter().any(|h| h.is_empty());
    let hosts: Vec<&str> = mx
        .iter()
        .map(String::as_str)
        .filter(|h| !h.is_empty())
        .collect();
    let site = table.site_for(&domain, &hosts);
    let mut out = String::new();
    let _ = writeln!(out, "domain  {domain}");
    if null_mx {
        let _ = writeln!(
            out,
            "mx      null MX (from {how}): the domain accepts no mail"
        );
    } else if hosts.is_empty() {
        let _ = writeln!(
            out,
            "mx      none (from {how}): implicit MX, the domain itself"
        );
    } else {
        let _ = writeln!(out, "mx      {} (from {how})", hosts.join(", "));
    }
    let why = match site.origin {
        SiteOrigin::Rule(i) => match table.rules().get(i) {
            Some(rule) => format!(
                "matched by {} ({})",
                rule_patterns(&rule.scope),
                ringmail::shape::Provenance::of_rule(rule).detail
            ),
            None => "a site rule".to_string(),
        },
        SiteOrigin::MxSet => "no site rule matched: the MX host set".to_string(),
        SiteOrigin::Domain => "no MX: the domain is its own site".to_string(),
    };
    let _ = writeln!(out, "site    {}   ({why})", site.key);
    let _ = writeln!(
        out,
        "source  {}",
        args.source
            .as_deref()
            .unwrap_or("(none: the system's address)")
    );
    if let Some(w) = args
        .source
        .as_deref()
        .and_then(|s| table.source(s))
        .and_then(|s| s.warmup.as_ref())
    {
        let now = chrono::Utc::now().timestamp();
        let _ = match w.cap(now) {
            Some(cap) => writeln!(
                out,
                "warmup  day {}: at most {cap} messages per site today (UTC)",
                w.day(now)
            ),
            None => writeln!(out, "warmup  over: no daily cap"),
        };
    }
    out.push('\n');
    let _ = write!(
        out,
        "{}",
        table.limits_for(&site.key, Some(&domain), args.source.as_deref())
    );
    let automation: Vec<_> = table.automation_for(&site.key).collect();
    if !automation.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "automation (first match applies):");
        for a in automation {
            let _ = writeln!(
                out,
                "  {:<14} when {}: {}",
                a.id,
                matcher_text(a),
                action_text(&a.action)
            );
        }
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    ExitCode::SUCCESS
}

/// The MX hosts of `domain` by preference, through the configured
/// resolver; a null MX is `""`. Errors: exit code and message.
fn lookup_mx(config: &Config, domain: &str) -> Result<Vec<String>, (u8, String)> {
    let resolver = CheckResolver::new(&config.dns).map_err(|e| {
        let code = if e.is_transient() { 75 } else { 78 };
        (code, e.to_string())
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (75, format!("cannot start a runtime: {e}")))?;
    let mx = rt
        .block_on(resolver.mx(domain))
        .map_err(|e| (if e.is_transient() { 75 } else { 64 }, e.to_string()))?;
    Ok(mx.into_iter().map(|(_, host)| host).collect())
}

fn rule_patterns(scope: &RuleScope) -> String {
    match scope {
        RuleScope::Site { name, mx } => format!(
            "site {name} mx [{}]",
            mx.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RuleScope::Domain { domains } => format!("domain {}", domains.join(",")),
        RuleScope::Default => "default".to_string(),
    }
}

fn matcher_text(a: &ringmail::shape::AutomationRule) -> String {
    let m = &a.matcher;
    let mut parts = Vec::new();
    if let Some(c) = m.code {
        parts.push(format!("code {c}"));
    }
    if let Some(e) = m.enhanced {
        parts.push(format!("enhanced {e}"));
    }
    if let Some(t) = &m.text {
        parts.push(format!("text /{}/", t.as_str()));
    }
    parts.join(", ")
}

fn action_text(a: &AutomationAction) -> String {
    match a {
        AutomationAction::Suspend { duration } => {
            format!("suspend for {}", duration_text(*duration))
        }
        AutomationAction::Cut {
            connections,
            message_rate,
            hold,
            restore_interval,
            restore_factor,
        } => {
            let mut what = Vec::new();
            if let Some(f) = connections {
                what.push(format!("connections x{f}"));
            }
            if let Some(f) = message_rate {
                what.push(format!("message rate x{f}"));
            }
            format!(
                "cut {} for {}, then x{restore_factor} every {}",
                what.join(" and "),
                duration_text(*hold),
                duration_text(*restore_interval)
            )
        }
    }
}
