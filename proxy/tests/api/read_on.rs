//! A client that leaves mid-answer is still billed: goproxy reads the rest
//! of the upstream's answer (bounded) for its usage, and writes the line
//! once that read ends, saying how.

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::time::{timeout, Instant};

use crate::helpers::{
    config_with, h2_connect, spawn_proxy, wait_for, Logs, TestProxy, DEFAULT_CONFIG,
};
use crate::raw::Script;

/// The usage event an OpenAI stream ends with (`include_usage`).
const USAGE_EVENT: &[u8] =
    b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":40}}\n\ndata: [DONE]\n\n";

/// An OpenAI stream of `events` content events `gap` apart, then its usage.
fn openai_stream(events: u64, gap: Duration) -> Script {
    Script {
        content_type: "text/event-stream",
        chunk: b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n".to_vec(),
        chunks: events,
        gap,
        last: USAGE_EVENT.to_vec(),
        ..Script::default()
    }
}

/// Open a stream on the raw upstream's model, read its first chunk, and
/// leave (drop the response). Returns when the client left.
async fn read_one_chunk_and_leave(p: &TestProxy, script: Script) -> Instant {
    p.raw.set(script);
    let r = p
        .post(
            "/v1/chat/completions",
            serde_json::json!({"model": "raw-gpt", "stream": true, "messages": []}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    s.next().await.expect("a first chunk").expect("readable");
    drop(s);
    Instant::now()
}

/// The number a log line gives `field`.
fn number(line: &str, field: &str) -> u64 {
    line.split(&format!(" {field}="))
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {line}"))
}

/// The request's line, once written (within `within` of virtual time).
async fn line_of(logs: &Logs, message: &str, within: Duration) -> String {
    wait_for("the request's line", within, || async {
        logs.text()
            .lines()
            .find(|l| l.contains(message))
            .map(str::to_owned)
    })
    .await
}

/// The client read one event and left: the rest of the stream, its usage
/// event included, is read anyway and billed, and the line says so.
#[tokio::test(start_paused = true)]
async fn a_stream_left_before_its_usage_event_is_billed() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let left = read_one_chunk_and_leave(&p, openai_stream(20, Duration::from_millis(200))).await;
    let line = line_of(&logs, "stream finished", Duration::from_secs(30)).await;
    assert!(
        left.elapsed() >= Duration::from_secs(3),
        "the line waited for the rest of the stream: {line}"
    );
    for field in [
        "outcome=\"client_disconnected\"",
        "input_tokens=9",
        "output_tokens=40",
        "read_on=\"complete\"",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    let metrics = p.metrics().await;
    assert!(
        metrics.contains("goproxy_tokens_total{model=\"raw-gpt\",kind=\"output\"} 40"),
        "{metrics}"
    );
}

/// A non-streamed body the client left half-read: its usage, at the end,
/// is read and billed.
#[tokio::test(start_paused = true)]
async fn a_body_left_half_read_is_billed() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let mut r = p
        .raw_completion(Script {
            chunk: vec![b' '; 16 * 1024],
            chunks: 20,
            gap: Duration::from_millis(100),
            last: br#"{"usage":{"prompt_tokens":2,"completion_tokens":3}}"#.to_vec(),
            ..Script::default()
        })
        .await;
    r.chunk().await.expect("readable").expect("a first chunk");
    drop(r);
    let line = line_of(&logs, "completion", Duration::from_secs(30)).await;
    for field in [
        "outcome=\"client_disconnected\"",
        "input_tokens=2",
        "output_tokens=3",
        "read_on=\"complete\"",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
}

/// An answer that does not end is read on for the limit only, then its
/// upstream connection is closed.
#[tokio::test(start_paused = true)]
async fn reading_on_stops_at_the_limit() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(&config_with("\"read_on_after_disconnect_secs\": 4")).await;
    let endless = openai_stream(u64::MAX, Duration::from_millis(100));
    let left = read_one_chunk_and_leave(&p, endless).await;
    let line = line_of(&logs, "stream finished", Duration::from_secs(30)).await;
    let waited = left.elapsed();
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(5)).contains(&waited),
        "{waited:?}: {line}"
    );
    assert!(line.contains("read_on=\"time_limit\""), "{line}");
    // The usage never came: what was relayed and read is billed, at a
    // token per content event (about 45 events in 4.5 s), not 0.
    let output = number(&line, "output_tokens");
    assert!((30..60).contains(&output), "{line}");
    assert!(line.contains("output_tokens_estimated=true"), "{line}");
    p.raw.closed(Duration::from_secs(5)).await;
}

/// An upstream silent for `stream_idle_timeout_secs` (1 s here) ends the
/// read-on as it ends a relay.
#[tokio::test(start_paused = true)]
async fn a_silent_upstream_ends_the_read_on() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let left = read_one_chunk_and_leave(&p, openai_stream(5, Duration::from_secs(3))).await;
    let line = line_of(&logs, "stream finished", Duration::from_secs(30)).await;
    assert!(line.contains("read_on=\"upstream_stalled\""), "{line}");
    assert!(left.elapsed() < Duration::from_secs(2), "{line}");
}

/// `read_on_after_disconnect_secs: 0` cuts the upstream when the client
/// leaves, as before: the line comes at once, with no read-on.
#[tokio::test(start_paused = true)]
async fn zero_turns_reading_on_off() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(&config_with("\"read_on_after_disconnect_secs\": 0")).await;
    let left = read_one_chunk_and_leave(&p, openai_stream(20, Duration::from_millis(200))).await;
    let line = line_of(&logs, "stream finished", Duration::from_secs(30)).await;
    assert!(left.elapsed() < Duration::from_millis(500), "{line}");
    assert!(line.contains("outcome=\"client_disconnected\""), "{line}");
    assert!(!line.contains("read_on"), "{line}");
    p.raw.closed(Duration::from_secs(2)).await;
}

/// The drain waits for a read-on as for a connection, and its cut ends
/// it: the server still stops within the drain timeout and its grace.
#[tokio::test(start_paused = true)]
async fn the_drain_waits_for_a_read_on_then_cuts_it() {
    let (logs, _guard) = Logs::capture();
    let mut p = spawn_proxy(DEFAULT_CONFIG).await;
    let endless = openai_stream(u64::MAX, Duration::from_millis(100));
    read_one_chunk_and_leave(&p, endless).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!logs.text().contains("stream finished"), "{}", logs.text());
    let asked = Instant::now();
    p.trigger_shutdown();
    timeout(Duration::from_secs(10), &mut p.server)
        .await
        .expect("the drain ended")
        .unwrap();
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_secs(5),
        "the drain waited: {waited:?}"
    );
    let line = line_of(&logs, "stream finished", Duration::from_secs(1)).await;
    assert!(line.contains("read_on=\"drain_cut\""), "{line}");
    assert!(line.contains("outcome=\"client_disconnected\""), "{line}");
}

/// An upstream that sends without end as fast as it can is read on for
/// 64 MiB at most, not for the whole limit. In real time: with the clock
/// paused, tokio may move it on to the next timer (the 1 s stall) while
/// both sides wait on their sockets; the test failed once in about twenty
/// runs.
#[tokio::test]
async fn reading_on_stops_at_64_mib() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    let mut chunk = b"data: ".to_vec();
    chunk.resize(64 * 1024 - 2, b'x');
    chunk.extend_from_slice(b"\n\n");
    let flood = Script {
        content_type: "text/event-stream",
        chunk,
        chunks: u64::MAX,
        ..Script::default()
    };
    read_one_chunk_and_leave(&p, flood).await;
    let line = line_of(&logs, "stream finished", Duration::from_secs(30)).await;
    assert!(line.contains("read_on=\"byte_limit\""), "{line}");
    let bytes = number(&line, "read_on_bytes");
    assert!(
        (64 << 20..(64 << 20) + (1 << 20)).contains(&bytes),
        "{line}"
    );
}

/// Read-ons at once are bounded (each holds an upstream connection): a
/// client that leaves more streams than that gets the others cut at once,
/// with a warning (once in 10 s), and the line says `too_many`. A slot freed is used
/// again.
#[tokio::test(start_paused = true)]
async fn read_ons_at_once_are_bounded() {
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(&config_with("\"read_on_after_disconnect_secs\": 30")).await;
    let endless = || openai_stream(u64::MAX, Duration::from_millis(100));
    for _ in 0..proxy::read_on::MAX_AT_ONCE {
        read_one_chunk_and_leave(&p, endless()).await;
    }
    assert!(!logs.text().contains("stream finished"), "{}", logs.text());
    read_one_chunk_and_leave(&p, endless()).await;
    let line = line_of(&logs, "stream finished", Duration::from_secs(1)).await;
    assert!(line.contains("read_on=\"too_many\""), "{line}");
    // Once, however many are cut (a client resetting thousands of HTTP/2
    // streams a second wrote a warning each).
    read_one_chunk_and_leave(&p, endless()).await;
    wait_for("the second cut", Duration::from_secs(1), || async {
        (logs.text().matches("read_on=\"too_many\"").count() == 2).then_some(())
    })
    .await;
    assert_eq!(logs.text().matches("too many answers read on").count(), 1);
    // A client that leaves before its answer began is not read on either,
    // and its line says so.
    p.mock.set_config(mock_upstream::MockConfig {
        fault: mock_upstream::Fault::Hang,
        ..Default::default()
    });
    let client = crate::helpers::post_raw(p.addr, r#"{"model":"stream-gpt","messages":[]}"#).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(client);
    let line = line_of(&logs, "status=499", Duration::from_secs(1)).await;
    assert!(line.contains("read_on=\"too_many\""), "{line}");
    // The first read-ons end at their limit; then there is room again.
    tokio::time::sleep(Duration::from_secs(31)).await;
    read_one_chunk_and_leave(&p, openai_stream(3, Duration::from_millis(100))).await;
    wait_for("a read-on again", Duration::from_secs(5), || async {
        logs.text().contains("read_on=\"complete\"").then_some(())
    })
    .await;
}

/// Over HTTP/2 too: a stream the client resets after its first event is
/// read on and billed.
#[tokio::test(start_paused = true)]
async fn an_http2_stream_reset_mid_answer_is_billed() {
    use http_body_util::BodyExt as _;
    let (logs, _guard) = Logs::capture();
    let p = spawn_proxy(DEFAULT_CONFIG).await;
    p.raw.set(openai_stream(20, Duration::from_millis(200)));
    let (mut send, _conn) = h2_connect(p.addr).await;
    let req = crate::helpers::h2_post(r#"{"model":"raw-gpt","stream":true,"messages":[]}"#);
    let mut answer = send.send_request(req).await.unwrap().into_body();
    answer.frame().await.expect("a first event").unwrap();
    drop(answer);
    let line = line_of(&logs, "stream finished", Duration::from_secs(30)).await;
    for field in ["output_tokens=40", "read_on=\"complete\""] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
}

/// A proxy whose `raw-gpt` upstream is the returned listener, answered by
/// the test itself (with 30 s for the answer's head).
async fn proxy_with_own_upstream() -> (TestProxy, tokio::net::TcpListener) {
    proxy_with_own_upstream_and("\"read_on_after_disconnect_secs\": 60").await
}

/// The same, with `extra` fields (`"name": value, ...`) in the config.
async fn proxy_with_own_upstream_and(extra: &str) -> (TestProxy, tokio::net::TcpListener) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/chat/completions", l.local_addr().unwrap());
    let config = config_with(extra)
        .replace("RAW_BASE/v1/chat/completions", &url)
        .replace(
            "\"first_byte_timeout_secs\": 1",
            "\"first_byte_timeout_secs\": 30",
        );
    (spawn_proxy(&config).await, l)
}

/// The client left: 5 s later, as a slow generation's would, the upstream
/// answers with usage, and the request's line must bill it.
async fn answer_late_and_check_billed(logs: &Logs, mut upstream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let answer = r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":11}}"#;
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
        answer.len()
    );
    upstream
        .write_all(reply.as_bytes())
        .await
        .expect("the upstream request is still open");
    let line = line_of(logs, "completion", Duration::from_secs(10)).await;
    for field in [
        "outcome=\"client_disconnected\"",
        "input_tokens=7",
        "output_tokens=11",
        "read_on=\"complete\"",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(!logs.text().contains("status=499"), "{}", logs.text());
}

/// A client that leaves (HTTP/1.1) while its answer is generated does not
/// cancel it: the upstream request goes on, its answer is read, and the
/// usage billed, so a client cannot leave the operator alone with the
/// upstream's bill. Without reading on this was a 499 and an unbilled
/// answer.
#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_before_the_answer_is_billed_for_it() {
    use tokio::io::AsyncReadExt as _;
    let (logs, _guard) = Logs::capture();
    let (p, l) = proxy_with_own_upstream().await;
    let client = crate::helpers::post_raw(p.addr, r#"{"model":"raw-gpt","messages":[]}"#).await;
    let (mut upstream, _) = l.accept().await.unwrap();
    let mut head = [0u8; 4096];
    let _ = upstream.read(&mut head).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(client);
    answer_late_and_check_billed(&logs, upstream).await;
}

/// Over HTTP/2 too: a client that resets its stream while the answer is
/// generated does not cancel it (hyper drops the stream's handler; goproxy
/// finishes it on a task of its own), and the answer is billed.
#[tokio::test(start_paused = true)]
async fn an_http2_stream_reset_before_the_answer_is_billed_for_it() {
    use tokio::io::AsyncReadExt as _;
    let (logs, _guard) = Logs::capture();
    let (p, l) = proxy_with_own_upstream().await;
    let (mut send, _conn) = h2_connect(p.addr).await;
    let req = crate::helpers::h2_post(r#"{"model":"raw-gpt","messages":[]}"#);
    let pending = send.send_request(req);
    let reset = tokio::spawn(async move {
        // Dropped before its answer: the client resets the stream.
        let _ = timeout(Duration::from_secs(1), pending).await;
    });
    let (mut upstream, _) = l.accept().await.unwrap();
    let mut head = [0u8; 4096];
    let _ = upstream.read(&mut head).await.unwrap();
    reset.await.unwrap();
    answer_late_and_check_billed(&logs, upstream).await;
}

/// A client that left before its answer began, whose upstream request
/// goes on for the usage, over HTTP/1.1 (`h2`: false) or HTTP/2: it sends
/// its request and leaves (resets its stream) a second after goproxy
/// forwarded it. The returned socket is the upstream's side.
async fn leave_before_the_answer(
    p: &TestProxy,
    l: &tokio::net::TcpListener,
    h2: bool,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncReadExt as _;
    let body = r#"{"model":"raw-gpt","messages":[]}"#;
    let client = if h2 {
        let (mut send, conn) = h2_connect(p.addr).await;
        let pending = send.send_request(crate::helpers::h2_post(body));
        tokio::spawn(async move {
            let _ = timeout(Duration::from_secs(1), pending).await;
            drop(conn);
        })
    } else {
        let client = crate::helpers::post_raw(p.addr, body).await;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(client);
        })
    };
    let (mut upstream, _) = l.accept().await.unwrap();
    let _ = upstream.read(&mut [0u8; 4096]).await.unwrap();
    client.await.unwrap();
    upstream
}

/// Its line says 499 and how reading on ended, not the status of an answer
/// nobody received: the read-on limit passed (`time_limit`), the upstream
/// did not answer within `first_byte_timeout_secs` (`upstream_stalled`,
/// where the line said 504), or the drain cut it (`drain_cut`, where it
/// said 503 "retry").
#[tokio::test(start_paused = true)]
async fn a_read_on_before_the_answer_says_how_it_ended() {
    for h2 in [false, true] {
        for (extra, end) in [
            ("\"read_on_after_disconnect_secs\": 5", "time_limit"),
            ("\"read_on_after_disconnect_secs\": 60", "upstream_stalled"),
        ] {
            let (logs, _guard) = Logs::capture();
            let (p, l) = proxy_with_own_upstream_and(extra).await;
            let _upstream = leave_before_the_answer(&p, &l, h2).await;
            let line = line_of(&logs, "status=", Duration::from_secs(60)).await;
            for field in ["status=499".to_owned(), format!("read_on=\"{end}\"")] {
                assert!(line.contains(&field), "h2 {h2}: {field} missing: {line}");
            }
        }

        let (logs, _guard) = Logs::capture();
        let (mut p, l) = proxy_with_own_upstream().await;
        let _upstream = leave_before_the_answer(&p, &l, h2).await;
        p.trigger_shutdown();
        tokio::time::sleep(Duration::from_secs(1)).await;
        p.cut_now();
        let line = line_of(&logs, "status=", Duration::from_secs(5)).await;
        for field in ["status=499", "read_on=\"drain_cut\""] {
            assert!(line.contains(field), "h2 {h2}: {field} missing: {line}");
        }
        assert!(!logs.text().contains("status=503"), "{}", logs.text());
    }
}
