//! Hostile upstreams and clients: huge, endless, trickling and stalled
//! bodies; silent, half-open and idle connections; the drain's cut.
//! Timer-bound tests run on paused tokio time, so they take milliseconds
//! while still proving the close at the configured timeout.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use http_body_util::Empty;
use mock_upstream::MockConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use crate::helpers::{
    config_with, h2_connect, is_closed, post_and_never_read, settle, spawn_proxy, wait_for, Logs,
    CLIENT_KEY, DEFAULT_CONFIG,
};
use crate::raw::Script;

const MIB: u64 = 1024 * 1024;

/// Config with `request_read_timeout_secs` 5 (the default is 60).
fn config_5s() -> String {
    config_with("\"request_read_timeout_secs\": 5")
}

/// The captured logs once a relayed body's line is written.
async fn once_finished(logs: &Logs) -> String {
    wait_for("the stream's line", Duration::from_secs(5), || async {
        logs.text().contains("stream finished").then_some(())
    })
    .await;
    logs.text()
}

/// `s` is still open after `open_for`, and closed `then` later.
async fn open_until_then_closed(s: &mut TcpStream, open_for: Duration, then: Duration) {
    tokio::time::sleep(open_for).await;
    assert!(!is_closed(s), "closed before {open_for:?}");
    tokio::time::sleep(then).await;
    settle("the close", read_to_close(s)).await;
}

/// Read until the peer closes; the bytes read.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    out
}

/// A 1 GiB non-SSE body is passed on as it arrives: with a client that
/// reads nothing, goproxy stops taking from the upstream once the socket
/// buffers are full (tens of MB at most, never the whole body), and a client
/// that leaves closes the upstream connection.
#[tokio::test]
async fn huge_non_sse_body_is_streamed_with_bounded_buffering() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let r = p
        .raw_completion(Script {
            chunk: vec![b' '; 64 * 1024],
            chunks: 16 * 1024, // 1 GiB
            ..Script::default()
        })
        .await;
    assert_eq!(r.status(), 200);
    // Poll until the upstream's writes stop advancing (backpressure).
    let mut last = u64::MAX;
    let stalled_at = wait_for(
        "the upstream to be held back",
        Duration::from_secs(20),
        || {
            let now = p.raw.written.load(Ordering::SeqCst);
            let stable = now == last;
            last = now;
            async move { stable.then_some(now) }
        },
    )
    .await;
    assert!(
        stalled_at < 64 * MIB,
        "goproxy took {} MiB of a 1 GiB body",
        stalled_at / MIB
    );
    drop(r);
    p.raw.closed(Duration::from_secs(10)).await;
}

/// `stream_idle_timeout` (1 s here) bounds the silence between chunks, not
/// the whole body: a body trickling for 6 s arrives whole, and its usage
/// (read from the tail) is priced.
#[tokio::test(start_paused = true)]
async fn trickling_non_sse_body_is_not_cut_by_the_idle_timeout() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let r = p
        .raw_completion(Script {
            chunk: b" ".to_vec(),
            chunks: 30,
            gap: Duration::from_millis(200),
            last: br#"{"usage":{"prompt_tokens":2,"completion_tokens":3}}"#.to_vec(),
            ..Script::default()
        })
        .await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("whole body");
    assert!(body.ends_with(r#""completion_tokens":3}}"#), "{body}");
    let m = p.metrics().await;
    assert!(
        m.contains(r#"goproxy_tokens_total{model="raw-gpt",kind="input"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"goproxy_cost_total{model="raw-gpt"} 5"#),
        "{m}"
    );
}

/// A non-SSE body that stalls mid-way is aborted: the client sees a broken
/// transfer, not a short body that looks complete.
#[tokio::test(start_paused = true)]
async fn stalled_non_sse_body_is_aborted() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let r = p
        .raw_completion(Script {
            chunk: b"{\"partial\":".to_vec(),
            chunks: 2,
            gap: Duration::from_secs(5),
            ..Script::default()
        })
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "a cut body must not end cleanly");
}

/// An endless upstream error body is not read whole: the client gets its
/// 502 and goproxy hangs up after a small prefix.
#[tokio::test]
async fn endless_error_body_reads_only_a_prefix() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let r = p
        .raw_completion(Script {
            status: 500,
            chunk: vec![b'e'; 64 * 1024],
            chunks: u64::MAX,
            ..Script::default()
        })
        .await;
    assert_eq!(r.status(), 502);
    p.raw.closed(Duration::from_secs(10)).await;
    let taken = p.raw.written.load(Ordering::SeqCst);
    assert!(
        taken < 64 * MIB,
        "{} MiB of an endless error body read",
        taken / MIB
    );
}

/// A connection that never sends a byte is closed after
/// `request_read_timeout_secs` (5 s here), not kept forever.
#[tokio::test(start_paused = true)]
async fn silent_connection_is_closed_after_request_read_timeout() {
    let p = spawn_proxy(&config_5s()).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    open_until_then_closed(&mut s, Duration::from_millis(4_900), Duration::from_secs(2)).await;
}

/// A head trickled a byte a second, never finished, is closed when no
/// request has begun for `request_read_timeout_secs` (5 s here), and after
/// a request for `idle_timeout_secs` (75 s): bytes that never make a
/// request do not keep a connection open (hyper's own header timer is off).
#[tokio::test(start_paused = true)]
async fn trickled_head_is_closed_at_the_read_and_idle_timeouts() {
    let p = spawn_proxy(&config_5s()).await;
    for after_a_request in [false, true] {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        if after_a_request {
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        }
        let (mut rd, mut wr) = s.into_split();
        let trickle = tokio::spawn(async move {
            let _ = wr
                .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nx-a: ")
                .await;
            for _ in 0..200 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if wr.write_all(b"a").await.is_err() {
                    break;
                }
            }
        });
        let bound = Duration::from_secs(if after_a_request { 75 } else { 5 });
        tokio::time::sleep(bound - Duration::from_millis(100)).await;
        assert!(!is_closed(rd.as_ref()), "closed before {bound:?}");
        // The close, within the bound plus the 1 s goodbye.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let mut rest = Vec::new();
        let _ = settle("the close", rd.read_to_end(&mut rest)).await;
        trickle.abort();
    }
}

/// Only the HTTP/2 preface, then silence: closed at the same bound.
#[tokio::test(start_paused = true)]
async fn h2_preface_only_is_closed() {
    let p = spawn_proxy(&config_5s()).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    open_until_then_closed(&mut s, Duration::from_millis(4_900), Duration::from_secs(2)).await;
}

/// An HTTP/2 connection idle after its request is closed at
/// `idle_timeout_secs` (75 s by default): HTTP/2 has no idle timer of its own.
#[tokio::test(start_paused = true)]
async fn idle_h2_connection_is_closed_after_idle_timeout() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let (mut send, conn) = h2_connect(p.addr).await;
    let req = http::Request::get("/health")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(74_900)).await;
    assert!(
        !conn.is_finished(),
        "closed before idle_timeout_secs (75 s)"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    settle("the idle HTTP/2 connection to close", conn)
        .await
        .unwrap()
        .unwrap();
}

/// A request body that goes silent is answered 408 after
/// `request_read_timeout_secs`, so it cannot hold a connection forever.
#[tokio::test(start_paused = true)]
async fn silent_request_body_gets_408() {
    let p = spawn_proxy(&config_5s()).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(4_900)).await;
    let mut none = [0u8; 1];
    assert!(
        s.try_read(&mut none).is_err(),
        "answered before request_read_timeout_secs"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = settle("the 408", read_to_close(&mut s)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

/// A silent client does not hold up shutdown: the drain ends at once when
/// nothing is in progress (the drain timeout here is 5 s).
#[tokio::test(start_paused = true)]
async fn drain_does_not_wait_for_a_silent_connection() {
    let mut p = spawn_proxy(DEFAULT_CONFIG).await;
    let _silent = TcpStream::connect(p.addr).await.unwrap();
    let mut half = TcpStream::connect(p.addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHo").await.unwrap();
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    p.trigger_shutdown();
    timeout(Duration::from_secs(60), &mut p.server)
        .await
        .expect("run returned")
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "drain took {:?}",
        t0.elapsed()
    );
}

/// Nor does a silent upload: once the drain began, a body gets 2 s
/// between pieces (not `request_read_timeout_secs`, 60 here, nor the 30 s
/// drain timeout it waited for) and is then answered 503; an upload still
/// arriving (two bytes a second) goes on and is answered.
#[tokio::test(start_paused = true)]
async fn drain_does_not_wait_for_a_silent_upload() {
    let config = config_with("\"request_read_timeout_secs\": 60")
        .replace("\"drain_timeout_secs\": 5", "\"drain_timeout_secs\": 30");
    let mut p = spawn_proxy(&config).await;
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.split_at(20);
    let mut silent = TcpStream::connect(p.addr).await.unwrap();
    silent.write_all(head.as_bytes()).await.unwrap();
    silent.write_all(first).await.unwrap();
    let mut steady = TcpStream::connect(p.addr).await.unwrap();
    steady.write_all(head.as_bytes()).await.unwrap();
    steady.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    p.trigger_shutdown();
    // The steady one: two bytes a second for 5 s, then the rest.
    for b in &rest[..10] {
        tokio::time::sleep(Duration::from_millis(500)).await;
        steady.write_all(&[*b]).await.unwrap();
    }
    steady.write_all(&rest[10..]).await.unwrap();
    let out = settle("the silent one's answer", read_to_close(&mut silent)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let answered = settle("the steady one's answer", read_to_close(&mut steady)).await;
    assert!(
        !answered.starts_with(b"HTTP/1.1 503") && !answered.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answered)
    );
    timeout(Duration::from_secs(60), &mut p.server)
        .await
        .expect("run returned")
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(12),
        "drain took {:?}",
        t0.elapsed()
    );
}

/// A stream of 100 events 500 ms apart: still open at any drain timeout
/// the tests set.
fn long_stream() -> MockConfig {
    MockConfig {
        chunks: 100,
        chunk_delay: Duration::from_millis(500),
        ..MockConfig::default()
    }
}

/// The rest of an SSE stream, which must end with the drain's error event.
async fn read_to_the_shutdown_event(
    s: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    mut body: Vec<u8>,
) -> String {
    while let Some(Ok(c)) = s.next().await {
        body.extend_from_slice(&c);
    }
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.ends_with("\n\n") && body.contains("the proxy is shutting down"),
        "{body}"
    );
    body
}

/// A stream still open at the drain timeout ends with an SSE error event
/// (not a silent cut), and `run` returns shortly after.
#[tokio::test(start_paused = true)]
async fn drain_timeout_cuts_streams_with_an_error_event() {
    let mut p = spawn_proxy(DEFAULT_CONFIG).await;
    let (mut s, body) = p.open_stream(long_stream()).await;
    let t0 = Instant::now();
    p.trigger_shutdown();
    let body = read_to_the_shutdown_event(&mut s, body).await;
    assert!(!body.contains("[DONE]"), "{body}");
    timeout(Duration::from_secs(60), &mut p.server)
        .await
        .expect("run returned")
        .unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(9),
        "{took:?}"
    );
}

/// A second signal during the drain cuts at once what the drain timeout
/// would cut later: the open stream gets its SSE error event, and `run`
/// returns long before the drain timeout (5 s here).
#[tokio::test(start_paused = true)]
async fn a_second_signal_cuts_the_drain_short() {
    let (logs, _guard) = Logs::capture();
    let mut p = spawn_proxy(DEFAULT_CONFIG).await;
    let (mut s, body) = p.open_stream(long_stream()).await;
    let t0 = Instant::now();
    p.trigger_shutdown();
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.cut_now();
    read_to_the_shutdown_event(&mut s, body).await;
    timeout(Duration::from_secs(60), &mut p.server)
        .await
        .expect("run returned")
        .unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let text = logs.text();
    assert!(text.contains("cut asked for"), "{text}");
    assert!(
        text.contains("stream cut by the drain (its timeout, or a second signal)"),
        "{text}"
    );
    assert!(text.contains("outcome=\"drain_cut\""), "{text}");
    assert!(!text.contains("drain timeout reached"), "{text}");
}

/// An endless SSE stream of 64 KiB events from the raw upstream.
fn endless_sse() -> Script {
    let mut chunk = b"data: ".to_vec();
    chunk.resize(64 * 1024 - 2, b'x');
    chunk.extend_from_slice(b"\n\n");
    Script {
        content_type: "text/event-stream",
        chunk,
        chunks: u64::MAX,
        ..Script::default()
    }
}

/// A client that stops reading a stream (its receive window full) is
/// closed once a write has waited `send_timeout_secs`: nothing else is
/// polled while a write waits, so without it the stream, its upstream and
/// the connection are held forever. The line says why it ended.
#[tokio::test(start_paused = true)]
async fn client_that_stops_reading_is_closed_at_the_send_timeout() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(&config_with("\"send_timeout_secs\": 7")).await;
    p.raw.set(endless_sse());
    let mut s = post_and_never_read(p.addr, "raw-gpt").await;
    // Open well past the 1 s stream idle timeout (the upstream is never
    // silent: goproxy is not reading it), closed after the send timeout.
    open_until_then_closed(&mut s, Duration::from_secs(6), Duration::from_secs(3)).await;
    let text = once_finished(&logs).await;
    assert!(
        text.contains("outcome=\"client_stopped_reading\""),
        "{text}"
    );
    assert!(text.contains("client stopped reading"), "{text}");
}

/// The drain's cut of a stream whose client reads nothing is a drain cut
/// in the log (with its warning), not a client that went away.
#[tokio::test(start_paused = true)]
async fn drain_cut_of_a_blocked_stream_is_logged_as_such() {
    let (logs, _guard) = Logs::capture();
    let mut p = spawn_proxy(DEFAULT_CONFIG).await;
    p.raw.set(endless_sse());
    let mut s = post_and_never_read(p.addr, "raw-gpt").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.trigger_shutdown();
    // drain_timeout 5 s, then CUT_GRACE (2 s) to flush: the send timeout
    // (60 s) is not what closes it.
    open_until_then_closed(&mut s, Duration::from_secs(4), Duration::from_secs(4)).await;
    timeout(Duration::from_secs(60), &mut p.server)
        .await
        .expect("run returned")
        .unwrap();
    let text = logs.text();
    assert!(text.contains("outcome=\"drain_cut\""), "{text}");
    assert!(!text.contains("outcome=\"client_disconnected\""), "{text}");
    assert!(text.contains("response cut by the drain"), "{text}");
}

/// An HTTP/2 client that never sends `WINDOW_UPDATE` (it does not read the
/// body; it still answers pings) leaves hyper waiting for window with the
/// body unpolled: the connection is closed once that wait passes
/// `send_timeout_secs` (checked every half of it), and the line says why.
#[tokio::test(start_paused = true)]
async fn h2_client_that_gives_no_window_is_closed_at_the_send_timeout() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(&config_with("\"send_timeout_secs\": 8")).await;
    p.raw.set(endless_sse());
    let (mut send, conn) = h2_connect(p.addr).await;
    let req = crate::helpers::h2_post(r#"{"model":"raw-gpt","stream":true,"messages":[]}"#);
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // The body is held, never read: no window goes back.
    let _body = resp.into_body();
    tokio::time::sleep(Duration::from_millis(7_900)).await;
    assert!(!conn.is_finished(), "closed before send_timeout_secs (8 s)");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = settle("the stalled HTTP/2 connection to close", conn).await;
    let text = once_finished(&logs).await;
    assert!(
        text.contains("outcome=\"client_stopped_reading\""),
        "{text}"
    );
}

/// The test config with `raw-gpt` served by the upstream at `url`, and
/// `first_byte_timeout_secs` as given.
fn raw_model_at(url: &str, first_byte_secs: u32) -> String {
    DEFAULT_CONFIG
        .replace("RAW_BASE/v1/chat/completions", url)
        .replace(
            "\"first_byte_timeout_secs\": 1",
            &format!("\"first_byte_timeout_secs\": {first_byte_secs}"),
        )
}

/// An upstream that accepts and never answers; its URL.
async fn silent_upstream() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/chat/completions", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    url
}

/// A request still waiting for its upstream's answer when the drain
/// timeout passes gets a 503 and a log line, not a connection dropped
/// under it.
#[tokio::test(start_paused = true)]
async fn drain_cut_answers_a_request_waiting_for_its_upstream_with_503() {
    let (logs, _guard) = Logs::capture();
    let config = raw_model_at(&silent_upstream().await, 60);
    let mut p = spawn_proxy(&config).await;
    let t0 = Instant::now();
    let asked = p
        .client
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&serde_json::json!({"model": "raw-gpt", "messages": []}))
        .send();
    let trigger = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        p.trigger_shutdown();
    };
    let (r, ()) = tokio::join!(asked, trigger);
    let r = r.unwrap();
    assert_eq!(r.status(), 503);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(6) && took < Duration::from_secs(7),
        "{took:?}"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("shutting down"), "{body}");
    let text = logs.text();
    assert!(text.contains("request cut by the drain"), "{text}");
    assert!(text.contains("status=503"), "{text}");
}

/// A chunked upload still in progress at the drain timeout gets a 503 too
/// (one still arriving: a silent one is cut before, 2 s into the drain).
#[tokio::test(start_paused = true)]
async fn drain_cut_answers_an_unfinished_upload_with_503() {
    let (logs, _guard) = Logs::capture();
    let mut p = spawn_proxy(DEFAULT_CONFIG).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{{\"mod\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.trigger_shutdown();
    // A piece every 500 ms until the drain timeout (5 s) has passed; then
    // the answer is on its way (writes after the cut may fail).
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = s.write_all(b"1\r\nx\r\n").await;
    }
    let answer = settle("the 503", read_to_close(&mut s)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("shutting down"), "{answer}");
    assert!(logs.text().contains("request cut by the drain"));
}

/// `request_read_timeout_secs` is the longest silence inside a body, not a
/// deadline for all of it: a content-length body trickling in a piece
/// every 3 s (timeout 5 s, and above the minimum average rate of 240
/// bytes a second) for well over 5 s is read whole and answered.
#[tokio::test(start_paused = true)]
async fn trickling_request_body_is_not_cut_by_the_read_timeout() {
    let p = spawn_proxy(&config_5s()).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let body = format!(
        r#"{{"model":"stream-gpt","messages":[],"pad":"{}"}}"#,
        "x".repeat(3500)
    );
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for piece in body.as_bytes().chunks(900) {
        tokio::time::sleep(Duration::from_secs(3)).await;
        s.write_all(piece).await.unwrap();
    }
    let out = settle("the answer", read_to_close(&mut s)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// An error body trickled a byte at a time, each within the stream idle
/// timeout (1 s here), still gets the client its error within the error
/// body's overall bound (5 s), not after 8 KiB of trickle (about 2 hours).
#[tokio::test(start_paused = true)]
async fn trickling_error_body_does_not_delay_the_error_answer() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let t0 = Instant::now();
    let r = p
        .raw_completion(Script {
            status: 500,
            chunk: b"e".to_vec(),
            chunks: u64::MAX,
            gap: Duration::from_millis(900),
            ..Script::default()
        })
        .await;
    assert_eq!(r.status(), 502);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(6), "{took:?}");
}

/// The same over HTTP/2, where the handler runs in a task of hyper's that
/// nothing polls at the cut: it waits on the cut itself.
#[tokio::test(start_paused = true)]
async fn drain_cut_answers_a_waiting_http2_request_with_503() {
    let config = raw_model_at(&silent_upstream().await, 60);
    let mut p = spawn_proxy(&config).await;
    let (mut send, _conn) = h2_connect(p.addr).await;
    let req = crate::helpers::h2_post(r#"{"model":"raw-gpt","messages":[]}"#);
    let asked = send.send_request(req);
    let trigger = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        p.trigger_shutdown();
    };
    let (r, ()) = tokio::join!(asked, trigger);
    assert_eq!(r.unwrap().status(), 503);
}

/// An error body that stalls (or breaks) mid-token is logged without its
/// last token: it may be a key cut short, too short to recognise.
#[tokio::test(start_paused = true)]
async fn a_stalled_error_body_loses_its_last_token_in_the_log() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let r = p
        .raw_completion(Script {
            status: 401,
            chunk: b"Incorrect API key provided: Zq8XkP3".to_vec(),
            chunks: 2,
            gap: Duration::from_secs(30),
            ..Script::default()
        })
        .await;
    assert_eq!(r.status(), 502);
    let text = logs.text();
    assert!(text.contains("Incorrect API key provided:"), "{text}");
    assert!(!text.contains("Zq8XkP3"), "{text}");
}

/// A relayed request that fails still names its model and endpoint in its
/// line and its warning.
#[tokio::test(start_paused = true)]
async fn a_failed_relayed_request_names_its_model_and_endpoint() {
    let (logs, _guard) = Logs::capture();
    let config = raw_model_at(&silent_upstream().await, 1);
    let p = spawn_proxy(&config).await;
    let r = p
        .post(
            "/v1/chat/completions",
            serde_json::json!({"model": "raw-gpt", "messages": []}),
        )
        .await;
    assert_eq!(r.status(), 504);
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("status=504"))
        .expect(&text);
    assert!(
        line.contains("model=\"raw-gpt\"") && line.contains("endpoint=\"raw-openai\""),
        "{line}"
    );
    let warn = text
        .lines()
        .find(|l| l.contains("request failed"))
        .expect(&text);
    assert!(warn.contains("endpoint=\"raw-openai\""), "{warn}");
}

/// With reading on off, a client that closes while goproxy waits for the
/// upstream's answer: the upstream request is dropped (its connection
/// closed), and the line says 499 with the model. Over HTTP/1.1 the closed
/// socket is noticed; over HTTP/2 the stream's reset drops the handler
/// (whatever the read-on setting: see `read_on.rs`).
#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_while_waiting_is_logged_499_and_the_upstream_dropped() {
    let (logs, _guard) = Logs::capture();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/chat/completions", l.local_addr().unwrap());
    let config = raw_model_at(&url, 60).replace(
        "\"drain_timeout_secs\": 5",
        "\"drain_timeout_secs\": 5, \"read_on_after_disconnect_secs\": 0",
    );
    let p = spawn_proxy(&config).await;
    let body = r#"{"model":"raw-gpt","messages":[]}"#;
    let s = crate::helpers::post_raw(p.addr, body).await;
    let (mut upstream, _) = l.accept().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(s);
    let mut sink = Vec::new();
    settle(
        "the upstream request to be dropped",
        upstream.read_to_end(&mut sink),
    )
    .await
    .unwrap();
    let text = logs.text();
    assert!(text.contains("status=499"), "{text}");
    assert!(text.contains("model=\"raw-gpt\""), "{text}");

    let (mut send, _conn) = h2_connect(p.addr).await;
    let req = crate::helpers::h2_post(body);
    let asked = send.send_request(req);
    let (mut upstream, _) = tokio::select! {
        a = l.accept() => a.unwrap(),
        _ = asked => panic!("answered"),
    };
    // `asked` dropped above: the stream is reset.
    let mut sink = Vec::new();
    settle(
        "the HTTP/2 upstream request to be dropped",
        upstream.read_to_end(&mut sink),
    )
    .await
    .unwrap();
    wait_for("the second 499", Duration::from_secs(5), || async {
        (logs.text().matches("status=499").count() == 2).then_some(())
    })
    .await;
}

/// A coding in any field is seen: `identity` then `gzip` in two
/// content-encoding fields, or a transfer coding under `chunked`, is a 502
/// (each was relayed as 200: bytes the client could not read, unbilled).
/// An SSE content type is recognised in any case (media types are
/// case-insensitive), so the stream gets the SSE relay and its headers.
#[tokio::test]
async fn codings_in_any_field_and_sse_in_any_case() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    for sneaked in [
        "application/json\r\ncontent-encoding: identity\r\ncontent-encoding: gzip",
        "application/json\r\ntransfer-encoding: gzip",
        "text/event-stream\r\ncontent-encoding: identity\r\ncontent-encoding: br",
    ] {
        let r = p
            .raw_completion(Script {
                content_type: sneaked,
                ..Script::default()
            })
            .await;
        assert_eq!(r.status(), 502, "{sneaked:?}");
    }
    let r = p
        .raw_completion(Script {
            content_type: "Text/Event-Stream; charset=utf-8",
            chunk: b"data: {\"choices\":[]}\n\n".to_vec(),
            last: b"data: {\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n".to_vec(),
            ..Script::default()
        })
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["x-accel-buffering"], "no");
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
}

/// An HTTP/2 `:authority` (or Host) is held to what an HTTP/1.1 Host may
/// be: user info in it (which hyper lets through and RFC 9113 section
/// 8.3.1 forbids) is a 400, as `a@b` is over HTTP/1.1.
#[tokio::test]
async fn an_h2_authority_with_user_info_is_400() {
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let (mut send, _conn) = h2_connect(p.addr).await;
    for (uri, status) in [
        (format!("http://user@{}/health", p.addr), 400),
        (format!("http://{}/health", p.addr), 200),
    ] {
        let req = http::Request::get(uri.as_str())
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let r = send.send_request(req).await.unwrap();
        assert_eq!(r.status(), status, "{uri}");
    }
}
