//! goproxy's own HTTP/1.1 server side, spoken to byte by byte: pipelined
//! requests, chunked and `100-continue` bodies, unread bodies, `HEAD`,
//! HTTP/1.0, and heads a proxy in front could read another way.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::helpers::{spawn_proxy, Logs, CLIENT_KEY, DEFAULT_CONFIG};

/// One response read off `s`: its head (as text) and its body (chunked
/// bodies decoded). `head_only` for the answer to `HEAD`.
async fn response(s: &mut TcpStream, buf: &mut Vec<u8>, head_only: bool) -> (String, Vec<u8>) {
    let deadline = Duration::from_secs(10);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_some(s, buf, deadline).await;
    };
    let head = String::from_utf8(buf.drain(..end).collect()).unwrap();
    let lower = head.to_ascii_lowercase();
    if head_only || head.starts_with("HTTP/1.1 100") {
        return (head, Vec::new());
    }
    if lower.contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                read_some(s, buf, deadline).await;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16).unwrap();
            while buf.len() < line_end + 2 + size + 2 {
                read_some(s, buf, deadline).await;
            }
            body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                return (head, body);
            }
        }
    }
    let len: usize = lower
        .split("content-length: ")
        .nth(1)
        .and_then(|r| r.split("\r\n").next())
        .map_or(0, |n| n.parse().unwrap());
    while buf.len() < len {
        read_some(s, buf, deadline).await;
    }
    (head, buf.drain(..len).collect())
}

async fn read_some(s: &mut TcpStream, buf: &mut Vec<u8>, deadline: Duration) {
    let n = timeout(deadline, s.read_buf(buf))
        .await
        .expect("goproxy answered in time")
        .unwrap();
    assert!(
        n > 0,
        "closed early; read so far: {:?}",
        String::from_utf8_lossy(buf)
    );
}

/// Whether goproxy closes `s` (read returns end of stream) soon.
async fn closed(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    matches!(
        timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await,
        Ok(Ok(_)) | Ok(Err(_))
    )
}

fn completion_body() -> String {
    r#"{"model":"stream-gpt","stream":false,"messages":[{"role":"user","content":"hi"}]}"#.into()
}

/// A completion request with `key`, its body, then a `/health` request,
/// in one piece (pipelined).
fn completion_then_health(key: &str) -> String {
    let body = completion_body();
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\ncontent-length: {}\r\n\r\n{body}GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        body.len()
    )
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(completion_then_health(CLIENT_KEY).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (head, out) = response(&mut s, &mut buf, false).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("\r\ndate: "), "{head}");
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["model"], "stream-gpt", "{json}");
    let (head, out) = response(&mut s, &mut buf, false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(String::from_utf8_lossy(&out).contains("ok"), "{out:?}");
    // Still open for a third.
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(response(&mut s, &mut buf, false)
        .await
        .0
        .starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn chunked_and_expect_continue_bodies_are_read() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let body = completion_body();
    let (a, b) = body.split_at(10);
    let chunked = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:X};ext=1\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    s.write_all(chunked.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let (head, _) = response(&mut s, &mut buf, false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let expect = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(expect.as_bytes()).await.unwrap();
    let (head, _) = response(&mut s, &mut buf, false).await;
    assert_eq!(head, "HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).await.unwrap();
    let (head, _) = response(&mut s, &mut buf, false).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// A refused request whose body came along is answered, and the body
/// skipped: the connection carries the next request.
#[tokio::test]
async fn an_unread_body_is_skipped_and_the_connection_kept() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(completion_then_health("wrong").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert!(response(&mut s, &mut buf, false)
        .await
        .0
        .starts_with("HTTP/1.1 401"));
    assert!(response(&mut s, &mut buf, false)
        .await
        .0
        .starts_with("HTTP/1.1 200"));
}

/// A body the handler did not read and that is not all here yet: the
/// answer says `connection: close`, and the connection is closed.
#[tokio::test]
async fn an_unread_body_still_coming_closes_the_connection() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\ncontent-length: 1000\r\n\r\n{\"model\"";
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let (head, _) = response(&mut s, &mut buf, false).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert!(closed(&mut s).await);
}

#[tokio::test]
async fn head_gets_no_body_and_http_1_0_is_closed_after_its_answer() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (head, _) = response(&mut s, &mut buf, true).await;
    // HEAD is GET without the body: the length of the body it would have.
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-length: "), "{head}");
    let (head, _) = response(&mut s, &mut buf, false).await;
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "the HEAD answer had no body: {head}"
    );

    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.0\r\n\r\n").await.unwrap();
    let mut all = Vec::new();
    timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .expect("closed after the answer")
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains("chunked"), "{text}");
}

/// Heads that a proxy in front and goproxy could frame differently are
/// answered 400 and the connection closed, so nothing after them is taken
/// as a request.
#[tokio::test]
async fn ambiguous_heads_are_refused_and_closed() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    for head in [
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked, identity\r\n\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let (answer, _) = response(&mut s, &mut buf, false).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        assert!(closed(&mut s).await, "{head:?}");
        assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"), "{head:?}");
    }
}

/// A Host that is not a host (spaces, a path, user info, empty) is
/// answered 400 as RFC 9110 says, and every refused head has its INFO
/// line (peer, status, why) and its count in `/metrics`, as nginx logs
/// its 400s; before, refused heads showed nowhere but at DEBUG.
#[tokio::test]
async fn refused_heads_are_logged_and_counted() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    for host in ["a b", "x/../y", "user@x", ""] {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        let head = format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let (answer, _) = response(&mut s, &mut buf, false).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{host:?}: {answer}");
    }
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/2.0\r\n\r\n").await.unwrap();
    let (answer, _) = response(&mut s, &mut Vec::new(), false).await;
    assert!(answer.starts_with("HTTP/1.1 505"), "{answer}");

    let metrics = p.metrics().await;
    assert!(
        metrics.contains(r#"goproxy_requests_total{route="refused_head",status="400"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"goproxy_requests_total{route="refused_head",status="505"} 1"#),
        "{metrics}"
    );
    let text = logs.text();
    let lines: Vec<_> = text
        .lines()
        .filter(|l| l.contains("request head refused"))
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].contains("status=400") && lines[0].contains("127.0.0.1"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("not a host"), "{}", lines[0]);
    assert!(lines[4].contains("status=505"), "{}", lines[4]);
}

/// A chunk whose size line promises more than `max_body_bytes` (4096
/// here) is answered 413 at once, as nginx does, not after the client has
/// sent it or the read timeout passed: one chunk too big, and a second
/// chunk that takes the body over the limit.
#[tokio::test]
async fn a_chunk_promising_too_much_is_413_at_once() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let first = format!("800\r\n{}\r\n", "a".repeat(0x800));
    for body in [
        "ffffffffffff\r\nabc".to_string(),
        format!("{first}900\r\nab"),
    ] {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body.as_bytes()).await.unwrap();
        // The rest is never sent: the answer must not wait for it.
        let (answer, _) = response(&mut s, &mut Vec::new(), false).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
    }
}
