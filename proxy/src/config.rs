//! The goproxy JSON config: read the file, parse the string, validate into a
//! [`Config`] that cannot hold a bad value.
//!
//! The format is the one operators already run (`config-ohmygpt-prod.json`):
//! `port`, `endpoints`, `models`, `system_prompt`, `user_agent`, plus any
//! `_comment...` keys, which are ignored. Everything else documented on
//! [`RawConfig`] is an optional goproxy addition with a default, so an
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
//! | `sse_heartbeat_secs` | 15 | `: ping` comment to the client after this much upstream silence; 0 disables |
//! | `max_body_bytes` | 10485760 | largest client body (then 413) |
//! | `drain_timeout_secs` | 30 | bound on finishing open requests after SIGTERM |
//! | `drain_readiness_delay_secs` | 0 | keep accepting with `/health` at 503 before closing |
//! | `idle_timeout_secs` | 75 | client keep-alive idle timeout; must be > 60 (nginx `keepalive_timeout`) |
//! | `key_cooldown_secs` | 60 | how long a key that got 429 is skipped |
//!
//! # Endpoint resolution
//!
//! A request in format F (`openai` on `/v1/chat/completions`, `anthropic` on
//! `/v1/messages`) for a model goes to the endpoint named `<upstream>-F`,
//! else `<type>-F`, else `F`. A model no endpoint serves in any format is a
//! load error; a model served in one format only answers 404 on the other
//! route.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// Why a config file was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config file: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON, or a field has the wrong JSON type.
    #[error("{source_name}:{line}:{column}: invalid JSON: {message}")]
    Json {
        /// File name (or other label) of the text.
        source_name: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// The JSON parsed but a value is not acceptable.
    #[error("{source_name}: {field} = {value}: {reason}")]
    Invalid {
        /// File name (or other label) of the text.
        source_name: String,
        /// Path of the offending field, e.g. `models[2].upstream`.
        field: String,
        /// The offending value, as JSON.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The wire format of a request, chosen by the route it arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// OpenAI chat completions (`/v1/chat/completions`).
    OpenAi,
    /// Anthropic messages (`/v1/messages`).
    Anthropic,
}

impl Format {
    /// The suffix used in endpoint names (`<line>-openai`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::OpenAi => "openai",
            Format::Anthropic => "anthropic",
        }
    }

    const ALL: [Format; 2] = [Format::OpenAi, Format::Anthropic];
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Anthropic extended-thinking effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasoning {
    /// 2000 tokens of thinking by default.
    Low,
    /// 5000 tokens of thinking by default.
    Medium,
    /// 10000 tokens of thinking by default.
    High,
}

impl Reasoning {
    /// `low`, `medium` or `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reasoning::Low => "low",
            Reasoning::Medium => "medium",
            Reasoning::High => "high",
        }
    }

    fn default_budget(self) -> u32 {
        match self {
            Reasoning::Low => 2000,
            Reasoning::Medium => 5000,
            Reasoning::High => 10000,
        }
    }
}

// ---------------------------------------------------------------------------
// Raw, as written in the file.
// ---------------------------------------------------------------------------

/// The config file exactly as written. Field docs are the file format's docs.
#[derive(Debug, Deserialize)]
pub struct RawConfig {
    /// TCP port to listen on, an integer 1..=65535. Required. (The Go
    /// original treated 0 as 8000; goproxy refuses 0 so a typo cannot
    /// silently move the service.)
    port: Option<Value>,
    /// Bind address (goproxy addition). Default `0.0.0.0`.
    #[serde(default)]
    host: Option<String>,
    /// Upstream endpoints. `base_url` is the full URL requests are POSTed to.
    #[serde(default)]
    endpoints: Vec<RawEndpoint>,
    /// Models clients may ask for.
    #[serde(default)]
    models: Vec<RawModel>,
    /// Prepended to every request's system prompt when non-empty.
    #[serde(default)]
    system_prompt: Option<String>,
    /// `User-Agent` sent upstream.
    #[serde(default)]
    user_agent: Option<String>,
    /// Names of env vars holding accepted client keys (goproxy addition).
    /// Default `["PROXY_API_KEY"]`, the original's variable.
    #[serde(default)]
    client_api_keys_env: Option<Vec<String>>,
    /// Upstream TCP+TLS connect timeout, seconds. Default 10.
    #[serde(default)]
    connect_timeout_secs: Option<f64>,
    /// Time allowed for upstream response headers, seconds. Default 120
    /// (non-streaming completions can take long before the first byte).
    #[serde(default)]
    first_byte_timeout_secs: Option<f64>,
    /// Longest silence allowed between two chunks of an upstream body,
    /// seconds. Default 300.
    #[serde(default)]
    stream_idle_timeout_secs: Option<f64>,
    /// Send an SSE comment (`: ping`) to the client when the upstream has
    /// been silent this long, seconds, so nginx's `proxy_read_timeout`
    /// (60 s between reads) does not cut long thinking pauses. Default 15;
    /// 0 disables. Only sent between events, never inside one.
    #[serde(default)]
    sse_heartbeat_secs: Option<f64>,
    /// Largest accepted client request body, bytes. Default 10 MiB.
    #[serde(default)]
    max_body_bytes: Option<u64>,
    /// How long open requests and streams may run after SIGTERM, seconds.
    /// Default 30.
    #[serde(default)]
    drain_timeout_secs: Option<f64>,
    /// After SIGTERM, how long to keep accepting while `/health` answers 503,
    /// seconds, so a balancer polling `/health` stops routing here before
    /// the listener closes. Default 0 (close at once: the nginx in front does
    /// not poll `/health`). Counted separately from `drain_timeout_secs`.
    #[serde(default)]
    drain_readiness_delay_secs: Option<f64>,
    /// How long an idle client keep-alive connection is kept, seconds.
    /// Default 75. Must be longer than nginx's upstream `keepalive_timeout`
    /// (60 s): if goproxy closed first, nginx could reuse a connection that
    /// is closing and answer 502 (it never retries a sent POST).
    #[serde(default)]
    idle_timeout_secs: Option<f64>,
    /// How long an upstream key that got a 429 is skipped, seconds.
    /// Default 60.
    #[serde(default)]
    key_cooldown_secs: Option<f64>,
    /// Anything else: `_comment*` keys are ignored, other keys are reported
    /// as warnings (kept so an operator's file with extra fields still loads).
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// One endpoint as written.
#[derive(Debug, Deserialize)]
struct RawEndpoint {
    name: String,
    base_url: String,
    #[serde(default)]
    api_key_env: Option<StringOrList>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// One model as written.
#[derive(Debug, Deserialize)]
struct RawModel {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    id_aliases: Vec<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    thinking_budget: Option<u32>,
    #[serde(default)]
    input_price_per_mtok: Option<f64>,
    #[serde(default)]
    output_price_per_mtok: Option<f64>,
    #[serde(default)]
    cache_write_price_per_mtok: Option<f64>,
    #[serde(default)]
    cache_hit_price_per_mtok: Option<f64>,
    #[serde(default)]
    billing_multiplier: Option<f64>,
    #[serde(default)]
    upstream: Option<String>,
    #[serde(default)]
    upstream_model_id: Option<StringOrList>,
    #[serde(default)]
    upstream_model_weights: Option<Vec<f64>>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

// ---------------------------------------------------------------------------
// Validated.
// ---------------------------------------------------------------------------

/// An upstream endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Name, e.g. `ohmygpt-openai`.
    pub name: String,
    /// Full http(s) URL requests are POSTed to.
    pub url: reqwest::Url,
    /// Format derived from the name suffix; decides the auth header.
    pub format: Format,
    /// Env var names holding upstream keys, rotated on 429. May be empty
    /// (then no auth header is sent).
    pub api_key_env: Vec<String>,
}

/// Prices per million tokens, already multiplied by `billing_multiplier`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prices {
    /// Uncached input tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Tokens written to the prompt cache.
    pub cache_write: f64,
    /// Tokens read from the prompt cache.
    pub cache_hit: f64,
}

/// A model clients may request.
#[derive(Debug, Clone)]
pub struct Model {
    /// Public id.
    pub id: String,
    /// Display name (defaults to the id).
    pub name: String,
    /// Other ids accepted for this model.
    pub aliases: Vec<String>,
    /// `type` field (`openai`, `anthropic`, provider names).
    pub kind: String,
    /// Extended thinking effort, if any.
    pub reasoning: Option<Reasoning>,
    /// Thinking budget in tokens (explicit, or from `reasoning`).
    pub thinking_budget: Option<u32>,
    /// Effective prices (times `billing_multiplier`).
    pub prices: Prices,
    /// Upstream model ids with their (positive-sum) weights.
    pub upstream_ids: Vec<(String, f64)>,
    /// Endpoint index per format, resolved at load time.
    endpoints: HashMap<Format, usize>,
}

impl Model {
    /// Pick an upstream model id, weighted at random.
    pub fn pick_upstream_id(&self) -> &str {
        use rand::Rng;
        if self.upstream_ids.len() == 1 {
            return &self.upstream_ids[0].0;
        }
        let total: f64 = self.upstream_ids.iter().map(|(_, w)| w).sum();
        let mut x = rand::thread_rng().gen_range(0.0..total);
        for (id, w) in &self.upstream_ids {
            if x < *w {
                return id;
            }
            x -= w;
        }
        &self.upstream_ids[self.upstream_ids.len() - 1].0
    }
}

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
    /// `User-Agent` sent upstream.
    pub user_agent: Option<String>,
    /// Env var names holding accepted client keys.
    pub client_api_keys_env: Vec<String>,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed for upstream response headers.
    pub first_byte_timeout: Duration,
    /// Longest silence between upstream body chunks.
    pub stream_idle_timeout: Duration,
    /// Heartbeat interval on silent streams (`None`: disabled).
    pub sse_heartbeat: Option<Duration>,
    /// Largest client request body in bytes.
    pub max_body_bytes: usize,
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

/// nginx's default upstream `keepalive_timeout`; our idle timeout must exceed it.
pub const NGINX_KEEPALIVE_SECS: f64 = 60.0;

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_json(&text, &path.display().to_string())
    }

    /// Parse and validate config text; `source_name` labels error messages.
    pub fn from_json(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            source_name: source_name.to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        raw.validate(source_name)
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
            "config OK: {}: port {}, {} endpoints, {} models",
            self.source,
            self.port,
            self.endpoints.len(),
            self.models.len()
        )
    }

    /// Override the listen port (tests bind port 0 themselves; this only
    /// changes what `/health` reports).
    pub fn set_port(&mut self, port: u16) {
        self.port = port;
    }
}

fn secs(source: &str, field: &str, v: Option<f64>, default: f64) -> Result<Duration, ConfigError> {
    let s = v.unwrap_or(default);
    if !s.is_finite() || s <= 0.0 || s > 86_400.0 {
        return Err(invalid(
            source,
            field,
            s,
            "must be a number of seconds in (0, 86400]",
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

fn invalid(source: &str, field: &str, value: impl fmt::Display, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        source_name: source.to_string(),
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn quoted(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn extra_warnings(extra: &BTreeMap<String, Value>, at: &str, warnings: &mut Vec<String>) {
    for key in extra.keys().filter(|k| !k.starts_with("_comment")) {
        warnings.push(format!("unknown key {at}{key} ignored"));
    }
}

impl RawConfig {
    fn validate(self, src: &str) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        extra_warnings(&self.extra, "", &mut warnings);

        let port = match &self.port {
            None => return Err(invalid(src, "port", "(missing)", "required")),
            Some(v) => match v.as_u64() {
                Some(p) if (1..=65535).contains(&p) => p as u16,
                Some(_) => return Err(invalid(src, "port", v, "must be in 1..=65535")),
                None => {
                    return Err(invalid(
                        src,
                        "port",
                        v,
                        "must be an integer in 1..=65535 (not a string or a fraction)",
                    ))
                }
            },
        };

        let host = match &self.host {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(h) => h
                .parse()
                .map_err(|_| invalid(src, "host", quoted(h), "must be an IP address"))?,
        };

        // Endpoints.
        let mut endpoints = Vec::new();
        let mut endpoint_idx: HashMap<String, usize> = HashMap::new();
        for (i, e) in self.endpoints.into_iter().enumerate() {
            let at = format!("endpoints[{i}]");
            extra_warnings(&e.extra, &format!("{at}."), &mut warnings);
            if e.name.is_empty() {
                return Err(invalid(
                    src,
                    &format!("{at}.name"),
                    "\"\"",
                    "must not be empty",
                ));
            }
            if endpoint_idx.contains_key(&e.name) {
                return Err(invalid(
                    src,
                    &format!("{at}.name"),
                    quoted(&e.name),
                    "duplicate endpoint name",
                ));
            }
            let url = reqwest::Url::parse(&e.base_url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .ok_or_else(|| {
                    invalid(
                        src,
                        &format!("{at}.base_url"),
                        quoted(&e.base_url),
                        "must be an absolute http:// or https:// URL",
                    )
                })?;
            let format = Format::ALL
                .into_iter()
                .find(|f| e.name == f.as_str() || e.name.ends_with(&format!("-{f}")));
            let Some(format) = format else {
                warnings.push(format!(
                    "endpoint {} is never used: names must be <line>-openai, <line>-anthropic, openai or anthropic",
                    e.name
                ));
                continue;
            };
            let api_key_env = e
                .api_key_env
                .map(StringOrList::into_vec)
                .unwrap_or_default();
            if let Some(bad) = api_key_env.iter().find(|n| n.is_empty() || n.contains('=')) {
                return Err(invalid(
                    src,
                    &format!("{at}.api_key_env"),
                    quoted(bad),
                    "must be environment variable names",
                ));
            }
            endpoint_idx.insert(e.name.clone(), endpoints.len());
            endpoints.push(Endpoint {
                name: e.name,
                url,
                format,
                api_key_env,
            });
        }

        // Models.
        let mut models = Vec::new();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for (i, m) in self.models.into_iter().enumerate() {
            let at = format!("models[{i}]");
            extra_warnings(&m.extra, &format!("{at}."), &mut warnings);
            if m.id.is_empty() {
                return Err(invalid(
                    src,
                    &format!("{at}.id"),
                    "\"\"",
                    "must not be empty",
                ));
            }
            for (field, name) in std::iter::once(("id".to_string(), &m.id)).chain(
                m.id_aliases
                    .iter()
                    .enumerate()
                    .map(|(j, a)| (format!("id_aliases[{j}]"), a)),
            ) {
                if let Some(&other) = by_id.get(name) {
                    return Err(invalid(
                        src,
                        &format!("{at}.{field}"),
                        quoted(name),
                        &format!("duplicate model id or alias (already used by models[{other}])"),
                    ));
                }
                by_id.insert(name.clone(), models.len());
            }
            let kind = m.kind.clone().unwrap_or_else(|| "openai".to_string());

            let reasoning = match m.reasoning.as_deref() {
                None | Some("") => None,
                Some("low") => Some(Reasoning::Low),
                Some("medium") => Some(Reasoning::Medium),
                Some("high") => Some(Reasoning::High),
                Some(other) => {
                    return Err(invalid(
                        src,
                        &format!("{at}.reasoning"),
                        quoted(other),
                        "must be low, medium or high",
                    ))
                }
            };
            let thinking_budget = match (m.thinking_budget, reasoning) {
                (Some(0), _) => None,
                (Some(b), _) => Some(b),
                (None, Some(r)) => Some(r.default_budget()),
                (None, None) => None,
            };

            let mult = m.billing_multiplier.unwrap_or(1.0);
            if !mult.is_finite() || mult < 0.0 {
                return Err(invalid(
                    src,
                    &format!("{at}.billing_multiplier"),
                    mult,
                    "must be a non-negative number",
                ));
            }
            let mut prices = [0.0; 4];
            for (slot, (name, v)) in prices.iter_mut().zip([
                ("input_price_per_mtok", m.input_price_per_mtok),
                ("output_price_per_mtok", m.output_price_per_mtok),
                ("cache_write_price_per_mtok", m.cache_write_price_per_mtok),
                ("cache_hit_price_per_mtok", m.cache_hit_price_per_mtok),
            ]) {
                let v = v.unwrap_or(0.0);
                if !v.is_finite() || v < 0.0 {
                    return Err(invalid(
                        src,
                        &format!("{at}.{name}"),
                        v,
                        "must be a non-negative number",
                    ));
                }
                *slot = v * mult;
            }

            let ids = match m.upstream_model_id {
                None => vec![m.id.clone()],
                Some(list) => list.into_vec(),
            };
            if ids.is_empty() || ids.iter().any(String::is_empty) {
                return Err(invalid(
                    src,
                    &format!("{at}.upstream_model_id"),
                    format!("{ids:?}"),
                    "must be a non-empty string or a list of non-empty strings",
                ));
            }
            let weights = match m.upstream_model_weights {
                None => vec![1.0; ids.len()],
                Some(w) => {
                    let field = format!("{at}.upstream_model_weights");
                    if w.len() != ids.len() {
                        return Err(invalid(
                            src,
                            &field,
                            format!("{w:?}"),
                            &format!(
                                "has {} weights but upstream_model_id has {} ids",
                                w.len(),
                                ids.len()
                            ),
                        ));
                    }
                    if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f64>() <= 0.0
                    {
                        return Err(invalid(
                            src,
                            &field,
                            format!("{w:?}"),
                            "weights must be non-negative with a positive sum",
                        ));
                    }
                    w
                }
            };

            // Endpoint resolution: <upstream>-F, then <type>-F, then F.
            if let Some(up) = &m.upstream {
                let names_endpoint = Format::ALL
                    .iter()
                    .any(|f| endpoint_idx.contains_key(&format!("{up}-{f}")))
                    || endpoint_idx.contains_key(up);
                if !names_endpoint {
                    return Err(invalid(
                        src,
                        &format!("{at}.upstream"),
                        quoted(up),
                        &format!(
                            "names no endpoint (expected an endpoint named {up}-openai or {up}-anthropic)"
                        ),
                    ));
                }
            }
            let mut served = HashMap::new();
            for f in Format::ALL {
                let candidates = m
                    .upstream
                    .iter()
                    .map(|u| format!("{u}-{f}"))
                    .chain([format!("{kind}-{f}"), f.as_str().to_string()]);
                for c in candidates {
                    if let Some(&idx) = endpoint_idx.get(&c) {
                        served.insert(f, idx);
                        break;
                    }
                }
            }
            if served.is_empty() {
                return Err(invalid(
                    src,
                    &format!("{at}.id"),
                    quoted(&m.id),
                    "no endpoint serves this model (looked for <upstream>-openai|anthropic, <type>-openai|anthropic, openai, anthropic)",
                ));
            }

            models.push(Model {
                name: m.name.clone().unwrap_or_else(|| m.id.clone()),
                id: m.id,
                aliases: m.id_aliases,
                kind,
                reasoning,
                thinking_budget,
                prices: Prices {
                    input: prices[0],
                    output: prices[1],
                    cache_write: prices[2],
                    cache_hit: prices[3],
                },
                upstream_ids: ids.into_iter().zip(weights).collect(),
                endpoints: served,
            });
        }

        let client_api_keys_env = self
            .client_api_keys_env
            .unwrap_or_else(|| vec!["PROXY_API_KEY".to_string()]);
        if let Some(bad) = client_api_keys_env
            .iter()
            .find(|n| n.is_empty() || n.contains('='))
        {
            return Err(invalid(
                src,
                "client_api_keys_env",
                quoted(bad),
                "must be environment variable names",
            ));
        }

        let idle_timeout = secs(src, "idle_timeout_secs", self.idle_timeout_secs, 75.0)?;
        if idle_timeout.as_secs_f64() <= NGINX_KEEPALIVE_SECS {
            return Err(invalid(
                src,
                "idle_timeout_secs",
                idle_timeout.as_secs_f64(),
                "must be longer than nginx's upstream keepalive_timeout (60 s), or nginx reuses connections goproxy is closing and answers 502",
            ));
        }
        let max_body_bytes = self.max_body_bytes.unwrap_or(10 * 1024 * 1024);
        if max_body_bytes == 0 || max_body_bytes > 1 << 30 {
            return Err(invalid(
                src,
                "max_body_bytes",
                max_body_bytes,
                "must be in 1..=1073741824",
            ));
        }

        Ok(Config {
            source: src.to_string(),
            port,
            host,
            endpoints,
            models,
            by_id,
            system_prompt: self.system_prompt.filter(|s| !s.trim().is_empty()),
            user_agent: self.user_agent.filter(|s| !s.is_empty()),
            client_api_keys_env,
            connect_timeout: secs(src, "connect_timeout_secs", self.connect_timeout_secs, 10.0)?,
            first_byte_timeout: secs(
                src,
                "first_byte_timeout_secs",
                self.first_byte_timeout_secs,
                120.0,
            )?,
            stream_idle_timeout: secs(
                src,
                "stream_idle_timeout_secs",
                self.stream_idle_timeout_secs,
                300.0,
            )?,
            sse_heartbeat: {
                let h = self.sse_heartbeat_secs.unwrap_or(15.0);
                if !h.is_finite() || !(0.0..=3600.0).contains(&h) {
                    return Err(invalid(
                        src,
                        "sse_heartbeat_secs",
                        h,
                        "must be a number of seconds in [0, 3600] (0 disables)",
                    ));
                }
                (h > 0.0).then(|| Duration::from_secs_f64(h))
            },
            max_body_bytes: max_body_bytes as usize,
            drain_timeout: secs(src, "drain_timeout_secs", self.drain_timeout_secs, 30.0)?,
            idle_timeout,
            drain_readiness_delay: {
                let d = self.drain_readiness_delay_secs.unwrap_or(0.0);
                if !d.is_finite() || !(0.0..=300.0).contains(&d) {
                    return Err(invalid(
                        src,
                        "drain_readiness_delay_secs",
                        d,
                        "must be a number of seconds in [0, 300]",
                    ));
                }
                Duration::from_secs_f64(d)
            },
            key_cooldown: secs(src, "key_cooldown_secs", self.key_cooldown_secs, 60.0)?,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "_comment": "ignored",
        "port": 8004,
        "endpoints": [
            {"name": "ohmygpt-openai", "base_url": "https://api.ohmygpt.com/v1/chat/completions", "api_key_env": "K"},
            {"name": "ohmygpt-anthropic", "base_url": "https://api.ohmygpt.com/v1/messages", "api_key_env": ["K1", "K2"]}
        ],
        "models": [
            {"id": "gpt-4o", "type": "openai", "upstream": "ohmygpt", "id_aliases": ["4o"],
             "upstream_model_id": ["a", "b"], "upstream_model_weights": [3, 1],
             "input_price_per_mtok": 2.5, "output_price_per_mtok": 10, "billing_multiplier": 2},
            {"id": "claude", "type": "anthropic", "upstream": "ohmygpt", "reasoning": "high"}
        ],
        "system_prompt": "",
        "user_agent": "goproxy"
    }"#;

    fn with(patch: impl FnOnce(&mut Value)) -> Result<Config, ConfigError> {
        let mut v: Value = serde_json::from_str(GOOD).unwrap();
        patch(&mut v);
        Config::from_json(&v.to_string(), "test.json")
    }

    fn err(patch: impl FnOnce(&mut Value)) -> String {
        with(patch)
            .expect_err("config should be refused")
            .to_string()
    }

    /// The reference file loads, resolves endpoints and applies defaults.
    #[test]
    fn good_config_loads() {
        let c = Config::from_json(GOOD, "good.json").unwrap();
        assert_eq!(c.port(), 8004);
        assert_eq!(c.host().to_string(), "0.0.0.0");
        assert_eq!(c.models().len(), 2);
        let m = c.model("4o").unwrap();
        assert_eq!(m.id, "gpt-4o");
        assert_eq!(m.prices.input, 5.0);
        assert_eq!(
            c.endpoint_for(m, Format::Anthropic).unwrap().name,
            "ohmygpt-anthropic"
        );
        assert_eq!(c.model("claude").unwrap().thinking_budget, Some(10000));
        assert_eq!(c.idle_timeout, Duration::from_secs(75));
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        assert_eq!(c.endpoints()[1].api_key_env, vec!["K1", "K2"]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(
            c.summary(),
            "config OK: good.json: port 8004, 2 endpoints, 2 models"
        );
    }

    /// Malformed JSON is reported with file, line and column.
    #[test]
    fn malformed_json_has_line_and_column() {
        let e = Config::from_json("{\n  \"port\": 8004,\n  oops\n}", "bad.json")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.json:3:3: invalid JSON"), "{e}");
    }

    #[test]
    fn port_missing_zero_too_big_or_string_is_refused() {
        let e = err(|v| {
            v.as_object_mut().unwrap().remove("port");
        });
        assert!(e.contains("test.json: port = (missing)"), "{e}");
        for (bad, shown) in [
            (serde_json::json!(0), "0"),
            (serde_json::json!(70000), "70000"),
            (serde_json::json!("8004"), "\"8004\""),
            (serde_json::json!(80.5), "80.5"),
            (serde_json::json!(-1), "-1"),
        ] {
            let e = err(|v| v["port"] = bad);
            assert!(e.contains(&format!("test.json: port = {shown}")), "{e}");
        }
    }

    #[test]
    fn upstream_naming_no_endpoint_is_refused() {
        let e = err(|v| v["models"][0]["upstream"] = "nowhere".into());
        assert!(
            e.contains("models[0].upstream = \"nowhere\": names no endpoint"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_ids_and_aliases_are_refused() {
        let e = err(|v| v["models"][1]["id"] = "gpt-4o".into());
        assert!(e.contains("models[1].id = \"gpt-4o\": duplicate"), "{e}");
        let e = err(|v| v["models"][1]["id_aliases"] = serde_json::json!(["4o"]));
        assert!(
            e.contains("models[1].id_aliases[0] = \"4o\": duplicate"),
            "{e}"
        );
    }

    #[test]
    fn non_http_base_url_is_refused() {
        let e = err(|v| v["endpoints"][0]["base_url"] = "ftp://x/y".into());
        assert!(e.contains("endpoints[0].base_url = \"ftp://x/y\""), "{e}");
        let e = err(|v| v["endpoints"][0]["base_url"] = "api.ohmygpt.com/v1".into());
        assert!(e.contains("endpoints[0].base_url"), "{e}");
    }

    #[test]
    fn weights_must_match_their_list() {
        let e = err(|v| v["models"][0]["upstream_model_weights"] = serde_json::json!([1]));
        assert!(
            e.contains("models[0].upstream_model_weights = [1.0]: has 1 weights but upstream_model_id has 2 ids"),
            "{e}"
        );
        let e = err(|v| v["models"][0]["upstream_model_weights"] = serde_json::json!([0, 0]));
        assert!(e.contains("positive sum"), "{e}");
    }

    #[test]
    fn model_no_endpoint_serves_is_refused() {
        let e = err(|v| {
            v["models"][1].as_object_mut().unwrap().remove("upstream");
            v["models"][1]["type"] = "gemini".into();
        });
        assert!(
            e.contains("models[1].id = \"claude\": no endpoint serves"),
            "{e}"
        );
    }

    #[test]
    fn idle_timeout_must_exceed_nginx_keepalive() {
        let e = err(|v| v["idle_timeout_secs"] = 60.into());
        assert!(e.contains("idle_timeout_secs = 60"), "{e}");
        assert!(e.contains("nginx"), "{e}");
    }

    #[test]
    fn unknown_keys_warn_but_load() {
        let c = with(|v| v["extra_thing"] = 1.into()).unwrap();
        assert_eq!(c.warnings, vec!["unknown key extra_thing ignored"]);
    }

    #[test]
    fn weighted_pick_only_returns_listed_ids() {
        let c = Config::from_json(GOOD, "good.json").unwrap();
        let m = c.model("gpt-4o").unwrap();
        let picks: Vec<&str> = (0..200).map(|_| m.pick_upstream_id()).collect();
        assert!(picks.iter().all(|p| *p == "a" || *p == "b"));
        assert!(picks.contains(&"a") && picks.contains(&"b"));
    }

    #[test]
    fn shipped_configs_agree_on_port_8004() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let prod = Config::load(&dir.join("config-ohmygpt-prod.json")).unwrap();
        let dev = Config::load(&dir.join("config-ohmygpt-dev.json")).unwrap();
        assert_eq!(prod.port(), 8004);
        assert_eq!(dev.port(), prod.port());
        assert!(prod.warnings.is_empty(), "{:?}", prod.warnings);
    }
}
