//! The stack of one run: nginx, goproxy and the streaming mock from
//! `docker-compose.test.yml`, plus a wiremock server on the host, all owned
//! by one value. Dropping it tears the compose project down (unless kept).

use std::path::{Path, PathBuf};
use std::time::Duration;

use wiremock::MockServer;

use crate::compose::ComposeStack;
use crate::docker;
use crate::files::LiveFiles;
use crate::tls;

/// The TLS name nginx serves.
pub const HOSTNAME: &str = "chat.trollllm.xyz";
/// The mock's port inside the compose network.
pub const MOCK_PORT: u16 = 9000;
/// How long a fresh stack may take to become healthy.
const UP_DEADLINE: Duration = Duration::from_secs(120);

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub compose_file: PathBuf,
    pub keep: bool,
    /// The client key goproxy accepts (`PROXY_API_KEY`).
    pub api_key: String,
}

impl StackOptions {
    pub fn from_root(root: &Path) -> Self {
        Self {
            compose_file: root.join("docker-compose.test.yml"),
            keep: false,
            api_key: format!("sk-trollllm-harness-{:016x}", rand::random::<u64>()),
        }
    }
}

/// A running stack.
#[derive(Debug)]
pub struct Stack {
    pub compose: ComposeStack,
    pub files: LiveFiles,
    pub https_port: u16,
    pub mock_port: u16,
    pub client: reqwest::Client,
    pub api_key: String,
    pub wiremock: MockServer,
}

/// Binds wiremock where containers can reach it (all interfaces; the
/// goproxy container reaches it as `host.docker.internal`).
pub async fn start_wiremock() -> Result<MockServer, String> {
    let listener = std::net::TcpListener::bind("0.0.0.0:0")
        .map_err(|e| format!("cannot bind wiremock: {e}"))?;
    Ok(MockServer::builder().listener(listener).start().await)
}

impl Stack {
    /// Writes a fresh certificate, starts the compose project against the
    /// run's live files and waits until every service is healthy.
    pub async fn start(
        opts: &StackOptions,
        files: LiveFiles,
        wiremock: MockServer,
    ) -> Result<Stack, String> {
        let cert = tls::generate(HOSTNAME).map_err(|e| format!("cannot make a TLS cert: {e}"))?;
        tls::write_tls_dir(&files.tls_dir, &cert)
            .map_err(|e| format!("cannot write TLS files: {e}"))?;
        let https_port = free_port()?;
        let http_port = free_port()?;
        let mut compose = ComposeStack::new(&opts.compose_file, "harness")
            .map_err(|e| e.to_string())?
            .with_env("GOPROXY_CONFIG", files.goproxy_config.to_string_lossy())
            .with_env("NGINX_CONF", files.nginx_conf.to_string_lossy())
            .with_env("TLS_DIR", files.tls_dir.to_string_lossy())
            .with_env("HTTPS_PORT", https_port.to_string())
            .with_env("HTTP_PORT", http_port.to_string())
            .with_env("PROXY_API_KEY", opts.api_key.clone());
        compose.keep(opts.keep);
        compose
            .up(&[], false)
            .await
            .map_err(|e| format!("docker compose up failed: {e}"))?;
        compose
            .wait_healthy(&["upstream", "goproxy", "nginx"], UP_DEADLINE)
            .await
            .map_err(|e| e.to_string())?;
        let https_port = compose.host_port("nginx", 443).await.unwrap_or(https_port);
        let mock_port = compose
            .host_port("upstream", MOCK_PORT)
            .await
            .map_err(|e| e.to_string())?;
        let ca = reqwest::Certificate::from_pem(cert.cert_pem.as_bytes())
            .map_err(|e| format!("generated cert does not parse: {e}"))?;
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .resolve(HOSTNAME, ([127, 0, 0, 1], https_port).into())
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build HTTPS client: {e}"))?;
        Ok(Stack {
            compose,
            files,
            https_port,
            mock_port,
            client,
            api_key: opts.api_key.clone(),
            wiremock,
        })
    }

    /// `https://chat.trollllm.xyz:<port><path>`, resolved to loopback.
    pub fn url(&self, path: &str) -> String {
        format!("https://{HOSTNAME}:{}{path}", self.https_port)
    }

    /// The mock's admin URL on loopback.
    pub fn mock_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.mock_port)
    }

    /// The one container of a service; an error if there are none or several.
    pub async fn only_container(&self, service: &str) -> Result<String, String> {
        let ids = self
            .compose
            .container_ids(service)
            .await
            .map_err(|e| e.to_string())?;
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(format!("no running container for service {service}")),
            many => Err(format!(
                "{} containers for service {service}, expected one",
                many.len()
            )),
        }
    }

    /// `nginx -s reload` after `nginx -t`, in the nginx container.
    pub async fn reload_nginx(&self) -> Result<String, String> {
        let id = self.only_container("nginx").await?;
        let test = docker::exec(&id, &["nginx", "-t"]).await?;
        if test.code != 0 {
            return Err(format!(
                "nginx -t refused the live config: {}",
                test.stderr.trim()
            ));
        }
        let out = docker::exec(&id, &["nginx", "-s", "reload"]).await?;
        if out.code != 0 {
            return Err(format!(
                "nginx -s reload exited {}: {}",
                out.code,
                out.stderr.trim()
            ));
        }
        Ok("nginx -t ok; nginx -s reload ok".into())
    }

    /// PIDs of the nginx worker processes now running.
    pub async fn nginx_workers(&self) -> Result<Vec<String>, String> {
        let id = self.only_container("nginx").await?;
        // `[p]rocess` so the pattern does not match this shell's own command line.
        let list = "grep -l 'worker [p]rocess' /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3";
        let out = docker::exec(&id, &["sh", "-c", list]).await?;
        Ok(out.stdout.split_whitespace().map(str::to_string).collect())
    }

    /// Waits until every worker in `old` has exited.
    ///
    /// `nginx -s reload` only signals the master; the old workers then keep
    /// serving the client connections they hold (an HTTP/2 connection carries
    /// new requests for a while) with the OLD upstream list. Stopping the old
    /// goproxy before they exit turns those requests into 502s: measured,
    /// 3 of 160 requests.
    pub async fn wait_nginx_workers_gone(
        &self,
        old: &[String],
        deadline: Duration,
    ) -> Result<String, String> {
        let t0 = std::time::Instant::now();
        loop {
            let now = self.nginx_workers().await?;
            let left: Vec<&String> = old.iter().filter(|p| now.contains(p)).collect();
            if left.is_empty() {
                return Ok(format!(
                    "the {} workers of the previous configuration exited after {:.0} ms",
                    old.len(),
                    t0.elapsed().as_secs_f64() * 1000.0
                ));
            }
            if t0.elapsed() > deadline {
                return Err(format!(
                    "nginx workers {left:?} still running after {deadline:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Replaces the streaming mock's behaviour (chunks, delays, faults).
    pub async fn set_mock(&self, config: &mock_upstream::MockConfig) -> Result<(), String> {
        let resp = reqwest::Client::new()
            .put(self.mock_url("/__mock/config"))
            .json(config)
            .send()
            .await
            .map_err(|e| format!("cannot reach the mock's admin route: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("mock refused its config: HTTP {}", resp.status()))
        }
    }
}

/// A free loopback port for a published container port. Compose v1 cannot
/// publish to an ephemeral port and tell us reliably on every version, so we
/// pick one; the window between picking and binding is short.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}
