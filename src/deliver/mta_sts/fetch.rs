//! Fetching a policy: `GET https://mta-sts.DOMAIN/.well-known/mta-sts.txt`
//! (RFC 8461 section 3.3) with hyper's HTTP/1.1 client over tokio-rustls.
//!
//! The connection goes to the addresses the delivery resolver gave for
//! `mta-sts.DOMAIN`; the certificate must verify for that name (webpki,
//! the system roots plus `smtp_tls_CAfile`). Redirects are not followed,
//! only `200` with `Content-Type: text/plain` counts, the body is held to
//! [`MAX_POLICY_BYTES`], and the whole fetch to one timeout. It runs as a
//! task of the shard's runtime on tokio sockets (which work inside
//! tokio-uring's runtime too), so the shard's other work goes on meanwhile.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

use crate::deliver::io_text;

/// The path of the policy file.
pub const WELL_KNOWN: &str = "/.well-known/mta-sts.txt";

/// The largest policy accepted (RFC 8461 suggests 64 KiB).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// At most this many addresses of the policy host are tried.
const MAX_ADDRESSES: usize = 3;

/// Why a policy could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The policy host name is not a valid TLS server name.
    #[error("bad policy host name {0:?}")]
    BadName(String),
    /// The policy host has no address.
    #[error("no address for {0}")]
    NoAddress(String),
    /// TCP connect failed.
    #[error("connect to {host}[{}]:{}: {}", addr.ip(), addr.port(), io_text(source))]
    Connect {
        /// The policy host.
        host: String,
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS handshake failed (an untrusted or misnamed certificate ...).
    #[error("TLS handshake with {host}[{}]:{}: {}", addr.ip(), addr.port(), io_text(source))]
    Tls {
        /// The policy host.
        host: String,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP with {host}: {detail}")]
    Http {
        /// The policy host.
        host: String,
        /// What went wrong.
        detail: String,
    },
    /// Not `200 OK` (a redirect is not followed).
    #[error("{host} answered HTTP status {status}")]
    Status {
        /// The policy host.
        host: String,
        /// The status code.
        status: u16,
    },
    /// The body is not `text/plain`.
    #[error("{host} served content type {content_type:?}, not text/plain")]
    ContentType {
        /// The policy host.
        host: String,
        /// What it said (empty when none).
        content_type: String,
    },
    /// The body is larger than [`MAX_POLICY_BYTES`].
    #[error("{0} served a policy larger than 64 KiB")]
    TooLarge(String),
    /// The body is not UTF-8.
    #[error("{0} served a policy that is not UTF-8 text")]
    NotText(String),
    /// The fetch took longer than the timeout.
    #[error("fetching the policy from {host} timed out after {}s", timeout.as_secs())]
    Timeout {
        /// The policy host.
        host: String,
        /// The limit.
        timeout: Duration,
    },
}

impl FetchError {
    /// Every fetch failure may go away (server fixed, network back); a
    /// sender keeps using its cached policy meanwhile.
    pub fn is_transient(&self) -> bool {
        true
    }
}

/// Where and how to fetch one policy.
#[derive(Clone)]
pub struct FetchRequest<'a> {
    /// The policy host, `mta-sts.DOMAIN`.
    pub host: &'a str,
    /// Its addresses, in the order to try.
    pub addrs: &'a [IpAddr],
    /// The HTTPS port: 443 except in tests (`smtp_mta_sts_port`).
    pub port: u16,
    /// The TLS client configuration (verifying).
    pub tls: Arc<rustls::ClientConfig>,
    /// Limit for the whole fetch.
    pub timeout: Duration,
}

/// Fetches the policy text from the first address that answers.
pub async fn fetch(req: &FetchRequest<'_>) -> Result<String, FetchError> {
    let host = req.host;
    match tokio::time::timeout(req.timeout, fetch_any(req)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout {
            host: host.to_string(),
            timeout: req.timeout,
        }),
    }
}

async fn fetch_any(req: &FetchRequest<'_>) -> Result<String, FetchError> {
    let name = ServerName::try_from(req.host.to_string())
        .map_err(|_| FetchError::BadName(req.host.to_string()))?;
    let mut last = FetchError::NoAddress(req.host.to_string());
    for ip in req.addrs.iter().take(MAX_ADDRESSES) {
        let addr = SocketAddr::new(*ip, req.port);
        match fetch_from(req, name.clone(), addr).await {
            Ok(text) => return Ok(text),
            // Only a failure to reach the server moves on to the next
            // address; an answer (even a bad one) is the answer.
            Err(e @ (FetchError::Connect { .. } | FetchError::Tls { .. })) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

async fn fetch_from(
    req: &FetchRequest<'_>,
    name: ServerName<'static>,
    addr: SocketAddr,
) -> Result<String, FetchError> {
    let host = req.host.to_string();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| FetchError::Connect {
            host: host.clone(),
            addr,
            source,
        })?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(&req.tls))
        .connect(name, tcp)
        .await
        .map_err(|source| FetchError::Tls {
            host: host.clone(),
            addr,
            source,
        })?;
    let http = |e: &dyn std::fmt::Display| FetchError::Http {
        host: host.clone(),
        detail: e.to_string(),
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
            .await
            .map_err(|e| http(&e))?;
    let host_header = if req.port == 443 {
        host.clone()
    } else {
        format!("{host}:{}", req.port)
    };
    let request = hyper::Request::get(WELL_KNOWN)
        .header(HOST, host_header)
        .header(USER_AGENT, concat!("ringmail/", env!("CARGO_PKG_VERSION")))
        .header(CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| http(&e))?;
    let exchange = async {
        let resp = sender.send_request(request).await.map_err(|e| http(&e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status {
                host: host.clone(),
                status,
            });
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !is_text_plain(&content_type) {
            return Err(FetchError::ContentType {
                host: host.clone(),
                content_type,
            });
        }
        let body = Limited::new(resp.into_body(), MAX_POLICY_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge(host.clone())
                } else {
                    http(&e)
                }
            })?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| FetchError::NotText(host.clone()))
    };
    // The connection is driven beside the exchange; when it ends first
    // (the server closed after the response), the body is already
    // buffered and the exchange finishes from it.
    tokio::pin!(exchange);
    tokio::pin!(conn);
    tokio::select! {
        biased;
        r = &mut exchange => r,
        c = &mut conn => match c {
            Ok(()) => exchange.await,
            Err(e) => Err(http(&e)),
        },
    }
}

/// `text/plain`, with or without parameters, in any case.
fn is_text_plain(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/plain"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert!(is_text_plain("text/plain"));
        assert!(is_text_plain("Text/Plain; charset=utf-8"));
        assert!(!is_text_plain("text/html"));
        assert!(!is_text_plain(""));
        assert!(!is_text_plain("text/plainx"));
    }
}
