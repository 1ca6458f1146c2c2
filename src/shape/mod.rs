//! Traffic shaping, sans-IO: limits per *site* (recipient domains grouped
//! by their MX hosts) and sending source, from shipped and user rules
//! (`shaping.toml`), adjusted by the receivers' replies, with sending
//! sources, pools and warm-up. See docs/SHAPING.md.
//!
//! - [`site`]: naming a site from a domain's MX hosts (MX roll-up).
//! - [`rules`]: parsing and checking `shaping.toml` (and the shipped
//!   `defaults.toml`).
//! - [`limits`]: the merged limits with the rule behind each value.
//! - [`feedback`]: reply-matching automation and its per-site state
//!   machine (suspend, cut, restore step by step).
//! - [`source`]: sources, pools, weighted round-robin, warm-up counters.
//! - [`rate`], [`slots`]: the token bucket and the connection counts.
//! - [`table`]: the immutable compiled configuration ([`ShapingTable`]).
//! - [`shaper`]: [`Shaper`], the facade the scheduler calls, holding the
//!   changing per-site state with eviction.
//! - [`status`]: what automation holds per site now (`queue sites`).
//! - [`units`]: durations and rates as written in the files.
//!
//! Nothing here opens a socket or reads a clock: callers pass `now`.

pub mod feedback;
pub mod limits;
pub mod rate;
pub mod rules;
pub mod shaper;
pub mod site;
pub mod slots;
pub mod source;
pub mod status;
pub mod table;
pub mod units;

pub use feedback::{Action, AutomationRule, Knob, PathName};
pub use limits::{Limits, Provenance, Sourced};
pub use rules::{Rule, RuleSet, RulesError};
pub use shaper::{Effective, Shaper};
pub use site::{Site, SiteKey, SiteOrigin};
pub use source::{MessageFacts, Source, WarmupDecision};
pub use status::SiteState;
pub use table::{ShapeError, ShapingTable};

#[cfg(test)]
mod tests;
