//! Helpers for the real-world lint acceptance tests: run `harness lint` on
//! a fixture tree and assert on what it said.
#![allow(dead_code)] // each test binary uses part of it

use std::path::PathBuf;

use assert_cmd::Command;

pub fn case_dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/realworld")
        .join(case)
}

/// What one lint run said.
pub struct Said {
    pub code: i32,
    pub out: String,
}

impl Said {
    pub fn has(&self, want: &str) -> &Self {
        assert!(
            self.out.contains(want),
            "expected {want:?} in the output (exit {}):\n{}",
            self.code,
            self.out
        );
        self
    }

    pub fn lacks(&self, unwanted: &str) -> &Self {
        assert!(
            !self.out.contains(unwanted),
            "did not expect {unwanted:?} in the output (exit {}):\n{}",
            self.code,
            self.out
        );
        self
    }

    pub fn code(&self, want: i32) -> &Self {
        assert_eq!(self.code, want, "exit code; output:\n{}", self.out);
        self
    }

    /// GO: exit 0 and the verdict line.
    pub fn go(&self) -> &Self {
        self.code(0).has("verdict: GO")
    }

    /// NO-GO: exit 1 and the verdict line.
    pub fn no_go(&self) -> &Self {
        self.code(1).has("NO-GO")
    }
}

/// `harness lint --root <case>` plus `extra`, stdout and stderr together.
pub fn run(case: &str, extra: &[&str]) -> Said {
    let dir = case_dir(case);
    let out = Command::cargo_bin("harness")
        .unwrap()
        .current_dir(&dir)
        .arg("lint")
        .arg("--root")
        .arg(&dir)
        .args(extra)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    Said {
        code: out.status.code().unwrap_or(-1),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The common operator layout of these cases: `goproxy.json`,
/// `nginx/nginx.conf`, compose files found under the case's directory.
pub fn lint(case: &str) -> Said {
    lint_with(case, &[])
}

pub fn lint_with(case: &str, extra: &[&str]) -> Said {
    let dir = case_dir(case);
    let json = dir.join("goproxy.json");
    let nginx = dir.join("nginx/nginx.conf");
    let mut args = vec![
        "--goproxy-config".to_string(),
        json.display().to_string(),
        "--nginx-conf".to_string(),
        nginx.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(case, &args)
}
