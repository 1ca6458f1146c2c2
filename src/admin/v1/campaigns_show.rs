//! `GET /api/v1/campaigns/ID` and `GET /api/v1/campaigns` (scope `read`):
//! a campaign's state and counts (the fields of `ringmail campaign show
//! --json`, counted from its results journals), and every campaign with
//! its state.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;

use crate::config::ApiScope;
use crate::queue::campaign_results::{read_results, ResultCounts};
use crate::queue::campaign_state::CampaignInfo;

use crate::admin::context;
use crate::admin::ApiError;

/// `GET /api/v1/campaigns/ID`.
pub(crate) async fn show(
    State(shared): State<context::State>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    shared.tokens.check(&headers, ApiScope::Read)?;
    let id = super::campaign_id(&id)?;
    let info = shared
        .ctx
        .intake
        .registry()
        .get(id)
        .ok_or_else(|| super::no_campaign(id))?;
    let dir = shared.ctx.campaigns_dir.clone();
    let counts = tokio::task::spawn_blocking(move || read_results(&dir, id, |_| {}))
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading the results: {e}")))?
        .map_err(|e| ApiError::Unavailable(format!("reading the results: {e}")))?;
    Ok(Json(progress(&info, &counts)))
}

/// `GET /api/v1/campaigns`.
pub(crate) async fn list(
    State(shared): State<context::State>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    shared.tokens.check(&headers, ApiScope::Read)?;
    let mut all = shared.ctx.intake.registry().list();
    all.sort_by_key(|c| c.id);
    let items: Vec<serde_json::Value> = all.iter().map(summary).collect();
    Ok(Json(serde_json::json!({ "campaigns": items })))
}

/// A campaign in the list.
fn summary(c: &CampaignInfo) -> serde_json::Value {
    serde_json::json!({
        "id": c.id,
        "name": c.name,
        "state": c.state.as_str(),
        "created": c.created_micros / 1_000_000,
        "recipients": c.recipients,
        "refused": c.refused,
        "duplicates": c.duplicates,
    })
}

/// State and counts, as `campaign show --json` prints them.
fn progress(info: &CampaignInfo, c: &ResultCounts) -> serde_json::Value {
    serde_json::json!({
        "id": info.id,
        "name": info.name,
        "state": info.state.as_str(),
        "recipients": info.recipients,
        "refused": info.refused,
        "duplicates": info.duplicates,
        "sent": c.sent,
        "deferred": c.deferred,
        "bounced": c.bounced,
        "expired": c.expired,
        "suppressed": c.suppressed,
        "cancelled": c.cancelled,
        "pending": info.recipients.saturating_sub(c.seen()),
        "done": c.done() >= info.recipients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::campaign_state::CampaignState;

    #[test]
    fn progress_counts_pending_and_done() {
        let info = CampaignInfo {
            id: 9,
            name: "n".into(),
            created_micros: 5_000_000,
            state: CampaignState::Running,
            recipients: 10,
            refused: 1,
            duplicates: 2,
            slices: 1,
            rate: None,
            not_before: None,
        };
        let c = ResultCounts {
            sent: 6,
            deferred: 2,
            bounced: 1,
            ..ResultCounts::default()
        };
        let p = progress(&info, &c);
        assert_eq!(p["pending"], 1);
        assert_eq!(p["done"], false);
        assert_eq!(p["state"], "running");
        assert_eq!(
            (p["sent"].as_u64(), p["deferred"].as_u64()),
            (Some(6), Some(2))
        );
        let all = ResultCounts {
            sent: 9,
            cancelled: 1,
            ..ResultCounts::default()
        };
        assert_eq!(progress(&info, &all)["done"], true);
        assert_eq!(summary(&info)["created"], 5);
    }
}
