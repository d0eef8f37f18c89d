//! Durations and sizes at the top level, each with a range that makes
//! sense at run time: `sse_heartbeat_secs: 1e-9` would send about 900
//! pings a second, a zero timeout would fail every request.

use std::time::Duration;

use super::error::{shown_number, ConfigError};
use super::raw::Reader;

/// nginx's default upstream `keepalive_timeout`; our idle timeout must exceed it.
pub const NGINX_KEEPALIVE_SECS: f64 = 60.0;

/// Every timing field of the config, validated.
#[derive(Debug, Clone)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub stream_idle: Duration,
    pub request_read: Duration,
    pub send: Duration,
    pub read_on: Duration,
    pub sse_heartbeat: Option<Duration>,
    pub drain: Duration,
    pub drain_readiness_delay: Duration,
    pub idle: Duration,
    pub key_cooldown: Duration,
}

/// `field` in seconds within `[min, max]`, or `default` when absent.
fn secs(
    r: &Reader<'_>,
    field: &str,
    default: f64,
    min: f64,
    max: f64,
) -> Result<Duration, ConfigError> {
    let s = r.number(field)?.unwrap_or(default);
    if !(s.is_finite() && (min..=max).contains(&s)) {
        return Err(r.at.invalid(
            field,
            shown_number(s),
            format!("must be a number of seconds from {min} to {max}"),
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

pub(crate) fn timeouts(r: &Reader<'_>) -> Result<Timeouts, ConfigError> {
    // Checked before the range, so -1 or 0 gets the reason (the range's
    // "from 0" offered values this refuses).
    let written = r.number("idle_timeout_secs")?;
    if let Some(w) = written.filter(|w| *w <= NGINX_KEEPALIVE_SECS) {
        return Err(r.at.invalid(
            "idle_timeout_secs",
            shown_number(w),
            "must be longer than nginx's upstream keepalive_timeout (60 s), or nginx reuses connections goproxy is closing and answers 502",
        ));
    }
    if let Some(w) = written.filter(|w| !(w.is_finite() && *w <= 3600.0)) {
        // Not secs()'s "from 60 to 3600": 60 itself is refused above.
        return Err(r.at.invalid(
            "idle_timeout_secs",
            shown_number(w),
            "must be a number of seconds over 60 and at most 3600",
        ));
    }
    let idle = secs(r, "idle_timeout_secs", 75.0, NGINX_KEEPALIVE_SECS, 3600.0)?;
    let heartbeat = r.number("sse_heartbeat_secs")?.unwrap_or(15.0);
    if !(heartbeat == 0.0 || (1.0..=3600.0).contains(&heartbeat)) {
        return Err(r.at.invalid(
            "sse_heartbeat_secs",
            shown_number(heartbeat),
            "must be 0 (off) or a number of seconds from 1 to 3600",
        ));
    }
    Ok(Timeouts {
        connect: secs(r, "connect_timeout_secs", 10.0, 0.1, 300.0)?,
        first_byte: secs(r, "first_byte_timeout_secs", 120.0, 1.0, 3600.0)?,
        stream_idle: secs(r, "stream_idle_timeout_secs", 300.0, 1.0, 3600.0)?,
        request_read: secs(r, "request_read_timeout_secs", 60.0, 1.0, 3600.0)?,
        send: secs(r, "send_timeout_secs", 60.0, 1.0, 3600.0)?,
        read_on: secs(r, "read_on_after_disconnect_secs", 60.0, 0.0, 3600.0)?,
        sse_heartbeat: (heartbeat > 0.0).then(|| Duration::from_secs_f64(heartbeat)),
        drain: secs(r, "drain_timeout_secs", 30.0, 1.0, 3600.0)?,
        drain_readiness_delay: secs(r, "drain_readiness_delay_secs", 0.0, 0.0, 300.0)?,
        idle,
        key_cooldown: secs(r, "key_cooldown_secs", 60.0, 1.0, 86_400.0)?,
    })
}
