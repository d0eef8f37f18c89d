//! `goproxy healthcheck`: the Docker HEALTHCHECK for an image without curl.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

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
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url} failed: {e}"))?;
    if resp.status() == 200 {
        Ok(())
    } else {
        Err(format!("GET {url} answered {}", resp.status()))
    }
}
