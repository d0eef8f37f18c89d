//! The checks only the Docker host can do, on a compose project the harness
//! did not start (`--compose-file` / `--project-name`): the port goproxy
//! listens on inside its network namespace (against the `"port"` of the
//! config it has mounted), `nginx -t` in the running nginx, nginx reaching
//! `goproxy:<port>` by service name, both services' logs and restarts.
//!
//! Containers are found by compose's labels, so no compose command (and no
//! `.env` interpolation) is needed to read them.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::compose::ComposeStack;
use crate::docker::{self, DockerError};
use crate::stack::containers::Containers;
use crate::stack::StackError;
use crate::traffic::truncate;
use crate::verify::is_error_line;

/// Why a check on the Docker host failed: Docker's or the stack's words,
/// or what the running project showed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(
        "compose project `{project}` has no running nginx or goproxy on this Docker host \
         (`docker ps --filter label=com.docker.compose.project={project}` lists none): \
         check --project-name (compose's default is the directory's name)"
    )]
    NoProject { project: String },
    #[error("cannot read /app/config.json in goproxy: {stderr}")]
    ConfigUnreadable { stderr: String },
    #[error("goproxy's mounted config does not load: {0}")]
    ConfigDoesNotLoad(#[source] proxy::config::ConfigError),
    #[error("goproxy {id} does not listen on {port} (its config's port); it listens on {ports:?}")]
    NotListening {
        id: String,
        port: u16,
        ports: Vec<u16>,
    },
    #[error("nginx -t exited {code}: {said}")]
    NginxRefused { code: i32, said: String },
    #[error("{restarts} restarts during the window; error lines: {lines}")]
    Unhealthy { restarts: u64, lines: String },
}

/// The compose project of a live deployment.
#[derive(Debug)]
pub struct Host {
    pub containers: Containers,
}

impl Host {
    /// Attaches to `project` (never taken down, nothing said on drop).
    pub async fn attach(files: &[PathBuf], project: &str) -> Result<Self, HostError> {
        let compose = ComposeStack::external(files, project, Vec::new())?;
        let containers = Containers { compose };
        if containers.ids("nginx").await?.is_empty() && containers.ids("goproxy").await?.is_empty()
        {
            return Err(HostError::NoProject {
                project: project.to_string(),
            });
        }
        Ok(Self { containers })
    }

    /// The port in goproxy's mounted config (`/app/config.json`).
    pub async fn configured_port(&self) -> Result<u16, HostError> {
        let id = self.containers.only("goproxy").await?;
        let out = docker::exec(&id, &["cat", "/app/config.json"]).await?;
        if out.code != 0 {
            return Err(HostError::ConfigUnreadable {
                stderr: out.stderr.trim().to_string(),
            });
        }
        let config = proxy::config::Config::from_json(&out.stdout, "/app/config.json")
            .map_err(HostError::ConfigDoesNotLoad)?;
        Ok(config.port())
    }

    /// goproxy listens on its configured port in its network namespace.
    pub async fn listening(&self) -> Result<(String, u16), HostError> {
        let port = self.configured_port().await?;
        let mut seen = Vec::new();
        for id in self.containers.ids("goproxy").await? {
            let ports = docker::listening_ports(&id).await?;
            let short = &id[..12.min(id.len())];
            if !ports.contains(&port) {
                return Err(HostError::NotListening {
                    id: short.to_string(),
                    port,
                    ports,
                });
            }
            seen.push(format!("goproxy {short} listens on {port}"));
        }
        Ok((format!("{} (the config's port)", seen.join(", ")), port))
    }

    /// `nginx -t` in the running nginx, with nginx's own words.
    pub async fn nginx_t(&self) -> Result<String, HostError> {
        let id = self.containers.only("nginx").await?;
        let out = docker::exec(&id, &["nginx", "-t"]).await?;
        let said = out.stderr.trim().replace('\n', " / ");
        if out.code == 0 {
            Ok(said)
        } else {
            Err(HostError::NginxRefused {
                code: out.code,
                said,
            })
        }
    }

    /// nginx reaches `goproxy:<port>` by service name.
    pub async fn nginx_to_goproxy(&self, port: u16) -> Result<String, HostError> {
        self.containers
            .get_from_nginx("goproxy", port)
            .await
            .map(|s| format!("from the nginx container: {s}"))
            .map_err(HostError::from)
    }

    /// Restarts Docker counted for goproxy and nginx.
    pub async fn restarts(&self) -> Result<u64, HostError> {
        let mut n = 0;
        for service in ["goproxy", "nginx"] {
            n += self.containers.compose.restart_count(service).await?;
        }
        Ok(n)
    }

    /// No error lines in goproxy's and nginx's logs since `since`, and no
    /// restart since `restarts_before`.
    pub async fn logs_and_restarts(
        &self,
        since: SystemTime,
        restarts_before: u64,
    ) -> Result<String, HostError> {
        let mut errors = Vec::new();
        let mut lines = 0usize;
        for (service, text) in self.containers.logs_since(since).await? {
            lines += text.lines().count();
            errors.extend(
                text.lines()
                    .filter(|l| is_error_line(l))
                    .take(3)
                    .map(|l| format!("{service}: {}", truncate(l, 200))),
            );
        }
        let restarts = self.restarts().await?;
        let new_restarts = restarts.saturating_sub(restarts_before);
        if !errors.is_empty() || new_restarts > 0 {
            return Err(HostError::Unhealthy {
                restarts: new_restarts,
                lines: errors.join(" | "),
            });
        }
        Ok(format!(
            "{lines} log lines of goproxy and nginx during the window, no error lines; \
             no restarts (Docker counts {restarts} in their lifetime)"
        ))
    }
}
