//! The state of a shaping site as `ringmail queue sites` and
//! `GET /api/v1/queue/sites` report it: what automation holds for it now.

use serde::{Deserialize, Serialize};

/// One site (and sending source) with state in the running daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteStatus {
    /// The site, as `ringmail shaping show` names it.
    pub site: String,
    /// The sending source (`[[source]]`), if one is used.
    #[serde(default)]
    pub source: Option<String>,
    /// Connections open now, over all shards.
    pub connections: u32,
    /// The most it may open now (configured, then automation's cut).
    pub max_connections: u32,
    /// Until when it is suspended (Unix seconds), if it is.
    #[serde(default)]
    pub suspended_until: Option<i64>,
    /// Automation's factor on its connection limit (1: not cut).
    pub connection_factor: f64,
    /// Automation's factor on its message rate (1: not cut).
    pub message_rate_factor: f64,
    /// When its state next changes by itself (Unix seconds): a suspension
    /// ends or a cut is restored a step.
    #[serde(default)]
    pub next_change: Option<i64>,
}
