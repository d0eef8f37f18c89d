//! The HTTP server: accept loop and graceful drain; [`run`].
//!
//! Connections are served by [`crate::conn`], requests routed by
//! [`crate::routes`].

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::auth::Secrets;
use crate::cancel::Cut;
use crate::config::Config;
use crate::conn::{CLOSE_GRACE, CUT_GRACE};
use crate::shutdown::Shutdown;

pub use crate::app::App;
pub use crate::routes::handle;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The upstream HTTP client could not be built.
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(#[from] rustls::Error),
    /// The listener's address could not be read.
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// Serve on `listener` until `shutdown` asks for the drain: `/health`
/// answers 503, the listener closes, open requests and streams get up to
/// `drain_timeout` to finish, or until `shutdown` asks for the cut. Keys are read from the env vars the config
/// names. `threads` event loops serve ([`serve_on`]).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: Shutdown,
    threads: usize,
) -> Result<(), RunError> {
    let secrets = Secrets::from_env(&config);
    for p in Secrets::env_problems(&config) {
        tracing::warn!("environment: {p}");
    }
    if let Some(limit) = crate::fd_limit::raise() {
        if let Some(p) = crate::fd_limit::shortfall(limit, config.max_connections) {
            tracing::warn!("environment: {p}");
        }
    }
    serve_on(listener, config, secrets, shutdown, threads).await
}

/// [`run`] with explicit secrets (tests and embedding), on the caller's
/// runtime alone.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    secrets: Secrets,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    serve_on(listener, config, secrets, shutdown, 1).await
}

/// [`serve`] with `threads` event loops: the caller's runtime and
/// `threads - 1` more ([`crate::workers`]), all accepting on `listener`
/// and all drained together.
pub async fn serve_on(
    listener: TcpListener,
    config: Config,
    secrets: Secrets,
    shutdown: Shutdown,
    threads: usize,
) -> Result<(), RunError> {
    let local = listener.local_addr()?;
    log_startup(&config, &secrets);
    let app = Arc::new(App::new(config, secrets)?);
    let tracker = app.tasks.clone();
    // The other loops accept until this one stops (after the readiness
    // delay), and keep their runtimes for their connections until the
    // drain is over.
    let accepting = Cut::new();
    let drained = Cut::new();
    let workers = {
        let (app, tracker) = (app.clone(), tracker.clone());
        let (accepting, drained) = (accepting.clone(), drained.clone());
        crate::workers::spawn(threads.saturating_sub(1), &listener, move |l| async move {
            let stop = (accepting.cancelled(), std::future::pending());
            accept_until(&app, &l, &tracker, stop, Duration::ZERO).await;
            drop(l);
            drained.cancelled().await;
        })
    };
    tracing::info!(addr = %local, port = app.config.port(), config = %app.config.source(), threads = workers.len() + 1, "goproxy listening");
    let delay = app.config.drain_readiness_delay;
    let stop = (shutdown.drain_asked(), shutdown.cut_asked());
    accept_until(&app, &listener, &tracker, stop, delay).await;
    accepting.cancel();
    drop(listener);
    drain(&app, &tracker, &shutdown).await;
    drained.cancel();
    workers.join().await;
    Ok(())
}

fn log_startup(config: &Config, secrets: &Secrets) {
    for w in &config.warnings {
        tracing::warn!(config = %config.source(), "{w}");
    }
    if !secrets.has_client_keys() {
        tracing::error!(
            env = ?config.client_api_keys_env,
            "NO CLIENT API KEY CONFIGURED: model routes and /metrics will answer 503 until one of these env vars is set"
        );
    }
    for e in config.endpoints() {
        if secrets.endpoint_keys(&e.name).is_empty() && !e.api_key_env.is_empty() {
            // Names only: the config refuses values that look like keys.
            tracing::warn!(endpoint = %e.name, env = ?e.api_key_env, "no upstream key set for endpoint");
        }
    }
}

/// Accept connections until the first of `stop` resolves and `delay` (the
/// first loop's is `drain_readiness_delay_secs`, default 0) has passed with
/// `/health` at 503, or until the second of `stop` (the cut) resolves.
async fn accept_until(
    app: &Arc<App>,
    listener: &TcpListener,
    tracker: &TaskTracker,
    stop: (impl Future<Output = ()>, impl Future<Output = ()>),
    delay: Duration,
) {
    let builder = Arc::new(crate::conn::builder());
    let (shutdown, cut) = stop;
    tokio::pin!(shutdown, cut);
    let mut stop_at: Option<Instant> = None;
    loop {
        tokio::select! {
            () = &mut cut => return,
            _ = &mut shutdown, if stop_at.is_none() => {
                if !app.draining.swap(true, Ordering::SeqCst) {
                    tracing::info!(
                        readiness_delay_secs = delay.as_secs_f64(),
                        "shutdown requested: /health now answers 503"
                    );
                }
                stop_at = Some(Instant::now() + delay);
            }
            _ = tokio::time::sleep_until(stop_at.unwrap_or_else(Instant::now)), if stop_at.is_some() => return,
            accepted = app.admission.admit(listener) => match accepted {
                Ok((permit, stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    bound_unsent(&stream);
                    // The permit goes into the connection's own future: a
                    // wrapping `async` block that awaited it laid the
                    // connection's future out twice (+10 KB a connection,
                    // +10 MB at 1024 streams).
                    let served = crate::conn::serve(app.clone(), builder.clone(), stream, peer, permit);
                    tracker.spawn(served);
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    app.admission.accept_failed(&e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Unsent bytes a client connection may queue in the kernel: the socket
/// reports writable again once under half of it.
const NOTSENT_LOWAT: u32 = 16 * 1024;

/// Bound what waits unsent in the kernel for a client (`TCP_NOTSENT_LOWAT`;
/// Linux, ignored elsewhere). Without it a slow but steady reader sees no
/// write progress until a third of a multi-megabyte send buffer drained:
/// at 200 KB/s that was longer than a 3 s `send_timeout_secs`. With it,
/// a write can go on every ~8-16 KB the client reads, so the send timeout
/// cuts only a client that reads (almost) nothing, and an SSE stream's
/// backlog stays in goproxy, not minutes deep in the kernel.
fn bound_unsent(stream: &tokio::net::TcpStream) {
    let _ = socket2::SockRef::from(stream).set_tcp_notsent_lowat(NOTSENT_LOWAT);
}

/// Close idle connections now, let busy ones finish for `drain_timeout`
/// (or until `shutdown` asks for the cut), then cut what is left (streams
/// get an error event) and return.
async fn drain(app: &App, tracker: &TaskTracker, shutdown: &Shutdown) {
    app.draining.store(true, Ordering::SeqCst);
    tracker.close();
    tracing::info!(
        open_tasks = tracker.len(),
        open_streams = app.metrics.open_stream_count(),
        drain_timeout_secs = app.config.drain_timeout.as_secs_f64(),
        "listener closed, draining"
    );
    app.drain.cancel();
    tokio::select! {
        r = tokio::time::timeout(app.config.drain_timeout, tracker.wait()) => {
            if r.is_ok() {
                tracing::info!("drained; exiting");
                return;
            }
            tracing::warn!(
                open_streams = app.metrics.open_stream_count(),
                "drain timeout reached; cutting open streams with an error event"
            );
        }
        () = shutdown.cut_asked() => tracing::warn!(
            open_tasks = tracker.len(),
            open_streams = app.metrics.open_stream_count(),
            "cut asked for: cutting open streams with an error event"
        ),
    }
    app.cut.cancel();
    // Every connection task ends within CUT_GRACE (or CLOSE_GRACE) of the cut.
    let bound = CUT_GRACE + CLOSE_GRACE;
    if tokio::time::timeout(bound, tracker.wait()).await.is_err() {
        tracing::warn!(
            open_tasks = tracker.len(),
            "connections still open after the cut; exiting anyway"
        );
    }
}

/// Why the listen socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Someone else holds the port.
    #[error("port {port} on {host} is already in use")]
    InUse {
        /// Port from the config.
        port: u16,
        /// Host from the config.
        host: std::net::IpAddr,
    },
    /// Any other bind failure (permissions, bad address).
    #[error("cannot listen on {host}:{port}: {source}")]
    Other {
        /// Port from the config.
        port: u16,
        /// Host from the config.
        host: std::net::IpAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Bind the configured `host:port`.
pub async fn bind(config: &Config) -> Result<TcpListener, BindError> {
    let (host, port) = (config.host(), config.port());
    TcpListener::bind((host, port)).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            BindError::InUse { port, host }
        } else {
            BindError::Other { port, host, source }
        }
    })
}

#[cfg(test)]
mod tests {
    /// Client sockets get the unsent bound (a slow but steady reader then
    /// makes write progress every ~8-16 KB it reads; measured: a 200 KB/s
    /// reader was cut at a 3 s send timeout without it, and kept with it).
    #[tokio::test]
    async fn client_sockets_bound_their_unsent_bytes() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = l.accept().await.unwrap();
        super::bound_unsent(&s);
        let lowat = socket2::SockRef::from(&s).tcp_notsent_lowat().unwrap();
        assert_eq!(lowat, super::NOTSENT_LOWAT);
    }
}
