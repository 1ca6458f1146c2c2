//! `POST /api/v1/campaigns/ID/pause|resume|cancel` (scope `admin`): as
//! `ringmail campaign pause|resume|cancel`; the new state is in the
//! campaign's state file before the answer, and every shard acts on it
//! within a second.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;

use crate::config::ApiScope;
use crate::daemon::campaign_intake::Refusal;

use crate::admin::context;
use crate::admin::ApiError;

/// The operations, as in the path.
const OPERATIONS: [&str; 3] = ["pause", "resume", "cancel"];

/// The handler.
pub(crate) async fn control(
    State(shared): State<context::State>,
    Path((id, op)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !OPERATIONS.contains(&op.as_str()) {
        return Err(ApiError::NotFound(format!(
            "no such operation {op:?} (pause, resume, cancel)"
        )));
    }
    shared.tokens.check(&headers, ApiScope::Admin)?;
    let id = super::campaign_id(&id)?;
    if shared.ctx.intake.registry().get(id).is_none() {
        return Err(super::no_campaign(id));
    }
    let s = shared.clone();
    // Rewrites the state file (an fdatasync): off the runtime's workers.
    let result = tokio::task::spawn_blocking(move || s.ctx.intake.control(&op, id))
        .await
        .map_err(|e| ApiError::Unavailable(format!("changing the campaign: {e}")))?;
    match result {
        Ok((was, now)) => Ok(Json(serde_json::json!({
            "id": id,
            "was": was.as_str(),
            "state": now.as_str(),
        }))),
        Err(Refusal::Permanent(why)) => Err(ApiError::Unprocessable(why)),
        Err(Refusal::Temporary(why)) => Err(ApiError::Unavailable(why)),
    }
}
