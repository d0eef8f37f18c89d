//! The real `goproxy` binary: --check-config, exit codes, healthcheck,
//! SIGTERM drain with an open stream, and secrets kept out of logs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use futures_util::StreamExt;
use mock_upstream::{MockConfig, MockUpstream};
use predicates::prelude::*;
use serde_json::json;
use tokio::net::TcpListener;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{free_port, wait_for, CLIENT_KEY, UPSTREAM_KEY};

fn goproxy() -> Command {
    Command::new(cargo_bin("goproxy"))
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// A config for the binary on `port`, whose endpoints point at `base`.
fn config_file(dir: &Path, port: u16, base: &str) -> PathBuf {
    let text = json!({
        "_comment": "binary test",
        "port": port,
        "host": "127.0.0.1",
        "endpoints": [
            {"name": "t-openai", "base_url": format!("{base}/v1/chat/completions"), "api_key_env": "GOPROXY_TEST_UPSTREAM_KEY"},
            {"name": "t-anthropic", "base_url": format!("{base}/v1/messages"), "api_key_env": "GOPROXY_TEST_UPSTREAM_KEY"}
        ],
        "models": [{"id": "m", "upstream": "t", "type": "openai"}],
        "client_api_keys_env": ["GOPROXY_TEST_CLIENT_KEY"],
        "drain_timeout_secs": 10
    });
    let path = dir.join("config.json");
    std::fs::write(&path, text.to_string()).unwrap();
    path
}

/// Kills the child on drop so a failed test leaves no process behind.
struct ChildGuard(Child);

impl ChildGuard {
    /// Everything the child wrote to stderr, once it has exited.
    fn stderr(&mut self) -> String {
        read_all(self.0.stderr.take())
    }

    /// Everything the child wrote to stdout, once it has exited.
    fn stdout(&mut self) -> String {
        read_all(self.0.stdout.take())
    }
}

fn read_all(pipe: Option<impl Read>) -> String {
    let mut out = String::new();
    pipe.expect("spawned with a piped stream")
        .read_to_string(&mut out)
        .unwrap();
    out
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_binary(config: &Path, log_format: &str) -> ChildGuard {
    let child = goproxy()
        .arg("--config")
        .arg(config)
        .args(["--log-format", log_format])
        .env("GOPROXY_TEST_CLIENT_KEY", CLIENT_KEY)
        .env("GOPROXY_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ChildGuard(child)
}

async fn wait_healthy(client: &reqwest::Client, port: u16) {
    wait_for(
        &format!("GET /health on port {port} to answer 200"),
        Duration::from_secs(20),
        || async {
            let r = client
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
}

/// The binary serving the test config against `upstream`, healthy, with
/// a client for it (the config's directory lives as long as it does).
struct Serving {
    child: ChildGuard,
    port: u16,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn serving(upstream: &str) -> Serving {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), port, upstream);
    let child = spawn_binary(&cfg, "text");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    wait_healthy(&client, port).await;
    Serving {
        child,
        port,
        client,
        _dir: dir,
    }
}

impl Serving {
    /// A non-streamed completion for model `m`, with the client key.
    async fn completion(&self) -> reqwest::Response {
        self.client
            .post(format!(
                "http://127.0.0.1:{}/v1/chat/completions",
                self.port
            ))
            .bearer_auth(CLIENT_KEY)
            .json(&json!({"model": "m", "messages": []}))
            .send()
            .await
            .unwrap()
    }
}

/// The streaming mock with `chunks` events 100 ms apart.
async fn sse_mock(chunks: usize) -> MockUpstream {
    let config = MockConfig {
        chunks,
        chunk_delay: Duration::from_millis(100),
        ..MockConfig::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    MockUpstream::start(listener, config).await.unwrap()
}

fn sigterm(child: &Child) {
    signal(child, "-TERM");
}

fn signal(child: &Child, which: &str) {
    let ok = Command::new("kill")
        .args([which, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            start.elapsed() < within,
            "goproxy did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// --check-config accepts the shipped prod file with the summary line the
/// pre-deploy gate parses.
#[test]
fn check_config_accepts_shipped_files() {
    let prod = shipped("config-ohmygpt-prod.json");
    let expected = format!(
        "config OK: {}: port 8004, 2 endpoints, 9 models; bodies up to 10485760 bytes, 268435456 in flight; 4096 connections\n",
        prod.display()
    );
    assert_cmd::Command::new(cargo_bin("goproxy"))
        .arg("--check-config")
        .arg(&prod)
        .assert()
        .code(0)
        .stdout(expected);
    assert_cmd::Command::new(cargo_bin("goproxy"))
        .arg("--check-config")
        .arg(shipped("config-ohmygpt-dev.json"))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("port 8004"));
}

/// What `--check-config` of the shipped prod file says on stderr (it
/// must still exit 0) with each variable set to its value, or removed.
fn checked_prod_stderr(env: &[(&str, Option<&str>)]) -> String {
    let mut cmd = assert_cmd::Command::new(cargo_bin("goproxy"));
    cmd.arg("--check-config")
        .arg(shipped("config-ohmygpt-prod.json"));
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd.assert().code(0).get_output().clone();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// --check-config reads the environment goproxy would: unset, empty and
/// unsendable keys are warned about by variable name, never by value, and
/// the file is still OK (exit 0).
#[test]
fn check_config_reports_the_environment_by_name() {
    let err = checked_prod_stderr(&[
        ("PROXY_API_KEY", None),
        ("OHMYGPT_API_KEY", Some("sk-line1\r\nInjected: yes")),
    ]);
    assert!(
        err.contains("warning: environment: PROXY_API_KEY (client key) is not set"),
        "{err}"
    );
    assert!(
        err.contains("holds a line break or control character"),
        "{err}"
    );
    assert!(!err.contains("sk-line1"), "{err}");
    let err = checked_prod_stderr(&[("OHMYGPT_API_KEY", Some("sk-ключ12345"))]);
    assert!(
        err.contains("OHMYGPT_API_KEY (upstream key of endpoint")
            && err.contains("holds characters outside ASCII"),
        "{err}"
    );
    assert!(!err.contains("ключ"), "{err}");
}

/// Two variables of one endpoint's rotation holding the same key are named
/// (never shown): the key is used once, not retried against itself after a
/// 429. The same variable listed twice is refused at its index.
#[test]
fn check_config_names_variables_holding_the_same_key() {
    let err = checked_prod_stderr(&[
        ("PROXY_API_KEY", Some("client-key-0001")),
        ("OHMYGPT_API_KEY", Some("sk-same-key-0123456789")),
        ("OHMYGPT_API_KEY_2", Some(" sk-same-key-0123456789\n")),
    ]);
    let prod = shipped("config-ohmygpt-prod.json");
    assert!(
        err.contains("OHMYGPT_API_KEY_2 holds the same key as OHMYGPT_API_KEY (upstream keys of endpoint ohmygpt-openai): it is used once"),
        "{err}"
    );
    assert!(!err.contains("sk-same-key"), "{err}");
    let err = checked_prod_stderr(&[
        ("PROXY_API_KEY", Some("sk-upstream-key-0123456789")),
        ("OHMYGPT_API_KEY", Some("sk-upstream-key-0123456789")),
    ]);
    assert!(
        err.contains("PROXY_API_KEY (client key) holds the same key as OHMYGPT_API_KEY (upstream key of endpoint ohmygpt-openai)"),
        "{err}"
    );
    assert!(!err.contains("sk-upstream-key"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&prod).unwrap().replacen(
        "[\"OHMYGPT_API_KEY\", \"OHMYGPT_API_KEY_2\"]",
        "[\"OHMYGPT_API_KEY\", \"OHMYGPT_API_KEY\"]",
        1,
    );
    let path = dir.path().join("dup.json");
    std::fs::write(&path, text).unwrap();
    assert_cmd::Command::new(cargo_bin("goproxy"))
        .arg("--check-config")
        .arg(&path)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
        "endpoints[0].api_key_env[1] = \"OHMYGPT_API_KEY\": is already listed as api_key_env[0]",
    ));
}

/// --check-config says when the port is held where it runs (serving
/// would exit 3 at once), and still exits 0: the holder may be goproxy
/// itself, serving this file. A free port is not mentioned.
#[test]
fn check_config_says_when_the_port_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let path = config_file(dir.path(), port, "http://127.0.0.1:9");
    goproxy_check(&path)
        .code(0)
        .stderr(predicate::str::contains(format!(
            "warning: environment: port {port} on 127.0.0.1 is in use now"
        )));
    drop(held);
    goproxy_check(&path)
        .code(0)
        .stderr(predicate::str::contains("in use now").not());
}

fn goproxy_check(path: &Path) -> assert_cmd::assert::Assert {
    assert_cmd::Command::new(cargo_bin("goproxy"))
        .arg("--check-config")
        .arg(path)
        .assert()
}

/// --check-config exits 2 naming the file, field and value.
#[test]
fn check_config_rejects_string_port_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, r#"{"port": "8004", "endpoints": [], "models": []}"#).unwrap();
    assert_cmd::Command::new(cargo_bin("goproxy"))
        .arg("--check-config")
        .arg(&path)
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "{}: port = \"8004\"",
            path.display()
        )));
    // Serving with it fails the same way, before binding anything.
    assert_cmd::Command::new(cargo_bin("goproxy"))
        .arg("--config")
        .arg(&path)
        .assert()
        .code(2);
    std::fs::write(&path, "{\"port\": 8004,\n\"models\": [}").unwrap();
    assert_cmd::Command::new(cargo_bin("goproxy"))
        .arg("--check-config")
        .arg(&path)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!("{}:2:", path.display())));
}

/// --check-config refuses, with exit 2, the configs that used to pass and
/// then fail at run time, naming the field, the model and the value in the
/// operator's terms; a key pasted as a variable name is never echoed.
#[test]
fn check_config_refuses_run_time_traps_in_operator_terms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prod.json");
    let good: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shipped("config-ohmygpt-prod.json")).unwrap(),
    )
    .unwrap();
    let key = "sk-proj-AbCdEf0123456789xyz";
    let cases: Vec<(serde_json::Value, &str)> = vec![
        ({ let mut v = good.clone(); v["models"][0]["upstream_model_id"] = json!(["a", "b"]);
           v["models"][0]["upstream_model_weights"] = json!([1e308, 1e308]); v },
         "models[0].upstream_model_weights = [1e+308,1e+308]: weights must be finite"),
        ({ let mut v = good.clone(); v["user_agent"] = "goproxy\r\nX: 1".into(); v },
         "user_agent = \"goproxy\\r\\nX: 1\": must be printable ASCII on one line"),
        ({ let mut v = good.clone(); v["sse_heartbeat_secs"] = json!(1e-9); v },
         "sse_heartbeat_secs = 1e-9: must be 0 (off)"),
        ({ let mut v = good.clone(); v["models"] = json!([]); v }, "models = []: at least one model"),
        ({ let mut v = good.clone(); v["client_api_keys_env"] = json!([]); v }, "client_api_keys_env = []"),
        ({ let mut v = good.clone(); v["models"][1]["upstream_model_id"] = json!(5); v },
         "models[1].upstream_model_id = 5: expected a string or a list of strings, found a number (model \"gpt-4o-mini\")"),
        ({ let mut v = good.clone(); v["endpoints"][0]["api_key_env"] = json!([key]); v },
         "endpoints[0].api_key_env[0] = (hidden: it looks like a key)"),
    ];
    for (config, expected) in cases {
        std::fs::write(&path, config.to_string()).unwrap();
        let out = assert_cmd::Command::new(cargo_bin("goproxy"))
            .arg("--check-config")
            .arg(&path)
            .assert()
            .code(2)
            .get_output()
            .stderr
            .clone();
        let err = String::from_utf8(out).unwrap();
        assert!(err.contains(expected), "expected {expected:?} in {err}");
        assert!(!err.contains("AbCdEf0123"), "key echoed: {err}");
        assert!(!err.contains("untagged") && !err.contains("Raw"), "{err}");
    }
    let text = std::fs::read_to_string(shipped("config-ohmygpt-prod.json")).unwrap();
    std::fs::write(&path, format!("\u{feff}{text}")).unwrap();
    assert_cmd::Command::new(cargo_bin("goproxy"))
        .arg("--check-config")
        .arg(&path)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("byte-order mark"));
}

/// A port already in use is exit 3 with a message naming it.
#[test]
fn port_in_use_is_exit_3() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), port, "http://127.0.0.1:9");
    assert_cmd::Command::new(cargo_bin("goproxy"))
        .arg("--config")
        .arg(&cfg)
        .timeout(Duration::from_secs(20))
        .assert()
        .code(3)
        .stderr(predicate::str::contains(format!(
            "port {port} on 127.0.0.1 is already in use"
        )));
}

/// `goproxy healthcheck` is 1 with nothing listening, 0 against a live
/// proxy; then SIGTERM while a stream is open: the stream completes, the
/// process exits 0, and no key appears anywhere in its logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_drain_on_sigterm_and_no_secrets_in_logs() {
    let mock = sse_mock(12).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path(), port, &format!("http://{}", mock.addr()));

    let out = goproxy()
        .arg("--config")
        .arg(&cfg)
        .arg("healthcheck")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("unhealthy: "));

    let mut child = spawn_binary(&cfg, "json");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    wait_healthy(&client, port).await;
    let out = goproxy()
        .env("CONFIG_PATH", &cfg)
        .arg("healthcheck")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // A wrong client key is logged as a 401, never echoed.
    let r = client
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth("sk-wrong-client-key-9999")
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Open a stream (~1.2 s), then SIGTERM after the first chunk.
    let r = client
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(
            &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    let mut body = s.next().await.unwrap().unwrap().to_vec();
    sigterm(&child.0);
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .unwrap()
    {
        body.extend_from_slice(&chunk.expect("the stream survives the drain"));
    }
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains("data: [DONE]"),
        "stream completed during drain: {body}"
    );
    let status = wait_exit(&mut child.0, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    // New connections are refused once drained.
    assert!(client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .is_err());

    let mut logs = child.stderr();
    logs.push_str(&child.stdout());
    assert!(logs.contains("stream finished"), "{logs}");
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line)
            .expect("--log-format json writes JSON lines");
    }
    let finished: serde_json::Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "stream finished")
        .expect("a JSON stream-finished line");
    assert_eq!(finished["outcome"], "complete");
    assert_eq!(finished["output_tokens"], 12);
    assert!(logs.contains("drained"), "{logs}");
    for secret in [CLIENT_KEY, UPSTREAM_KEY, "sk-wrong-client-key-9999"] {
        assert!(!logs.contains(secret), "secret {secret} leaked into logs");
    }
}

/// An upstream error body echoing the key is logged redacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_error_text_is_logged_redacted() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_string(format!("Incorrect API key provided: {UPSTREAM_KEY}")),
        )
        .mount(&upstream)
        .await;
    let mut s = serving(&upstream.uri()).await;
    let r = s.completion().await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(!text.contains(UPSTREAM_KEY));
    sigterm(&s.child.0);
    assert_eq!(
        wait_exit(&mut s.child.0, Duration::from_secs(10)).code(),
        Some(0)
    );
    let logs = s.child.stderr();
    assert!(
        logs.contains("Incorrect API key provided: [REDACTED]"),
        "{logs}"
    );
    assert!(!logs.contains(UPSTREAM_KEY) && !logs.contains(CLIENT_KEY));
}

/// Request lines are written while goproxy serves, not held until it
/// exits: the event loops batch their lines but write them before they go
/// idle (and within 100 ms when busy). Every line arrives whole, though
/// two loops write to the one stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_lines_are_written_while_serving_and_whole() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "x", "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4}
        })))
        .mount(&upstream)
        .await;
    let mut s = serving(&upstream.uri()).await;
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = s.child.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let requests = (0..8).map(|_| s.completion());
    for r in futures_util::future::join_all(requests).await {
        assert_eq!(r.status(), 200);
    }
    // goproxy is still running: the 8 lines must come now.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|l: &&String| l.contains(" completion "))
        .count()
        < 8
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "8 request lines not written while serving; got:\n{}",
                seen.join("\n")
            ),
        }
    }
    assert!(s.child.0.try_wait().unwrap().is_none(), "still serving");
    sigterm(&s.child.0);
    assert_eq!(
        wait_exit(&mut s.child.0, Duration::from_secs(10)).code(),
        Some(0)
    );
    reader.join().unwrap();
    seen.extend(rx.try_iter());
    for line in &seen {
        let ts = line.split_once(' ').map_or("", |(ts, _)| ts);
        assert!(
            ts.starts_with("20") && ts.ends_with('Z'),
            "a whole line: {line}"
        );
    }
    assert!(
        seen.iter().any(|l| l.contains("drained; exiting")),
        "{seen:?}"
    );
}

/// SIGTERM drains; a second signal (here SIGINT, Ctrl-C) during the drain
/// cuts the open stream at once with its SSE error event, and the process
/// exits 0 long before the 10 s drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_cuts_the_drain_short() {
    let mock = sse_mock(600).await;
    let mut s = serving(&format!("http://{}", mock.addr())).await;
    let r = s
        .client
        .post(format!("http://127.0.0.1:{}/v1/chat/completions", s.port))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "m", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    let mut stream = r.bytes_stream();
    let mut body = stream.next().await.unwrap().unwrap().to_vec();
    sigterm(&s.child.0);
    let health = format!("http://127.0.0.1:{}/health", s.port);
    wait_for("/health to turn 503", Duration::from_secs(10), || async {
        let r = s.client.get(&health).send().await;
        r.map_or(true, |r| r.status() == 503).then_some(())
    })
    .await;
    // The drain timeout is 10 s and the stream would run for a minute:
    // only the cut ends it within 5 s.
    signal(&s.child.0, "-INT");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => body.extend_from_slice(&chunk),
            Ok(_) => break,
            Err(_) => panic!("the stream was not cut within 5 s of the second signal"),
        }
    }
    let status = wait_exit(&mut s.child.0, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("the proxy is shutting down"), "{body}");
    assert!(!body.contains("[DONE]"), "{body}");
    let logs = s.child.stderr();
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(logs.contains("SIGINT received during the drain"), "{logs}");
    assert!(logs.contains("drain_cut"), "{logs}");
}

/// SIGUSR1, SIGUSR2 and the other signals whose default ends or stops a
/// process (SIGALRM, SIGXFSZ, SIGTTOU...) are logged and ignored (their
/// default killed goproxy on the spot, open streams and all); SIGHUP
/// drains and exits 0 like SIGTERM (a lost terminal; under a restart
/// policy, a reload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usr_signals_are_ignored_and_hup_drains() {
    let upstream = MockServer::start().await;
    let mut s = serving(&upstream.uri()).await;
    let stderr = s.child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_line = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {what:?} within 10 s"),
            }
        }
    };
    for sig in [
        "USR1", "USR2", "ALRM", "IO", "XFSZ", "TTOU", "PWR", "VTALRM",
    ] {
        signal(&s.child.0, &format!("-{sig}"));
        wait_line(&format!("SIG{sig} received and ignored"));
    }
    let health = format!("http://127.0.0.1:{}/health", s.port);
    assert_eq!(s.client.get(&health).send().await.unwrap().status(), 200);
    signal(&s.child.0, "-HUP");
    wait_line("SIGHUP received");
    assert_eq!(
        wait_exit(&mut s.child.0, Duration::from_secs(10)).code(),
        Some(0)
    );
    wait_line("drained; exiting");
    drop(rx);
    reader.join().unwrap();
}
