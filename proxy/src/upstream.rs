//! Talking to upstreams: the pooled client and key rotation on 429
//! (request rewriting is in [`crate::rename`]).
//!
//! Only URLs from the config are ever requested: the client follows no
//! redirects, ignores proxy env vars, and nothing from the client's request
//! (Host header, absolute URI, body fields) is used to build the URL.

use foldhash::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{header, HeaderMap, HeaderValue, Method, Request, Response};

use crate::auth::Secrets;
use crate::chunks::Chunks;
use crate::client::{self, HttpClient};
use crate::config::{Config, Endpoint, Format};
use crate::error::ProxyError;
use crate::upstream_body::UpstreamBody;

/// The `anthropic-version` sent when the client sent none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Upstream keys of one endpoint, rotated when one gets a 429.
#[derive(Debug)]
struct KeyRing {
    /// Each key as the header value it is sent in (`Bearer <key>` for
    /// OpenAI, the key itself for Anthropic), built once; `None` if the key
    /// cannot be a header value.
    keys: Vec<Option<HeaderValue>>,
    cooling_until: Mutex<Vec<Option<Instant>>>,
    next: AtomicUsize,
}

impl KeyRing {
    fn new(keys: &[String], format: Format) -> Self {
        let keys: Vec<_> = keys
            .iter()
            .map(|k| {
                let text = match format {
                    Format::OpenAi => format!("Bearer {k}"),
                    Format::Anthropic => k.clone(),
                };
                let mut v = HeaderValue::try_from(text).ok()?;
                v.set_sensitive(true);
                Some(v)
            })
            .collect();
        let n = keys.len();
        KeyRing {
            keys,
            cooling_until: Mutex::new(vec![None; n]),
            next: AtomicUsize::new(0),
        }
    }

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
    client: HttpClient,
    rings: HashMap<String, KeyRing>,
    cooldown: Duration,
    first_byte_timeout: Duration,
    user_agent: Option<HeaderValue>,
}

impl Upstream {
    /// Build the client from the config's timeouts.
    pub fn new(config: &Config, secrets: &Secrets) -> Result<Self, rustls::Error> {
        let rings = config
            .endpoints()
            .iter()
            .map(|e| {
                let ring = KeyRing::new(secrets.endpoint_keys(&e.name), e.format);
                (e.name.to_string(), ring)
            })
            .collect();
        Ok(Upstream {
            client: client::build(config.connect_timeout)?,
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
        body: Chunks,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let ring = self.rings.get(&*endpoint.name);
        let attempts = ring.map_or(1, |r| r.keys.len().max(1));
        let mut body = Some(body);
        for attempt in 0..attempts {
            let key_idx = match ring.map(KeyRing::pick).unwrap_or(Ok(None)) {
                Ok(k) => k,
                Err(wait) => {
                    return Err(ProxyError::RateLimited {
                        retry_after_secs: wait.as_secs().max(1),
                    })
                }
            };
            let key = match key_idx.and_then(|i| ring.map(|r| r.keys[i].as_ref())) {
                Some(None) => {
                    tracing::warn!(endpoint = %endpoint.name, "upstream key is not a valid header value");
                    return Err(ProxyError::UpstreamFailed);
                }
                Some(Some(k)) => Some(k),
                None => None,
            };
            // Cloned only while another attempt may need it: a clone of
            // a body read from the socket is an allocation (its bytes
            // become shared), and most requests are sent once.
            let this = if attempt + 1 < attempts {
                body.clone()
            } else {
                body.take()
            };
            let this = this.expect("the body is taken on the last attempt only");
            let req = self.request(endpoint, client_headers, key, this);
            let resp = self.request_head(endpoint, req).await?;
            // With several keys a 429 benches that key (for the upstream's
            // Retry-After, capped at key_cooldown) and the next one is tried.
            // A single key is never benched: the 429 goes to the client, so one
            // short upstream limit cannot block all traffic for a whole cooldown.
            if resp.status() == 429 {
                if let (Some(r), Some(i)) = (ring.filter(|r| r.keys.len() > 1), key_idx) {
                    let retry_after = resp
                        .headers()
                        .get(header::RETRY_AFTER)
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

    /// The upstream request: the headers reqwest sent before (`accept: */*`,
    /// basic auth from the URL's userinfo) plus ours (`accept-encoding:
    /// identity`, keys, user agent, Anthropic's version and beta).
    fn request(
        &self,
        endpoint: &Endpoint,
        client_headers: &HeaderMap,
        key: Option<&HeaderValue>,
        body: Chunks,
    ) -> Request<Chunks> {
        let mut req = Request::new(body);
        *req.method_mut() = Method::POST;
        *req.uri_mut() = endpoint.uri.clone();
        let h = req.headers_mut();
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        // goproxy reads usage out of the answer and writes SSE events into
        // it: a compressed body would be unreadable, and no Accept-Encoding
        // at all lets an upstream pick any coding (RFC 9110 section 12.5.3).
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(basic) = &endpoint.basic_auth {
            h.append(header::AUTHORIZATION, basic.clone());
        }
        if let Some(ua) = &self.user_agent {
            h.insert(header::USER_AGENT, ua.clone());
        }
        match endpoint.format {
            Format::OpenAi => {
                if let Some(k) = key {
                    h.append(header::AUTHORIZATION, k.clone());
                }
            }
            Format::Anthropic => {
                if let Some(k) = key {
                    h.append("x-api-key", k.clone());
                }
                let version = client_headers
                    .get("anthropic-version")
                    .cloned()
                    .unwrap_or(HeaderValue::from_static(ANTHROPIC_VERSION));
                h.insert("anthropic-version", version);
                if let Some(beta) = client_headers.get("anthropic-beta") {
                    h.insert("anthropic-beta", beta.clone());
                }
            }
        }
        req
    }

    /// Send and wait for the response head, within `first_byte_timeout`.
    async fn request_head(
        &self,
        endpoint: &Endpoint,
        req: Request<Chunks>,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        match tokio::time::timeout(self.first_byte_timeout, self.client.request(req)).await {
            Err(_) => Err(ProxyError::UpstreamTimeout),
            Ok(Err(e)) if client::is_timeout(&e) => Err(ProxyError::UpstreamTimeout),
            Ok(Err(e)) => {
                tracing::warn!(endpoint = %endpoint.name, error = %client::describe(&e), "upstream request failed");
                Err(ProxyError::UpstreamFailed)
            }
            Ok(Ok(r)) => Ok(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ring_rotates_and_reports_wait() {
        let r = KeyRing::new(&["a".into(), "b".into()], Format::OpenAi);
        let first = r.pick().unwrap().unwrap();
        r.cool(first, Duration::from_secs(30));
        let second = r.pick().unwrap().unwrap();
        assert_ne!(first, second);
        r.cool(second, Duration::from_secs(30));
        let wait = r.pick().unwrap_err();
        assert!(wait > Duration::from_secs(25));
    }
}
