//! `GET /metrics`: the Prometheus text exposition of the shards' counters.
//! No token, as Prometheus expects; the server is loopback-only unless
//! `allow_remote` is set.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::context;

/// The exposition, `text/plain; version=0.0.4`.
pub(super) async fn scrape(State(state): State<context::State>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.ctx.metrics.render(),
    )
}
