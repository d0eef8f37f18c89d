//! The operator's files, as `lint` and `validate` both take them.

use std::path::PathBuf;

use crate::lint::{LintTargets, DEFAULT_SERVICE};

/// Which files are judged; each defaults to this repository's layout
/// under `--root`.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// goproxy production config [default: <root>/proxy/config-ohmygpt-prod.json].
    #[arg(long)]
    pub goproxy_config: Option<PathBuf>,
    /// goproxy dev config, which must agree on the port
    /// [default: <root>/proxy/config-ohmygpt-dev.json if it exists].
    #[arg(long)]
    pub dev_config: Option<PathBuf>,
    /// nginx config; its includes are read too [default: <root>/nginx/nginx.conf].
    #[arg(long)]
    pub nginx_conf: Option<PathBuf>,
    /// Compose files to scan for goproxy ports (repeatable) [default: every
    /// docker-compose*.yml / compose*.yaml under --root that defines the service].
    #[arg(long)]
    pub compose: Vec<PathBuf>,
    /// The compose service that runs goproxy (nginx reaches it by this name).
    #[arg(long, default_value = DEFAULT_SERVICE)]
    pub service: String,
}

impl TargetArgs {
    /// The files to judge; `Err` names the first that cannot be read (exit 2).
    pub fn targets(&self, root: &std::path::Path) -> Result<LintTargets, String> {
        let mut t = LintTargets::from_root(root);
        if let Some(p) = &self.goproxy_config {
            t.prod_config = p.clone();
        }
        if self.dev_config.is_some() {
            t.dev_config = self.dev_config.clone();
        }
        if let Some(p) = &self.nginx_conf {
            t.nginx_conf = p.clone();
        }
        if !self.compose.is_empty() {
            t.compose_files = self.compose.clone();
        }
        t.service = self.service.clone();
        match t.unreadable() {
            Some(why) => Err(why),
            None => Ok(t),
        }
    }
}
