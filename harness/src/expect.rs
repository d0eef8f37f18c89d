//! Whether a run came out as its scenario said it would.

use crate::check::Status;
use crate::report::Report;
use crate::scenario::Scenario;

/// Ok with a one-line summary when the report matches the scenario's
/// `[expect]`; Err saying what differs otherwise.
pub fn matches(scenario: &Scenario, report: &Report) -> Result<String, String> {
    let e = &scenario.expect;
    let mut problems = Vec::new();
    if report.verdict != e.verdict {
        problems.push(format!(
            "verdict {} but expected {}",
            report.verdict.label(),
            e.verdict.label()
        ));
    }
    let first_fail = report.checks.iter().find(|c| c.status == Status::Fail);
    if let Some(phase) = e.failed_phase {
        match first_fail {
            Some(c) if c.phase == phase => {}
            Some(c) => problems.push(format!(
                "first failure {} is in {}, expected in {phase}",
                c.name, c.phase
            )),
            None => problems.push(format!("no check failed; expected a failure in {phase}")),
        }
    }
    if let Some(words) = &e.failure_mentions {
        let found = report
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .any(|c| c.name.contains(words.as_str()) || c.evidence.contains(words.as_str()));
        if !found {
            problems.push(format!("no failing check mentions `{words}`"));
        }
    }
    if let Some(failed) = report.figures.switch_failed_requests {
        if failed > e.max_failed_requests {
            problems.push(format!(
                "{failed} failed requests during the switch, expected at most {}",
                e.max_failed_requests
            ));
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "as expected: {}{}",
            report.verdict.label(),
            first_fail
                .map(|c| format!(" at {} ({})", c.name, c.phase))
                .unwrap_or_default()
        ))
    } else {
        Err(problems.join("; "))
    }
}
