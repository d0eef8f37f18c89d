//! `harness lint`: the static checks, no containers.

use std::time::Instant;

use super::targets::TargetArgs;
use super::{emit, usage, Global, Output};
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

pub(super) async fn run(a: LintArgs, g: &Global) -> i32 {
    let t = match a.files.targets(&g.root) {
        Ok(t) => t,
        Err(why) => return usage(&why),
    };
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
