//! The validated config's parts: wire formats, endpoints, models, prices.

use foldhash::HashMap;
use std::fmt;
use std::sync::Arc;

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

    /// The route requests in this format arrive on.
    pub fn route(self) -> &'static str {
        match self {
            Format::OpenAi => "/v1/chat/completions",
            Format::Anthropic => "/v1/messages",
        }
    }

    pub(crate) const ALL: [Format; 2] = [Format::OpenAi, Format::Anthropic];
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

    pub(crate) fn default_budget(self) -> u32 {
        match self {
            Reasoning::Low => 2000,
            Reasoning::Medium => 5000,
            Reasoning::High => 10000,
        }
    }
}

/// An upstream endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Name, e.g. `ohmygpt-openai` (shared: every request's log line and
    /// relay hold it, and a refcount is cheaper than a copy).
    pub name: Arc<str>,
    /// Full http(s) URL requests are POSTed to, parsed once at load (a
    /// `user:password@` in `base_url` is not part of it: see `basic_auth`).
    pub uri: http::Uri,
    /// `Authorization: Basic` from a `user:password@` in `base_url`, sent
    /// as reqwest did before (marked sensitive, so never printed).
    pub basic_auth: Option<http::HeaderValue>,
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
    /// Public id (shared, as [`Endpoint::name`] is).
    pub id: Arc<str>,
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
    pub upstream_ids: Vec<(Arc<str>, f64)>,
    /// Endpoint index per format, resolved at load time.
    pub(crate) endpoints: HashMap<Format, usize>,
}

impl Model {
    /// Pick an upstream model id, weighted at random.
    pub fn pick_upstream_id(&self) -> &Arc<str> {
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
