//! Routing and the small handlers (`/health`, `/`, `/metrics`,
//! `/v1/models`); model routes go to [`crate::forward`].

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::activity::Busy;
use crate::app::App;
use crate::body::{full, with_guard, Body};
use crate::config::Format;
use crate::error::ProxyError;
use crate::forward::forward;
use crate::gone::Gone;
use crate::peer::Peer;
use crate::read_on::End;
use crate::req_body::ReqBody;
use crate::request_line::{Abandoned, Line, Resolved};

pub use crate::error::Handled;

/// An HTTP/2 request's `:authority` and Host, held to what an HTTP/1.1
/// Host may be (`serve` checks those): hyper accepts user info there
/// (`a@b`), which RFC 9113 section 8.3.1 forbids.
fn h2_host_valid(req: &Request<ReqBody>) -> bool {
    let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
    let host = req.headers().get(http::header::HOST).map(|h| h.as_bytes());
    authority
        .into_iter()
        .chain(host)
        .all(crate::host::valid_host)
}

/// Route label for metrics (bounded set, never the raw path).
fn route_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/health" => "/health",
        "/metrics" => "/metrics",
        "/v1/models" => "/v1/models",
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/messages" => "/v1/messages",
        _ => "other",
    }
}

/// `handled`, or 503 if the drain's cut comes first: a request still waiting
/// for its upstream's answer, or still sending its body, gets an answer
/// (and a log line) instead of a connection dropped under it.
///
/// An HTTP/1.1 handler runs in its connection's task, and the connection's
/// watchdog polls the connection once the cut comes (`conn.rs`): reading
/// the cut's flag on each poll is then enough. Waiting on the token instead
/// (a waiter registered and removed under its lock) was ~500 instructions a
/// request, of ~42k. An HTTP/2 handler runs in a task of hyper's, polled by
/// nothing at the cut: it waits on the token.
///
/// `handled` is pinned where the caller made it: moving the handler's
/// future (a few KB) into this one cost ~800 instructions of copying.
async fn until_cut<F: Future<Output = Handled>>(
    app: &App,
    id: u64,
    h1: bool,
    mut handled: Pin<&mut F>,
) -> Handled {
    let cut = || {
        tracing::warn!(
            request_id = id,
            "request cut by the drain (its timeout, or a second signal) before its response began"
        );
        Err(ProxyError::ShuttingDown)
    };
    if h1 {
        return poll_fn(|cx| {
            if app.cut.is_cancelled() {
                return Poll::Ready(cut());
            }
            handled.as_mut().poll(cx)
        })
        .await;
    }
    tokio::select! {
        biased;
        h = handled => h,
        () = app.cut.cancelled() => cut(),
    }
}

/// Serve one request; `busy` is held until the response body is dropped so
/// the connection counts as busy while the answer is being sent.
pub async fn handle(
    app: Arc<App>,
    peer: Peer,
    req: Request<ReqBody>,
    busy: Busy,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let id = app.next_id.fetch_add(1, Ordering::Relaxed);
    // Only the path is used: the Host header and the authority of an
    // absolute-form URI never influence where a request goes.
    let route = route_label(req.uri().path());
    let method = req.method().clone();
    let format = if route == "/v1/messages" {
        Format::Anthropic
    } else {
        Format::OpenAi
    };
    let h1 = matches!(req.body(), ReqBody::Left(_));
    let resolved = Resolved::default();
    let line = Line {
        id,
        peer: &peer,
        method: &method,
        route,
        started,
        resolved: &resolved,
    };
    let mut abandoned = Abandoned::new(&line, &app);
    let handled = std::pin::pin!(dispatch(&app, id, &peer, route, req, started, &resolved));
    let handled = until_cut(&app, id, h1, handled).await;
    abandoned.disarm();
    // A client that left before its answer began, whose upstream request
    // went on for the usage: nobody receives this answer.
    let gone = crate::gone::current() == Some(Gone::ReadingOn);
    let (resp, model, read_on) = match handled {
        Ok((resp, model)) => (resp, model, None),
        Err(e) => {
            // An overload is warned of by its limit, once in a while.
            if e.status_code().is_server_error() && !matches!(e, ProxyError::Overloaded) {
                let (model, endpoint) = resolved.names();
                tracing::warn!(request_id = id, model, endpoint, error = %e, fault = ?e.fault(), "request failed");
            }
            let read_on = crate::gone::end_of(&e).filter(|_| gone);
            (e.into_response(format), None, read_on)
        }
    };
    // One info line per request, like nginx's access log: a relayed answer
    // (it has a model) gets its line when its body ends ("completion" or
    // "stream finished", with these fields too); any other request here,
    // as 499 if its client left.
    let status = match model {
        None if gone => 499,
        _ => resp.status().as_u16(),
    };
    app.metrics.request(route, status);
    match model.as_deref() {
        Some(model) => {
            let latency_ms = crate::log_line::millis(started.elapsed());
            tracing::debug!(request_id = id, %peer, %method, route, status, model, latency_ms, "request")
        }
        None => line.write_read_on(status, read_on.map(End::as_str)),
    }
    drop(abandoned);
    Ok(resp.map(|b| with_guard(b, busy)))
}

async fn dispatch<'a>(
    app: &'a Arc<App>,
    id: u64,
    peer: &Peer,
    route: &'static str,
    req: Request<ReqBody>,
    started: Instant,
    resolved: &Resolved<'a>,
) -> Handled {
    if matches!(req.body(), ReqBody::Right(_)) && !h2_host_valid(&req) {
        return Err(ProxyError::BadRequest(
            "the :authority or Host is not a host with an optional port".into(),
        ));
    }
    match (route, req.method()) {
        ("/health", &Method::GET | &Method::HEAD) => Ok((health(app), None)),
        ("/", &Method::GET | &Method::HEAD) => Ok((info(app), None)),
        ("/metrics", &Method::GET) => {
            app.secrets.authenticate(req.headers(), false)?;
            app.metrics
                .set_limits_in_use(app.admission.open(), app.body_budget.in_use());
            let mut r = Response::new(full(app.metrics.render()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            Ok((r, None))
        }
        ("/v1/models", &Method::GET) => {
            app.secrets.authenticate(req.headers(), true)?;
            Ok((models(app), None))
        }
        ("/v1/chat/completions", &Method::POST) => {
            forward(app, id, peer, Format::OpenAi, req, started, resolved).await
        }
        ("/v1/messages", &Method::POST) => {
            forward(app, id, peer, Format::Anthropic, req, started, resolved).await
        }
        ("other", _) => Err(ProxyError::NotFound(route_safe_path(req.uri().path()))),
        ("/health" | "/", _) => Err(ProxyError::MethodNotAllowed("GET, HEAD")),
        ("/metrics" | "/v1/models", _) => Err(ProxyError::MethodNotAllowed("GET")),
        _ => Err(ProxyError::MethodNotAllowed("POST")),
    }
}

/// The path echoed in a 404, truncated so it cannot bloat responses.
fn route_safe_path(p: &str) -> String {
    p.chars().take(128).collect()
}

/// A JSON response with `status`.
pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn health(app: &App) -> Response<Body> {
    let draining = app.draining.load(Ordering::SeqCst);
    let body = json!({
        "status": if draining { "draining" } else { "ok" },
        "port": app.config.port(),
        "uptime_seconds": app.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
        "open_streams": app.metrics.open_stream_count(),
    });
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(status, &body)
}

fn info(app: &App) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "service": "goproxy",
            "version": env!("CARGO_PKG_VERSION"),
            "port": app.config.port(),
            "routes": ["GET /health", "GET /metrics", "GET /v1/models", "POST /v1/chat/completions", "POST /v1/messages"],
        }),
    )
}

fn models(app: &App) -> Response<Body> {
    let data: Vec<Value> = app
        .config
        .models()
        .iter()
        .map(|m| {
            json!({
                "id": &*m.id,
                "object": "model",
                "created": 0,
                "owned_by": m.kind,
                "name": m.name,
                "aliases": m.aliases,
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}
