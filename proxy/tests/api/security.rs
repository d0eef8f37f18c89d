//! Requests can only reach configured endpoints.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{spawn_proxy, CLIENT_KEY, DEFAULT_CONFIG};

/// A Host header and an absolute-form URI naming another server are
/// ignored: the request goes to the configured endpoint, the decoy sees
/// nothing.
#[tokio::test]
async fn host_header_and_absolute_uri_cannot_redirect_requests() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let decoy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .named("decoy")
        .mount(&decoy)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "gpt-4o-upstream"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .expect(2)
        .mount(&p.wiremock)
        .await;
    let decoy_authority = decoy.address().to_string();
    let body =
        json!({"model": "gpt-4o", "messages": [], "base_url": decoy.uri(), "url": decoy.uri()})
            .to_string();
    for target in [
        format!("http://{decoy_authority}/v1/chat/completions"),
        "/v1/chat/completions".to_string(),
    ] {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        let req = format!(
            "POST {target} HTTP/1.1\r\nHost: {decoy_authority}\r\nAuthorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{target}: {out}");
    }
    assert!(decoy.received_requests().await.unwrap().is_empty());
    p.shutdown().await;
}

/// Responses carry no CORS headers, even when asked with an Origin.
#[tokio::test]
async fn no_cors_reflection() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let r = p
        .client
        .get(p.url("/health"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = p
        .client
        .request(reqwest::Method::OPTIONS, p.url("/v1/chat/completions"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert_ne!(r.status(), 200);
    p.shutdown().await;
}
