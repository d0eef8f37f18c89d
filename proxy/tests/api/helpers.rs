//! `spawn_proxy`: a goproxy on 127.0.0.1:0 wired to fake upstreams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mock_upstream::{MockConfig, MockUpstream};
use proxy::auth::Secrets;
use proxy::config::Config;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wiremock::MockServer;

use crate::raw::{read_head, RawUpstream};

/// The client key tests authenticate with.
pub const CLIENT_KEY: &str = "sk-client-test-key-0001";
/// The upstream key goproxy must send (and never leak).
pub const UPSTREAM_KEY: &str = "sk-upstream-secret-key-0002";

/// The standard test config. `WM_BASE` is replaced by the wiremock server,
/// `MOCK_BASE` by the streaming mock-upstream, `SLOW_BASE` by the raw slow
/// SSE server, `RAW_BASE` by the scripted [`RawUpstream`].
pub const DEFAULT_CONFIG: &str = r#"{
    "_comment": "test config",
    "port": 8004,
    "host": "127.0.0.1",
    "endpoints": [
        {"name": "wm-openai", "base_url": "WM_BASE/v1/chat/completions", "api_key_env": "WM_KEY"},
        {"name": "wm-anthropic", "base_url": "WM_BASE/v1/messages", "api_key_env": "WM_KEY"},
        {"name": "mock-openai", "base_url": "MOCK_BASE/v1/chat/completions", "api_key_env": "MOCK_KEY"},
        {"name": "mock-anthropic", "base_url": "MOCK_BASE/v1/messages", "api_key_env": "MOCK_KEY"},
        {"name": "slow-openai", "base_url": "SLOW_BASE/v1/chat/completions"},
        {"name": "raw-openai", "base_url": "RAW_BASE/v1/chat/completions"}
    ],
    "models": [
        {"id": "gpt-4o", "id_aliases": ["4o", "gpt-4o-latest"], "type": "openai", "upstream": "wm",
         "upstream_model_id": "gpt-4o-upstream", "input_price_per_mtok": 2.5, "output_price_per_mtok": 10},
        {"id": "claude-think", "type": "anthropic", "upstream": "wm", "reasoning": "high",
         "upstream_model_id": "claude-upstream"},
        {"id": "stream-gpt", "type": "openai", "upstream": "mock",
         "input_price_per_mtok": 1000000, "output_price_per_mtok": 2000000},
        {"id": "stream-claude", "type": "anthropic", "upstream": "mock",
         "input_price_per_mtok": 3, "output_price_per_mtok": 15, "billing_multiplier": 2},
        {"id": "slow-gpt", "type": "openai", "upstream": "slow"},
        {"id": "raw-gpt", "type": "openai", "upstream": "raw",
         "input_price_per_mtok": 1000000, "output_price_per_mtok": 1000000}
    ],
    "system_prompt": "",
    "user_agent": "goproxy-test/1",
    "first_byte_timeout_secs": 1,
    "stream_idle_timeout_secs": 1,
    "max_body_bytes": 4096,
    "drain_timeout_secs": 5
}"#;

/// [`DEFAULT_CONFIG`] with `extra` fields (`"name": value, ...`) added.
pub fn config_with(extra: &str) -> String {
    DEFAULT_CONFIG.replace(
        "\"drain_timeout_secs\": 5",
        &format!("\"drain_timeout_secs\": 5, {extra}"),
    )
}

/// A raw TCP server that streams SSE slowly forever and records whether its
/// peer closed the connection (a write failed): used to show that a client
/// disconnect reaches the upstream.
#[derive(Debug)]
pub struct SlowSse {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub peer_closed: Arc<AtomicBool>,
}

impl SlowSse {
    pub async fn start() -> SlowSse {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let peer_closed = Arc::new(AtomicBool::new(false));
        let (c, p) = (connections.clone(), peer_closed.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let p = p.clone();
                tokio::spawn(async move {
                    if !read_head(&mut sock).await {
                        return;
                    }
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        p.store(true, Ordering::SeqCst);
                        return;
                    }
                    for i in 0.. {
                        let data = format!("data: {{\"i\":{i}}}\n\n");
                        let chunk = format!("{:x}\r\n{data}\r\n", data.len());
                        if sock.write_all(chunk.as_bytes()).await.is_err() {
                            p.store(true, Ordering::SeqCst);
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                });
            }
        });
        SlowSse {
            addr,
            connections,
            peer_closed,
        }
    }
}

/// A running proxy and its fake upstreams.
#[derive(Debug)]
pub struct TestProxy {
    pub addr: SocketAddr,
    pub wiremock: MockServer,
    pub mock: MockUpstream,
    pub slow: SlowSse,
    pub raw: RawUpstream,
    pub client: reqwest::Client,
    stop: proxy::Shutdown,
    pub server: JoinHandle<()>,
}

/// A dropped proxy drains, as a dropped shutdown sender made it before.
impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop.drain();
    }
}

impl TestProxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POST JSON with the test client key as a Bearer token.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(CLIENT_KEY)
            .json(&body)
            .send()
            .await
            .expect("proxy reachable")
    }

    /// Scripts the raw upstream's reply, then POSTs a completion for the
    /// model it serves (`raw-gpt`).
    pub async fn raw_completion(&self, script: crate::raw::Script) -> reqwest::Response {
        self.raw.set(script);
        self.post(
            "/v1/chat/completions",
            serde_json::json!({"model": "raw-gpt", "messages": []}),
        )
        .await
    }

    /// Makes the mock stream as `config` says, opens a streaming completion
    /// and reads its first chunk, so the stream is in flight. Returns the
    /// rest of the stream and that chunk.
    pub async fn open_stream(
        &self,
        config: MockConfig,
    ) -> (
        impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
        Vec<u8>,
    ) {
        use futures_util::StreamExt as _;
        self.mock.set_config(config);
        let r = self
            .post(
                "/v1/chat/completions",
                serde_json::json!({"model": "stream-gpt", "stream": true, "messages": []}),
            )
            .await;
        let mut s = r.bytes_stream();
        let first = s.next().await.unwrap().unwrap().to_vec();
        (s, first)
    }

    /// Signal shutdown without waiting.
    pub fn trigger_shutdown(&mut self) {
        self.stop.drain();
    }

    /// A second signal: cut what is open now.
    pub fn cut_now(&self) {
        self.stop.cut_now();
    }

    /// Ask the server to drain and wait (bounded) for `run` to return.
    pub async fn shutdown(mut self) {
        self.stop.drain();
        tokio::time::timeout(Duration::from_secs(10), &mut self.server)
            .await
            .expect("server drained in time")
            .unwrap();
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .bearer_auth(CLIENT_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

pub fn default_secrets() -> Secrets {
    let keys: HashMap<String, Vec<String>> =
        ["wm-openai", "wm-anthropic", "mock-openai", "mock-anthropic"]
            .into_iter()
            .map(|e| (e.to_string(), vec![UPSTREAM_KEY.to_string()]))
            .collect();
    Secrets::new(vec![CLIENT_KEY.to_string()], keys)
}

/// Start the fake upstreams, then a proxy serving `config_json` (with the
/// placeholders of [`DEFAULT_CONFIG`] filled in) and the default secrets.
pub async fn spawn_proxy(config_json: &str) -> TestProxy {
    spawn_proxy_with(config_json, |_| default_secrets()).await
}

/// Like [`spawn_proxy`] with secrets computed from the config.
pub async fn spawn_proxy_with(
    config_json: &str,
    secrets: impl FnOnce(&Config) -> Secrets,
) -> TestProxy {
    spawn_proxy_on(config_json, secrets, 1).await
}

/// Like [`spawn_proxy_with`], served by `threads` event loops.
pub async fn spawn_proxy_on(
    config_json: &str,
    secrets: impl FnOnce(&Config) -> Secrets,
    threads: usize,
) -> TestProxy {
    let wiremock = MockServer::start().await;
    let mock = MockUpstream::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        MockConfig::default(),
    )
    .await
    .unwrap();
    let slow = SlowSse::start().await;
    let raw = RawUpstream::start().await;
    let text = config_json
        .replace("RAW_BASE", &format!("http://{}", raw.addr))
        .replace("WM_BASE", &wiremock.uri())
        .replace("MOCK_BASE", &format!("http://{}", mock.addr()))
        .replace("SLOW_BASE", &format!("http://{}", slow.addr));
    let config = Config::from_json(&text, "test-config.json").expect("test config is valid");
    let secrets = secrets(&config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = proxy::Shutdown::new();
    let shutdown = stop.clone();
    let server = tokio::spawn(async move {
        proxy::serve_on(listener, config, secrets, shutdown, threads)
            .await
            .expect("server ran");
    });
    TestProxy {
        addr,
        wiremock,
        mock,
        slow,
        raw,
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        stop,
        server,
    }
}

/// Poll `f` until it returns `Some`, or panic after `deadline` saying what
/// was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free port on 127.0.0.1 (bound then released; for spawning the binary).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Await `fut` (IO already on its way, e.g. a FIN on loopback) without
/// letting paused time jump ahead. A paused runtime with nothing to run
/// advances to its next timer; if the kernel has not delivered the bytes
/// yet, that timer may be a test's far-off deadline. While a blocking task
/// runs, tokio does not auto-advance, so the wait below is in real time
/// (at most 10 s) and no virtual timer fires during it.
pub async fn settle<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    let (stop, wait) = std::sync::mpsc::channel::<()>();
    let guard = tokio::task::spawn_blocking(move || wait.recv_timeout(Duration::from_secs(10)));
    let out = tokio::select! {
        v = fut => v,
        _ = guard => panic!("{what}: not within 10 s of real time"),
    };
    drop(stop);
    out
}

/// Whether the peer has closed `s` (EOF readable now); data counts as open.
pub fn is_closed(s: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(s.try_read(&mut buf), Ok(0))
}

/// The log lines goproxy writes on this thread while the guard lives, as
/// text. Tests run on a current-thread runtime and goproxy serves on it
/// (one event loop), so the thread's lines are the test's. One global
/// subscriber sends each line to its thread's capture: per-thread
/// subscribers (`set_default`) share tracing's global callsite cache, and
/// tests running side by side then lost lines now and then.
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Logs>> = const { std::cell::RefCell::new(None) };
}

/// Stops this thread's capture when dropped.
#[derive(Debug)]
pub struct Capturing(());

impl Drop for Capturing {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

impl Logs {
    /// Start capturing this thread's lines at INFO and above.
    pub fn capture() -> (Logs, Capturing) {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let sub = tracing_subscriber::fmt()
                .with_writer(|| ThreadCapture)
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            tracing::subscriber::set_global_default(sub).expect("no other global subscriber");
        });
        let logs = Logs::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(logs.clone()));
        (logs, Capturing(()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Writes into the current thread's capture, if any.
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(logs) = &*c.borrow() {
                logs.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Send a streaming completion for `model` on a raw socket and read
/// nothing back: a client that stopped reading.
pub async fn post_and_never_read(addr: SocketAddr, model: &str) -> tokio::net::TcpStream {
    post_raw(
        addr,
        &format!(r#"{{"model":"{model}","stream":true,"messages":[]}}"#),
    )
    .await
}

/// POST `body` as a chat completion on a new raw connection (HTTP/1.1,
/// the test key), and return the connection unread.
pub async fn post_raw(addr: SocketAddr, body: &str) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// A chat completion request with `body` and the test key, for an
/// HTTP/2 client ([`h2_connect`]).
pub fn h2_post(body: &'static str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    http::Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {CLIENT_KEY}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            body.as_bytes(),
        )))
        .unwrap()
}

/// An HTTP/2 client connection (prior knowledge) and its driving task.
pub async fn h2_connect<B>(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    (send, tokio::spawn(conn))
}
