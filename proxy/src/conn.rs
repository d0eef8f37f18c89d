//! One client connection: served by [`mod@crate::serve`] (HTTP/1.1 itself,
//! HTTP/2 through hyper), watched so that no state lasts forever.
//!
//! Neither side bounds every state itself: a head that never ends, the
//! HTTP/1-or-2 sniff, an HTTP/2 connection that sent only its preface, and
//! an idle HTTP/2 connection have no timeout of their own (hyper's HTTP/2
//! keep-alive pings notice dead peers). So every connection counts the requests it has
//! in progress ([`Busy`] guards, held until the response body is dropped),
//! and a watchdog closes it when nothing is in progress for too long:
//! `request_read_timeout` before the first request, `idle_timeout` after one.
//! Request bodies and upstream bodies have their own silence timeouts, so a
//! request in progress cannot hang forever either.
//!
//! On drain a connection with nothing in progress is closed at once (a silent
//! client never holds up shutdown); a busy one is told to finish its
//! requests and close. When the drain timeout cuts open streams, the
//! connection gets [`CUT_GRACE`] to flush the error event, then is dropped.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{timeout, Instant};

use crate::activity::Activity;
use crate::alarm::Alarm;
use crate::app::App;
use crate::peer::Peer;

pub use crate::activity::Busy;

/// How long a closing connection may take to say goodbye (flush the last
/// response, send HTTP/2 GOAWAY) before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long a connection whose stream the drain cut may flush the error event.
pub const CUT_GRACE: Duration = Duration::from_secs(2);
/// HTTP/2 keep-alive ping interval and ack timeout: a dead peer holding an
/// open stream is noticed within 40 s.
const H2_PING: Duration = Duration::from_secs(20);

/// hyper's HTTP/2 connection builder with the keep-alive pings goproxy
/// relies on. (HTTP/1.1 has no timer of its own: the watchdog in `serve`
/// bounds a slow or silent head, request_read_timeout then idle_timeout,
/// never shorter than nginx's 60 s keepalive_timeout.)
pub fn builder() -> http2::Builder<TokioExecutor> {
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .keep_alive_interval(H2_PING)
        .keep_alive_timeout(H2_PING);
    b
}

/// Why a connection is being closed by us.
#[derive(Debug, Clone, Copy)]
enum Close {
    Idle,
    /// Idle while the server is at `max_connections` ([`crate::shed`]).
    Shed,
    Drain,
    /// An HTTP/2 body waited `send_timeout` for window the client never gave.
    StoppedReading,
}

/// When the watchdog looks next, or why the connection is to close now.
/// Idle: at the idle deadline (`request_read_timeout` before the first
/// request, `idle_timeout` after one). Busy: an HTTP/2 body may be waiting
/// on the client's window ([`crate::serve::h2_watch`]); that is looked at
/// at least every half `send_timeout`, so a wait is noticed between one
/// and one and a half send timeouts.
fn watch(activity: &Activity, app: &App, now: Instant) -> Result<Instant, Close> {
    let cfg = &app.config;
    let look = now + cfg.send_timeout / 2;
    match activity.idle_deadline(cfg.request_read_timeout, cfg.idle_timeout) {
        Some(d) if d <= now => Err(Close::Idle),
        Some(d) => Ok(d.min(look)),
        None => match activity.oldest_wait_on_client() {
            Some(t) if now >= t + cfg.send_timeout => Err(Close::StoppedReading),
            Some(t) => Ok((t + cfg.send_timeout).min(look)),
            None => Ok(look),
        },
    }
}

/// Serve one accepted connection until it ends or is closed, holding its
/// `max_connections` slot.
pub async fn serve(
    app: Arc<App>,
    builder: Arc<http2::Builder<TokioExecutor>>,
    stream: TcpStream,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Activity::new();
    let peer = Peer::new(peer);
    let conn =
        crate::serve::connection(app.clone(), builder, stream, peer.clone(), activity.clone());
    tokio::pin!(conn);
    // One timer, armed at the next look (`watch`) and looked at only when
    // it fires: per request nothing is polled besides the connection (a
    // Notify and a fresh timer per wake-up were a measurable share of an
    // SSE event's cost). A deadline that moved on since re-arms it.
    // An `Alarm`, not a bare `Sleep`: the sleep is not polled again on
    // every wake of the connection (~120 instructions per SSE event).
    let now = Instant::now();
    let mut timer = Alarm::at(watch(&activity, &app, now).unwrap_or(now));
    let mut drain = crate::cancel::Cancelled::new(app.drain.clone());
    let mut shed = crate::cancel::Cancelled::new(app.admission.shed().next());
    let why = loop {
        tokio::select! {
            biased;
            () = conn.as_mut() => return,
            () = poll_fn(|cx| timer.poll(cx)) => match watch(&activity, &app, Instant::now()) {
                Ok(at) => timer.reset(at),
                Err(why) => break why,
            },
            _ = &mut drain => break Close::Drain,
            _ = &mut shed => {
                // Not one whose next request head is arriving: closing it
                // would lose that request.
                let idle = activity.idle_since().filter(|_| !activity.head_begun());
                if idle.is_some_and(|t| t + crate::shed::MIN_IDLE <= Instant::now()) {
                    break Close::Shed;
                }
                shed = crate::cancel::Cancelled::new(app.admission.shed().next());
            }
        }
    };
    tracing::debug!(%peer, reason = ?why, busy = activity.busy(), "closing connection");
    if let Close::StoppedReading = why {
        // Its streams wait on window that will not come: dropping the
        // connection ends them (their lines say why), a goodbye would not.
        peer.set_stopped_reading();
        return;
    }
    activity.request_close();
    // Busy: let its requests finish (the drain timeout bounds them via the
    // cut). Then, or if idle from the start, a short bounded goodbye.
    while activity.busy() {
        let changed = activity.changed.notified();
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = changed => {}
            _ = app.cut.cancelled() => {
                let _ = timeout(CUT_GRACE, conn.as_mut()).await;
                return;
            }
        }
    }
    let _ = timeout(CLOSE_GRACE, conn.as_mut()).await;
}
