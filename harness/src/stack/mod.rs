//! The stack of one run (nginx with TLS, goproxy, the streaming mock, and a
//! wiremock server for the probe model), owned by one value whatever runs
//! it: containers from `docker-compose.yml` with the test override
//! `docker-compose.test.yml` ([`containers`], the default) or local
//! processes on loopback ([`local`], `--backend local`).
//! Dropping it removes what it started (unless kept).
//!
//! The phases (pre, deploy, verify, rollback) only call the methods here,
//! so each runbook step has one definition and two ways to be carried out.

pub mod backend;
pub mod client;
pub mod containers;
pub mod error;
pub mod local;
mod nginx_failure;
pub mod workers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use wiremock::MockServer;

use crate::compose::ComposeStack;
use crate::docker::Exec;
use crate::files::{Backup, LiveFiles};
use crate::scenario::Scenario;
use crate::state::RunState;
use crate::stream_model::StreamModel;
use crate::tls;
use containers::Containers;
use local::{Local, LocalPrograms};

pub use backend::{Backend, LogMark};
pub use client::DEFAULT_STREAM_BOUND;
pub use error::StackError;

/// The TLS name nginx serves.
pub const HOSTNAME: &str = "chat.trollllm.xyz";
/// The mock's port inside the compose network.
pub const MOCK_PORT: u16 = 9000;
/// How long a fresh stack may take to become healthy.
const UP_DEADLINE: Duration = Duration::from_secs(120);

// Re-exported: callers name it `stack::BackendKind`.
pub use crate::backend_kind::BackendKind;

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub backend: BackendKind,
    /// `docker-compose.yml` then the test override `docker-compose.test.yml`.
    pub compose_files: Vec<PathBuf>,
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
            compose_files: vec![
                root.join("docker-compose.yml"),
                root.join("docker-compose.test.yml"),
            ],
            keep: false,
            api_key: format!("sk-trollllm-harness-{:016x}", rand::random::<u64>()),
            multi_file: None,
            root: root.to_path_buf(),
        }
    }
}

/// A running stack: its backend, the files it mounts, and a client that
/// reaches nginx the way a user does.
#[derive(Debug)]
pub struct Stack {
    pub backend: Box<dyn Backend>,
    pub files: LiveFiles,
    pub https_port: u16,
    /// `https://chat.trollllm.xyz:<port>`, what [`Stack::url`] builds on.
    base_url: String,
    /// The mock's published loopback port (0: no mock). It changes when
    /// compose recreates the mock (the design's `up -d --build goproxy`
    /// recreates goproxy's dependencies whose image changed), so it is
    /// re-read then.
    mock_port: std::sync::atomic::AtomicU16,
    pub client: reqwest::Client,
    pub api_key: String,
    cert_pem: String,
    /// wiremock for the probe model (test stacks only).
    pub wiremock: Option<MockServer>,
    /// How long a stream may stay open across a switch: the old nginx
    /// workers and the old goproxy are waited for this long.
    pub stream_bound: Duration,
    /// No progress lines while waiting.
    pub quiet: bool,
}

/// The phases call the backend's operations on the stack directly
/// (`stack.reload_nginx()`): the stack is its backend plus what every
/// backend shares (files, client, keys).
impl std::ops::Deref for Stack {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}

/// Binds wiremock for the probe model: on all interfaces for containers
/// (goproxy reaches it as `host.docker.internal`), on loopback otherwise.
pub async fn start_wiremock(backend: BackendKind) -> Result<MockServer, StackError> {
    let addr = match backend {
        BackendKind::Containers => "0.0.0.0:0",
        BackendKind::Local => "127.0.0.1:0",
    };
    let listener = std::net::TcpListener::bind(addr).map_err(|source| StackError::Bind {
        what: "cannot bind wiremock".into(),
        source,
    })?;
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
    ) -> Result<Stack, StackError> {
        let cert = tls::generate(HOSTNAME).map_err(|e| StackError::Tls {
            what: "cannot make a TLS cert",
            source: e.into(),
        })?;
        tls::write_tls_dir(&files.tls_dir, &cert)
            .and_then(|_| tls::write_tls_dir(&letsencrypt_live(&files), &cert))
            .map_err(|e| StackError::Tls {
                what: "cannot write TLS files",
                source: e.into(),
            })?;
        let backend: Box<dyn Backend> = match opts.backend {
            BackendKind::Containers => Box::new(start_containers(opts, &files).await?),
            BackendKind::Local => {
                let programs = LocalPrograms::find(&opts.root)?;
                let mock = mock.ok_or(StackError::Missing(
                    "the local backend needs the streaming mock started",
                ))?;
                Box::new(Local::start(&programs, files.clone(), mock, &opts.api_key).await?)
            }
        };
        Self::connect(
            backend,
            files,
            cert.cert_pem,
            opts.api_key.clone(),
            Some(wiremock),
        )
        .await
    }

    /// Re-attaches to a kept container run (see [`crate::state`]). wiremock
    /// is bound again on its old port, where goproxy's probe endpoint points.
    pub async fn attach(state: &RunState) -> Result<Stack, StackError> {
        let compose =
            ComposeStack::attach(&state.compose_files, &state.project, state.env.clone())?;
        let containers = Containers { compose };
        if containers.ids("nginx").await?.is_empty() {
            return Err(StackError::TakenDown {
                project: state.project.clone(),
            });
        }
        let listener =
            std::net::TcpListener::bind(("0.0.0.0", state.wiremock_port)).map_err(|source| {
                StackError::Bind {
                    what: format!("cannot bind wiremock again on {}", state.wiremock_port),
                    source,
                }
            })?;
        let wiremock = MockServer::builder().listener(listener).start().await;
        let files = LiveFiles::open(&state.run_dir);
        Self::connect(
            Box::new(containers),
            files,
            state.cert_pem.clone(),
            state.api_key.clone(),
            Some(wiremock),
        )
        .await
    }

    async fn connect(
        backend: Box<dyn Backend>,
        files: LiveFiles,
        cert_pem: String,
        api_key: String,
        wiremock: Option<MockServer>,
    ) -> Result<Stack, StackError> {
        let (https_port, mock_port) = backend.published_ports().await?;
        let ca =
            reqwest::Certificate::from_pem(cert_pem.as_bytes()).map_err(|e| StackError::Tls {
                what: "generated cert does not parse",
                source: e.into(),
            })?;
        let client = client::builder(DEFAULT_STREAM_BOUND)
            .add_root_certificate(ca)
            .resolve(HOSTNAME, ([127, 0, 0, 1], https_port).into())
            .build()
            .map_err(|e| StackError::Tls {
                what: "cannot build HTTPS client",
                source: e.into(),
            })?;
        Ok(Stack {
            backend,
            files,
            https_port,
            base_url: format!("https://{HOSTNAME}:{https_port}"),
            mock_port: mock_port.unwrap_or(0).into(),
            client,
            api_key,
            cert_pem,
            wiremock,
            stream_bound: DEFAULT_STREAM_BOUND,
            quiet: false,
        })
    }

    /// A stack over a backend the harness did not start (a production
    /// project): its live files, and the operator's URL and client.
    pub fn from_parts(
        backend: Box<dyn Backend>,
        files: LiveFiles,
        base_url: String,
        client: reqwest::Client,
        api_key: String,
        https_port: u16,
    ) -> Stack {
        Stack {
            backend,
            files,
            https_port,
            base_url,
            mock_port: 0.into(),
            client,
            api_key,
            cert_pem: String::new(),
            wiremock: None,
            stream_bound: DEFAULT_STREAM_BOUND,
            quiet: false,
        }
    }

    /// What a later command needs to find this stack again (containers only:
    /// local processes end with the harness).
    pub fn state(
        &self,
        scenario: &Scenario,
        model: &StreamModel,
        backups: &[Backup],
    ) -> Result<RunState, StackError> {
        let Some(compose) = self.backend.compose() else {
            return Err(StackError::Unsupported(
                "a kept stack needs the container backend".into(),
            ));
        };
        let wiremock = self
            .wiremock
            .as_ref()
            .ok_or(StackError::Missing("a kept test stack has wiremock"))?;
        Ok(RunState {
            run_dir: self.files.dir.clone(),
            compose_files: compose.files().to_vec(),
            project: compose.project().to_string(),
            env: compose.env().to_vec(),
            https_port: self.https_port,
            mock_port: self.mock_port(),
            wiremock_port: wiremock.address().port(),
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
        self.backend.keep();
    }

    /// `https://chat.trollllm.xyz:<port><path>`, resolved to loopback.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The mock's published loopback port.
    pub fn mock_port(&self) -> u16 {
        self.mock_port.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The mock's admin URL on loopback.
    pub fn mock_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.mock_port())
    }

    /// Waits until every worker in `old` has exited, with progress; see
    /// [`workers`] for why the switch must wait for them.
    pub async fn wait_nginx_workers_gone(
        &self,
        old: &[String],
        deadline: Duration,
    ) -> Result<String, StackError> {
        workers::wait_gone(self.backend.as_ref(), old, deadline, self.quiet).await
    }

    /// The design's restart of goproxy (`up -d --build goproxy`); an error
    /// if it did not actually restart goproxy.
    pub async fn design_restart_goproxy(&self) -> Result<String, StackError> {
        let restarted = self.backend.design_restart_goproxy().await;
        // `up -d --build goproxy` may have recreated the mock too.
        if let Ok((_, Some(port))) = self.backend.published_ports().await {
            self.mock_port
                .store(port, std::sync::atomic::Ordering::SeqCst);
        }
        restarted
    }

    /// Replaces the streaming mock's behaviour (chunks, delays, faults).
    pub async fn set_mock(&self, config: &mock_upstream::MockConfig) -> Result<(), StackError> {
        if self.mock_port() == 0 {
            return Err(StackError::Unsupported(
                "this stack has no mock upstream".into(),
            ));
        }
        let resp = reqwest::Client::new()
            .put(self.mock_url("/__mock/config"))
            .json(config)
            .send()
            .await
            .map_err(|source| StackError::Http {
                what: "cannot reach the mock's admin route".into(),
                source,
            })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(StackError::MockRefused {
                status: resp.status(),
            })
        }
    }
}

/// Judges one `nginx <step>` of a reload: a non-zero exit is an error with
/// what nginx said (`nginx -t` refusing the live config stops the reload).
pub(crate) fn nginx_step(step: &'static str, out: Exec) -> Result<(), StackError> {
    if out.code == 0 {
        Ok(())
    } else {
        Err(StackError::NginxFailed {
            step,
            code: out.code,
            stderr: out.stderr.trim().to_string(),
        })
    }
}

/// The run's certificates in Let's Encrypt's layout, as production mounts
/// them (`<dir>/live/<host>/fullchain.pem`): the test override mounts
/// `<dir>` where production mounts `/etc/letsencrypt`.
fn letsencrypt_root(files: &LiveFiles) -> PathBuf {
    files.dir.join("letsencrypt")
}

fn letsencrypt_live(files: &LiveFiles) -> PathBuf {
    letsencrypt_root(files).join("live").join(HOSTNAME)
}

/// `up -d` of the compose project on the run's live files, until healthy.
async fn start_containers(
    opts: &StackOptions,
    files: &LiveFiles,
) -> Result<Containers, StackError> {
    let (base, overrides) = opts
        .compose_files
        .split_first()
        .ok_or(StackError::Missing("no compose file to start"))?;
    let mut compose = ComposeStack::new(base, "harness")?;
    for file in overrides {
        compose = compose.with_file(file)?;
    }
    // Port 0: Docker picks free loopback ports, read back with `port`.
    let mut compose = compose
        .with_env("GOPROXY_CONFIG", files.goproxy_config.to_string_lossy())
        .with_env("NGINX_CONF", files.nginx_conf.to_string_lossy())
        .with_env(
            "TEST_LETSENCRYPT_DIR",
            letsencrypt_root(files).to_string_lossy(),
        )
        .with_env("HTTPS_BIND", "127.0.0.1")
        .with_env("HTTP_BIND", "127.0.0.1")
        .with_env("HTTPS_PORT", "0")
        .with_env("HTTP_PORT", "0")
        .with_env("PROXY_API_KEY", opts.api_key.clone())
        .with_env("OHMYGPT_API_KEY", "sk-upstream-test-key");
    let mut services = vec!["upstream", "goproxy", "nginx"];
    if let Some(multi) = &opts.multi_file {
        compose = compose
            .with_file(multi)?
            .with_env("GOPROXY_B_CONFIG", files.goproxy_b_config.to_string_lossy());
        services.insert(2, "goproxy-b");
    }
    compose.keep(opts.keep);
    compose
        .up(&[], false)
        .await
        .map_err(|e| StackError::ComposeUp(Box::new(e)))?;
    if let Err(e) = compose.wait_healthy(&services, UP_DEADLINE).await {
        return Err(nginx_failure::explain(&compose, e).await);
    }
    Ok(Containers { compose })
}
