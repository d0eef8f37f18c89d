//! The scenario `validate` and `up` run when `--scenario` is not given.
//!
//! An operator's tree has no `scenarios/`, and `harness --root DIR validate`
//! must still judge the files under DIR: so the default scenario is built
//! into the binary, and a copy under `--root` (this repository's own) is
//! preferred only because it may have been edited on purpose.

use std::path::{Path, PathBuf};

use crate::scenario::{Scenario, ScenarioError};

/// The default scenario's file name, under `<root>/scenarios/`.
const FILE: &str = "port-change-8005-to-8004.toml";

/// The default scenario as shipped with the harness.
const BUILT_IN: &str = include_str!("../../../scenarios/port-change-8005-to-8004.toml");

/// The scenario to run: `explicit` when given, else `<root>/scenarios/`'s
/// copy when it exists, else the built-in one. Says which, unless quiet.
pub(super) fn load(
    explicit: Option<PathBuf>,
    root: &Path,
    quiet: bool,
) -> Result<Scenario, ScenarioError> {
    if let Some(path) = explicit {
        return Scenario::load(&path);
    }
    let on_disk = root.join("scenarios").join(FILE);
    let (scenario, origin) = if on_disk.is_file() {
        (Scenario::load(&on_disk)?, on_disk.display().to_string())
    } else {
        let stem = FILE.trim_end_matches(".toml");
        let label = Path::new("(built-in)").join(FILE);
        (
            Scenario::from_toml(stem, &label, BUILT_IN)?,
            format!("the built-in {FILE} ({} has none)", root.display()),
        )
    };
    if !quiet {
        eprintln!("harness: scenario: {origin}");
    }
    Ok(scenario)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_without_scenarios_gets_the_built_in_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = load(None, dir.path(), true).expect("built-in scenario");
        assert_eq!(s.name, "port-change-8005-to-8004");
    }

    #[test]
    fn an_explicit_scenario_that_is_missing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(Some(dir.path().join("nope.toml")), dir.path(), true).is_err());
    }
}
