//! The JSON API, version 1: one file per endpoint.
//!
//! - `campaigns_create`: `POST /api/v1/campaigns` (scope `inject`).
//! - `campaigns_show`: `GET /api/v1/campaigns[/ID]` (scope `read`).
//! - `campaigns_control`: `POST /api/v1/campaigns/ID/pause|resume|cancel`
//!   (scope `admin`).
//! - `messages_create`: `POST /api/v1/messages` (scope `inject`).
//! - `queue_show`: `GET /api/v1/queue`, `/api/v1/queue/shape`,
//!   `/api/v1/queue/ID` (scope `read`).
//! - `queue_sites`: `GET /api/v1/queue/sites` (scope `read`).
//! - `queue_command`: `POST /api/v1/queue/hold|release|delete|requeue|bounce`
//!   (scope `admin`).

pub(super) mod campaigns_control;
pub(super) mod campaigns_create;
pub(super) mod campaigns_show;
pub(super) mod messages_create;
pub(super) mod queue_command;
pub(super) mod queue_show;
pub(super) mod queue_sites;

use super::ApiError;

/// A campaign ID from the path; one that is not a number names no
/// campaign.
fn campaign_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::NotFound(format!("no campaign {text:?}")))
}

/// The answer for an unknown campaign.
fn no_campaign(id: u64) -> ApiError {
    ApiError::NotFound(format!("no campaign {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_numbers() {
        assert_eq!(campaign_id("1796592262929378"), Ok(1796592262929378));
        assert!(matches!(campaign_id("12x"), Err(ApiError::NotFound(_))));
        assert!(matches!(campaign_id("-1"), Err(ApiError::NotFound(_))));
    }
}
