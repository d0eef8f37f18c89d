//! The upstream client's HTTP/1.1 connections, against an upstream that
//! answers with canned bytes and counts the connections it accepted: kept
//! alive after a whole body, never reused after a cut or dirty one, not
//! used once the upstream closed it, and framed as RFC 9112 says.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use proxy::chunks::Chunks;
use proxy::client::{build, HttpClient};
use proxy::upstream_body::UpstreamBody;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream answering every request on a connection with `answer`,
/// then closing the connection if `close_after` is set.
struct Canned {
    url: String,
    accepted: Arc<AtomicUsize>,
}

impl Canned {
    async fn start(answer: &'static [u8], close_after: bool) -> Canned {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/v1/chat/completions",
            listener.local_addr().unwrap()
        );
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(sock, answer, close_after));
            }
        });
        Canned { url, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Read each request (head and `content-length` body) and write `answer`.
async fn serve(mut sock: TcpStream, answer: &'static [u8], close_after: bool) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_request(&mut sock, &mut buf).await else {
            return;
        };
        buf.drain(..end);
        if sock.write_all(answer).await.is_err() || close_after {
            return;
        }
    }
}

/// Bytes up to the end of the first whole request in `buf` (reading more
/// as needed); `None` at end of stream.
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        let text = String::from_utf8_lossy(buf);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len: usize = text[..head_end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= head_end + 4 + len {
                return Some(head_end + 4 + len);
            }
        }
        let mut more = [0u8; 4096];
        match sock.read(&mut more).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&more[..n]),
        }
    }
}

fn client() -> HttpClient {
    build(Duration::from_secs(5)).unwrap()
}

async fn post(client: &HttpClient, url: &str) -> http::Response<UpstreamBody> {
    let mut body = Chunks::default();
    body.push(Bytes::from_static(b"{\"model\":\"m\"}"));
    let req = http::Request::post(url).body(body).unwrap();
    client.request(req).await.unwrap()
}

async fn text(resp: http::Response<UpstreamBody>) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn whole_bodies_keep_the_connection() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ] {
        let up = Canned::start(answer, false).await;
        let c = client();
        for _ in 0..3 {
            assert_eq!(text(post(&c, &up.url).await).await, "ok");
        }
        assert_eq!(up.accepted(), 1, "{:?}", String::from_utf8_lossy(answer));
    }
}

/// A `content-length` body goes back to the pool with its last byte:
/// hyper's server stops polling a body once its length went out.
#[tokio::test]
async fn a_length_body_is_pooled_with_its_last_byte() {
    let up = Canned::start(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false).await;
    let c = client();
    let mut body = post(&c, &up.url).await.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "ok");
    std::mem::forget(body); // never polled to its end, never dropped
    assert_eq!(text(post(&c, &up.url).await).await, "ok");
    assert_eq!(up.accepted(), 1);
}

/// Connections that cannot carry another request are closed: the upstream
/// said `close`, the body was cut short by the client, bytes followed the
/// body, the body ran until the upstream closed, HTTP/1.0.
#[tokio::test]
async fn unusable_connections_are_not_reused() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA",
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ] {
        let up = Canned::start(answer, false).await;
        let c = client();
        for _ in 0..2 {
            let body = text(post(&c, &up.url).await).await;
            assert!(body.starts_with("ok"), "{body:?}");
        }
        assert_eq!(up.accepted(), 2, "{:?}", String::from_utf8_lossy(answer));
    }
    // A body dropped before its end.
    let up = Canned::start(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n",
        false,
    )
    .await;
    let c = client();
    for _ in 0..2 {
        let mut body = post(&c, &up.url).await.into_body();
        body.frame().await.unwrap().unwrap();
    }
    assert_eq!(up.accepted(), 2);
}

/// An idle connection the upstream closed is noticed before use: the next
/// request goes out on a new connection and succeeds.
#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_used() {
    let up = Canned::start(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(text(post(&c, &up.url).await).await, "ok");
        // Wait (with a deadline) until this side saw the upstream's close.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while c.prune_idle() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "close never seen");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(up.accepted(), 3);
}

/// Broken bodies are errors, not clean ends: a short `content-length`
/// body and a chunked body without its last chunk.
#[tokio::test]
async fn a_body_cut_by_the_upstream_is_an_error() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let up = Canned::start(answer, true).await;
        let c = client();
        let collected = post(&c, &up.url).await.into_body().collect().await;
        assert!(collected.is_err(), "{:?}", String::from_utf8_lossy(answer));
    }
    let up = Canned::start(b"HTTP/1.1 200 OK\r\n\r\nuntil close", true).await;
    assert_eq!(text(post(&client(), &up.url).await).await, "until close");
}

/// An upstream that answers after reading only the request head (a 413 to
/// a body too big for it), then keeps the connection open without reading
/// (`close` false) or closes it.
async fn early_answer(close: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/chat/completions",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && sock.read(&mut byte).await.unwrap() == 1 {
            head.push(byte[0]);
        }
        sock.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\n\r\nno")
            .await
            .unwrap();
        if close {
            drop(sock);
        } else {
            // Hold the connection, reading nothing, past the test's deadline.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    url
}

/// The upstream's early answer is returned, not a timeout or a reset,
/// whether it keeps the connection open or closes it.
#[tokio::test]
async fn an_answer_before_the_whole_body_is_returned() {
    for close in [false, true] {
        let url = early_answer(close).await;
        let mut body = Chunks::default();
        body.push(Bytes::from(vec![b'x'; 8 << 20])); // over the socket buffers
        let req = http::Request::post(url).body(body).unwrap();
        let c = client();
        let resp = tokio::time::timeout(Duration::from_secs(10), c.request(req))
            .await
            .expect("answered before any timeout")
            .expect("the early answer, not an error");
        assert_eq!(resp.status(), 413, "close {close}");
        assert_eq!(text(resp).await, "no");
        assert_eq!(c.prune_idle(), 0, "half-sent connection not pooled");
    }
}

/// Through goproxy: the client gets the body as framed, with a length that
/// describes it (not the upstream's `content-length` beside
/// `transfer-encoding`, on a 204, or as a list), and the upstream's 2xx
/// status.
#[tokio::test]
async fn the_client_gets_the_body_as_framed() {
    let cases: [(&'static [u8], u16, &str); 4] = [
        (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\nc\r\n{\"id\":\"abc\"}\r\n0\r\n\r\n",
            200,
            "{\"id\":\"abc\"}",
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12, 12\r\n\r\n{\"id\":\"abc\"}",
            200,
            "{\"id\":\"abc\"}",
        ),
        (
            b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{\"id\":\"abc\"}",
            201,
            "{\"id\":\"abc\"}",
        ),
        (b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n", 204, ""),
    ];
    for (answer, status, want) in cases {
        let up = Canned::start(answer, false).await;
        let base = up.url.trim_end_matches("/v1/chat/completions").to_string();
        let p =
            crate::helpers::spawn_proxy(&crate::helpers::DEFAULT_CONFIG.replace("RAW_BASE", &base))
                .await;
        let r = p
            .post(
                "/v1/chat/completions",
                serde_json::json!({"model": "raw-gpt", "messages": []}),
            )
            .await;
        assert_eq!(r.status(), status, "{:?}", String::from_utf8_lossy(answer));
        let declared = r.content_length();
        let got = r.text().await.expect("a whole body");
        assert_eq!(got, want);
        if let Some(n) = declared {
            assert_eq!(n as usize, want.len(), "declared length matches the body");
        }
        p.shutdown().await;
    }
}
