//! `ringmail queue hold|release|delete|requeue|bounce`: queue commands
//! sent to the running daemon over its admin socket; the shards carry them
//! out and answer once the change is durable. Messages are selected by
//! queue ID, `--domain`, `--sender`, `--campaign` or `--all`; `--dry-run`
//! lists what would change. As Postfix's postsuper, the summary goes to
//! standard error (`postsuper: Deleted: 3 messages`).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use ringmail::config::Config;
use ringmail::daemon::admin_socket::AdminAnswer;
use ringmail::model::queue_command::{QueueCommand, QueueCommandReport, QueueOp, QueueSelector};
use ringmail::spool::Spool;

/// Which messages a queue command acts on.
#[derive(Args, Debug)]
pub struct Selection {
    /// Queue IDs (as `mailq` shows them; a trailing `*` or `!` is ignored).
    ids: Vec<String>,
    /// Only recipients at this domain.
    #[arg(long)]
    domain: Option<String>,
    /// Only messages from this envelope sender (`<>` for bounces).
    #[arg(long)]
    sender: Option<String>,
    /// Only this campaign's recipients.
    #[arg(long)]
    campaign: Option<u64>,
    /// Only recipients whose destination is this shaping site.
    #[arg(long)]
    site: Option<String>,
    /// Every message (needed when nothing else selects).
    #[arg(long)]
    all: bool,
    /// Show what would change; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// One JSON report instead of the summary.
    #[arg(long)]
    json: bool,
    /// Configuration file.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
}

impl Selection {
    /// The configuration file option.
    pub fn config(&self) -> Option<PathBuf> {
        self.config.clone()
    }
}

/// Sends `op` for `sel` to the daemon and prints the report.
pub fn run(config: &Config, op: QueueOp, sel: Selection) -> anyhow::Result<()> {
    let command = QueueCommand {
        op,
        selector: QueueSelector {
            ids: sel
                .ids
                .iter()
                .map(|s| s.trim_end_matches(['*', '!']).to_string())
                .collect(),
            domain: sel.domain,
            sender: sel.sender,
            campaign: sel.campaign,
            site: sel.site,
            all: sel.all,
        },
        dry_run: sel.dry_run,
    };
    command.selector.check()?;
    let report = send(config, &command)?;
    if sel.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&command.op, &report);
    }
    if let Some(e) = report.error {
        anyhow::bail!("the queue could not record every change: {e}");
    }
    Ok(())
}

/// Sends a site operation (suspend, resume) to the daemon.
pub fn run_site(config: &Config, op: QueueOp) -> anyhow::Result<()> {
    let site = op.site().unwrap_or_default().to_string();
    let command = QueueCommand {
        op,
        selector: QueueSelector::default(),
        dry_run: false,
    };
    send(config, &command)?;
    match &command.op {
        QueueOp::Suspend { seconds, .. } => {
            eprintln!("postsuper: site {site} suspended for {seconds} s")
        }
        _ => eprintln!("postsuper: site {site} resumed"),
    }
    Ok(())
}

/// One command and its report over the admin socket.
fn send(config: &Config, command: &QueueCommand) -> anyhow::Result<QueueCommandReport> {
    match ask(config, command)? {
        AdminAnswer::Report(r) => Ok(r),
        AdminAnswer::Error(e) => anyhow::bail!("{e}"),
        AdminAnswer::Sites(_) => anyhow::bail!("the daemon answered with something else"),
    }
}

/// One request (a command or a query, as JSON) and its answer over the
/// admin socket.
pub fn ask(config: &Config, request: &impl serde::Serialize) -> anyhow::Result<AdminAnswer> {
    let mut stream = Spool::new(&config.spool_dir).connect_admin()?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .context("sending the command to the daemon")?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .context("reading the daemon's answer")?;
    serde_json::from_str::<AdminAnswer>(&answer)
        .with_context(|| format!("the daemon's answer is not understood: {answer:?}"))
}

/// The summary, as postsuper words it, with one line per message in a dry
/// run.
fn print_report(op: &QueueOp, report: &QueueCommandReport) {
    let n = report.messages.len();
    let messages = if n == 1 { "message" } else { "messages" };
    if report.dry_run {
        for m in &report.messages {
            println!(
                "{}: would {} {} recipient{}",
                m.queue_id,
                op.as_str(),
                m.recipients,
                if m.recipients == 1 { "" } else { "s" }
            );
        }
        eprintln!("postsuper: dry run: {n} {messages} selected");
        return;
    }
    let done = match op {
        QueueOp::Hold => "Placed on hold",
        QueueOp::Release => "Released from hold",
        QueueOp::Delete => "Deleted",
        QueueOp::Requeue => "Requeued",
        QueueOp::Bounce { .. } => "Bounced",
        QueueOp::Suspend { .. } | QueueOp::Resume { .. } => "Changed",
    };
    eprintln!("postsuper: {done}: {n} {messages}");
}
