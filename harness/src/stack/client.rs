//! The harness's HTTP clients: what a user's client does to a stream.
//!
//! A real completion streams for minutes (reasoning models, long outputs),
//! so no client of the harness may cut a healthy stream: there is no total
//! timeout shorter than the configured stream bound. Instead each client
//! has a connect timeout, a read-idle timeout (silence between two reads,
//! just above nginx's `proxy_read_timeout`, which would cut the stream
//! first), and one overall bound. Requests that are not streams (health,
//! models) set their own short timeout with [`SHORT`].

use std::time::Duration;

/// How long a stream may last across a switch unless configured: above
/// nginx's `proxy_read_timeout` (300 s) and equal to goproxy's
/// `drain_timeout_secs` in the operators' configs (330 s), below compose's
/// `stop_grace_period` (360 s).
pub const DEFAULT_STREAM_BOUND: Duration = Duration::from_secs(330);

/// Silence between two reads before a client gives up: nginx cuts a silent
/// upstream after `proxy_read_timeout` (300 s), so this is just above it
/// and nginx's own verdict is what the harness sees.
pub const READ_IDLE: Duration = Duration::from_secs(305);

/// Connecting takes milliseconds on a healthy host.
pub const CONNECT: Duration = Duration::from_secs(5);

/// The timeout of a request that is not a stream (health, models, a
/// non-streamed probe).
pub const SHORT: Duration = Duration::from_secs(20);

/// A client builder with the timeouts above and `bound` as the total.
pub fn builder(bound: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT)
        .read_timeout(READ_IDLE)
        .timeout(bound)
}
