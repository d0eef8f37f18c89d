//! The test stack of `docker-compose.test.yml` (nginx with TLS -> goproxy ->
//! mock upstream), brought up for real and exercised the way the design's
//! runbook does: over HTTPS through nginx, and with `nginx -t`,
//! `nginx -s reload` and `netstat -tlnp` inside the containers.
//!
//! Needs Docker and the images from `scripts/seed-images.sh`; these tests
//! fail (never skip) when either is missing. One stack is shared by the
//! steps below (the machines have 2 cores); the guard removes it on drop,
//! also when an assertion fails. `HARNESS_KEEP=1` keeps it for debugging.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use harness::compose::ComposeStack;
use harness::tls;
use serde_json::{json, Value};

const HOST: &str = "chat.trollllm.xyz";
const IMAGES: [&str; 3] = [
    "goproxy:test",
    "goproxy-nginx:test",
    "goproxy-mock-upstream:test",
];
const CLIENT_KEY: &str = "sk-trollllm-test-key";
/// Spacing of the mock's chunks: large enough that buffering anywhere on
/// the way (nginx, goproxy) would be obvious in the arrival times.
const CHUNK_DELAY_MS: u64 = 100;
const CHUNKS: usize = 8;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

fn require_images() {
    let out = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}"])
        .args(IMAGES)
        .output()
        .expect("cannot run `docker`: is Docker installed?");
    assert!(
        out.status.success(),
        "the test stack's images are missing ({}): run scripts/seed-images.sh first\n{}",
        IMAGES.join(", "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

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

/// Through nginx over real TLS: health answers, a streamed completion
/// arrives chunk by chunk, the model id is mapped, and the runbook's
/// in-container commands (`nginx -t`, `nginx -s reload`, `netstat -tlnp`)
/// work and show port 8004.
#[tokio::test]
async fn stack_serves_streams_through_nginx_and_runbook_commands_work() {
    require_images();
    let tls_dir = tempfile::tempdir().unwrap();
    let cert = tls::generate(HOST).unwrap();
    // Let's Encrypt's layout, mounted where production mounts /etc/letsencrypt.
    tls::write_tls_dir(&tls_dir.path().join("live").join(HOST), &cert).unwrap();

    // Port 0: Docker picks free loopback ports, so parallel stacks (and
    // anything already on 443) do not collide.
    let stack = ComposeStack::new(&repo_root().join("docker-compose.yml"), "stacktest")
        .unwrap()
        .with_file(&repo_root().join("docker-compose.test.yml"))
        .unwrap()
        .with_env("TEST_LETSENCRYPT_DIR", tls_dir.path().display().to_string())
        .with_env("HTTPS_BIND", "127.0.0.1")
        .with_env("HTTP_BIND", "127.0.0.1")
        .with_env("HTTPS_PORT", "0")
        .with_env("HTTP_PORT", "0")
        .with_env("OHMYGPT_API_KEY", "sk-upstream-test-key")
        .with_env("UPSTREAM_PORT", "0")
        .with_env("MOCK_CHUNKS", CHUNKS.to_string())
        .with_env("MOCK_CHUNK_DELAY_MS", CHUNK_DELAY_MS.to_string())
        .with_env("PROXY_API_KEY", CLIENT_KEY);
    stack.up(&[], false).await.unwrap();
    stack
        .wait_healthy(&["upstream", "goproxy", "nginx"], Duration::from_secs(90))
        .await
        .unwrap();

    let https_port = stack.host_port("nginx", 443).await.unwrap();
    let upstream_port = stack.host_port("upstream", 9000).await.unwrap();
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
    let test = stack.exec("nginx", &["nginx", "-t"]).await.unwrap();
    assert_eq!(test.code, 0, "nginx -t failed: {}", test.stderr);
    assert!(test.stderr.contains("syntax is ok"), "{}", test.stderr);

    let reload = stack
        .exec("nginx", &["nginx", "-s", "reload"])
        .await
        .unwrap();
    assert_eq!(reload.code, 0, "nginx -s reload failed: {}", reload.stderr);
    // nginx still serves after the reload (new workers, re-resolved goproxy).
    let after = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(after.status(), 200, "GET /health after nginx -s reload");

    let netstat = stack.exec("goproxy", &["netstat", "-tlnp"]).await.unwrap();
    assert_eq!(netstat.code, 0, "netstat failed: {}", netstat.stderr);
    assert!(
        netstat
            .stdout
            .lines()
            .any(|l| l.contains(":8004 ") && l.contains("LISTEN")),
        "goproxy does not listen on 8004:\n{}",
        netstat.stdout
    );

    assert_eq!(stack.restart_count("goproxy").await.unwrap(), 0);
    stack.down().await.unwrap();
}
