//! The stack of one run: nginx, goproxy and the streaming mock from
//! `docker-compose.test.yml`, plus a wiremock server on the host, all owned
//! by one value. Dropping it tears the compose project down (unless kept).

use std::path::{Path, PathBuf};
use std::time::Duration;

use wiremock::MockServer;

use crate::compose::ComposeStack;
use crate::docker;
use crate::files::{Backup, LiveFiles};
use crate::scenario::Scenario;
use crate::state::RunState;
use crate::tls;
use crate::verify::StreamModel;

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
    /// The override that adds `goproxy-b` (multi-instance runs only).
    pub multi_file: Option<PathBuf>,
}

impl StackOptions {
    pub fn from_root(root: &Path) -> Self {
        Self {
            compose_file: root.join("docker-compose.test.yml"),
            keep: false,
            api_key: format!("sk-trollllm-harness-{:016x}", rand::random::<u64>()),
            multi_file: None,
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
    cert_pem: String,
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
        // Port 0: Docker picks free loopback ports, read back with `port`.
        let mut compose = ComposeStack::new(&opts.compose_file, "harness")
            .map_err(|e| e.to_string())?
            .with_env("GOPROXY_CONFIG", files.goproxy_config.to_string_lossy())
            .with_env("NGINX_CONF", files.nginx_conf.to_string_lossy())
            .with_env("TLS_DIR", files.tls_dir.to_string_lossy())
            .with_env("HTTPS_PORT", "0")
            .with_env("HTTP_PORT", "0")
            .with_env("PROXY_API_KEY", opts.api_key.clone());
        let mut services = vec!["upstream", "goproxy", "nginx"];
        if let Some(multi) = &opts.multi_file {
            compose = compose
                .with_file(multi)
                .map_err(|e| e.to_string())?
                .with_env("GOPROXY_B_CONFIG", files.goproxy_b_config.to_string_lossy());
            services.insert(2, "goproxy-b");
        }
        compose.keep(opts.keep);
        compose
            .up(&[], false)
            .await
            .map_err(|e| format!("docker compose up failed: {e}"))?;
        compose
            .wait_healthy(&services, UP_DEADLINE)
            .await
            .map_err(|e| e.to_string())?;
        Self::connect(
            compose,
            files,
            cert.cert_pem,
            opts.api_key.clone(),
            wiremock,
        )
        .await
    }

    /// Re-attaches to a kept run (see [`crate::state`]). wiremock is bound
    /// again on its old port, where goproxy's probe endpoint points.
    pub async fn attach(state: &RunState) -> Result<Stack, String> {
        let compose = ComposeStack::attach(&state.compose_files, &state.project, state.env.clone())
            .map_err(|e| e.to_string())?;
        if compose
            .container_ids("nginx")
            .await
            .map_err(|e| e.to_string())?
            .is_empty()
        {
            return Err(format!(
                "compose project {} has no running nginx: was it taken down?",
                state.project
            ));
        }
        let listener = std::net::TcpListener::bind(("0.0.0.0", state.wiremock_port))
            .map_err(|e| format!("cannot bind wiremock again on {}: {e}", state.wiremock_port))?;
        let wiremock = MockServer::builder().listener(listener).start().await;
        let files = LiveFiles::open(&state.run_dir);
        Self::connect(
            compose,
            files,
            state.cert_pem.clone(),
            state.api_key.clone(),
            wiremock,
        )
        .await
    }

    /// What a later command needs to find this stack again.
    pub fn state(&self, scenario: &Scenario, model: &StreamModel, backups: &[Backup]) -> RunState {
        RunState {
            run_dir: self.files.dir.clone(),
            compose_files: self.compose.files().to_vec(),
            project: self.compose.project().to_string(),
            env: self.compose.env().to_vec(),
            https_port: self.https_port,
            mock_port: self.mock_port,
            wiremock_port: self.wiremock.address().port(),
            api_key: self.api_key.clone(),
            cert_pem: self.cert_pem.clone(),
            start_port: scenario.start_port,
            change_port: scenario.change.port,
            second_port: scenario.second_port,
            stream_model_id: model.id.clone(),
            stream_upstream_ids: model.upstream_ids.clone(),
            backups: backups
                .iter()
                .map(|b| (b.original.clone(), b.copy.clone()))
                .collect(),
        }
    }

    async fn connect(
        compose: ComposeStack,
        files: LiveFiles,
        cert_pem: String,
        api_key: String,
        wiremock: MockServer,
    ) -> Result<Stack, String> {
        let https_port = compose
            .host_port("nginx", 443)
            .await
            .map_err(|e| e.to_string())?;
        let mock_port = compose
            .host_port("upstream", MOCK_PORT)
            .await
            .map_err(|e| e.to_string())?;
        let ca = reqwest::Certificate::from_pem(cert_pem.as_bytes())
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
            api_key,
            cert_pem,
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
