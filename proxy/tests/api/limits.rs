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

/// A proxy whose bodies may hold 5000 bytes in all (4096 each).
async fn budget_of_5000() -> TestProxy {
    spawn_proxy(&config_with(r#""max_body_bytes_in_flight": 5000"#)).await
}

/// A connection that sent a request head with `framing`, and no body yet.
async fn begin(addr: std::net::SocketAddr, framing: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head(framing).as_bytes()).await.unwrap();
    s
}

/// A connection that asked for `/health`.
async fn health_asked(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    s
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

/// Send a `len`-byte body again and again (within 10 s) until its answer
/// starts with `status`.
async fn until_answered(addr: std::net::SocketAddr, len: usize, status: &str) -> String {
    wait_for(status, Duration::from_secs(10), || async {
        let a = status_of(addr, len).await;
        a.starts_with(status).then_some(a)
    })
    .await
}

/// While one client holds most of the budget with a body it is still
/// sending, another request that does not fit is answered 503 with
/// `Retry-After` at once; when the first body is whole and answered, the
/// budget is back and the same request goes through.
#[tokio::test]
async fn bodies_past_the_budget_get_503_until_it_is_given_back() {
    let p = budget_of_5000().await;
    let held = body_of(4000);
    let mut a = begin(p.addr, "content-length: 4000").await;
    a.write_all(&held.as_bytes()[..3500]).await.unwrap();

    let answer = until_answered(p.addr, 2000, "HTTP/1.1 503").await;
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("max_body_bytes_in_flight"), "{answer}");
    // A body that fits beside the held one is served.
    assert!(status_of(p.addr, 900).await.starts_with("HTTP/1.1 200"));

    a.write_all(&held.as_bytes()[3500..]).await.unwrap();
    let mut first = vec![0u8; 64];
    let n = a.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    drop(a);
    until_answered(p.addr, 2000, "HTTP/1.1 200").await;
}

/// A body takes what has arrived of it, not its declared length: a client
/// that declares 4000 bytes and trickles them holds a few bytes of the
/// budget, not 4000 (or a byte a second would lock everyone out).
#[tokio::test]
async fn a_trickled_body_holds_only_what_arrived() {
    let p = budget_of_5000().await;
    let mut a = begin(p.addr, "content-length: 4000").await;
    a.write_all(&body_of(4000).as_bytes()[..10]).await.unwrap();
    // A body that fits beside 10 bytes, not beside 4000, is served.
    assert!(status_of(p.addr, 4000).await.starts_with("HTTP/1.1 200"));
}

/// A chunked body takes from the budget as its chunks arrive, and a
/// client that leaves mid-body gives its bytes back.
#[tokio::test]
async fn chunked_bodies_take_as_they_come_and_give_back_when_cut() {
    let p = budget_of_5000().await;
    let mut a = begin(p.addr, "transfer-encoding: chunked").await;
    let part = &body_of(4000)[..3500];
    a.write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes())
        .await
        .unwrap();
    until_answered(p.addr, 2000, "HTTP/1.1 503").await;
    drop(a);
    until_answered(p.addr, 2000, "HTTP/1.1 200").await;
}

/// A client that leaves mid-body is logged and counted 499, as an HTTP/2
/// client that resets its stream is (it was a 400 to nobody); one that
/// only stops sending (half-close) is sent nothing, not a 499.
#[tokio::test]
async fn a_client_that_leaves_mid_body_is_499() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    for framing in ["content-length: 1000", "transfer-encoding: chunked"] {
        let mut s = begin(p.addr, framing).await;
        let part = if framing.starts_with("content") {
            "{\"model\""
        } else {
            "8\r\n{\"model\"\r\n"
        };
        s.write_all(part.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        let mut answer = Vec::new();
        timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
            .await
            .expect("the connection closes")
            .unwrap();
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    }
    wait_for("two 499 lines", Duration::from_secs(5), || async {
        (logs.text().matches("status=499").count() == 2).then_some(())
    })
    .await;
    assert!(!logs.text().contains("status=400"), "{}", logs.text());
    let metrics = p.metrics().await;
    assert!(
        metrics.contains(r#"route="/v1/chat/completions",status="499"} 2"#),
        "{metrics}"
    );
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
/// open ones closes (those busy are not closed for it), and the operator
/// is told once.
#[tokio::test]
async fn connections_past_the_limit_wait_for_one_to_close() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(&config_with(r#""max_connections": 2"#)).await;
    // Two connections busy sending a body: not idle, so not closed.
    let busy = || async {
        let mut s = begin(p.addr, "content-length: 1000").await;
        s.write_all(b"{").await.unwrap();
        s
    };
    let first = busy().await;
    let _second = busy().await;
    let mut third = health_asked(p.addr).await;
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

/// At `max_connections` connections idle for a second or more are closed
/// to make room (a client that sent one request and keeps its connection
/// would otherwise hold a slot for the whole keep-alive), and the one
/// waiting is served.
#[tokio::test]
async fn idle_connections_are_closed_to_make_room() {
    let p = spawn_proxy(&config_with(r#""max_connections": 2"#)).await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut s = health_asked(p.addr).await;
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        idle.push(s);
    }
    let mut third = health_asked(p.addr).await;
    let mut buf = vec![0u8; 1024];
    let n = timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("served once idle connections were closed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    for s in &mut idle {
        let n = timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the idle connection was closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without another answer");
    }
}

/// `/metrics` says what the limits hold now.
#[tokio::test]
async fn metrics_show_what_the_limits_hold() {
    let p = budget_of_5000().await;
    let mut a = begin(p.addr, "content-length: 4000").await;
    a.write_all(&body_of(4000).as_bytes()[..1234])
        .await
        .unwrap();
    let text = wait_for("1234 bytes held", Duration::from_secs(10), || async {
        let m = p.metrics().await;
        m.contains("goproxy_body_bytes_in_flight 1234").then_some(m)
    })
    .await;
    // The body's connection and the scrape's own.
    assert!(text.contains("goproxy_open_connections 2"), "{text}");
}

/// Send `body` after `head` (the connection then closes), `per_second`
/// bytes each second of (paused) time, and read the answer.
async fn trickle(addr: std::net::SocketAddr, body: &str, per_second: usize) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let framing = format!("content-length: {}\r\nconnection: close", body.len());
    s.write_all(head(&framing).as_bytes()).await.unwrap();
    let mut out = Vec::new();
    for piece in body.as_bytes().chunks(per_second) {
        if s.write_all(piece).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut first = [0u8; 1];
        match s.try_read(&mut first) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // Answered (or closed) before the body was whole.
            Ok(n) => {
                out.extend_from_slice(&first[..n]);
                break;
            }
            Err(_) => break,
        }
    }
    let _ = settle("the answer", async {
        let _ = timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A body trickled slower than 240 bytes a second on average (once
/// `request_read_timeout_secs`, 5 s here, has passed) is answered 408,
/// though it is never silent for long: a byte a second held a connection
/// for as long as the client liked. One at 300 bytes a second is read
/// whole.
#[tokio::test(start_paused = true)]
async fn a_body_slower_than_the_minimum_rate_gets_408() {
    let p = spawn_proxy(&config_with(r#""request_read_timeout_secs": 5"#)).await;
    let started = tokio::time::Instant::now();
    let slow = trickle(p.addr, &body_of(4000), 100).await;
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(12),
        "cut after {took:?}, not soon after the 5 s grace"
    );
    let steady = trickle(p.addr, &body_of(4000), 300).await;
    assert!(steady.starts_with("HTTP/1.1 200"), "{steady}");
}

/// A body sent fast and then trickled does not bank time on its first
/// bytes: 3,000 bytes at once earned 12.5 s at 240 bytes a second when
/// the rate was an average since the start (a megabyte earned an hour,
/// holding its budget); now the trickle after them is cut within a few
/// seconds of the grace.
#[tokio::test(start_paused = true)]
async fn a_burst_then_a_trickle_gets_408_soon() {
    let p = spawn_proxy(&config_with(r#""request_read_timeout_secs": 5"#)).await;
    let started = tokio::time::Instant::now();
    let body = body_of(4000);
    let mut s = begin(p.addr, "content-length: 4000\r\nconnection: close").await;
    s.write_all(&body.as_bytes()[..3000]).await.unwrap();
    let mut first = [0u8; 1];
    for b in &body.as_bytes()[3000..3010] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if s.try_read(&mut first).is_ok() || s.write_all(&[*b]).await.is_err() {
            break;
        }
    }
    let took = started.elapsed();
    let mut out = Vec::new();
    settle("the answer", s.read_to_end(&mut out)).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(first == *b"H" && out.starts_with("TTP/1.1 408"), "{out}");
    assert!(took < Duration::from_secs(12), "cut after {took:?}");
}

/// Shedding passes over a connection whose next request head is arriving
/// (closing it would lose that request): the idle one makes room, and
/// the half-sent head is answered when it is whole.
#[tokio::test]
async fn a_head_being_sent_is_not_closed_to_make_room() {
    let p = spawn_proxy(&config_with(r#""max_connections": 2"#)).await;
    let mut buf = vec![0u8; 1024];
    let mut idle = health_asked(p.addr).await;
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut half = TcpStream::connect(p.addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHo").await.unwrap();
    let mut third = health_asked(p.addr).await;
    let n = timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("served once the idle connection was closed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    half.write_all(b"st: x\r\n\r\n").await.unwrap();
    let n = timeout(Duration::from_secs(5), half.read(&mut buf))
        .await
        .expect("the half-sent head is answered")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}
