//! goproxy: an LLM reverse proxy on hyper 1.x that replaces the Go service
//! of the same name. Operators' existing `config-ohmygpt-prod.json` loads
//! unchanged; see [`config`] for the format and the fields goproxy adds.
//!
//! # Layout
//!
//! - [`config`]: read, parse and validate the JSON config into [`config::Config`].
//! - [`server`]: accept loop, graceful drain, routes and handlers; [`run`].
//! - [`upstream`]: the pooled upstream client, body rewriting, key rotation.
//! - [`stream`]: the SSE relay (chunk by chunk) and usage parsing.
//! - [`usage`]: token counts and their price.
//! - [`auth`]: secrets from the environment, client authentication, redaction.
//! - [`error`]: the request error enum, its status mapping and rendering.
//! - [`metrics`]: Prometheus counters, histogram and gauge.
//! - [`healthcheck`]: the `goproxy healthcheck` subcommand.
//! - [`telemetry`]: tracing setup (text or JSON).
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
//! listener closes, and open requests and streams get `drain_timeout_secs`
//! (default 30 s) to finish before the process exits 0.

pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod healthcheck;
pub mod metrics;
pub mod server;
pub mod stream;
pub mod telemetry;
pub mod upstream;
pub mod usage;

pub use server::{bind, run, serve, RunError};
