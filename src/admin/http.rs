//! The server itself: the listening socket (bound early, so a port in use
//! stops the daemon's start before anything else runs), a multi-thread
//! tokio runtime of [`WORKERS`] threads named `http` on a thread of the
//! same name, the routes, and a stop that lets requests in progress finish
//! for up to [`GRACE`].

use std::future::IntoFuture;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;

use crate::config::HttpConfig;

use super::context::{self, Shared};
use super::v1::{
    campaigns_control, campaigns_create, campaigns_show, messages_create, queue_command,
    queue_show, queue_sites,
};
use super::{unsubscribe, AdminContext, AdminError, ApiError};

/// Worker threads of the runtime (requests are short; whatever blocks
/// goes to the blocking pool).
const WORKERS: usize = 2;

/// Most threads of the blocking pool (campaigns being taken, suppression
/// list writes, cleanup, results journals being read).
const MAX_BLOCKING: usize = 32;

/// How long requests in progress may run on after a stop.
pub const GRACE: Duration = Duration::from_secs(3);

/// Binds `addr` (the daemon does this before it starts the shards).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, AdminError> {
    let listener = TcpListener::bind(addr).map_err(|source| AdminError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| AdminError::Bind { addr, source })?;
    Ok(listener)
}

/// The running server.
pub struct HttpServer {
    local_addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in progress finish (up to
    /// [`GRACE`]), and returns when the server's threads are gone.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `listener` (from [`bind`]) with `ctx`, under `config`.
pub fn start(
    listener: TcpListener,
    config: &HttpConfig,
    ctx: AdminContext,
) -> Result<HttpServer, AdminError> {
    let local_addr = listener.local_addr().map_err(AdminError::Runtime)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .max_blocking_threads(MAX_BLOCKING)
        .thread_name("http")
        .enable_all()
        .build()
        .map_err(AdminError::Runtime)?;
    let listener = {
        let _in_runtime = runtime.enter();
        tokio::net::TcpListener::from_std(listener).map_err(AdminError::Runtime)?
    };
    let app = router(Arc::new(Shared::new(ctx, config)));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            runtime.block_on(serve(listener, app, stopped));
            runtime.shutdown_timeout(Duration::from_millis(500));
        })
        .map_err(AdminError::Runtime)?;
    tracing::info!(target: "http", "listening on http://{local_addr}");
    Ok(HttpServer {
        local_addr,
        stop,
        thread: Some(thread),
    })
}

/// Serves until `stopped` turns true, then for up to [`GRACE`] more.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut signal = stopped.clone();
    let graceful = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = signal.wait_for(|s| *s).await;
    });
    let mut server = tokio::spawn(graceful.into_future());
    tokio::select! {
        r = &mut server => report(r),
        _ = stopped.wait_for(|s| *s) => match tokio::time::timeout(GRACE, &mut server).await {
            Ok(r) => report(r),
            Err(_) => tracing::warn!(target: "http", "requests still in progress {} s after the stop: cut off", GRACE.as_secs()),
        },
    }
}

fn report(r: Result<std::io::Result<()>, tokio::task::JoinError>) {
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(target: "http", "server stopped: {e}"),
        Err(e) => tracing::error!(target: "http", "server task failed: {e}"),
    }
}

/// The routes.
fn router(state: context::State) -> Router {
    Router::new()
        .route("/u/{token}", get(unsubscribe::page).post(unsubscribe::post))
        .route(
            "/api/v1/campaigns",
            get(campaigns_show::list).post(campaigns_create::create),
        )
        .route("/api/v1/campaigns/{id}", get(campaigns_show::show))
        .route(
            "/api/v1/campaigns/{id}/{op}",
            post(campaigns_control::control),
        )
        .route("/api/v1/messages", post(messages_create::create))
        .route("/api/v1/queue", get(queue_show::list))
        .route("/api/v1/queue/shape", get(queue_show::shape))
        .route("/api/v1/queue/sites", get(queue_sites::sites))
        .route(
            "/api/v1/queue/{id}",
            get(queue_show::show).post(queue_command::command),
        )
        .route("/metrics", get(super::metrics::scrape))
        .fallback(no_route)
        .with_state(state)
}

async fn no_route() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}
