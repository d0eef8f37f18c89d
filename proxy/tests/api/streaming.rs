//! SSE relay against the streaming mock-upstream.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mock_upstream::{Fault, MockConfig};
use serde_json::json;

use crate::helpers::{config_with, spawn_proxy, wait_for, Logs, DEFAULT_CONFIG, UPSTREAM_KEY};
use crate::raw::Script;

/// Read a whole streamed body, noting when the first chunk arrived.
async fn read_stream(r: reqwest::Response, started: Instant) -> (Duration, Duration, String) {
    let mut first = None;
    let mut body = Vec::new();
    let mut s = r.bytes_stream();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("stream never hangs")
    {
        let chunk = chunk.expect("client stream ends cleanly");
        first.get_or_insert_with(|| started.elapsed());
        body.extend_from_slice(&chunk);
    }
    (
        first.unwrap_or_default(),
        started.elapsed(),
        String::from_utf8(body).unwrap(),
    )
}

/// The first SSE chunk reaches the client long before the upstream has
/// finished: measured, with 10 chunks 150 ms apart (~1.35 s in total).
#[tokio::test]
async fn sse_chunks_arrive_as_the_upstream_sends_them() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    p.mock.set_config(MockConfig {
        chunks: 10,
        chunk_delay: Duration::from_millis(150),
        ..MockConfig::default()
    });
    let started = Instant::now();
    let r = p
        .post("/v1/chat/completions", json!({"model": "stream-gpt", "stream": true, "messages": [{"role": "user", "content": "one two three"}]}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-accel-buffering"], "no");
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert!(r.headers().get("content-length").is_none());
    let (first, total, body) = read_stream(r, started).await;
    eprintln!("time to first chunk {first:?}, total {total:?}");
    assert!(total >= Duration::from_millis(1300), "{total:?}");
    assert!(
        first < total / 5,
        "first chunk at {first:?} of {total:?}: buffered?"
    );
    assert!(body.contains("data: [DONE]"), "{body}");

    // The mock saw the mapped request with the upstream key and usage asked for.
    let req = &p.mock.requests()[0];
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert_eq!(req.body["stream_options"]["include_usage"], true);

    // Usage was read from the stream and priced into the metrics.
    let m = p.metrics().await;
    assert!(
        m.contains("goproxy_tokens_total{model=\"stream-gpt\",kind=\"output\"} 10"),
        "{m}"
    );
    assert!(m.contains("goproxy_open_streams 0"), "{m}");
    p.shutdown().await;
}

/// Anthropic streams: usage from message_start / message_delta, priced with
/// billing_multiplier.
#[tokio::test]
async fn anthropic_stream_usage_is_priced() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    p.mock.set_config(MockConfig {
        chunks: 4,
        chunk_delay: Duration::from_millis(10),
        ..MockConfig::default()
    });
    let started = Instant::now();
    let r = p
        .post("/v1/messages", json!({"model": "stream-claude", "stream": true, "max_tokens": 10, "messages": [{"role": "user", "content": "a b"}]}))
        .await;
    assert_eq!(r.status(), 200);
    let (_, _, body) = read_stream(r, started).await;
    assert!(body.contains("event: message_stop"), "{body}");
    let m = p.metrics().await;
    assert!(
        m.contains("goproxy_tokens_total{model=\"stream-claude\",kind=\"output\"} 4"),
        "{m}"
    );
    let input: u64 = m
        .lines()
        .find(|l| l.starts_with("goproxy_tokens_total{model=\"stream-claude\",kind=\"input\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(input > 0);
    let cost: f64 = m
        .lines()
        .find(|l| l.starts_with("goproxy_cost_total{model=\"stream-claude\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    let expected = (input as f64 * 3.0 * 2.0 + 4.0 * 15.0 * 2.0) / 1e6;
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    p.shutdown().await;
}

/// An upstream that resets mid-stream ends the client stream with a
/// sanitized error event, promptly.
#[tokio::test]
async fn reset_mid_stream_ends_with_error_event() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    p.mock.set_config(MockConfig {
        chunks: 10,
        chunk_delay: Duration::from_millis(20),
        fault: Fault::ResetAfterChunks(2),
        ..MockConfig::default()
    });
    for (route, model) in [
        ("/v1/chat/completions", "stream-gpt"),
        ("/v1/messages", "stream-claude"),
    ] {
        let started = Instant::now();
        let r = p
            .post(
                route,
                json!({"model": model, "stream": true, "max_tokens": 5, "messages": []}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let (_, total, body) = read_stream(r, started).await;
        assert!(total < Duration::from_secs(3), "{total:?}");
        assert!(
            body.contains("the upstream stream was interrupted"),
            "{route}: {body}"
        );
        assert!(!body.contains("[DONE]"), "{body}");
        assert!(body.ends_with("\n\n"), "{body:?}");
        if route == "/v1/messages" {
            assert!(body.contains("event: error\ndata: {\"error\""), "{body}");
        }
    }
    p.shutdown().await;
}

/// Upstream 5xx on a streaming request: 502 JSON, not a stream.
#[tokio::test]
async fn upstream_status_on_stream_request_is_mapped() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    p.mock.set_config(MockConfig {
        fault: Fault::Status(503),
        ..MockConfig::default()
    });
    let r = p
        .post(
            "/v1/messages",
            json!({"model": "stream-claude", "stream": true, "messages": []}),
        )
        .await;
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["message"], "the upstream service failed");
    p.shutdown().await;
}

/// A hanging upstream is a 504 after first_byte_timeout, not a hang.
#[tokio::test]
async fn hanging_upstream_is_504() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    p.mock.set_config(MockConfig {
        fault: Fault::Hang,
        ..MockConfig::default()
    });
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        p.post(
            "/v1/chat/completions",
            json!({"model": "stream-gpt", "stream": true, "messages": []}),
        ),
    )
    .await
    .expect("no hang");
    assert_eq!(r.status(), 504);
    p.shutdown().await;
}

/// With reading on turned off, a client that disconnects mid-stream makes
/// goproxy drop the upstream response at once, so the upstream sees its
/// connection close (by default the answer is read on for its usage:
/// `read_on.rs`).
#[tokio::test]
async fn client_disconnect_cancels_upstream() {
    let p = spawn_proxy(&config_with("\"read_on_after_disconnect_secs\": 0")).await;
    let r = p
        .post(
            "/v1/chat/completions",
            json!({"model": "slow-gpt", "stream": true, "messages": []}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    let first = s.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    assert_eq!(
        p.slow.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert!(!p.slow.peer_closed.load(std::sync::atomic::Ordering::SeqCst));
    drop(s);
    wait_for(
        "the upstream connection to be closed",
        Duration::from_secs(5),
        || async {
            p.slow
                .peer_closed
                .load(std::sync::atomic::Ordering::SeqCst)
                .then_some(())
        },
    )
    .await;
    let m = wait_for("open streams back to 0", Duration::from_secs(5), || async {
        let m = p.metrics().await;
        m.contains("goproxy_open_streams 0").then_some(m)
    })
    .await;
    assert!(m.contains("goproxy_open_streams 0"));
    p.shutdown().await;
}

/// A silent upstream gets `: ping` comments relayed between events (for
/// nginx's proxy_read_timeout), and the stream still completes. Paused
/// time: the 4.5 s gaps pass at once.
#[tokio::test(start_paused = true)]
async fn silent_stream_gets_heartbeats_between_events() {
    let config = DEFAULT_CONFIG.replace(
        "\"stream_idle_timeout_secs\": 1",
        "\"stream_idle_timeout_secs\": 10, \"sse_heartbeat_secs\": 1",
    );
    let p = spawn_proxy(&config).await;
    p.mock.set_config(MockConfig {
        chunks: 2,
        chunk_delay: Duration::from_millis(4500),
        ..MockConfig::default()
    });
    let started = Instant::now();
    let r = p
        .post(
            "/v1/messages",
            json!({"model": "stream-claude", "stream": true, "messages": []}),
        )
        .await;
    let (_, _, body) = read_stream(r, started).await;
    let pings = body.matches("\n: ping\n\n").count();
    assert!(pings >= 2, "{pings} pings in {body}");
    assert!(body.contains("event: message_stop"), "{body}");
    // Every ping sits between two events, never inside one.
    for (i, _) in body.match_indices("\n: ping\n") {
        assert!(
            body[..=i].ends_with("\n\n"),
            "ping inside an event at {i}: {body}"
        );
    }
    p.shutdown().await;
}

/// A stream whose upstream goes silent past stream_idle_timeout ends with
/// a sanitized "stalled" error event instead of hanging.
#[tokio::test]
async fn stalled_stream_ends_with_error_event() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    p.mock.set_config(MockConfig {
        chunks: 3,
        chunk_delay: Duration::from_secs(3),
        ..MockConfig::default()
    });
    let started = Instant::now();
    let r = p
        .post(
            "/v1/chat/completions",
            json!({"model": "stream-gpt", "stream": true, "messages": []}),
        )
        .await;
    let (_, total, body) = read_stream(r, started).await;
    assert!(total < Duration::from_millis(2500), "{total:?}");
    assert!(body.contains("the upstream stream stalled"), "{body}");
    p.shutdown().await;
}

/// An upstream that answered 200 and then reported a failure in an event
/// of its stream (OpenAI's shape, Anthropic's, vLLM's) before ending it:
/// the client gets the event as sent, the line's outcome says
/// `upstream_error_event` instead of `complete`, `/metrics` counts it, and
/// a warning gives the upstream's words with its key redacted.
#[tokio::test]
async fn an_error_event_in_a_stream_is_logged_as_one() {
    let (logs, _guard) = Logs::capture();
    let errors = [
        format!("data: {{\"error\":{{\"message\":\"The server had an error (key {UPSTREAM_KEY})\",\"type\":\"server_error\"}}}}\n\n"),
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n".to_owned(),
        "data: {\"object\":\"error\",\"message\":\"engine died\",\"code\":500}\n\n".to_owned(),
    ];
    for (n, error) in errors.iter().enumerate() {
        // A proxy each: the raw upstream answers once a connection.
        let p = spawn_proxy(DEFAULT_CONFIG).await;
        p.raw.set(Script {
            content_type: "text/event-stream",
            chunk: b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n"
                .to_vec(),
            chunks: 2,
            gap: Duration::from_millis(20),
            last: error.as_bytes().to_vec(),
            ..Script::default()
        });
        let r = p
            .post(
                "/v1/chat/completions",
                json!({"model": "raw-gpt", "stream": true, "messages": []}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let (_, _, body) = read_stream(r, Instant::now()).await;
        assert!(body.ends_with(error.as_str()), "{body}");
        wait_for("the stream's line", Duration::from_secs(5), || async {
            let text = logs.text();
            (text.matches("stream finished").count() > n).then_some(())
        })
        .await;
        let m = p.metrics().await;
        let counted = "goproxy_upstream_error_answers_total{model=\"raw-gpt\",kind=\"event\"} 1";
        assert!(m.contains(counted), "{m}");
    }
    let text = logs.text();
    let outcomes = text.matches("outcome=\"upstream_error_event\"").count();
    assert_eq!(outcomes, errors.len(), "{text}");
    assert!(!text.contains("outcome=\"complete\""), "{text}");
    let warnings: Vec<_> = text
        .lines()
        .filter(|l| l.contains("upstream sent an error event in its stream"))
        .collect();
    assert_eq!(warnings.len(), errors.len(), "{text}");
    for words in ["The server had an error", "Overloaded", "engine died"] {
        assert!(
            warnings.iter().any(|l| l.contains(words)),
            "{words}: {text}"
        );
    }
    assert!(!text.contains(UPSTREAM_KEY), "{text}");
}

/// The same for a non-streamed answer: a `200` whose body is an error
/// object is passed on as sent, logged with outcome `upstream_error_body`,
/// counted, and warned of with the upstream's words redacted; a `200`
/// answer without usage stays `complete`.
#[tokio::test]
async fn an_error_body_in_a_200_is_logged_as_one() {
    let (logs, _guard) = Logs::capture();
    let error = format!(
        "{{\"error\":{{\"message\":\"no capacity for key {UPSTREAM_KEY}\",\"code\":503}}}}"
    );
    for (n, body) in [error.as_str(), "{\"choices\":[]}"].into_iter().enumerate() {
        let p = spawn_proxy(DEFAULT_CONFIG).await;
        let r = p
            .raw_completion(Script {
                chunk: body.as_bytes().to_vec(),
                ..Script::default()
            })
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), body);
        wait_for("the answer's line", Duration::from_secs(5), || async {
            (logs.text().matches("outcome=").count() > n).then_some(())
        })
        .await;
        let m = p.metrics().await;
        let counted = "goproxy_upstream_error_answers_total{model=\"raw-gpt\",kind=\"body\"} 1";
        assert_eq!(m.contains(counted), n == 0, "{m}");
    }
    let text = logs.text();
    assert_eq!(
        text.matches("outcome=\"upstream_error_body\"").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("outcome=\"complete\"").count(), 1, "{text}");
    let warning = text
        .lines()
        .find(|l| l.contains("upstream answered a success status with an error body"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(warning.contains("no capacity for key"), "{warning}");
    assert!(!text.contains(UPSTREAM_KEY), "{text}");
}
