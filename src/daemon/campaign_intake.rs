//! Taking a campaign into the queue, whatever it came through (the
//! `campaign.sock` server in `campaign.rs`, the HTTP API in `admin/`): the
//! template is compiled (refused at once if it does not), the list is read
//! as it arrives and cut into slices of [`SLICE_RECIPIENTS`] that go
//! through the pickup ring like any message, and once every slice is
//! committed the campaign's state file is written (the seal). Slices of a
//! campaign that is never sealed are never sent (the queue manager drops
//! them). Pause, resume and cancel go through here too.

use std::collections::HashSet;
use std::fmt;
use std::hash::BuildHasher;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::compose::recipients::{ListFormat, RowError};
use crate::compose::{CampaignTemplate, RecipientReader, TemplateOptions};
use crate::inject::campaign::{CampaignRequest, MAX_TEMPLATE};
use crate::model::{
    now_micros, AckSender, CampaignSlice, CampaignSpec, SliceRow, Source, Submission,
    SLICE_RECIPIENTS,
};
use crate::queue::campaign_state::{CampaignInfo, CampaignRegistry, CampaignState};
use crate::sched::PickupRing;

/// Slices offered and not yet acknowledged, per campaign: bounds the
/// memory a large list takes while it is accepted.
const MAX_IN_FLIGHT: usize = 64;

/// Refused rows reported back in detail (all are counted).
pub const MAX_REPORTED_ROWS: usize = 100;

/// Why a campaign (or a control request) was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Never (a bad template or list, an unknown campaign): nothing queued.
    Permanent(String),
    /// Not now (the daemon is stopping, the queue cannot be written):
    /// nothing will be sent; try again.
    Temporary(String),
}

impl Refusal {
    /// True for a refusal worth retrying.
    pub fn is_transient(&self) -> bool {
        matches!(self, Refusal::Temporary(_))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Permanent(s) | Refusal::Temporary(s) => f.write_str(s),
        }
    }
}

/// A campaign taken: its sealed state and the first refused rows.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// As written in its state file.
    pub info: CampaignInfo,
    /// The first refused rows (all are counted in `info.refused`).
    pub refused_rows: Vec<RowError>,
}

/// What every intake path shares.
pub struct CampaignIntake {
    ring: Arc<PickupRing>,
    closed: Arc<AtomicBool>,
    registry: Arc<CampaignRegistry>,
    last_id: AtomicU64,
    next_ack: AtomicU64,
}

impl CampaignIntake {
    /// Offers slices to `ring` until `closed`; records states in `registry`.
    pub fn new(
        ring: Arc<PickupRing>,
        closed: Arc<AtomicBool>,
        registry: Arc<CampaignRegistry>,
    ) -> CampaignIntake {
        let last = registry.list().iter().map(|c| c.id).max().unwrap_or(0);
        CampaignIntake {
            ring,
            closed,
            registry,
            last_id: AtomicU64::new(last),
            next_ack: AtomicU64::new(0),
        }
    }

    /// The campaigns' states.
    pub fn registry(&self) -> &Arc<CampaignRegistry> {
        &self.registry
    }

    /// A unique campaign ID: the time in microseconds, above every earlier ID.
    fn new_id(&self) -> u64 {
        let now = now_micros();
        let mut last = self.last_id.load(Ordering::Acquire);
        loop {
            let id = now.max(last + 1);
            match self
                .last_id
                .compare_exchange(last, id, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return id,
                Err(seen) => last = seen,
            }
        }
    }

    /// Takes campaign `req` with `template`, reading its list from `list`;
    /// returns once it is durably queued and sealed.
    pub fn accept(
        &self,
        req: &CampaignRequest,
        template: Vec<u8>,
        list: impl Read,
    ) -> Result<Accepted, Refusal> {
        if template.len() > MAX_TEMPLATE {
            return Err(Refusal::Permanent(format!(
                "template larger than {MAX_TEMPLATE} bytes"
            )));
        }
        let format = match req.format.as_str() {
            "csv" => ListFormat::Csv,
            "jsonl" => ListFormat::JsonLines,
            other => {
                return Err(Refusal::Permanent(format!(
                    "unknown list format {other:?} (csv or jsonl)"
                )))
            }
        };
        if let Some(rate) = &req.rate {
            crate::config::internet::Rate::parse(rate).map_err(Refusal::Permanent)?;
        }
        let id = self.new_id();
        let opts = TemplateOptions {
            campaign: id,
            from: req.from.clone(),
            bounce_domain: req.bounce_domain.clone(),
            unsubscribe_base: req.unsubscribe.clone(),
        };
        let compiled = CampaignTemplate::compile(&template, &opts)
            .map_err(|e| Refusal::Permanent(e.to_string()))?;
        let mut list =
            RecipientReader::new(list, format).map_err(|e| Refusal::Permanent(e.to_string()))?;
        let mut info = CampaignInfo {
            id,
            name: req.name.clone(),
            created_micros: now_micros(),
            state: CampaignState::Accepting,
            recipients: 0,
            refused: 0,
            duplicates: 0,
            slices: 0,
            rate: req.rate.clone(),
            not_before: req.at,
        };
        self.registry.begin(info.clone());
        let mut intake = Intake {
            shared: self,
            spec: None,
            req,
            template: Some(template),
            id,
            pending: Vec::new(),
            in_flight: 0,
            acks: tokio::sync::mpsc::unbounded_channel(),
            failed: None,
        };
        let result = read_list(&compiled, &mut list, &mut intake, &mut info).and_then(|rows| {
            intake.flush_slice(&mut info)?;
            intake.wait_all()?;
            Ok(rows)
        });
        let refused_rows = match result {
            Ok(rows) => rows,
            Err(refusal) => {
                // Slices already committed are dropped by the queue
                // manager (their campaign is not in the registry).
                self.registry.abandon(id);
                tracing::warn!(target: "campaign", "campaign {id} not accepted: {refusal}");
                return Err(refusal);
            }
        };
        if info.recipients == 0 {
            self.registry.abandon(id);
            return Err(Refusal::Permanent(
                "the list has no recipient that can be sent to".into(),
            ));
        }
        if let Err(e) = self.registry.seal(info.clone()) {
            self.registry.abandon(id);
            tracing::error!(target: "campaign", "campaign {id}: cannot write its state file: {e}");
            return Err(Refusal::Temporary(format!(
                "cannot record the campaign: {e}"
            )));
        }
        crate::info_line!(
            target: "campaign",
            "campaign {id} accepted: name={}, recipients={}, refused={}, duplicates={}, slices={}",
            info.name,
            info.recipients,
            info.refused,
            info.duplicates,
            info.slices
        );
        info.state = CampaignState::Running;
        Ok(Accepted { info, refused_rows })
    }

    /// Pauses, resumes or cancels campaign `id`: durable (its state file)
    /// and seen by every shard within a second. `(before, after)`.
    pub fn control(&self, op: &str, id: u64) -> Result<(CampaignState, CampaignState), Refusal> {
        let state = match op {
            "pause" => CampaignState::Paused,
            "resume" => CampaignState::Running,
            "cancel" => CampaignState::Cancelled,
            other => return Err(Refusal::Permanent(format!("unknown operation {other:?}"))),
        };
        match self.registry.set_state(id, state) {
            Ok(Some(before)) => {
                let now = self.registry.state(id).unwrap_or(before);
                if now != before {
                    crate::info_line!(target: "campaign", "campaign {id}: {} (was {})", now.as_str(), before.as_str());
                }
                Ok((before, now))
            }
            Ok(None) => Err(Refusal::Permanent(format!("no campaign {id}"))),
            Err(e) => Err(Refusal::Temporary(e.to_string())),
        }
    }
}

/// The slices being offered for one campaign.
struct Intake<'a> {
    shared: &'a CampaignIntake,
    spec: Option<Arc<CampaignSpec>>,
    req: &'a CampaignRequest,
    template: Option<Vec<u8>>,
    id: u64,
    pending: Vec<SliceRow>,
    in_flight: usize,
    acks: (
        tokio::sync::mpsc::UnboundedSender<crate::model::Ack>,
        tokio::sync::mpsc::UnboundedReceiver<crate::model::Ack>,
    ),
    failed: Option<String>,
}

impl Intake<'_> {
    /// The campaign's spec, made with the columns of the first row.
    fn spec(&mut self, columns: &[String]) -> Arc<CampaignSpec> {
        if let Some(s) = &self.spec {
            return Arc::clone(s);
        }
        let spec = Arc::new(CampaignSpec {
            id: self.id,
            created_micros: now_micros(),
            from: self.req.from.clone().unwrap_or_default(),
            bounce_domain: self.req.bounce_domain.clone().unwrap_or_default(),
            unsubscribe_base: self.req.unsubscribe.clone().unwrap_or_default(),
            columns: columns.to_vec(),
            template: self.template.take().unwrap_or_default(),
        });
        self.spec = Some(Arc::clone(&spec));
        spec
    }

    /// Offers the rows gathered so far as one slice.
    fn flush_slice(&mut self, info: &mut CampaignInfo) -> Result<(), Refusal> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(spec) = self.spec.clone() else {
            return Ok(());
        };
        let rows = std::mem::take(&mut self.pending);
        let first_index = (info.recipients - rows.len() as u64) as u32;
        let mut sub = Box::new(Submission::campaign_slice(
            CampaignSlice {
                spec,
                first_index,
                rows,
            },
            Source::Reply {
                id: self.shared.next_ack.fetch_add(1, Ordering::Relaxed),
                to: AckSender(self.acks.0.clone()),
            },
        ));
        while self.in_flight >= MAX_IN_FLIGHT {
            self.wait_one()?;
        }
        loop {
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(Refusal::Temporary("the daemon is stopping".into()));
            }
            match self.shared.ring.push(sub) {
                Ok(()) => break,
                Err(back) => {
                    sub = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        self.in_flight += 1;
        info.slices += 1;
        Ok(())
    }

    /// Waits for one slice's commit.
    fn wait_one(&mut self) -> Result<(), Refusal> {
        match self.acks.1.blocking_recv() {
            Some(ack) => {
                self.in_flight -= 1;
                if let Err(e) = ack.result {
                    self.failed.get_or_insert(e.to_string());
                }
            }
            None => {
                return Err(Refusal::Temporary(
                    "the daemon stopped before the commit".into(),
                ))
            }
        }
        match &self.failed {
            Some(e) => Err(Refusal::Temporary(format!("queueing the campaign: {e}"))),
            None => Ok(()),
        }
    }

    /// Waits for every slice offered.
    fn wait_all(&mut self) -> Result<(), Refusal> {
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        Ok(())
    }
}

/// Reads the whole list into slices; the first refused rows.
fn read_list<R: Read>(
    template: &CampaignTemplate,
    list: &mut RecipientReader<R>,
    intake: &mut Intake<'_>,
    info: &mut CampaignInfo,
) -> Result<Vec<RowError>, Refusal> {
    let mut refused = Vec::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let hasher = std::collections::hash_map::RandomState::new();
    let mut columns: Option<Vec<String>> = None;
    loop {
        let row = match list.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => return Err(Refusal::Permanent(e.to_string())),
        };
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                info.refused += 1;
                if refused.len() < MAX_REPORTED_ROWS {
                    refused.push(e);
                }
                continue;
            }
        };
        let names: Vec<String> = row.fields.iter().map(|(k, _)| k.clone()).collect();
        if columns.is_none() {
            template
                .check_columns(&names)
                .map_err(|e| Refusal::Permanent(e.to_string()))?;
        }
        let cols = columns.get_or_insert_with(|| names.clone());
        if *cols != names {
            // JSON Lines: every object must have the first one's keys.
            info.refused += 1;
            if refused.len() < MAX_REPORTED_ROWS {
                refused.push(RowError {
                    line: row.line,
                    email: Some(row.email.clone()),
                    reason: format!(
                        "its fields ({}) differ from the first row's ({})",
                        names.join(", "),
                        cols.join(", ")
                    ),
                });
            }
            continue;
        }
        if !seen.insert(hasher.hash_one(row.email.to_ascii_lowercase())) {
            info.duplicates += 1;
            continue;
        }
        intake.spec(cols);
        intake.pending.push(SliceRow {
            email: row.email,
            values: row.fields.into_iter().map(|(_, v)| v).collect(),
        });
        info.recipients += 1;
        if info.recipients > u32::MAX as u64 {
            return Err(Refusal::Permanent(
                "more than 4,294,967,295 recipients".into(),
            ));
        }
        if intake.pending.len() >= SLICE_RECIPIENTS {
            intake.flush_slice(info)?;
        }
    }
    Ok(refused)
}
