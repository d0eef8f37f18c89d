//! `harness lint`: the static checks, no containers.

use std::path::PathBuf;
use std::time::Instant;

use super::{emit, usage, Global, Output};
use crate::check::Checks;
use crate::lint::{self, LintTargets};
use crate::report::{Figures, Report, Verdict};

/// Arguments of `harness lint`.
#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// goproxy production config [default: proxy/config-ohmygpt-prod.json].
    #[arg(long)]
    pub goproxy_config: Option<PathBuf>,
    /// goproxy dev config, which must agree on the port.
    #[arg(long)]
    pub dev_config: Option<PathBuf>,
    /// nginx config [default: nginx/nginx.conf].
    #[arg(long)]
    pub nginx_conf: Option<PathBuf>,
    /// Compose files to scan for goproxy ports [default: every
    /// docker-compose*.yml / compose*.yaml under --root that defines the service].
    #[arg(long)]
    pub compose: Vec<PathBuf>,
    /// The compose service that runs goproxy (nginx reaches it by this name).
    #[arg(long, default_value = crate::lint::DEFAULT_SERVICE)]
    pub service: String,
    #[command(flatten)]
    pub out: Output,
}

pub(super) async fn run(a: LintArgs, g: &Global) -> i32 {
    let mut t = LintTargets::from_root(&g.root);
    if let Some(p) = a.goproxy_config {
        t.prod_config = p;
    }
    if a.dev_config.is_some() {
        t.dev_config = a.dev_config;
    }
    if let Some(p) = a.nginx_conf {
        t.nginx_conf = p;
    }
    if !a.compose.is_empty() {
        t.compose_files = a.compose;
    }
    t.service = a.service;
    if let Some(why) = t.unreadable() {
        return usage(&why);
    }
    let started = Instant::now();
    let mut checks = Checks::new(g.quiet);
    lint::run(&t, &mut checks).await;
    let (verdict, reason) = if checks.all_passed() {
        (Verdict::Go, "the files agree and validate".to_string())
    } else {
        (
            Verdict::NoGo,
            "lint failed: fix the files named above".to_string(),
        )
    };
    let report = Report::new(
        "lint",
        verdict,
        reason,
        checks.into_results(),
        Figures::default(),
        started.elapsed(),
    );
    emit(&report, &a.out)
}
