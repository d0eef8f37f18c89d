//! goproxy: an LLM reverse proxy on hyper 1.x that replaces the Go service
//! of the same name. Operators' existing `config-ohmygpt-prod.json` loads
//! unchanged; see [`config`] for the format and the fields goproxy adds.
//!
//! # Layout
//!
//! - [`config`]: read, parse and validate the JSON config into [`config::Config`].
//! - [`server`]: accept loop and graceful drain; [`run`].
//! - [`shutdown`]: the first signal drains, a second cuts now.
//! - [`shed`]: at `max_connections`, idle connections are asked to close.
//! - [`conn`]: one client connection and the timeouts of each of its states.
//! - [`activity`]: what a connection has in progress ([`activity::Busy`] guards).
//! - [`admission`]: client connections admitted up to `max_connections`.
//! - [`app`]: the shared state of one server.
//! - [`routes`]: routing and the small handlers.
//! - [`forward`]: the model routes: client body in, upstream answer out.
//! - [`host`]: what a Host header or `:authority` may hold.
//! - [`request_line`]: the request's line when no body logs it (errors, 499).
//! - [`read_body`]: the client body, within its size and time limits.
//! - [`body_budget`]: the body bytes all requests hold at once.
//! - [`rename`]: the client body rewritten for the upstream, without a JSON tree.
//! - [`toplevel`]: a JSON object's top-level members, by a structural scan.
//! - [`in_string`]: which bytes of JSON text are inside strings, 64 at a time.
//! - [`window`]: which of 16 or 64 bytes are JSON syntax, as bit masks (SSE2).
//! - [`upstream`]: sending upstream, with key rotation.
//! - [`client`]: the pooled upstream HTTP client (hyper + rustls).
//! - [`stream`]: the SSE relay (chunk by chunk) and usage parsing.
//! - [`sse_words`]: the words a relayed chunk holds (`"usage"`...), in one pass.
//! - [`passthrough`]: non-SSE upstream bodies, streamed; usage from the tail.
//! - [`read_on`]: after a client left mid-answer, the rest read for its usage.
//! - [`body`]: the response body type.
//! - [`cancel`]: the drain's cut, checked with one atomic load per poll.
//! - [`alarm`]: the stall and heartbeat deadlines, not re-registered per chunk.
//! - [`chunks`]: the upstream request body, slices of the client's bytes.
//! - [`usage`]: token counts and their price.
//! - [`usage_counts`]: a `usage` object's counts, read without a JSON tree.
//! - [`auth`]: secrets from the environment, client authentication.
//! - [`redact`]: what may be logged of upstream text (keys out, one line).
//! - [`error`]: the request error enum, its status mapping and rendering.
//! - [`every`]: a repeated warning logged at most once a period.
//! - [`fd_limit`]: the open-file limit, raised and checked against `max_connections`.
//! - [`metrics`]: Prometheus counters, histogram and gauge.
//! - [`healthcheck`]: the `goproxy healthcheck` subcommand.
//! - [`telemetry`]: tracing setup (text or JSON).
//! - [`log_line`]: the text log line, written cheaply.
//! - [`log_batch`]: log lines written in batches per event loop, bounded in delay.
//! - [`peer`]: the client address, rendered once per connection.
//! - [`cli`]: flags, subcommands and exit codes.
//!
//! # Try it
//!
//! ```text
//! PROXY_API_KEY=sk-local OHMYGPT_DEV_API_KEY=... \
//!     cargo run -p proxy -- --config proxy/config-ohmygpt-dev.json
//! curl -s localhost:8004/health
//! curl -sN localhost:8004/v1/chat/completions -H 'Authorization: Bearer sk-local' \
//!     -H 'content-type: application/json' \
//!     -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
//! ```
//!
//! # Client keys
//!
//! Clients authenticate with `Authorization: Bearer <key>` (or `x-api-key`
//! on `/v1/messages`) against the env vars named by `client_api_keys_env`
//! (default `PROXY_API_KEY`). If none of them is set, goproxy logs a loud
//! error at startup and answers 503 on every model route and `/metrics`:
//! unlike the Go original it never serves an open proxy by accident.
//! `/health` and `/` stay public; there are no admin routes and no CORS.
//!
//! # Keep-alive and drain
//!
//! Idle client connections are kept for `idle_timeout_secs` (default 75 s),
//! longer than nginx's upstream `keepalive_timeout` of 60 s, so nginx always
//! closes first and never reuses a connection goproxy is closing (a 502 for
//! a POST nginx will not retry). On SIGTERM/SIGINT `/health` turns 503, the
//! listener closes, idle connections close at once, and open requests and
//! streams get `drain_timeout_secs` (default 30 s) to finish; streams still
//! open then end with an SSE error event, and the process exits 0. SIGQUIT
//! and SIGHUP drain too (goproxy has no reload); SIGUSR1 and SIGUSR2 are
//! logged and ignored. A second signal during the drain cuts at once, as
//! the drain timeout would.

pub mod activity;
pub mod admission;
pub mod alarm;
pub mod app;
pub mod auth;
pub mod body;
pub mod body_budget;
pub mod cancel;
pub mod chunks;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn;
pub mod direct_line;
pub mod error;
pub mod every;
pub mod fd_limit;
pub mod forward;
pub mod gone;
pub mod h1;
pub mod healthcheck;
pub mod host;
pub mod in_string;
pub mod log_batch;
pub mod log_line;
pub mod log_time;
pub mod metrics;
pub mod passthrough;
pub mod peer;
pub mod read_body;
pub mod read_on;
pub mod redact;
pub mod rename;
pub mod req_body;
pub mod request_line;
pub mod routes;
pub mod serve;
pub mod server;
pub mod shed;
pub mod shutdown;
pub mod sse_words;
pub mod stream;
pub mod telemetry;
#[cfg(test)]
mod test_rng;
pub mod toplevel;
pub mod upstream;
pub mod upstream_body;
pub mod usage;
pub mod usage_counts;
#[cfg(test)]
mod wake_count;
pub mod window;
pub mod wire;
pub mod workers;

pub use server::{bind, run, serve, serve_on, RunError};
pub use shutdown::Shutdown;
