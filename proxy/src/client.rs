//! The upstream HTTP client: rustls (Mozilla roots from `webpki-roots`,
//! HTTP/1.1 or HTTP/2 by ALPN), built once per server. Connections are
//! made by hyper-util's connector; HTTP/1.1 exchanges are goproxy's own
//! ([`crate::h1`]: the relay task reads the socket itself), HTTP/2 ones go
//! through hyper's HTTP/2 client, one shared connection per upstream.
//!
//! Not reqwest: per request it parsed the URL again, in its pending request
//! and in its redirect layer (even with redirects off), about a tenth of
//! goproxy's instructions for a small request. This client takes the
//! `http::Uri` each endpoint parsed once at config load, follows no
//! redirects and reads no proxy env vars (it has no code for either). The
//! TCP settings are the ones reqwest used: `TCP_NODELAY`, keepalive probes
//! after 15 s every 15 s, 3 retries.

use std::error::Error as StdError;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::client::conn::http2;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower_service::Service;

use crate::chunks::Chunks;
use crate::h1::{self, Conn, H1Error, Key, Pool};
use crate::upstream_body::UpstreamBody;

/// How long an unused connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(50);
/// How often idle connections are looked at (expired or closed ones are
/// closed), so an idle proxy holds no dead sockets for long.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// TCP keepalive: first probe after, then every, this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
/// TCP keepalive probes before the connection is declared dead.
const TCP_KEEPALIVE_RETRIES: u32 = 3;

type Connector = HttpsConnector<HttpConnector>;
type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Why an upstream request got no response head.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect error")]
    Connect(#[source] Box<dyn StdError + Send + Sync>),
    #[error("the upstream URL has no host")]
    NoHost,
    #[error(transparent)]
    H1(#[from] H1Error),
    #[error("HTTP/2 error")]
    H2(#[source] hyper::Error),
}

/// An HTTP/2 connection's handle and when it was last used.
struct H2Conn {
    sender: http2::SendRequest<Chunks>,
    last_used: Instant,
}

type H2Conns = Mutex<foldhash::HashMap<Key, H2Conn>>;

/// The upstream client.
pub struct HttpClient {
    connector: Connector,
    pool: Arc<Pool>,
    h2: Arc<H2Conns>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("idle_h1", &self.pool.idle_count())
            .finish_non_exhaustive()
    }
}

/// Build the client, trusting the Mozilla roots; `connect_timeout` bounds
/// the TCP connect. Inside a tokio runtime a task prunes idle connections
/// until the client is dropped.
pub fn build(connect_timeout: Duration) -> Result<HttpClient, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    build_with_roots(connect_timeout, roots)
}

/// [`build`] with other trusted roots (tests: a local TLS upstream).
pub fn build_with_roots(
    connect_timeout: Duration,
    roots: rustls::RootCertStore,
) -> Result<HttpClient, rustls::Error> {
    let mut http = HttpConnector::new();
    // https:// URIs go through this connector too: the TLS layer wraps it.
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.set_keepalive_interval(Some(TCP_KEEPALIVE));
    http.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let client = HttpClient {
        connector,
        pool: Arc::new(Pool::new(POOL_IDLE)),
        h2: Arc::new(Mutex::new(foldhash::HashMap::default())),
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(prune(
            Arc::downgrade(&client.pool),
            Arc::downgrade(&client.h2),
        ));
    }
    Ok(client)
}

/// Every [`PRUNE_EVERY`], close idle connections that expired or that the
/// upstream closed; ends when the client is dropped.
async fn prune(pool: Weak<Pool>, h2: Weak<H2Conns>) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (Some(pool), Some(h2)) = (pool.upgrade(), h2.upgrade()) else {
            return;
        };
        pool.prune();
        h2.lock()
            .unwrap()
            .retain(|_, c| !c.sender.is_closed() && c.last_used.elapsed() < POOL_IDLE);
    }
}

impl HttpClient {
    /// Send `req` (an absolute URI) and wait for the response head: on a
    /// pooled HTTP/1.1 connection or the upstream's HTTP/2 connection if
    /// there is one, else on a new connection.
    pub async fn request(
        &self,
        req: Request<Chunks>,
    ) -> Result<Response<UpstreamBody>, ClientError> {
        let key = Key::of(req.uri()).ok_or(ClientError::NoHost)?;
        // Only the pooled HTTP/1.1 path is kept inline: the others' futures
        // (hyper's HTTP/2 handshake above all) are kilobytes, and hyper's
        // server moves the whole request future once per request.
        if let Some(sender) = self.h2_sender(&key) {
            return Box::pin(send_h2(sender, req)).await;
        }
        if let Some(conn) = self.pool.take(&key) {
            return self.send_h1(conn, key, req).await;
        }
        Box::pin(self.connect_and_send(key, req)).await
    }

    /// Send `req` on a new connection: HTTP/2 if the upstream picked it.
    async fn connect_and_send(
        &self,
        key: Key,
        req: Request<Chunks>,
    ) -> Result<Response<UpstreamBody>, ClientError> {
        let stream = self.connect(req.uri()).await?;
        if stream.connected().is_negotiated_h2() {
            let sender = self.handshake_h2(key, stream).await?;
            return send_h2(sender, req).await;
        }
        self.send_h1(Conn::new(TokioIo::new(stream)), key, req)
            .await
    }

    /// Close idle HTTP/1.1 connections that expired or that the upstream
    /// closed; how many stay open.
    pub fn prune_idle(&self) -> usize {
        self.pool.prune();
        self.pool.idle_count()
    }

    async fn send_h1(
        &self,
        conn: Box<Conn>,
        key: Key,
        req: Request<Chunks>,
    ) -> Result<Response<UpstreamBody>, ClientError> {
        let resp = h1::send(conn, &req, Some((self.pool.clone(), key))).await?;
        Ok(resp.map(UpstreamBody::H1))
    }

    async fn connect(&self, uri: &Uri) -> Result<Stream, ClientError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(ClientError::Connect)?;
        connector
            .call(uri.clone())
            .await
            .map_err(ClientError::Connect)
    }

    /// The live HTTP/2 connection to `key`, if there is one.
    fn h2_sender(&self, key: &Key) -> Option<http2::SendRequest<Chunks>> {
        let mut h2 = self.h2.lock().unwrap();
        let conn = h2.get_mut(key)?;
        if conn.sender.is_closed() {
            h2.remove(key);
            return None;
        }
        conn.last_used = Instant::now();
        Some(conn.sender.clone())
    }

    /// Start HTTP/2 on a new connection and share it for `key`.
    async fn handshake_h2(
        &self,
        key: Key,
        stream: Stream,
    ) -> Result<http2::SendRequest<Chunks>, ClientError> {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(stream)
            .await
            .map_err(ClientError::H2)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %describe(&e), "upstream HTTP/2 connection ended");
            }
        });
        let shared = H2Conn {
            sender: sender.clone(),
            last_used: Instant::now(),
        };
        self.h2.lock().unwrap().insert(key, shared);
        Ok(sender)
    }
}

async fn send_h2(
    mut sender: http2::SendRequest<Chunks>,
    req: Request<Chunks>,
) -> Result<Response<UpstreamBody>, ClientError> {
    sender.ready().await.map_err(ClientError::H2)?;
    let resp = sender.send_request(req).await.map_err(ClientError::H2)?;
    Ok(resp.map(UpstreamBody::H2))
}

/// Whether an error (or one of its causes) is a timeout, e.g. the connect
/// timeout.
pub fn is_timeout(e: &(dyn StdError + 'static)) -> bool {
    causes(e).any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// An error and its causes on one line, e.g. `connect error: tcp connect
/// error: Connection refused (os error 111)`. hyper's and rustls'
/// errors never carry the request URL, so no secret in it can leak here.
pub fn describe(e: &(dyn StdError + 'static)) -> String {
    let mut out = String::new();
    for (i, c) in causes(e).enumerate().take(8) {
        if i > 0 {
            out.push_str(": ");
        }
        out.push_str(&c.to_string());
    }
    out
}

fn causes<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |&c| c.source()).take(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An https:// URI goes through rustls with ALPN offering h2 and
    /// http/1.1 (a ClientHello arrives, not a plaintext request).
    #[tokio::test]
    async fn https_uris_speak_tls_with_alpn() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = build(Duration::from_secs(5)).unwrap();
        let uri: http::Uri = format!("https://127.0.0.1:{port}/v1/messages")
            .parse()
            .unwrap();
        let send = tokio::spawn(async move {
            client
                .request(http::Request::post(uri).body(Chunks::default()).unwrap())
                .await
                .map(drop)
        });
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut hello = vec![0; 2048];
        let n = sock.read(&mut hello).await.unwrap();
        let hello = &hello[..n];
        assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
        let has = |needle: &[u8]| hello.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"\x02h2"), "ALPN offers h2");
        assert!(has(b"\x08http/1.1"), "ALPN offers http/1.1");
        drop(sock);
        assert!(send.await.unwrap().is_err(), "no TLS server there");
    }

    /// The request future stays small (hyper's server moves it once per
    /// request): the rare paths are boxed.
    #[tokio::test]
    async fn the_request_future_is_small() {
        let client = build(Duration::from_secs(5)).unwrap();
        let req = http::Request::post("http://127.0.0.1:9/").body(Chunks::default());
        let fut = client.request(req.unwrap());
        let size = std::mem::size_of_val(&fut);
        assert!(size < 2048, "{size} bytes");
    }

    #[test]
    fn timeouts_are_found_among_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let timed_out = Outer(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        ));
        assert!(is_timeout(&timed_out));
        assert_eq!(describe(&timed_out), "outer: connect timed out");
        let refused = Outer(std::io::ErrorKind::ConnectionRefused.into());
        assert!(!is_timeout(&refused));
    }
}
