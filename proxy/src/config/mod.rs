//! The goproxy JSON config: read the file, parse the string, validate into a
//! [`Config`] that cannot hold a bad value.
//!
//! The format is the one operators already run (`config-ohmygpt-prod.json`):
//! `port`, `endpoints`, `models`, `system_prompt`, `user_agent`, plus any
//! `_comment...` keys, which are ignored. Everything else documented on
//! the table below is an optional goproxy addition with a default, so an
//! existing file loads unchanged.
//!
//! # Fields
//!
//! From the Go original: `port` (integer 1..=65535, required), `endpoints`
//! (`{name, base_url}`; `base_url` is the full URL POSTed to), `models`
//! (`id`, `name`, `id_aliases`, `type`, `upstream`, `upstream_model_id`
//! string or list, `upstream_model_weights`, `reasoning`, `thinking_budget`,
//! `input_price_per_mtok`, `output_price_per_mtok`,
//! `cache_write_price_per_mtok`, `cache_hit_price_per_mtok`,
//! `billing_multiplier`), `system_prompt`, `user_agent`, `_comment*`.
//!
//! goproxy additions, all optional:
//!
//! | field | default | meaning |
//! | --- | --- | --- |
//! | `host` | `0.0.0.0` | bind address |
//! | `endpoints[].api_key_env` | none | env var name, or list of names rotated on upstream 429 |
//! | `client_api_keys_env` | `["PROXY_API_KEY"]` | env vars holding accepted client keys |
//! | `connect_timeout_secs` | 10 | upstream connect timeout |
//! | `first_byte_timeout_secs` | 120 | wait for upstream response headers (then 504) |
//! | `stream_idle_timeout_secs` | 300 | longest silence between upstream chunks |
//! | `sse_heartbeat_secs` | 15 | `: ping` comment to the client after this much upstream silence; 0 disables, else 1..3600 |
//! | `max_body_bytes` | 10485760 | largest client body (then 413) |
//! | `max_body_bytes_in_flight` | 268435456, or `max_body_bytes` if larger | request body bytes held at once, all clients together (then 503 with `Retry-After`); at least `max_body_bytes` |
//! | `max_connections` | 4096 | client connections served at once (idle ones are closed to make room; more wait in the listen backlog) |
//! | `request_read_timeout_secs` | 60 | wait for a new connection's first request, longest silence inside a request body, and after as long a body must keep coming at 240 bytes/s (then 408) |
//! | `send_timeout_secs` | 60 | longest a response write may wait on a client that reads nothing (then the connection is closed; nginx's `send_timeout`) |
//! | `read_on_after_disconnect_secs` | 60 | after a client leaves mid-answer (or, over HTTP/1.1, while it is prepared), read the upstream's answer on (discarded) this long for its usage, so it is billed; 0 cuts the upstream at once (nginx's `proxy_ignore_client_abort off`) |
//! | `drain_timeout_secs` | 30 | bound on finishing open requests after SIGTERM; then streams get an error event |
//! | `drain_readiness_delay_secs` | 0 | keep accepting with `/health` at 503 before closing |
//! | `idle_timeout_secs` | 75 | client keep-alive idle timeout; must be > 60 (nginx `keepalive_timeout`) |
//! | `key_cooldown_secs` | 60 | how long a key that got 429 is skipped |
//!
//! Durations are seconds within a sane range (see [`timeouts`]);
//! `api_key_env` and `client_api_keys_env` must be variable names, and a
//! value that looks like a key is refused without being echoed.
//!
//! # Layout
//!
//! `raw` reads the JSON as written, `endpoints`, `models` and
//! [`timeouts`] validate one section each, [`types`] holds the validated
//! parts, [`error`] says what is wrong in the operator's terms.
//!
//! # Endpoint resolution
//!
//! A request in format F (`openai` on `/v1/chat/completions`, `anthropic` on
//! `/v1/messages`) for a model goes to the endpoint named `<upstream>-F`,
//! else `<type>-F`, else `F`. A model no endpoint serves in any format is a
//! load error; a model served in one format only answers 404 on the other
//! route.

mod endpoints;
pub mod error;
mod limits;
mod models;
mod raw;
pub mod timeouts;
pub mod types;
mod unique_keys;
mod unused;

use foldhash::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use http::HeaderValue;
use serde_json::Value;

pub use error::ConfigError;
use error::{kind_of, shown, At};
use raw::Reader;
pub use timeouts::NGINX_KEEPALIVE_SECS;
pub use types::{Endpoint, Format, Model, Prices, Reasoning};

/// Top-level keys goproxy knows.
const KNOWN: &[&str] = &[
    "port",
    "host",
    "endpoints",
    "models",
    "system_prompt",
    "user_agent",
    "client_api_keys_env",
    "connect_timeout_secs",
    "first_byte_timeout_secs",
    "stream_idle_timeout_secs",
    "request_read_timeout_secs",
    "send_timeout_secs",
    "read_on_after_disconnect_secs",
    "sse_heartbeat_secs",
    "max_body_bytes",
    "max_body_bytes_in_flight",
    "max_connections",
    "drain_timeout_secs",
    "drain_readiness_delay_secs",
    "idle_timeout_secs",
    "key_cooldown_secs",
];

/// A validated goproxy config.
#[derive(Debug, Clone)]
pub struct Config {
    source: String,
    port: u16,
    host: IpAddr,
    endpoints: Vec<Endpoint>,
    models: Vec<Model>,
    by_id: HashMap<String, usize>,
    /// Prepended to the system prompt of every request when non-empty.
    pub system_prompt: Option<String>,
    /// `User-Agent` sent upstream (a valid header value).
    pub user_agent: Option<HeaderValue>,
    /// Env var names holding accepted client keys.
    pub client_api_keys_env: Vec<String>,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed for upstream response headers.
    pub first_byte_timeout: Duration,
    /// Longest silence between upstream body chunks (SSE or not).
    pub stream_idle_timeout: Duration,
    /// Wait for a new connection's first request, and longest silence
    /// inside a request body.
    pub request_read_timeout: Duration,
    /// Longest a response write may wait on a client that reads nothing.
    pub send_timeout: Duration,
    /// How long an answer is read on after its client left, for its usage
    /// (zero: not at all).
    pub read_on_after_disconnect: Duration,
    /// Heartbeat interval on silent streams (`None`: disabled).
    pub sse_heartbeat: Option<Duration>,
    /// Largest client request body in bytes.
    pub max_body_bytes: usize,
    /// Most request body bytes held at once, all requests together (then 503).
    pub max_body_bytes_in_flight: usize,
    /// Most client connections served at once (then idle ones are closed
    /// to make room, and new ones wait in the listen backlog).
    pub max_connections: usize,
    /// Bound on draining after SIGTERM.
    pub drain_timeout: Duration,
    /// Idle client keep-alive timeout (longer than nginx's 60 s).
    pub idle_timeout: Duration,
    /// Time between SIGTERM (health turns 503) and closing the listener.
    pub drain_readiness_delay: Duration,
    /// Cooldown of an upstream key after a 429.
    pub key_cooldown: Duration,
    /// Non-fatal remarks found while loading (unknown keys, unused endpoints).
    pub warnings: Vec<String>,
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let bytes = read_bounded(path).map_err(|reason| ConfigError::Read {
            path: name.clone(),
            reason,
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let before = &bytes[..e.valid_up_to()];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let column = before.len()
                - before
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |p| p + 1)
                + 1;
            ConfigError::Json {
                source_name: name.clone(),
                line,
                column,
                message: "the file is not UTF-8 text; save it as UTF-8".into(),
            }
        })?;
        Config::from_json(text, &name)
    }

    /// Parse and validate config text; `source_name` labels error messages.
    pub fn from_json(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        if text.starts_with('\u{feff}') {
            return Err(ConfigError::Json {
                source_name: source_name.to_string(),
                line: 1,
                column: 1,
                message: "the file starts with a UTF-8 byte-order mark (BOM, bytes EF BB BF); save it as UTF-8 without BOM".into(),
            });
        }
        // UTF-16 without its BOM is valid UTF-8 (a NUL after every ASCII
        // byte) and failed as "key must be a string" at 1:2.
        if text.as_bytes().iter().take(64).any(|b| *b == 0) {
            return Err(ConfigError::Json {
                source_name: source_name.to_string(),
                line: 1,
                column: 1,
                message: "the file holds NUL bytes: it is UTF-16 (or not text); save it as UTF-8"
                    .into(),
            });
        }
        if text.trim().is_empty() {
            return Err(ConfigError::Json {
                source_name: source_name.to_string(),
                line: 1,
                column: 1,
                message: "the file is empty (expected a JSON object {...})".into(),
            });
        }
        serde_json::from_str::<unique_keys::UniqueKeys>(text)
            .map_err(|e| error::syntax(source_name, text, &e))?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| error::syntax(source_name, text, &e))?;
        if !value.is_object() {
            return Err(ConfigError::Json {
                source_name: source_name.to_string(),
                line: 1,
                column: 1,
                message: format!(
                    "the config must be a JSON object {{...}}, found {}",
                    kind_of(&value)
                ),
            });
        }
        let top = Reader::new(&value, At::top(source_name), "(file)")?;
        validate(&top, source_name)
    }
    /// The file (or label) this config came from.
    pub fn source(&self) -> &str {
        &self.source
    }
    /// Listen port.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Bind address.
    pub fn host(&self) -> IpAddr {
        self.host
    }
    /// Endpoints in file order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
    /// Models in file order.
    pub fn models(&self) -> &[Model] {
        &self.models
    }
    /// Find a model by id or alias.
    pub fn model(&self, id: &str) -> Option<&Model> {
        self.by_id.get(id).map(|&i| &self.models[i])
    }
    /// The endpoint serving `model` for requests in `format`, if any.
    pub fn endpoint_for(&self, model: &Model, format: Format) -> Option<&Endpoint> {
        model.endpoints.get(&format).map(|&i| &self.endpoints[i])
    }

    /// The one-line summary printed by `--check-config`.
    pub fn summary(&self) -> String {
        format!(
            "config OK: {}: port {}, {}, {}; bodies up to {} bytes, {} in flight; {} connections",
            self.source,
            self.port,
            counted(self.endpoints.len(), "endpoint"),
            counted(self.models.len(), "model"),
            self.max_body_bytes,
            self.max_body_bytes_in_flight,
            self.max_connections,
        )
    }

    /// Override the listen port (tests bind port 0 themselves; this only
    /// changes what `/health` reports).
    pub fn set_port(&mut self, port: u16) {
        self.port = port;
    }
}

/// `n` things, in the plural unless one.
fn counted(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// Largest config file read: the biggest real one is a few KB; a path to
/// `/dev/zero` or a log file must not fill the memory.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A config file's bytes: a regular file (a FIFO would block the read
/// forever, a device never end) of at most [`MAX_FILE_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    // Looked at before opening: opening a FIFO blocks until a writer comes.
    let meta = std::fs::metadata(path).map_err(|e| error::read_failure(&e))?;
    if meta.is_dir() {
        return Err(error::read_failure(
            &std::io::ErrorKind::IsADirectory.into(),
        ));
    }
    if !meta.is_file() {
        return Err(
            "not a regular file (a pipe or a device): give the path of the JSON file".into(),
        );
    }
    let too_big = || {
        format!(
            "larger than {} MiB: not a goproxy config",
            MAX_FILE_BYTES >> 20
        )
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let file = std::fs::File::open(path).map_err(|e| error::read_failure(&e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error::read_failure(&e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// The whole file: each section validated in turn.
fn validate(top: &Reader<'_>, source: &str) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    top.unknown_keys(KNOWN, &mut warnings)?;
    let port = port(top)?;
    let host = host(top)?;
    let endpoints = endpoints::endpoints(top, (host, port), &mut warnings)?;
    let models = models::models(top, &endpoints, &mut warnings)?;
    unused::check(top, &endpoints, &models, &mut warnings)?;
    let t = timeouts::timeouts(top)?;
    let l = limits::limits(top)?;
    Ok(Config {
        source: source.to_string(),
        port,
        host,
        endpoints: endpoints.list,
        models: models.list,
        by_id: models.by_id,
        system_prompt: top
            .string("system_prompt")?
            .filter(|s| !s.trim().is_empty()),
        user_agent: user_agent(top)?,
        client_api_keys_env: endpoints::env_names(top, "client_api_keys_env", true)?
            .unwrap_or_else(|| vec!["PROXY_API_KEY".to_string()]),
        connect_timeout: t.connect,
        first_byte_timeout: t.first_byte,
        stream_idle_timeout: t.stream_idle,
        request_read_timeout: t.request_read,
        send_timeout: t.send,
        read_on_after_disconnect: t.read_on,
        sse_heartbeat: t.sse_heartbeat,
        max_body_bytes: l.max_body_bytes,
        max_body_bytes_in_flight: l.body_bytes_in_flight,
        max_connections: l.connections,
        drain_timeout: t.drain,
        idle_timeout: t.idle,
        drain_readiness_delay: t.drain_readiness_delay,
        key_cooldown: t.key_cooldown,
        warnings,
    })
}

/// The bind address: an IP address a TCP listener can have (not multicast
/// or broadcast). Whether this machine has it is `--check-config`'s to say.
fn host(top: &Reader<'_>) -> Result<IpAddr, ConfigError> {
    let Some(h) = top.string("host")? else {
        return Ok(IpAddr::from([0, 0, 0, 0]));
    };
    let shown_h = || shown(&Value::String(h.clone()));
    let ip: IpAddr = h.parse().map_err(|_| {
        top.at.invalid(
            "host",
            shown_h(),
            "must be an IP address (0.0.0.0 for every interface, 127.0.0.1 for this host only)",
        )
    })?;
    // An IPv4-mapped IPv6 address is judged as the IPv4 address it is.
    let canonical = ip.to_canonical();
    let broadcast = matches!(canonical, IpAddr::V4(v4) if v4.is_broadcast());
    if canonical.is_multicast() || broadcast {
        return Err(top.at.invalid(
            "host",
            shown_h(),
            "is a multicast or broadcast address, which no TCP listener can bind",
        ));
    }
    Ok(ip)
}

fn port(top: &Reader<'_>) -> Result<u16, ConfigError> {
    match top.value("port") {
        None => Err(top.at.invalid("port", "(missing)", "required")),
        Some(v) => {
            let range = || {
                Err(top
                    .at
                    .invalid("port", shown(v), "must be a port number from 1 to 65535"))
            };
            match v.as_u64() {
                Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
                // Out of range, or a negative whole number (`-1`): neither a
                // string nor a fraction.
                Some(_) => range(),
                None if v.is_i64() => range(),
                None => Err(top.at.invalid(
                    "port",
                    shown(v),
                    format!(
                    "must be a whole port number from 1 to 65535 (not a string or a fraction){}",
                    // Advice only when the plain form is a port.
                    v.as_f64()
                        .filter(|f| (1.0..=65535.0).contains(f))
                        .map_or_else(String::new, |_| raw::written_plainly(v))
                ),
                )),
            }
        }
    }
}

/// A `User-Agent` every upstream request can carry: visible ASCII and
/// spaces only (a CR/LF would fail every request).
/// Longest `user_agent`: far below the 8 KB header limits of upstreams.
const MAX_USER_AGENT: usize = 1024;

fn user_agent(top: &Reader<'_>) -> Result<Option<HeaderValue>, ConfigError> {
    let Some(ua) = top.string("user_agent")?.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if ua.len() > MAX_USER_AGENT {
        return Err(top.at.invalid(
            "user_agent",
            shown(&Value::String(ua)),
            format!(
                "must be at most {MAX_USER_AGENT} characters (upstreams refuse longer headers)"
            ),
        ));
    }
    let ok = ua.chars().all(|c| c == ' ' || c.is_ascii_graphic());
    match HeaderValue::from_str(&ua) {
        Ok(v) if ok => Ok(Some(v)),
        _ => Err(top.at.invalid(
            "user_agent",
            shown(&Value::String(ua)),
            "must be printable ASCII on one line (no line breaks, tabs or control characters)",
        )),
    }
}

#[cfg(test)]
mod tests;
