//! The goproxy image as the deployment runs it: the operators' JSON config
//! mounted read-only, its `"port"` deciding where goproxy listens, and
//! `goproxy --check-config` inside the image as the runbook's pre-check.
//!
//! Started with testcontainers from the seeded `goproxy:test` (never
//! pulled); fails, never skips, without Docker or the image.

mod containers;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use containers::{exec, healthy_image, repo_root, require_images, GOPROXY};
use serde_json::Value;
use testcontainers::core::{AccessMode, IntoContainerPort, Mount};
use testcontainers::runners::AsyncRunner;
use testcontainers::ImageExt;

/// A port the image does not EXPOSE, so only the config can have chosen it.
const CONFIG_PORT: u16 = 8123;

/// The repository's test config with `"port"` set to `port`.
fn config_with_port(port: Value) -> String {
    let text = std::fs::read_to_string(repo_root().join("docker/config.test.json")).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    config["port"] = port;
    serde_json::to_string_pretty(&config).unwrap()
}

/// A directory the image's unprivileged user can read: `config.json`
/// (good, on CONFIG_PORT) and `bad.json` (the port as a string).
fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    write("config.json", config_with_port(CONFIG_PORT.into()));
    write("bad.json", config_with_port("8004".into()));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn read_only(host: &Path, inside: &str) -> Mount {
    Mount::bind_mount(host.to_string_lossy(), inside).with_access_mode(AccessMode::ReadOnly)
}

/// With its config mounted read-only, the image listens on the config's
/// port (not the 8004 it EXPOSEs), answers /health there, cannot write its
/// config, and its `--check-config` refuses a bad file naming the field.
#[tokio::test]
async fn image_runs_the_mounted_config_and_checks_candidates() {
    require_images(&[GOPROXY]);
    let dir = config_dir();
    let goproxy = healthy_image(GOPROXY, &["goproxy", "healthcheck"])
        .with_mount(read_only(dir.path(), "/app"))
        .with_env_var("PROXY_API_KEY", "sk-trollllm-test-key")
        .with_env_var("OHMYGPT_API_KEY", "sk-upstream-test-key")
        .with_mapped_port(0, CONFIG_PORT.tcp())
        .start()
        .await
        .expect("goproxy container");

    // Listening where the config says, and nowhere else.
    let ports = harness::docker::listening_ports(goproxy.id())
        .await
        .unwrap();
    assert_eq!(ports, [CONFIG_PORT], "goproxy's listening ports");

    // /health answers on the published config port.
    let host_port = goproxy.get_host_port_ipv4(CONFIG_PORT.tcp()).await.unwrap();
    let health = reqwest::get(format!("http://127.0.0.1:{host_port}/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "GET /health on the config's port");

    // The mount is read-only: goproxy (or an intruder) cannot rewrite it.
    let (code, _, stderr) = exec(&goproxy, &["sh", "-c", "echo {} > /app/config.json"]).await;
    assert_ne!(code, 0, "the config mount is writable");
    assert!(stderr.contains("Read-only file system"), "{stderr}");

    // The runbook's pre-check inside the image: the good file passes...
    let (code, _, stderr) =
        exec(&goproxy, &["goproxy", "--check-config", "/app/config.json"]).await;
    assert_eq!(
        code, 0,
        "--check-config refused the running config: {stderr}"
    );

    // ...and a bad one is refused with the file, the field and the value.
    let (code, stdout, stderr) =
        exec(&goproxy, &["goproxy", "--check-config", "/app/bad.json"]).await;
    let said = format!("{stdout}{stderr}");
    assert_eq!(code, 2, "--check-config accepted a string port: {said}");
    assert!(
        said.contains("/app/bad.json") && said.contains("port = \"8004\""),
        "the refusal must name the file, field and value: {said}"
    );
}
