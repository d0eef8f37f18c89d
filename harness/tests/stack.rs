//! The test stack (nginx with TLS -> goproxy -> mock upstream), started
//! container by container with testcontainers on a per-run network, and
//! exercised the way the design's runbook does: over HTTPS through nginx,
//! and with `nginx -t`, `nginx -s reload` and `netstat -tlnp` inside the
//! containers.
//!
//! The same three images and mounts as `docker-compose.test.yml`; the gate
//! itself drives compose (README: "Where testcontainers is used"). Needs
//! Docker and the images from `scripts/seed-images.sh`; it fails (never
//! skips) when either is missing. Containers and the network are removed
//! on drop, also when an assertion fails; `TESTCONTAINERS_COMMAND=keep`
//! keeps the containers for debugging.

mod containers;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use containers::{
    exec, healthy_image, repo_root, require_images, TestNetwork, GOPROXY, MOCK, NGINX,
};
use futures_util::StreamExt;
use harness::tls;
use serde_json::{json, Value};
use testcontainers::core::{AccessMode, IntoContainerPort, Mount};
use testcontainers::runners::AsyncRunner;
use testcontainers::ImageExt;

const HOST: &str = "chat.trollllm.xyz";
const CLIENT_KEY: &str = "sk-trollllm-test-key";
/// Spacing of the mock's chunks: large enough that buffering anywhere on
/// the way (nginx, goproxy) would be obvious in the arrival times.
const CHUNK_DELAY_MS: u64 = 100;
const CHUNKS: usize = 8;

/// An HTTPS client that trusts only the stack's throwaway certificate and
/// sends `chat.trollllm.xyz` to nginx's published loopback port (SNI and
/// Host as in production).
fn https_client(cert: &tls::TestCert, port: u16) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(cert.cert_pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(root)
        .tls_built_in_root_certs(false)
        .resolve(HOST, SocketAddr::from(([127, 0, 0, 1], port)))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn read_only(host: &std::path::Path, inside: &str) -> Mount {
    Mount::bind_mount(host.to_string_lossy(), inside).with_access_mode(AccessMode::ReadOnly)
}

/// Through nginx over real TLS: health answers, a streamed completion
/// arrives chunk by chunk, the model id is mapped, and the runbook's
/// in-container commands (`nginx -t`, `nginx -s reload`, `netstat -tlnp`)
/// work and show port 8004.
#[tokio::test]
async fn stack_serves_streams_through_nginx_and_runbook_commands_work() {
    require_images(&[GOPROXY, NGINX, MOCK]);
    let root = repo_root();
    let tls_dir = tempfile::tempdir().unwrap();
    let cert = tls::generate(HOST).unwrap();
    // Let's Encrypt's layout, mounted where production mounts /etc/letsencrypt.
    tls::write_tls_dir(&tls_dir.path().join("live").join(HOST), &cert).unwrap();

    // Declared first, so it drops last: after the containers on it.
    let net = TestNetwork::create();

    // The mock, reachable as `upstream` (goproxy's config says upstream:9000).
    let mock = healthy_image(MOCK, &["mock-upstream", "healthcheck"])
        .with_env_var("MOCK_LISTEN", "0.0.0.0:9000")
        .with_env_var("MOCK_CHUNKS", CHUNKS.to_string())
        .with_env_var("MOCK_CHUNK_DELAY_MS", CHUNK_DELAY_MS.to_string())
        .start()
        .await
        .expect("mock upstream container");
    net.connect(mock.id(), "upstream");

    // goproxy on the repository's test config, mounted read-only as in
    // compose; resolvable as `goproxy` before nginx loads its config.
    let goproxy = healthy_image(GOPROXY, &["goproxy", "healthcheck"])
        .with_mount(read_only(
            &root.join("docker/config.test.json"),
            "/app/config.json",
        ))
        .with_env_var("PROXY_API_KEY", CLIENT_KEY)
        .with_env_var("OHMYGPT_API_KEY", "sk-upstream-test-key")
        .start()
        .await
        .expect("goproxy container");
    net.connect(goproxy.id(), "goproxy");

    // nginx with the deployed nginx.conf and the throwaway certificate.
    let healthcheck = [
        "curl",
        "-fsSk",
        "--max-time",
        "2",
        "--resolve",
        "chat.trollllm.xyz:443:127.0.0.1",
        "https://chat.trollllm.xyz/nginx-health",
    ];
    let nginx = healthy_image(NGINX, &healthcheck)
        .with_network(&net.name)
        .with_mount(read_only(
            &root.join("nginx/nginx.conf"),
            "/etc/nginx/nginx.conf",
        ))
        .with_mount(read_only(tls_dir.path(), "/etc/letsencrypt"))
        .start()
        .await
        .expect("nginx container");

    let https_port = nginx.get_host_port_ipv4(443.tcp()).await.unwrap();
    let upstream_port = mock.get_host_port_ipv4(9000.tcp()).await.unwrap();
    let client = https_client(&cert, https_port);
    let base = format!("https://{HOST}:{https_port}");

    // /health through nginx.
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "GET /health through nginx");

    // Internal routes are not reachable from outside.
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(
        metrics.status(),
        404,
        "/metrics must not be served by nginx"
    );

    // A streamed chat completion arrives spread out, not all at once.
    let sent = Instant::now();
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "gpt-4o-mini", "stream": true,
                      "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "streamed completion through nginx");
    let mut arrivals: Vec<(Duration, usize)> = Vec::new();
    let mut text = String::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("the stream broke");
        let piece = String::from_utf8_lossy(&chunk);
        let tokens = piece.matches("\"content\":\"tok").count();
        if tokens > 0 {
            arrivals.push((sent.elapsed(), tokens));
        }
        text.push_str(&piece);
    }
    assert!(text.contains("data: [DONE]"), "stream must finish: {text}");
    let first = arrivals.first().expect("no content chunk arrived").0;
    let last = arrivals.last().unwrap().0;
    let expected_span = Duration::from_millis(CHUNK_DELAY_MS * (CHUNKS as u64 - 1));
    assert!(
        last - first >= expected_span / 2,
        "content chunks arrived within {:?} of each other (the mock spaced them over {:?}): \
         something buffers the stream; arrivals: {arrivals:?}",
        last - first,
        expected_span
    );
    assert!(
        arrivals.len() >= CHUNKS / 2,
        "expected the {CHUNKS} chunks in separate reads, got {arrivals:?}"
    );

    // goproxy mapped the model id before forwarding (seen at the mock).
    let recorded: Value = reqwest::get(format!("http://127.0.0.1:{upstream_port}/__mock/requests"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let forwarded = recorded
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "/v1/chat/completions")
        .unwrap_or_else(|| panic!("the mock saw no completion request: {recorded}"));
    assert_eq!(forwarded["body"]["model"], "mock-gpt-4o-mini-2024-07-18");

    // The runbook's commands inside the containers.
    let (code, _, stderr) = exec(&nginx, &["nginx", "-t"]).await;
    assert_eq!(code, 0, "nginx -t failed: {stderr}");
    assert!(stderr.contains("syntax is ok"), "{stderr}");

    let (code, _, stderr) = exec(&nginx, &["nginx", "-s", "reload"]).await;
    assert_eq!(code, 0, "nginx -s reload failed: {stderr}");
    // nginx still serves after the reload (new workers, re-resolved goproxy).
    let after = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(after.status(), 200, "GET /health after nginx -s reload");

    let (code, netstat, stderr) = exec(&goproxy, &["netstat", "-tlnp"]).await;
    assert_eq!(code, 0, "netstat failed: {stderr}");
    assert!(
        netstat
            .lines()
            .any(|l| l.contains(":8004 ") && l.contains("LISTEN")),
        "goproxy does not listen on 8004:\n{netstat}"
    );

    let restarts =
        harness::docker::docker_ok(&["inspect", "-f", "{{.RestartCount}}", goproxy.id()])
            .await
            .unwrap();
    assert_eq!(restarts.trim(), "0", "goproxy restarted");
}
