//! `harness deploy` on the command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::check::ReachArgs;
use super::{emit, Global, Output};
use crate::exit::Usage;
use crate::prod::deploy::{self, DeployOptions};
use crate::stack::DEFAULT_STREAM_BOUND;

/// `harness deploy`.
// These doc comments are also the --help text: plain URLs and <placeholders>
// read well there, so rustdoc's markdown lints are off for them.
#[allow(rustdoc::bare_urls, rustdoc::invalid_html_tags)]
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The project's compose file(s), as it was started (repeat for overrides).
    #[arg(long, required = true)]
    pub compose_file: Vec<PathBuf>,
    /// The compose project [default: the first compose file's directory name].
    #[arg(long)]
    pub project_name: Option<String>,
    /// The new files, laid out like the project directory (a checkout of the
    /// new version) [default: --root].
    #[arg(long)]
    pub candidate_dir: Option<PathBuf>,
    /// Print every step and command, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The switch: overlap (one goproxy) or rolling-restart (goproxy and
    /// goproxy-b behind one upstream) [default: chosen for the project].
    #[arg(long, value_parser = crate::prod::strategy::parse)]
    pub strategy: Option<crate::scenario::Strategy>,
    /// Monitoring window after the switch (the design watches 15m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub monitor: Duration,
    /// How long a stream may stay open across the switch (old nginx workers
    /// and the old goproxy are waited for this long).
    #[arg(long, default_value = "330s", value_parser = humantime::parse_duration)]
    pub stream_bound: Duration,
    /// The public URL [default: `https://chat.trollllm.xyz` on nginx's published port, via 127.0.0.1].
    #[arg(long)]
    pub url: Option<String>,
    #[command(flatten)]
    pub reach: ReachArgs,
    /// Where the state goes (default: `<project dir>/.harness-deploy/<project>-<time>`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Do not roll back automatically when a check after the change fails.
    #[arg(long)]
    pub no_rollback: bool,
    #[command(flatten)]
    pub out: Output,
}

/// Runs `harness deploy`; returns the exit code.
pub(super) async fn run(args: DeployArgs, g: &Global) -> anyhow::Result<i32> {
    let (root, quiet) = (g.root.as_path(), g.quiet);
    if args.monitor.is_zero() {
        let why = "--monitor 0s watches nothing: give a window, e.g. --monitor 60s";
        return Err(Usage(why.into()).into());
    }
    if args.stream_bound < DEFAULT_STREAM_BOUND.min(Duration::from_secs(1)) {
        return Err(Usage("--stream-bound must be at least 1s".into()).into());
    }
    let project = args
        .project_name
        .clone()
        .unwrap_or_else(|| super::check::default_project(root, &args.compose_file));
    let opts = DeployOptions {
        compose_files: args.compose_file.clone(),
        project,
        candidate_dir: args
            .candidate_dir
            .clone()
            .unwrap_or_else(|| root.to_path_buf()),
        url: args.url.clone(),
        resolve: args.reach.resolve.clone(),
        ca_cert: args.reach.ca_cert.clone(),
        insecure: args.reach.insecure,
        api_key_env: args.reach.api_key_env.clone(),
        model: args.reach.model.clone(),
        monitor: args.monitor,
        stream_bound: args.stream_bound,
        state_dir: args.state_dir.clone(),
        dry_run: args.dry_run,
        strategy: args.strategy,
        auto_rollback: !args.no_rollback,
        quiet,
    };
    if !quiet {
        eprintln!(
            "harness deploy: {} from {}{}",
            opts.project,
            opts.candidate_dir.display(),
            if opts.dry_run { " (dry run)" } else { "" }
        );
    }
    // Before anything changed (the project, the files, the target): the
    // operator's input, exit 2, whatever failed.
    let report = deploy::run(&opts).await.with_context(|| {
        crate::exit::Doing::input(format!("deploying to compose project {}", opts.project))
    })?;
    Ok(emit(&report, &args.out))
}
