//! Request handling: the OpenAI and Anthropic completion routes, models,
//! health and the `/__mock/*` admin routes.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};

use crate::{Fault, MockConfig, Recorded, State};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Body = BoxBody<Bytes, BoxError>;

/// Which wire format a completion route speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    OpenAi,
    Anthropic,
}

pub(crate) async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Body>, Infallible> {
    let req = match Received::read(req).await {
        Ok(r) => r,
        Err(response) => return Ok(response),
    };
    // Admin and health traffic is not recorded: healthchecks would drown the
    // requests a test wants to look at.
    if !req.path.starts_with("/__mock/") && req.path != "/health" {
        state.record(Recorded {
            method: req.method.to_string(),
            path: req.path_and_query.clone(),
            headers: req.headers.clone(),
            raw: req.raw.clone(),
        });
    }
    Ok(route(&req, &state).await)
}

/// A request read whole: what the routes and the record need of it.
struct Received {
    method: Method,
    path: String,
    path_and_query: String,
    headers: Vec<(String, String)>,
    raw: Bytes,
    /// The body as JSON; a body that is not JSON as a JSON string.
    body: Value,
}

impl Received {
    /// `Err` is the 400 response for a body that could not be read.
    async fn read(req: Request<Incoming>) -> Result<Self, Response<Body>> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let raw = match req.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return Err(json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": e.to_string()}),
                ))
            }
        };
        let body = body_value(&raw);
        Ok(Self {
            method,
            path,
            path_and_query,
            headers,
            raw,
            body,
        })
    }
}

/// A body as JSON; one that is not JSON as a JSON string; `null` if empty.
pub(crate) fn body_value(raw: &[u8]) -> Value {
    if raw.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned()))
}

/// The public routes; `/__mock/*` goes to [`admin`].
async fn route(req: &Received, state: &State) -> Response<Body> {
    match (&req.method, req.path.as_str()) {
        (&Method::GET, "/health") => json_response(StatusCode::OK, json!({"status": "ok"})),
        (&Method::GET, "/v1/models") => json_response(
            StatusCode::OK,
            json!({"object": "list", "data": [
                {"id": "mock-model", "object": "model", "created": 0, "owned_by": "mock-upstream"}
            ]}),
        ),
        (&Method::POST, "/v1/chat/completions") => {
            completion(Format::OpenAi, &req.body, state).await
        }
        (&Method::POST, "/v1/messages") => completion(Format::Anthropic, &req.body, state).await,
        _ => admin(req, state),
    }
}

/// The test's view of the mock: what it received, and its behaviour.
fn admin(req: &Received, state: &State) -> Response<Body> {
    match (&req.method, req.path.as_str()) {
        (&Method::GET, "/__mock/requests") => {
            let requests = state.recorded();
            json_response(
                StatusCode::OK,
                serde_json::to_value(requests).unwrap_or_default(),
            )
        }
        (&Method::DELETE, "/__mock/requests") => {
            state.lock_requests().clear();
            empty(StatusCode::NO_CONTENT)
        }
        (&Method::GET, "/__mock/config") => {
            let config = state.config();
            json_response(
                StatusCode::OK,
                serde_json::to_value(config).unwrap_or_default(),
            )
        }
        (&Method::PUT, "/__mock/config") => match serde_json::from_slice::<MockConfig>(&req.raw) {
            Ok(config) => {
                *state.lock_config() = config.clone();
                json_response(
                    StatusCode::OK,
                    serde_json::to_value(config).unwrap_or_default(),
                )
            }
            Err(e) => json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("invalid mock config: {e}")}),
            ),
        },
        (method, path) => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": format!("mock-upstream has no route {method} {path}")}),
        ),
    }
}

async fn completion(format: Format, body: &Value, state: &State) -> Response<Body> {
    let config = state.config();
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
        .to_owned();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let prompt_tokens = count_prompt_tokens(body);

    match config.fault {
        Fault::None | Fault::ResetAfterChunks(_) => {}
        Fault::Status(code) => return error_response(format, code),
        Fault::Hang => std::future::pending::<()>().await,
    }
    let reset_after = match config.fault {
        Fault::ResetAfterChunks(k) => Some(k),
        _ => None,
    };

    if !stream {
        // A zero sleep still waits for the timer wheel's next millisecond
        // tick: skip it, so "no delay" answers at once.
        if !config.first_chunk_delay.is_zero() {
            tokio::time::sleep(config.first_chunk_delay).await;
        }
        if reset_after.is_some() {
            return failing_body();
        }
        let value = whole_completion(format, n, &model, prompt_tokens, &config);
        return json_response(StatusCode::OK, value);
    }

    // As OpenAI does: a stream that asked for usage has `"usage": null` in
    // every chunk before the last.
    let null_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let steps = match format {
        Format::OpenAi => openai_events(n, &model, prompt_tokens, &config, reset_after, null_usage),
        Format::Anthropic => anthropic_events(n, &model, prompt_tokens, &config, reset_after),
    };
    let mut response = Response::new(sse_body(steps));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A non-streamed completion of `config.chunks` tokens in `format`.
fn whole_completion(
    format: Format,
    n: u64,
    model: &str,
    prompt_tokens: usize,
    config: &MockConfig,
) -> Value {
    let text: String = (0..config.chunks).map(token).collect();
    match format {
        Format::OpenAi => json!({
            "id": format!("chatcmpl-mock-{n}"),
            "object": "chat.completion",
            "created": unix_now(),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": config.chunks,
                      "total_tokens": prompt_tokens + config.chunks},
        }),
        Format::Anthropic => json!({
            "id": format!("msg_mock_{n}"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": config.chunks},
        }),
    }
}

/// One piece of an SSE body: wait `delay`, then send `data` (or abort the
/// connection when `data` is `None`).
struct Step {
    delay: Duration,
    data: Option<String>,
}

fn openai_events(
    n: u64,
    model: &str,
    prompt_tokens: usize,
    config: &MockConfig,
    reset_after: Option<usize>,
    null_usage: bool,
) -> Vec<Step> {
    let id = format!("chatcmpl-mock-{n}");
    let created = unix_now();
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created,
               "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if null_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut steps = Vec::new();
    for i in 0..config.chunks {
        if reset_after == Some(i) {
            steps.push(cut(i, config));
            return steps;
        }
        let delta = if i == 0 {
            json!({"role": "assistant", "content": token(i)})
        } else {
            json!({"content": token(i)})
        };
        steps.push(Step {
            delay: delay_before(i, config),
            data: Some(data_line(&chunk(delta, Value::Null))),
        });
        if i == config.chunks / 2 {
            // Real providers send comment heartbeats; relays must pass or drop
            // them, never choke on them.
            steps.push(Step {
                delay: Duration::ZERO,
                data: Some(": ping\n\n".to_owned()),
            });
        }
    }
    if reset_after.is_some() {
        steps.push(Step {
            delay: config.chunk_delay,
            data: None,
        });
        return steps;
    }
    let mut last = chunk(json!({}), json!("stop"));
    last["usage"] = json!({"prompt_tokens": prompt_tokens, "completion_tokens": config.chunks,
                           "total_tokens": prompt_tokens + config.chunks});
    steps.push(Step {
        delay: Duration::ZERO,
        data: Some(data_line(&last)),
    });
    steps.push(Step {
        delay: Duration::ZERO,
        data: Some("data: [DONE]\n\n".to_owned()),
    });
    steps
}

fn anthropic_events(
    n: u64,
    model: &str,
    prompt_tokens: usize,
    config: &MockConfig,
    reset_after: Option<usize>,
) -> Vec<Step> {
    let now = |event: &str, data: Value| Step {
        delay: Duration::ZERO,
        data: Some(format!("event: {event}\ndata: {data}\n\n")),
    };
    let mut steps = vec![
        now(
            "message_start",
            json!({"type": "message_start", "message": {
            "id": format!("msg_mock_{n}"), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": 1}}}),
        ),
        now(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        now("ping", json!({"type": "ping"})),
    ];
    for i in 0..config.chunks {
        if reset_after == Some(i) {
            steps.push(cut(i, config));
            return steps;
        }
        let mut step = now(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": token(i)}}),
        );
        step.delay = delay_before(i, config);
        steps.push(step);
    }
    if reset_after.is_some() {
        steps.push(Step {
            delay: config.chunk_delay,
            data: None,
        });
        return steps;
    }
    steps.push(now(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    steps.push(now(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null},
        "usage": {"output_tokens": config.chunks}}),
    ));
    steps.push(now("message_stop", json!({"type": "message_stop"})));
    steps
}

/// The step that resets the connection instead of sending chunk `i`: it
/// comes when that chunk was due, so the chunks before it have left the
/// socket buffer.
fn cut(i: usize, config: &MockConfig) -> Step {
    Step {
        delay: delay_before(i, config),
        data: None,
    }
}

fn delay_before(i: usize, config: &MockConfig) -> Duration {
    if i == 0 {
        config.first_chunk_delay
    } else {
        config.chunk_delay
    }
}

/// The text of content chunk `i`; numbered so tests can check order.
fn token(i: usize) -> String {
    format!("tok{i} ")
}

fn data_line(value: &Value) -> String {
    format!("data: {value}\n\n")
}

fn sse_body(steps: Vec<Step>) -> Body {
    let frames = stream::unfold(steps.into_iter(), |mut steps| async move {
        let step = steps.next()?;
        if !step.delay.is_zero() {
            tokio::time::sleep(step.delay).await;
        }
        let frame = match step.data {
            Some(data) => Ok(Frame::data(Bytes::from(data))),
            // An error from the body makes hyper abort the connection without
            // the terminating chunk: the client sees a truncated stream.
            None => Err::<_, BoxError>("mock fault: connection reset".into()),
        };
        Some((frame, steps))
    });
    BodyExt::boxed(StreamBody::new(frames))
}

fn failing_body() -> Response<Body> {
    let mut response = Response::new(sse_body(vec![Step {
        delay: Duration::ZERO,
        data: None,
    }]));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(format: Format, code: u16) -> Response<Body> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = format!("mock fault: upstream answered {code}");
    let body = match format {
        Format::OpenAi => {
            json!({"error": {"message": message, "type": "mock_fault", "code": code}})
        }
        Format::Anthropic => {
            let kind = match code {
                429 => "rate_limit_error",
                401 => "authentication_error",
                529 => "overloaded_error",
                400..=499 => "invalid_request_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    };
    let mut response = json_response(status, body);
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// A rough, deterministic token count: words in the system prompt and the
/// messages' text.
fn count_prompt_tokens(body: &Value) -> usize {
    fn words(v: &Value) -> usize {
        match v {
            Value::String(s) => s.split_whitespace().count(),
            Value::Array(items) => items.iter().map(words).sum(),
            Value::Object(map) => map
                .iter()
                .filter(|(k, _)| matches!(k.as_str(), "content" | "text" | "system"))
                .map(|(_, v)| words(v))
                .sum(),
            _ => 0,
        }
    }
    let mut total = body.get("messages").map_or(0, words);
    total += body.get("system").map_or(0, words);
    total.max(1)
}

fn json_response(status: StatusCode, value: Value) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed(
        Full::new(Bytes::from(value.to_string())).map_err(|never| match never {}),
    ));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed(
        Full::new(Bytes::new()).map_err(|never| match never {}),
    ));
    *response.status_mut() = status;
    response
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
