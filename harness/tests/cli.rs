//! The `harness` binary's exit codes and output, as CI and operators see them.

use std::path::PathBuf;

use assert_cmd::Command;
use predicates::prelude::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Local-backend runs use this host's real ports (8005, 8004): two at once
/// would (rightly) find the port taken. Tests that run one hold this lock.
static HOST_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn host_ports() -> std::sync::MutexGuard<'static, ()> {
    HOST_PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

fn harness() -> Command {
    let mut cmd = Command::cargo_bin("harness").unwrap();
    cmd.current_dir(root());
    cmd
}

/// A copy of the deployment files with nginx edited by `edit`.
fn tree_with_nginx(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = root();
    for sub in ["proxy", "nginx"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    for f in [
        "proxy/config-ohmygpt-prod.json",
        "proxy/config-ohmygpt-dev.json",
    ] {
        std::fs::copy(r.join(f), dir.path().join(f)).unwrap();
    }
    let nginx = std::fs::read_to_string(r.join("nginx/nginx.conf")).unwrap();
    std::fs::write(dir.path().join("nginx/nginx.conf"), edit(&nginx)).unwrap();
    dir
}

/// The repository's own files agree: lint says go.
#[test]
fn lint_passes_on_the_repository() {
    harness()
        .args(["lint"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("verdict: GO"));
}

/// The classic half change: JSON says 8004, nginx still 8005. Lint says
/// no-go and names both files with their lines and values.
#[test]
fn lint_names_both_sides_of_a_port_mismatch() {
    let tree = tree_with_nginx(|s| s.replace("server goproxy:8004", "server goproxy:8005"));
    harness()
        .args(["lint", "--root"])
        .arg(tree.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("port mismatch"))
        .stdout(predicate::str::contains(
            "config-ohmygpt-prod.json:4 says 8004",
        ))
        .stdout(predicate::str::contains("nginx.conf:").and(predicate::str::contains("says 8005")))
        .stdout(predicate::str::contains("NO-GO"));
}

/// JSON and JUnit reports carry the failure for CI.
#[test]
fn lint_reports_json_and_junit() {
    let tree = tree_with_nginx(|s| s.replace("server goproxy:8004", "server goproxy:8005"));
    let junit = tree.path().join("junit.xml");
    let out = harness()
        .args(["lint", "--report", "json", "--junit"])
        .arg(&junit)
        .arg("--root")
        .arg(tree.path())
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["verdict"], "no-go");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<failure") && xml.contains("lint.ports-agree"),
        "{xml}"
    );
}

/// A scenario file with a bad value is bad input (exit 2), and the message
/// names the file, the field and the value.
#[test]
fn bad_scenario_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "description = \"x\"\n[start]\nport = 8005\n[change]\nport = 0\n[expect]\nverdict = \"go\"\n").unwrap();
    harness()
        .args(["validate", "--scenario"])
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.toml").and(predicate::str::contains("change.port")));
}

/// An operator's tree has no `scenarios/`: `--root DIR validate` takes the
/// built-in default scenario and judges DIR's files (here: one is missing,
/// so bad input naming that file, not the scenario).
#[test]
fn validate_on_an_operator_tree_without_scenarios_judges_its_files() {
    let dir = tempfile::tempdir().unwrap();
    harness()
        .arg("--root")
        .arg(dir.path())
        .args(["validate", "--backend", "local", "--monitor", "1s"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "built-in port-change-8005-to-8004.toml",
        ))
        .stderr(predicate::str::contains("config-ohmygpt-prod.json"))
        .stderr(predicate::str::contains("cannot read scenario").not());
}

/// An explicit --goproxy-config from another tree is not judged beside the
/// dev config of the current directory's repository; the report says so.
#[test]
fn an_explicit_goproxy_config_elsewhere_does_not_pull_in_this_repos_dev_config() {
    let dir = tempfile::tempdir().unwrap();
    let prod = dir.path().join("goproxy.json");
    std::fs::copy(root().join("proxy/config-ohmygpt-prod.json"), &prod).unwrap();
    harness()
        .arg("lint")
        .arg("--goproxy-config")
        .arg(&prod)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("not judged"))
        .stdout(predicate::str::contains("config-ohmygpt-dev.json: valid").not());
}

/// A BOM in a file nginx.conf includes is bad input (exit 2) like one in
/// nginx.conf itself, for lint and validate alike, naming that file.
#[test]
fn a_byte_order_mark_in_an_included_nginx_file_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("nginx/nginx.conf")).unwrap();
    let nginx = dir.path().join("nginx.conf");
    std::fs::write(
        &nginx,
        text.replacen("proxy_buffering off;", "include conf.d/bom.conf;", 1),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        dir.path().join("conf.d/bom.conf"),
        "\u{feff}proxy_buffering off;\n",
    )
    .unwrap();
    for cmd in ["lint", "validate"] {
        harness()
            .arg(cmd)
            .arg("--nginx-conf")
            .arg(&nginx)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains("bom.conf")
                    .and(predicate::str::contains("byte-order mark")),
            );
    }
}

/// A broken goproxy config gives no-go with the reason in the output,
/// before any container restarts.
#[test]
fn validate_refuses_a_broken_config() {
    let scenario = root().join("scenarios/invalid-goproxy-config-string-port.toml");
    harness()
        .args(["validate", "--monitor", "1s", "--scenario"])
        .arg(&scenario)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("lint.goproxy-config-prod"))
        .stdout(predicate::str::contains("port"))
        .stdout(predicate::str::contains("NO-GO"));
}

/// The whole gate on the default scenario, against containers: go.
#[test]
fn validate_default_scenario_is_go() {
    harness()
        .args(["validate", "--monitor", "3s"])
        .timeout(std::time::Duration::from_secs(600))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("verdict: GO"))
        .stdout(predicate::str::contains("post.chat-stream"));
}

/// The whole gate on local processes (host nginx, goproxy binary, mock) on
/// loopback: go.
#[test]
fn validate_on_local_processes_is_go() {
    let _ports = host_ports();
    harness()
        .args(["validate", "--monitor", "2s", "--backend", "local"])
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("local processes in"))
        .stdout(predicate::str::contains("verdict: GO"));
}

/// Where Docker does not answer, `auto` says so plainly and runs the stack
/// as local processes instead.
#[test]
fn without_docker_auto_falls_back_to_local_processes() {
    let _ports = host_ports();
    harness()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["validate", "--monitor", "1s"])
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .code(0)
        .stderr(predicate::str::contains("Docker is not available"))
        .stderr(predicate::str::contains("local processes instead"))
        .stdout(predicate::str::contains("verdict: GO"));
}

/// Asking for containers where Docker does not answer is an error that
/// names the way out.
#[test]
fn containers_without_docker_is_a_usage_error() {
    harness()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["validate", "--backend", "containers"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Docker is not available"));
}
