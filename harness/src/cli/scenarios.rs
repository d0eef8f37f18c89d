//! `harness scenarios run` and `list`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;

use anyhow::Context as _;

use super::{resolve_backend, BackendChoice, Global};
use crate::expect;
use crate::gate::{self, GateOptions};
use crate::report::EXIT_USAGE;
use crate::scenario::{self, Scenario};

#[derive(Debug, Subcommand)]
pub enum ScenariosAction {
    /// Run every scenario (or those whose name contains --only), one line each.
    Run {
        #[arg(long, default_value = "scenarios")]
        dir: PathBuf,
        #[arg(long)]
        only: Option<String>,
        #[arg(long, default_value = "3s", value_parser = super::monitor_window)]
        monitor: Duration,
        /// JUnit XML with one suite per scenario.
        #[arg(long)]
        junit: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
        backend: BackendChoice,
    },
    /// List the scenarios and check that every file is valid.
    List {
        #[arg(long, default_value = "scenarios")]
        dir: PathBuf,
    },
}

pub(super) async fn run(action: ScenariosAction, g: &Global) -> anyhow::Result<i32> {
    let root = &g.root;
    match action {
        ScenariosAction::List { dir } => list_scenarios(&root.join(dir)),
        ScenariosAction::Run {
            dir,
            only,
            monitor,
            junit,
            backend,
        } => {
            let backend = resolve_backend(backend, g.quiet)
                .await
                .context("--backend containers")?;
            let opts = GateOptions::from_root(root, backend, monitor);
            run_scenarios(
                &root.join(dir),
                only.as_deref(),
                junit.as_deref(),
                g.quiet,
                &opts,
            )
            .await
        }
    }
}
/// ", switch 0/220 failed, gap 28 ms, rollback 3.9 s" for a scenario line.
fn figures_line(f: &crate::report::Figures) -> String {
    let mut out = String::new();
    if let (Some(sent), Some(failed)) = (f.switch_requests, f.switch_failed_requests) {
        out.push_str(&format!(
            ", switch {failed}/{sent} failed, gap {:.0} ms, {:.1} s",
            f.switch_longest_gap_ms.unwrap_or(0.0),
            f.switch_duration_ms.unwrap_or(0.0) / 1000.0
        ));
    }
    if let Some(ms) = f.rollback_duration_ms {
        out.push_str(&format!(", rollback {:.1} s", ms / 1000.0));
    }
    out
}

fn list_scenarios(dir: &Path) -> anyhow::Result<i32> {
    let files = listed(dir)?;
    let mut bad = 0;
    for f in &files {
        match Scenario::load(f) {
            Ok(s) => println!(
                "{:<32} expect {:<10} {}",
                s.name,
                s.expect.verdict.label(),
                s.description.trim()
            ),
            Err(e) => {
                bad += 1;
                println!("INVALID {e}");
            }
        }
    }
    Ok(if bad > 0 { EXIT_USAGE } else { 0 })
}

/// The scenario files in `dir`; an error names the directory.
fn listed(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    scenario::list(dir).with_context(|| format!("cannot list scenarios in {}", dir.display()))
}

async fn run_scenarios(
    dir: &Path,
    only: Option<&str>,
    junit: Option<&Path>,
    quiet: bool,
    opts: &GateOptions,
) -> anyhow::Result<i32> {
    let mut failed = 0;
    let mut suites = quick_junit::Report::new("scenarios");
    let (scenarios, skipped): (Vec<_>, Vec<_>) = selected(dir, only)?
        .into_iter()
        .partition(|s| s.backends.contains(&opts.backend));
    for s in &skipped {
        println!("SKIP {:<32} runs only on {:?}", s.name, s.backends);
    }
    for (i, s) in scenarios.iter().enumerate() {
        if !quiet {
            eprintln!("[{}/{}] {} ...", i + 1, scenarios.len(), s.name);
        }
        let report = gate::validate(s, opts).await;
        let verdict = expect::matches(s, &report);
        println!("{}", outcome_line(s, &report, &verdict));
        if verdict.is_err() {
            failed += 1;
            if !quiet {
                print!("{}", report.summary());
            }
        }
        if junit.is_some() {
            suites.add_test_suite(junit_suite(s, &report, &verdict));
        }
    }
    println!(
        "{} passed, {} failed, {} skipped",
        scenarios.len() - failed,
        failed,
        skipped.len()
    );
    if let Some(path) = junit {
        write_junit(path, &suites);
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

/// The scenarios in `dir` whose name contains `only` (all without it); a
/// file that does not load stops the run before anything starts.
fn selected(dir: &Path, only: Option<&str>) -> anyhow::Result<Vec<Scenario>> {
    let mut scenarios = Vec::new();
    for f in &listed(dir)? {
        let s = Scenario::load(f)?;
        if only.is_none_or(|o| s.name.contains(o)) {
            scenarios.push(s);
        }
    }
    Ok(scenarios)
}

/// "PASS <name> <why> (<time>, <figures>)", or FAIL with what differed.
fn outcome_line(
    s: &Scenario,
    report: &crate::report::Report,
    verdict: &Result<String, expect::Unexpected>,
) -> String {
    let figures = figures_line(&report.figures);
    let (word, why) = match verdict {
        Ok(why) => ("PASS", why.to_string()),
        Err(why) => ("FAIL", why.to_string()),
    };
    format!(
        "{word} {:<32} {why} ({:.1}s{figures})",
        s.name,
        report.wall_time.as_secs_f64()
    )
}

/// One JUnit suite per scenario, one case: whether the expected outcome came.
fn junit_suite(
    s: &Scenario,
    report: &crate::report::Report,
    verdict: &Result<String, expect::Unexpected>,
) -> quick_junit::TestSuite {
    let mut suite = quick_junit::TestSuite::new(s.name.clone());
    let status = match verdict {
        Ok(_) => quick_junit::TestCaseStatus::success(),
        Err(why) => {
            let mut st =
                quick_junit::TestCaseStatus::non_success(quick_junit::NonSuccessKind::Failure);
            st.set_message(why.to_string());
            st.set_description(report.summary());
            st
        }
    };
    let mut case = quick_junit::TestCase::new("expected-outcome", status);
    case.set_time(report.wall_time);
    suite.add_test_case(case);
    suite
}

/// The scenarios' verdict stands without the file: say why, go on.
fn write_junit(path: &Path, suites: &quick_junit::Report) {
    let written = suites
        .to_string()
        .map_err(anyhow::Error::from)
        .and_then(|x| Ok(std::fs::write(path, x)?));
    if let Err(e) = written {
        eprintln!(
            "harness: cannot write {}: {}",
            path.display(),
            crate::exit::chain(&e)
        );
    }
}
