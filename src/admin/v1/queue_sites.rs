//! `GET /api/v1/queue/sites` (scope `read`): the shaping state per site,
//! as `ringmail queue sites --json`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;

use crate::admin::context;
use crate::admin::ApiError;
use crate::config::ApiScope;
use crate::model::site_status::SiteStatus;

/// The handler.
pub(crate) async fn sites(
    State(shared): State<context::State>,
    headers: HeaderMap,
) -> Result<Json<Vec<SiteStatus>>, ApiError> {
    shared.tokens.check(&headers, ApiScope::Read)?;
    let Some(admin) = shared.ctx.queue.as_ref() else {
        return Err(ApiError::Unavailable(
            "queue commands are not available".into(),
        ));
    };
    admin
        .sites()
        .map(Json)
        .map_err(|e| ApiError::Unavailable(e.to_string()))
}
