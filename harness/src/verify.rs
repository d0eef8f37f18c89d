//! Post-deployment checks, reused after a rollback against the old port:
//! the port goproxy listens on, HTTPS through nginx, auth, a non-streamed
//! and a streamed completion verified on the mocks, nginx -> goproxy
//! routing, and a monitoring window over logs and restarts.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::check::{Checks, Phase};
use crate::files::{PROBE_MODEL, PROBE_UPSTREAM_MODEL};
use crate::probe::{mismatch, ProbeError};
use crate::stack::client::SHORT;
use crate::stack::{LogMark, Stack};
use crate::traffic::truncate;

// Re-exported: the phases name it `verify::StreamModel`.
pub use crate::stream_model::StreamModel;

/// Which goproxy instances must listen where, and which port must be gone.
#[derive(Debug, Clone)]
pub struct Expected {
    /// (compose service, port): `goproxy`, and `goproxy-b` in a
    /// multi-instance stack.
    pub instances: Vec<(&'static str, u16)>,
    /// The port no goproxy may listen on any more (None when it did not change).
    pub gone_port: Option<u16>,
}

impl Expected {
    /// goproxy on `port` (plus `goproxy-b` on `second`), `gone` no longer in use.
    pub fn new(port: u16, gone: u16, second: Option<u16>) -> Self {
        let mut instances = vec![("goproxy", port)];
        instances.extend(second.map(|p| ("goproxy-b", p)));
        Self {
            instances,
            gone_port: (gone != port).then_some(gone),
        }
    }

    /// The ports of all instances.
    pub fn ports(&self) -> Vec<u16> {
        self.instances.iter().map(|(_, p)| *p).collect()
    }
}

/// Runs every check; returns whether all passed.
pub async fn verify(
    stack: &Stack,
    checks: &mut Checks,
    phase: Phase,
    prefix: &str,
    expected: &Expected,
    model: &StreamModel,
) -> bool {
    let before = checks.results().len();
    let n = |s: &str| format!("{prefix}.{s}");
    checks
        .run(phase, &n("listening-port"), listening(stack, expected))
        .await;
    checks
        .run(
            phase,
            &n("https-health"),
            https_health(stack, &expected.ports()),
        )
        .await;
    checks
        .run(phase, &n("models-auth"), models_auth(stack))
        .await;
    checks.run(phase, &n("chat"), chat_probe(stack)).await;
    checks
        .run(phase, &n("chat-stream"), chat_stream(stack, model))
        .await;
    checks
        .run(
            phase,
            &n("internal-routing"),
            internal_routing(stack, expected),
        )
        .await;
    checks.results()[before..].iter().all(|r| r.passed())
}

async fn listening(stack: &Stack, expected: &Expected) -> Result<String, ProbeError> {
    let mut seen = Vec::new();
    for (service, port) in &expected.instances {
        let ids = stack.goproxy_ids(service).await?;
        if ids.is_empty() {
            return Err(mismatch!("no {service} instance is running"));
        }
        for id in &ids {
            let ports = stack.listening_ports(id).await?;
            let short = &id[..12.min(id.len())];
            if !ports.contains(port) {
                return Err(mismatch!(
                    "{service} {short} does not listen on {port}; it listens on {ports:?}"
                ));
            }
            if let Some(gone) = expected.gone_port.filter(|g| ports.contains(g)) {
                return Err(mismatch!(
                    "{service} {short} still listens on the old port {gone} ({ports:?})"
                ));
            }
            seen.push(format!("{service} {short} on {port}"));
        }
    }
    Ok(match expected.gone_port {
        Some(gone) => format!("{}; none on {gone}", seen.join(", ")),
        None => seen.join(", "),
    })
}

async fn https_health(stack: &Stack, ports: &[u16]) -> Result<String, ProbeError> {
    let resp = stack
        .client
        .get(stack.url("/health"))
        .timeout(SHORT)
        .send()
        .await
        .map_err(|e| ProbeError::request("GET /health through nginx failed", e))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status != 200 {
        let detail = format!(": {}", truncate(&body, 200));
        return Err(ProbeError::status(
            "GET /health through nginx",
            status,
            detail,
        ));
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|source| ProbeError::NotJson {
            what: "/health".into(),
            source,
            body: truncate(&body, 200),
        })?;
    let port = v["port"].as_u64().unwrap_or(0);
    if !ports.iter().any(|p| u64::from(*p) == port) {
        return Err(mismatch!(
            "/health answered from port {port}, expected one of {ports:?}"
        ));
    }
    Ok(format!(
        "HTTPS (SNI chat.trollllm.xyz) /health 200 from goproxy port {port}"
    ))
}

async fn models_auth(stack: &Stack) -> Result<String, ProbeError> {
    let with = stack
        .client
        .get(stack.url("/v1/models"))
        .bearer_auth(&stack.api_key)
        .timeout(SHORT)
        .send()
        .await
        .map_err(|e| ProbeError::request("GET /v1/models failed", e))?;
    let status = with.status();
    let body: serde_json::Value = with.json().await.unwrap_or_default();
    let count = body["data"].as_array().map(Vec::len).unwrap_or(0);
    if status != 200 || count == 0 {
        let detail = format!(", {count} models");
        return Err(ProbeError::status(
            "GET /v1/models with the key",
            status,
            detail,
        ));
    }
    let without = stack
        .client
        .get(stack.url("/v1/models"))
        .timeout(SHORT)
        .send()
        .await
        .map_err(|e| ProbeError::request("GET /v1/models without key failed", e))?;
    if without.status() != 401 {
        return Err(mismatch!(
            "GET /v1/models without a key answered HTTP {} instead of 401",
            without.status()
        ));
    }
    Ok(format!(
        "/v1/models: 200 with key ({count} models), 401 without"
    ))
}

/// A non-streamed completion for the probe model, which goproxy must send
/// to wiremock with the mapped upstream model id.
async fn chat_probe(stack: &Stack) -> Result<String, ProbeError> {
    let wiremock = stack.wiremock.as_ref().ok_or(ProbeError::mismatch(
        "the probe completion needs the test stack's wiremock",
    ))?;
    let guard = Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(
            serde_json::json!({"model": PROBE_UPSTREAM_MODEL}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "chatcmpl-probe", "object": "chat.completion", "model": PROBE_UPSTREAM_MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        })))
        .named("probe chat completion")
        .mount_as_scoped(wiremock)
        .await;
    let resp = stack
        .client
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(&stack.api_key)
        .json(&serde_json::json!({
            "model": PROBE_MODEL,
            "messages": [{"role": "user", "content": "ping"}],
        }))
        .send()
        .await
        .map_err(|e| ProbeError::request("POST /v1/chat/completions failed", e))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let received = guard.received_requests().await;
    if status != 200 {
        let detail = format!(
            ": {} (wiremock saw {} matching requests)",
            truncate(&body, 200),
            received.len()
        );
        return Err(ProbeError::status(
            "chat completion through nginx",
            status,
            detail,
        ));
    }
    if received.len() != 1 {
        return Err(mismatch!(
            "wiremock expected 1 request with model {PROBE_UPSTREAM_MODEL}, saw {}",
            received.len()
        ));
    }
    Ok(format!(
        "200 through nginx; wiremock received model {PROBE_MODEL} mapped to {PROBE_UPSTREAM_MODEL}"
    ))
}

/// A streamed completion: chunks must arrive spread out in time (not
/// buffered), and the mock must have received the mapped model id.
async fn chat_stream(stack: &Stack, model: &StreamModel) -> Result<String, ProbeError> {
    let started = Instant::now();
    let resp = stack
        .client
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(&stack.api_key)
        .json(&serde_json::json!({
            "model": model.id, "stream": true,
            "messages": [{"role": "user", "content": "count to five"}],
        }))
        .send()
        .await
        .map_err(|e| ProbeError::request("streamed chat failed", e))?;
    let status = resp.status();
    if status != 200 {
        let body = resp.text().await.unwrap_or_default();
        let detail = format!(": {}", truncate(&body, 200));
        return Err(ProbeError::status("streamed chat", status, detail));
    }
    let (arrivals, text) = read_stream(resp, started).await?;
    if !text.contains("data: [DONE]") {
        return Err(mismatch!(
            "stream ended without [DONE]: {}",
            truncate(&text, 200)
        ));
    }
    let (first, last) = spread_out(&arrivals)?;
    let last_model = mock_last_model(stack).await?;
    if !model.upstream_ids.contains(&last_model) {
        return Err(mismatch!(
            "the mock received model `{last_model}`, expected one of {:?}",
            model.upstream_ids
        ));
    }
    Ok(format!(
        "{} chunks over {:.0} ms (first after {:.0} ms); mock received {} for {}",
        arrivals.len(),
        (last - first).as_secs_f64() * 1000.0,
        first.as_secs_f64() * 1000.0,
        last_model,
        model.id
    ))
}

/// The stream's whole text, and when each piece arrived after `started`.
async fn read_stream(
    resp: reqwest::Response,
    started: Instant,
) -> Result<(Vec<Duration>, String), ProbeError> {
    let mut arrivals = Vec::new();
    let mut text = String::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ProbeError::request(format!("stream broke after {} chunks", arrivals.len()), e)
        })?;
        arrivals.push(started.elapsed());
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    Ok((arrivals, text))
}

/// The first and last arrival, when the pieces came spread out in time: a
/// stream that arrives all at once was buffered by nginx or goproxy.
fn spread_out(arrivals: &[Duration]) -> Result<(Duration, Duration), ProbeError> {
    let first = arrivals.first().copied().unwrap_or_default();
    let last = arrivals.last().copied().unwrap_or_default();
    if arrivals.len() < 3 || last - first < Duration::from_millis(50) {
        return Err(mismatch!(
            "stream arrived in {} piece(s) within {:?}: buffered somewhere on the way",
            arrivals.len(),
            last - first
        ));
    }
    Ok((first, last))
}

/// The model id the mock upstream received in its last chat request.
async fn mock_last_model(stack: &Stack) -> Result<String, ProbeError> {
    let recorded: serde_json::Value = reqwest::get(stack.mock_url("/__mock/requests"))
        .await
        .map_err(|e| ProbeError::request("cannot read the mock's requests", e))?
        .json()
        .await
        .map_err(|e| ProbeError::request("mock requests are not JSON", e))?;
    Ok(recorded
        .as_array()
        .and_then(|a| a.iter().rev().find(|r| r["path"] == "/v1/chat/completions"))
        .and_then(|r| r["body"]["model"].as_str())
        .unwrap_or("")
        .to_string())
}

/// nginx reaches each goproxy by its name on its port (Docker DNS for
/// containers; loopback for local processes).
async fn internal_routing(stack: &Stack, expected: &Expected) -> Result<String, ProbeError> {
    let mut seen = Vec::new();
    for (service, port) in &expected.instances {
        seen.push(stack.get_goproxy_as_nginx(service, *port).await?);
    }
    Ok(format!("as nginx reaches goproxy: {}", seen.join(", ")))
}

/// Whether goproxy can open a TCP connection to the mock upstream:
/// separates "the upstream is down" from "the deployment broke".
pub async fn upstream_reachable(stack: &Stack) -> Result<String, ProbeError> {
    stack
        .upstream_reachable()
        .await
        .map_err(|source| ProbeError::UpstreamDown { source })
}

/// Watches the deployment for `window`: /health through nginx every second,
/// then no error lines in the logs since `since` and no restarts.
pub async fn monitor(
    stack: &Stack,
    window: Duration,
    since: &LogMark,
) -> Result<String, ProbeError> {
    let started = Instant::now();
    let mut polls = 0u32;
    let mut bad = Vec::new();
    loop {
        polls += 1;
        match stack
            .client
            .get(stack.url("/health"))
            .timeout(SHORT)
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => {}
            Ok(r) => bad.push(format!(
                "HTTP {} at {:.0}s",
                r.status(),
                started.elapsed().as_secs_f64()
            )),
            Err(e) => bad.push(format!("{e} at {:.0}s", started.elapsed().as_secs_f64())),
        }
        if started.elapsed() >= window {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1).min(window)).await;
    }
    if !bad.is_empty() {
        return Err(mismatch!(
            "{} of {polls} health polls failed: {}",
            bad.len(),
            bad.join("; ")
        ));
    }
    let mut errors = Vec::new();
    for (service, logs) in stack.logs_since(since).await? {
        errors.extend(
            logs.lines()
                .filter(|l| is_error_line(l))
                .take(3)
                .map(|l| format!("{service}: {}", truncate(l, 200))),
        );
    }
    let restarts = stack.restarts().await?;
    if !errors.is_empty() || restarts > 0 {
        return Err(mismatch!(
            "{restarts} restarts; error lines: {}",
            errors.join(" | ")
        ));
    }
    Ok(format!(
        "{polls} health polls over {:.0}s all 200; no error lines, no restarts",
        window.as_secs_f64()
    ))
}

/// An error line in nginx's or goproxy's (text or JSON) logs.
pub fn is_error_line(line: &str) -> bool {
    [
        "[error]",
        "[crit]",
        "[alert]",
        "[emerg]",
        " ERROR ",
        "\"level\":\"ERROR\"",
    ]
    .iter()
    .any(|m| line.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nginx and goproxy error lines are caught; info lines are not.
    #[test]
    fn recognises_error_lines() {
        assert!(is_error_line(
            "2026/11/25 19:00:00 [error] 29#29: *1 connect() failed"
        ));
        assert!(is_error_line(
            r#"{"timestamp":"x","level":"ERROR","message":"boom"}"#
        ));
        assert!(is_error_line(
            "2026-11-25T19:00:00Z ERROR goproxy: upstream reset"
        ));
        assert!(!is_error_line(
            r#"{"level":"INFO","message":"request","status":200}"#
        ));
        assert!(!is_error_line(
            "2026/11/25 [notice] 1#1: signal process started"
        ));
    }
}
