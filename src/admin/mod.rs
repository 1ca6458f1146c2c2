//! The daemon's HTTP server (`[http]`, `docs/HTTP.md`): RFC 8058 one-click
//! unsubscribe with its confirmation page, and the JSON API that sends
//! campaigns and messages and shows and controls campaigns. It runs on a
//! small multi-thread tokio runtime of its own, never on a shard; whatever
//! blocks (taking a campaign, an fdatasync of the suppression list,
//! reading results journals, cleanup) runs on that runtime's blocking
//! pool, and messages reach the shards through the pickup ring like every
//! other intake.
//!
//! # Layout
//!
//! - `http`: binding, the runtime, the routes, start and stop.
//! - `context`: what the handlers share ([`AdminContext`] from the daemon,
//!   the tokens, the limits).
//! - `auth`: bearer tokens and their scopes.
//! - `body`: reading a request body within a limit.
//! - `reply`: [`ApiError`], the JSON error answers.
//! - `unsubscribe`, `unsubscribe_page`: `GET` and `POST /u/TOKEN`.
//! - `v1/`: one file per API endpoint.

mod auth;
mod body;
mod campaign_gauges;
mod context;
pub mod http;
mod metrics;
mod reply;
mod unsubscribe;
mod unsubscribe_page;
mod v1;

pub use context::{AdminContext, MessageIntake};
pub use http::{bind, start, HttpServer};
pub use reply::ApiError;

/// Why the HTTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The listen address could not be bound.
    #[error("[http] listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime or its thread could not be made.
    #[error("HTTP server: {0}")]
    Runtime(std::io::Error),
}

impl AdminError {
    /// True when starting again later may work (the port may be freed;
    /// a missing permission or address will not come by itself).
    pub fn is_transient(&self) -> bool {
        match self {
            AdminError::Bind { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::AddrNotAvailable
            ),
            AdminError::Runtime(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_errors_are_classed() {
        let addr = "127.0.0.1:8025".parse().unwrap();
        let e = |kind| AdminError::Bind {
            addr,
            source: std::io::Error::from(kind),
        };
        assert!(e(std::io::ErrorKind::AddrInUse).is_transient());
        assert!(!e(std::io::ErrorKind::PermissionDenied).is_transient());
        assert!(e(std::io::ErrorKind::AddrInUse)
            .to_string()
            .starts_with("[http] listen 127.0.0.1:8025: "));
    }
}
