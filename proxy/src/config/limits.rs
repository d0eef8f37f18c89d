//! Sizes and counts at the top level: how big one request body may be,
//! how many body bytes all requests may hold at once, and how many client
//! connections are served at once. Each bounds memory a client can make
//! goproxy hold: one body by `max_body_bytes`, all of them together by
//! `max_body_bytes_in_flight`, the fixed cost of each connection (buffers,
//! a task) by `max_connections`.

use super::error::ConfigError;
use super::raw::Reader;

/// Smallest `max_body_bytes`: below a kilobyte even a one-line chat
/// request is refused (its model, messages and role alone are ~60 bytes,
/// an SDK's defaults more), so every request would be a 413.
const MIN_BODY: u64 = 1024;
/// Largest `max_body_bytes`.
const MAX_BODY: u64 = 1 << 30;
/// Default `max_body_bytes_in_flight`, when `max_body_bytes` is not larger.
const DEFAULT_IN_FLIGHT: u64 = 256 << 20;
/// Largest `max_body_bytes_in_flight`.
const MAX_IN_FLIGHT: u64 = 64 << 30;
/// Default `max_connections`: above nginx's default `worker_connections`
/// (512 per worker) times the workers of a 2-8 core host, so the nginx in
/// front never waits on it.
const DEFAULT_CONNECTIONS: u64 = 4096;
/// Largest `max_connections`.
const MAX_CONNECTIONS: u64 = 1 << 20;

/// The validated size and count limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_body_bytes: usize,
    pub body_bytes_in_flight: usize,
    pub connections: usize,
}

/// `max_body_bytes` (1 KiB to 1 GiB, default 10 MiB),
/// `max_body_bytes_in_flight` (at least `max_body_bytes`, default the
/// larger of 256 MiB and `max_body_bytes`) and `max_connections` (default
/// 4096).
pub(crate) fn limits(r: &Reader<'_>) -> Result<Limits, ConfigError> {
    let body = r
        .whole("max_body_bytes", "bytes", MIN_BODY..=MAX_BODY)?
        .unwrap_or(10 * 1024 * 1024);
    let in_flight = r
        .whole(
            "max_body_bytes_in_flight",
            "bytes",
            MIN_BODY..=MAX_IN_FLIGHT,
        )?
        .unwrap_or(DEFAULT_IN_FLIGHT.max(body));
    if in_flight < body {
        // One body of the largest allowed size could never be read.
        return Err(r.at.invalid(
            "max_body_bytes_in_flight",
            in_flight.to_string(),
            format!(
                "must be at least max_body_bytes ({body}): one body of that size could never be read; raise it or lower max_body_bytes"
            ),
        ));
    }
    let connections = r
        .whole("max_connections", "connections", 1..=MAX_CONNECTIONS)?
        .unwrap_or(DEFAULT_CONNECTIONS);
    Ok(Limits {
        max_body_bytes: body as usize,
        body_bytes_in_flight: in_flight as usize,
        connections: connections as usize,
    })
}
