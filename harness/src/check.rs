//! The unit of the gate: a named check with a verdict, its evidence and its time.
//!
//! Every step of the runbook (lint, pre-deployment, deployment,
//! post-deployment, rollback) becomes one or more [`CheckResult`]s. They are
//! printed as they finish (progress for a human at a terminal) and collected
//! into a [`crate::report::Report`] for the summary, JSON and JUnit outputs.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Where in the runbook a check belongs. The order is the order of the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Static checks of the files, no containers.
    Lint,
    /// Checks against the running old deployment before anything changes.
    PreDeployment,
    /// The rolling update itself, measured under load.
    Deployment,
    /// Checks of the new deployment.
    PostDeployment,
    /// Restoring the backups and re-checking the old deployment.
    Rollback,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Lint => "lint",
            Phase::PreDeployment => "pre-deployment",
            Phase::Deployment => "deployment",
            Phase::PostDeployment => "post-deployment",
            Phase::Rollback => "rollback",
        })
    }
}

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Not run because an earlier check made it meaningless; the evidence says which.
    Skip,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        })
    }
}

/// One finished check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Stable identifier, e.g. `post.listening-port`; used in JSON and JUnit.
    pub name: String,
    pub phase: Phase,
    pub status: Status,
    /// What was seen: the data an operator needs to believe the verdict.
    pub evidence: String,
    #[serde(serialize_with = "ser_ms", rename = "duration_ms")]
    pub duration: Duration,
}

/// Serializes a duration as milliseconds (`*_ms` fields of the JSON report).
pub(crate) fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

impl CheckResult {
    /// A passed check that took no time (a fact recorded, not a probe run).
    pub fn pass(phase: Phase, name: &str, evidence: String) -> Self {
        Self {
            name: name.to_string(),
            phase,
            status: Status::Pass,
            evidence,
            duration: std::time::Duration::ZERO,
        }
    }

    pub fn passed(&self) -> bool {
        self.status == Status::Pass
    }
}

/// Collects results and prints one line per check as it finishes.
#[derive(Debug, Default)]
pub struct Checks {
    results: Vec<CheckResult>,
    quiet: bool,
    say: Option<Say>,
}

/// Puts a result's evidence in the operator's terms (the gate's namer),
/// before it is printed live or kept: one wording everywhere.
pub struct Say(pub Box<SayFn>);

/// The rewrite [`Say`] applies: evidence and its phase in, evidence out.
pub type SayFn = dyn Fn(&str, Phase) -> String + Send + Sync;

impl std::fmt::Debug for Say {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Say(..)")
    }
}

impl Checks {
    pub fn new(quiet: bool) -> Self {
        Self {
            results: Vec::new(),
            quiet,
            say: None,
        }
    }

    /// From now on every result's evidence goes through `say` first.
    pub fn set_say(&mut self, say: Say) {
        self.say = Some(say);
    }

    /// Runs `body`, times it, records and prints the result. Returns
    /// whether it passed. A body's error becomes the failed check's
    /// evidence through its message (a typed error reads whole on its own).
    pub async fn run<F, E>(&mut self, phase: Phase, name: &str, body: F) -> bool
    where
        F: Future<Output = Result<String, E>>,
        E: std::fmt::Display,
    {
        let started = Instant::now();
        if !self.quiet {
            // Long checks (a monitoring window, a switch under load) would
            // otherwise look like a hang; say what is running.
            eprintln!("  .... {phase:<15} {name}");
        }
        let outcome = body.await;
        let duration = started.elapsed();
        let (status, evidence) = match outcome {
            Ok(e) => (Status::Pass, e),
            Err(e) => (Status::Fail, e.to_string()),
        };
        self.push(CheckResult {
            name: name.to_string(),
            phase,
            status,
            evidence,
            duration,
        })
    }

    /// Records a check that was not run, with the reason.
    pub fn skip(&mut self, phase: Phase, name: &str, why: &str) {
        self.push(CheckResult {
            name: name.to_string(),
            phase,
            status: Status::Skip,
            evidence: why.to_string(),
            duration: Duration::ZERO,
        });
    }

    /// Records a failure that happened outside a check body.
    pub fn push_fail(&mut self, phase: Phase, name: &str, evidence: impl std::fmt::Display) {
        self.push(CheckResult {
            name: name.to_string(),
            phase,
            status: Status::Fail,
            evidence: evidence.to_string(),
            duration: Duration::ZERO,
        });
    }

    /// Records a finished result, printing it; returns whether it passed.
    pub fn push(&mut self, mut result: CheckResult) -> bool {
        if let Some(Say(say)) = &self.say {
            result.evidence = say(&result.evidence, result.phase);
        }
        if !self.quiet {
            eprintln!(
                "  {} {:<15} {} ({:.1}s) {}",
                result.status,
                result.phase,
                result.name,
                result.duration.as_secs_f64(),
                first_line(&result.evidence)
            );
        }
        let passed = result.passed();
        self.results.push(result);
        passed
    }

    pub fn results(&self) -> &[CheckResult] {
        &self.results
    }

    pub fn into_results(self) -> Vec<CheckResult> {
        self.results
    }

    pub fn all_passed(&self) -> bool {
        self.results.iter().all(|r| r.status != Status::Fail)
    }

    pub fn failed(&self) -> impl Iterator<Item = &CheckResult> {
        self.results.iter().filter(|r| r.status == Status::Fail)
    }
}

pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failing body is recorded as a failure with its evidence, and
    /// `all_passed` turns false.
    #[tokio::test]
    async fn failures_are_recorded_with_evidence() {
        let mut checks = Checks::new(true);
        assert!(
            checks
                .run(Phase::Lint, "ok", async { Ok::<_, String>("fine".into()) })
                .await
        );
        assert!(
            !checks
                .run(Phase::Lint, "bad", async {
                    Err::<String, _>("port 8005 != 8004")
                })
                .await
        );
        assert!(!checks.all_passed());
        let failed: Vec<_> = checks.failed().map(|r| r.name.as_str()).collect();
        assert_eq!(failed, ["bad"]);
        assert_eq!(checks.results()[1].evidence, "port 8005 != 8004");
    }
}
