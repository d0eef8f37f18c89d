//! Acceptance: `harness validate` on real-world operator trees whose lint
//! says no-go, or whose files cannot be used: it must stop before any
//! container starts, with the same words lint would say. Run under
//! `flock /tmp/heavy.lock` like every test of the gate's CLI (a defect here
//! would start the stack).

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/realworld")
        .join(case)
}

/// `validate` on the case's goproxy JSON, nginx.conf and compose file;
/// the scenario is this repository's default one. Returns (exit, output).
fn validate(case: &str, json: &Path) -> (i32, String) {
    validate_with(case, json, &[])
}

fn validate_with(case: &str, json: &Path, extra: &[&str]) -> (i32, String) {
    let dir = fixture(case);
    let out = Command::cargo_bin("harness")
        .unwrap()
        .current_dir(workspace())
        .args(["validate", "--monitor", "1s", "--goproxy-config"])
        .arg(json)
        .arg("--nginx-conf")
        .arg(dir.join("nginx/nginx.conf"))
        .arg("--compose")
        .arg(dir.join("docker-compose.yml"))
        .args(extra)
        // A run that gets past lint would take minutes: fail fast instead.
        .timeout(Duration::from_secs(90))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The stack never came up: `pre.stack-up` appears at most as skipped.
fn assert_no_stack(out: &str) {
    let ran: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("pre.stack-up") && !l.trim_start().starts_with("SKIP"))
        .collect();
    assert!(ran.is_empty(), "a stack was started: {ran:?}\n{out}");
    assert!(
        out.contains("no container was started") || !out.contains("NO-GO"),
        "{out}"
    );
}

/// A half-done change in an included nginx file (`upstream llm_backend`
/// in conf.d/): no-go before any container, naming both files and lines.
#[test]
fn validate_half_done_change_stops_before_any_container() {
    let case = "n02_confd_glob_absolute_halfdone";
    let (code, out) = validate(case, &fixture(case).join("goproxy.json"));
    assert_eq!(code, 1, "{out}");
    for want in [
        "goproxy.json:3 says 8004",
        "nginx/conf.d/10-upstreams.conf:3 says 8005",
        "NO-GO",
    ] {
        assert!(out.contains(want), "expected {want:?} in:\n{out}");
    }
    assert_no_stack(&out);
}

/// A goproxy JSON that is not there is bad input (exit 2), named.
#[test]
fn validate_missing_goproxy_config_is_bad_input() {
    let case = "n01_comments_quotes_braces";
    let missing = fixture(case).join("no-such-goproxy.json");
    let (code, out) = validate(case, &missing);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no-such-goproxy.json"), "{out}");
    assert_no_stack(&out);
}

/// A half-done change in the compose file (`expose: ["8005/tcp"]`) and one
/// behind a renamed service (`--service llm-proxy`): validate stops on the
/// same lint words, before any container.
#[test]
fn validate_stops_on_compose_and_renamed_service_half_done() {
    for (case, extra, want) in [
        (
            "c02_expose_tcp_halfdone",
            &[][..],
            "docker-compose.yml:4 says 8005",
        ),
        (
            "c16_renamed_service_halfdone",
            &["--service", "llm-proxy"][..],
            "nginx/nginx.conf:6 says 8005",
        ),
    ] {
        let (code, out) = validate_with(case, &fixture(case).join("goproxy.json"), extra);
        assert_eq!(code, 1, "{case}: {out}");
        assert!(out.contains(want), "{case}: expected {want:?} in:\n{out}");
        assert!(out.contains("goproxy.json:3 says 8004"), "{case}: {out}");
        assert_no_stack(&out);
    }
}

/// A goproxy JSON starting with a byte-order mark is bad input (exit 2),
/// named as such, before any container.
#[test]
fn validate_bom_json_is_bad_input() {
    let case = "j05_bom_json";
    let (code, out) = validate(case, &fixture(case).join("goproxy.json"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("goproxy.json"), "{out}");
    assert!(out.contains("byte-order mark"), "{out}");
    assert_no_stack(&out);
}
