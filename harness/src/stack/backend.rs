//! What a stack must be able to do, whatever runs it: the runbook's
//! operations on nginx and goproxy (start one beside another, reload, drain,
//! read ports and logs). [`super::containers`] and [`super::local`]
//! implement it; the phases (pre, deploy, verify,
//! rollback) call it through [`super::Stack`] and never ask which one runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::compose::ComposeStack;
use crate::docker::Exec;
use crate::stack::StackError;

/// A point in the logs: [`Backend::logs_since`] returns what came after it.
#[derive(Debug, Clone)]
pub enum LogMark {
    Time(SystemTime),
    Sizes(Vec<(PathBuf, u64)>),
}

/// The operations of the runbook on one running stack.
///
/// `async_trait` because the stack holds its backend as a trait object
/// (chosen at run time by `--backend` or by the command), and native async
/// trait methods are not object-safe.
#[async_trait::async_trait]
pub trait Backend: std::fmt::Debug + Send + Sync {
    /// "compose project X" or "local processes in DIR", for evidence.
    fn describe(&self) -> String;

    /// Where goproxy binds, in words ("in goproxy's network namespace").
    fn where_goproxy_binds(&self) -> &'static str;

    /// Whether every goproxy shares one network namespace (local
    /// processes): then two instances cannot hold the same port.
    fn shared_namespace(&self) -> bool {
        false
    }

    /// The compose project, for backends that run one.
    fn compose(&self) -> Option<&ComposeStack> {
        None
    }

    /// Keep what runs when the stack is dropped.
    fn keep(&mut self) {}

    /// The loopback port of nginx's 443, and of the streaming mock's admin
    /// routes where there is a mock.
    async fn published_ports(&self) -> Result<(u16, Option<u16>), StackError>;

    /// Running instances of a goproxy service (`goproxy`, `goproxy-b`).
    async fn goproxy_ids(&self, service: &str) -> Result<Vec<String>, StackError>;

    /// TCP ports one goproxy instance listens on.
    async fn listening_ports(&self, id: &str) -> Result<Vec<u16>, StackError>;

    /// Ports in LISTEN where goproxy binds (see [`Backend::where_goproxy_binds`]).
    async fn listening_where_goproxy_binds(&self) -> Result<Vec<u16>, StackError>;

    /// Who holds `port` where goproxy binds, for evidence.
    async fn port_owner(&self, port: u16) -> String;

    /// `goproxy --check-config` (of the deployed image, or the local binary).
    async fn check_config(&self, candidate: &Path) -> Result<Exec, StackError>;

    /// `nginx -t` of the deployed nginx on a candidate file.
    async fn nginx_test(&self, candidate: &Path) -> Result<Exec, StackError>;

    /// `nginx -t` then `nginx -s reload` on the live config.
    async fn reload_nginx(&self) -> Result<String, StackError>;

    /// PIDs of the nginx worker processes now running.
    async fn nginx_workers(&self) -> Result<Vec<String>, StackError>;

    /// Client connections the given nginx workers still hold (streams
    /// still open on the previous configuration), when it can be read.
    async fn worker_connections(&self, _workers: &[String]) -> Option<usize> {
        None
    }

    /// Occupies `port` where goproxy binds (the port-in-use fault).
    async fn occupy_port(&self, port: u16, candidate_json: &str) -> Result<(), StackError>;

    /// One more goproxy beside the running ones, on the live config.
    async fn start_goproxy_beside(&self) -> Result<String, StackError>;

    /// Until the goproxy instance is healthy; fails fast if it exits.
    async fn wait_goproxy_healthy(
        &self,
        id: &str,
        deadline: Duration,
    ) -> Result<String, StackError>;

    /// Removes a goproxy instance at once (one that failed to start).
    async fn remove_goproxy(&self, id: &str);

    /// Stops a goproxy instance gracefully (it drains) and removes it.
    async fn stop_goproxy(&self, id: &str) -> Result<(), StackError>;

    /// Drops goproxy instances that exited (a failed start) before a rollback.
    async fn remove_exited_goproxy(&self);

    /// Starts goproxy when none runs at all.
    async fn start_single_goproxy(&self) -> Result<String, StackError>;

    /// The design's restart of goproxy (`up -d --build goproxy`); an error
    /// if it did not actually restart goproxy.
    async fn design_restart_goproxy(&self) -> Result<String, StackError>;

    /// Restarts one instance of a multi-instance stack (goproxy drains).
    async fn restart_instance(&self, service: &str) -> Result<String, StackError>;

    /// GET goproxy's /health as nginx reaches it (`<service>:<port>`).
    async fn get_goproxy_as_nginx(&self, service: &str, port: u16) -> Result<String, StackError>;

    /// Whether goproxy can open a TCP connection to the mock upstream.
    async fn upstream_reachable(&self) -> Result<String, StackError>;

    /// A point in the logs, for [`Backend::logs_since`].
    fn log_mark(&self) -> LogMark {
        LogMark::Time(SystemTime::now())
    }

    /// (service, text) of goproxy's and nginx's logs since `mark`.
    async fn logs_since(&self, mark: &LogMark) -> Result<Vec<(String, String)>, StackError>;

    /// Restarts (containers) or unexpected exits (processes) so far.
    async fn restarts(&self) -> Result<u64, StackError>;

    /// Takes the mock upstream away (the upstream-down fault).
    async fn stop_upstream(&self) -> Result<(), StackError>;
}
