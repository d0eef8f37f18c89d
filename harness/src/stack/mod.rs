//! The stack of one run (nginx with TLS, goproxy, the streaming mock, and a
//! wiremock server for the probe model), owned by one value whatever runs
//! it: containers from `docker-compose.test.yml` ([`containers`], the
//! default) or local processes on loopback ([`local`], `--backend local`).
//! Dropping it removes what it started (unless kept).
//!
//! The phases (pre, deploy, verify, rollback) only call the methods here,
//! so each runbook step has one definition and two ways to be carried out.

pub mod containers;
pub mod local;
mod nginx_failure;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wiremock::MockServer;

use crate::compose::ComposeStack;
use crate::docker::{self, Exec};
use crate::files::{Backup, LiveFiles};
use crate::scenario::Scenario;
use crate::state::RunState;
use crate::tls;
use crate::verify::StreamModel;
use containers::Containers;
use local::{Local, LocalPrograms};

/// The TLS name nginx serves.
pub const HOSTNAME: &str = "chat.trollllm.xyz";
/// The mock's port inside the compose network.
pub const MOCK_PORT: u16 = 9000;
/// How long a fresh stack may take to become healthy.
const UP_DEADLINE: Duration = Duration::from_secs(120);

/// What runs the stack.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Containers from docker-compose.test.yml on a private network.
    Containers,
    /// Host nginx, goproxy and the mock as processes on loopback.
    Local,
}

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub backend: BackendKind,
    pub compose_file: PathBuf,
    pub keep: bool,
    /// The client key goproxy accepts (`PROXY_API_KEY`).
    pub api_key: String,
    /// The override that adds `goproxy-b` (multi-instance runs only).
    pub multi_file: Option<PathBuf>,
    /// Where the local backend finds goproxy and nginx.
    pub root: PathBuf,
}

impl StackOptions {
    pub fn from_root(root: &Path) -> Self {
        Self {
            backend: BackendKind::Containers,
            compose_file: root.join("docker-compose.test.yml"),
            keep: false,
            api_key: format!("sk-trollllm-harness-{:016x}", rand::random::<u64>()),
            multi_file: None,
            root: root.to_path_buf(),
        }
    }
}

/// What runs the stack, and its handle.
#[derive(Debug)]
pub enum Backend {
    Containers(Containers),
    /// Boxed: it holds the processes' handles, much larger than a project name.
    Local(Box<Local>),
}

/// A point in the logs: `logs_since` returns what came after it.
#[derive(Debug, Clone)]
pub enum LogMark {
    Time(SystemTime),
    Sizes(Vec<(PathBuf, u64)>),
}

/// A running stack.
#[derive(Debug)]
pub struct Stack {
    pub backend: Backend,
    pub files: LiveFiles,
    pub https_port: u16,
    /// The mock's published loopback port. It changes when compose
    /// recreates the mock (the design's `up -d --build goproxy` recreates
    /// goproxy's dependencies whose image changed), so it is re-read then.
    mock_port: std::sync::atomic::AtomicU16,
    pub client: reqwest::Client,
    pub api_key: String,
    cert_pem: String,
    pub wiremock: MockServer,
}

/// Binds wiremock for the probe model: on all interfaces for containers
/// (goproxy reaches it as `host.docker.internal`), on loopback otherwise.
pub async fn start_wiremock(backend: BackendKind) -> Result<MockServer, String> {
    let addr = match backend {
        BackendKind::Containers => "0.0.0.0:0",
        BackendKind::Local => "127.0.0.1:0",
    };
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot bind wiremock: {e}"))?;
    Ok(MockServer::builder().listener(listener).start().await)
}

impl Stack {
    /// Writes a fresh certificate, starts the stack on the run's live files
    /// and waits until every part of it is healthy. `mock` is the streaming
    /// mock for the local backend (containers run their own).
    pub async fn start(
        opts: &StackOptions,
        files: LiveFiles,
        wiremock: MockServer,
        mock: Option<mock_upstream::MockUpstream>,
    ) -> Result<Stack, String> {
        let cert = tls::generate(HOSTNAME).map_err(|e| format!("cannot make a TLS cert: {e}"))?;
        tls::write_tls_dir(&files.tls_dir, &cert)
            .map_err(|e| format!("cannot write TLS files: {e}"))?;
        let backend = match opts.backend {
            BackendKind::Containers => Backend::Containers(start_containers(opts, &files).await?),
            BackendKind::Local => {
                let programs = LocalPrograms::find(&opts.root)?;
                let mock = mock.ok_or("the local backend needs the streaming mock started")?;
                let local = Local::start(&programs, files.clone(), mock, &opts.api_key).await?;
                Backend::Local(Box::new(local))
            }
        };
        Self::connect(
            backend,
            files,
            cert.cert_pem,
            opts.api_key.clone(),
            wiremock,
        )
        .await
    }

    /// Re-attaches to a kept container run (see [`crate::state`]). wiremock
    /// is bound again on its old port, where goproxy's probe endpoint points.
    pub async fn attach(state: &RunState) -> Result<Stack, String> {
        let compose = ComposeStack::attach(&state.compose_files, &state.project, state.env.clone())
            .map_err(|e| e.to_string())?;
        let containers = Containers { compose };
        if containers.ids("nginx").await?.is_empty() {
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
            Backend::Containers(containers),
            files,
            state.cert_pem.clone(),
            state.api_key.clone(),
            wiremock,
        )
        .await
    }

    async fn connect(
        backend: Backend,
        files: LiveFiles,
        cert_pem: String,
        api_key: String,
        wiremock: MockServer,
    ) -> Result<Stack, String> {
        let (https_port, mock_port) = match &backend {
            Backend::Containers(c) => (
                c.compose
                    .host_port("nginx", 443)
                    .await
                    .map_err(|e| e.to_string())?,
                c.compose
                    .host_port("upstream", MOCK_PORT)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            Backend::Local(l) => (l.https_port(), l.mock_port()),
        };
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
            backend,
            files,
            https_port,
            mock_port: mock_port.into(),
            client,
            api_key,
            cert_pem,
            wiremock,
        })
    }

    /// What a later command needs to find this stack again (containers only:
    /// local processes end with the harness).
    pub fn state(
        &self,
        scenario: &Scenario,
        model: &StreamModel,
        backups: &[Backup],
    ) -> Result<RunState, String> {
        let Backend::Containers(c) = &self.backend else {
            return Err("a kept stack needs the container backend".into());
        };
        Ok(RunState {
            run_dir: self.files.dir.clone(),
            compose_files: c.compose.files().to_vec(),
            project: c.compose.project().to_string(),
            env: c.compose.env().to_vec(),
            https_port: self.https_port,
            mock_port: self.mock_port(),
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
        })
    }

    /// Keep the containers when this value is dropped.
    pub fn keep(&mut self) {
        if let Backend::Containers(c) = &mut self.backend {
            c.compose.keep(true);
        }
    }

    /// "compose project X" or "local processes in DIR", for evidence.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Containers(c) => format!("compose project {}", c.compose.project()),
            Backend::Local(_) => format!("local processes in {}/local", self.files.dir.display()),
        }
    }

    /// `https://chat.trollllm.xyz:<port><path>`, resolved to loopback.
    pub fn url(&self, path: &str) -> String {
        format!("https://{HOSTNAME}:{}{path}", self.https_port)
    }

    /// The mock's published loopback port.
    pub fn mock_port(&self) -> u16 {
        self.mock_port.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The mock's admin URL on loopback.
    pub fn mock_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.mock_port())
    }

    /// Running instances of a goproxy service (`goproxy`, `goproxy-b`).
    pub async fn goproxy_ids(&self, service: &str) -> Result<Vec<String>, String> {
        match &self.backend {
            Backend::Containers(c) => c.ids(service).await,
            Backend::Local(l) if service == "goproxy" => Ok(l.ids().await),
            Backend::Local(_) => Ok(Vec::new()),
        }
    }

    /// TCP ports one goproxy instance listens on.
    pub async fn listening_ports(&self, id: &str) -> Result<Vec<u16>, String> {
        match &self.backend {
            Backend::Containers(_) => docker::listening_ports(id).await,
            Backend::Local(l) => l.listening_ports(id).await,
        }
    }

    /// Ports in LISTEN where goproxy binds: its container's network
    /// namespace, or this host for local processes.
    pub async fn listening_where_goproxy_binds(&self) -> Result<Vec<u16>, String> {
        match &self.backend {
            Backend::Containers(c) => docker::listening_ports(&c.only("goproxy").await?).await,
            Backend::Local(l) => Ok(l.host_listening()),
        }
    }

    /// Who holds `port` where goproxy binds, for evidence.
    pub async fn port_owner(&self, port: u16) -> String {
        match &self.backend {
            Backend::Containers(c) => c.port_owner(port).await,
            Backend::Local(l) => l.port_owner(port),
        }
    }

    /// `goproxy --check-config` (of the deployed image, or the local binary).
    pub async fn check_config(&self, candidate: &Path) -> Result<Exec, String> {
        match &self.backend {
            Backend::Containers(c) => c.check_config(candidate).await,
            Backend::Local(l) => l.check_config(candidate).await,
        }
    }

    /// `nginx -t` of the deployed nginx on a candidate file.
    pub async fn nginx_test(&self, candidate: &Path) -> Result<Exec, String> {
        match &self.backend {
            Backend::Containers(c) => c.nginx_test(candidate).await,
            Backend::Local(l) => l.nginx_test(candidate).await,
        }
    }

    /// `nginx -t` then `nginx -s reload` on the live config.
    pub async fn reload_nginx(&self) -> Result<String, String> {
        match &self.backend {
            Backend::Containers(c) => c.reload_nginx().await,
            Backend::Local(l) => l.reload_nginx().await,
        }
    }

    /// PIDs of the nginx worker processes now running.
    pub async fn nginx_workers(&self) -> Result<Vec<String>, String> {
        match &self.backend {
            Backend::Containers(c) => c.nginx_workers().await,
            Backend::Local(l) => Ok(l.nginx_workers()),
        }
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

    /// Occupies `port` where goproxy binds (the port-in-use fault).
    pub async fn occupy_port(&self, port: u16, candidate_json: &str) -> Result<(), String> {
        match &self.backend {
            Backend::Containers(c) => c.occupy_port(candidate_json).await,
            Backend::Local(l) => l.occupy_port(port),
        }
    }

    /// One more goproxy beside the running ones, on the live config.
    pub async fn start_goproxy_beside(&self) -> Result<String, String> {
        match &self.backend {
            Backend::Containers(c) => c.start_beside().await,
            Backend::Local(l) => l.start_beside().await,
        }
    }

    /// Until the goproxy instance is healthy; fails fast if it exits.
    pub async fn wait_goproxy_healthy(
        &self,
        id: &str,
        deadline: Duration,
    ) -> Result<String, String> {
        match &self.backend {
            Backend::Containers(c) => c.wait_healthy(id, deadline).await,
            Backend::Local(l) => l.wait_healthy(id, deadline).await,
        }
    }

    /// Removes a goproxy instance at once (one that failed to start).
    pub async fn remove_goproxy(&self, id: &str) {
        match &self.backend {
            Backend::Containers(c) => c.remove(id).await,
            Backend::Local(l) => l.remove(id).await,
        }
    }

    /// Stops a goproxy instance gracefully (it drains) and removes it.
    pub async fn stop_goproxy(&self, id: &str) -> Result<(), String> {
        match &self.backend {
            Backend::Containers(c) => c.stop(id).await,
            Backend::Local(l) => l.stop(id).await,
        }
    }

    /// Drops goproxy instances that exited (a failed start) before a rollback.
    pub async fn remove_exited_goproxy(&self) {
        match &self.backend {
            Backend::Containers(c) => c.remove_exited_goproxy().await,
            Backend::Local(l) => l.remove_exited().await,
        }
    }

    /// Starts goproxy when none runs at all.
    pub async fn start_single_goproxy(&self) -> Result<String, String> {
        match &self.backend {
            Backend::Containers(c) => c.start_single().await,
            Backend::Local(l) => l.start_beside().await,
        }
    }

    /// The design's restart of goproxy (`up -d --build goproxy`); an error
    /// if it did not actually restart goproxy.
    pub async fn design_restart_goproxy(&self) -> Result<String, String> {
        match &self.backend {
            Backend::Containers(c) => {
                let restarted = c.design_restart().await;
                // `up -d --build goproxy` may have recreated the mock too.
                if let Ok(port) = c.compose.host_port("upstream", MOCK_PORT).await {
                    self.mock_port
                        .store(port, std::sync::atomic::Ordering::SeqCst);
                }
                restarted
            }
            Backend::Local(l) => l.design_restart().await,
        }
    }

    /// Restarts one instance of a multi-instance stack (goproxy drains).
    pub async fn restart_instance(&self, service: &str) -> Result<String, String> {
        match &self.backend {
            Backend::Containers(c) => c.restart_service(service).await,
            Backend::Local(_) => Err("two goproxy instances need the container backend".into()),
        }
    }

    /// GET goproxy's /health as nginx reaches it (`<service>:<port>`).
    pub async fn get_goproxy_as_nginx(&self, service: &str, port: u16) -> Result<String, String> {
        match &self.backend {
            Backend::Containers(c) => c.get_from_nginx(service, port).await,
            Backend::Local(l) => l.get_direct(port).await,
        }
    }

    /// Whether goproxy can open a TCP connection to the mock upstream.
    pub async fn upstream_reachable(&self) -> Result<String, String> {
        match &self.backend {
            Backend::Containers(c) => c.upstream_reachable().await,
            Backend::Local(l) => l.upstream_reachable().await,
        }
    }

    /// A point in the logs, for [`Stack::logs_since`].
    pub fn log_mark(&self) -> LogMark {
        match &self.backend {
            Backend::Containers(_) => LogMark::Time(SystemTime::now()),
            Backend::Local(l) => LogMark::Sizes(l.log_sizes()),
        }
    }

    /// (service, text) of goproxy's and nginx's logs since `mark`.
    pub async fn logs_since(&self, mark: &LogMark) -> Result<Vec<(String, String)>, String> {
        match (&self.backend, mark) {
            (Backend::Containers(c), LogMark::Time(t)) => c.logs_since(*t).await,
            (Backend::Local(l), LogMark::Sizes(s)) => Ok(l.logs_since(s)),
            _ => Err("a log mark of the other backend".into()),
        }
    }

    /// Restarts (containers) or unexpected exits (processes) so far.
    pub async fn restarts(&self) -> Result<u64, String> {
        match &self.backend {
            Backend::Containers(c) => c.restarts().await,
            Backend::Local(l) => Ok(l.unexpected_exits().await),
        }
    }

    /// Takes the mock upstream away (the upstream-down fault).
    pub async fn stop_upstream(&self) -> Result<(), String> {
        match &self.backend {
            Backend::Containers(c) => c.stop_upstream().await,
            Backend::Local(l) => {
                l.stop_upstream();
                Ok(())
            }
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

/// Judges one `nginx <step>` of a reload: a non-zero exit is an error with
/// what nginx said (`nginx -t` refusing the live config stops the reload).
pub(crate) fn nginx_step(step: &str, out: Exec) -> Result<(), String> {
    if out.code == 0 {
        Ok(())
    } else {
        Err(format!(
            "nginx {step} exited {}: {}",
            out.code,
            out.stderr.trim()
        ))
    }
}

/// `up -d` of the compose project on the run's live files, until healthy.
async fn start_containers(opts: &StackOptions, files: &LiveFiles) -> Result<Containers, String> {
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
    if let Err(e) = compose.wait_healthy(&services, UP_DEADLINE).await {
        return Err(nginx_failure::explain(&compose, e).await);
    }
    Ok(Containers { compose })
}
