//! The webhook poster: a thread that reads the events files from its
//! durable cursor and POSTs them in batches (a JSON array, at most
//! `webhook_batch` events) to `webhook_url`, retrying with exponential
//! backoff (1 s doubling to 60 s) until the receiver answers 2xx; only
//! then is the cursor moved past the batch and stored. Events written
//! while the receiver (or the daemon) was down are sent later, in order.
//! Delivery is at least once: a batch whose answer was lost is sent again,
//! and receivers de-duplicate by the events' `id`.
//!
//! HTTP/1.1 with hyper's client over a tokio socket, on a current-thread
//! runtime of the poster's own (the MTA-STS fetch's pattern, without TLS:
//! `http://` only for now), one connection per batch.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;

use super::cursor::{Cursor, CursorError, CursorFile};
use super::files::EventFiles;
use super::sink::EventStats;
use super::tail::Tail;
use crate::obs::Throttle;

/// The most bytes of events read for one request (a batch stops short of
/// `webhook_batch` events rather than exceed it).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// Why the poster could not start, or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// `webhook_url` cannot be used.
    #[error("webhook_url {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// The cursor could not be read or stored.
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// The events files could not be read, or the thread not started.
    #[error("{path}: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// No TCP connection to the receiver.
    #[error("connect to {authority}: {source}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// Why.
        source: io::Error,
    },
    /// The HTTP exchange failed (connection closed, bad response).
    #[error("HTTP with {authority}: {detail}")]
    Http {
        /// `host:port`.
        authority: String,
        /// What went wrong.
        detail: String,
    },
    /// The receiver answered something other than 2xx.
    #[error("{authority} answered HTTP status {status}: {text:?}")]
    Status {
        /// `host:port`.
        authority: String,
        /// The status code.
        status: u16,
        /// The start of the response body.
        text: String,
    },
    /// No answer within `webhook_timeout`.
    #[error("{authority} did not answer within {}s", timeout.as_secs_f32())]
    Timeout {
        /// `host:port`.
        authority: String,
        /// The limit.
        timeout: Duration,
    },
}

impl WebhookError {
    /// True when retrying may help. The poster retries every failed
    /// request anyway (at least once means it cannot skip a batch); a
    /// request error that is not transient (a 4xx other than 408 and 429,
    /// a bad URL, a damaged cursor) needs the operator.
    pub fn is_transient(&self) -> bool {
        match self {
            WebhookError::BadUrl { .. } => false,
            WebhookError::Cursor(e) => e.is_transient(),
            WebhookError::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            WebhookError::Io { .. }
            | WebhookError::Connect { .. }
            | WebhookError::Http { .. }
            | WebhookError::Timeout { .. } => true,
        }
    }
}

/// Where to POST: parsed from `webhook_url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP address (without brackets), to connect to.
    pub host: String,
    /// TCP port (80 when the URL gives none).
    pub port: u16,
    /// The `Host` header: `host[:port]` as in the URL.
    pub authority: String,
    /// Path and query (`/` when the URL gives none).
    pub path: String,
}

/// Parses and checks a webhook URL: `http://host[:port][/path]`.
pub fn parse_url(url: &str) -> Result<Target, WebhookError> {
    let bad = |reason| WebhookError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "https is not supported yet; use http:// (to a local receiver or a TLS proxy)",
            ))
        }
        _ => return Err(bad("must start with http://")),
    }
    let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad(
            "user and password in the URL are not supported; use webhook_token",
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    Ok(Target {
        host: host.to_string(),
        port: authority.port_u16().unwrap_or(80),
        authority: authority.as_str().to_string(),
        path: uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string()),
    })
}

/// How the poster posts.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// `http://host[:port]/path`.
    pub url: String,
    /// Most events per request.
    pub batch: usize,
    /// Sent as `Authorization: Bearer TOKEN` when set.
    pub token: Option<String>,
    /// Limit for one request (connect, send, answer).
    pub timeout: Duration,
    /// The durable cursor (`events.jsonl.cursor` beside the events file).
    pub cursor: PathBuf,
    /// First wait after a failed request; doubled after each further one.
    pub initial_backoff: Duration,
    /// Longest wait between tries.
    pub max_backoff: Duration,
    /// How often an idle poster looks for new events when not woken.
    pub idle_poll: Duration,
}

impl WebhookOptions {
    /// Options with the defaults: 100 events a batch, 10 s timeout,
    /// backoff 1 s to 60 s.
    pub fn new(url: impl Into<String>, cursor: impl Into<PathBuf>) -> WebhookOptions {
        WebhookOptions {
            url: url.into(),
            batch: 100,
            token: None,
            timeout: Duration::from_secs(10),
            cursor: cursor.into(),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            idle_poll: Duration::from_secs(1),
        }
    }
}

/// The running poster thread.
#[derive(Debug)]
pub struct Poster {
    handle: JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl Poster {
    /// Starts posting the events of `file` (the active events file) from
    /// the cursor in `options.cursor`; without one, from the oldest events
    /// file on disk. `wake` (from the writer) says new events were written.
    pub fn start(
        file: &Path,
        options: WebhookOptions,
        stats: Arc<EventStats>,
        wake: Option<Receiver<()>>,
    ) -> Result<Poster, WebhookError> {
        let target = parse_url(&options.url)?;
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| WebhookError::Io { op, path, source }
        };
        let files = EventFiles::new(file).map_err(io("open", file))?;
        let cursor_file = CursorFile::new(&options.cursor);
        let start = match cursor_file.load()? {
            Some(c) => c,
            None => Cursor {
                generation: files
                    .rotated_generations()
                    .map_err(io("list", files.dir()))?
                    .first()
                    .copied()
                    .unwrap_or(1),
                offset: 0,
            },
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("start the webhook runtime", file))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut job = Job {
            tail: Tail::new(files, start),
            cursor_file,
            target,
            options,
            stats,
            stop: Arc::clone(&stop),
            wake,
            runtime,
            failing: Throttle::new(crate::obs::throttle::REPEAT_EVERY),
        };
        let handle = std::thread::Builder::new()
            .name("webhook".into())
            .spawn(move || job.run())
            .map_err(io("start the webhook thread", file))?;
        Ok(Poster { handle, stop })
    }

    /// Stops the thread: a request in progress is abandoned (its batch is
    /// sent again by the next start). Waits at most `limit`; returns
    /// whether the thread ended.
    pub fn stop(self, limit: Duration) -> bool {
        self.stop.store(true, Ordering::Release);
        let deadline = Instant::now() + limit;
        while !self.handle.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.handle.join().is_ok()
    }
}

/// The poster thread's state.
struct Job {
    tail: Tail,
    cursor_file: CursorFile,
    target: Target,
    options: WebhookOptions,
    stats: Arc<EventStats>,
    stop: Arc<AtomicBool>,
    wake: Option<Receiver<()>>,
    runtime: tokio::runtime::Runtime,
    failing: Throttle,
}

impl Job {
    fn run(&mut self) {
        while !self.stopped() {
            let batch = match self.tail.next_batch(self.options.batch, MAX_BATCH_BYTES) {
                Ok(Some(b)) => b,
                Ok(None) => {
                    self.idle();
                    continue;
                }
                Err(e) => {
                    if let Some(held) = self.failing.hit() {
                        tracing::error!(target: "events", "webhook: cannot read the events files: {e} ({held} more since the last line)");
                    }
                    self.nap(self.options.max_backoff.min(Duration::from_secs(5)));
                    continue;
                }
            };
            let body = Bytes::from(batch.body);
            let mut backoff = self.options.initial_backoff;
            let mut failures = 0u64;
            loop {
                let sent = self.runtime.block_on(post(
                    &self.target,
                    self.options.token.as_deref(),
                    body.clone(),
                    self.options.timeout,
                ));
                match sent {
                    Ok(()) => break,
                    Err(e) => {
                        failures += 1;
                        self.stats.post_failures.fetch_add(1, Ordering::Relaxed);
                        if let Some(held) = self.failing.hit() {
                            tracing::warn!(target: "events", "webhook: {e}; retrying in {:?} ({held} more failures since the last line)", backoff);
                        }
                        if !self.nap(backoff) {
                            return;
                        }
                        backoff = (backoff * 2).min(self.options.max_backoff);
                    }
                }
            }
            if failures > 0 {
                self.failing.reset();
                tracing::info!(target: "events", "webhook: {} accepts events again after {failures} failed requests", self.target.authority);
            }
            self.stats
                .posted
                .fetch_add(batch.count as u64, Ordering::Relaxed);
            if let Err(e) = self.cursor_file.store(batch.end) {
                // The batch is sent; at the next start it is sent again.
                tracing::warn!(target: "events", "webhook: {e}; the cursor stays in memory");
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Waits for the writer's poke or `idle_poll`.
    fn idle(&self) {
        let woken = match &self.wake {
            Some(w) => !matches!(
                w.recv_timeout(self.options.idle_poll),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected)
            ),
            None => false,
        };
        if !woken {
            // No writer to poke us (none given, or it has stopped): poll.
            self.nap(self.options.idle_poll);
        }
    }

    /// Sleeps `d` in short steps; false when stopped meanwhile.
    fn nap(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }
}

/// One POST of `body` to `target`, within `timeout`; `Ok` on a 2xx.
async fn post(
    target: &Target,
    token: Option<&str>,
    body: Bytes,
    timeout: Duration,
) -> Result<(), WebhookError> {
    match tokio::time::timeout(timeout, post_once(target, token, body)).await {
        Ok(r) => r,
        Err(_) => Err(WebhookError::Timeout {
            authority: target.authority.clone(),
            timeout,
        }),
    }
}

async fn post_once(target: &Target, token: Option<&str>, body: Bytes) -> Result<(), WebhookError> {
    let authority = &target.authority;
    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|source| WebhookError::Connect {
            authority: authority.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let http = |e: &dyn std::fmt::Display| WebhookError::Http {
        authority: authority.clone(),
        detail: e.to_string(),
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
            .await
            .map_err(|e| http(&e))?;
    let mut request = hyper::Request::post(target.path.as_str())
        .header(HOST, authority.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("ringmail/", env!("CARGO_PKG_VERSION")))
        .header(CONNECTION, "close");
    if let Some(t) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let request = request.body(Full::new(body)).map_err(|e| http(&e))?;
    let exchange = async {
        let resp = sender.send_request(request).await.map_err(|e| http(&e))?;
        let status = resp.status();
        // The body is read (up to 1 KiB) to say what a refusal said, and
        // so the connection ends cleanly.
        let text = Limited::new(resp.into_body(), 1024)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(WebhookError::Status {
                authority: authority.clone(),
                status: status.as_u16(),
                text: text.chars().take(200).collect(),
            })
        }
    };
    // The connection is driven beside the exchange (as in the MTA-STS
    // fetch); when it ends first, the exchange finishes from what it read.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_and_checked() {
        let t = parse_url("http://127.0.0.1:8080/hooks/ringmail?x=1").unwrap();
        assert_eq!(
            t,
            Target {
                host: "127.0.0.1".into(),
                port: 8080,
                authority: "127.0.0.1:8080".into(),
                path: "/hooks/ringmail?x=1".into(),
            }
        );
        let t = parse_url("http://[::1]/").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 80, "/"));
        let t = parse_url("http://app.example").unwrap();
        assert_eq!(t.path, "/");
        for (bad, why) in [
            ("https://app.example/", "https is not supported"),
            ("ftp://app.example/", "http://"),
            ("/just/a/path", "http://"),
            ("http://user:pw@app.example/", "webhook_token"),
            ("not a url", "not a URL"),
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
            assert!(!e.is_transient());
        }
    }

    #[test]
    fn status_errors_say_whether_retrying_helps() {
        let s = |status| WebhookError::Status {
            authority: "a".into(),
            status,
            text: String::new(),
        };
        assert!(s(503).is_transient());
        assert!(s(429).is_transient());
        assert!(!s(400).is_transient());
        assert!(!s(401).is_transient());
    }
}
