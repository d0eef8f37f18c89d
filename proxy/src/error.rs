//! The one error type of a request, and the one place that maps it to an
//! HTTP status and renders it in the caller's wire format.
//!
//! Messages here are what clients see: they never contain keys, upstream
//! URLs or upstream error text (that is only logged, truncated and redacted).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;
use std::sync::Arc;

use crate::body::{full, Body};
use crate::config::Format;

/// A response, and the public model id for the request log line.
pub type Handled = Result<(Response<Body>, Option<Arc<str>>), ProxyError>;

/// Who is at fault for an error (after pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client sent something wrong.
    Downstream,
    /// The upstream failed or misbehaved.
    Upstream,
    /// goproxy itself (config, state).
    Internal,
}

/// nginx's 499: never sent (the client has gone), only logged and counted.
pub const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => panic!("499 is a status code"),
};

/// Everything that can end a request with an error response.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Missing or wrong client key.
    #[error("invalid API key")]
    Unauthorized,
    /// No client key is configured, so model routes are refused.
    #[error("the proxy has no client API key configured; refusing to serve")]
    NoClientKeys,
    /// No such route.
    #[error("no route for {0}")]
    NotFound(String),
    /// Route exists, method does not; the methods it has (`Allow`).
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// Body is not the JSON we need.
    #[error("{0}")]
    BadRequest(String),
    /// Body larger than `max_body_bytes`.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Model id/alias unknown.
    #[error("model {} does not exist", json_quoted(.0))]
    UnknownModel(String),
    /// Model known but not served in this route's format.
    #[error("model {} is not served on the {format} route", json_quoted(model))]
    ModelNotOnRoute {
        /// Requested model.
        model: String,
        /// Route format.
        format: Format,
    },
    /// Upstream keys are all cooling down after 429s (or upstream said 429).
    #[error("rate limited, retry later")]
    RateLimited {
        /// Seconds to put in `Retry-After`.
        retry_after_secs: u64,
    },
    /// Upstream answered a non-success status (its body is only logged).
    #[error("upstream returned status {0}")]
    UpstreamStatus(u16),
    /// Upstream could not be reached or broke before answering.
    #[error("upstream request failed")]
    UpstreamFailed,
    /// Upstream did not answer in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The client went silent while sending its request body.
    #[error("the request body was not received in time")]
    ClientTimeout,
    /// The client's connection closed before its request body ended:
    /// nobody is left to answer, and the line says 499 (nginx's "client
    /// closed request"), as for an HTTP/2 client that resets its stream.
    #[error("the client closed the connection before its request body ended")]
    ClientGone,
    /// The request bodies in flight hold all of `max_body_bytes_in_flight`.
    #[error("the proxy is busy receiving other requests (all of max_body_bytes_in_flight is in use); retry shortly")]
    Overloaded,
    /// The drain timeout passed before the response began.
    #[error("the proxy is shutting down; retry the request")]
    ShuttingDown,
}

impl ProxyError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        use ProxyError::*;
        match self {
            Unauthorized
            | NotFound(_)
            | MethodNotAllowed(_)
            | BadRequest(_)
            | PayloadTooLarge(_)
            | UnknownModel(_)
            | ModelNotOnRoute { .. }
            | ClientTimeout
            | ClientGone => Fault::Downstream,
            RateLimited { .. } | UpstreamStatus(_) | UpstreamFailed | UpstreamTimeout => {
                Fault::Upstream
            }
            NoClientKeys | ShuttingDown | Overloaded => Fault::Internal,
        }
    }

    /// The HTTP status for this error: the only place statuses are chosen.
    pub fn status_code(&self) -> StatusCode {
        use ProxyError::*;
        match self {
            Unauthorized => StatusCode::UNAUTHORIZED,
            NoClientKeys | ShuttingDown | Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            NotFound(_) | UnknownModel(_) | ModelNotOnRoute { .. } => StatusCode::NOT_FOUND,
            MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ClientGone => CLIENT_CLOSED_REQUEST,
            BadRequest(_) => StatusCode::BAD_REQUEST,
            PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            UpstreamStatus(s) => match *s {
                400 | 422 => StatusCode::BAD_REQUEST,
                413 => StatusCode::PAYLOAD_TOO_LARGE,
                429 => StatusCode::TOO_MANY_REQUESTS,
                408 | 504 | 524 => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            },
            UpstreamFailed => StatusCode::BAD_GATEWAY,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The message clients see. Upstream statuses get generic text.
    pub fn client_message(&self) -> String {
        match self {
            ProxyError::UpstreamStatus(s) => match *s {
                400 | 422 => "the upstream rejected the request as invalid".into(),
                401 | 403 => "the upstream refused the proxy's credentials".into(),
                404 => "the upstream could not find the requested model".into(),
                413 => "the request is too large for the upstream".into(),
                429 => "the upstream is rate limiting, retry later".into(),
                408 | 504 | 524 => "the upstream timed out".into(),
                _ => "the upstream service failed".into(),
            },
            other => other.to_string(),
        }
    }

    /// OpenAI `type` / Anthropic `error.type` string.
    fn kind(&self) -> &'static str {
        match self.status_code().as_u16() {
            400 => "invalid_request_error",
            401 => "authentication_error",
            404 => "not_found_error",
            405 => "invalid_request_error",
            408 => "timeout_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            504 => "timeout_error",
            _ => "api_error",
        }
    }

    /// OpenAI `code` string.
    fn code(&self) -> &'static str {
        use ProxyError::*;
        match self {
            Unauthorized => "invalid_api_key",
            NoClientKeys => "proxy_not_configured",
            NotFound(_) => "not_found",
            MethodNotAllowed(_) => "method_not_allowed",
            BadRequest(_) => "invalid_request",
            PayloadTooLarge(_) => "request_too_large",
            UnknownModel(_) | ModelNotOnRoute { .. } => "model_not_found",
            RateLimited { .. } => "rate_limit_exceeded",
            UpstreamStatus(_) | UpstreamFailed => "upstream_error",
            UpstreamTimeout => "upstream_timeout",
            ClientTimeout => "request_timeout",
            ClientGone => "client_closed_request",
            ShuttingDown => "shutting_down",
            Overloaded => "overloaded",
        }
    }

    /// The JSON error body in `format`.
    pub fn body(&self, format: Format) -> serde_json::Value {
        error_body(format, self.kind(), self.code(), &self.client_message())
    }

    /// A complete response in `format`.
    pub fn into_response(self, format: Format) -> Response<Body> {
        let mut resp = Response::new(full(Bytes::from(self.body(format).to_string())));
        *resp.status_mut() = self.status_code();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match self {
            ProxyError::RateLimited { retry_after_secs } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            // Long enough for other bodies to be sent on; the SDKs back off
            // further on their own.
            ProxyError::Overloaded => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1u32));
            }
            // RFC 9110 section 15.5.6: a 405 says what the route allows.
            ProxyError::MethodNotAllowed(allow) => {
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        resp
    }
}

/// A client's text quoted as a JSON string (`"ok\u001b[31m"`): what it
/// sent, readable, with no Rust escapes (`\u{1b}`) in a JSON answer.
fn json_quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// An error body in OpenAI or Anthropic shape.
pub fn error_body(format: Format, kind: &str, code: &str, message: &str) -> serde_json::Value {
    match format {
        Format::OpenAi => json!({"error": {"message": message, "type": kind, "code": code}}),
        Format::Anthropic => json!({"type": "error", "error": {"type": kind, "message": message}}),
    }
}

/// The SSE event that ends a stream whose upstream broke, in `format`.
pub fn stream_error_event(format: Format, message: &str) -> Bytes {
    let body = error_body(format, "api_error", "upstream_stream_error", message);
    Bytes::from(match format {
        Format::OpenAi => format!("data: {body}\n\n"),
        Format::Anthropic => format!("event: error\ndata: {body}\n\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's model name is shown as a JSON string, escapes and all,
    /// not with Rust's `\u{1b}`.
    #[test]
    fn client_text_in_messages_is_json_quoted() {
        let e = ProxyError::UnknownModel("ok\u{1b}[31m\n\"x".into());
        assert_eq!(e.to_string(), r#"model "ok\u001b[31m\n\"x" does not exist"#);
    }

    #[test]
    fn statuses_map_in_one_place() {
        assert_eq!(ProxyError::Unauthorized.status_code(), 401);
        assert_eq!(ProxyError::PayloadTooLarge(1).status_code(), 413);
        assert_eq!(ProxyError::ClientGone.status_code(), 499);
        assert_eq!(ProxyError::UpstreamStatus(500).status_code(), 502);
        assert_eq!(ProxyError::UpstreamStatus(401).status_code(), 502);
        assert_eq!(ProxyError::UpstreamTimeout.status_code(), 504);
        assert_eq!(ProxyError::UnknownModel("x".into()).status_code(), 404);
    }

    #[test]
    fn bodies_follow_the_route_format() {
        let e = ProxyError::Unauthorized;
        let o = e.body(Format::OpenAi);
        assert_eq!(o["error"]["code"], "invalid_api_key");
        assert_eq!(o["error"]["type"], "authentication_error");
        let a = e.body(Format::Anthropic);
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "authentication_error");
    }
}
