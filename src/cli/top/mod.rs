//! `ringmail top`: a live terminal view of the running daemon, read from
//! its admin API (scope `read`): rates in, out, deferred and bounced with
//! sparklines over the last two minutes, the queue by domain, campaigns
//! with progress and the most frequent deferral reasons. `--once` prints
//! one text snapshot instead.
//!
//! - `client`: the HTTP GETs with the bearer token.
//! - `model`: the answers parsed, rates from counter deltas.
//! - `view`: the ratatui layout and the text snapshot.

mod client;
mod model;
mod view;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::crossterm::{cursor, execute};

use client::{Client, ClientError};
use model::{Counters, ModelError, Reasons, Snapshot};

/// How many campaigns are read and shown (newest first).
const CAMPAIGNS_SHOWN: usize = 8;

/// How many domains the queue panel asks for.
const QUEUE_TOP: usize = 10;

/// The options of `ringmail top`.
#[derive(clap::Args)]
pub struct TopArgs {
    /// The admin API (default: `http://` and the `[http] listen` address of
    /// the configuration).
    #[arg(long)]
    url: Option<String>,
    /// A bearer token with scope `read` (default: $RINGMAIL_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// Refresh every this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Print one text snapshot (rates over one interval) and exit.
    #[arg(long)]
    once: bool,
    /// Configuration file (for the default URL).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
}

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// A request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// An answer could not be read.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Runs `ringmail top`.
pub fn run(args: TopArgs) -> anyhow::Result<()> {
    let url = match args.url {
        Some(u) => u,
        None => {
            let config = super::load(args.config)?;
            let http = config
                .http
                .context("no --url and no [http] section in the configuration")?;
            format!("http://{}", http.listen)
        }
    };
    let token = args
        .token
        .or_else(|| std::env::var("RINGMAIL_TOKEN").ok())
        .filter(|t| !t.is_empty());
    let client = Client::new(&url, token)?;
    let interval = Duration::from_millis(args.interval_ms.max(100));
    let mut top = Top {
        snapshot: Snapshot::new(client.base(), interval.as_millis() as u64),
        client,
        started: Instant::now(),
    };
    if args.once {
        top.refresh()?;
        std::thread::sleep(interval);
        top.refresh()?;
        let mut out = std::io::stdout().lock();
        out.write_all(view::text(&top.snapshot).as_bytes())?;
        out.flush()?;
        return Ok(());
    }
    live(&mut top, interval)
}

/// The state of a running `top`.
struct Top {
    client: Client,
    snapshot: Snapshot,
    started: Instant,
}

impl Top {
    /// Reads everything once; the snapshot keeps what it had where a
    /// request fails, and says why.
    fn refresh(&mut self) -> Result<(), TopError> {
        let result = self.fetch();
        self.snapshot.error = result.as_ref().err().map(ToString::to_string);
        self.snapshot.at = chrono::Local::now().format("%H:%M:%S").to_string();
        result
    }

    fn fetch(&mut self) -> Result<(), TopError> {
        let metrics = self.client.get("/metrics")?;
        let counters = Counters::parse(&String::from_utf8_lossy(&metrics));
        let at_ms = self.started.elapsed().as_millis() as u64;
        self.snapshot.rates.add(counters, at_ms);
        let shape = self
            .client
            .get(&format!("/api/v1/queue/shape?top={QUEUE_TOP}"))?;
        self.snapshot.queue = model::queue_rows(&shape)?;
        let mut list = model::campaign_list(&self.client.get("/api/v1/campaigns")?)?;
        list.sort_by_key(|c| std::cmp::Reverse(c.id));
        self.snapshot.campaigns_more = list.len().saturating_sub(CAMPAIGNS_SHOWN);
        let mut campaigns = Vec::new();
        for c in list.iter().take(CAMPAIGNS_SHOWN) {
            let body = self.client.get(&format!("/api/v1/campaigns/{}", c.id))?;
            campaigns.push(model::Campaign::parse(&body)?);
        }
        self.snapshot.campaigns = campaigns;
        let queued = counters.queued as u64;
        self.snapshot.reasons = if queued > model::REASONS_MAX_QUEUE {
            Reasons::Skipped { queued }
        } else {
            Reasons::Top(model::top_reasons(&self.client.get("/api/v1/queue")?)?)
        };
        Ok(())
    }
}

/// Puts the terminal back as it was when dropped (also on an error).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen, cursor::Show);
        let _ = terminal::disable_raw_mode();
    }
}

/// The live screen until `q` or Esc.
fn live(top: &mut Top, interval: Duration) -> anyhow::Result<()> {
    terminal::enable_raw_mode().context("the terminal (is stdout a terminal?)")?;
    let _restore = Restore;
    execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide)?;
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let mut terminal = ratatui::Terminal::new(backend)?;
    terminal.clear()?;
    let mut next = Instant::now();
    loop {
        if !top.snapshot.paused && Instant::now() >= next {
            // A failed refresh is shown on the screen; the next may work.
            let _ = top.refresh();
            next = Instant::now() + interval;
        }
        terminal.draw(|f| view::draw(f, &top.snapshot))?;
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(250));
        if !event::poll(wait)? {
            continue;
        }
        let Event::Key(key) = event::read()? else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => break,
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => break,
            KeyCode::Char('p') => {
                top.snapshot.paused = !top.snapshot.paused;
                next = Instant::now();
            }
            _ => {}
        }
    }
    Ok(())
}
