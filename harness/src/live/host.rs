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
use crate::docker;
use crate::stack::containers::Containers;
use crate::traffic::truncate;
use crate::verify::is_error_line;

/// The compose project of a live deployment.
#[derive(Debug)]
pub struct Host {
    pub containers: Containers,
}

impl Host {
    /// Attaches to `project` (never taken down, nothing said on drop).
    pub async fn attach(files: &[PathBuf], project: &str) -> Result<Self, String> {
        let compose =
            ComposeStack::external(files, project, Vec::new()).map_err(|e| e.to_string())?;
        let containers = Containers { compose };
        if containers.ids("nginx").await?.is_empty() && containers.ids("goproxy").await?.is_empty()
        {
            return Err(format!(
                "compose project `{project}` has no running nginx or goproxy on this Docker host \
                 (`docker ps --filter label=com.docker.compose.project={project}` lists none): \
                 check --project-name (compose's default is the directory's name)"
            ));
        }
        Ok(Self { containers })
    }

    /// The port in goproxy's mounted config (`/app/config.json`).
    pub async fn configured_port(&self) -> Result<u16, String> {
        let id = self.containers.only("goproxy").await?;
        let out = docker::exec(&id, &["cat", "/app/config.json"]).await?;
        if out.code != 0 {
            return Err(format!(
                "cannot read /app/config.json in goproxy: {}",
                out.stderr.trim()
            ));
        }
        let config = proxy::config::Config::from_json(&out.stdout, "/app/config.json")
            .map_err(|e| format!("goproxy's mounted config does not load: {e}"))?;
        Ok(config.port())
    }

    /// goproxy listens on its configured port in its network namespace.
    pub async fn listening(&self) -> Result<(String, u16), String> {
        let port = self.configured_port().await?;
        let mut seen = Vec::new();
        for id in self.containers.ids("goproxy").await? {
            let ports = docker::listening_ports(&id).await?;
            let short = &id[..12.min(id.len())];
            if !ports.contains(&port) {
                return Err(format!(
                    "goproxy {short} does not listen on {port} (its config's port); it listens \
                     on {ports:?}"
                ));
            }
            seen.push(format!("goproxy {short} listens on {port}"));
        }
        Ok((format!("{} (the config's port)", seen.join(", ")), port))
    }

    /// `nginx -t` in the running nginx, with nginx's own words.
    pub async fn nginx_t(&self) -> Result<String, String> {
        let id = self.containers.only("nginx").await?;
        let out = docker::exec(&id, &["nginx", "-t"]).await?;
        let said = out.stderr.trim().replace('\n', " / ");
        if out.code == 0 {
            Ok(said)
        } else {
            Err(format!("nginx -t exited {}: {said}", out.code))
        }
    }

    /// nginx reaches `goproxy:<port>` by service name.
    pub async fn nginx_to_goproxy(&self, port: u16) -> Result<String, String> {
        self.containers
            .get_from_nginx("goproxy", port)
            .await
            .map(|s| format!("from the nginx container: {s}"))
            .map_err(String::from)
    }

    /// Restarts Docker counted for goproxy and nginx.
    pub async fn restarts(&self) -> Result<u64, String> {
        let mut n = 0;
        for service in ["goproxy", "nginx"] {
            n += self
                .containers
                .compose
                .restart_count(service)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(n)
    }

    /// No error lines in goproxy's and nginx's logs since `since`, and no
    /// restart since `restarts_before`.
    pub async fn logs_and_restarts(
        &self,
        since: SystemTime,
        restarts_before: u64,
    ) -> Result<String, String> {
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
            return Err(format!(
                "{new_restarts} restarts during the window; error lines: {}",
                errors.join(" | ")
            ));
        }
        Ok(format!(
            "{lines} log lines of goproxy and nginx during the window, no error lines; \
             no restarts (Docker counts {restarts} in their lifetime)"
        ))
    }
}
