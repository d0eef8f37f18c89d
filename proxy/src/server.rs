//! The HTTP server: accept loop, graceful drain, routing and handlers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::auth::{redact, Secrets};
use crate::config::{Config, Format};
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::stream::{relay, RelayContext};
use crate::upstream::{rewrite_body, Upstream};

/// Response body type: full bodies and SSE relays alike.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The upstream HTTP client could not be built.
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The listener's address could not be read.
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// Shared state of one server.
#[derive(Debug)]
struct App {
    config: Config,
    secrets: Secrets,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    started: Instant,
    draining: AtomicBool,
    next_id: AtomicU64,
}

/// Serve on `listener` until `shutdown` resolves, then drain: `/health`
/// answers 503, the listener closes, open requests and streams get up to
/// `drain_timeout` to finish. Keys are read from the env vars the config names.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let secrets = Secrets::from_env(&config);
    serve(listener, config, secrets, shutdown).await
}

/// [`run`] with explicit secrets (tests and embedding).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    secrets: Secrets,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let local = listener.local_addr()?;
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
            tracing::warn!(endpoint = %e.name, env = ?e.api_key_env, "no upstream key set for endpoint");
        }
    }
    let app = Arc::new(App {
        upstream: Upstream::new(&config, &secrets)?,
        config,
        secrets,
        metrics: Arc::new(Metrics::default()),
        started: Instant::now(),
        draining: AtomicBool::new(false),
        next_id: AtomicU64::new(1),
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's header-read timer also runs while a keep-alive connection is
    // idle, and defaults to 30 s: shorter than nginx's 60 s keepalive_timeout,
    // so nginx would reuse connections we are closing and answer 502. Set it
    // to idle_timeout (75 s by default, validated > 60 s).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.idle_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();

    tracing::info!(addr = %local, port = app.config.port(), config = %app.config.source(), "goproxy listening");
    tokio::pin!(shutdown);
    // After the shutdown signal, keep accepting until this deadline with
    // /health at 503 (drain_readiness_delay_secs, default 0).
    let mut stop_at: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            _ = &mut shutdown, if stop_at.is_none() => {
                app.draining.store(true, Ordering::SeqCst);
                tracing::info!(
                    readiness_delay_secs = app.config.drain_readiness_delay.as_secs_f64(),
                    "shutdown requested: /health now answers 503"
                );
                stop_at = Some(Box::pin(tokio::time::sleep(app.config.drain_readiness_delay)));
            }
            _ = async { stop_at.as_mut().expect("guarded").await }, if stop_at.is_some() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let svc = service_fn(move |req| handle(app.clone(), peer, req));
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with error");
                    }
                });
            }
        }
    }

    app.draining.store(true, Ordering::SeqCst);
    drop(listener);
    let open = graceful.count();
    tracing::info!(
        open_connections = open,
        open_streams = app.metrics.open_stream_count(),
        drain_timeout_secs = app.config.drain_timeout.as_secs_f64(),
        "listener closed, draining"
    );
    match tokio::time::timeout(app.config.drain_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!(
            open_streams = app.metrics.open_stream_count(),
            "drain timeout reached; dropping remaining connections"
        ),
    }
    Ok(())
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

async fn handle(
    app: Arc<App>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let id = app.next_id.fetch_add(1, Ordering::Relaxed);
    // Only the path is used: the Host header and the authority of an
    // absolute-form URI never influence where a request goes.
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let route = route_label(&path);
    let format = if route == "/v1/messages" {
        Format::Anthropic
    } else {
        Format::OpenAi
    };
    let result = dispatch(&app, id, route, req, started).await;
    let (resp, model) = match result {
        Ok(x) => x,
        Err(e) => {
            let level_warn = e.status_code().is_server_error();
            if level_warn {
                tracing::warn!(request_id = id, error = %e, fault = ?e.fault(), "request failed");
            }
            (e.into_response(format), None)
        }
    };
    app.metrics.request(route, resp.status().as_u16());
    tracing::info!(
        request_id = id,
        %peer,
        %method,
        route,
        status = resp.status().as_u16(),
        model = model.as_deref().unwrap_or(""),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(resp)
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

type Handled = Result<(Response<Body>, Option<String>), ProxyError>;

async fn dispatch(
    app: &Arc<App>,
    id: u64,
    route: &'static str,
    req: Request<Incoming>,
    started: Instant,
) -> Handled {
    let method = req.method();
    match (route, method) {
        ("/health", &Method::GET) => Ok((health(app), None)),
        ("/", &Method::GET) => Ok((info(app), None)),
        ("/metrics", &Method::GET) => {
            app.secrets.authenticate(req.headers(), false)?;
            let mut r = Response::new(full(app.metrics.render()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Ok((r, None))
        }
        ("/v1/models", &Method::GET) => {
            app.secrets.authenticate(req.headers(), true)?;
            Ok((models(app), None))
        }
        ("/v1/chat/completions", &Method::POST) => {
            proxy(app, id, Format::OpenAi, req, started).await
        }
        ("/v1/messages", &Method::POST) => proxy(app, id, Format::Anthropic, req, started).await,
        ("other", _) => Err(ProxyError::NotFound(route_safe_path(req.uri().path()))),
        _ => Err(ProxyError::MethodNotAllowed),
    }
}

/// The path echoed in a 404, truncated so it cannot bloat responses.
fn route_safe_path(p: &str) -> String {
    p.chars().take(128).collect()
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
                "id": m.id,
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

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ProxyError> {
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(ProxyError::PayloadTooLarge(limit));
        }
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ProxyError::PayloadTooLarge(limit))
        }
        Err(_) => Err(ProxyError::BadRequest(
            "could not read the request body".into(),
        )),
    }
}

async fn proxy(
    app: &Arc<App>,
    id: u64,
    format: Format,
    req: Request<Incoming>,
    started: Instant,
) -> Handled {
    app.secrets
        .authenticate(req.headers(), format == Format::Anthropic)?;
    let headers = req.headers().clone();
    let raw = read_body(req, app.config.max_body_bytes).await?;
    let mut body: serde_json::Map<String, Value> = serde_json::from_slice(&raw)
        .map_err(|e| ProxyError::BadRequest(format!("request body is not a JSON object: {e}")))?;
    let model_id = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(ProxyError::BadRequest(
                "missing string field \"model\"".into(),
            ))
        }
    };
    let model = app
        .config
        .model(&model_id)
        .ok_or_else(|| ProxyError::UnknownModel(model_id.chars().take(128).collect()))?;
    let endpoint =
        app.config
            .endpoint_for(model, format)
            .ok_or_else(|| ProxyError::ModelNotOnRoute {
                model: model.id.clone(),
                format,
            })?;
    let upstream_model = rewrite_body(
        &mut body,
        model,
        format,
        app.config.system_prompt.as_deref(),
    );
    let out = Bytes::from(serde_json::to_vec(&body).expect("a JSON map serializes"));

    let sent = Instant::now();
    let resp = app.upstream.send(endpoint, &headers, out).await?;
    app.metrics.upstream_latency(sent.elapsed());
    let status = resp.status();

    if !status.is_success() {
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let text = tokio::time::timeout(app.config.stream_idle_timeout, resp.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let snippet: String = String::from_utf8_lossy(&text).chars().take(512).collect();
        tracing::warn!(
            request_id = id,
            endpoint = %endpoint.name,
            upstream_status = status.as_u16(),
            body = %redact(&snippet, &app.secrets),
            "upstream error"
        );
        return Err(if status == 429 {
            ProxyError::RateLimited {
                retry_after_secs: retry_after.unwrap_or(app.config.key_cooldown.as_secs().max(1)),
            }
        } else {
            ProxyError::UpstreamStatus(status.as_u16())
        });
    }

    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if is_sse {
        let ctx = RelayContext {
            request_id: id,
            model: model.id.clone(),
            upstream_model,
            endpoint: endpoint.name.clone(),
            format,
            prices: model.prices,
            idle_timeout: app.config.stream_idle_timeout,
            heartbeat: app.config.sse_heartbeat,
            metrics: app.metrics.clone(),
            started,
        };
        let mut r = Response::new(relay(resp, ctx));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        return Ok((r, Some(model.id.clone())));
    }

    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = match tokio::time::timeout(app.config.stream_idle_timeout, resp.bytes()).await {
        Err(_) => return Err(ProxyError::UpstreamTimeout),
        Ok(Err(e)) => {
            tracing::warn!(request_id = id, error = %e.without_url(), "upstream body failed");
            return Err(ProxyError::UpstreamFailed);
        }
        Ok(Ok(b)) => b,
    };
    let mut usage = crate::usage::Usage::default();
    if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
        usage.observe(&v);
    }
    let cost = usage.cost(&model.prices);
    app.metrics.usage(&model.id, &usage, cost);
    tracing::info!(
        request_id = id,
        model = %model.id,
        upstream_model = %upstream_model,
        endpoint = %endpoint.name,
        input_tokens = usage.input,
        output_tokens = usage.output,
        cache_write_tokens = usage.cache_write,
        cache_read_tokens = usage.cache_read,
        cost,
        "completion"
    );
    let mut r = Response::new(full(bytes));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/json")),
    );
    Ok((r, Some(model.id.clone())))
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
