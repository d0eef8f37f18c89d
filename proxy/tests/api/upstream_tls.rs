//! The upstream client over TLS, as real LLM APIs are reached: HTTP/2 when
//! the upstream picks it by ALPN (one shared connection), HTTP/1.1 kept
//! alive across requests otherwise. The upstream is a local hyper server
//! behind rustls with a self-signed certificate the client is told to
//! trust.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy::chunks::Chunks;
use proxy::client::build_with_roots;
use tokio::net::TcpListener;
use tokio_rustls::rustls;

/// A TLS upstream offering only `alpn`; counts TCP connections.
async fn tls_upstream(alpn: &'static [u8]) -> (u16, rustls::RootCertStore, Arc<AtomicUsize>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der.clone()], key)
    .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let tls = acceptor.accept(tcp).await.unwrap();
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let got = req.into_body().collect().await.unwrap().to_bytes();
                    Ok::<_, Infallible>(http::Response::new(Full::new(got)))
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    (port, roots, accepted)
}

/// Two requests, each echoed; the versions the answers came in.
async fn two_echoes(alpn: &'static [u8]) -> (Vec<http::Version>, usize) {
    let (port, roots, accepted) = tls_upstream(alpn).await;
    let client = build_with_roots(Duration::from_secs(5), roots).unwrap();
    let mut versions = Vec::new();
    for i in 0..2 {
        let mut body = Chunks::default();
        body.push(Bytes::from(format!("hello {i}")));
        let url = format!("https://localhost:{port}/v1/messages");
        let resp = client
            .request(http::Request::post(url).body(body).unwrap())
            .await
            .unwrap();
        versions.push(resp.version());
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got, format!("hello {i}"));
    }
    (versions, accepted.load(Ordering::SeqCst))
}

#[tokio::test]
async fn h2_upstreams_share_one_connection() {
    let (versions, connections) = two_echoes(b"h2").await;
    assert_eq!(versions, [http::Version::HTTP_2; 2]);
    assert_eq!(connections, 1);
}

/// Over TLS 1.3 the server's session tickets arrive after the handshake:
/// they must not make a kept-alive connection look stale.
#[tokio::test]
async fn tls_http1_upstreams_keep_the_connection() {
    let (versions, connections) = two_echoes(b"http/1.1").await;
    assert_eq!(versions, [http::Version::HTTP_11; 2]);
    assert_eq!(connections, 1);
}
