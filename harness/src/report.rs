//! The gate's verdict and its three renderings: a summary table for a
//! human, JSON for scripts, JUnit XML for CI.
//!
//! The mapping from verdict to process exit code lives here and only here
//! ([`Verdict::exit_code`]), so CI and the docs can rely on one table.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::check::{first_line, CheckResult, Status};

/// The gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every check passed: deploy.
    Go,
    /// A check failed before anything changed, or the change was not
    /// attempted: do not deploy; the old deployment is untouched.
    NoGo,
    /// A check failed after the change and the rollback restored the old
    /// deployment, which passed its checks again.
    RolledBack,
    /// A check failed and the rollback did not restore service: an operator
    /// must act now.
    RollbackFailed,
}

impl Verdict {
    /// The process exit code for this verdict. `2` is reserved for bad input
    /// (flags, scenario files) and an unusable environment (no Docker).
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Go => 0,
            Verdict::NoGo => 1,
            Verdict::RolledBack => 3,
            Verdict::RollbackFailed => 4,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Go => "GO",
            Verdict::NoGo => "NO-GO",
            Verdict::RolledBack => "NO-GO (rolled back, service restored)",
            Verdict::RollbackFailed => "NO-GO (ROLLBACK FAILED: act now)",
        }
    }
}

/// Exit code for invalid input or an unusable environment.
pub const EXIT_USAGE: i32 = 2;

/// Figures measured during a run, reported beside the checks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Requests sent by the steady client during the switch.
    pub switch_requests: Option<u64>,
    /// Requests that failed (connection error or 5xx) during the switch.
    pub switch_failed_requests: Option<u64>,
    /// Requests slower than the slow threshold during the switch.
    pub switch_slow_requests: Option<u64>,
    /// Longest time the steady client saw no successful answer, in ms.
    pub switch_longest_gap_ms: Option<f64>,
    /// SSE streams open across the switch, and how many completed.
    pub switch_streams_opened: Option<u64>,
    pub switch_streams_completed: Option<u64>,
    /// Wall time of the deployment step (restart + reload), in ms.
    pub switch_duration_ms: Option<f64>,
    /// Wall time of the rollback, in ms.
    pub rollback_duration_ms: Option<f64>,
}

/// Everything a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub verdict: Verdict,
    pub exit_code: i32,
    /// Why the verdict is what it is, in one sentence.
    pub reason: String,
    pub checks: Vec<CheckResult>,
    pub figures: Figures,
    #[serde(rename = "wall_time_ms", serialize_with = "crate::check::ser_ms")]
    pub wall_time: Duration,
}

impl Report {
    pub fn new(
        scenario: impl Into<String>,
        verdict: Verdict,
        reason: impl Into<String>,
        checks: Vec<CheckResult>,
        figures: Figures,
        wall_time: Duration,
    ) -> Self {
        Self {
            scenario: scenario.into(),
            verdict,
            exit_code: verdict.exit_code(),
            reason: reason.into(),
            checks,
            figures,
            wall_time,
        }
    }

    /// The summary table printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let name_w = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(out, "\nscenario: {}", self.scenario);
        let _ = writeln!(
            out,
            "{:<6} {:<15} {:<name_w$} {:>8}  evidence",
            "status", "phase", "check", "time"
        );
        for c in &self.checks {
            let _ = writeln!(
                out,
                "{:<6} {:<15} {:<name_w$} {:>7.1}s  {}",
                c.status.to_string(),
                c.phase.to_string(),
                c.name,
                c.duration.as_secs_f64(),
                first_line(&c.evidence)
            );
            // A failure names every file and line at fault, one a line:
            // all of them, under its row (the JSON report has them too).
            if c.status == Status::Fail {
                for more in c.evidence.lines().skip(1) {
                    let _ = writeln!(out, "{:>w$}{more}", "", w = 34 + name_w);
                }
            }
        }
        let f = &self.figures;
        if let (Some(sent), Some(failed)) = (f.switch_requests, f.switch_failed_requests) {
            let _ = writeln!(
                out,
                "switch: {failed} failed of {sent} requests, {} slow, longest gap {:.0} ms, \
                 streams {}/{} completed, switch took {:.0} ms",
                f.switch_slow_requests.unwrap_or(0),
                f.switch_longest_gap_ms.unwrap_or(0.0),
                f.switch_streams_completed.unwrap_or(0),
                f.switch_streams_opened.unwrap_or(0),
                f.switch_duration_ms.unwrap_or(0.0),
            );
        }
        if let Some(ms) = f.rollback_duration_ms {
            let _ = writeln!(out, "rollback: took {ms:.0} ms");
        }
        let _ = writeln!(
            out,
            "verdict: {} (exit {}) in {:.1}s: {}",
            self.verdict.label(),
            self.exit_code,
            self.wall_time.as_secs_f64(),
            self.reason
        );
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// JUnit XML: one test suite per run, one test case per check.
    pub fn to_junit(&self) -> String {
        use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
        let mut report = quick_junit::Report::new("harness");
        let mut suite = TestSuite::new(self.scenario.clone());
        // The verdict belongs to the suite: CI shows it beside the cases.
        suite.add_property(("verdict", self.verdict.label()));
        suite.add_property(("exit-code", self.exit_code.to_string().as_str()));
        suite.add_property(("reason", self.reason.as_str()));
        let failed = self.checks.iter().any(|c| c.status == Status::Fail);
        if self.verdict != Verdict::Go && !failed {
            // A no-go before any check ran (bad files, a stack that could
            // not be prepared) is still a failure CI must see.
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(first_line(&self.reason).to_string());
            s.set_description(self.reason.clone());
            let mut case = TestCase::new("verdict", s);
            case.set_classname(self.scenario.clone());
            suite.add_test_case(case);
        }
        for c in &self.checks {
            let status = match c.status {
                Status::Pass => TestCaseStatus::success(),
                Status::Fail => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(first_line(&c.evidence).to_string());
                    s.set_description(c.evidence.clone());
                    s
                }
                Status::Skip => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(c.evidence.clone());
                    s
                }
            };
            let mut case = TestCase::new(c.name.clone(), status);
            case.set_classname(format!("{}.{}", self.scenario, c.phase));
            case.set_time(c.duration);
            if c.status == Status::Pass {
                case.set_system_out(c.evidence.clone());
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
        report
            .to_string()
            .expect("a JUnit report of plain strings always serializes")
    }

    /// Writes the JUnit XML, saying which file could not be written on error.
    pub fn write_junit(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_junit()).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot write JUnit report {}: {e}", path.display()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Phase;

    fn sample() -> Report {
        let checks = vec![
            CheckResult {
                name: "lint.ports-agree".into(),
                phase: Phase::Lint,
                status: Status::Pass,
                evidence: "8004 everywhere".into(),
                duration: Duration::from_millis(3),
            },
            CheckResult {
                name: "pre.nginx-t".into(),
                phase: Phase::PreDeployment,
                status: Status::Fail,
                evidence: "nginx: [emerg] unexpected \"}\" in nginx.conf:12".into(),
                duration: Duration::from_millis(40),
            },
        ];
        Report::new(
            "unit",
            Verdict::NoGo,
            "nginx -t failed",
            checks,
            Figures::default(),
            Duration::from_secs(1),
        )
    }

    /// Each verdict has its own exit code, so CI can tell them apart.
    #[test]
    fn verdicts_have_distinct_exit_codes() {
        let codes = [
            Verdict::Go,
            Verdict::NoGo,
            Verdict::RolledBack,
            Verdict::RollbackFailed,
        ]
        .map(Verdict::exit_code);
        let mut sorted = codes.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
        assert!(!codes.contains(&EXIT_USAGE));
        assert_eq!(Verdict::Go.exit_code(), 0);
    }

    /// The JUnit output carries the failing check and its evidence.
    #[test]
    fn junit_names_the_failure() {
        let xml = sample().to_junit();
        assert!(xml.contains("<failure"), "{xml}");
        assert!(xml.contains("pre.nginx-t"), "{xml}");
        assert!(xml.contains("unexpected"), "{xml}");
    }

    /// The JSON report round-trips the verdict and exit code.
    #[test]
    fn json_has_verdict_and_exit_code() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(v["verdict"], "no-go");
        assert_eq!(v["exit_code"], 1);
        assert_eq!(v["checks"][1]["status"], "fail");
    }
}
