//! [`ApiError`]: every way an API request fails, with its HTTP status;
//! answered as `{"error": "..."}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::ApiScope;

/// A failed API request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer` token, or one that is not configured.
    #[error("missing or unknown bearer token")]
    Unauthorized,
    /// The token lacks the scope the endpoint needs.
    #[error("this token does not have the {0} scope")]
    Forbidden(ApiScope),
    /// The request cannot be read (bad JSON, wrong fields).
    #[error("{0}")]
    BadRequest(String),
    /// The body (or the message in it) is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// Understood but refused for good (a bad template or list, a message
    /// cleanup refuses): nothing was queued.
    #[error("{0}")]
    Unprocessable(String),
    /// No such campaign (or route).
    #[error("{0}")]
    NotFound(String),
    /// Not now (the daemon is stopping, too busy, the queue cannot be
    /// written): nothing was queued; try again.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// True when the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Unavailable(_))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        let mut response = (self.status(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"ringmail\""),
                );
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_classes() {
        assert_eq!(ApiError::Unauthorized.status(), 401);
        assert_eq!(ApiError::Forbidden(ApiScope::Admin).status(), 403);
        assert_eq!(
            ApiError::Forbidden(ApiScope::Admin).to_string(),
            "this token does not have the admin scope"
        );
        assert_eq!(ApiError::TooLarge("big".into()).status(), 413);
        assert_eq!(ApiError::Unprocessable("x".into()).status(), 422);
        assert!(ApiError::Unavailable("x".into()).is_transient());
        assert!(!ApiError::BadRequest("x".into()).is_transient());
        let r = ApiError::Unauthorized.into_response();
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            HeaderValue::from_static("application/json")
        );
    }
}
