//! A guard that owns one Docker Compose project for its lifetime.
//!
//! Modelled on testcontainers' `DockerCompose` (unique project name, `down`
//! on drop, a switch to keep the containers for debugging), but it speaks
//! both Compose v2 (`docker compose`) and v1 (`docker-compose`): the
//! testcontainers client only runs `docker compose`, and machines with only
//! v1 (Debian's `docker-compose` package) are common, this one included.
//! v1 has no `up --wait`, so readiness is polled from `docker inspect`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

use crate::docker::{self, docker_ok, tail, DockerError, Exec};

/// Which Compose CLI is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeCli {
    /// `docker compose` (the v2 plugin).
    V2,
    /// `docker-compose` (v1, Python).
    V1,
}

impl ComposeCli {
    /// Prefers `docker compose`, falls back to `docker-compose`.
    /// Fails with [`DockerError::NoDocker`] when the Docker daemon does not
    /// answer, whichever Compose is installed.
    pub fn detect() -> Result<Self, DockerError> {
        docker::available()?;
        let v2 = std::process::Command::new("docker")
            .args(["compose", "version"])
            .output();
        if v2.is_ok_and(|o| o.status.success()) {
            return Ok(ComposeCli::V2);
        }
        let v1 = std::process::Command::new("docker-compose")
            .arg("version")
            .output();
        if v1.is_ok_and(|o| o.status.success()) {
            return Ok(ComposeCli::V1);
        }
        Err(DockerError::NoDocker {
            why: "neither `docker compose` nor `docker-compose` works".into(),
            fix: "Install one of them.",
        })
    }

    fn program(self) -> (&'static str, &'static [&'static str]) {
        match self {
            ComposeCli::V2 => ("docker", &["compose"]),
            ComposeCli::V1 => ("docker-compose", &[]),
        }
    }
}

/// One compose project, removed on drop unless kept.
#[derive(Debug)]
pub struct ComposeStack {
    cli: ComposeCli,
    /// `-f` files, in order (later ones override earlier ones).
    files: Vec<PathBuf>,
    project: String,
    env: Vec<(String, String)>,
    keep: bool,
    /// `down` ran: nothing left for Drop.
    removed: bool,
}

impl ComposeStack {
    /// A new project `<prefix>-<random>` for `compose_file`; nothing starts yet.
    pub fn new(compose_file: &Path, project_prefix: &str) -> Result<Self, DockerError> {
        let cli = ComposeCli::detect()?;
        let file = canonical(compose_file)?;
        Ok(Self {
            cli,
            files: vec![file],
            project: format!("{project_prefix}-{:08x}", rand::random::<u32>()),
            env: Vec::new(),
            keep: std::env::var("HARNESS_KEEP").is_ok_and(|v| v == "1"),
            removed: false,
        })
    }

    /// Re-attaches to a project started earlier (by `harness up` or
    /// `validate --keep`), with the variables it was started with. An
    /// attached project is kept on drop: only [`ComposeStack::down`] removes it.
    pub fn attach(
        compose_files: &[PathBuf],
        project: &str,
        env: Vec<(String, String)>,
    ) -> Result<Self, DockerError> {
        Ok(Self {
            cli: ComposeCli::detect()?,
            files: compose_files.to_vec(),
            project: project.to_string(),
            env,
            keep: true,
            // Re-attached to a kept project (rollback, down): this command
            // did not start it, so its drop neither removes it nor repeats
            // that it was kept (after `down` that line would be false).
            removed: true,
        })
    }

    /// A project this harness did not start (the operator's production
    /// project): never taken down, and nothing is said about it on drop.
    pub fn external(
        compose_files: &[PathBuf],
        project: &str,
        env: Vec<(String, String)>,
    ) -> Result<Self, DockerError> {
        let mut s = Self::attach(compose_files, project, env)?;
        s.removed = true;
        Ok(s)
    }

    /// Adds an override file (`-f base -f override`).
    pub fn with_file(mut self, extra: &Path) -> Result<Self, DockerError> {
        self.files.push(canonical(extra)?);
        Ok(self)
    }

    /// The compose files this project runs.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The interpolation variables the project was started with.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// A variable for compose's `${...}` interpolation.
    pub fn with_env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Keep the containers when the guard is dropped.
    pub fn keep(&mut self, keep: bool) {
        self.keep = keep || self.keep;
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn cli(&self) -> ComposeCli {
        self.cli
    }

    /// The full argument list: the program's own prefix, `-f` files,
    /// `-p` project, then `args`.
    fn argv(&self, args: &[&str]) -> (&'static str, Vec<std::ffi::OsString>) {
        let (program, pre) = self.cli.program();
        let mut argv: Vec<std::ffi::OsString> = pre.iter().map(Into::into).collect();
        for f in &self.files {
            argv.push("-f".into());
            argv.push(f.into());
        }
        argv.push("-p".into());
        argv.push((&self.project).into());
        argv.extend(args.iter().map(Into::into));
        (program, argv)
    }

    fn command(&self, args: &[&str]) -> (Command, String) {
        let (program, argv) = self.argv(args);
        let mut cmd = Command::new(program);
        cmd.args(&argv)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .kill_on_drop(true);
        let line = format!(
            "{program} {}",
            argv.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        (cmd, line)
    }

    /// Runs compose with `args` and returns its output whatever the exit
    /// status (for commands whose failure is the answer, like `nginx -t`).
    pub async fn output(&self, args: &[&str]) -> Result<Output, DockerError> {
        let (mut cmd, line) = self.command(args);
        cmd.output().await.map_err(|source| DockerError::Spawn {
            command: line,
            source,
        })
    }

    /// Runs compose with `args`; a non-zero exit is an error.
    pub async fn compose(&self, args: &[&str]) -> Result<Output, DockerError> {
        let (mut cmd, line) = self.command(args);
        let out = cmd.output().await.map_err(|source| DockerError::Spawn {
            command: line.clone(),
            source,
        })?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(DockerError::Command {
                command: line,
                code: out.status.code().unwrap_or(-1),
                stderr: tail(&String::from_utf8_lossy(&out.stderr), 1500),
            })
        }
    }

    /// `up -d [--build] [services]`.
    pub async fn up(&self, services: &[&str], build: bool) -> Result<(), DockerError> {
        let mut args = vec!["up", "-d"];
        if build {
            args.push("--build");
        }
        args.extend_from_slice(services);
        self.compose(&args).await.map(|_| ())
    }

    /// Waits until every container of each service is healthy (or running,
    /// for a service without a healthcheck), within one `deadline` for all.
    pub async fn wait_healthy(
        &self,
        services: &[&str],
        deadline: Duration,
    ) -> Result<(), DockerError> {
        let started = tokio::time::Instant::now();
        for service in services {
            let left = deadline.saturating_sub(started.elapsed());
            // `ps` without `-a` no longer lists a container that exited at
            // once (nginx refusing its config): look at the exited ones then,
            // so the wait fails now with their logs, not at the deadline.
            docker::wait_healthy(service, left, || async move {
                let ids = self.container_ids(service).await?;
                if ids.is_empty() {
                    self.exited_ids(service).await
                } else {
                    Ok(ids)
                }
            })
            .await?;
        }
        Ok(())
    }

    /// Ids of the running containers of `service`, oldest first.
    pub async fn container_ids(&self, service: &str) -> Result<Vec<String>, DockerError> {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let svc = format!("label=com.docker.compose.service={service}");
        let out = docker_ok(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &project,
            "--filter",
            &svc,
        ])
        .await?;
        // `docker ps` lists newest first.
        let mut ids: Vec<String> = out
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect();
        ids.reverse();
        Ok(ids)
    }

    /// Ids of the service's containers that have exited, newest first.
    pub async fn exited_ids(&self, service: &str) -> Result<Vec<String>, DockerError> {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let svc = format!("label=com.docker.compose.service={service}");
        let out = docker_ok(&[
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            "status=exited",
            "--filter",
            &project,
            "--filter",
            &svc,
        ])
        .await?;
        Ok(out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Runs `cmd` in the service's first container (`exec -T`); a non-zero
    /// exit of `cmd` is returned, not an error.
    pub async fn exec(&self, service: &str, cmd: &[&str]) -> Result<Exec, DockerError> {
        let mut args = vec!["exec", "-T", service];
        args.extend_from_slice(cmd);
        let (mut c, line) = self.command(&args);
        let out = c.output().await.map_err(|source| DockerError::Spawn {
            command: line,
            source,
        })?;
        Ok(Exec::from_output(&out))
    }

    /// The loopback port a container port is published on.
    pub async fn host_port(&self, service: &str, container_port: u16) -> Result<u16, DockerError> {
        let port = container_port.to_string();
        let out = self.compose(&["port", service, &port]).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| DockerError::NotPublished {
                service: service.to_string(),
                port: container_port,
                said: text.trim().to_string(),
            })
    }

    /// All logs of the service's containers.
    pub async fn logs(&self, service: &str) -> Result<String, DockerError> {
        let out = self.compose(&["logs", "--no-color", service]).await?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Restarts Docker counted for the service's containers.
    pub async fn restart_count(&self, service: &str) -> Result<u64, DockerError> {
        let mut n = 0;
        for id in self.container_ids(service).await? {
            n += docker_ok(&["inspect", "-f", "{{.RestartCount}}", &id])
                .await?
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
        Ok(n)
    }

    /// Stops and removes the project now.
    pub async fn down(mut self) -> Result<(), DockerError> {
        // Drop must neither run it again nor call the removed project kept.
        self.removed = true;
        self.compose(&["down", "-v", "--remove-orphans", "-t", "5"])
            .await
            .map(|_| ())
    }
}

impl Drop for ComposeStack {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if self.keep {
            let (program, argv) = self.argv(&["down", "-v"]);
            let argv: Vec<_> = argv.iter().map(|a| a.to_string_lossy()).collect();
            eprintln!(
                "compose project {} left running (kept); remove it with \
                 `harness down --run-dir <dir>` or `{program} {}`",
                self.project,
                argv.join(" ")
            );
            return;
        }
        // Blocking on purpose: Drop may run while the runtime shuts down
        // (Ctrl-C, a failed test), and the containers must go either way.
        let (program, argv) = self.argv(&["down", "-v", "--remove-orphans", "-t", "5"]);
        let down = std::process::Command::new(program)
            .args(&argv)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        // `down` needs the compose files; when they are gone (a temporary
        // directory dropped first) or compose fails, remove the project by
        // its label so nothing is left running either way.
        if !matches!(down, Ok(s) if s.success()) {
            remove_by_label(&self.project);
        }
    }
}

/// Removes every container and network compose labelled with `project`.
fn remove_by_label(project: &str) {
    let label = format!("label=com.docker.compose.project={project}");
    let list = |what: &[&str]| -> Vec<String> {
        std::process::Command::new("docker")
            .args(what)
            .args(["-q", "--filter", &label])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    for (rm, ids) in [
        (["rm", "-f", "-v"].as_slice(), list(&["ps", "-a"])),
        (["network", "rm"].as_slice(), list(&["network", "ls"])),
    ] {
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(rm)
                .args(&ids)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn canonical(file: &Path) -> Result<PathBuf, DockerError> {
    file.canonicalize()
        .map_err(|source| DockerError::ComposeFile {
            path: file.to_path_buf(),
            source,
        })
}
