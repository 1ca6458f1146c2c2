//! Campaign recipients rendered at delivery: the shard compiles each
//! campaign's template once (from its campaign record), then renders one
//! recipient's message just before it is sent, and runs it through
//! cleanup as every other message is (wire form, 8BITMIME/SMTPUTF8 flags).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::cleanup::{cleanup, CleanupOptions};
use crate::compose::{CampaignTemplate, RecipientRow, RenderContext, TemplateOptions, TokenKey};
use crate::deliver::session::Outgoing;
use crate::deliver::RcptResult;
use crate::model::{DsnParams, Envelope};
use crate::queue::campaign_record::{CampaignView, SliceFields};
use crate::queue::campaign_state::{CampaignRegistry, CampaignState};

/// What the shard needs to render campaign mail.
#[derive(Clone, Debug)]
pub struct CampaignSettings {
    /// The secret of the recipient tokens (VERP and unsubscribe).
    pub key: TokenKey,
    /// Message-IDs and cleanup.
    pub myhostname: String,
    /// Largest rendered message.
    pub message_size_limit: u64,
    /// Which campaigns may send (sealed, not paused or cancelled).
    pub registry: Arc<CampaignRegistry>,
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
}

impl CampaignCache {
    /// A cache; without settings every campaign recipient is deferred (a
    /// daemon always has them: they come from the spool's key).
    pub fn new(settings: Option<CampaignSettings>) -> CampaignCache {
        CampaignCache {
            settings,
            templates: HashMap::new(),
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

    /// Forgets campaign `cid`'s compiled template (its last slice here is done).
    pub fn forget(&mut self, cid: u64) {
        self.templates.remove(&cid);
    }

    /// The message of recipient `row` (0-based in its slice) with address
    /// `email`: `Err` is this recipient's result when it cannot be sent
    /// (bounced when its own fields cannot render, deferred when the
    /// campaign itself cannot be read now).
    pub fn render<'a>(
        &mut self,
        load: impl FnOnce() -> Option<CampaignView<'a>>,
        fields: SliceFields<'_>,
        row: usize,
        email: &str,
    ) -> Result<Outgoing, RcptResult> {
        let Some(settings) = self.settings.clone() else {
            return Err(RcptResult::deferred(
                "4.3.5",
                "campaign rendering is not configured".into(),
            ));
        };
        let template = match self.templates.get(&fields.campaign) {
            Some(t) => t.clone(),
            None => {
                let Some(view) = load() else {
                    return Err(RcptResult::deferred(
                        "4.3.0",
                        format!(
                            "campaign {}: its campaign record is missing or damaged",
                            fields.campaign
                        ),
                    ));
                };
                let compiled = compile(&view).map(Rc::new);
                self.templates.insert(fields.campaign, compiled.clone());
                compiled
            }
        };
        let compiled = template.map_err(|e| RcptResult::Bounced {
            dsn: "5.6.0".into(),
            text: e,
        })?;
        let values = fields.row(row).map_err(|e| {
            RcptResult::deferred("4.3.0", format!("campaign slice unreadable: {e}"))
        })?;
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
            .map_err(|e| RcptResult::Bounced {
                dsn: "5.6.0".into(),
                text: format!("campaign {} recipient {index}: {e}", fields.campaign),
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
        let cleaned =
            cleanup(&rendered.message, &envelope, &opts).map_err(|e| RcptResult::Bounced {
                dsn: "5.6.0".into(),
                text: format!(
                    "campaign {} recipient {index}: rendered message refused: {e}",
                    fields.campaign
                ),
            })?;
        Ok(Outgoing {
            sender: rendered.sender,
            recipients: vec![rendered.recipient],
            wire: cleaned.wire,
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
