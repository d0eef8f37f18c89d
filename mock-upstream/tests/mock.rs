//! The mock upstream seen from a client: streams arrive spaced out, faults
//! happen as configured, requests are recorded.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mock_upstream::{Fault, MockConfig, MockUpstream};
use serde_json::{json, Value};

async fn start(config: MockConfig) -> MockUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    MockUpstream::start(listener, config).await.unwrap()
}

/// Reads a streamed body, returning each network chunk with its arrival time
/// since the request was sent.
async fn timed_chunks(response: reqwest::Response, sent: Instant) -> Vec<(Duration, String)> {
    let mut out = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("stream broke");
        out.push((sent.elapsed(), String::from_utf8_lossy(&chunk).into_owned()));
    }
    out
}

fn data_events(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// An OpenAI stream is delivered chunk by chunk, spaced by `chunk_delay`,
/// and ends with usage and `[DONE]`.
#[tokio::test]
async fn openai_stream_arrives_spaced_out_with_usage() {
    let mock = start(MockConfig {
        chunks: 5,
        chunk_delay: Duration::from_millis(100),
        ..MockConfig::default()
    })
    .await;
    let sent = Instant::now();
    let response = reqwest::Client::new()
        .post(mock.url("/v1/chat/completions"))
        .json(&json!({"model": "gpt-x", "stream": true,
                      "messages": [{"role": "user", "content": "hello there"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let chunks = timed_chunks(response, sent).await;

    let first = chunks.iter().find(|(_, c)| c.contains("tok0")).unwrap().0;
    let last = chunks.iter().find(|(_, c)| c.contains("tok4")).unwrap().0;
    assert!(
        last - first >= Duration::from_millis(350),
        "4 gaps of 100 ms should separate tok0 and tok4, got {:?}",
        last - first
    );

    let text: String = chunks.into_iter().map(|(_, c)| c).collect();
    assert!(text.contains("\n: ping\n"), "a comment heartbeat is sent");
    let events = data_events(&text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let usage_event: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage_event["model"], "gpt-x");
    assert_eq!(usage_event["usage"]["prompt_tokens"], 2);
    assert_eq!(usage_event["usage"]["completion_tokens"], 5);
}

/// An Anthropic stream has the documented event sequence and usage fields.
#[tokio::test]
async fn anthropic_stream_has_the_event_sequence() {
    let mock = start(MockConfig {
        chunks: 3,
        chunk_delay: Duration::from_millis(1),
        ..MockConfig::default()
    })
    .await;
    let text = reqwest::Client::new()
        .post(mock.url("/v1/messages"))
        .json(
            &json!({"model": "claude-x", "stream": true, "max_tokens": 10,
                      "messages": [{"role": "user", "content": "one two three"}]}),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .filter(|e| *e != "ping")
        .collect();
    assert_eq!(
        events,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let data = data_events(&text);
    let start: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(start["message"]["model"], "claude-x");
    assert_eq!(start["message"]["usage"]["input_tokens"], 3);
    let delta: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 3);
}

/// Without `stream`, both routes answer one JSON document with usage.
#[tokio::test]
async fn non_streamed_answers_are_json_with_usage() {
    let mock = start(MockConfig::default()).await;
    let client = reqwest::Client::new();
    let openai: Value = client
        .post(mock.url("/v1/chat/completions"))
        .json(&json!({"model": "m1", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openai["object"], "chat.completion");
    assert_eq!(openai["model"], "m1");
    assert_eq!(openai["usage"]["completion_tokens"], 8);

    let anthropic: Value = client
        .post(mock.url("/v1/messages"))
        .json(&json!({"model": "m2", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(anthropic["type"], "message");
    assert_eq!(anthropic["model"], "m2");
    assert_eq!(anthropic["usage"]["output_tokens"], 8);
}

/// Requests are recorded with headers and JSON body; admin calls are not.
#[tokio::test]
async fn requests_are_recorded_and_can_be_cleared() {
    let mock = start(MockConfig::default()).await;
    let client = reqwest::Client::new();
    client
        .post(mock.url("/v1/chat/completions"))
        .bearer_auth("sk-upstream")
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    client.get(mock.url("/health")).send().await.unwrap();

    let recorded = mock.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].method, "POST");
    assert_eq!(recorded[0].path, "/v1/chat/completions");
    assert_eq!(
        recorded[0].header("Authorization"),
        Some("Bearer sk-upstream")
    );
    assert_eq!(recorded[0].body["model"], "m");

    let over_http: Value = client
        .get(mock.url("/__mock/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http[0]["body"]["model"], "m");

    let status = client
        .delete(mock.url("/__mock/requests"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    assert!(mock.requests().is_empty());
}

/// Only the newest `MAX_RECORDED` requests are kept: a bench sending
/// millions of requests through one mock must not grow it without bound.
#[tokio::test]
async fn recorded_requests_are_bounded_to_the_newest() {
    let mock = start(MockConfig::default()).await;
    let client = reqwest::Client::new();
    let extra = 3;
    for i in 0..mock_upstream::MAX_RECORDED + extra {
        client
            .post(mock.url("/v1/chat/completions"))
            .json(&json!({"model": format!("m{i}"), "messages": []}))
            .send()
            .await
            .unwrap();
    }
    let recorded = mock.requests();
    assert_eq!(recorded.len(), mock_upstream::MAX_RECORDED);
    assert_eq!(recorded[0].body["model"], format!("m{extra}"));
    let last = mock_upstream::MAX_RECORDED + extra - 1;
    assert_eq!(
        recorded[recorded.len() - 1].body["model"],
        format!("m{last}")
    );
}

/// `Fault::Status` answers with that status in the route's error format.
#[tokio::test]
async fn status_fault_uses_the_route_error_format() {
    let mock = start(MockConfig {
        fault: Fault::Status(429),
        ..MockConfig::default()
    })
    .await;
    let client = reqwest::Client::new();
    let response = client
        .post(mock.url("/v1/messages"))
        .json(&json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // Health is never faulted, so a faulting mock stays healthy.
    let health = client.get(mock.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// `Fault::ResetAfterChunks` cuts the stream after that many chunks.
#[tokio::test]
async fn reset_fault_truncates_the_stream() {
    let mock = start(MockConfig {
        chunks: 6,
        chunk_delay: Duration::from_millis(5),
        fault: Fault::ResetAfterChunks(2),
        ..MockConfig::default()
    })
    .await;
    let response = reqwest::Client::new()
        .post(mock.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "stream": true}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut broke = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => text.push_str(&String::from_utf8_lossy(&c)),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    assert!(broke, "the body must end with an error, got {text:?}");
    assert!(text.contains("tok1"));
    assert!(!text.contains("tok2"));
    assert!(!text.contains("[DONE]"));
}

/// `Fault::Hang` accepts the request and never answers; the config can be
/// changed over HTTP while the server runs.
#[tokio::test]
async fn hang_fault_never_answers_and_config_is_settable_over_http() {
    let mock = start(MockConfig::default()).await;
    let client = reqwest::Client::new();
    let status = client
        .put(mock.url("/__mock/config"))
        .json(&json!({"fault": "hang"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert_eq!(mock.config().fault, Fault::Hang);

    let outcome = tokio::time::timeout(
        Duration::from_millis(300),
        client
            .post(mock.url("/v1/chat/completions"))
            .json(&json!({"model": "m"}))
            .send(),
    )
    .await;
    assert!(outcome.is_err(), "a hanging mock must not answer");
    assert_eq!(
        mock.requests().len(),
        1,
        "the hung request is still recorded"
    );

    mock.set_config(MockConfig::default());
    let ok = client
        .post(mock.url("/v1/chat/completions"))
        .json(&json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

/// `/v1/models` lists at least one model; unknown routes are JSON 404s.
#[tokio::test]
async fn models_and_unknown_routes() {
    let mock = start(MockConfig::default()).await;
    let client = reqwest::Client::new();
    let models: Value = client
        .get(mock.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    let missing = client.get(mock.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

/// Dropping the handle closes the listener.
#[tokio::test]
async fn drop_stops_the_server() {
    let mock = start(MockConfig::default()).await;
    let url = mock.url("/health");
    drop(mock);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(reqwest::get(url).await.is_err());
}
