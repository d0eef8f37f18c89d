//! Graceful drain and client keep-alive, in process.

use std::time::Duration;
use tokio::time::Instant;

use futures_util::StreamExt;
use mock_upstream::MockConfig;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{is_closed, settle, spawn_proxy, DEFAULT_CONFIG};

/// On shutdown /health turns 503 "draining" while the listener still
/// accepts (drain_readiness_delay_secs), an open stream runs to its end,
/// then the listener closes and `run` returns.
#[tokio::test(start_paused = true)]
async fn shutdown_fails_health_first_and_finishes_open_streams() {
    let config = DEFAULT_CONFIG.replace(
        "\"drain_timeout_secs\": 5",
        "\"drain_timeout_secs\": 5, \"drain_readiness_delay_secs\": 0.5",
    );
    let mut p = spawn_proxy(&config).await;
    let (mut s, mut body) = p
        .open_stream(MockConfig {
            chunks: 8,
            chunk_delay: Duration::from_millis(150),
            ..MockConfig::default()
        })
        .await;
    let t0 = Instant::now();
    p.trigger_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A fresh client (new connection) still reaches /health: 503 draining.
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
    let h = fresh.get(p.url("/health")).send().await.unwrap();
    assert_eq!(h.status(), 503);
    let v: Value = h.json().await.unwrap();
    assert_eq!(v["status"], "draining");

    while let Some(c) = s.next().await {
        body.extend_from_slice(&c.unwrap());
    }
    assert!(String::from_utf8(body).unwrap().contains("[DONE]"));
    tokio::time::timeout(Duration::from_secs(5), &mut p.server)
        .await
        .expect("run returned after the drain")
        .unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "readiness delay honoured"
    );
    assert!(TcpStream::connect(p.addr).await.is_err(), "listener closed");
}

/// An idle keep-alive client connection stays open past nginx's 60 s
/// `keepalive_timeout` (hyper's default would close it at 30 s), and is
/// closed at goproxy's `idle_timeout_secs` (75 s). Paused time: the 65 s
/// and 75 s pass at once, the close is still timed by the server's own timers.
#[tokio::test(start_paused = true)]
async fn idle_keepalive_outlives_nginx_keepalive_timeout() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    s.write_all(req).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_secs(65)).await;
    s.write_all(req).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        n > 0 && buf[..n].starts_with(b"HTTP/1.1 200"),
        "connection was closed while idle"
    );
    // Still open just before the idle timeout, closed just after it.
    tokio::time::sleep(Duration::from_millis(74_900)).await;
    assert!(!is_closed(&s), "closed before idle_timeout_secs (75 s)");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let n = settle("EOF after the idle timeout", s.read(&mut buf))
        .await
        .unwrap();
    assert_eq!(n, 0, "EOF expected");
    p.shutdown().await;
}
