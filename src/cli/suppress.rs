//! `ringmail suppress add|remove|list|import|export`: the suppression list
//! in `<spool_dir>/suppress/journal` (docs/SUPPRESSION.md). Works whether
//! or not the daemon runs; the daemon sees changes within a second.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ringmail::queue::suppress::{
    normalize_address, Entry, ImportOptions, Outcome, Reason, ReasonKind, Scope, SuppressError,
    SuppressionList,
};

/// The prefix of every line this command prints on stderr.
const TAG: &str = "ringmail/suppress";

/// What to do with the suppression list.
#[derive(Debug, clap::Subcommand)]
pub enum SuppressAction {
    /// Suppress addresses: campaigns will not mail them.
    Add {
        /// The addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
        /// Only for mail from this sender domain (default: all mail).
        #[arg(long)]
        scope: Option<String>,
        /// Why: unsubscribe, bounce, complaint, manual or import, optionally
        /// followed by ": detail"; any other text is a manual reason's detail.
        #[arg(long)]
        reason: Option<String>,
        /// The campaign that led to it.
        #[arg(long)]
        campaign: Option<u64>,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Remove addresses from the list (from the global scope, or from
    /// one sender domain's with --scope).
    Remove {
        /// The addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
        /// The sender domain whose entry to remove (default: the global one).
        #[arg(long)]
        scope: Option<String>,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// List the entries, ordered by address: address, scope, added (UTC),
    /// campaign and reason, separated by tabs.
    List {
        /// One JSON object per entry instead.
        #[arg(long)]
        json: bool,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Import a CSV file with an `email` column (optional `reason`,
    /// `detail`, `scope`, `added`, `campaign`) or one address a line;
    /// `-` reads standard input.
    Import {
        /// The file.
        file: PathBuf,
        /// The scope of rows that give none (default: global).
        #[arg(long)]
        scope: Option<String>,
        /// The reason of rows that give none (default: import).
        #[arg(long)]
        reason: Option<String>,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Export as CSV (email,scope,reason,detail,added,campaign) to FILE
    /// or standard output.
    Export {
        /// The file to write (replaced).
        file: Option<PathBuf>,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
}

/// Runs the action. Exit codes (sysexits): 0 done; 64 a bad --scope;
/// 65 a bad address (nothing changed), or rows of an import refused (the
/// others imported); 66 the import file cannot be opened; 73 the journal
/// or the export file cannot be created; 74 reading the import or writing
/// the export failed; 75 try again; 77 permission denied; 78 a bad
/// configuration or a journal of a newer version.
pub fn run(action: SuppressAction) -> ExitCode {
    match run_action(action) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{TAG}: fatal: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// A command-line error (EX_USAGE, 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

/// Addresses refused before anything was changed (EX_DATAERR, 65).
#[derive(Debug, thiserror::Error)]
#[error("nothing changed: {0} bad addresses")]
struct BadAddresses(usize);

/// The import file cannot be opened (EX_NOINPUT, 66).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
struct NoInput {
    path: String,
    source: std::io::Error,
}

/// The export file cannot be created (EX_CANTCREAT, 73).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
struct CannotCreate {
    path: String,
    source: std::io::Error,
}

fn run_action(action: SuppressAction) -> anyhow::Result<u8> {
    match action {
        SuppressAction::Add {
            addresses,
            scope,
            reason,
            campaign,
            config,
        } => {
            let config = super::load(config)?;
            let scope = parse_scope(scope.as_deref())?;
            let reason = Reason::parse(reason.as_deref().unwrap_or(""), ReasonKind::Manual);
            let entries = checked(&addresses, |a| {
                Entry::new(a, scope.clone(), reason.clone()).map(|mut e| {
                    e.campaign = campaign;
                    e
                })
            })?;
            let mut list = SuppressionList::open(&config.spool_dir)?;
            print_notices(&mut list);
            for entry in entries {
                let address = entry.address.clone();
                let outcome = list.add(entry);
                print_notices(&mut list);
                match outcome? {
                    Outcome::AlreadyPresent(e) => eprintln!(
                        "{TAG}: {address}: already suppressed ({}, {})",
                        e.scope, e.reason.kind
                    ),
                    _ => eprintln!("{TAG}: {address}: added ({scope}, {})", reason.kind),
                }
            }
        }
        SuppressAction::Remove {
            addresses,
            scope,
            config,
        } => {
            let config = super::load(config)?;
            let scope = parse_scope(scope.as_deref())?;
            let addresses = checked(&addresses, normalize_address)?;
            let mut list = SuppressionList::open(&config.spool_dir)?;
            print_notices(&mut list);
            for address in addresses {
                let removed = list.remove(&address, &scope);
                print_notices(&mut list);
                let what = if removed? {
                    "removed"
                } else {
                    "not suppressed"
                };
                eprintln!("{TAG}: {address}: {what} ({scope})");
            }
        }
        SuppressAction::List { json, config } => {
            let config = super::load(config)?;
            let mut list = SuppressionList::open(&config.spool_dir)?;
            print_notices(&mut list);
            let mut out = BufWriter::new(std::io::stdout().lock());
            for e in list.list().iter() {
                if json {
                    serde_json::to_writer(&mut out, &json_entry(&e))?;
                    writeln!(out)?;
                } else {
                    writeln!(out, "{}", text_entry(&e))?;
                }
            }
            out.flush()?;
        }
        SuppressAction::Import {
            file,
            scope,
            reason,
            config,
        } => {
            let config = super::load(config)?;
            let opts = ImportOptions {
                scope: parse_scope(scope.as_deref())?,
                reason: Reason::parse(reason.as_deref().unwrap_or(""), ReasonKind::Import),
            };
            let (name, input) = open_input(&file)?;
            let mut list = SuppressionList::open(&config.spool_dir)?;
            print_notices(&mut list);
            let report = list.import(input, &opts);
            print_notices(&mut list);
            let report = report?;
            for bad in &report.bad {
                let email = bad
                    .email
                    .as_deref()
                    .map(|e| format!("{e}: "))
                    .unwrap_or_default();
                eprintln!("{TAG}: {name}:{}: {email}{}", bad.line, bad.reason);
            }
            eprintln!(
                "{TAG}: {name}: {} rows: {} added, {} already suppressed, {} refused",
                report.rows,
                report.added,
                report.already,
                report.bad.len()
            );
            if !report.bad.is_empty() {
                return Ok(65);
            }
        }
        SuppressAction::Export { file, config } => {
            let config = super::load(config)?;
            let mut list = SuppressionList::open(&config.spool_dir)?;
            print_notices(&mut list);
            let rows = match &file {
                Some(path) => {
                    let f = File::create(path).map_err(|source| CannotCreate {
                        path: path.display().to_string(),
                        source,
                    })?;
                    let mut w = BufWriter::new(f);
                    let rows = list.export(&mut w)?;
                    let f = w
                        .into_inner()
                        .map_err(|e| SuppressError::Output(e.into_error()))?;
                    f.sync_all().map_err(SuppressError::Output)?;
                    rows
                }
                None => list.export(std::io::stdout().lock())?,
            };
            let to = file
                .as_deref()
                .map_or("standard output".into(), |p| p.display().to_string());
            eprintln!("{TAG}: exported {rows} entries to {to}");
        }
    }
    Ok(0)
}

/// `--scope` (none is global).
fn parse_scope(scope: Option<&str>) -> Result<Scope, Usage> {
    match scope {
        None => Ok(Scope::Global),
        Some(s) => Scope::parse(s).map_err(|e| Usage(format!("--scope: {e}"))),
    }
}

/// `check` applied to every address; when any is bad, each is reported and
/// the command stops before changing anything.
fn checked<T>(
    addresses: &[String],
    check: impl Fn(&str) -> Result<T, SuppressError>,
) -> anyhow::Result<Vec<T>> {
    let mut good = Vec::with_capacity(addresses.len());
    let mut bad = 0;
    for a in addresses {
        match check(a) {
            Ok(t) => good.push(t),
            Err(e) => {
                eprintln!("{TAG}: {e}");
                bad += 1;
            }
        }
    }
    if bad > 0 {
        return Err(BadAddresses(bad).into());
    }
    Ok(good)
}

fn open_input(file: &Path) -> anyhow::Result<(String, Box<dyn Read>)> {
    if file == Path::new("-") {
        return Ok(("standard input".into(), Box::new(std::io::stdin().lock())));
    }
    let name = file.display().to_string();
    let f = File::open(file).map_err(|source| NoInput {
        path: name.clone(),
        source,
    })?;
    Ok((name, Box::new(f)))
}

fn print_notices(list: &mut SuppressionList) {
    let path = list.journal_path().display().to_string();
    for n in list.take_notices() {
        eprintln!("{TAG}: {path}: {n}");
    }
}

fn text_entry(e: &Entry) -> String {
    let added = i64::try_from(e.added)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(
            || e.added.to_string(),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    let campaign = e.campaign.map_or("-".into(), |c| c.to_string());
    format!(
        "{}\t{}\t{added}\t{campaign}\t{}",
        e.address, e.scope, e.reason
    )
}

fn json_entry(e: &Entry) -> serde_json::Value {
    serde_json::json!({
        "email": e.address,
        "scope": e.scope.to_string(),
        "reason": e.reason.kind.as_str(),
        "detail": e.reason.detail,
        "added": e.added,
        "campaign": e.campaign,
    })
}

/// The sysexits code for a failed `suppress` command.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<ringmail::config::ConfigError>().is_some() {
        return 78;
    }
    if e.downcast_ref::<Usage>().is_some() {
        return 64;
    }
    if e.downcast_ref::<BadAddresses>().is_some() {
        return 65;
    }
    if e.downcast_ref::<NoInput>().is_some() {
        return 66;
    }
    if e.downcast_ref::<CannotCreate>().is_some() {
        return 73;
    }
    if e.downcast_ref::<std::io::Error>().is_some() {
        // Writing the listing to standard output.
        return 74;
    }
    match e.downcast_ref::<SuppressError>() {
        Some(s) if s.is_permission_denied() => 77,
        Some(SuppressError::Io { op, .. }) if *op == "create" || *op == "create directory" => 73,
        Some(SuppressError::BadAddress(_) | SuppressError::Unqualified(_)) => 65,
        Some(SuppressError::BadScope { .. }) => 64,
        Some(SuppressError::Input(_) | SuppressError::Output(_)) => 74,
        Some(SuppressError::Version { .. }) => 78,
        Some(SuppressError::Io { .. } | SuppressError::Poisoned { .. }) | None => 75,
    }
}
