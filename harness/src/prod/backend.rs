//! The production backend: the operator's compose project on this Docker
//! host, driven with the same container operations as the test stack
//! (start goproxy beside the old one, reload nginx, drain) but never
//! started, taken down or given a fault by the harness. There is no mock
//! upstream: the upstream is the real LLM API.

use std::path::Path;
use std::time::Duration;

use super::ProdError;
use crate::compose::ComposeStack;
use crate::docker::Exec;
use crate::stack::containers::Containers;
use crate::stack::{Backend, LogMark, StackError};

/// An operator's running compose project.
#[derive(Debug)]
pub struct Production {
    pub containers: Containers,
    /// nginx's 443 as published on this host.
    pub https_port: u16,
}

impl Production {
    /// Attaches to `project` (compose files for the commands that scale
    /// goproxy; the project's own `.env` is read by compose itself).
    pub async fn attach(files: &[std::path::PathBuf], project: &str) -> Result<Self, ProdError> {
        let compose = ComposeStack::external(files, project, Vec::new())?;
        let containers = Containers { compose };
        let https_port = super::project::published_https(&containers).await?;
        Ok(Self {
            containers,
            https_port,
        })
    }

    /// The stack a deploy or rollback drives: this project's containers,
    /// its live `files`, and the public `target` the checks go through.
    pub fn into_stack(
        self,
        files: crate::files::LiveFiles,
        target: &crate::live::target::Target,
    ) -> crate::stack::Stack {
        let https_port = self.https_port;
        crate::stack::Stack::from_parts(
            Box::new(self),
            files,
            target.base.clone(),
            target.client.clone(),
            target.api_key.clone(),
            https_port,
        )
    }
}

fn not_in_production(what: &str) -> StackError {
    StackError::Unsupported(format!(
        "{what} is a test-stack fault; it is never done to a production project"
    ))
}

// The container operations are the test stack's own; only the faults and
// the mock are refused.
#[async_trait::async_trait]
impl Backend for Production {
    fn describe(&self) -> String {
        format!(
            "production compose project {}",
            self.containers.compose.project()
        )
    }

    fn where_goproxy_binds(&self) -> &'static str {
        "in goproxy's network namespace"
    }

    fn compose(&self) -> Option<&ComposeStack> {
        Some(&self.containers.compose)
    }

    async fn published_ports(&self) -> Result<(u16, Option<u16>), StackError> {
        Ok((self.https_port, None))
    }

    async fn goproxy_ids(&self, service: &str) -> Result<Vec<String>, StackError> {
        self.containers.goproxy_ids(service).await
    }

    async fn listening_ports(&self, id: &str) -> Result<Vec<u16>, StackError> {
        Backend::listening_ports(&self.containers, id).await
    }

    async fn listening_where_goproxy_binds(&self) -> Result<Vec<u16>, StackError> {
        self.containers.listening_where_goproxy_binds().await
    }

    async fn port_owner(&self, port: u16) -> String {
        self.containers.port_owner(port).await
    }

    async fn check_config(&self, candidate: &Path) -> Result<Exec, StackError> {
        self.containers.check_config(candidate).await
    }

    async fn nginx_test(&self, candidate: &Path) -> Result<Exec, StackError> {
        self.containers.nginx_test(candidate).await
    }

    async fn reload_nginx(&self) -> Result<String, StackError> {
        self.containers.reload_nginx().await
    }

    async fn nginx_workers(&self) -> Result<Vec<String>, StackError> {
        self.containers.nginx_workers().await
    }

    async fn worker_connections(&self, workers: &[String]) -> Option<usize> {
        self.containers.worker_connections(workers).await
    }

    async fn occupy_port(&self, _port: u16, _candidate_json: &str) -> Result<(), StackError> {
        Err(not_in_production("occupying a port"))
    }

    async fn start_goproxy_beside(&self) -> Result<String, StackError> {
        self.containers.start_beside().await
    }

    async fn wait_goproxy_healthy(
        &self,
        id: &str,
        deadline: Duration,
    ) -> Result<String, StackError> {
        self.containers.wait_healthy(id, deadline).await
    }

    async fn remove_goproxy(&self, id: &str) {
        self.containers.remove(id).await
    }

    async fn stop_goproxy(&self, id: &str) -> Result<(), StackError> {
        self.containers.stop(id).await
    }

    async fn remove_exited_goproxy(&self) {
        self.containers.remove_exited_goproxy().await
    }

    async fn start_single_goproxy(&self) -> Result<String, StackError> {
        self.containers.start_single().await
    }

    async fn design_restart_goproxy(&self) -> Result<String, StackError> {
        Err(StackError::Unsupported(
            "the design's restart-then-reload drops requests; deploy uses the overlap switch"
                .into(),
        ))
    }

    async fn restart_instance(&self, service: &str) -> Result<String, StackError> {
        self.containers.restart_service(service).await
    }

    async fn get_goproxy_as_nginx(&self, service: &str, port: u16) -> Result<String, StackError> {
        self.containers.get_from_nginx(service, port).await
    }

    async fn upstream_reachable(&self) -> Result<String, StackError> {
        Err(StackError::Unsupported(
            "production has no mock upstream; the live checks send real requests".into(),
        ))
    }

    fn log_mark(&self) -> LogMark {
        LogMark::Time(std::time::SystemTime::now())
    }

    async fn logs_since(&self, mark: &LogMark) -> Result<Vec<(String, String)>, StackError> {
        Backend::logs_since(&self.containers, mark).await
    }

    async fn restarts(&self) -> Result<u64, StackError> {
        self.containers.restarts().await
    }

    async fn stop_upstream(&self) -> Result<(), StackError> {
        Err(not_in_production("stopping the upstream"))
    }
}
