//! `ringmail check-domain DOMAIN [--ip IP]`: SPF, DKIM, DMARC, PTR and the
//! bounce domain's MX, asked through the configured resolver, printed as a
//! table with the fix for each failure (docs/AUTHENTICATION.md). Also the
//! check `campaign send` makes before queueing.
//!
//! Exit codes: 0 when nothing failed (warnings allowed), 1 when a check
//! failed, 75 when the DNS did not answer (and nothing failed), 64 for a
//! bad argument, 78 for a bad configuration.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use ringmail::check::{check_domain, is_domain_name, CheckOptions, CheckResolver, Report};
use ringmail::compose::{CampaignTemplate, TemplateOptions};
use ringmail::config::Config;

/// `check-domain` arguments.
#[derive(Debug, clap::Args)]
pub struct CheckDomainArgs {
    /// The domain to check (the default From: and bounce domain).
    pub domain: String,
    /// The IP the mail is sent from (SPF and PTR are skipped without it).
    #[arg(long)]
    pub ip: Option<IpAddr>,
    /// The From: domain, if not DOMAIN (DKIM keys and DMARC).
    #[arg(long)]
    pub from: Option<String>,
    /// The envelope (VERP bounce) domain, if not DOMAIN (SPF, DMARC's SPF
    /// alignment, MX).
    #[arg(long)]
    pub bounce_domain: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Configuration file ([dns] servers, [[dkim]] keys, myhostname).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
}

/// Runs `check-domain`.
pub fn run(args: CheckDomainArgs) -> ExitCode {
    let config = match super::load(args.config.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringmail: fatal: {e:#}");
            return ExitCode::from(78);
        }
    };
    let mut opts = CheckOptions::new(&args.domain, &config.myhostname);
    if let Some(from) = &args.from {
        opts.from_domain = from.trim_end_matches('.').to_ascii_lowercase();
    }
    if let Some(bounce) = &args.bounce_domain {
        opts.bounce_domain = bounce.trim_end_matches('.').to_ascii_lowercase();
    }
    opts.ip = args.ip;
    for (what, name) in [
        ("domain", &opts.domain),
        ("--from", &opts.from_domain),
        ("--bounce-domain", &opts.bounce_domain),
    ] {
        if !is_domain_name(name) {
            eprintln!("ringmail: check-domain: {what} {name:?} is not a domain name");
            return ExitCode::from(64);
        }
    }
    let report = match run_checks(&config, &opts) {
        Ok(r) => r,
        Err((code, e)) => {
            eprintln!("ringmail: check-domain: {e}");
            return ExitCode::from(code);
        }
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    let code = report.exit_code();
    if code == ringmail::check::report::EXIT_TEMPFAIL && !args.json {
        eprintln!("ringmail: check-domain: the DNS did not answer every question; try again");
    }
    ExitCode::from(code)
}

/// Runs the checks on a small current-thread runtime. Errors are the exit
/// code and the message: 75 for a resolver that cannot be set up or a
/// runtime that cannot start, 78 for bad `[dns]` servers.
pub fn run_checks(config: &Config, opts: &CheckOptions) -> Result<Report, (u8, String)> {
    let resolver = CheckResolver::new(&config.dns).map_err(|e| {
        let code = if e.is_transient() { 75 } else { 78 };
        (code, e.to_string())
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (75, format!("cannot start a runtime: {e}")))?;
    Ok(rt.block_on(check_domain(&resolver, opts, &config.dkim)))
}

/// `campaign send`'s check of the template's `From:` and bounce domains
/// (`opts` as the daemon will compile it): the problems go to stderr.
/// Returns false when `strict` and a check failed (the campaign must not
/// start). A template that does not compile is not checked: the daemon
/// refuses it with the reason.
pub fn before_campaign(
    config: &Config,
    template: &[u8],
    opts: &TemplateOptions,
    ip: Option<IpAddr>,
    strict: bool,
) -> bool {
    let Ok(compiled) = CampaignTemplate::compile(template, opts) else {
        return true;
    };
    let from_domain = compiled.from_domain();
    let mut opts = CheckOptions::new(from_domain, &config.myhostname);
    opts.bounce_domain = compiled.bounce_domain().to_ascii_lowercase();
    opts.ip = ip;
    let report = match run_checks(config, &opts) {
        Ok(r) => r,
        Err((_, e)) => {
            eprintln!("ringmail: warning: check-domain {from_domain} not made: {e}");
            return true;
        }
    };
    let problems: Vec<_> = report.problems().collect();
    if !problems.is_empty() {
        eprintln!("ringmail: warning: check-domain {from_domain}:");
        eprint!(
            "{}",
            ringmail::check::report::table(problems.iter().copied())
        );
    }
    if strict && report.has_failures() {
        eprintln!(
            "ringmail: campaign not started: check-domain {from_domain} failed (--strict); \
             fix the records above or send without --strict"
        );
        return false;
    }
    true
}
