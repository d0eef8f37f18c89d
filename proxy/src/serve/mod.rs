//! goproxy's own HTTP/1.1 server side; HTTP/2 clients (prior knowledge)
//! are handed to hyper's HTTP/2 server.
//!
//! Why not hyper's HTTP/1 server: measured with `bench/callgrind`, this
//! side costs ~2k fewer instructions per small request (of ~49k) and ~600
//! fewer per relayed SSE event (of ~2.2k; hyper wrote each chunk size
//! through `core::fmt` and kept a `BufList`), and the 90 KB request
//! reaches the handler as one slice instead of joined frames. Here one
//! task drives the connection: it parses a head (`httparse`, hyper's
//! parser), calls the handler inline, and writes the response with what is
//! ready gathered into one write. The parts that are easy to get wrong are
//! kept small and tested on their own: head framing refuses anything a
//! proxy in front could read another way ([`HeadError`]), bodies are decoded by
//! the same bounded decoder as upstream bodies ([`crate::h1::Decoder`]),
//! and a connection carries another request only after a whole body.
//!
//! Timeouts stay where they were: the connection's watchdog
//! ([`crate::conn`]) bounds a silent or slow head, the request body reader
//! ([`crate::read_body`]) silence in a body, the relay an upstream's.

mod date;
mod h2_reset;
pub mod h2_watch;
mod head;
mod rewind;
mod write;

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use http::{Method, Request};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::activity::Activity;
use crate::app::App;
use crate::error::CLIENT_CLOSED_REQUEST;
use crate::gone::{self, Gone};
use crate::h1::{Decoder, Framing, Step};
use crate::peer::Peer;
use crate::read_on::End;
use crate::routes::handle;

pub use head::HeadError;

use crate::req_body::{H1ReqBody, ReqBody};
use crate::wire::{self, Wire};
use head::{parse_request, Head, Spans};
use rewind::Rewind;
use write::{send, Asked};

/// What an HTTP/2 client sends first (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// First read block of a connection.
const FIRST_READ: usize = 8 * 1024;
/// A connection's response buffer is given back above this size.
const KEEP_OUT: usize = 64 * 1024;
/// How long a closing connection reads (and drops) what the client still
/// sends, so the close does not reset the answer away before it is read.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and dropped while lingering.
const LINGER_BYTES: usize = 256 * 1024;

/// Serve one connection in HTTP/1.1 or HTTP/2 until it ends, or until
/// `activity` is told to close and what is in progress has finished.
pub async fn connection(
    app: Arc<App>,
    h2: Arc<http2::Builder<TokioExecutor>>,
    stream: TcpStream,
    peer: Peer,
    activity: Arc<Activity>,
) {
    let wire = Arc::new(Wire::new(
        stream,
        BytesMut::with_capacity(FIRST_READ),
        app.config.send_timeout,
        peer.clone(),
    ));
    loop {
        let n = {
            let buf = &wire.inbound().buf;
            let n = buf.len().min(H2_PREFACE.len());
            if buf[..n] != H2_PREFACE[..n] {
                break;
            }
            n
        };
        if n == H2_PREFACE.len() {
            let Ok(wire) = Arc::try_unwrap(wire) else {
                return;
            };
            return serve_h2(app, &h2, wire, peer, activity).await;
        }
        if !read_more(&wire, &activity).await {
            return;
        }
    }
    serve_h1(app, wire, peer, activity).await;
}

/// Hand the connection to hyper's HTTP/2 server, preface and all.
async fn serve_h2(
    app: Arc<App>,
    h2: &http2::Builder<TokioExecutor>,
    wire: Wire,
    peer: Peer,
    activity: Arc<Activity>,
) {
    let (stream, read) = wire.into_parts();
    let svc = {
        let activity = activity.clone();
        service_fn(move |req: Request<Incoming>| {
            let req = req.map(ReqBody::Right);
            let activity = activity.clone();
            let handled = handle(app.clone(), peer.clone(), req, activity.begin());
            let handled = h2_reset::KeepOnReset::new(app.clone(), handled);
            async move {
                let Ok(resp) = handled.await;
                Ok::<_, Infallible>(resp.map(|b| h2_watch::watched(b, activity)))
            }
        })
    };
    let conn = h2.serve_connection(TokioIo::new(Rewind::new(read.freeze(), stream)), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "HTTP/2 connection ended with error");
            }
        }
        () = activity.close_requested() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Serve HTTP/1.1 requests one after another on `wire`.
async fn serve_h1(app: Arc<App>, wire: Arc<Wire>, peer: Peer, activity: Arc<Activity>) {
    let mut out = BytesMut::new();
    let mut spans = Spans::new();
    loop {
        let head = match next_head(&wire, &activity, &mut spans).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                log_refused(&app, &peer, e);
                reject(&wire, &mut out, e).await;
                return close(wire).await;
            }
        };
        let busy = activity.begin();
        let Head {
            request,
            framing,
            keep_alive,
            expect_continue,
        } = head;
        {
            let mut inbound = wire.inbound();
            inbound.body = Decoder::new(framing);
            inbound.owe_continue = expect_continue;
        }
        let asked = Asked {
            version: request.version(),
            keep_alive,
            head_only: request.method() == Method::HEAD,
        };
        let limit = app.config.max_body_bytes as u64;
        let budget = app.body_budget.clone();
        let request = request.map(|()| ReqBody::Left(H1ReqBody::new(wire.clone(), limit, budget)));
        // In an `Option`, so a handler whose client left can be dropped
        // here, under the note of why it was not read on (`Pin::set`).
        let mut handled = std::pin::pin!(Some(handle(app.clone(), peer.clone(), request, busy)));
        let Some(Ok(response)) = unless_gone(&wire, running(handled.as_mut())).await else {
            if let Some(end) = after_client_left(&app, running(handled.as_mut())).await {
                gone::with(Gone::Dropped(end), || handled.set(None));
            }
            return;
        };
        // The client left mid-body: its line says 499, nobody is there
        // to read an answer.
        if response.status() == CLIENT_CLOSED_REQUEST {
            return;
        }
        // A body the handler left unread is skipped if it is all here;
        // otherwise the connection cannot carry another request.
        let whole = skip_buffered_body(&wire);
        let asked = Asked {
            keep_alive: asked.keep_alive && whole && !activity.closing(),
            ..asked
        };
        match send(&wire, &mut out, response, asked).await {
            Ok(true) if !activity.closing() => {}
            Ok(_) => return close(wire).await,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "response not sent whole");
                return;
            }
        }
        if out.capacity() > KEEP_OUT {
            out = BytesMut::new();
        }
        if !matches!(framing, Framing::Empty | Framing::Length(..=wire::KEEP_BUF)) {
            wire.shrink();
        }
    }
}

/// `handled`, or `None` once the client closed its connection while
/// waiting (looked at only after the whole request body was read: see
/// [`Wire::poll_gone`]), as nginx stops an upstream request whose client
/// left. Pinned by the caller: the handler's future is a few KB.
async fn unless_gone<F: Future>(wire: &Wire, mut handled: Pin<&mut F>) -> Option<F::Output> {
    poll_fn(|cx| {
        if let Poll::Ready(out) = handled.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        wire.poll_gone(cx).map(|()| None)
    })
    .await
}

/// The client closed (or, over HTTP/2, reset its stream: see
/// [`h2_reset`]) while its answer was prepared. With reading on
/// ([`crate::read_on`]) and a read-on free, the upstream request goes on
/// for up to the read-on limit (and within its own timeouts and the
/// drain), and the answer it brings is read on for its usage: a client
/// cannot leave the operator alone with the upstream's bill for an answer
/// being generated. Otherwise the handler is dropped when this returns:
/// the upstream request is cancelled and the request logged 499.
///
/// Each poll of the handler runs under the note that its client left
/// ([`gone`]), so its line says 499 (and how reading on ended), not the
/// status of an answer nobody receives. Returns why the handler, still
/// unfinished, is to be dropped: the caller drops it under that note.
async fn after_client_left<F: Future + ?Sized>(app: &App, mut handled: Pin<&mut F>) -> Option<End> {
    if app.read_on.limit.is_zero() {
        return None;
    }
    if app.cut.is_cancelled() {
        return Some(End::DrainCut);
    }
    let Some(permit) = app.read_on.permit() else {
        return Some(End::TooMany);
    };
    let polled = poll_fn(|cx| gone::with(Gone::ReadingOn, || handled.as_mut().poll(cx)));
    let answer = tokio::time::timeout(app.read_on.limit, polled).await;
    // Its read-on (when the answer is dropped) takes a permit of its own.
    drop(permit);
    answer.err().map(|_| End::TimeLimit)
}

/// The handler of `slot`, not dropped yet.
fn running<F>(slot: Pin<&mut Option<F>>) -> Pin<&mut F> {
    slot.as_pin_mut()
        .expect("the handler is dropped only after its last poll")
}

/// The next request head: `None` when the client closed between requests
/// or the connection was told to close while waiting for one.
async fn next_head(
    wire: &Wire,
    activity: &Activity,
    spans: &mut Spans,
) -> Result<Option<Head>, HeadError> {
    // Marked only when a head takes more than one read (rare), so the
    // usual request costs nothing here.
    let mut begun = false;
    loop {
        {
            let mut inbound = wire.inbound();
            let parsed = parse_request(&mut inbound.buf, spans);
            if begun && !matches!(parsed, Ok(None)) {
                activity.set_head_begun(false);
            }
            if let Some(head) = parsed? {
                return Ok(Some(head));
            }
            if !begun && !inbound.buf.is_empty() {
                begun = true;
                activity.set_head_begun(true);
            }
        }
        if activity.closing() || !read_more(wire, activity).await {
            return Ok(None);
        }
    }
}

/// Read more into the buffer: `false` at end of stream, on a read error,
/// or when the connection is told to close first.
async fn read_more(wire: &Wire, activity: &Activity) -> bool {
    let read = poll_fn(|cx| wire.inbound().poll_fill(cx));
    tokio::select! {
        biased;
        r = read => matches!(r, Ok(n) if n > 0),
        () = activity.close_requested() => false,
    }
}

/// Consume what is buffered of a body the handler did not read; whether
/// the body is now whole.
fn skip_buffered_body(wire: &Wire) -> bool {
    let mut inbound = wire.inbound();
    let inbound = &mut *inbound;
    inbound.owe_continue = false;
    loop {
        match inbound.body.decode(&mut inbound.buf) {
            Ok(Step::Data(_)) => {}
            Ok(Step::Done) => return true,
            Ok(Step::NeedMore) | Err(_) => return inbound.body.is_done(),
        }
    }
}

/// A refused head's line at INFO and its count under the route label
/// `refused_head`: the 400s an attacker or a broken client causes show in
/// the log and in `/metrics`, as they do in nginx's access log.
fn log_refused(app: &App, peer: &Peer, e: HeadError) {
    let id = app
        .next_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let status = e.status().as_u16();
    app.metrics.request("refused_head", status);
    tracing::info!(request_id = id, %peer, status, reason = %e, "request head refused");
}

/// Answer a refused head with its status and nothing else.
async fn reject(wire: &Wire, out: &mut BytesMut, e: HeadError) {
    let status = e.status();
    out.clear();
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    date::put_date(out);
    out.put_slice(b"content-length: 0\r\nconnection: close\r\n\r\n");
    let _ = wire.write_all(&mut [std::io::IoSlice::new(out)]).await;
}

/// Close after a whole response: say goodbye with a FIN, and read what the
/// client still sends for a moment, so that unread request bytes do not
/// make the kernel reset the connection before the answer is read.
async fn close(wire: Arc<Wire>) {
    let Ok(wire) = Arc::try_unwrap(wire) else {
        return;
    };
    let (mut stream, _) = wire.into_parts();
    if stream.shutdown().await.is_err() {
        return;
    }
    let linger = async {
        let mut dropped = 0;
        let mut sink = [0u8; 8192];
        while dropped < LINGER_BYTES {
            match tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, linger).await;
}
