//! `harness lint`: the static checks, no containers.

use std::time::Instant;

use anyhow::Context as _;

use super::targets::{TargetArgs, UNUSABLE};
use super::{emit, Global, Output};
use crate::check::Checks;
use crate::lint;
use crate::report::{Figures, Report, Verdict};

/// Arguments of `harness lint`.
#[derive(Debug, clap::Args)]
pub struct LintArgs {
    #[command(flatten)]
    pub files: TargetArgs,
    #[command(flatten)]
    pub out: Output,
}

pub(super) async fn run(a: LintArgs, g: &Global) -> anyhow::Result<i32> {
    let t = a.files.targets(&g.root).context(UNUSABLE)?;
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
    Ok(emit(&report, &a.out))
}
