//! What automation holds for each site now, for `ringmail queue sites`:
//! open connections, a suspension, the factors of a cut and when the
//! state next changes by itself. Times are relative to the `now` the
//! caller passes (the module reads no clock).

use std::sync::Arc;
use std::time::Duration;

use super::site::SiteKey;

/// One site (and sending source) as [`super::Shaper::site_states`] sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteState {
    /// The site.
    pub site: SiteKey,
    /// The sending source (`None`: the system's address).
    pub source: Option<Arc<str>>,
    /// Connections open to it now, over all shards.
    pub connections: u32,
    /// Its `max_connections` now: configured, then automation's cut.
    pub max_connections: u32,
    /// How long it stays suspended, if it is.
    pub suspended_for: Option<Duration>,
    /// Automation's factor on `max_connections` (1: not cut).
    pub connection_factor: f64,
    /// Automation's factor on `message_rate` (1: not cut).
    pub message_rate_factor: f64,
    /// When the state next changes by itself (a suspension ends, a cut is
    /// restored a step), from now.
    pub next_change_in: Option<Duration>,
}
