//! The load generator: closed loop at fixed concurrency over HTTP/1.1
//! keep-alive connections (one per worker), and an SSE stream reader that
//! timestamps each content event.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// The client key every request carries (goproxy checks it, the mock and
/// nginx pass it on).
pub const CLIENT_KEY: &str = "bench-client-key";

const COMPLETION: &str = r#"{"model":"bench-model","messages":[{"role":"user","content":"Say hello in eight words."}],"stream":false}"#;
/// Asks for usage as OpenAI's SDKs do when they want it (goproxy asks for
/// it anyway): the mock then sends `"usage":null` in every chunk, as
/// OpenAI does, to nginx as to goproxy.
const STREAMED: &str = r#"{"model":"bench-model","messages":[{"role":"user","content":"Say hello in eight words."}],"stream":true,"stream_options":{"include_usage":true}}"#;

/// Bound on any one request or stream, so no loop can hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A new histogram for nanosecond latencies up to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    tcp.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

fn request(addr: SocketAddr, body: Bytes) -> http::Request<Full<Bytes>> {
    http::Request::post("/v1/chat/completions")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::AUTHORIZATION, format!("Bearer {CLIENT_KEY}"))
        .body(Full::new(body))
        .expect("valid request")
}

async fn one_completion(
    send: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    body: &Bytes,
) -> anyhow::Result<()> {
    send.ready().await?;
    let resp = send.send_request(request(addr, body.clone())).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status != http::StatusCode::OK {
        bail!("status {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// What one closed-loop cell measured.
#[derive(Debug)]
pub struct Cell {
    /// Latency of requests started inside the measured window, in ns.
    pub latency: Histogram<u64>,
    /// Requests completed (started inside the window) per second.
    pub throughput: f64,
    /// Failed requests (any phase).
    pub errors: u64,
    /// First error seen, for the log.
    pub first_error: Option<String>,
}

/// Closed loop: `concurrency` workers, each on its own keep-alive
/// connection, send a non-streamed completion as soon as the previous one
/// answered; `warmup` unrecorded, then `duration` recorded. Stops by itself
/// at `warmup + duration` (plus at most one request timeout).
pub async fn closed_loop(
    addr: SocketAddr,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Cell {
    closed_loop_with(
        addr,
        concurrency,
        warmup,
        duration,
        Bytes::from_static(COMPLETION.as_bytes()),
    )
    .await
}

/// [`closed_loop`] sending `body` (a non-streamed completion request).
pub async fn closed_loop_with(
    addr: SocketAddr,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    body: Bytes,
) -> Cell {
    let start = Instant::now();
    let record_from = start + warmup;
    let end = record_from + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let body = body.clone();
        workers.push(tokio::spawn(worker(addr, body, record_from, end)));
    }
    let mut all = Client::new(addr);
    for w in workers {
        if let Ok(c) = w.await {
            all.absorb(c);
        }
    }
    all.cell(duration)
}

/// One closed-loop worker: request after request on one keep-alive
/// connection until `end`, timing those sent from `record_from` on.
async fn worker(addr: SocketAddr, body: Bytes, record_from: Instant, end: Instant) -> Client {
    let mut c = Client::new(addr);
    while Instant::now() < end {
        c.one(&body, record_from, end).await;
    }
    c
}

/// Concurrency 1 against several targets at once: a keep-alive connection
/// to each and one request to each in turn (which goes first rotates each
/// round), so every target is measured in the same moments and a drift of
/// the machine (another process, the CPU's clock, the mock's heap) moves
/// them all alike. For differences far smaller than that drift.
pub async fn interleaved(
    addrs: &[SocketAddr],
    warmup: Duration,
    duration: Duration,
    body: Bytes,
) -> Vec<Cell> {
    let record_from = Instant::now() + warmup;
    let end = record_from + duration;
    let mut clients: Vec<Client> = addrs.iter().map(|&a| Client::new(a)).collect();
    let mut round = 0;
    while Instant::now() < end {
        for i in 0..clients.len() {
            let k = (i + round) % clients.len();
            clients[k].one(&body, record_from, end).await;
        }
        round += 1;
    }
    clients.into_iter().map(|c| c.cell(duration)).collect()
}

/// One keep-alive connection and what was measured on it; a failed request
/// drops the connection (the next one reconnects).
struct Client {
    addr: SocketAddr,
    conn: Option<SendRequest<Full<Bytes>>>,
    hist: Histogram<u64>,
    done: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            conn: None,
            hist: histogram(),
            done: 0,
            errors: 0,
            first_error: None,
        }
    }

    /// One request, timed if it started in `record_from..end`.
    async fn one(&mut self, body: &Bytes, record_from: Instant, end: Instant) {
        let t0 = Instant::now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if self.conn.is_none() {
                self.conn = Some(connect(self.addr).await?);
            }
            let send = self.conn.as_mut().expect("connected");
            one_completion(send, self.addr, body).await
        })
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("timeout after {REQUEST_TIMEOUT:?}")));
        let t1 = Instant::now();
        match result {
            Ok(()) => {
                if t0 >= record_from && t0 < end {
                    let ns = u64::try_from((t1 - t0).as_nanos()).unwrap_or(u64::MAX);
                    let _ = self.hist.record(ns.max(1));
                    self.done += 1;
                }
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
                self.conn = None;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Add what `other` measured (workers of one cell).
    fn absorb(&mut self, other: Client) {
        let _ = self.hist.add(&other.hist);
        self.done += other.done;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// The cell: completions in the measured window per second of it.
    fn cell(self, duration: Duration) -> Cell {
        Cell {
            latency: self.hist,
            throughput: self.done as f64 / duration.as_secs_f64(),
            errors: self.errors,
            first_error: self.first_error,
        }
    }
}

/// Arrival times of one SSE stream's content events, from the moment the
/// request was sent.
#[derive(Debug, Default, Clone)]
pub struct StreamTrace {
    /// Arrival of each content event (`data:` chunk with a `content` delta).
    pub content: Vec<Duration>,
    /// Whether `data: [DONE]` arrived and the body ended cleanly.
    pub complete: bool,
    /// Why the stream failed, if it did.
    pub error: Option<String>,
}

impl StreamTrace {
    /// Time to the first content event.
    pub fn ttfb(&self) -> Option<Duration> {
        self.content.first().copied()
    }

    /// Gaps between consecutive content events.
    pub fn gaps(&self) -> impl Iterator<Item = Duration> + '_ {
        self.content.windows(2).map(|w| w[1].saturating_sub(w[0]))
    }
}

/// Count the content events in `buf` that are complete (end in a blank
/// line), remove them from `buf`, and say whether `[DONE]` was among them.
pub fn take_events(buf: &mut Vec<u8>) -> (usize, bool) {
    let mut content = 0;
    let mut done = false;
    while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
        let event = &buf[..end];
        if event.starts_with(b"data: [DONE]") {
            done = true;
        } else if event.starts_with(b"data: {") && event.windows(10).any(|w| w == b"\"content\":") {
            content += 1;
        }
        buf.drain(..end + 2);
    }
    (content, done)
}

/// Send one streamed completion on `send` and timestamp its content events.
pub async fn stream_on(send: &mut SendRequest<Full<Bytes>>, addr: SocketAddr) -> StreamTrace {
    let mut trace = StreamTrace::default();
    let t0 = Instant::now();
    let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
        send.ready().await?;
        let resp = send
            .send_request(request(addr, Bytes::from_static(STREAMED.as_bytes())))
            .await?;
        if resp.status() != http::StatusCode::OK {
            bail!("status {}", resp.status());
        }
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            let now = t0.elapsed();
            if let Some(data) = frame.data_ref() {
                buf.extend_from_slice(data);
                let (n, done) = take_events(&mut buf);
                trace.content.extend(std::iter::repeat_n(now, n));
                trace.complete |= done;
            }
        }
        Ok(())
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => trace.error = Some(format!("{e:#}")),
        Err(_) => trace.error = Some(format!("timeout after {REQUEST_TIMEOUT:?}")),
    }
    if trace.error.is_some() {
        trace.complete = false;
    }
    trace
}

/// `n` sequential streams over one keep-alive connection.
pub async fn sequential_streams(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<StreamTrace>> {
    let mut send = connect(addr).await?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = stream_on(&mut send, addr).await;
        if t.error.is_some() {
            send = connect(addr).await?;
        }
        out.push(t);
    }
    Ok(out)
}

/// `n` streams at once, each on its own new connection.
pub async fn concurrent_streams(addr: SocketAddr, n: usize) -> Vec<StreamTrace> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                match tokio::time::timeout(REQUEST_TIMEOUT, connect(addr)).await {
                    Ok(Ok(mut send)) => stream_on(&mut send, addr).await,
                    Ok(Err(e)) => StreamTrace {
                        error: Some(format!("{e:#}")),
                        ..StreamTrace::default()
                    },
                    Err(_) => StreamTrace {
                        error: Some("connect timeout".into()),
                        ..StreamTrace::default()
                    },
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap_or_else(|e| StreamTrace {
            error: Some(e.to_string()),
            ..StreamTrace::default()
        }));
    }
    out
}

/// POST `body` on a new connection and read the whole answer, counting its
/// bytes without keeping them.
pub async fn read_whole(addr: SocketAddr, body: Bytes) -> anyhow::Result<u64> {
    let mut send = connect(addr).await?;
    send.ready().await?;
    let resp = send.send_request(request(addr, body)).await?;
    if resp.status() != http::StatusCode::OK {
        bail!("status {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame?.data_ref() {
            n += d.len() as u64;
        }
    }
    Ok(n)
}

/// PUT a new config on the mock (`/__mock/config`) and drop its recorded
/// requests, so its memory does not grow over the run.
pub async fn configure_mock(mock: SocketAddr, config: serde_json::Value) -> anyhow::Result<()> {
    let mut send = connect(mock).await?;
    for (method, body) in [
        (http::Method::PUT, Some(config.to_string())),
        (http::Method::DELETE, None),
    ] {
        let path = if body.is_some() {
            "/__mock/config"
        } else {
            "/__mock/requests"
        };
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, mock.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        send.ready().await?;
        let resp = send.send_request(req).await?;
        let status = resp.status();
        let _ = resp.into_body().collect().await?;
        if !status.is_success() {
            bail!("mock admin {path}: {status}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_only_when_complete() {
        let mut buf = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"a\"}}]}\n\n: ping\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b".to_vec();
        assert_eq!(take_events(&mut buf), (1, false));
        buf.extend_from_slice(
            b"\"}}]}\n\ndata: {\"choices\":[{\"delta\":{}}]}\n\ndata: [DONE]\n\n",
        );
        assert_eq!(take_events(&mut buf), (1, true));
        assert!(buf.is_empty());
    }

    #[test]
    fn gaps_and_ttfb() {
        let t = StreamTrace {
            content: vec![Duration::from_millis(3), Duration::from_millis(23)],
            complete: true,
            error: None,
        };
        assert_eq!(t.ttfb(), Some(Duration::from_millis(3)));
        assert_eq!(
            t.gaps().collect::<Vec<_>>(),
            vec![Duration::from_millis(20)]
        );
    }
}
