//! Routing, model mapping, auth and error mapping against wiremock upstreams.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    spawn_proxy, spawn_proxy_with, TestProxy, CLIENT_KEY, DEFAULT_CONFIG, UPSTREAM_KEY,
};

/// POST a one-message chat completion ("hi") for `model`.
async fn say_hi(p: &TestProxy, model: &str) -> reqwest::Response {
    p.post(
        "/v1/chat/completions",
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
}

fn chat_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "c1", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50}
    }))
}

/// /health is public and reports the configured port.
#[tokio::test]
async fn health_reports_status_and_port() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let r = p.client.get(p.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["port"], 8004);
    assert!(v["uptime_seconds"].is_u64());
    assert!(v["version"].is_string());
    let r = p.client.get(p.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    p.shutdown().await;
}

/// An alias is mapped to the upstream model id, and the endpoint key is sent
/// as a Bearer token with the configured User-Agent.
#[tokio::test]
async fn alias_maps_to_upstream_model_with_upstream_auth() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header(
            "authorization",
            format!("Bearer {UPSTREAM_KEY}").as_str(),
        ))
        .and(header("user-agent", "goproxy-test/1"))
        .and(body_partial_json(json!({"model": "gpt-4o-upstream"})))
        .respond_with(chat_ok())
        .expect(1)
        .mount(&p.wiremock)
        .await;
    let r = say_hi(&p, "4o").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hi");
    let m = p.metrics().await;
    assert!(
        m.contains("goproxy_tokens_total{model=\"gpt-4o\",kind=\"input\"} 100"),
        "{m}"
    );
    // 100 * 2.5 / 1e6 + 50 * 10 / 1e6 = 0.00075
    assert!(
        m.contains("goproxy_cost_total{model=\"gpt-4o\"} 0.00075"),
        "{m}"
    );
    p.shutdown().await;
}

/// /v1/messages: x-api-key auth from the client, x-api-key + anthropic-version
/// upstream, thinking enabled with the model's budget and max_tokens raised.
#[tokio::test]
async fn messages_enable_thinking_and_use_anthropic_auth() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", UPSTREAM_KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": "message", "content": [], "usage": {"input_tokens": 1, "output_tokens": 2}
        })))
        .expect(1)
        .mount(&p.wiremock)
        .await;
    let r = p
        .client
        .post(p.url("/v1/messages"))
        .header("x-api-key", CLIENT_KEY)
        .json(&json!({"model": "claude-think", "max_tokens": 1024, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = &p.wiremock.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["model"], "claude-upstream");
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 10000})
    );
    assert_eq!(body["max_tokens"], 14000);
    assert!(
        sent.headers.get("authorization").is_none(),
        "no bearer to anthropic"
    );
    p.shutdown().await;
}

/// Missing and wrong keys get 401 in the format of the route called, and
/// nothing reaches the upstream.
#[tokio::test]
async fn auth_failures_in_both_formats() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    Mock::given(method("POST"))
        .respond_with(chat_ok())
        .expect(0)
        .mount(&p.wiremock)
        .await;
    let body = json!({"model": "gpt-4o", "messages": []});
    let r = p
        .client
        .post(p.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");

    let r = p
        .client
        .post(p.url("/v1/messages"))
        .header("x-api-key", "sk-wrong")
        .json(&json!({"model": "claude-think", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");

    // x-api-key is not accepted on the OpenAI route.
    let r = p
        .client
        .post(p.url("/v1/chat/completions"))
        .header("x-api-key", CLIENT_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = p.client.get(p.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = p.client.get(p.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401, "metrics are not public");
    p.shutdown().await;
}

/// /v1/models lists every configured id.
#[tokio::test]
async fn models_lists_configured_ids() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let r = p
        .client
        .get(p.url("/v1/models"))
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "gpt-4o",
            "claude-think",
            "stream-gpt",
            "stream-claude",
            "slow-gpt",
            "raw-gpt"
        ]
    );
    p.shutdown().await;
}

/// Client mistakes: unknown model 404, bad JSON 400, too large 413, unknown
/// route 404 JSON, model not served on a route 404.
#[tokio::test]
async fn client_errors_map_to_statuses() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    Mock::given(method("POST"))
        .respond_with(chat_ok())
        .expect(0)
        .mount(&p.wiremock)
        .await;
    let r = p
        .post(
            "/v1/chat/completions",
            json!({"model": "nope", "messages": []}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");

    let r = p
        .client
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = p
        .post("/v1/chat/completions", json!({"messages": []}))
        .await;
    assert_eq!(r.status(), 400, "model is required");

    let big = "x".repeat(5000);
    let r = p
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "pad": big}),
        )
        .await;
    assert_eq!(r.status(), 413);

    let r = p.client.get(p.url("/admin/keys")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    let r = p
        .client
        .get(p.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // RFC 9110 section 15.5.6: a 405 says what the route allows.
    assert_eq!(r.headers()["allow"], "POST");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed");
    for (path, allow) in [
        ("/health", "GET, HEAD"),
        ("/", "GET, HEAD"),
        ("/metrics", "GET"),
    ] {
        let r = p.client.delete(p.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 405, "{path}");
        assert_eq!(r.headers()["allow"], allow, "{path}");
    }

    // slow-gpt has only an OpenAI endpoint.
    let r = p
        .client
        .post(p.url("/v1/messages"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "slow-gpt", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    p.shutdown().await;
}

/// An upstream 500 becomes a generic 502; the upstream's text (which here
/// echoes a key) never reaches the client.
#[tokio::test]
async fn upstream_5xx_becomes_generic_502() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_string(format!("internal: key {UPSTREAM_KEY} db down")),
        )
        .expect(1)
        .mount(&p.wiremock)
        .await;
    let r = p
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": []}),
        )
        .await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(UPSTREAM_KEY) && !text.contains("db down"),
        "{text}"
    );
    assert!(text.contains("the upstream service failed"), "{text}");
    p.shutdown().await;
}

/// An upstream slower than first_byte_timeout (1 s) is a 504, in time.
#[tokio::test]
async fn upstream_timeout_is_504() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    Mock::given(method("POST"))
        .respond_with(chat_ok().set_delay(Duration::from_secs(5)))
        .mount(&p.wiremock)
        .await;
    let started = std::time::Instant::now();
    let r = p
        .client
        .post(p.url("/v1/messages"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "claude-think", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "timeout_error");
    p.shutdown().await;
}

/// A 429 on one upstream key rotates to the next; when every key is
/// cooling down the client gets 429 with Retry-After.
#[tokio::test]
async fn upstream_429_rotates_keys_then_limits() {
    let p = spawn_proxy_with(DEFAULT_CONFIG, |_| {
        proxy::auth::Secrets::new(
            vec![CLIENT_KEY.into()],
            [(
                "wm-openai".to_string(),
                vec!["sk-key-one-aaaa".to_string(), "sk-key-two-bbbb".to_string()],
            )]
            .into(),
        )
    })
    .await;
    Mock::given(header("authorization", "Bearer sk-key-one-aaaa"))
        .respond_with(ResponseTemplate::new(429))
        .mount(&p.wiremock)
        .await;
    Mock::given(header("authorization", "Bearer sk-key-two-bbbb"))
        .respond_with(chat_ok())
        .up_to_n_times(1)
        .mount(&p.wiremock)
        .await;
    Mock::given(header("authorization", "Bearer sk-key-two-bbbb"))
        .respond_with(ResponseTemplate::new(429))
        .mount(&p.wiremock)
        .await;
    let body = json!({"model": "gpt-4o", "messages": []});
    let r = p.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(r.status(), 200, "second key used after the first got 429");
    let r = p.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    // Both keys cool down now: the next request is refused without an upstream call.
    let before = p.wiremock.received_requests().await.unwrap().len();
    let r = p.post("/v1/chat/completions", body).await;
    assert_eq!(r.status(), 429);
    assert_eq!(p.wiremock.received_requests().await.unwrap().len(), before);
    p.shutdown().await;
}

/// With no client key configured, model routes refuse to serve (503)
/// instead of running an open proxy.
#[tokio::test]
async fn no_client_key_refuses_model_routes() {
    let p = spawn_proxy_with(DEFAULT_CONFIG, |_| proxy::auth::Secrets::default()).await;
    let r = p
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": []}),
        )
        .await;
    assert_eq!(r.status(), 503);
    let r = p.client.get(p.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    p.shutdown().await;
}

/// h2c (HTTP/2 prior knowledge) is served too.
#[tokio::test]
async fn serves_h2c() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(p.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    p.shutdown().await;
}

/// With a single upstream key a 429 is passed on (with Retry-After) but the
/// key is not benched: the next request goes upstream again.
#[tokio::test]
async fn single_key_429_is_passed_through_without_benching() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .up_to_n_times(1)
        .mount(&p.wiremock)
        .await;
    Mock::given(method("POST"))
        .respond_with(chat_ok())
        .mount(&p.wiremock)
        .await;
    let body = json!({"model": "gpt-4o", "messages": []});
    let r = p.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let r = p.post("/v1/chat/completions", body).await;
    assert_eq!(r.status(), 200);
    p.shutdown().await;
}

/// Upstreams are asked for `accept-encoding: identity` (goproxy reads usage
/// out of the answer); an answer coded anyway is a 502 with a warning, not
/// compressed bytes relayed without their `content-encoding` (which the
/// client could not read) and an unbilled request.
#[tokio::test]
async fn upstream_answers_are_asked_for_and_held_to_identity() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    Mock::given(method("POST"))
        .and(header("accept-encoding", "identity"))
        .and(body_partial_json(
            json!({"messages": [{"content": "gzip"}]}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-encoding", "gzip")
                .set_body_raw(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0], "application/json"),
        )
        .mount(&p.wiremock)
        .await;
    Mock::given(method("POST"))
        .and(header("accept-encoding", "identity"))
        .and(body_partial_json(
            json!({"messages": [{"content": "plain"}]}),
        ))
        .respond_with(chat_ok().insert_header("content-encoding", "identity"))
        .mount(&p.wiremock)
        .await;
    let ask = |content: &str| {
        p.post(
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}),
        )
    };
    assert_eq!(ask("plain").await.status(), 200);
    let r = ask("gzip").await;
    assert_eq!(r.status(), 502);
    assert!(r.headers().get("content-encoding").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_error", "{v}");
}

/// Of a non-SSE upstream answer the client gets the status, the content
/// type and the body (with its length), nothing else of the upstream's
/// head: no cookies, no upstream ids, no hop-by-hop fields.
#[tokio::test]
async fn the_upstreams_other_header_fields_stay_behind() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    Mock::given(method("POST"))
        .respond_with(
            chat_ok()
                .set_body_raw(
                    r#"{"id":"c1","usage":{"prompt_tokens":1}}"#,
                    "application/x-upstream+json",
                )
                .insert_header("set-cookie", "upstream=1")
                .insert_header("x-upstream-account", "acct-42")
                .insert_header("keep-alive", "timeout=5")
                .insert_header("server", "upstream/1.0"),
        )
        .mount(&p.wiremock)
        .await;
    let r = say_hi(&p, "gpt-4o").await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/x-upstream+json");
    for name in ["set-cookie", "x-upstream-account", "keep-alive", "server"] {
        assert!(h.get(name).is_none(), "{name} passed on: {h:?}");
    }
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"id":"c1","usage":{"prompt_tokens":1}}"#
    );
}

/// An upstream's 204 reaches the client without a Content-Length (RFC
/// 9110 section 8.6: a 204 must not carry one; it was `content-length: 0`).
#[tokio::test]
async fn an_upstream_204_carries_no_content_length() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&p.wiremock)
        .await;
    let r = say_hi(&p, "gpt-4o").await;
    assert_eq!(r.status(), 204);
    assert!(
        r.headers().get("content-length").is_none(),
        "{:?}",
        r.headers()
    );
    assert_eq!(r.bytes().await.unwrap().len(), 0);
}
