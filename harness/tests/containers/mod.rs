//! What the container tests share: the seeded images (never pulled), a
//! per-run Docker network removed on drop, a quick healthcheck, and exec.
//!
//! testcontainers has no network aliases (upstream issue #252) and names
//! are global to the daemon, so each service container starts on Docker's
//! default bridge and then joins the run's network under its service name
//! with `docker network connect --alias` (what compose does for its
//! services). nginx, which must resolve `goproxy` when it loads its config,
//! starts on that network afterwards.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use testcontainers::core::{CmdWaitFor, ExecCommand, WaitFor};
use testcontainers::{ContainerAsync, GenericImage, Healthcheck, ImageExt};

/// The images `scripts/seed-images.sh` builds, as (name, tag).
pub const GOPROXY: (&str, &str) = ("goproxy", "test");
pub const NGINX: (&str, &str) = ("goproxy-nginx", "test");
pub const MOCK: (&str, &str) = ("goproxy-mock-upstream", "test");

/// How long a container may take to report healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

/// Fails (never skips) when Docker or a seeded image is missing: a locally
/// built tag must not be looked for in a registry.
pub fn require_images(images: &[(&str, &str)]) {
    let refs: Vec<String> = images.iter().map(|(n, t)| format!("{n}:{t}")).collect();
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}"])
        .args(&refs)
        .output()
        .expect("cannot run `docker`: is Docker installed?");
    assert!(
        out.status.success(),
        "the test images are missing ({}): run scripts/seed-images.sh first\n{}",
        refs.join(", "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A seeded image that counts as started once Docker calls it healthy,
/// checked every second (the images' own interval is 10 s).
pub fn healthy_image(
    image: (&str, &str),
    check: &[&str],
) -> testcontainers::ContainerRequest<GenericImage> {
    GenericImage::new(image.0, image.1)
        .with_wait_for(WaitFor::healthcheck())
        .with_health_check(
            Healthcheck::cmd(check)
                .with_interval(Duration::from_secs(1))
                .with_timeout(Duration::from_secs(3))
                .with_retries(30),
        )
        .with_startup_timeout(START_TIMEOUT)
}

/// Exit code, stdout and stderr of a command run in a container.
pub async fn exec(c: &ContainerAsync<GenericImage>, cmd: &[&str]) -> (i64, String, String) {
    let mut res = c
        .exec(ExecCommand::new(cmd.iter().copied()).with_cmd_ready_condition(CmdWaitFor::exit()))
        .await
        .unwrap_or_else(|e| panic!("exec {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&res.stdout_to_vec().await.unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&res.stderr_to_vec().await.unwrap()).into_owned();
    let code = res.exit_code().await.unwrap().expect("exited");
    (code, stdout, stderr)
}

/// A user-defined Docker network for one run, removed on drop.
#[derive(Debug)]
pub struct TestNetwork {
    pub name: String,
}

impl TestNetwork {
    pub fn create() -> Self {
        let name = format!("harness-tc-{:08x}", rand::random::<u32>());
        docker(&["network", "create", &name]).expect("docker network create");
        Self { name }
    }

    /// Joins container `id` to this network, resolvable as `alias`.
    pub fn connect(&self, id: &str, alias: &str) {
        docker(&["network", "connect", "--alias", alias, &self.name, id])
            .unwrap_or_else(|e| panic!("connect {id} as {alias}: {e}"));
    }
}

impl Drop for TestNetwork {
    /// Containers are normally gone by now (declared after the network,
    /// they drop first), but a slow or failed removal must not leave the
    /// network behind: whatever is still attached is disconnected by force,
    /// and the removal is retried until a deadline.
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attached = docker(&[
                "network",
                "inspect",
                "-f",
                "{{range $id, $c := .Containers}}{{$id}} {{end}}",
                &self.name,
            ]);
            let Ok(attached) = attached else {
                return; // already gone
            };
            for id in attached.split_whitespace() {
                let _ = docker(&["network", "disconnect", "-f", &self.name, id]);
            }
            match docker(&["network", "rm", &self.name]) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    eprintln!("network {} left behind: {e}", self.name);
                    return;
                }
                // Bounded by the deadline; Drop cannot await.
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
