//! `harness validate` judges the operator's files as written, against what
//! is deployed: a half-done change stops before any container, nginx's own
//! words when it cannot start, a base read from a git ref, and every
//! signal cleaning up. Tests that start containers run under the shared
//! lock: `flock /tmp/heavy.lock cargo test -p harness --test gate_files`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The tests that start a stack run one at a time: parallel stacks on a
/// small machine would blur the timings asserted here.
static STACKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_stack_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    STACKS.lock().unwrap_or_else(|e| e.into_inner())
}

fn harness() -> Command {
    let mut cmd = Command::cargo_bin("harness").unwrap();
    cmd.current_dir(root());
    cmd
}

/// The repository's nginx.conf with `edit` applied, in a temporary directory.
fn nginx_copy(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("nginx/nginx.conf")).unwrap();
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, edit(&text)).unwrap();
    (dir, path)
}

fn line_of(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .unwrap()
        + 1
}

/// A half-done change (JSON 8004, nginx still 8005) is no-go naming both
/// files and lines, before any container starts; JUnit shows the failure,
/// the verdict and the checks that did not run.
#[test]
fn half_done_change_stops_before_any_container() {
    let (dir, nginx) =
        nginx_copy(|s| s.replace("server goproxy:8004;", "server goproxy:8005 max_fails=3;"));
    let junit = dir.path().join("junit.xml");
    let line = line_of(&nginx, "server goproxy:8005");
    let t0 = Instant::now();
    harness()
        .args(["validate", "--monitor", "1s", "--nginx-conf"])
        .arg(&nginx)
        .arg("--junit")
        .arg(&junit)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "config-ohmygpt-prod.json:4 says 8004",
        ))
        .stdout(predicate::str::contains(format!(
            "{}:{line} says 8005",
            nginx.display()
        )))
        .stdout(predicate::str::contains("no container was started"))
        .stdout(predicate::str::contains("pre.stack-up").and(predicate::str::contains("not run")));
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<failure"), "{xml}");
    assert!(xml.contains("name=\"verdict\" value=\"NO-GO\""), "{xml}");
    assert!(xml.contains("<skipped"), "{xml}");
}

/// nginx refusing its config (a typo) is no-go quoting nginx, naming the
/// operator's file and line, well under a minute.
#[test]
fn nginx_typo_is_reported_in_nginx_words_within_seconds() {
    let _one = one_stack_at_a_time();
    let (_dir, nginx) = nginx_copy(|s| s.replace("proxy_buffering off;", "proxy_bufering off;"));
    let line = line_of(&nginx, "proxy_bufering");
    let t0 = Instant::now();
    harness()
        .args([
            "validate",
            "--monitor",
            "1s",
            "--backend",
            "containers",
            "--nginx-conf",
        ])
        .arg(&nginx)
        .timeout(Duration::from_secs(120))
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "unknown directive \"proxy_bufering\"",
        ))
        .stdout(predicate::str::contains(format!(
            "{}:{line}",
            nginx.display()
        )))
        .stdout(predicate::str::contains("NO-GO"));
    assert!(
        t0.elapsed() < Duration::from_secs(45),
        "took {:?}",
        t0.elapsed()
    );
}

/// The same typo in an *included* file: every line said, the live progress
/// on stderr included, names the operator's included file and line, never
/// the flattened in-container nginx.conf or the container's temp JSON.
#[test]
fn nginx_typo_in_an_include_is_named_by_the_operators_file_live_too() {
    let _one = one_stack_at_a_time();
    let (dir, nginx) =
        nginx_copy(|s| s.replacen("proxy_buffering off;", "include conf.d/typo.conf;", 1));
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    let typo = dir.path().join("conf.d/typo.conf");
    std::fs::write(&typo, "# streaming\nproxy_bufering off;\n").unwrap();
    let out = harness()
        .args([
            "validate",
            "--monitor",
            "1s",
            "--backend",
            "containers",
            "--nginx-conf",
        ])
        .arg(&nginx)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let named = format!("{}:2", typo.display());
    for (what, text) in [("summary", &stdout), ("live", &stderr)] {
        assert!(text.contains(&named), "{what} lacks {named}:\n{text}");
        for internal in ["/etc/nginx/nginx.conf:", "/tmp/config.candidate.json"] {
            assert!(!text.contains(internal), "{what} names {internal}:\n{text}");
        }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let ok = std::process::Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// A repository whose previous commit deployed 8005 and whose head moves to 8004.
fn repo_with_history() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = root();
    for f in [
        "proxy/config-ohmygpt-prod.json",
        "proxy/config-ohmygpt-dev.json",
        "nginx/nginx.conf",
        "docker-compose.yml",
        "docker-compose.test.yml",
        "docker/config.test.json",
        "scenarios/port-change-8005-to-8004.toml",
    ] {
        let to = dir.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(r.join(f), &to).unwrap();
    }
    let set_port = |from: &str, to: &str| {
        for f in [
            "proxy/config-ohmygpt-prod.json",
            "proxy/config-ohmygpt-dev.json",
            "nginx/nginx.conf",
        ] {
            let p = dir.path().join(f);
            let text = std::fs::read_to_string(&p).unwrap();
            let text = text
                .replace(&format!("\"port\": {from}"), &format!("\"port\": {to}"))
                .replace(
                    &format!("server goproxy:{from}"),
                    &format!("server goproxy:{to}"),
                );
            std::fs::write(&p, text).unwrap();
        }
    };
    git(dir.path(), &["init", "-q"]);
    set_port("8004", "8005");
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "deployed: 8005"]);
    set_port("8005", "8004");
    git(dir.path(), &["commit", "-qam", "move to 8004"]);
    dir
}

/// `--base <git-ref>`: the deployed files are read at that ref; the switch
/// goes from the base's port to the candidate's.
#[test]
fn base_from_a_git_ref() {
    let _one = one_stack_at_a_time();
    let repo = repo_with_history();
    harness()
        .arg("--root")
        .arg(repo.path())
        .args([
            "validate",
            "--monitor",
            "1s",
            "--backend",
            "containers",
            "--base",
            "HEAD~1",
        ])
        .timeout(Duration::from_secs(300))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("at git ref HEAD~1"))
        .stdout(predicate::str::contains("from goproxy on 8005"))
        .stdout(predicate::str::contains("verdict: GO"));
    harness()
        .arg("--root")
        .arg(repo.path())
        .args(["validate", "--base", "no-such-ref"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no-such-ref"));
}

/// Bad input is exit 2 everywhere: a missing file for lint, a zero monitor.
#[test]
fn bad_input_exits_2() {
    harness()
        .args(["lint", "--nginx-conf", "/nonexistent/nginx.conf"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/nginx.conf"));
    harness()
        .args(["validate", "--monitor", "0s"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("0s watches nothing"));
}

/// Ctrl-C, SIGTERM and SIGHUP in the middle of a run clean up alike:
/// containers, network and run directory are gone, exit 128 + signal.
#[test]
fn sigint_sigterm_and_sighup_remove_the_stack() {
    let _one = one_stack_at_a_time();
    for (sig, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        signal_removes_the_stack(sig, code);
    }
}

/// What a run left in its own temporary directory.
fn run_dirs(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect()
}

fn signal_removes_the_stack(sig: &str, code: i32) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command as StdCommand, Stdio};

    // The run's own TMPDIR, so its run directory is told apart from others'.
    let tmp = tempfile::tempdir().unwrap();
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("harness"))
        .current_dir(root())
        .env("TMPDIR", tmp.path())
        .args(["validate", "--monitor", "120s", "--backend", "containers"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut project = None;
    for line in stderr.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("compose project ").nth(1) {
            project = rest.split_whitespace().next().map(str::to_string);
        }
        if line.contains(".... post-deployment post.monitor") {
            break;
        }
    }
    let project = project.expect("the run names its compose project");
    let drain = std::thread::spawn(move || stderr.map_while(Result::ok).collect::<Vec<_>>());
    let running = |what: &str| {
        let out = StdCommand::new("docker")
            .args([what, "ls", "-q", "--filter"])
            .arg(format!("label=com.docker.compose.project={project}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert!(
        running("container") > 0,
        "the stack should be up before SIG{sig}"
    );
    assert!(
        !run_dirs(tmp.path()).is_empty(),
        "the run directory should exist"
    );

    StdCommand::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let said = drain.join().unwrap().join("\n");

    assert_eq!(status.code(), Some(code), "SIG{sig}: {said}");
    assert!(said.contains("interrupted"), "SIG{sig}: {said}");
    assert_eq!(
        running("container"),
        0,
        "SIG{sig}: containers of {project} left behind"
    );
    assert_eq!(
        running("network"),
        0,
        "SIG{sig}: networks of {project} left behind"
    );
    let left = run_dirs(tmp.path());
    assert!(
        left.is_empty(),
        "SIG{sig}: run directory left behind: {left:?}"
    );
}
