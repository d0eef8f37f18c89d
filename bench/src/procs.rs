//! The processes under test, all local on loopback: the mock upstream,
//! goproxy and nginx (and LiteLLM, `litellm.rs`), started from generated configs in a temp dir and
//! stopped (with their children) when dropped.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Where the binaries and the scratch files are, and how to pin servers.
#[derive(Debug, Clone)]
pub struct Env {
    /// `target/release` (holds `goproxy` and `mock-upstream`).
    pub bin_dir: PathBuf,
    /// Temp dir for configs and logs.
    pub dir: PathBuf,
    /// `taskset -c <cpus>` prefix for every server, if set.
    pub server_cpus: Option<String>,
    /// Per-request logs off (goproxy `RUST_LOG=warn`, nginx `access_log off`).
    pub quiet_logs: bool,
}

/// A running server process; stopped with SIGTERM (then SIGKILL) on drop.
#[derive(Debug)]
pub struct Server {
    /// Short name for messages.
    pub name: &'static str,
    /// Address it listens on (the first one, for nginx).
    pub addr: SocketAddr,
    child: Child,
}

impl Server {
    /// Process id (nginx: the master).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in kB from `/proc/<pid>/status` (`VmRSS`).
    pub fn rss_kb(&self) -> Option<u64> {
        rss_kb(self.pid())
    }

    /// Its exit status if it has already exited (a server that died at start).
    pub fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // One that died at start is only reaped (no `kill` of a stale pid).
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` of a process in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU time (user + system, all threads) of a process in clock ticks
/// (`/proc/<pid>/stat` fields 14 and 15; 100 ticks a second on Linux).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU time of a set of processes over an interval: per-thread on-CPU
/// nanoseconds (`/proc/<pid>/task/<tid>/schedstat`), exact where clock
/// ticks are 10 ms, 1% of a whole SSE CPU cell. If a thread exits in the
/// interval its time would be lost, so the ticks of `/proc/<pid>/stat`
/// (which keep it) are used instead.
#[derive(Debug)]
pub struct CpuMeter {
    pids: Vec<u32>,
    ticks: u64,
    threads: Vec<BTreeMap<u32, u64>>,
}

impl CpuMeter {
    /// Read the counters now.
    pub fn start(pids: &[u32]) -> CpuMeter {
        CpuMeter {
            pids: pids.to_vec(),
            ticks: ticks_of(pids),
            threads: pids.iter().map(|p| thread_cpu_ns(*p)).collect(),
        }
    }

    /// Nanoseconds used since [`CpuMeter::start`], and how they were read.
    pub fn stop(self) -> (u64, String) {
        let ticks = ticks_of(&self.pids).saturating_sub(self.ticks);
        let exact: Option<u64> = self
            .pids
            .iter()
            .zip(&self.threads)
            .map(|(p, before)| {
                let after = thread_cpu_ns(*p);
                if before.keys().any(|tid| !after.contains_key(tid)) {
                    return None;
                }
                Some(
                    after
                        .iter()
                        .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
                        .sum::<u64>(),
                )
            })
            .sum();
        match exact {
            Some(ns) => (ns, format!("{:.1} ms on CPU", ns as f64 / 1e6)),
            // USER_HZ is 100: a tick is 10 ms.
            None => (
                ticks * 10_000_000,
                format!("{ticks} ticks (a thread exited)"),
            ),
        }
    }
}

fn ticks_of(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|p| cpu_ticks(*p)).sum()
}

/// On-CPU nanoseconds of each thread of a process.
fn thread_cpu_ns(pid: u32) -> BTreeMap<u32, u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return BTreeMap::new();
    };
    dir.filter_map(|e| {
        let tid = e.ok()?.file_name().to_str()?.parse::<u32>().ok()?;
        let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
        Some((tid, s.split_whitespace().next()?.parse().ok()?))
    })
    .collect()
}

/// Context switches of every thread of the processes, voluntary (a thread
/// waited: for I/O, a lock, a timer) and not (preempted), summed.
pub fn context_switches(pids: &[u32]) -> u64 {
    let of_thread = |status: String| -> u64 {
        status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    pids.iter()
        .flat_map(|p| {
            let tasks = std::fs::read_dir(format!("/proc/{p}/task"))
                .into_iter()
                .flatten();
            tasks.filter_map(move |e| {
                let tid = e.ok()?.file_name();
                let path = format!("/proc/{p}/task/{}/status", tid.to_str()?);
                std::fs::read_to_string(path).ok().map(of_thread)
            })
        })
        .sum()
}

/// Direct children of a process (nginx's workers under its master).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s[s.rfind(')')? + 2..].to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// The CPUs in a `taskset -c` list such as `1`, `0-3` or `0,2-3` (at
/// least one).
pub fn cpu_count(list: &str) -> usize {
    let count: usize = list
        .split(',')
        .map(|part| match part.trim().split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum();
    count.max(1)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Env {
    /// How many CPUs the servers may use: those of `server_cpus`, or all.
    pub fn cpus(&self) -> usize {
        match &self.server_cpus {
            Some(list) => cpu_count(list),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// `program`, under `taskset -c <server_cpus>` when the servers are pinned.
    pub(crate) fn command(&self, program: &Path) -> Command {
        match &self.server_cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Start `cmd` with stdout and stderr to `<dir>/<name>.log`, without
    /// waiting for it; returns the server and its log's path.
    pub(crate) fn launch(
        &self,
        name: &'static str,
        mut cmd: Command,
        addr: SocketAddr,
    ) -> anyhow::Result<(Server, PathBuf)> {
        let log = self.dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok((Server { name, addr, child }, log))
    }

    fn spawn(&self, name: &'static str, cmd: Command, addr: SocketAddr) -> anyhow::Result<Server> {
        let (mut server, log) = self.launch(name, cmd, addr)?;
        wait_listening(&mut server, &log)?;
        Ok(server)
    }

    /// The mock upstream on a free loopback port.
    pub fn mock(&self, first_chunk_delay_ms: u64) -> anyhow::Result<Server> {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let mut cmd = self.command(&self.bin_dir.join("mock-upstream"));
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--first-chunk-delay-ms")
            .arg(first_chunk_delay_ms.to_string())
            .env("RUST_LOG", "warn");
        self.spawn("mock-upstream", cmd, addr)
    }

    /// goproxy in front of `mock`, from a config in the operators' format
    /// (`proxy/config-ohmygpt-prod.json`: endpoints `<line>-openai` and
    /// `<line>-anthropic`, keys from the environment).
    /// With `big`, an endpoint `big-openai` and a model `big-model` go to
    /// that server (the 1 GiB body cell).
    pub fn goproxy(
        &self,
        mock: SocketAddr,
        client_key: &str,
        big: Option<SocketAddr>,
    ) -> anyhow::Result<Server> {
        let port = free_port()?;
        let mut config = serde_json::json!({
            "_comment": "generated by bench: goproxy in front of the local mock-upstream",
            "port": port,
            "host": "127.0.0.1",
            "endpoints": [
                {"name": "bench-openai", "base_url": format!("http://{mock}/v1/chat/completions"),
                 "api_key_env": ["BENCH_UPSTREAM_KEY"]},
                {"name": "bench-anthropic", "base_url": format!("http://{mock}/v1/messages"),
                 "api_key_env": ["BENCH_UPSTREAM_KEY"]}
            ],
            "models": [
                {"id": "bench-model", "name": "Bench model", "id_aliases": [], "type": "openai",
                 "upstream": "bench", "upstream_model_id": "mock-model",
                 "input_price_per_mtok": 1.0, "output_price_per_mtok": 2.0,
                 "billing_multiplier": 1.0}
            ]
        });
        if let Some(big) = big {
            config["endpoints"]
                .as_array_mut()
                .expect("a list")
                .push(serde_json::json!(
                    {"name": "big-openai", "base_url": format!("http://{big}/v1/chat/completions")}
                ));
            config["models"]
                .as_array_mut()
                .expect("a list")
                .push(serde_json::json!(
                    {"id": "big-model", "type": "openai", "upstream": "big"}
                ));
        }
        let path = self.dir.join(format!("goproxy-{port}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        let mut cmd = self.command(&self.bin_dir.join("goproxy"));
        cmd.arg("--config")
            .arg(&path)
            .env("PROXY_API_KEY", client_key)
            .env("BENCH_UPSTREAM_KEY", "bench-upstream-key")
            .env("RUST_LOG", if self.quiet_logs { "warn" } else { "info" });
        self.spawn("goproxy", cmd, ([127, 0, 0, 1], port).into())
    }

    /// One nginx, with a worker per server CPU (as `worker_processes auto`
    /// in the deployed config; goproxy runs an event loop per CPU), and a `proxy_pass` server per backend, in the deployed `location /`
    /// settings (`nginx/nginx.conf`, without TLS). Returns the server and
    /// the listen address for each backend, in order.
    pub fn nginx(&self, backends: &[SocketAddr]) -> anyhow::Result<(Server, Vec<SocketAddr>)> {
        let root = self.dir.join("nginx");
        std::fs::create_dir_all(root.join("logs"))?;
        let (conf, listens) = nginx_conf(&root, self.quiet_logs, self.cpus(), backends)?;
        let path = root.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let nginx =
            which("nginx").context("nginx not found (bench/run.sh installs nginx-light)")?;
        let mut cmd = self.command(&nginx);
        cmd.arg("-p")
            .arg(&root)
            .arg("-e")
            .arg(root.join("logs/error.log"))
            .arg("-c")
            .arg(&path)
            .arg("-g")
            .arg("daemon off;");
        let server = self.spawn("nginx", cmd, listens[0])?;
        for l in &listens[1..] {
            wait_port(*l, Duration::from_secs(5))?;
        }
        Ok((server, listens))
    }
}

/// First match of `name` on `PATH` (or in /usr/sbin, where nginx lives).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn wait_port(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on {addr} after {timeout:?}")
}

fn wait_listening(server: &mut Server, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = server.child.try_wait()? {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{} exited with {status} at start:\n{text}", server.name);
        }
        if std::net::TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "{} did not listen on {} within 10 s",
        server.name,
        server.addr
    )
}

/// The upstream `b{i}` (keep-alive to `backend`) and the server on `listen`
/// that proxies to it, unbuffered as deployed.
fn server_block(i: usize, backend: SocketAddr, listen: SocketAddr) -> String {
    format!(
        "upstream b{i} {{ server {backend}; keepalive 32; keepalive_timeout 60s; keepalive_requests 10000; }}\n\
             server {{\n\
               listen {listen};\n\
               client_max_body_size 20m;\n\
               location / {{\n\
                 proxy_pass http://b{i};\n\
                 proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n\
                 proxy_set_header Host $host;\n\
                 proxy_set_header X-Real-IP $remote_addr;\n\
                 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                 proxy_set_header X-Forwarded-Proto $scheme;\n\
                 proxy_buffering off;\n\
                 proxy_cache off;\n\
                 proxy_request_buffering off;\n\
                 proxy_connect_timeout 5s;\n\
                 proxy_read_timeout 300s;\n\
                 proxy_send_timeout 300s;\n\
               }}\n\
             }}\n"
    )
}

/// nginx's config for the bench: `workers` workers, proxying to each backend on a
/// free loopback port (returned in order), buffering off as deployed.
fn nginx_conf(
    root: &Path,
    quiet_logs: bool,
    workers: usize,
    backends: &[SocketAddr],
) -> anyhow::Result<(String, Vec<SocketAddr>)> {
    let access = if quiet_logs {
        "access_log off;".to_owned()
    } else {
        format!(
            "log_format upstream_timing '$remote_addr - [$time_local] \"$request\" $status $body_bytes_sent '\n\
             'rt=$request_time uct=$upstream_connect_time urt=$upstream_response_time '\n\
             'ua=\"$upstream_addr\" us=$upstream_status';\n\
             access_log {}/logs/access.log upstream_timing;",
            root.display()
        )
    };
    let mut conf = format!(
        "worker_processes {workers};\n\
         worker_rlimit_nofile 65536;\n\
         pid {root}/nginx.pid;\n\
         error_log {root}/logs/error.log warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n\
         client_body_temp_path {root}/client_body;\n\
         proxy_temp_path {root}/proxy;\n\
         fastcgi_temp_path {root}/fastcgi;\n\
         uwsgi_temp_path {root}/uwsgi;\n\
         scgi_temp_path {root}/scgi;\n\
         sendfile on;\n\
         tcp_nodelay on;\n\
         keepalive_requests 1000000;\n\
         {access}\n",
        root = root.display(),
    );
    let mut listens = Vec::new();
    for (i, backend) in backends.iter().enumerate() {
        let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        listens.push(listen);
        conf.push_str(&server_block(i, *backend, listen));
    }
    conf.push_str("}\n");
    Ok((conf, listens))
}
