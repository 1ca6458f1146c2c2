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

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum CampaignAction {
    /// Check a template and a recipient list without queueing anything:
    /// every row's address, duplicates, and the first recipients rendered.
    Check(CheckArgs),
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
