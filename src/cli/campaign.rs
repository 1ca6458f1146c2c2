//! `ringmail campaign`: newsletter campaigns. `campaign check` reads the
//! template and the whole recipient list and renders the first recipients
//! exactly as delivery will, reporting every problem with its line, before
//! anything is queued (docs/CAMPAIGNS.md).

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use ringmail::cleanup::CleanupOptions;
use ringmail::compose::check::{check_campaign, CheckReport};
use ringmail::compose::recipients::ListFormat;
use ringmail::compose::{CampaignTemplate, RecipientReader, TemplateOptions, TokenKey};
use ringmail::inject::campaign::{submit_campaign, CampaignAnswer, CampaignRequest};

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum CampaignAction {
    /// Check a template and a recipient list without queueing anything:
    /// every row's address, duplicates, and the first recipients rendered.
    Check(CheckArgs),
    /// Queue a campaign with the running daemon: the template and list are
    /// stored once, each recipient's message rendered when it is sent.
    Send(SendArgs),
    /// List the campaigns and their states.
    List {
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// One campaign's state and counts (sent, deferred, bounced, ...).
    Show {
        /// The campaign ID.
        id: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Follow a campaign's progress until every recipient has an outcome.
    Follow {
        /// The campaign ID.
        id: u64,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// One line per recipient: status (or pending), DSN code, time, reply.
    Report {
        /// The campaign ID.
        id: u64,
        /// CSV (the default) or JSON Lines.
        #[arg(long)]
        json: bool,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Stop sending a campaign until it is resumed (survives a restart).
    Pause {
        /// The campaign ID.
        id: u64,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Send a paused campaign again.
    Resume {
        /// The campaign ID.
        id: u64,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Stop a campaign for good: recipients not yet sent to are dropped.
    Cancel {
        /// The campaign ID.
        id: u64,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
}

#[cfg(test)]
mod tests {
    use super::parse_at;

    #[test]
    fn at_forms() {
        assert_eq!(parse_at("1800000000"), Ok(1_800_000_000));
        assert_eq!(parse_at("2027-01-15T08:00:00Z"), Ok(1_800_000_000));
        assert_eq!(parse_at("2027-01-15T09:00:00+01:00"), Ok(1_800_000_000));
        let soon = parse_at("+30m").unwrap();
        let now = chrono::Utc::now().timestamp() as u64;
        assert!((now + 1790..=now + 1810).contains(&soon));
        assert!(parse_at("+3x").is_err() && parse_at("tomorrow").is_err());
    }
}

/// `campaign send` arguments.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Template, list and addressing, as for `campaign check`.
    #[command(flatten)]
    pub what: CheckArgs,
    /// A name for the campaign (default: the template's file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Only check (as `campaign check`), queue nothing.
    #[arg(long)]
    pub check: bool,
    /// After queueing, follow the progress until every recipient has an
    /// outcome (as `campaign follow`).
    #[arg(long)]
    pub follow: bool,
    /// Most messages per interval over the whole daemon: `N/s`, `N/m`, `N/h`
    /// (e.g. `50000/h`); sent evenly, without a burst.
    #[arg(long)]
    pub rate: Option<String>,
    /// Send nothing before this time: RFC 3339 (`2026-12-07T09:00:00Z`),
    /// `+30m` / `+2h` / `+90s` from now, or Unix seconds.
    #[arg(long)]
    pub at: Option<String>,
    /// The sending IP for the domain check (SPF and PTR are checked only
    /// with it).
    #[arg(long)]
    pub ip: Option<std::net::IpAddr>,
    /// Do not start when the domain check (as `check-domain`) fails.
    #[arg(long)]
    pub strict: bool,
}

/// `--at`: an RFC 3339 time, `+N{s,m,h,d}` from now, or Unix seconds.
fn parse_at(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Some(rel) = text.strip_prefix('+') {
        let (n, unit) = rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: u64 = n
            .parse()
            .map_err(|_| format!("bad relative time {text:?}"))?;
        let secs = match unit {
            "" | "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86_400,
            _ => return Err(format!("bad unit in {text:?}: s, m, h or d")),
        };
        return Ok(chrono::Utc::now().timestamp().max(0) as u64 + secs);
    }
    if let Ok(unix) = text.parse::<u64>() {
        return Ok(unix);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp().max(0) as u64)
        .map_err(|e| format!("{text:?}: {e} (RFC 3339, +30m, or Unix seconds)"))
}

/// `campaign check` arguments.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The template: a whole message (RFC 5322) with {{ field }} merge fields.
    #[arg(long)]
    pub template: PathBuf,
    /// The recipients: CSV with a header row and an `email` column, or
    /// JSON Lines (`.jsonl`).
    #[arg(long)]
    pub recipients: PathBuf,
    /// From: when the template has none.
    #[arg(long)]
    pub from: Option<String>,
    /// Domain of the VERP bounce and mailto unsubscribe addresses (default:
    /// the From: domain).
    #[arg(long)]
    pub bounce_domain: Option<String>,
    /// Base URL of the one-click unsubscribe link (BASE/u/TOKEN).
    #[arg(long)]
    pub unsubscribe: Option<String>,
    /// How many recipients to render.
    #[arg(long, default_value_t = 10)]
    pub first: u64,
    /// Print the first rendered message.
    #[arg(long)]
    pub show: bool,
    /// Configuration file (myhostname, message_size_limit).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
}

/// Runs the action. Exit 0 when nothing is wrong, 65 (EX_DATAERR) when a
/// row or a message has a problem or the template is refused, 66
/// (EX_NOINPUT) when a file cannot be opened, 78 for a bad configuration.
pub fn run(action: CampaignAction) -> ExitCode {
    match action {
        CampaignAction::Check(args) => check(args),
        CampaignAction::Send(args) if args.check => check(args.what),
        CampaignAction::Send(args) => send(args),
        CampaignAction::List { config } => list(config),
        CampaignAction::Show { id, json, config } => {
            super::campaign_progress::show(config, id, json)
        }
        CampaignAction::Follow { id, config } => super::campaign_progress::follow(config, id),
        CampaignAction::Report { id, json, config } => {
            super::campaign_progress::report(config, id, json)
        }
        CampaignAction::Pause { id, config } => {
            super::campaign_progress::control(config, "pause", id)
        }
        CampaignAction::Resume { id, config } => {
            super::campaign_progress::control(config, "resume", id)
        }
        CampaignAction::Cancel { id, config } => {
            super::campaign_progress::control(config, "cancel", id)
        }
    }
}

/// Sends the campaign to the daemon, after the domain check (warnings on
/// stderr). Exit 0 once it is durably queued, 1 when `--strict` and the
/// domain check failed, 65 when it is refused (nothing queued), 66 when a
/// file cannot be opened, 69 (EX_UNAVAILABLE) when no daemon runs, 75 when
/// it could not be queued now or the answer was lost (`campaign list`
/// tells whether it was).
fn send(args: SendArgs) -> ExitCode {
    let config = match super::load(args.what.config.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringmail: fatal: {e:#}");
            return ExitCode::from(78);
        }
    };
    let what = &args.what;
    let template = match std::fs::read(&what.template) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ringmail: fatal: {}: {e}", what.template.display());
            return ExitCode::from(66);
        }
    };
    let opts = TemplateOptions {
        campaign: 0,
        from: what.from.clone(),
        bounce_domain: what.bounce_domain.clone(),
        unsubscribe_base: what.unsubscribe.clone(),
    };
    if !super::check_domain::before_campaign(&config, &template, &opts, args.ip, args.strict) {
        return ExitCode::from(1);
    }
    let mut file = match File::open(&what.recipients) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ringmail: fatal: {}: {e}", what.recipients.display());
            return ExitCode::from(66);
        }
    };
    let name = args.name.clone().unwrap_or_else(|| {
        what.template
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "campaign".into())
    });
    let request = CampaignRequest {
        v: 1,
        name,
        from: what.from.clone(),
        bounce_domain: what.bounce_domain.clone(),
        unsubscribe: what.unsubscribe.clone(),
        format: match ListFormat::from_path(&what.recipients) {
            ListFormat::Csv => "csv".into(),
            ListFormat::JsonLines => "jsonl".into(),
        },
        template_len: template.len(),
        op: None,
        id: None,
        rate: args.rate.clone(),
        at: match args.at.as_deref().map(parse_at).transpose() {
            Ok(at) => at,
            Err(e) => {
                eprintln!("ringmail: --at: {e}");
                return ExitCode::from(64);
            }
        },
    };
    let socket = ringmail::spool::Spool::new(&config.spool_dir).campaign_socket();
    match submit_campaign(&socket, &request, &template, &mut file) {
        CampaignAnswer::Accepted {
            id,
            recipients,
            refused,
            duplicates,
            rows,
        } => {
            for r in &rows {
                println!("  line {}: {}: {}", r.line, r.email, r.reason);
            }
            if refused > rows.len() as u64 {
                println!(
                    "  ... and {} more refused rows",
                    refused - rows.len() as u64
                );
            }
            println!(
                "campaign {id} queued: {recipients} recipients, {refused} rows refused, {duplicates} duplicates"
            );
            if args.follow {
                return super::campaign_progress::follow(args.what.config.clone(), id);
            }
            ExitCode::SUCCESS
        }
        CampaignAnswer::Refused(why) => {
            eprintln!("ringmail: campaign refused: {why}");
            ExitCode::from(65)
        }
        CampaignAnswer::Temporary(why) => {
            eprintln!("ringmail: campaign not queued: {why}; try again later");
            ExitCode::from(75)
        }
        CampaignAnswer::NoDaemon => {
            eprintln!(
                "ringmail: no daemon answers on {}: campaigns are sent by a running `ringmail serve`",
                socket.display()
            );
            ExitCode::from(69)
        }
        CampaignAnswer::Unknown(why) => {
            eprintln!("ringmail: {why}; the campaign may or may not be queued: see `ringmail campaign list`");
            ExitCode::from(75)
        }
    }
}

/// Prints the campaigns of the spool (their state files).
fn list(config: Option<PathBuf>) -> ExitCode {
    let config = match super::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringmail: fatal: {e:#}");
            return ExitCode::from(78);
        }
    };
    let dir = ringmail::spool::Spool::new(&config.spool_dir).campaigns();
    if !dir.exists() {
        println!("no campaigns");
        return ExitCode::SUCCESS;
    }
    match ringmail::queue::campaign_state::CampaignRegistry::load(&dir) {
        Ok(reg) => {
            let all = reg.list();
            if all.is_empty() {
                println!("no campaigns");
            }
            for c in all {
                println!(
                    "{:>18}  {:<9}  {:>9} recipients  {:>7} refused  {}",
                    c.id,
                    c.state.as_str(),
                    c.recipients,
                    c.refused,
                    c.name
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringmail: fatal: {e}");
            ExitCode::from(74)
        }
    }
}

fn check(args: CheckArgs) -> ExitCode {
    let config = match super::load(args.config.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringmail: fatal: {e:#}");
            return ExitCode::from(78);
        }
    };
    let template_bytes = match std::fs::read(&args.template) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ringmail: fatal: {}: {e}", args.template.display());
            return ExitCode::from(66);
        }
    };
    let opts = TemplateOptions {
        campaign: 0,
        from: args.from.clone(),
        bounce_domain: args.bounce_domain.clone(),
        unsubscribe_base: args.unsubscribe.clone(),
    };
    let template = match CampaignTemplate::compile(&template_bytes, &opts) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ringmail: {}: {e}", args.template.display());
            return ExitCode::from(65);
        }
    };
    let file = match File::open(&args.recipients) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ringmail: fatal: {}: {e}", args.recipients.display());
            return ExitCode::from(66);
        }
    };
    let format = ListFormat::from_path(&args.recipients);
    let mut list = match RecipientReader::new(BufReader::new(file), format) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ringmail: {}: {e}", args.recipients.display());
            return ExitCode::from(65);
        }
    };
    // Tokens in a check are made with a throw-away key: nothing is sent.
    let key = TokenKey::new(&rand_secret());
    let cleanup_opts = CleanupOptions {
        myhostname: &config.myhostname,
        message_size_limit: config.message_size_limit,
        full_name: None,
        now: chrono::Local::now(),
    };
    let report = match check_campaign(&template, &mut list, args.first, &key, &cleanup_opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringmail: {}: {e}", args.recipients.display());
            return ExitCode::from(65);
        }
    };
    print_report(&args, &report);
    if args.show {
        if let Some(m) = &report.first_message {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(b"\n");
            let _ = out.write_all(m);
        }
    }
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(65)
    }
}

fn print_report(args: &CheckArgs, r: &CheckReport) {
    println!(
        "template {}: ok; bounces and unsubscribes go to {}",
        args.template.display(),
        args.bounce_domain.as_deref().unwrap_or("the From: domain")
    );
    println!(
        "recipients {}: {} rows, {} recipients, {} refused, {} duplicates",
        args.recipients.display(),
        r.rows,
        r.recipients,
        r.bad_rows,
        r.duplicates
    );
    for e in &r.bad_row_examples {
        println!(
            "  line {}: {}{}",
            e.line,
            e.email
                .as_deref()
                .map(|a| format!("{a}: "))
                .unwrap_or_default(),
            e.reason
        );
    }
    if r.bad_rows > r.bad_row_examples.len() as u64 {
        println!(
            "  ... and {} more",
            r.bad_rows - r.bad_row_examples.len() as u64
        );
    }
    let sizes = r
        .size_range
        .map(|(lo, hi)| format!("; {lo}-{hi} bytes"))
        .unwrap_or_default();
    println!(
        "rendered the first {}: {} ok, {} failed{sizes}",
        r.rendered,
        r.rendered - r.render_failures,
        r.render_failures
    );
    for f in &r.render_failure_examples {
        println!("  line {} {}: {}", f.line, f.email, f.reason);
    }
}

fn rand_secret() -> [u8; 32] {
    let mut s = [0u8; 32];
    for b in &mut s {
        *b = fastrand::u8(..);
    }
    s
}
