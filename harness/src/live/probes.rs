//! The design's post-deployment requests against a live deployment, as a
//! client sends them: `/health`, `/v1/models` with and without the key, one
//! real non-streamed completion and one streamed (time to first chunk, the
//! longest gap, `[DONE]`), then a monitoring window of health polls.
//!
//! Evidence names the key's variable, never its value.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::target::Target;
use crate::probe::{mismatch, ProbeError};
use crate::stack::client::SHORT;
use crate::traffic::truncate;

/// GET /health: 200 and goproxy's JSON (with the port it listens on).
pub async fn health(t: &Target) -> Result<(String, Option<u16>), ProbeError> {
    let started = Instant::now();
    let resp = t
        .client
        .get(t.url("/health"))
        .timeout(SHORT)
        .send()
        .await
        .map_err(|e| ProbeError::NoAnswer {
            what: "GET /health".into(),
            why: Target::explain(&e),
        })?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status != 200 {
        let detail = format!("{}: {}", bad_gateway_hint(status), truncate(&body, 200));
        return Err(ProbeError::status("GET /health", status, detail));
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let port = v["port"].as_u64().and_then(|p| u16::try_from(p).ok());
    Ok((
        format!(
            "GET /health 200 in {:.0} ms: status {}, goproxy port {}",
            started.elapsed().as_secs_f64() * 1000.0,
            v["status"].as_str().unwrap_or("?"),
            port.map_or("?".to_string(), |p| p.to_string())
        ),
        port,
    ))
}

fn bad_gateway_hint(status: reqwest::StatusCode) -> &'static str {
    match status.as_u16() {
        502 | 504 => " (nginx cannot reach goproxy)",
        503 => " (goproxy is draining or not ready)",
        _ => "",
    }
}

/// /v1/models: 200 with the key (returns the ids), 401 without.
pub async fn models(t: &Target) -> Result<(String, Vec<String>), ProbeError> {
    let ids = models_with_key(t).await?;
    refused_without_key(t).await?;
    Ok((
        format!(
            "/v1/models: 200 with the key from ${} ({} models), 401 without",
            t.api_key_env,
            ids.len()
        ),
        ids,
    ))
}

/// The model ids /v1/models lists with the client key: at least one.
async fn models_with_key(t: &Target) -> Result<Vec<String>, ProbeError> {
    let with = t
        .client
        .get(t.url("/v1/models"))
        .bearer_auth(&t.api_key)
        .timeout(SHORT)
        .send()
        .await
        .map_err(|e| ProbeError::NoAnswer {
            what: "GET /v1/models".into(),
            why: Target::explain(&e),
        })?;
    let status = with.status();
    if status == 401 || status == 403 {
        return Err(mismatch!(
            "GET /v1/models with the key from ${}: HTTP {status}: goproxy refused the key \
             (wrong client key: it must equal goproxy's PROXY_API_KEY)",
            t.api_key_env
        ));
    }
    let body: serde_json::Value = with.json().await.unwrap_or_default();
    let ids: Vec<String> = body["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if status != 200 || ids.is_empty() {
        let detail = format!(", {} models", ids.len());
        return Err(ProbeError::status(
            "GET /v1/models with the key",
            status,
            detail,
        ));
    }
    Ok(ids)
}

/// /v1/models without a key must be refused with 401: else the API is open.
async fn refused_without_key(t: &Target) -> Result<(), ProbeError> {
    let without = t
        .client
        .get(t.url("/v1/models"))
        .timeout(SHORT)
        .send()
        .await
        .map_err(|e| ProbeError::NoAnswer {
            what: "GET /v1/models without a key".into(),
            why: Target::explain(&e),
        })?;
    if without.status() != 401 {
        return Err(mismatch!(
            "GET /v1/models without a key answered HTTP {} instead of 401: the API is open",
            without.status()
        ));
    }
    Ok(())
}

fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Reply with the single word: pong"}],
    })
}

/// POST a completion; the response if it is a 200, else the status with
/// the 502 hint and the start of the body. `sending` names the request
/// when nothing answered, `what` the answer ("completion for MODEL").
async fn post_chat(
    t: &Target,
    model: &str,
    stream: bool,
    sending: &str,
    what: &str,
) -> Result<reqwest::Response, ProbeError> {
    let resp = t
        .client
        .post(t.url("/v1/chat/completions"))
        .bearer_auth(&t.api_key)
        .json(&chat_body(model, stream))
        .send()
        .await
        .map_err(|e| ProbeError::NoAnswer {
            what: sending.into(),
            why: Target::explain(&e),
        })?;
    let status = resp.status();
    if status != 200 {
        let body = resp.text().await.unwrap_or_default();
        let detail = format!("{}: {}", bad_gateway_hint(status), truncate(&body, 200));
        return Err(ProbeError::status(
            format!("{what} for {model}"),
            status,
            detail,
        ));
    }
    Ok(resp)
}

/// One real non-streamed completion.
pub async fn chat(t: &Target, model: &str) -> Result<String, ProbeError> {
    let started = Instant::now();
    let resp = post_chat(t, model, false, "POST /v1/chat/completions", "completion").await?;
    let body = resp.text().await.unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|source| ProbeError::NotJson {
            what: "completion".into(),
            source,
            body: truncate(&body, 200),
        })?;
    if v["choices"].as_array().is_none_or(|c| c.is_empty()) {
        return Err(mismatch!(
            "completion for {model} has no choices: {}",
            truncate(&body, 200)
        ));
    }
    Ok(format!(
        "completion for {model}: 200 in {:.0} ms, {} completion tokens",
        started.elapsed().as_secs_f64() * 1000.0,
        v["usage"]["completion_tokens"]
    ))
}

/// One real streamed completion, read to its end.
pub async fn chat_stream(t: &Target, model: &str) -> Result<String, ProbeError> {
    let started = Instant::now();
    let resp = post_chat(t, model, true, "streamed completion", "streamed completion").await?;
    let (timing, text) = read_tail(resp, started).await?;
    if text.contains("event: error") {
        return Err(mismatch!(
            "the stream carried an error event: {}",
            truncate(&text, 300)
        ));
    }
    if !text.contains("data: [DONE]") {
        return Err(mismatch!(
            "the stream ended without `data: [DONE]` after {} chunks: {}",
            timing.chunks,
            truncate(&text, 200)
        ));
    }
    Ok(format!(
        "stream for {model}: {} chunks, first after {:.0} ms, longest gap {:.0} ms, \
         [DONE] after {:.0} ms",
        timing.chunks,
        timing.first.as_secs_f64() * 1000.0,
        timing.longest_gap.as_secs_f64() * 1000.0,
        timing.last.as_secs_f64() * 1000.0
    ))
}

/// Reads a stream to its end: when its chunks arrived (after `started`),
/// and the tail of its text.
async fn read_tail(
    resp: reqwest::Response,
    started: Instant,
) -> Result<(StreamTiming, String), ProbeError> {
    let mut timing = StreamTiming::default();
    let mut text = String::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            mismatch!(
                "the stream broke after {} chunks and {:.1} s: {}",
                timing.chunks,
                started.elapsed().as_secs_f64(),
                Target::explain(&e)
            )
        })?;
        timing.arrived(started.elapsed());
        // Only the tail is kept: enough to find `[DONE]` and an error event.
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.len() > 4096 {
            text.drain(..text.len() - 2048);
        }
    }
    Ok((timing, text))
}

/// Arrival times of a stream's chunks.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamTiming {
    pub chunks: u64,
    pub first: Duration,
    pub last: Duration,
    pub longest_gap: Duration,
}

impl StreamTiming {
    pub fn arrived(&mut self, at: Duration) {
        if self.chunks == 0 {
            self.first = at;
        } else {
            self.longest_gap = self.longest_gap.max(at.saturating_sub(self.last));
        }
        self.last = at;
        self.chunks += 1;
    }
}

/// Health polls once a second for `window`: every answer 200, with the
/// error rate and latencies in the evidence.
pub async fn monitor(t: &Target, window: Duration) -> Result<String, ProbeError> {
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut polls = 0u32;
    loop {
        polls += 1;
        let t0 = Instant::now();
        match t.client.get(t.url("/health")).timeout(SHORT).send().await {
            Ok(r) if r.status() == 200 => latencies.push(t0.elapsed()),
            Ok(r) => failures.push(format!(
                "HTTP {} at {:.0} s",
                r.status(),
                started.elapsed().as_secs_f64()
            )),
            Err(e) => failures.push(format!(
                "{} at {:.0} s",
                Target::explain(&e),
                started.elapsed().as_secs_f64()
            )),
        }
        if started.elapsed() >= window {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1).min(window)).await;
    }
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let figures = format!(
        "{polls} health polls over {:.0} s, {} failed ({:.1}% errors), latency p50 {:.0} ms, \
         p95 {:.0} ms, max {:.0} ms",
        window.as_secs_f64(),
        failures.len(),
        100.0 * failures.len() as f64 / f64::from(polls),
        pick(0.5),
        pick(0.95),
        pick(1.0)
    );
    if failures.is_empty() {
        Ok(figures)
    } else {
        failures.truncate(5);
        Err(mismatch!("{figures}: {}", failures.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first chunk's time, the longest gap between two, and the last.
    #[test]
    fn stream_timing_tracks_first_gap_last() {
        let mut t = StreamTiming::default();
        for ms in [120, 150, 900, 950] {
            t.arrived(Duration::from_millis(ms));
        }
        assert_eq!(t.chunks, 4);
        assert_eq!(t.first, Duration::from_millis(120));
        assert_eq!(t.longest_gap, Duration::from_millis(750));
        assert_eq!(t.last, Duration::from_millis(950));
    }
}
