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
use std::time::{Duration, Instant};

use tokio::process::Command;

/// Which Compose CLI is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeCli {
    /// `docker compose` (the v2 plugin).
    V2,
    /// `docker-compose` (v1, Python).
    V1,
}

/// Errors from Compose or Docker, with the command and what it said.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("Docker is not available: {0}")]
    NoDocker(String),
    #[error("`{command}` exited {code}: {stderr}")]
    Command {
        command: String,
        code: i32,
        stderr: String,
    },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("service {service} not healthy after {waited:?}: last status `{status}`; last health check: {health_log}")]
    NotHealthy {
        service: String,
        waited: Duration,
        status: String,
        health_log: String,
    },
    #[error("{0}")]
    Other(String),
}

impl ComposeCli {
    /// Prefers `docker compose`, falls back to `docker-compose`.
    /// Fails with [`StackError::NoDocker`] when the Docker daemon does not
    /// answer, whichever Compose is installed.
    pub fn detect() -> Result<Self, StackError> {
        match std::process::Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(StackError::NoDocker(format!(
                    "`docker version` exited {}: {}",
                    o.status.code().unwrap_or(-1),
                    tail(&String::from_utf8_lossy(&o.stderr), 400)
                )))
            }
            Err(e) => return Err(StackError::NoDocker(format!("cannot run `docker`: {e}"))),
        }
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
        Err(StackError::NoDocker(
            "neither `docker compose` nor `docker-compose` works; install one".into(),
        ))
    }

    fn program(self) -> (&'static str, &'static [&'static str]) {
        match self {
            ComposeCli::V2 => ("docker", &["compose"]),
            ComposeCli::V1 => ("docker-compose", &[]),
        }
    }
}

/// Output of a command run in a service container.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
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
    pub fn new(compose_file: &Path, project_prefix: &str) -> Result<Self, StackError> {
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
    ) -> Result<Self, StackError> {
        Ok(Self {
            cli: ComposeCli::detect()?,
            files: compose_files.to_vec(),
            project: project.to_string(),
            env,
            keep: true,
            removed: false,
        })
    }

    /// Adds an override file (`-f base -f override`).
    pub fn with_file(mut self, extra: &Path) -> Result<Self, StackError> {
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
    pub async fn output(&self, args: &[&str]) -> Result<Output, StackError> {
        let (mut cmd, line) = self.command(args);
        cmd.output().await.map_err(|source| StackError::Spawn {
            command: line,
            source,
        })
    }

    /// Runs compose with `args`; a non-zero exit is an error.
    pub async fn compose(&self, args: &[&str]) -> Result<Output, StackError> {
        let (mut cmd, line) = self.command(args);
        let out = cmd.output().await.map_err(|source| StackError::Spawn {
            command: line.clone(),
            source,
        })?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(StackError::Command {
                command: line,
                code: out.status.code().unwrap_or(-1),
                stderr: tail(&String::from_utf8_lossy(&out.stderr), 1500),
            })
        }
    }

    /// `up -d [--build] [services]`.
    pub async fn up(&self, services: &[&str], build: bool) -> Result<(), StackError> {
        let mut args = vec!["up", "-d"];
        if build {
            args.push("--build");
        }
        args.extend_from_slice(services);
        self.compose(&args).await.map(|_| ())
    }

    /// Polls every container of each service until Docker calls it healthy
    /// (or running, for a service without a healthcheck).
    pub async fn wait_healthy(
        &self,
        services: &[&str],
        deadline: Duration,
    ) -> Result<(), StackError> {
        let started = Instant::now();
        for service in services {
            loop {
                let ids = self.container_ids(service).await?;
                let mut all = !ids.is_empty();
                let mut status = String::from("no container");
                let mut log = String::new();
                // A container that exited at once (nginx refusing its
                // config) is no longer listed by `ps`: say so now, not
                // after the deadline.
                let exited = if ids.is_empty() {
                    self.exited_ids(service).await?
                } else {
                    Vec::new()
                };
                if let Some(id) = exited.first() {
                    status = docker(&["inspect", "-f", "exited (code {{.State.ExitCode}})", id])
                        .await
                        .map(|s| s.trim().to_string())
                        .unwrap_or_else(|_| "exited".into());
                }
                for id in &ids {
                    let s = docker(&[
                        "inspect",
                        "-f",
                        "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                        id,
                    ])
                    .await?;
                    status = s.trim().to_string();
                    let ok = status == "running healthy" || status == "running";
                    if !ok {
                        all = false;
                        log = docker(&[
                            "inspect",
                            "-f",
                            "{{if .State.Health}}{{range .State.Health.Log}}{{.Output}}{{end}}{{end}}",
                            id,
                        ])
                        .await
                        .unwrap_or_default();
                    }
                }
                if all {
                    break;
                }
                if started.elapsed() > deadline || status.starts_with("exited") {
                    let logs = match ids.first().or(exited.first()) {
                        Some(id) => container_logs(id, 10).await,
                        None => String::new(),
                    };
                    return Err(StackError::NotHealthy {
                        service: service.to_string(),
                        waited: started.elapsed(),
                        status,
                        health_log: format!("{} / logs: {}", tail(&log, 400), tail(&logs, 800)),
                    });
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Ok(())
    }

    /// Ids of the running containers of `service`, oldest first.
    pub async fn container_ids(&self, service: &str) -> Result<Vec<String>, StackError> {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let svc = format!("label=com.docker.compose.service={service}");
        let out = docker(&[
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
    pub async fn exited_ids(&self, service: &str) -> Result<Vec<String>, StackError> {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let svc = format!("label=com.docker.compose.service={service}");
        let out = docker(&[
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
    pub async fn exec(&self, service: &str, cmd: &[&str]) -> Result<ExecOutput, StackError> {
        let mut args = vec!["exec", "-T", service];
        args.extend_from_slice(cmd);
        let (mut c, line) = self.command(&args);
        let out = c.output().await.map_err(|source| StackError::Spawn {
            command: line,
            source,
        })?;
        Ok(ExecOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// The loopback port a container port is published on.
    pub async fn host_port(&self, service: &str, container_port: u16) -> Result<u16, StackError> {
        let port = container_port.to_string();
        let out = self.compose(&["port", service, &port]).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                StackError::Other(format!(
                    "{service}:{container_port} is not published (`port` said `{}`)",
                    text.trim()
                ))
            })
    }

    /// All logs of the service's containers.
    pub async fn logs(&self, service: &str) -> Result<String, StackError> {
        let out = self.compose(&["logs", "--no-color", service]).await?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Restarts Docker counted for the service's containers.
    pub async fn restart_count(&self, service: &str) -> Result<u64, StackError> {
        let mut n = 0;
        for id in self.container_ids(service).await? {
            n += docker(&["inspect", "-f", "{{.RestartCount}}", &id])
                .await?
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
        Ok(n)
    }

    /// Stops and removes the project now.
    pub async fn down(mut self) -> Result<(), StackError> {
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
        let _ = std::process::Command::new(program)
            .args(&argv)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The last `n` lines a container wrote, stdout and stderr together
/// (nginx writes its errors to stderr).
pub async fn container_logs(id: &str, n: u32) -> String {
    let out = Command::new("docker")
        .args(["logs", "--tail", &n.to_string(), id])
        .output()
        .await;
    match out {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("(docker logs failed: {e})"),
    }
}

async fn docker(args: &[&str]) -> Result<String, StackError> {
    let line = format!("docker {}", args.join(" "));
    let out = Command::new("docker")
        .args(args)
        .output()
        .await
        .map_err(|source| StackError::Spawn {
            command: line.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(StackError::Command {
            command: line,
            code: out.status.code().unwrap_or(-1),
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 800),
        })
    }
}

fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

fn canonical(file: &Path) -> Result<PathBuf, StackError> {
    file.canonicalize()
        .map_err(|e| StackError::Other(format!("compose file {}: {e}", file.display())))
}
