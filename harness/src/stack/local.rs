//! The local backend: host nginx, the goproxy binary and the streaming mock
//! as processes on loopback, for machines without Docker.
//!
//! nginx runs the deployed `nginx.conf` with only what cannot work outside
//! a container rewritten ([`localize`]): the `goproxy` service name becomes
//! `127.0.0.1` (so Docker's DNS behaviour is not exercised here), listens
//! move to loopback ports, and pid, log and certificate paths move into the
//! run directory. goproxy binds 127.0.0.1 on the configured port itself, so
//! "the port is free" is checked on this host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mock_upstream::MockUpstream;
use tokio::process::{Child, Command};

use crate::docker::{parse_listening, Exec};
use crate::files::LiveFiles;
use crate::poll::{ms_since, poll_until, Attempt, PollError};
use crate::stack::{nginx_step, Backend, LogMark, StackError};

/// How long a drained goproxy may take to exit before it is killed (as the
/// containers' `stop_grace_period`, above goproxy's drain timeout).
const STOP_GRACE: Duration = Duration::from_secs(360);

/// A goproxy process.
#[derive(Debug)]
struct Goproxy {
    id: String,
    pid: u32,
    child: Child,
    port: u16,
    log: PathBuf,
}

/// The processes of one local stack; all are stopped on drop.
#[derive(Debug)]
pub struct Local {
    dir: PathBuf,
    live: LiveFiles,
    https_port: u16,
    http_port: u16,
    goproxy_bin: PathBuf,
    nginx_bin: PathBuf,
    env: Vec<(String, String)>,
    goproxies: tokio::sync::Mutex<Vec<Goproxy>>,
    nginx_pid: u32,
    _nginx: Child,
    mock: Mutex<Option<MockUpstream>>,
    mock_addr: SocketAddr,
    squatters: Mutex<Vec<std::net::TcpListener>>,
    spawned: std::sync::atomic::AtomicU32,
}

/// Where the local backend finds its programs.
#[derive(Debug, Clone)]
pub struct LocalPrograms {
    pub goproxy: PathBuf,
    pub nginx: PathBuf,
}

impl LocalPrograms {
    /// goproxy from `GOPROXY_BIN` or the workspace's target dir, nginx from
    /// PATH; an error says how to get whichever is missing.
    pub fn find(root: &Path) -> Result<Self, StackError> {
        let goproxy = std::env::var_os("GOPROXY_BIN")
            .map(PathBuf::from)
            .into_iter()
            .chain(["release", "debug"].map(|p| root.join("target").join(p).join("goproxy")))
            .find(|p| p.is_file())
            .ok_or(StackError::Missing(
                "no goproxy binary: build it with `cargo build --release -p proxy` or set GOPROXY_BIN",
            ))?;
        let nginx = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/sbin")])
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
            .ok_or(StackError::Missing(
                "the local backend needs nginx on this machine: apt-get install nginx-light",
            ))?;
        Ok(Self { goproxy, nginx })
    }
}

impl Local {
    /// Starts nginx and goproxy on the live files; the mock is already
    /// running (its address is in the rendered goproxy config).
    pub async fn start(
        programs: &LocalPrograms,
        live: LiveFiles,
        mock: MockUpstream,
        api_key: &str,
    ) -> Result<Local, StackError> {
        let dir = live.dir.join("local");
        std::fs::create_dir_all(&dir).map_err(|e| StackError::io("create", &dir, e))?;
        let (https_port, http_port) = (free_port()?, free_port()?);
        let conf = dir.join("nginx.conf");
        write_localized(
            &live.nginx_conf,
            &conf,
            &dir,
            &live.tls_dir,
            https_port,
            http_port,
        )?;
        let nginx = spawn_logged(
            Command::new(&programs.nginx)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&conf)
                .args(["-g", "daemon off;"]),
            &dir.join("nginx.out"),
        )?;
        let nginx_pid = nginx.id().unwrap_or(0);
        let local = Local {
            dir,
            live,
            https_port,
            http_port,
            goproxy_bin: programs.goproxy.clone(),
            nginx_bin: programs.nginx.clone(),
            env: vec![
                ("PROXY_API_KEY".into(), api_key.to_string()),
                ("OHMYGPT_API_KEY".into(), "sk-upstream-test-key".into()),
                ("RUST_LOG".into(), "info".into()),
            ],
            goproxies: tokio::sync::Mutex::new(Vec::new()),
            nginx_pid,
            _nginx: nginx,
            mock_addr: mock.addr(),
            mock: Mutex::new(Some(mock)),
            squatters: Mutex::new(Vec::new()),
            spawned: Default::default(),
        };
        wait_port(https_port, Duration::from_secs(10))
            .await
            .map_err(|after| StackError::Timeout {
                what: format!("nginx did not listen: nothing listens on 127.0.0.1:{https_port}"),
                after,
                last: format!("; {}", tail_file(&local.dir.join("nginx.out"))),
            })?;
        let id = local.start_beside().await?;
        local.wait_healthy(&id, Duration::from_secs(30)).await?;
        Ok(local)
    }

    pub fn https_port(&self) -> u16 {
        self.https_port
    }

    pub fn mock_port(&self) -> u16 {
        self.mock_addr.port()
    }

    /// Running goproxy processes, oldest first.
    pub async fn ids(&self) -> Vec<String> {
        let mut procs = self.goproxies.lock().await;
        let mut out = Vec::new();
        for p in procs.iter_mut() {
            if matches!(p.child.try_wait(), Ok(None)) {
                out.push(p.id.clone());
            }
        }
        out
    }

    /// TCP ports a goproxy process listens on (its sockets' inodes matched
    /// against the host's `/proc/net/tcp`).
    pub async fn listening_ports(&self, id: &str) -> Result<Vec<u16>, StackError> {
        let pid = pid_of(id)?;
        let inodes = socket_inodes(pid);
        Ok(listening_with_inodes(&inodes))
    }

    /// Every TCP port in LISTEN on this host (where goproxy binds).
    pub fn host_listening(&self) -> Vec<u16> {
        let text = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect::<String>();
        parse_listening(&text)
    }

    /// The process holding `port` on this host, for evidence.
    pub fn port_owner(&self, port: u16) -> String {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return String::new();
        };
        for entry in dir.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if listening_with_inodes(&socket_inodes(pid)).contains(&port) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                return format!("pid {pid} ({})", comm.trim());
            }
        }
        String::new()
    }

    pub async fn check_config(&self, candidate: &Path) -> Result<Exec, StackError> {
        run(Command::new(&self.goproxy_bin)
            .arg("--check-config")
            .arg(candidate))
        .await
    }

    /// Writes `from` localized (see [`localize`]) as `<dir>/<name>`.
    fn localized(&self, from: &Path, name: &str) -> Result<PathBuf, StackError> {
        let to = self.dir.join(name);
        write_localized(
            from,
            &to,
            &self.dir,
            &self.live.tls_dir,
            self.https_port,
            self.http_port,
        )?;
        Ok(to)
    }

    /// `nginx <args> -p <dir> -c <conf>`, run to completion.
    async fn nginx(&self, args: &[&str], conf: &Path) -> Result<Exec, StackError> {
        run(Command::new(&self.nginx_bin)
            .args(args)
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(conf))
        .await
    }

    /// `nginx -t` on the candidate, localized like the live file.
    pub async fn nginx_test(&self, candidate: &Path) -> Result<Exec, StackError> {
        let conf = self.localized(candidate, "nginx.candidate.conf")?;
        self.nginx(&["-t"], &conf).await
    }

    /// Localizes the live nginx.conf again, `nginx -t`, `nginx -s reload`.
    pub async fn reload_nginx(&self) -> Result<String, StackError> {
        let conf = self.localized(&self.live.nginx_conf, "nginx.conf")?;
        nginx_step("-t", self.nginx(&["-t"], &conf).await?)?;
        nginx_step("-s reload", self.nginx(&["-s", "reload"], &conf).await?)?;
        Ok("nginx -t ok; nginx -s reload ok".into())
    }

    /// PIDs of the nginx master's worker processes.
    pub fn nginx_workers(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // Field 4 is the parent pid; the command may hold spaces, so
                // count from the closing parenthesis.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                ppid == Some(self.nginx_pid)
            })
            .map(|pid| pid.to_string())
            .collect()
    }

    /// Holds `port` on loopback, as another program would.
    pub fn occupy_port(&self, port: u16) -> Result<(), StackError> {
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|source| {
            StackError::Bind {
                what: format!("cannot occupy port {port}"),
                source,
            }
        })?;
        self.squatters.lock().expect("squatters lock").push(l);
        Ok(())
    }

    /// Starts one more goproxy on the live config; returns its id.
    pub async fn start_beside(&self) -> Result<String, StackError> {
        let n = self
            .spawned
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let log = self.dir.join(format!("goproxy-{n}.log"));
        // The port it will listen on, for readiness; a config that does not
        // load gives 0 and goproxy itself will say why it exits.
        let port = proxy::config::Config::load(&self.live.goproxy_config)
            .map(|c| c.port())
            .unwrap_or(0);
        let child = spawn_logged(
            Command::new(&self.goproxy_bin)
                .arg("--config")
                .arg(&self.live.goproxy_config)
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            &log,
        )?;
        let pid = child.id().unwrap_or(0);
        let id = format!("pid:{pid}");
        self.goproxies.lock().await.push(Goproxy {
            id: id.clone(),
            pid,
            child,
            port,
            log,
        });
        Ok(id)
    }

    /// Polls goproxy's /health until 200; fails fast if the process exits.
    pub async fn wait_healthy(&self, id: &str, deadline: Duration) -> Result<String, StackError> {
        let t0 = tokio::time::Instant::now();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| StackError::Tls {
                what: "cannot build an HTTP client",
                source: e.into(),
            })?;
        let waited = poll_until(deadline, Duration::from_millis(100), || async {
            let (port, exited, log) = {
                let mut procs = self.goproxies.lock().await;
                let p = procs
                    .iter_mut()
                    .find(|p| p.id == id)
                    .ok_or_else(|| StackError::NoSuchGoproxy { id: id.to_string() })?;
                (p.port, p.child.try_wait().ok().flatten(), p.log.clone())
            };
            if let Some(status) = exited {
                return Err(StackError::ExitedAtStart {
                    status: Some(status.to_string()),
                    logs: tail_file(&log),
                });
            }
            let url = format!("http://127.0.0.1:{port}/health");
            let up = client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            Ok(if up {
                Attempt::Ready(port)
            } else {
                Attempt::NotYet((port, log))
            })
        })
        .await;
        match waited {
            Ok(port) => Ok(format!(
                "{id} healthy on {port} after {:.0} ms",
                ms_since(t0)
            )),
            Err(PollError::Failed(e)) => Err(e),
            Err(PollError::TimedOut {
                last: (port, log), ..
            }) => Err(StackError::Timeout {
                what: format!("{id} not healthy on {port}"),
                after: deadline,
                last: format!(": {}", tail_file(&log)),
            }),
        }
    }

    /// Kills a goproxy at once (one that failed to start).
    pub async fn remove(&self, id: &str) {
        let mut procs = self.goproxies.lock().await;
        if let Some(i) = procs.iter().position(|p| p.id == id) {
            let mut p = procs.remove(i);
            let _ = p.child.kill().await;
        }
    }

    /// SIGTERM (goproxy drains), wait for the exit, kill past the grace.
    pub async fn stop(&self, id: &str) -> Result<(), StackError> {
        let mut p = {
            let mut procs = self.goproxies.lock().await;
            let i = procs
                .iter()
                .position(|p| p.id == id)
                .ok_or_else(|| StackError::NoSuchGoproxy { id: id.to_string() })?;
            procs.remove(i)
        };
        run(Command::new("kill").args(["-TERM", &p.pid.to_string()])).await?;
        let how = match tokio::time::timeout(STOP_GRACE, p.child.wait()).await {
            Ok(Ok(status)) if status.success() => return Ok(()),
            Ok(Ok(status)) => format!("exited {status} after SIGTERM: {}", tail_file(&p.log)),
            Ok(Err(e)) => format!("could not be waited for: {e}"),
            Err(_) => {
                let _ = p.child.kill().await;
                format!("did not exit within {STOP_GRACE:?} of SIGTERM; killed")
            }
        };
        Err(StackError::Stop {
            id: id.to_string(),
            how,
        })
    }

    /// Forgets goproxy processes that exited (a failed start).
    pub async fn remove_exited(&self) {
        let mut procs = self.goproxies.lock().await;
        procs.retain_mut(|p| matches!(p.child.try_wait(), Ok(None)));
    }

    /// The design's "restart goproxy": stop the running one, start anew.
    pub async fn design_restart(&self) -> Result<String, StackError> {
        for id in self.ids().await {
            self.stop(&id).await?;
        }
        self.start_beside().await
    }

    /// GET goproxy's /health on `port` directly (nginx's view: on this host
    /// nginx and goproxy share the loopback).
    pub async fn get_direct(&self, port: u16) -> Result<String, StackError> {
        let url = format!("http://127.0.0.1:{port}/health");
        let resp = reqwest::get(&url)
            .await
            .map_err(|source| StackError::Http {
                what: format!("GET {url}"),
                source,
            })?;
        if resp.status() == 200 {
            Ok(format!("GET {url} -> 200"))
        } else {
            Err(StackError::HttpStatus {
                what: format!("GET {url}"),
                said: resp.status().to_string(),
            })
        }
    }

    pub async fn upstream_reachable(&self) -> Result<String, StackError> {
        match tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(self.mock_addr),
        )
        .await
        {
            Ok(Ok(_)) => Ok(format!(
                "the mock upstream at {} accepts connections",
                self.mock_addr
            )),
            Ok(Err(e)) => Err(StackError::Unreachable {
                target: self.mock_addr.to_string(),
                why: e.to_string(),
            }),
            Err(_) => Err(StackError::Unreachable {
                target: self.mock_addr.to_string(),
                why: "connect timed out".into(),
            }),
        }
    }

    /// The log files and their current sizes (a mark for `logs_since`).
    pub fn log_sizes(&self) -> Vec<(PathBuf, u64)> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .map(|p| {
                let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                (p, len)
            })
            .collect()
    }

    /// What each log file gained since `mark`.
    pub fn logs_since(&self, mark: &[(PathBuf, u64)]) -> Vec<(String, String)> {
        self.log_sizes()
            .into_iter()
            .map(|(path, _)| {
                let from = mark
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                let text = std::fs::read(&path).unwrap_or_default();
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let service = if name.starts_with("goproxy") {
                    "goproxy"
                } else {
                    "nginx"
                };
                (
                    service.to_string(),
                    String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned(),
                )
            })
            .collect()
    }

    /// goproxy processes that died without being stopped, and nginx if it did.
    pub async fn unexpected_exits(&self) -> u64 {
        let mut n = 0;
        for p in self.goproxies.lock().await.iter_mut() {
            if !matches!(p.child.try_wait(), Ok(None)) {
                n += 1;
            }
        }
        if !Path::new(&format!("/proc/{}", self.nginx_pid)).exists() {
            n += 1;
        }
        n
    }

    pub fn stop_upstream(&self) {
        self.mock.lock().expect("mock lock").take();
    }
}

// Inherent methods keep their names; the trait only routes to them.
#[async_trait::async_trait]
impl Backend for Local {
    fn describe(&self) -> String {
        format!("local processes in {}", self.dir.display())
    }

    fn where_goproxy_binds(&self) -> &'static str {
        "on this host"
    }

    fn shared_namespace(&self) -> bool {
        true
    }

    async fn published_ports(&self) -> Result<(u16, Option<u16>), StackError> {
        Ok((self.https_port, Some(self.mock_port())))
    }

    async fn goproxy_ids(&self, service: &str) -> Result<Vec<String>, StackError> {
        if service == "goproxy" {
            Ok(self.ids().await)
        } else {
            Ok(Vec::new())
        }
    }

    async fn listening_ports(&self, id: &str) -> Result<Vec<u16>, StackError> {
        Local::listening_ports(self, id).await
    }

    async fn listening_where_goproxy_binds(&self) -> Result<Vec<u16>, StackError> {
        Ok(self.host_listening())
    }

    async fn port_owner(&self, port: u16) -> String {
        Local::port_owner(self, port)
    }

    async fn check_config(&self, candidate: &Path) -> Result<Exec, StackError> {
        Local::check_config(self, candidate).await
    }

    async fn nginx_test(&self, candidate: &Path) -> Result<Exec, StackError> {
        Local::nginx_test(self, candidate).await
    }

    async fn reload_nginx(&self) -> Result<String, StackError> {
        Local::reload_nginx(self).await
    }

    async fn nginx_workers(&self) -> Result<Vec<String>, StackError> {
        Ok(Local::nginx_workers(self))
    }

    async fn occupy_port(&self, port: u16, _candidate_json: &str) -> Result<(), StackError> {
        Local::occupy_port(self, port)
    }

    async fn start_goproxy_beside(&self) -> Result<String, StackError> {
        self.start_beside().await
    }

    async fn wait_goproxy_healthy(
        &self,
        id: &str,
        deadline: Duration,
    ) -> Result<String, StackError> {
        self.wait_healthy(id, deadline).await
    }

    async fn remove_goproxy(&self, id: &str) {
        self.remove(id).await
    }

    async fn stop_goproxy(&self, id: &str) -> Result<(), StackError> {
        self.stop(id).await
    }

    async fn remove_exited_goproxy(&self) {
        self.remove_exited().await
    }

    async fn start_single_goproxy(&self) -> Result<String, StackError> {
        self.start_beside().await
    }

    async fn design_restart_goproxy(&self) -> Result<String, StackError> {
        self.design_restart().await
    }

    async fn restart_instance(&self, _service: &str) -> Result<String, StackError> {
        Err(StackError::Unsupported(
            "two goproxy instances need the container backend".into(),
        ))
    }

    async fn get_goproxy_as_nginx(&self, _service: &str, port: u16) -> Result<String, StackError> {
        self.get_direct(port).await
    }

    async fn upstream_reachable(&self) -> Result<String, StackError> {
        Local::upstream_reachable(self).await
    }

    fn log_mark(&self) -> LogMark {
        LogMark::Sizes(self.log_sizes())
    }

    async fn logs_since(&self, mark: &LogMark) -> Result<Vec<(String, String)>, StackError> {
        match mark {
            LogMark::Sizes(s) => Ok(Local::logs_since(self, s)),
            LogMark::Time(_) => Err(StackError::Unsupported(
                "a log mark of the container backend".into(),
            )),
        }
    }

    async fn restarts(&self) -> Result<u64, StackError> {
        Ok(self.unexpected_exits().await)
    }

    async fn stop_upstream(&self) -> Result<(), StackError> {
        Local::stop_upstream(self);
        Ok(())
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // SIGTERM to the master stops its workers too; a SIGKILL (what
        // kill_on_drop sends) would leave the workers running.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.nginx_pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let t0 = Instant::now();
        while Path::new(&format!("/proc/{}", self.nginx_pid)).exists()
            && t0.elapsed() < Duration::from_secs(3)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The deployed nginx.conf, made runnable on this host (see the module
/// docs), by span edits through the one nginx reader: a one-line block or
/// a quoted path is rewritten as surely as the stock layout.
pub fn localize(conf: &str, dir: &Path, tls_dir: &Path, https_port: u16, http_port: u16) -> String {
    use crate::nginx::render::{apply, Edit};
    use crate::nginx::{goproxy, NginxConfig};
    // A file nginx cannot read is passed on as is: `nginx -t` says why.
    let Ok(cfg) = NginxConfig::from_text(Path::new("nginx.conf"), conf) else {
        return conf.to_string();
    };
    let mut edits = Vec::new();
    let cert_dir = format!("{}/", crate::render::CERT_DIR);
    cfg.walk(&mut |d, _| {
        let Some(first) = d.args.first() else { return };
        let edit = |text: String| Edit {
            file: 0,
            span: first.span.clone(),
            text,
        };
        match d.name.as_str() {
            "listen" if first.value.starts_with('[') => edits.push(Edit {
                file: 0,
                span: d.span.clone(),
                text: String::new(),
            }),
            "listen" => edits.push(edit(local_listen(&first.value, https_port, http_port))),
            "pid" => edits.push(edit(format!("{}/nginx.pid", dir.display()))),
            _ => {
                for a in &d.args {
                    let Some(moved) = moved_path(&a.value, &cert_dir, dir, tls_dir) else {
                        continue;
                    };
                    edits.push(Edit {
                        file: 0,
                        span: a.span.clone(),
                        text: moved,
                    });
                }
            }
        }
    });
    let names = ["goproxy".to_string(), "goproxy-b".to_string()];
    for s in goproxy::sites(&cfg, &names) {
        edits.push(Edit {
            file: 0,
            span: s.host_span.clone(),
            text: "127.0.0.1".into(),
        });
    }
    apply(conf, &edits.iter().collect::<Vec<_>>())
}

/// A `listen` value on loopback: 443 and 80 become the stack's ports,
/// any other port is kept.
fn local_listen(value: &str, https_port: u16, http_port: u16) -> String {
    let port = value.rsplit(':').next().unwrap_or(value);
    let port = match port {
        "443" => https_port.to_string(),
        "80" => http_port.to_string(),
        other => other.to_string(),
    };
    format!("127.0.0.1:{port}")
}

/// A log path moved under `dir`, a certificate path under `tls_dir`;
/// `None` for any other value.
fn moved_path(v: &str, cert_dir: &str, dir: &Path, tls_dir: &Path) -> Option<String> {
    if let Some(rest) = v.strip_prefix("/var/log/nginx/") {
        Some(format!("{}/{rest}", dir.display()))
    } else {
        v.strip_prefix(cert_dir)
            .map(|rest| format!("{}/{rest}", tls_dir.display()))
    }
}

fn write_localized(
    from: &Path,
    to: &Path,
    dir: &Path,
    tls_dir: &Path,
    https_port: u16,
    http_port: u16,
) -> Result<(), StackError> {
    let conf = std::fs::read_to_string(from).map_err(|e| StackError::io("read", from, e))?;
    std::fs::write(to, localize(&conf, dir, tls_dir, https_port, http_port))
        .map_err(|e| StackError::io("write", to, e))
}

/// Starts `cmd` with stdout and stderr into `log`; killed when dropped.
fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Child, StackError> {
    let file = std::fs::File::create(log).map_err(|e| StackError::io("create", log, e))?;
    let stdout = file
        .try_clone()
        .map_err(|e| StackError::io("open", log, e))?;
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| StackError::Spawn {
            action: "start",
            program: format!("{:?}", cmd.as_std().get_program()),
            source,
        })
}

async fn run(cmd: &mut Command) -> Result<Exec, StackError> {
    let out = cmd.output().await.map_err(|source| StackError::Spawn {
        action: "run",
        program: format!("{cmd:?}"),
        source,
    })?;
    Ok(Exec {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn pid_of(id: &str) -> Result<u32, StackError> {
    id.strip_prefix("pid:")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| StackError::Unsupported(format!("`{id}` is not a local process id")))
}

/// Inodes of the sockets a process has open.
fn socket_inodes(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_string_lossy()
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect()
}

/// LISTEN ports of the host whose socket inode is in `inodes`.
fn listening_with_inodes(inodes: &[String]) -> Vec<u16> {
    let text = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect::<String>();
    let rows: String = text
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(9)
                .is_some_and(|i| inodes.iter().any(|x| x == i))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    parse_listening(&rows)
}

/// Until something listens on `port`; the deadline it ran out at if not.
async fn wait_port(port: u16, deadline: Duration) -> Result<(), Duration> {
    poll_until(deadline, Duration::from_millis(50), || async {
        let open = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok();
        Ok::<_, ()>(if open {
            Attempt::Ready(())
        } else {
            Attempt::NotYet(())
        })
    })
    .await
    .map_err(|_| deadline)
}

fn free_port() -> Result<u16, StackError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| StackError::Bind {
            what: "no free loopback port".into(),
            source,
        })
}

fn tail_file(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only what cannot run outside a container changes.
    #[test]
    fn localize_moves_listens_paths_and_the_service_name() {
        let conf = "\
pid /run/nginx.pid;
error_log /var/log/nginx/error.log warn;
http {
    upstream goproxy {
        server goproxy:8004;  # note
    }
    server {
        listen 80 default_server;
        listen [::]:80 default_server;
    }
    server {
        listen 443 ssl http2;
        ssl_certificate /etc/letsencrypt/live/chat.trollllm.xyz/fullchain.pem;
    }
}
";
        let out = localize(
            conf,
            Path::new("/run/x"),
            Path::new("/run/x/tls"),
            4443,
            8080,
        );
        assert!(out.contains("pid /run/x/nginx.pid;\n"), "{out}");
        assert!(out.contains("error_log /run/x/error.log warn;"), "{out}");
        assert!(out.contains("server 127.0.0.1:8004;  # note"), "{out}");
        assert!(
            out.contains("listen 127.0.0.1:8080 default_server;"),
            "{out}"
        );
        assert!(!out.contains("[::]"), "{out}");
        assert!(out.contains("listen 127.0.0.1:4443 ssl http2;"), "{out}");
        assert!(
            out.contains("ssl_certificate /run/x/tls/fullchain.pem;"),
            "{out}"
        );
    }
}
