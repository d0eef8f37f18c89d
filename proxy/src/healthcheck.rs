//! `goproxy healthcheck`: the Docker HEALTHCHECK for an image without curl.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::Config;

/// GET `/health` on the configured port; `Ok` on 200, `Err(reason)` otherwise.
pub async fn check(config: &Config, timeout: Duration) -> Result<(), String> {
    let host = match config.host() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    let addr = std::net::SocketAddr::new(host, config.port());
    let url = format!("http://{addr}/health");
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let resp = match tokio::time::timeout(timeout, client.get(uri)).await {
        // A connected but unanswered request: goproxy is stuck, or at
        // max_connections with every connection busy (its log says which).
        Err(_) => {
            return Err(format!(
                "GET {url} failed: no answer within {timeout:?} (goproxy is stuck, or at max_connections = {} with every connection busy: see its log)",
                config.max_connections
            ))
        }
        Ok(Err(e)) => return Err(format!("GET {url} failed: {}", crate::client::describe(&e))),
        Ok(Ok(r)) => r,
    };
    if resp.status() == 200 {
        Ok(())
    } else {
        Err(format!("GET {url} answered {}", resp.status()))
    }
}
