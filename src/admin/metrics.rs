//! `GET /metrics`: the Prometheus text exposition of the shards' counters.
//! No token, as Prometheus expects; the server is loopback-only unless
//! `allow_remote` is set.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::context;

/// The exposition, `text/plain; version=0.0.4`: the shards' counters
/// and the campaigns' progress (which reads their results journals, so it
/// runs on a blocking thread).
pub(super) async fn scrape(State(state): State<context::State>) -> impl IntoResponse {
    let text = tokio::task::spawn_blocking(move || {
        let mut text = state.ctx.metrics.render();
        super::campaign_gauges::render(&state, &mut text);
        text
    })
    .await
    .unwrap_or_else(|e| format!("# the scrape failed: {e}\n"));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
