//! Whether a run came out as its scenario said it would.

use crate::check::Status;
use crate::report::Report;
use crate::scenario::Scenario;

/// What differs between a run and its scenario's `[expect]`, one item
/// each (the verdict, the first failure's phase, the words it must name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Unexpected(pub Vec<String>);

/// Ok with a one-line summary when the report matches the scenario's
/// `[expect]`; Err saying what differs otherwise.
pub fn matches(scenario: &Scenario, report: &Report) -> Result<String, Unexpected> {
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
    match (e.failed_phase, first_fail) {
        (Some(phase), Some(c)) if c.phase != phase => problems.push(format!(
            "first failure {} is in {}, expected in {phase}",
            c.name, c.phase
        )),
        (Some(phase), None) => {
            problems.push(format!("no check failed; expected a failure in {phase}"))
        }
        // No failure expected (a go, or a rollback on demand): none may happen,
        // failed requests during the switch included (deploy.switch-under-load
        // fails above the scenario's max_failed_requests).
        (None, Some(c)) => problems.push(format!(
            "{} failed ({}), expected no failure",
            c.name,
            crate::check::first_line(&c.evidence)
        )),
        _ => {}
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
    if problems.is_empty() {
        Ok(format!(
            "as expected: {}{}",
            report.verdict.label(),
            first_fail
                .map(|c| format!(" at {} ({})", c.name, c.phase))
                .unwrap_or_default()
        ))
    } else {
        Err(Unexpected(problems))
    }
}
