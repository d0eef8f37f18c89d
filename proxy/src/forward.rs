//! The model routes: read the client body, rename the model, send it
//! upstream, and hand the answer back as it arrives (SSE through
//! [`crate::stream`], any other body through [`crate::passthrough`]).

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, Version};
use hyper::body::Body as _;
use tokio::time::{timeout_at, Instant};

use crate::app::App;
use crate::body::{next_data, Body};
use crate::config::{Endpoint, Format, Model};
use crate::error::Handled;
use crate::error::ProxyError;
use crate::passthrough::passthrough;
use crate::peer::Peer;
use crate::read_body::read_body;
use crate::redact::{redact_prefix, ERROR_LOG_CHARS};
use crate::rename::ClientBody;
use crate::req_body::ReqBody;
use crate::request_line::Resolved;
use crate::stream::{relay, RelayContext};
use crate::upstream_body::UpstreamBody;

/// Most bytes of an upstream error body read for the log (the rest is
/// never read: a hostile upstream cannot make goproxy buffer it).
const ERROR_PREFIX_BYTES: usize = 8 * 1024;
/// Longest an upstream error body's prefix is waited for, in all (the
/// client's error answer waits on it; the body is only logged).
const ERROR_BODY_TIME: Duration = Duration::from_secs(5);

/// POST a model route upstream and answer with what comes back.
pub async fn forward<'a>(
    app: &'a Arc<App>,
    id: u64,
    peer: &Peer,
    format: Format,
    req: Request<ReqBody>,
    started: Instant,
    resolved: &Resolved<'a>,
) -> Handled {
    app.secrets
        .authenticate(req.headers(), format == Format::Anthropic)?;
    let (parts, body) = req.into_parts();
    // `_held` keeps the body's bytes in the budget until the upstream
    // answered: by then the body (and its rewrite) was sent and dropped.
    let (raw, _held) = read_body(
        body,
        &parts.headers,
        &app.config,
        &app.body_budget,
        &app.drain,
    )
    .await?;
    let client_body = ClientBody::parse(&raw)?;
    let (model, endpoint) = route(app, format, &client_body.model)?;
    resolved.set(model, endpoint);
    let (out, upstream_model) =
        client_body.rewrite(model, format, app.config.system_prompt.as_deref())?;

    let sent = Instant::now();
    let resp = app.upstream.send(endpoint, &parts.headers, out).await?;
    app.metrics.upstream_latency(sent.elapsed());
    if !resp.status().is_success() {
        return Err(upstream_error(app, id, model, endpoint, resp).await);
    }
    if let Some(coding) = content_coding(resp.headers()) {
        // Asked for identity: a coded answer cannot have its usage read or
        // events added, and relaying it without its header (as before) gave
        // the client bytes it could not read.
        tracing::warn!(request_id = id, model = %model.id, endpoint = %endpoint.name, coding = %coding, "upstream answered with a content or transfer coding though asked for identity; answered 502");
        return Err(ProxyError::UpstreamFailed);
    }
    let ctx = RelayContext {
        request_id: id,
        peer: peer.clone(),
        status: resp.status().as_u16(),
        head_ms: crate::log_line::millis(started.elapsed()),
        model: model.id.clone(),
        upstream_model,
        endpoint: endpoint.name.clone(),
        format,
        prices: model.prices,
        idle_timeout: app.config.stream_idle_timeout,
        heartbeat: app.config.sse_heartbeat,
        metrics: app.metrics.clone(),
        started,
        cut: app.cut.clone(),
        read_on: app.read_on.clone(),
        secrets: app.secrets.clone(),
    };
    let r = if is_sse(resp.headers()) {
        sse_response(relay(resp, ctx))
    } else {
        passthrough_response(resp, ctx)
    };
    Ok((r, Some(model.id.clone())))
}

/// The model the body asks for and the endpoint serving it on this route.
fn route<'a>(
    app: &'a App,
    format: Format,
    model_id: &str,
) -> Result<(&'a Model, &'a Endpoint), ProxyError> {
    let model = app
        .config
        .model(model_id)
        .ok_or_else(|| ProxyError::UnknownModel(model_id.chars().take(128).collect()))?;
    let endpoint =
        app.config
            .endpoint_for(model, format)
            .ok_or_else(|| ProxyError::ModelNotOnRoute {
                model: model.id.to_string(),
                format,
            })?;
    Ok((model, endpoint))
}

/// Log a bounded, redacted prefix of an upstream error body and map the
/// status. The rest of the body is never read.
async fn upstream_error(
    app: &App,
    id: u64,
    model: &Model,
    endpoint: &Endpoint,
    resp: Response<UpstreamBody>,
) -> ProxyError {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (prefix, cut) = read_prefix(resp, ERROR_PREFIX_BYTES, app.config.stream_idle_timeout).await;
    tracing::warn!(
        request_id = id,
        model = %model.id,
        endpoint = %endpoint.name,
        upstream_status = status.as_u16(),
        body = %redact_prefix(&prefix, cut, ERROR_LOG_CHARS, &app.secrets),
        "upstream error"
    );
    if status == 429 {
        ProxyError::RateLimited {
            retry_after_secs: retry_after.unwrap_or(app.config.key_cooldown.as_secs().max(1)),
        }
    } else {
        ProxyError::UpstreamStatus(status.as_u16())
    }
}

/// Up to `limit` bytes of a body, with `silence` allowed between chunks;
/// also whether the body may go on past them (then the caller must not
/// trust the last token to be whole).
async fn read_prefix(
    resp: Response<UpstreamBody>,
    limit: usize,
    silence: Duration,
) -> (Vec<u8>, bool) {
    let mut body = resp.into_body();
    let declared = body.size_hint().exact();
    let mut buf = Vec::new();
    // The client waits for its error answer while this is read: the whole
    // prefix gets ERROR_BODY_TIME at most, however the upstream trickles it.
    let deadline = Instant::now() + ERROR_BODY_TIME;
    loop {
        let until = deadline.min(Instant::now() + silence);
        let chunk = match timeout_at(until, next_data(&mut body)).await {
            Ok(Some(Ok(chunk))) => chunk,
            // The body's clean end: what was read is all of it.
            Ok(None) => return (buf, false),
            // Timed out, or broke: the last token may be a key cut short.
            Ok(Some(Err(_))) | Err(_) => return (buf, true),
        };
        let room = limit - buf.len();
        if chunk.len() >= room {
            buf.extend_from_slice(&chunk[..room]);
            let whole = chunk.len() == room && declared == Some(limit as u64);
            return (buf, !whole);
        }
        buf.extend_from_slice(&chunk);
    }
}

/// The answer's content or transfer codings, unless none but `identity`
/// (and `chunked`, a framing goproxy decodes): every field of each is
/// looked at (`identity` then `gzip` in two fields is still gzip). Shown
/// escaped: it is the upstream's text.
fn content_coding(headers: &HeaderMap) -> Option<String> {
    let fields =
        |name: &'static HeaderName| headers.get_all(name).into_iter().map(move |v| (name, v));
    let mut coded = fields(&header::CONTENT_ENCODING)
        .chain(fields(&header::TRANSFER_ENCODING))
        .filter(|(name, v)| {
            v.as_bytes().split(|&b| b == b',').any(|c| {
                let c = c.trim_ascii();
                let chunked =
                    *name == header::TRANSFER_ENCODING && c.eq_ignore_ascii_case(b"chunked");
                !c.is_empty() && !chunked && !c.eq_ignore_ascii_case(b"identity")
            })
        });
    let (name, v) = coded.next()?;
    let text = String::from_utf8_lossy(v.as_bytes())
        .escape_default()
        .to_string();
    Some(format!("{name}: {text}"))
}

/// Whether the answer is an SSE stream (media types are case-insensitive:
/// `Text/Event-Stream` is one too, RFC 9110 section 8.3.1).
fn is_sse(headers: &HeaderMap) -> bool {
    const SSE: &[u8] = b"text/event-stream";
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes().trim_ascii_start();
        v.get(..SSE.len())
            .is_some_and(|t| t.eq_ignore_ascii_case(SSE))
            && matches!(v.get(SSE.len()), None | Some(b';' | b' ' | b'\t'))
    })
}

fn sse_response(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// The client's answer to a non-SSE upstream answer: its status, its
/// content type and the length of its body, nothing else of its head.
fn passthrough_response(resp: Response<UpstreamBody>, ctx: RelayContext) -> Response<Body> {
    let (mut head, body) = resp.into_parts();
    // Taken, not cloned: a clone of a value parsed from the upstream's
    // head is an allocation (its bytes become shared).
    let content_type = head
        .headers
        .remove(header::CONTENT_TYPE)
        .unwrap_or(HeaderValue::from_static("application/json"));
    // The length of the body as framed (never the upstream's header as
    // sent: beside `transfer-encoding`, on a 204, or as a list it does not
    // describe the body). Passing it on lets the client tell a cut body
    // from a whole one.
    let length = body.size_hint().exact();
    // The upstream's head is emptied and reused, as a new one would be
    // (its header map's room kept: a new map is two allocations).
    head.headers.clear();
    head.extensions.clear();
    head.version = Version::default();
    head.headers.insert(header::CONTENT_TYPE, content_type);
    // Never on a 204 or 304 (RFC 9110 sections 8.6 and 15.3.5): they have
    // no body to measure.
    let bodiless = matches!(head.status.as_u16(), 204 | 304);
    if let Some(len) = length.filter(|_| !bodiless) {
        head.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Response::from_parts(head, passthrough(body, ctx))
}
