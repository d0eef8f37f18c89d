//! The switch and the gate, read from `harness validate --report json`
//! (real nginx and goproxy containers; needs the images from
//! `scripts/seed-images.sh`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::report::Figures;

/// Bound on one `harness validate` run.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Run the default scenario `gate_runs` times and the rollback scenario
/// `rollback_runs` times; push their figures. Failures are logged and
/// counted, never fatal, so the proxy figures are still written.
pub fn run(bin_dir: &Path, gate_runs: usize, rollback_runs: usize, f: &mut Figures) {
    let harness = bin_dir.join("harness");
    for i in 0..gate_runs {
        gate_run(&harness, i, f);
    }
    for i in 0..rollback_runs {
        rollback_run(&harness, i, f);
    }
}

/// Run `i` of the default scenario: the switch's figures and the verdict.
fn gate_run(harness: &Path, i: usize, f: &mut Figures) {
    match validate(harness, &[]) {
        Ok((report, code)) => {
            let fig = &report["figures"];
            push(
                f,
                "gate/switch_failed_requests",
                &fig["switch_failed_requests"],
            );
            push(
                f,
                "gate/switch_longest_gap_ms",
                &fig["switch_longest_gap_ms"],
            );
            push(f, "gate/switch_duration_ms", &fig["switch_duration_ms"]);
            push(f, "gate/switch_requests", &fig["switch_requests"]);
            push(f, "gate/wall_time_ms", &report["wall_time_ms"]);
            f.push("gate/go", f64::from(u8::from(code == 0)));
            crate::log(format!(
                "gate run {}: exit {code}, verdict {}, failed {}, longest gap {} ms, wall {} ms",
                i + 1,
                report["verdict"],
                fig["switch_failed_requests"],
                fig["switch_longest_gap_ms"],
                report["wall_time_ms"]
            ));
        }
        Err(e) => {
            f.push("gate/go", 0.0);
            crate::log(format!("gate run {}: {e:#}", i + 1));
        }
    }
}

/// Run `i` of the rollback scenario: how long the rollback took.
fn rollback_run(harness: &Path, i: usize, f: &mut Figures) {
    match validate(
        harness,
        &["--scenario", "scenarios/rollback-on-demand.toml"],
    ) {
        Ok((report, code)) => {
            let fig = &report["figures"];
            push(
                f,
                "rollback/rollback_duration_ms",
                &fig["rollback_duration_ms"],
            );
            push(
                f,
                "rollback/switch_failed_requests",
                &fig["switch_failed_requests"],
            );
            push(f, "rollback/wall_time_ms", &report["wall_time_ms"]);
            crate::log(format!(
                "rollback run {}: exit {code}, verdict {}, rollback {} ms, wall {} ms",
                i + 1,
                report["verdict"],
                fig["rollback_duration_ms"],
                report["wall_time_ms"]
            ));
        }
        Err(e) => crate::log(format!("rollback run {}: {e:#}", i + 1)),
    }
}

fn push(f: &mut Figures, key: &str, v: &Value) {
    if let Some(x) = v.as_f64() {
        f.push(key, x);
    }
}

/// One `harness validate --monitor 2s --report json [extra]`; its JSON
/// report and exit code. Killed after [`RUN_TIMEOUT`].
fn validate(harness: &Path, extra: &[&str]) -> anyhow::Result<(Value, i32)> {
    let out_path = std::env::temp_dir().join(format!("bench-harness-{}.json", std::process::id()));
    let out = std::fs::File::create(&out_path)?;
    let mut cmd = Command::new(harness);
    cmd.args(["validate", "--monitor", "2s", "--report", "json"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", harness.display()))?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            // SIGINT lets the harness remove its containers.
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
            anyhow::bail!("harness validate took over {RUN_TIMEOUT:?}; stopped");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&out_path)?;
    let _ = std::fs::remove_file(&out_path);
    let report: Value = serde_json::from_str(text.trim()).map_err(|e| {
        anyhow::anyhow!(
            "harness exited {status} without a JSON report ({e}): {}",
            text.chars().take(300).collect::<String>()
        )
    })?;
    Ok((report, status.code().unwrap_or(-1)))
}
