//! The pooled upstream HTTP client: hyper's own client with rustls (Mozilla
//! roots from `webpki-roots`, HTTP/1.1 or HTTP/2 by ALPN), built once per
//! server.
//!
//! Not reqwest: per request it parsed the URL again, in its pending request
//! and in its redirect layer (even with redirects off), about a tenth of
//! goproxy's instructions for a small request. This client takes the
//! `http::Uri` each endpoint parsed once at config load, follows no
//! redirects and reads no proxy env vars (it has no code for either). The
//! TCP settings are the ones reqwest used: `TCP_NODELAY`, keepalive probes
//! after 15 s every 15 s, 3 retries.

use std::error::Error as StdError;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::chunks::Chunks;

/// The upstream client type.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Chunks>;

/// How long an unused pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(50);
/// TCP keepalive: first probe after, then every, this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
/// TCP keepalive probes before the connection is declared dead.
const TCP_KEEPALIVE_RETRIES: u32 = 3;

/// Build the client; `connect_timeout` bounds the TCP connect.
pub fn build(connect_timeout: Duration) -> Result<HttpClient, rustls::Error> {
    let mut http = HttpConnector::new();
    // https:// URIs go through this connector too: the TLS layer wraps it.
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.set_keepalive_interval(Some(TCP_KEEPALIVE));
    http.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https))
}

/// Whether an error (or one of its causes) is a timeout, e.g. the connect
/// timeout.
pub fn is_timeout(e: &(dyn StdError + 'static)) -> bool {
    causes(e).any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// An error and its causes on one line, e.g. `client error (Connect): tcp
/// connect error: Connection refused (os error 111)`. hyper's and rustls'
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
