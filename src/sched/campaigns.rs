//! Campaign recipients rendered at delivery: the shard compiles each
//! campaign's template once (from its campaign record), then renders one
//! recipient's message just before it is sent, and runs it through
//! cleanup as every other message is (wire form, 8BITMIME/SMTPUTF8 flags).

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use crate::cleanup::{cleanup, CleanupOptions};
use crate::compose::{CampaignTemplate, RecipientRow, RenderContext, TemplateOptions, TokenKey};
use crate::config::internet::Rate;
use crate::deliver::session::Outgoing;
use crate::deliver::RcptResult;
use crate::model::{DsnParams, Envelope};
use crate::queue::campaign_record::{CampaignView, SliceEntry, SliceIndex};
use crate::queue::campaign_results::ResultsWriter;
use crate::queue::campaign_state::{CampaignRegistry, CampaignState};
use crate::queue::suppress::{Entry, Reason, ReasonKind, Scope, SharedSuppressions};

/// What the shard needs to render campaign mail.
#[derive(Clone)]
pub struct CampaignSettings {
    /// The secret of the recipient tokens (VERP and unsubscribe).
    pub key: TokenKey,
    /// Message-IDs and cleanup.
    pub myhostname: String,
    /// Largest rendered message.
    pub message_size_limit: u64,
    /// Which campaigns may send (sealed, not paused or cancelled).
    pub registry: Arc<CampaignRegistry>,
    /// Where the results journals go (the spool's `campaigns/`).
    pub results_dir: PathBuf,
    /// This shard (in the journals' names).
    pub shard: usize,
    /// Addresses never to mail (checked just before rendering).
    pub suppressions: Option<SharedSuppressions>,
    /// The campaigns' rate limits, shared by every shard.
    pub rates: Arc<CampaignRates>,
    /// DKIM keys: each rendered message is signed for its recipient.
    pub keys: Option<Arc<crate::sign::CurrentKeys>>,
}

/// Per-campaign rate limits (`campaign send --rate`), one token bucket per
/// campaign shared by every shard. A bucket holds at most one second's
/// worth of tokens (at least one), so a campaign starts without a burst.
#[derive(Debug, Default)]
pub struct CampaignRates {
    buckets: std::sync::Mutex<HashMap<u64, (f64, std::time::Instant)>>,
}

impl CampaignRates {
    /// Takes a token for one message of campaign `cid` limited to `rate`,
    /// or says how long until one is there.
    pub fn take(&self, cid: u64, rate: Rate) -> Result<(), std::time::Duration> {
        let now = std::time::Instant::now();
        let per_second = rate.per_second();
        let cap = per_second.max(1.0);
        // Two numbers per campaign: a poisoned lock leaves them usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(cid).or_insert((1.0, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *last = now;
        *tokens = (*tokens + elapsed * per_second).min(cap);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(std::time::Duration::from_secs_f64(
                (1.0 - *tokens) / per_second,
            ))
        }
    }
}

impl std::fmt::Debug for CampaignSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CampaignSettings")
            .field("myhostname", &self.myhostname)
            .field("shard", &self.shard)
            .field("results_dir", &self.results_dir)
            .finish_non_exhaustive()
    }
}

/// Why a campaign recipient is not sent now.
#[derive(Debug)]
pub enum Unsendable {
    /// This result is recorded instead (bounced: its fields do not
    /// render; deferred: the campaign cannot be read now).
    Result(RcptResult),
    /// On the suppression list: dropped, with this reason.
    Suppressed(String),
}

/// A campaign's compiled template and its column names.
struct Compiled {
    template: CampaignTemplate,
    columns: Vec<String>,
}

/// Compiled templates of this shard's campaigns.
pub struct CampaignCache {
    settings: Option<CampaignSettings>,
    templates: HashMap<u64, Result<Rc<Compiled>, String>>,
    /// Results of this shard's campaign recipients, written at each commit.
    pub results: Option<ResultsWriter>,
    /// Rate limits and start times of the campaigns seen.
    limits: HashMap<u64, Limits>,
    /// This shard's view of the DKIM keys.
    signer: Option<crate::sign::KeysReader>,
}

/// A campaign's rate limit and start time.
#[derive(Clone, Copy, Debug)]
struct Limits {
    rate: Option<Rate>,
    not_before: Option<u64>,
}

impl CampaignCache {
    /// A cache; without settings every campaign recipient is deferred (a
    /// daemon always has them: they come from the spool's key).
    pub fn new(settings: Option<CampaignSettings>) -> CampaignCache {
        let results = settings
            .as_ref()
            .map(|s| ResultsWriter::new(&s.results_dir, s.shard));
        let signer = settings
            .as_ref()
            .and_then(|s| s.keys.as_ref())
            .map(|k| k.reader());
        CampaignCache {
            settings,
            templates: HashMap::new(),
            results,
            limits: HashMap::new(),
            signer,
        }
    }

    /// Campaign `cid`'s state; `None` for one never accepted. Without
    /// settings (no campaigns configured) every campaign counts as running
    /// and its recipients are deferred at rendering.
    pub fn state(&self, cid: u64) -> Option<CampaignState> {
        match &self.settings {
            Some(s) => s.registry.state(cid),
            None => Some(CampaignState::Running),
        }
    }

    /// Campaign `cid`'s rate limit and start time: fixed at acceptance,
    /// so read from the registry once per shard, not per message.
    fn limits(&mut self, cid: u64) -> Option<Limits> {
        if let Some(l) = self.limits.get(&cid) {
            return Some(*l);
        }
        let info = self.settings.as_ref()?.registry.get(cid)?;
        let l = Limits {
            rate: info.rate.as_deref().and_then(|r| Rate::parse(r).ok()),
            not_before: info.not_before,
        };
        self.limits.insert(cid, l);
        Some(l)
    }

    /// How long a message of campaign `cid` must wait for its rate limit
    /// (`None`: send now; a token is taken).
    pub fn rate_wait(&mut self, cid: u64) -> Option<std::time::Duration> {
        let rate = self.limits(cid)?.rate?;
        self.settings.as_ref()?.rates.take(cid, rate).err()
    }

    /// Seconds until campaign `cid` may start (`--at`), if it may not yet.
    pub fn starts_in(&mut self, cid: u64) -> Option<u64> {
        let at = self.limits(cid)?.not_before?;
        let now = crate::model::now_micros() / 1_000_000;
        (at > now).then(|| at - now)
    }

    /// The settings, when campaigns are configured.
    pub fn settings(&self) -> Option<&CampaignSettings> {
        self.settings.as_ref()
    }

    /// Notes what became of recipient `index` of campaign `cid`.
    pub fn note(
        &mut self,
        cid: u64,
        index: u32,
        email: &str,
        status: &str,
        dsn: &str,
        reply: &str,
    ) {
        if let Some(w) = &mut self.results {
            w.note(cid, index, email, status, dsn, reply);
        }
    }

    /// Writes the results noted so far (no sync), after each batch.
    pub fn write_results(&mut self) {
        if let Some(w) = self.results.as_mut().filter(|w| w.has_pending()) {
            if let Err(e) = w.write_out() {
                tracing::error!(target: "qmgr", "campaign results: {e}");
            }
        }
    }

    /// Writes the results noted since the last call and hands over the
    /// journals to fdatasync before a commit makes their status bytes
    /// durable (the commit syncs them first, on the shard's I/O backend).
    pub fn take_unsynced_results(&mut self) -> Vec<(Arc<std::fs::File>, std::path::PathBuf)> {
        let Some(w) = self
            .results
            .as_mut()
            .filter(|w| w.has_pending() || w.has_unsynced())
        else {
            return Vec::new();
        };
        w.take_unsynced().unwrap_or_else(|e| {
            tracing::error!(target: "qmgr", "campaign results: {e}");
            Vec::new()
        })
    }

    /// The message of recipient `row` (0-based in its slice) with address
    /// `email`: `Err` is this recipient's result when it cannot be sent
    /// (bounced when its own fields cannot render, deferred when the
    /// campaign itself cannot be read now).
    pub fn render<'a>(
        &mut self,
        load: impl FnOnce() -> Option<CampaignView<'a>>,
        slice: &SliceIndex,
        row: usize,
        recipient: &SliceEntry<'_>,
    ) -> Result<Outgoing, Unsendable> {
        let email = recipient.email;
        let fields = slice;
        let Some(settings) = self.settings.clone() else {
            return Err(Unsendable::Result(RcptResult::deferred(
                "4.3.5",
                "campaign rendering is not configured".into(),
            )));
        };
        let template = match self.templates.get(&fields.campaign) {
            Some(t) => t.clone(),
            None => {
                let Some(view) = load() else {
                    return Err(Unsendable::Result(RcptResult::deferred(
                        "4.3.0",
                        format!(
                            "campaign {}: its campaign record is missing or damaged",
                            fields.campaign
                        ),
                    )));
                };
                let compiled = compile(&view).map(Rc::new);
                self.templates.insert(fields.campaign, compiled.clone());
                compiled
            }
        };
        let compiled = template.map_err(|e| Unsendable::Result(RcptResult::bounced("5.6.0", e)))?;
        if let Some(entry) = settings
            .suppressions
            .as_ref()
            .and_then(|s| s.check(email, compiled.template.from_domain()))
        {
            return Err(Unsendable::Suppressed(format!(
                "on the suppression list ({}, {})",
                entry.scope, entry.reason
            )));
        }
        let values = recipient.values.iter();
        let recipient = RecipientRow {
            line: 0,
            email: email.to_string(),
            fields: compiled
                .columns
                .iter()
                .cloned()
                .zip(values)
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
        };
        let now = chrono::Local::now();
        let index = fields.first_index.saturating_add(row as u32);
        let rendered = compiled
            .template
            .render(
                RenderContext {
                    index,
                    row: &recipient,
                    now,
                },
                &settings.key,
            )
            .map_err(|e| {
                Unsendable::Result(RcptResult::bounced(
                    "5.6.0",
                    format!("campaign {} recipient {index}: {e}", fields.campaign),
                ))
            })?;
        let envelope = Envelope {
            sender: rendered.sender.clone(),
            recipients: vec![rendered.recipient.clone()],
        };
        let opts = CleanupOptions {
            myhostname: &settings.myhostname,
            message_size_limit: settings.message_size_limit,
            full_name: None,
            now,
        };
        let cleaned = cleanup(&rendered.message, &envelope, &opts).map_err(|e| {
            Unsendable::Result(RcptResult::bounced(
                "5.6.0",
                format!(
                    "campaign {} recipient {index}: rendered message refused: {e}",
                    fields.campaign
                ),
            ))
        })?;
        // Signed per recipient, after rendering (the body and headers
        // differ for each), on this shard: see docs/AUTHENTICATION.md for
        // what that costs.
        let wire = match self.signer.as_mut() {
            Some(reader) => match reader.keys().sign_wire(cleaned.wire) {
                Ok((wire, _)) => wire,
                Err(e) => {
                    return Err(Unsendable::Result(RcptResult::deferred(
                        "4.7.0",
                        format!("campaign {} recipient {index}: {e}", fields.campaign),
                    )))
                }
            },
            None => cleaned.wire,
        };
        Ok(Outgoing {
            sender: rendered.sender,
            recipients: vec![rendered.recipient],
            wire,
            flags: cleaned.flags,
            dsn: DsnParams::default(),
        })
    }
}

/// Compiles a campaign record's template with its options.
fn compile(view: &CampaignView<'_>) -> Result<Compiled, String> {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let opts = TemplateOptions {
        campaign: view.id,
        from: opt(view.from),
        bounce_domain: opt(view.bounce_domain),
        unsubscribe_base: opt(view.unsubscribe_base),
    };
    let template = CampaignTemplate::compile(view.template, &opts)
        .map_err(|e| format!("campaign {}: {e}", view.id))?;
    Ok(Compiled {
        template,
        columns: view.columns.iter().map(|c| c.to_string()).collect(),
    })
}

/// Adds a recipient whose address the receiver refused for good (a 5.1.x
/// code: no such mailbox or domain) to the suppression list, scoped to
/// all senders, as bulk senders must.
pub fn suppress_hard_bounce(
    settings: &CampaignSettings,
    cid: u64,
    email: &str,
    dsn: &str,
    text: &str,
) {
    let Some(list) = &settings.suppressions else {
        return;
    };
    if !dsn.starts_with("5.1.") {
        return;
    }
    let detail: String = format!("{dsn} {text}").chars().take(200).collect();
    match Entry::new(
        email,
        Scope::Global,
        Reason::new(ReasonKind::Bounce, &detail),
    ) {
        Ok(mut entry) => {
            entry.campaign = Some(cid);
            if let Err(e) = list.add(entry) {
                tracing::error!(target: "qmgr", "suppression list: cannot add {email}: {e}");
            }
        }
        Err(e) => tracing::warn!(target: "qmgr", "suppression list: {email}: {e}"),
    }
}
