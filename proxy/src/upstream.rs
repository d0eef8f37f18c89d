//! Talking to upstreams: the pooled client, request rewriting (model
//! mapping, system prompt, thinking budget) and key rotation on 429.
//!
//! Only URLs from the config are ever requested: the client follows no
//! redirects, ignores proxy env vars, and nothing from the client's request
//! (Host header, absolute URI, body fields) is used to build the URL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{json, Value};

use crate::auth::Secrets;
use crate::config::{Config, Endpoint, Format, Model};
use crate::error::ProxyError;

/// The `anthropic-version` sent when the client sent none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Upstream keys of one endpoint, rotated when one gets a 429.
#[derive(Debug)]
struct KeyRing {
    keys: Vec<String>,
    cooling_until: Mutex<Vec<Option<Instant>>>,
    next: AtomicUsize,
}

impl KeyRing {
    /// A key not cooling down (round robin), or how long until one is free.
    fn pick(&self) -> Result<Option<usize>, Duration> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let now = Instant::now();
        let cooling = self.cooling_until.lock().unwrap();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.keys.len() {
            let idx = (start + i) % self.keys.len();
            match cooling[idx] {
                Some(until) if until > now => {}
                _ => return Ok(Some(idx)),
            }
        }
        let soonest = cooling.iter().flatten().min().copied().unwrap_or(now);
        Err(soonest.saturating_duration_since(now))
    }

    fn cool(&self, idx: usize, for_: Duration) {
        self.cooling_until.lock().unwrap()[idx] = Some(Instant::now() + for_);
    }
}

/// The upstream side: one pooled HTTP client and the key rings.
#[derive(Debug)]
pub struct Upstream {
    client: reqwest::Client,
    rings: HashMap<String, KeyRing>,
    cooldown: Duration,
    first_byte_timeout: Duration,
    user_agent: Option<String>,
}

impl Upstream {
    /// Build the client from the config's timeouts.
    pub fn new(config: &Config, secrets: &Secrets) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_nodelay(true)
            .build()?;
        let rings = config
            .endpoints()
            .iter()
            .map(|e| {
                let keys = secrets.endpoint_keys(&e.name).to_vec();
                let n = keys.len();
                (
                    e.name.clone(),
                    KeyRing {
                        keys,
                        cooling_until: Mutex::new(vec![None; n]),
                        next: AtomicUsize::new(0),
                    },
                )
            })
            .collect();
        Ok(Upstream {
            client,
            rings,
            cooldown: config.key_cooldown,
            first_byte_timeout: config.first_byte_timeout,
            user_agent: config.user_agent.clone(),
        })
    }

    /// POST `body` to `endpoint` and wait for the response headers. On a 429
    /// the key cools down and the next free key is tried; when none is free
    /// the 429 response (or `RateLimited`) is returned.
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        client_headers: &HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, ProxyError> {
        let ring = self.rings.get(&endpoint.name);
        let attempts = ring.map_or(1, |r| r.keys.len().max(1));
        for attempt in 0..attempts {
            let key_idx = match ring.map(KeyRing::pick).unwrap_or(Ok(None)) {
                Ok(k) => k,
                Err(wait) => {
                    return Err(ProxyError::RateLimited {
                        retry_after_secs: wait.as_secs().max(1),
                    })
                }
            };
            let key = key_idx.and_then(|i| ring.map(|r| r.keys[i].as_str()));
            let mut req = self
                .client
                .post(endpoint.url.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(ua) = &self.user_agent {
                req = req.header(http::header::USER_AGENT, ua);
            }
            match endpoint.format {
                Format::OpenAi => {
                    if let Some(k) = key {
                        req = req.bearer_auth(k);
                    }
                }
                Format::Anthropic => {
                    if let Some(k) = key {
                        req = req.header("x-api-key", k);
                    }
                    let version = client_headers
                        .get("anthropic-version")
                        .cloned()
                        .unwrap_or(http::HeaderValue::from_static(ANTHROPIC_VERSION));
                    req = req.header("anthropic-version", version);
                    if let Some(beta) = client_headers.get("anthropic-beta") {
                        req = req.header("anthropic-beta", beta.clone());
                    }
                }
            }
            let resp = match tokio::time::timeout(self.first_byte_timeout, req.send()).await {
                Err(_) => return Err(ProxyError::UpstreamTimeout),
                Ok(Err(e)) if e.is_timeout() => return Err(ProxyError::UpstreamTimeout),
                Ok(Err(e)) => {
                    tracing::warn!(endpoint = %endpoint.name, error = %e.without_url(), "upstream request failed");
                    return Err(ProxyError::UpstreamFailed);
                }
                Ok(Ok(r)) => r,
            };
            // With several keys a 429 benches that key (for the upstream's
            // Retry-After, capped at key_cooldown) and the next one is tried.
            // A single key is never benched: the 429 goes to the client, so one
            // short upstream limit cannot block all traffic for a whole cooldown.
            if resp.status() == 429 {
                if let (Some(r), Some(i)) = (ring.filter(|r| r.keys.len() > 1), key_idx) {
                    let retry_after = resp
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    r.cool(
                        i,
                        retry_after.map_or(self.cooldown, |d| d.min(self.cooldown)),
                    );
                    if attempt + 1 < attempts {
                        tracing::warn!(endpoint = %endpoint.name, key_index = i, "upstream 429; rotating key");
                        continue;
                    }
                }
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its last attempt")
    }
}

/// Rewrite a client body for the upstream: model id mapping, system prompt,
/// and (Anthropic) thinking budget with `max_tokens >= budget + 4000`.
/// Returns the upstream model id chosen.
pub fn rewrite_body(
    body: &mut serde_json::Map<String, Value>,
    model: &Model,
    format: Format,
    system_prompt: Option<&str>,
) -> String {
    let upstream_id = model.pick_upstream_id().to_string();
    body.insert("model".into(), Value::String(upstream_id.clone()));
    let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
    match format {
        Format::OpenAi => {
            if let Some(sp) = system_prompt {
                if let Some(Value::Array(msgs)) = body.get_mut("messages") {
                    msgs.insert(0, json!({"role": "system", "content": sp}));
                }
            }
            // A reasoning model gets the configured effort unless the client chose one.
            if let Some(r) = model.reasoning {
                body.entry("reasoning_effort")
                    .or_insert_with(|| Value::String(r.as_str().into()));
            }
            // Ask for usage in the stream so it can be priced.
            if streaming && !body.contains_key("stream_options") {
                body.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
        Format::Anthropic => {
            if let Some(sp) = system_prompt {
                let merged = match body.remove("system") {
                    None | Some(Value::Null) => Value::String(sp.to_string()),
                    Some(Value::String(s)) if s.is_empty() => Value::String(sp.to_string()),
                    Some(Value::String(s)) => Value::String(format!("{sp}\n\n{s}")),
                    Some(Value::Array(mut blocks)) => {
                        blocks.insert(0, json!({"type": "text", "text": sp}));
                        Value::Array(blocks)
                    }
                    Some(other) => other,
                };
                body.insert("system".into(), merged);
            }
            let client_budget = body
                .get("thinking")
                .filter(|t| t.get("type").and_then(Value::as_str) == Some("enabled"))
                .and_then(|t| t.get("budget_tokens"))
                .and_then(Value::as_u64);
            let budget = match (client_budget, model.thinking_budget) {
                (Some(b), _) => Some(b),
                (None, Some(b)) if !body.contains_key("thinking") => {
                    body.insert(
                        "thinking".into(),
                        json!({"type": "enabled", "budget_tokens": b}),
                    );
                    Some(u64::from(b))
                }
                _ => None,
            };
            if let Some(b) = budget {
                let min = b + 4000;
                let current = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(0);
                if current < min {
                    body.insert("max_tokens".into(), json!(min));
                }
            }
        }
    }
    upstream_id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_json(
            r#"{"port": 1, "endpoints": [{"name":"anthropic","base_url":"http://127.0.0.1:1/v1/messages"},
                {"name":"openai","base_url":"http://127.0.0.1:1/v1/chat/completions"}],
                "models": [{"id":"c","type":"anthropic","reasoning":"medium","upstream_model_id":"claude-up"}]}"#,
            "t",
        )
        .unwrap()
    }

    #[test]
    fn anthropic_thinking_and_max_tokens() {
        let c = config();
        let mut body = json!({"model":"c","max_tokens":1000,"system":"be brief","messages":[]});
        let id = rewrite_body(
            body.as_object_mut().unwrap(),
            c.model("c").unwrap(),
            Format::Anthropic,
            Some("SP"),
        );
        assert_eq!(id, "claude-up");
        assert_eq!(body["model"], "claude-up");
        assert_eq!(
            body["thinking"],
            json!({"type":"enabled","budget_tokens":5000})
        );
        assert_eq!(body["max_tokens"], 9000);
        assert_eq!(body["system"], "SP\n\nbe brief");
    }

    #[test]
    fn openai_system_prompt_and_stream_usage() {
        let c = config();
        let mut body =
            json!({"model":"c","stream":true,"messages":[{"role":"user","content":"hi"}]});
        rewrite_body(
            body.as_object_mut().unwrap(),
            c.model("c").unwrap(),
            Format::OpenAi,
            Some("SP"),
        );
        assert_eq!(body["messages"][0], json!({"role":"system","content":"SP"}));
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert!(body.get("thinking").is_none());
        assert_eq!(body["reasoning_effort"], "medium");
    }

    #[test]
    fn key_ring_rotates_and_reports_wait() {
        let r = KeyRing {
            keys: vec!["a".into(), "b".into()],
            cooling_until: Mutex::new(vec![None, None]),
            next: AtomicUsize::new(0),
        };
        let first = r.pick().unwrap().unwrap();
        r.cool(first, Duration::from_secs(30));
        let second = r.pick().unwrap().unwrap();
        assert_ne!(first, second);
        r.cool(second, Duration::from_secs(30));
        let wait = r.pick().unwrap_err();
        assert!(wait > Duration::from_secs(25));
    }
}
