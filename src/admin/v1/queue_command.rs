//! `POST /api/v1/queue/hold|release|delete|requeue|bounce` (scope `admin`):
//! as `ringmail queue hold|...`. The body selects the messages:
//! `{"ids": [...], "domain": ..., "sender": ..., "campaign": ..., "all":
//! true, "dry_run": true, "reason": ...}` (`reason` for bounce). The answer
//! is the report, given once every shard made its part durable.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;

use crate::admin::context;
use crate::admin::ApiError;
use crate::config::ApiScope;
use crate::model::queue_command::{QueueCommand, QueueCommandReport, QueueOp, QueueSelector};
use crate::sched::queue_admin::QueueAdminError;

/// The request body.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Body {
    ids: Vec<String>,
    domain: Option<String>,
    sender: Option<String>,
    campaign: Option<u64>,
    all: bool,
    dry_run: bool,
    reason: Option<String>,
    site: Option<String>,
    seconds: Option<u64>,
}

/// The operation named in the path.
fn operation(op: &str, reason: Option<String>) -> Result<QueueOp, ApiError> {
    message_operation(op, reason)
}

/// `suspend` (`site`, `seconds`, default an hour) and `resume` (`site`).
fn site_operation(
    op: &str,
    site: Option<String>,
    seconds: Option<u64>,
) -> Result<QueueOp, ApiError> {
    let site = || {
        site.clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ApiError::BadRequest(format!("{op} needs a \"site\"")))
    };
    match op {
        "suspend" => Ok(QueueOp::Suspend {
            site: site()?,
            seconds: seconds.unwrap_or(3600).max(1),
        }),
        "resume" => Ok(QueueOp::Resume { site: site()? }),
        _ => Err(ApiError::NotFound(String::new())),
    }
}

/// The operations on messages.
fn message_operation(op: &str, reason: Option<String>) -> Result<QueueOp, ApiError> {
    Ok(match op {
        "hold" => QueueOp::Hold,
        "release" => QueueOp::Release,
        "delete" => QueueOp::Delete,
        "requeue" => QueueOp::Requeue,
        "bounce" => QueueOp::Bounce {
            reason: reason
                .filter(|r| !r.trim().is_empty())
                .ok_or_else(|| ApiError::BadRequest("bounce needs a \"reason\"".into()))?,
        },
        _ => {
            return Err(ApiError::NotFound(format!(
                "no such operation {op:?} (hold, release, delete, requeue, bounce, suspend, resume)"
            )))
        }
    })
}

/// The handler.
pub(crate) async fn command(
    State(shared): State<context::State>,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<QueueCommandReport>, ApiError> {
    shared.tokens.check(&headers, ApiScope::Admin)?;
    let body: Body = if body.is_empty() {
        Body::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("{e}")))?
    };
    let op = match op.as_str() {
        "suspend" | "resume" => site_operation(&op, body.site.clone(), body.seconds)?,
        _ => operation(&op, body.reason)?,
    };
    let command = QueueCommand {
        op,
        selector: QueueSelector {
            ids: body.ids,
            domain: body.domain,
            sender: body.sender,
            campaign: body.campaign,
            site: body.site.clone(),
            all: body.all,
        },
        dry_run: body.dry_run,
    };
    let Some(admin) = shared.ctx.queue.clone() else {
        return Err(ApiError::Unavailable(
            "queue commands are not available".into(),
        ));
    };
    // Waits for the shards' commits: off the runtime's workers.
    let result = tokio::task::spawn_blocking(move || admin.execute(command))
        .await
        .map_err(|e| ApiError::Unavailable(format!("queue command: {e}")))?;
    match result {
        Ok(report) => match report.error {
            Some(e) => Err(ApiError::Unavailable(e)),
            None => Ok(Json(report)),
        },
        Err(QueueAdminError::Selector(e)) => Err(ApiError::BadRequest(e.to_string())),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_come_from_the_path_and_bounce_needs_a_reason() {
        assert_eq!(operation("hold", None).unwrap(), QueueOp::Hold);
        assert!(matches!(
            operation("bounce", None),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            operation("bounce", Some("  ".into())),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            operation("nuke", None),
            Err(ApiError::NotFound(_))
        ));
    }
}
