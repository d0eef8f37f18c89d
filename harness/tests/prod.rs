//! `harness check` and `harness deploy` on a production-like project: the
//! repository's `docker-compose.yml` with the test override (mock upstream,
//! a throwaway certificate), started as an operator would (`.env` beside
//! the compose file), under a unique project name that a guard takes down.
//!
//! Run under the shared lock: `flock /tmp/heavy.lock cargo test -p harness --test prod`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use harness::compose::ComposeStack;
use harness::stack::HOSTNAME;
use harness::traffic::{self, Target};

const KEY: &str = "sk-trollllm-prod-test-key";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// goproxy's test config (upstreams on the mock) at `port`, plus `extra` keys.
fn goproxy_json(port: u16, extra: &[(&str, serde_json::Value)]) -> String {
    let text = std::fs::read_to_string(repo().join("docker/config.test.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["port"] = port.into();
    for (k, val) in extra {
        v[*k] = val.clone();
    }
    serde_json::to_string_pretty(&v).unwrap()
}

/// The repository's nginx.conf with goproxy's upstream on `port`.
fn nginx_conf(port: u16) -> String {
    std::fs::read_to_string(repo().join("nginx/nginx.conf"))
        .unwrap()
        .replace("server goproxy:8004;", &format!("server goproxy:{port};"))
}

/// nginx.conf with both instances in goproxy's upstream.
fn nginx_conf_multi(port: u16, second: u16) -> String {
    nginx_conf(port).replace(
        &format!("server goproxy:{port};"),
        &format!("server goproxy:{port};\n        server goproxy-b:{second};"),
    )
}

/// A self-signed certificate for the host, valid now or expired.
fn cert(expired: bool) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec![HOSTNAME.to_string()]).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2024, 4, 1);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A running production-like project in its own directory.
struct Project {
    // Fields drop in order: the guard takes the project down while its
    // compose files (in `dir`) still exist.
    compose: ComposeStack,
    dir: tempfile::TempDir,
    https_port: u16,
    mock_port: u16,
    /// With goproxy-b (`docker-compose.multi.yml`).
    multi: bool,
}

impl Project {
    /// Lays out the project (compose files, goproxy's config, nginx.conf,
    /// certificates, `.env`) and starts it, until healthy.
    async fn start(port: u16, expired_cert: bool) -> Project {
        Self::start_with(port, expired_cert, None).await
    }

    /// As [`Project::start`], with a second instance goproxy-b on `second`
    /// behind the same upstream when given.
    async fn start_with(port: u16, expired_cert: bool, second: Option<u16>) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["docker-compose.yml", "docker-compose.test.yml"] {
            std::fs::copy(repo().join(f), d.join(f)).unwrap();
        }
        for sub in ["proxy", "nginx", "letsencrypt/live/chat.trollllm.xyz"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let config = d.join("proxy/config-ohmygpt-prod.json");
        std::fs::write(&config, goproxy_json(port, &[])).unwrap();
        let nginx = match second {
            Some(b) => nginx_conf_multi(port, b),
            None => nginx_conf(port),
        };
        std::fs::write(d.join("nginx/nginx.conf"), nginx).unwrap();
        let (cert, key) = cert(expired_cert);
        let live = d.join("letsencrypt/live").join(HOSTNAME);
        std::fs::write(live.join("fullchain.pem"), &cert).unwrap();
        std::fs::write(live.join("privkey.pem"), &key).unwrap();
        std::fs::write(d.join("ca.pem"), &cert).unwrap();
        // As an operator does: the variables in .env beside the compose file.
        let env = format!(
            "PROXY_API_KEY={KEY}\nOHMYGPT_API_KEY=sk-upstream-test-key\n\
             GOPROXY_CONFIG={}\nNGINX_CONF={}\nTEST_LETSENCRYPT_DIR={}\n\
             HTTPS_BIND=127.0.0.1\nHTTPS_PORT=0\nHTTP_BIND=127.0.0.1\nHTTP_PORT=0\n\
             UPSTREAM_PORT=0\nMOCK_CHUNKS=8\nMOCK_CHUNK_DELAY_MS=20\n",
            config.display(),
            d.join("nginx/nginx.conf").display(),
            d.join("letsencrypt").display()
        );
        let mut env = env;
        if let Some(b) = second {
            std::fs::copy(
                repo().join("docker-compose.multi.yml"),
                d.join("docker-compose.multi.yml"),
            )
            .unwrap();
            let config_b = d.join("proxy/config-b.json");
            std::fs::write(&config_b, goproxy_json(b, &[])).unwrap();
            env.push_str(&format!("GOPROXY_B_CONFIG={}\n", config_b.display()));
        }
        std::fs::write(d.join(".env"), env).unwrap();
        let mut compose = ComposeStack::new(&d.join("docker-compose.yml"), "prodtest")
            .unwrap()
            .with_file(&d.join("docker-compose.test.yml"))
            .unwrap();
        let mut services = vec!["upstream", "goproxy", "nginx"];
        if second.is_some() {
            compose = compose
                .with_file(&d.join("docker-compose.multi.yml"))
                .unwrap();
            services.push("goproxy-b");
        }
        compose.up(&[], false).await.unwrap();
        compose
            .wait_healthy(&services, Duration::from_secs(120))
            .await
            .unwrap();
        let https_port = compose.host_port("nginx", 443).await.unwrap();
        let mock_port = compose.host_port("upstream", 9000).await.unwrap();
        Project {
            dir,
            compose,
            https_port,
            mock_port,
            multi: second.is_some(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn url(&self) -> String {
        format!("https://{HOSTNAME}:{}", self.https_port)
    }

    fn resolve(&self) -> String {
        format!("{HOSTNAME}:{}:127.0.0.1", self.https_port)
    }

    fn compose_args(&self) -> Vec<String> {
        let mut files = vec!["docker-compose.yml", "docker-compose.test.yml"];
        if self.multi {
            files.push("docker-compose.multi.yml");
        }
        let mut args = Vec::new();
        for f in files {
            args.push("--compose-file".to_string());
            args.push(self.path(f).display().to_string());
        }
        args.push("--project-name".into());
        args.push(self.compose.project().to_string());
        args
    }

    /// `harness check` on this project, the key read from `KEY_VAR` = `key`.
    async fn check(&self, key: &str, extra: &[&str]) -> (Output, Duration) {
        let mut args = vec![
            "check".to_string(),
            "--url".into(),
            self.url(),
            "--resolve".into(),
            self.resolve(),
            "--ca-cert".into(),
            self.path("ca.pem").display().to_string(),
            "--api-key-env".into(),
            "HARNESS_TEST_KEY".into(),
        ];
        args.extend(self.compose_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        let t0 = Instant::now();
        let out = harness(&args, &[("HARNESS_TEST_KEY", key)]).await;
        (out, t0.elapsed())
    }

    /// `harness deploy` of `candidate` onto this project.
    async fn deploy(&self, candidate: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "deploy".to_string(),
            "--candidate-dir".into(),
            candidate.display().to_string(),
            "--ca-cert".into(),
            self.path("ca.pem").display().to_string(),
            "--monitor".into(),
            "3s".into(),
            "--state-dir".into(),
            self.path("deploy-state").display().to_string(),
        ];
        args.extend(self.compose_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        harness(&args, &[("PROXY_API_KEY", KEY)]).await
    }

    /// Whether goproxy's (only) container listens on `on` and not on `off`
    /// (Docker's embedded DNS also listens there, on a random port).
    /// Makes the mock stream `chunks` chunks 100 ms apart, then starts four
    /// such streams and a steady request every 50 ms through nginx.
    async fn load_with_streams_of(&self, chunks: usize) -> traffic::RunningLoad {
        reqwest::Client::new()
            .put(format!("http://127.0.0.1:{}/__mock/config", self.mock_port))
            .json(&mock_upstream::MockConfig {
                chunks,
                chunk_delay: Duration::from_millis(100),
                ..Default::default()
            })
            .send()
            .await
            .unwrap();
        let ca = std::fs::read(self.path("ca.pem")).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .resolve(HOSTNAME, ([127, 0, 0, 1], self.https_port).into())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let target = Target {
            client,
            base: self.url(),
            api_key: KEY.into(),
            model: "gpt-4o-mini".into(),
        };
        traffic::start(target, Duration::from_millis(50), 4, Duration::from_secs(2))
    }

    async fn goproxy_listens(&self, on: u16, off: u16) {
        let ids = self.compose.container_ids("goproxy").await.unwrap();
        assert_eq!(ids.len(), 1, "one goproxy container after the switch");
        let ports = harness::docker::listening_ports(&ids[0]).await.unwrap();
        assert!(
            ports.contains(&on) && !ports.contains(&off),
            "goproxy listens on {ports:?}; expected {on}, not {off}"
        );
    }
}

async fn harness(args: &[String], env: &[(&str, &str)]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("HARNESS_KEEP")
        .output()
        .await
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A candidate directory laid out like the project: goproxy's config at
/// `port` (with `extra` keys) and nginx.conf from `nginx`.
fn candidate(port: u16, extra: &[(&str, serde_json::Value)], nginx: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["proxy", "nginx"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    std::fs::write(
        dir.path().join("proxy/config-ohmygpt-prod.json"),
        goproxy_json(port, extra),
    )
    .unwrap();
    std::fs::write(dir.path().join("nginx/nginx.conf"), nginx).unwrap();
    dir
}

/// `check` is GO on a healthy project; a wrong client key is a NO-GO that
/// says so (and never prints a key); once goproxy is stopped, `check` says
/// NO-GO within a minute.
#[tokio::test]
async fn check_go_then_wrong_key_then_goproxy_stopped() {
    let p = Project::start(8004, false).await;
    let (out, _) = p.check(KEY, &["--monitor", "2s"]).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    for check in [
        "live.tls",
        "live.chat-stream",
        "host.listening-port",
        "host.nginx-to-goproxy",
    ] {
        assert!(said.contains(check), "{check} missing: {said}");
    }
    assert!(said.contains("days left"), "{said}");
    assert!(!said.contains(KEY), "the key value was printed: {said}");

    let (out, _) = p.check("sk-wrong-key", &["--monitor", "1s"]).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("wrong client key"), "{said}");
    assert!(!said.contains("sk-wrong-key"), "{said}");

    let id = &p.compose.container_ids("goproxy").await.unwrap()[0];
    harness::docker::docker_ok(&["stop", "-t", "5", id])
        .await
        .unwrap();
    let (out, took) = p.check(KEY, &["--monitor", "2s"]).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("NO-GO"), "{said}");
    assert!(took < Duration::from_secs(60), "took {took:?}: {said}");
}

/// An expired certificate is a NO-GO that says it expired and when.
#[tokio::test]
async fn check_refuses_an_expired_certificate() {
    let p = Project::start(8004, true).await;
    let (out, _) = p.check(KEY, &["--monitor", "1s"]).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("EXPIRED on 2024-04-01"), "{said}");
}

/// A broken candidate (an nginx typo) changes nothing; then the real
/// change 8005 -> 8004 under steady load with open streams: 0 failed, the
/// live files are the candidate's, goproxy listens only on 8004.
#[tokio::test]
async fn deploy_refuses_a_broken_candidate_then_switches_with_zero_failures() {
    let p = Project::start(8005, false).await;
    let live_json = p.path("proxy/config-ohmygpt-prod.json");
    let live_nginx = p.path("nginx/nginx.conf");
    let before = (
        std::fs::read(&live_json).unwrap(),
        std::fs::read(&live_nginx).unwrap(),
    );
    let goproxy_before = p.compose.container_ids("goproxy").await.unwrap();

    let broken = candidate(
        8004,
        &[],
        &nginx_conf(8004).replace("proxy_buffering off;", "proxy_bufering off;"),
    );
    let out = p.deploy(broken.path(), &[]).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("nothing was changed"), "{said}");
    assert_eq!(std::fs::read(&live_json).unwrap(), before.0);
    assert_eq!(std::fs::read(&live_nginx).unwrap(), before.1);
    assert_eq!(
        p.compose.container_ids("goproxy").await.unwrap(),
        goproxy_before
    );

    // Streams of 20 s: open across the switch, which waits for them.
    let load = p.load_with_streams_of(200).await;
    let good = candidate(8004, &[], &nginx_conf(8004));
    let out = p.deploy(good.path(), &[]).await;
    let stats = load.stop().await;
    let said = text(&out);
    println!("{said}");
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(
        stats.failed_total(),
        0,
        "{} failed of {} ({:?})",
        stats.failed_total(),
        stats.requests,
        stats.failures
    );
    assert_eq!(stats.streams_completed, 4);
    assert!(stats.requests > 20, "{} requests", stats.requests);
    println!(
        "deploy under load: 0 failed of {} requests + {} streams, longest gap {:?}",
        stats.requests, stats.streams_opened, stats.longest_gap
    );
    assert_eq!(
        std::fs::read(&live_json).unwrap(),
        std::fs::read(good.path().join("proxy/config-ohmygpt-prod.json")).unwrap()
    );
    p.goproxy_listens(8004, 8005).await;
    let state = std::fs::read_to_string(p.path("deploy-state/deploy-state.json")).unwrap();
    assert!(state.contains("\"step\": \"done\""), "{state}");
    assert!(!state.contains(KEY), "the state holds a key value");
}

/// goproxy failing on the new port (it cannot bind): the deploy rolls back
/// by itself, the old port serves again and the files are restored.
#[tokio::test]
async fn deploy_rolls_back_when_goproxy_fails_on_the_new_port() {
    let p = Project::start(8005, false).await;
    let live_json = p.path("proxy/config-ohmygpt-prod.json");
    let before = std::fs::read(&live_json).unwrap();
    // TEST-NET-2: never assigned in a container, so bind() fails at start.
    let failing = candidate(8004, &[("host", "198.51.100.1".into())], &nginx_conf(8004));
    let out = p.deploy(failing.path(), &[]).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("rolled back"), "{said}");
    assert_eq!(std::fs::read(&live_json).unwrap(), before);
    p.goproxy_listens(8005, 8004).await;
    let (out, _) = p.check(KEY, &["--monitor", "1s"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// `--dry-run` prints every step with its commands and changes nothing;
/// then a real deploy, rolled back on demand from its state directory:
/// goproxy on 8005 again and the files restored byte for byte.
#[tokio::test]
async fn deploy_dry_run_changes_nothing_then_rollback_on_demand() {
    let p = Project::start(8005, false).await;
    let live_nginx = p.path("nginx/nginx.conf");
    let before = std::fs::read(&live_nginx).unwrap();
    let good = candidate(8004, &[], &nginx_conf(8004));
    let out = p.deploy(good.path(), &["--dry-run"]).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    for step in [
        "--scale goproxy=2",
        "nginx -s reload",
        "docker stop -t 360",
        "8005 -> 8004",
    ] {
        assert!(said.contains(step), "{step} missing: {said}");
    }
    assert_eq!(std::fs::read(&live_nginx).unwrap(), before);
    assert!(!p.path("deploy-state").exists());
    p.goproxy_listens(8005, 8004).await;

    let out = p.deploy(good.path(), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    p.goproxy_listens(8004, 8005).await;
    let state_dir = p.path("deploy-state").display().to_string();
    let out = harness(
        &["rollback".into(), "--run-dir".into(), state_dir],
        &[("PROXY_API_KEY", KEY)],
    )
    .await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("rolled back"), "{said}");
    assert_eq!(std::fs::read(&live_nginx).unwrap(), before);
    p.goproxy_listens(8005, 8004).await;
}

/// A deploy interrupted mid-switch (SIGTERM once the state file says the
/// candidate is live and a second goproxy runs): the harness says how to
/// roll back, removes nothing, and `harness rollback --run-dir` restores
/// the old files byte for byte with the old port serving through nginx.
#[tokio::test]
async fn rollback_after_a_deploy_interrupted_mid_switch() {
    let p = Project::start(8005, false).await;
    let live_json = p.path("proxy/config-ohmygpt-prod.json");
    let live_nginx = p.path("nginx/nginx.conf");
    let before = (
        std::fs::read(&live_json).unwrap(),
        std::fs::read(&live_nginx).unwrap(),
    );
    let good = candidate(8004, &[], &nginx_conf(8004));
    let state_dir = p.path("deploy-state");
    let mut args = vec![
        "deploy".to_string(),
        "--candidate-dir".into(),
        good.path().display().to_string(),
        "--ca-cert".into(),
        p.path("ca.pem").display().to_string(),
        "--monitor".into(),
        "30s".into(),
        "--state-dir".into(),
        state_dir.display().to_string(),
    ];
    args.extend(p.compose_args());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(&args)
        .env("PROXY_API_KEY", KEY)
        .env_remove("HARNESS_KEEP")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();

    // Mid-switch: the candidate is live and the new goproxy was started
    // beside the old one (the deploy waits for it to turn healthy).
    let state_file = state_dir.join("deploy-state.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let applied = std::fs::read_to_string(&state_file)
            .map(|s| s.contains("\"step\": \"applied\""))
            .unwrap_or(false);
        let goproxies = p.compose.container_ids("goproxy").await.unwrap_or_default();
        if applied && goproxies.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deploy never reached the switch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("harness deploy exits promptly on SIGTERM")
        .unwrap();
    let said = text(&out);
    println!("{said}");
    assert_eq!(out.status.code(), Some(143), "{said}");
    assert!(
        said.contains(&format!(
            "harness rollback --run-dir {}",
            state_dir.display()
        )),
        "{said}"
    );
    assert!(!said.contains(KEY), "{said}");
    // Interrupted, not finished: the candidate is live.
    assert_ne!(std::fs::read(&live_json).unwrap(), before.0);

    let out = harness(
        &[
            "rollback".into(),
            "--run-dir".into(),
            state_dir.display().to_string(),
        ],
        &[("PROXY_API_KEY", KEY)],
    )
    .await;
    let said = text(&out);
    println!("{said}");
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(std::fs::read(&live_json).unwrap(), before.0);
    assert_eq!(std::fs::read(&live_nginx).unwrap(), before.1);
    p.goproxy_listens(8005, 8004).await;
    // The old port serves through nginx: the live checks pass.
    let (out, _) = p.check(KEY, &["--monitor", "1s"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let state = std::fs::read_to_string(&state_file).unwrap();
    assert!(state.contains("\"step\": \"rolled-back\""), "{state}");
}

/// Two instances (goproxy on 8004, goproxy-b on 8005) behind one upstream:
/// deploy picks the rolling restart, `--dry-run` names each instance's
/// steps and changes nothing, and the real deploy moves goproxy to 8006
/// under steady load with open streams with 0 failed requests.
#[tokio::test]
async fn deploy_rolls_two_instances_one_at_a_time() {
    let p = Project::start_with(8004, false, Some(8005)).await;
    let live_json = p.path("proxy/config-ohmygpt-prod.json");
    let live_nginx = p.path("nginx/nginx.conf");
    let before = std::fs::read(&live_nginx).unwrap();
    let good = candidate(8006, &[], &nginx_conf_multi(8006, 8005));
    std::fs::write(
        good.path().join("proxy/config-b.json"),
        goproxy_json(8005, &[]),
    )
    .unwrap();

    let out = p.deploy(good.path(), &["--dry-run"]).await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    for step in [
        "8004 -> 8006 by rolling-restart",
        "goproxy out of nginx's rotation",
        "docker restart -t 360 <goproxy>",
        "goproxy-b out of nginx's rotation",
        "docker restart -t 360 <goproxy-b>",
        "goproxy-b back in rotation",
        "config-b.json.bak-",
    ] {
        assert!(said.contains(step), "{step} missing: {said}");
    }
    assert!(!said.contains("--scale goproxy=2"), "{said}");
    assert_eq!(std::fs::read(&live_nginx).unwrap(), before);
    assert!(!p.path("deploy-state").exists());

    let load = p.load_with_streams_of(100).await;
    let out = p.deploy(good.path(), &[]).await;
    let stats = load.stop().await;
    let said = text(&out);
    println!("{said}");
    assert_eq!(out.status.code(), Some(0), "{said}");
    for step in [
        "deploy.goproxy-out-of-rotation",
        "deploy.restart-goproxy-b",
        "deploy.goproxy-b-back-in-rotation",
    ] {
        assert!(said.contains(step), "{step} missing: {said}");
    }
    assert_eq!(
        stats.failed_total(),
        0,
        "{} failed of {} ({:?})",
        stats.failed_total(),
        stats.requests,
        stats.failures
    );
    println!(
        "rolling deploy under load: 0 failed of {} requests + {} streams, longest gap {:?}",
        stats.requests, stats.streams_opened, stats.longest_gap
    );
    assert_eq!(
        std::fs::read(&live_json).unwrap(),
        std::fs::read(good.path().join("proxy/config-ohmygpt-prod.json")).unwrap()
    );
    p.goproxy_listens(8006, 8004).await;
}
