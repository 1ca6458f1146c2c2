//! Command-line entry: clap definitions and dispatch. anyhow is used only
//! here, at the edge; the library's modules return their own error types.

pub mod bench;
mod bench_backends;
mod bench_campaign;
mod bench_dkim;
mod bench_scenario;
mod bench_smtp;
mod bench_threads;
pub mod campaign;
mod campaign_progress;
pub mod check_domain;
pub mod dkim;
pub mod mailq;
pub mod passwd;
mod queue_admin;
mod queue_sites;
mod queue_view;
pub mod sendmail;
pub mod shaping;
pub mod sink;
pub mod suppress;
pub mod top;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ringmail::config::Config;

/// ringmail: a bulk outbound mail transfer agent on io_uring.
#[derive(Parser)]
#[command(name = "ringmail", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: pick up maildrop/ and pickup/, queue durably.
    Serve {
        /// Configuration file (default: $RINGMAIL_CONFIG, /etc/ringmail/ringmail.toml).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Log debug lines too.
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// The sendmail command (Postfix-compatible flags; see docs/SENDMAIL.md).
    Sendmail {
        /// sendmail flags and recipients, passed through unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Inspect or act on the queue.
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Manage the submission users (AUTH on a submission listener).
    Passwd {
        #[command(subcommand)]
        action: passwd::PasswdAction,
    },
    /// Newsletter campaigns (see docs/CAMPAIGNS.md).
    Campaign {
        #[command(subcommand)]
        action: campaign::CampaignAction,
    },
    /// DKIM signing keys: make one, show the DNS records (see
    /// docs/AUTHENTICATION.md).
    Dkim {
        #[command(subcommand)]
        action: dkim::DkimAction,
    },
    /// Check a sending domain's SPF, DKIM, DMARC, reverse DNS and bounce
    /// MX through the configured resolver (see docs/AUTHENTICATION.md).
    CheckDomain(check_domain::CheckDomainArgs),
    /// The suppression list: addresses campaigns do not mail (see
    /// docs/SUPPRESSION.md).
    Suppress {
        #[command(subcommand)]
        action: suppress::SuppressAction,
    },
    /// Traffic shaping: a domain's site and effective limits (see
    /// docs/SHAPING.md).
    Shaping {
        #[command(subcommand)]
        action: shaping::ShapingAction,
    },
    /// A live terminal view of the running daemon from its admin API:
    /// rates, the queue by domain, campaigns, deferral reasons.
    Top(top::TopArgs),
    /// The main job: a measured bulk send into the bundled sink.
    Bench(bench::BenchArgs),
    /// The bundled SMTP receiver (tests, benchmarks).
    Sink(sink::SinkArgs),
    /// Print the effective configuration.
    Config {
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum QueueAction {
    /// Live recipients by domain and age, as Postfix's qshape (works with
    /// the daemon stopped).
    Shape {
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Count by the sender's domain instead (`qshape -s`).
        #[arg(long)]
        sender: bool,
        /// Show the busiest N domains, the rest as one row (0: all).
        #[arg(long, default_value_t = 0)]
        top: usize,
        /// Age buckets: 5, 10, 20 ... minutes, the last open-ended.
        #[arg(long, default_value_t = 10)]
        buckets: usize,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print a queued message: envelope with each recipient's state, then
    /// the message, as Postfix's `postcat -q` (works with the daemon stopped).
    Show {
        /// The queue ID.
        id: String,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// The envelope (`postcat -e`).
        #[arg(long, short = 'e')]
        envelope: bool,
        /// The header (`postcat -h`; `-h` is help here).
        #[arg(long, short = 'H')]
        header: bool,
        /// The body (`postcat -b`).
        #[arg(long, short = 'b')]
        body: bool,
    },
    /// List queued messages, Postfix style (works with the daemon stopped).
    List {
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// One JSON object per message instead.
        #[arg(long)]
        json: bool,
    },
    /// Put recipients on hold: kept, not tried (`postsuper -h`).
    Hold(queue_admin::Selection),
    /// Take held recipients off hold and try them now (`postsuper -H`).
    Release(queue_admin::Selection),
    /// Remove recipients without a notice (`postsuper -d`).
    Delete(queue_admin::Selection),
    /// Try deferred recipients again now (`postsuper -r`).
    Requeue(queue_admin::Selection),
    /// Fail recipients now, with a notice to their sender.
    Bounce {
        /// Why (in the notice and the log).
        #[arg(long)]
        reason: String,
        /// Which messages.
        #[command(flatten)]
        selection: queue_admin::Selection,
    },
    /// Start no delivery to a shaping site for a while (its mail waits).
    Suspend {
        /// The site, as `ringmail shaping show DOMAIN` names it.
        site: String,
        /// For how long (`90s`, `30m`, `2h`).
        #[arg(long = "for", default_value = "1h")]
        duration: String,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Lift a site's suspension.
    Resume {
        /// The site.
        site: String,
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Shaping state per site in the running daemon: open connections,
    /// suspensions, automation's cuts and when they next change.
    Sites {
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// One JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon to retry deferred mail now.
    Flush {
        /// Configuration file.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
}

/// Parses the command line and runs the chosen job.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Serve { config, verbose } => serve(config, verbose),
        Command::Sendmail { args } => return sendmail::run("sendmail", args),
        Command::Queue { action } => match action {
            QueueAction::List { config, json } => load(config).and_then(|c| mailq::print(&c, json)),
            QueueAction::Flush { config } => return flush_exit(load(config)),
            QueueAction::Sites { config, json } => {
                load(config).and_then(|c| queue_sites::run(&c, json))
            }
            QueueAction::Suspend {
                site,
                duration,
                config,
            } => ringmail::shape::units::parse_duration(&duration)
                .map_err(|e| anyhow::anyhow!("--for {duration:?}: {e}"))
                .and_then(|d| {
                    let c = load(config)?;
                    queue_admin::run_site(
                        &c,
                        ringmail::model::queue_command::QueueOp::Suspend {
                            site,
                            seconds: d.as_secs().max(1),
                        },
                    )
                }),
            QueueAction::Resume { site, config } => load(config).and_then(|c| {
                queue_admin::run_site(&c, ringmail::model::queue_command::QueueOp::Resume { site })
            }),
            QueueAction::Hold(sel) => {
                queue_command(ringmail::model::queue_command::QueueOp::Hold, sel)
            }
            QueueAction::Release(sel) => {
                queue_command(ringmail::model::queue_command::QueueOp::Release, sel)
            }
            QueueAction::Delete(sel) => {
                queue_command(ringmail::model::queue_command::QueueOp::Delete, sel)
            }
            QueueAction::Requeue(sel) => {
                queue_command(ringmail::model::queue_command::QueueOp::Requeue, sel)
            }
            QueueAction::Bounce { reason, selection } => queue_command(
                ringmail::model::queue_command::QueueOp::Bounce { reason },
                selection,
            ),
            QueueAction::Shape {
                config,
                sender,
                top,
                buckets,
                json,
            } => load(config).and_then(|c| queue_view::print_shape(&c, sender, top, buckets, json)),
            QueueAction::Show {
                id,
                config,
                envelope,
                header,
                body,
            } => {
                let all = !(envelope || header || body);
                let parts = queue_view::ShowParts {
                    envelope: all || envelope,
                    header: all || header,
                    body: all || body,
                };
                load(config).and_then(|c| queue_view::print_message(&c, &id, parts))
            }
        },
        Command::Passwd { action } => return passwd::run(action),
        Command::Campaign { action } => return campaign::run(action),
        Command::Suppress { action } => return suppress::run(action),
        Command::Dkim { action } => return dkim::run(action),
        Command::CheckDomain(args) => return check_domain::run(args),
        Command::Shaping { action } => return shaping::run(action),
        Command::Config { config } => load(config).map(|c| print!("{}", c.to_toml())),
        Command::Sink(args) => sink::run(args),
        Command::Top(args) => top::run(args),
        Command::Bench(args) => match bench::run(args) {
            Ok(code) => return ExitCode::from(code),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmail: fatal: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The sysexits code for a failed subcommand: EX_CONFIG (78) for a bad
/// configuration (an unknown `pickup_group` included), EX_NOPERM (77) when
/// this user may not do it, EX_TEMPFAIL (75) for the rest.
fn exit_code(e: &anyhow::Error) -> u8 {
    use ringmail::daemon::DaemonError;
    use ringmail::spool::SpoolError;
    let no_group = |s: &SpoolError| matches!(s, SpoolError::NoSuchGroup(_));
    if e.downcast_ref::<ringmail::config::ConfigError>().is_some()
        || e.downcast_ref::<SpoolError>().is_some_and(no_group)
        || matches!(e.downcast_ref::<DaemonError>(), Some(DaemonError::Spool(s)) if no_group(s))
    {
        78
    } else if e.downcast_ref::<mailq::PermissionDenied>().is_some() {
        77
    } else {
        75
    }
}

/// Loads the configuration for a subcommand.
pub fn load(path: Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(Config::load(path.as_deref())?.config)
}

fn serve(path: Option<PathBuf>, verbose: bool) -> anyhow::Result<()> {
    let loaded = Config::load(path.as_deref())?;
    let config = loaded.config;
    ringmail::obs::init(
        &config.myhostname,
        &config.syslog_name,
        config.log_file.as_deref(),
        verbose,
    )?;
    if let Some(file) = &loaded.path {
        if let Some(warning) = ringmail::config::credentials_warning(&config, file) {
            tracing::warn!(target: "master", "{warning}");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let result = ringmail::daemon::serve(&config, loaded.path.as_deref(), stop);
    if let Ok(report) = &result {
        tracing::info!(
            target: "master",
            "stopped: {} messages queued, {} files quarantined",
            report.queued,
            report.pickup.quarantined
        );
    }
    ringmail::obs::flush();
    result?;
    Ok(())
}

/// A queue command for the running daemon.
fn queue_command(
    op: ringmail::model::queue_command::QueueOp,
    sel: queue_admin::Selection,
) -> anyhow::Result<()> {
    let config = load(sel.config())?;
    queue_admin::run(&config, op, sel)
}

/// `queue flush` / `sendmail -q`: exit 69 (EX_UNAVAILABLE) when no daemon
/// runs, 77 (EX_NOPERM) when this user may not use the control socket.
pub fn flush_exit(config: anyhow::Result<Config>) -> ExitCode {
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringmail: fatal: {e:#}");
            return ExitCode::from(78);
        }
    };
    match ringmail::spool::Spool::new(&config.spool_dir).send_control("flush") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmail: fatal: cannot flush mail queue: {e}");
            match e {
                ringmail::spool::SpoolError::PermissionDenied { .. } => ExitCode::from(77),
                _ => ExitCode::from(69),
            }
        }
    }
}
