//! The container backend: the compose project of `docker-compose.yml` with
//! the override `docker-compose.test.yml` (nginx, goproxy, the streaming
//! mock) on a private Docker network, driven
//! through the compose CLI and `docker` by container id.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;

use crate::compose::ComposeStack;
use crate::docker::{self, DockerError, Exec};
use crate::stack::{nginx_step, Backend, LogMark, StackError, MOCK_PORT};

/// How long old goproxy may drain open streams before it is killed: the
/// production compose file's `stop_grace_period` (360 s), longer than
/// goproxy's own `drain_timeout_secs` (330 s), so goproxy decides. A
/// goproxy with no open stream exits at once; only long streams wait.
const STOP_GRACE_SECS: &str = "360";

/// A compose project and the operations the gate needs on it.
#[derive(Debug)]
pub struct Containers {
    pub compose: ComposeStack,
}

impl Containers {
    /// Running containers of a service, oldest first.
    pub async fn ids(&self, service: &str) -> Result<Vec<String>, StackError> {
        Ok(self.compose.container_ids(service).await?)
    }

    /// The one running container of a service.
    pub async fn only(&self, service: &str) -> Result<String, StackError> {
        let ids = self.ids(service).await?;
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            many => Err(StackError::NotOneContainer {
                service: service.to_string(),
                count: many.len(),
            }),
        }
    }

    /// Every container of goproxy, exited ones included (a goproxy that
    /// fails at start exits at once and `docker ps` would not show it).
    async fn all_goproxy(&self) -> Result<Vec<String>, StackError> {
        let project = format!(
            "label=com.docker.compose.project={}",
            self.compose.project()
        );
        let ids = docker::docker_ok(&[
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            &project,
            "--filter",
            "label=com.docker.compose.service=goproxy",
        ])
        .await?;
        Ok(ids.split_whitespace().map(str::to_string).collect())
    }

    /// Who holds `port` in goproxy's network namespace (netstat, for evidence).
    pub async fn port_owner(&self, port: u16) -> String {
        let Ok(id) = self.only("goproxy").await else {
            return String::new();
        };
        docker::exec(&id, &["netstat", "-tlnp"])
            .await
            .map(|o| o.stdout)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains(&format!(":{port} ")))
            .unwrap_or("")
            .trim()
            .to_string()
    }

    /// `goproxy --check-config` of the deployed image on a candidate file.
    pub async fn check_config(&self, candidate: &Path) -> Result<Exec, StackError> {
        let id = self.only("goproxy").await?;
        let inside = "/tmp/config.candidate.json";
        docker::copy_in(&id, candidate, inside).await?;
        Ok(docker::exec(&id, &["goproxy", "--check-config", inside]).await?)
    }

    /// `nginx -t` of the deployed nginx on a candidate file.
    pub async fn nginx_test(&self, candidate: &Path) -> Result<Exec, StackError> {
        let id = self.only("nginx").await?;
        let inside = "/tmp/nginx.candidate.conf";
        docker::copy_in(&id, candidate, inside).await?;
        Ok(docker::exec(&id, &["nginx", "-t", "-c", inside]).await?)
    }

    /// `nginx -t` then `nginx -s reload` in the nginx container.
    pub async fn reload_nginx(&self) -> Result<String, StackError> {
        let id = self.only("nginx").await?;
        nginx_step("-t", docker::exec(&id, &["nginx", "-t"]).await?)?;
        nginx_step(
            "-s reload",
            docker::exec(&id, &["nginx", "-s", "reload"]).await?,
        )?;
        Ok("nginx -t ok; nginx -s reload ok".into())
    }

    /// PIDs of the nginx worker processes, inside the container.
    pub async fn nginx_workers(&self) -> Result<Vec<String>, StackError> {
        let id = self.only("nginx").await?;
        // `[p]rocess` so the pattern does not match this shell's own command line.
        let list = "grep -l 'worker [p]rocess' /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3";
        let out = docker::exec(&id, &["sh", "-c", list]).await?;
        Ok(out.stdout.split_whitespace().map(str::to_string).collect())
    }

    /// Client connections (ESTABLISHED on 443 or 80) the given nginx
    /// workers hold: their sockets' inodes matched against the namespace's
    /// TCP table. The fds are read as the workers' own user: root in a
    /// container lacks CAP_SYS_PTRACE, which reading another user's
    /// `/proc/<pid>/fd` needs. None when it cannot be read.
    pub async fn worker_connections(&self, workers: &[String]) -> Option<usize> {
        let first = workers.first()?;
        let id = self.only("nginx").await.ok()?;
        let uid = docker::exec(&id, &["stat", "-c", "%u", &format!("/proc/{first}")])
            .await
            .ok()
            .filter(|o| o.code == 0)?
            .stdout
            .trim()
            .to_string();
        let script = "for p in \"$@\"; do readlink /proc/$p/fd/* 2>/dev/null; done; \
                      echo ==; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null";
        let mut args = vec!["exec", "-u", &uid, &id, "sh", "-c", script, "sh"];
        args.extend(workers.iter().map(String::as_str));
        let out = docker::docker(&args).await.ok()?;
        let (links, table) = out.stdout.split_once("==")?;
        super::workers::client_connections(links, table)
    }

    /// A second goproxy with the candidate config inside the goproxy
    /// container, holding `port` in its network namespace.
    pub async fn occupy_port(&self, candidate_json: &str) -> Result<(), StackError> {
        let id = self.only("goproxy").await?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(candidate_json);
        let script = format!(
            "echo {b64} | base64 -d > /tmp/squatter.json && exec goproxy --config /tmp/squatter.json"
        );
        docker::docker_ok(&["exec", "-d", &id, "sh", "-c", &script]).await?;
        Ok(())
    }

    /// One more goproxy container beside the running ones (compose scale),
    /// reading the live config; returns its id, running or not.
    pub async fn start_beside(&self) -> Result<String, StackError> {
        let old = self.all_goproxy().await?;
        let scale = format!("goproxy={}", self.ids("goproxy").await?.len() + 1);
        self.compose
            .compose(&[
                "up",
                "-d",
                "--no-deps",
                "--no-recreate",
                "--scale",
                &scale,
                "goproxy",
            ])
            .await?;
        self.all_goproxy()
            .await?
            .into_iter()
            .find(|id| !old.contains(id))
            .ok_or(StackError::NoNewContainer)
    }

    /// Waits for Docker's health of a goproxy container; fails fast with
    /// its last log lines if it exits.
    pub async fn wait_healthy(&self, id: &str, deadline: Duration) -> Result<String, StackError> {
        let t0 = Instant::now();
        let one = || async { Ok(vec![id.to_string()]) };
        match docker::wait_healthy("goproxy", deadline, one).await {
            Ok(()) => Ok(format!(
                "{} healthy after {:.0} ms",
                short(id),
                t0.elapsed().as_secs_f64() * 1000.0
            )),
            Err(DockerError::NotHealthy { status, logs, .. })
                if status.starts_with("exited") || status.starts_with("dead") =>
            {
                Err(StackError::ExitedAtStart {
                    status: None,
                    logs: logs.replace('\n', " / "),
                })
            }
            Err(DockerError::NotHealthy { status, .. }) => Err(StackError::Timeout {
                what: format!("{} not healthy", short(id)),
                after: deadline,
                last: format!("; last state: {status}"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a goproxy container at once (one that failed to start).
    pub async fn remove(&self, id: &str) {
        let _ = docker::docker(&["rm", "-f", id]).await;
    }

    /// SIGTERM (goproxy drains), wait, remove.
    pub async fn stop(&self, id: &str) -> Result<(), StackError> {
        docker::docker_ok(&["stop", "-t", STOP_GRACE_SECS, id]).await?;
        docker::docker_ok(&["rm", id]).await?;
        Ok(())
    }

    /// Removes goproxy containers that exited (left by a failed start).
    pub async fn remove_exited_goproxy(&self) {
        let running = self.ids("goproxy").await.unwrap_or_default();
        for id in self.all_goproxy().await.unwrap_or_default() {
            if !running.contains(&id) {
                self.remove(&id).await;
            }
        }
    }

    /// Starts goproxy when no container of it runs at all.
    pub async fn start_single(&self) -> Result<String, StackError> {
        self.compose
            .compose(&["up", "-d", "--no-deps", "goproxy"])
            .await?;
        self.only("goproxy").await
    }

    /// The design's `up -d --build goproxy`; an error if compose did not
    /// actually restart goproxy.
    pub async fn design_restart(&self) -> Result<String, StackError> {
        let before = match self.only("goproxy").await {
            Ok(id) => docker::started_at(&id).await.map(|s| (id, s)).ok(),
            Err(_) => None,
        };
        let upstream_before = self.ids("upstream").await.unwrap_or_default();
        self.compose
            .compose(&["up", "-d", "--build", "goproxy"])
            .await?;
        // compose also recreates goproxy's dependencies whose image changed:
        // in this stack the mock upstream, in production whatever goproxy
        // depends on. Say so: it is traffic the runbook did not plan to move.
        let also = if self.ids("upstream").await.unwrap_or_default() != upstream_before {
            "; compose also recreated its dependency `upstream`"
        } else {
            ""
        };
        let id = self
            .only("goproxy")
            .await
            .map_err(|e| StackError::AfterRestart {
                source: Box::new(e),
                also,
            })?;
        let now = docker::started_at(&id).await?;
        if let Some((old_id, old_start)) = &before {
            if *old_id == id && *old_start == now {
                return Err(StackError::NotRestarted {
                    started: now,
                    also: also.to_string(),
                });
            }
        }
        Ok(id)
    }

    /// `docker restart` of one service's container (goproxy drains first).
    pub async fn restart_service(&self, service: &str) -> Result<String, StackError> {
        let id = self.only(service).await?;
        docker::docker_ok(&["restart", "-t", STOP_GRACE_SECS, &id]).await?;
        Ok(id)
    }

    /// GET `http://<service>:<port>/health` from inside the nginx container.
    pub async fn get_from_nginx(&self, service: &str, port: u16) -> Result<String, StackError> {
        let nginx = self.only("nginx").await?;
        let url = format!("http://{service}:{port}/health");
        let out = docker::exec(
            &nginx,
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
                &url,
            ],
        )
        .await?;
        if out.stdout.trim() == "200" {
            Ok(format!("GET {url} -> 200"))
        } else {
            Err(StackError::HttpStatus {
                what: format!("from the nginx container: GET {url}"),
                said: format!(
                    "`{}` (curl exit {}): {}",
                    out.stdout.trim(),
                    out.code,
                    out.stderr.trim()
                ),
            })
        }
    }

    /// Whether goproxy's container can open a TCP connection to the mock.
    pub async fn upstream_reachable(&self) -> Result<String, StackError> {
        let ids = self.ids("goproxy").await?;
        let id = ids.first().ok_or(StackError::NotOneContainer {
            service: "goproxy".into(),
            count: 0,
        })?;
        let probe = format!("exec 3<>/dev/tcp/upstream/{MOCK_PORT}");
        let out = docker::exec(id, &["timeout", "3", "bash", "-c", &probe]).await?;
        if out.code == 0 {
            Ok(format!("goproxy's container reaches upstream:{MOCK_PORT}"))
        } else {
            Err(StackError::Unreachable {
                target: format!("upstream:{MOCK_PORT}"),
                why: out.stderr.trim().to_string(),
            })
        }
    }

    /// Log lines of goproxy and nginx since `since`, per service.
    pub async fn logs_since(&self, since: SystemTime) -> Result<Vec<(String, String)>, StackError> {
        let mut out = Vec::new();
        for service in ["goproxy", "nginx"] {
            for id in self.ids(service).await? {
                out.push((service.to_string(), docker::logs_since(&id, since).await?));
            }
        }
        Ok(out)
    }

    /// Restarts Docker counted across the stack's services.
    pub async fn restarts(&self) -> Result<u64, StackError> {
        let mut n = 0;
        for service in ["goproxy", "goproxy-b", "nginx", "upstream"] {
            n += self.compose.restart_count(service).await?;
        }
        Ok(n)
    }

    /// Stops the mock upstream container.
    pub async fn stop_upstream(&self) -> Result<(), StackError> {
        self.compose
            .compose(&["stop", "-t", "1", "upstream"])
            .await?;
        Ok(())
    }
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

// Inherent methods keep their names; the trait only routes to them.
#[async_trait::async_trait]
impl Backend for Containers {
    fn describe(&self) -> String {
        format!("compose project {}", self.compose.project())
    }

    fn where_goproxy_binds(&self) -> &'static str {
        "in goproxy's network namespace"
    }

    fn compose(&self) -> Option<&ComposeStack> {
        Some(&self.compose)
    }

    fn keep(&mut self) {
        self.compose.keep(true);
    }

    async fn published_ports(&self) -> Result<(u16, Option<u16>), StackError> {
        let https = self.compose.host_port("nginx", 443).await?;
        let mock = self.compose.host_port("upstream", MOCK_PORT).await?;
        Ok((https, Some(mock)))
    }

    async fn goproxy_ids(&self, service: &str) -> Result<Vec<String>, StackError> {
        self.ids(service).await
    }

    async fn listening_ports(&self, id: &str) -> Result<Vec<u16>, StackError> {
        Ok(docker::listening_ports(id).await?)
    }

    async fn listening_where_goproxy_binds(&self) -> Result<Vec<u16>, StackError> {
        Ok(docker::listening_ports(&self.only("goproxy").await?).await?)
    }

    async fn port_owner(&self, port: u16) -> String {
        Containers::port_owner(self, port).await
    }

    async fn check_config(&self, candidate: &Path) -> Result<Exec, StackError> {
        Containers::check_config(self, candidate).await
    }

    async fn nginx_test(&self, candidate: &Path) -> Result<Exec, StackError> {
        Containers::nginx_test(self, candidate).await
    }

    async fn reload_nginx(&self) -> Result<String, StackError> {
        Containers::reload_nginx(self).await
    }

    async fn nginx_workers(&self) -> Result<Vec<String>, StackError> {
        Containers::nginx_workers(self).await
    }

    async fn worker_connections(&self, workers: &[String]) -> Option<usize> {
        Containers::worker_connections(self, workers).await
    }

    async fn occupy_port(&self, _port: u16, candidate_json: &str) -> Result<(), StackError> {
        Containers::occupy_port(self, candidate_json).await
    }

    async fn start_goproxy_beside(&self) -> Result<String, StackError> {
        self.start_beside().await
    }

    async fn wait_goproxy_healthy(
        &self,
        id: &str,
        deadline: Duration,
    ) -> Result<String, StackError> {
        self.wait_healthy(id, deadline).await
    }

    async fn remove_goproxy(&self, id: &str) {
        self.remove(id).await
    }

    async fn stop_goproxy(&self, id: &str) -> Result<(), StackError> {
        self.stop(id).await
    }

    async fn remove_exited_goproxy(&self) {
        Containers::remove_exited_goproxy(self).await
    }

    async fn start_single_goproxy(&self) -> Result<String, StackError> {
        self.start_single().await
    }

    async fn design_restart_goproxy(&self) -> Result<String, StackError> {
        self.design_restart().await
    }

    async fn restart_instance(&self, service: &str) -> Result<String, StackError> {
        self.restart_service(service).await
    }

    async fn get_goproxy_as_nginx(&self, service: &str, port: u16) -> Result<String, StackError> {
        self.get_from_nginx(service, port).await
    }

    async fn upstream_reachable(&self) -> Result<String, StackError> {
        Containers::upstream_reachable(self).await
    }

    async fn logs_since(&self, mark: &LogMark) -> Result<Vec<(String, String)>, StackError> {
        match mark {
            LogMark::Time(t) => Containers::logs_since(self, *t).await,
            LogMark::Sizes(_) => Err(StackError::Unsupported(
                "a log mark of the local backend".into(),
            )),
        }
    }

    async fn restarts(&self) -> Result<u64, StackError> {
        Containers::restarts(self).await
    }

    async fn stop_upstream(&self) -> Result<(), StackError> {
        Containers::stop_upstream(self).await
    }
}
