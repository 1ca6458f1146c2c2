//! Reading a request body within a limit. A `Content-Length` over the
//! limit is refused before a byte of the body is read (so a client that
//! sent `Expect: 100-continue` gets the 413 instead of a go-ahead); a
//! chunked body is cut off where it passes the limit.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::ApiError;

/// The whole body, at most `limit` bytes.
pub(super) async fn read(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, ApiError> {
    if declared_length(headers).is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Err(e) => Err(ApiError::BadRequest(format!(
            "reading the request body: {e}"
        ))),
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::TooLarge(format!("request body larger than {limit} bytes"))
}

/// The `Content-Length`, when given and a number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn limits_are_kept() {
        let none = HeaderMap::new();
        let got = run(read(&none, Body::from("hello"), 5)).unwrap();
        assert_eq!(&got[..], b"hello");
        assert_eq!(run(read(&none, Body::from("hello!"), 5)), Err(too_large(5)));
        // A declared length over the limit is refused without reading.
        let mut declared = HeaderMap::new();
        declared.insert(header::CONTENT_LENGTH, HeaderValue::from_static("6000"));
        assert_eq!(
            run(read(&declared, Body::from("tiny"), 5000)),
            Err(too_large(5000))
        );
    }
}
