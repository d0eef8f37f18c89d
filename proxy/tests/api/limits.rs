//! Limits on what all clients together can make goproxy hold:
//! `max_body_bytes_in_flight` (503 past it) and `max_connections` (new
//! connections wait in the listen backlog).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::helpers::*;

/// A request head for a streaming completion on the mock upstream, with
/// `framing` (`content-length: N` or `transfer-encoding: chunked`).
fn head(framing: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\n\
         content-type: application/json\r\n{framing}\r\n\r\n"
    )
}

/// A body of exactly `len` bytes the mock upstream answers.
fn body_of(len: usize) -> String {
    let start = r#"{"model":"stream-gpt","messages":[],"pad":""#;
    let end = r#""}"#;
    format!("{start}{}{end}", "x".repeat(len - start.len() - end.len()))
}

/// Write a whole request with a `content-length` body on a new connection
/// and read the status line of its answer.
async fn status_of(addr: std::net::SocketAddr, len: usize) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = body_of(len);
    let req = format!("{}{body}", head(&format!("content-length: {len}")));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// While one client holds most of the budget with a body it is still
/// sending, another request that does not fit is answered 503 with
/// `Retry-After` at once; when the first body is whole and answered, the
/// budget is back and the same request goes through.
#[tokio::test]
async fn bodies_past_the_budget_get_503_until_it_is_given_back() {
    let p = spawn_proxy(&config_with(r#""max_body_bytes_in_flight": 5000"#)).await;
    let held = body_of(4000);
    let mut a = TcpStream::connect(p.addr).await.unwrap();
    a.write_all(head("content-length: 4000").as_bytes())
        .await
        .unwrap();
    a.write_all(&held.as_bytes()[..100]).await.unwrap();

    let answer = wait_for("the 503", Duration::from_secs(10), || async {
        let a = status_of(p.addr, 2000).await;
        a.starts_with("HTTP/1.1 503").then_some(a)
    })
    .await;
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("max_body_bytes_in_flight"), "{answer}");
    // A body that fits beside the held one is served.
    assert!(status_of(p.addr, 900).await.starts_with("HTTP/1.1 200"));

    a.write_all(&held.as_bytes()[100..]).await.unwrap();
    let mut first = vec![0u8; 64];
    let n = a.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    drop(a);
    wait_for("the budget back", Duration::from_secs(10), || async {
        status_of(p.addr, 2000)
            .await
            .starts_with("HTTP/1.1 200")
            .then_some(())
    })
    .await;
}

/// A chunked body takes from the budget as its chunks arrive, and a
/// client that leaves mid-body gives its bytes back.
#[tokio::test]
async fn chunked_bodies_take_as_they_come_and_give_back_when_cut() {
    let p = spawn_proxy(&config_with(r#""max_body_bytes_in_flight": 5000"#)).await;
    let mut a = TcpStream::connect(p.addr).await.unwrap();
    a.write_all(head("transfer-encoding: chunked").as_bytes())
        .await
        .unwrap();
    let part = &body_of(4000)[..3500];
    a.write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes())
        .await
        .unwrap();
    wait_for("the 503", Duration::from_secs(10), || async {
        status_of(p.addr, 2000)
            .await
            .starts_with("HTTP/1.1 503")
            .then_some(())
    })
    .await;
    drop(a);
    wait_for("the budget back", Duration::from_secs(10), || async {
        status_of(p.addr, 2000)
            .await
            .starts_with("HTTP/1.1 200")
            .then_some(())
    })
    .await;
}

/// A budget smaller than one body is refused at load time.
#[tokio::test]
async fn a_budget_below_max_body_bytes_is_refused() {
    let text = config_with(r#""max_body_bytes_in_flight": 4095"#)
        .replace("RAW_BASE", "http://127.0.0.1:1")
        .replace("WM_BASE", "http://127.0.0.1:1")
        .replace("MOCK_BASE", "http://127.0.0.1:1")
        .replace("SLOW_BASE", "http://127.0.0.1:1");
    let e = proxy::config::Config::from_json(&text, "c.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("max_body_bytes_in_flight = 4095: must be at least max_body_bytes (4096)"),
        "{e}"
    );
}

/// At `max_connections` a new connection is not served until one of the
/// open ones closes, and the operator is told once.
#[tokio::test]
async fn connections_past_the_limit_wait_for_one_to_close() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(&config_with(r#""max_connections": 2"#)).await;
    let first = TcpStream::connect(p.addr).await.unwrap();
    let _second = TcpStream::connect(p.addr).await.unwrap();
    let mut third = TcpStream::connect(p.addr).await.unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    assert!(
        timeout(Duration::from_millis(500), third.read(&mut buf))
            .await
            .is_err(),
        "the third connection was served while two were open"
    );
    assert!(
        logs.text().contains("connection limit reached")
            && logs.text().contains("max_connections=2"),
        "{}",
        logs.text()
    );
    drop(first);
    let n = timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}
