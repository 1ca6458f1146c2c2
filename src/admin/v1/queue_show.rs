//! `GET /api/v1/queue` (every queued message, as `ringmail queue list
//! --json`), `GET /api/v1/queue/shape` (as `ringmail queue shape --json`)
//! and `GET /api/v1/queue/ID` (one message's envelope and recipients):
//! scope `read`. They read the segment files as the offline commands do.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;

use crate::admin::context;
use crate::admin::ApiError;
use crate::config::ApiScope;
use crate::model::QueueId;
use crate::queue::listing::{list_queue, QueuedMessage};
use crate::queue::shape::{self, ShapeBy};

/// `GET /api/v1/queue`.
pub(crate) async fn list(
    State(shared): State<context::State>,
    headers: HeaderMap,
) -> Result<Json<Vec<QueuedMessage>>, ApiError> {
    shared.tokens.check(&headers, ApiScope::Read)?;
    let root = shared.ctx.queue_root.clone();
    let listed = tokio::task::spawn_blocking(move || list_queue(&root))
        .await
        .map_err(|e| ApiError::Unavailable(format!("listing the queue: {e}")))?;
    listed
        .map(Json)
        .map_err(|e| ApiError::Unavailable(format!("listing the queue: {e}")))
}

/// `GET /api/v1/queue/ID`.
pub(crate) async fn show(
    State(shared): State<context::State>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<QueuedMessage>, ApiError> {
    shared.tokens.check(&headers, ApiScope::Read)?;
    let wanted: QueueId = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no queued message {id:?}")))?;
    let root = shared.ctx.queue_root.clone();
    let listed = tokio::task::spawn_blocking(move || list_queue(&root))
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading the queue: {e}")))?
        .map_err(|e| ApiError::Unavailable(format!("reading the queue: {e}")))?;
    let id = wanted.to_string();
    listed
        .into_iter()
        .find(|m| m.queue_id == id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no queued message {id}")))
}

/// The query of `GET /api/v1/queue/shape`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ShapeQuery {
    /// By sender domain.
    sender: bool,
    /// The busiest N domains (0: all).
    top: usize,
    /// Age buckets (default 10).
    buckets: Option<usize>,
}

impl ShapeQuery {
    /// Reads `sender=true&top=N&buckets=N`; anything else is refused.
    fn parse(query: Option<&str>) -> Result<ShapeQuery, ApiError> {
        let mut q = ShapeQuery::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
            let number = || {
                value
                    .parse::<usize>()
                    .map_err(|_| ApiError::BadRequest(format!("{key}: not a number: {value:?}")))
            };
            match key {
                "sender" => q.sender = matches!(value, "true" | "1" | "yes"),
                "top" => q.top = number()?,
                "buckets" => q.buckets = Some(number()?),
                _ => return Err(ApiError::BadRequest(format!("unknown parameter {key:?}"))),
            }
        }
        Ok(q)
    }
}

/// `GET /api/v1/queue/shape`.
pub(crate) async fn shape(
    State(shared): State<context::State>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<shape::Shape>, ApiError> {
    shared.tokens.check(&headers, ApiScope::Read)?;
    let q = ShapeQuery::parse(query.as_deref())?;
    let root = shared.ctx.queue_root.clone();
    let buckets = q.buckets.unwrap_or(10).clamp(1, 30);
    let messages = tokio::task::spawn_blocking(move || list_queue(&root))
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading the queue: {e}")))?
        .map_err(|e| ApiError::Unavailable(format!("reading the queue: {e}")))?;
    let by = if q.sender {
        ShapeBy::Sender
    } else {
        ShapeBy::Recipient
    };
    let now = crate::model::now_micros() / 1_000_000;
    Ok(Json(shape::shape(&messages, by, now, buckets, q.top)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_queries_are_read_strictly() {
        assert_eq!(ShapeQuery::parse(None).unwrap(), ShapeQuery::default());
        let q = ShapeQuery::parse(Some("sender=true&top=5&buckets=4")).unwrap();
        assert!(q.sender);
        assert_eq!((q.top, q.buckets), (5, Some(4)));
        assert!(ShapeQuery::parse(Some("top=x")).is_err());
        assert!(ShapeQuery::parse(Some("color=red")).is_err());
    }
}
