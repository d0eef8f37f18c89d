//! The cells of issue 12, side by side in the same run as the rest: a
//! ~90 KB agent-style request at concurrency 1, small-request throughput
//! at concurrency 16 with every process unpinned, CPU time per relayed SSE
//! event (goproxy vs nginx, each straight to the mock), RSS growth while
//! goproxy relays a 1 GiB non-SSE body, and the verdicts against the
//! issue's targets (the RSS at 1024 streams comes from the hold cells).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::load;
use crate::procs::{self, Env};
use crate::report::Figures;
use crate::stats::{paired_diff, paired_ratio, quantile, Spread};
use crate::Args;

/// Size of the non-SSE body relayed in the RSS cell.
const BIG_BODY: u64 = 1 << 30;
const BIG_PIECE: usize = 64 * 1024;

/// A ~90 KB agent-style request: 200 messages and 20 tools.
pub fn agent_body() -> Bytes {
    let text = "Refactor the handler so that errors are mapped in one place; keep the public API. ";
    let messages: Vec<_> = (0..200)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            json!({"role": role, "content": format!("{i}: {}", text.repeat(5))})
        })
        .collect();
    let tools: Vec<_> = (0..20)
        .map(|i| {
            json!({"type": "function", "function": {
                "name": format!("tool_{i}"),
                "description": "Read a file of the repository and return its text, or an error.",
                "parameters": {"type": "object", "properties": {
                    "path": {"type": "string", "description": "path relative to the root"},
                    "max_bytes": {"type": "integer", "minimum": 1}
                }, "required": ["path"]}
            }})
        })
        .collect();
    let body =
        json!({"model": "bench-model", "stream": false, "messages": messages, "tools": tools});
    Bytes::from(body.to_string())
}

/// A local upstream that answers every request with a 1 GiB JSON-ish body
/// (spaces, then a usage object), chunk by chunk as fast as it is read.
#[derive(Debug)]
pub struct BigBody {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BigBody {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BigBody {
    /// Listen on a free loopback port.
    pub async fn start() -> anyhow::Result<BigBody> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(answer_big(sock));
            }
        });
        Ok(BigBody { addr, task })
    }
}

async fn answer_big(mut sock: TcpStream) {
    // Read the request head and its content-length body.
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    let head_end = loop {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if let Some(p) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while seen.len() < head_end + len {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let usage = br#"{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        BIG_BODY + usage.len() as u64
    );
    let piece = vec![b' '; BIG_PIECE];
    if sock.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for _ in 0..BIG_BODY / BIG_PIECE as u64 {
        if sock.write_all(&piece).await.is_err() {
            return;
        }
    }
    let _ = sock.write_all(usage).await;
}

/// Sample a process's peak RSS (kB) every 20 ms until stopped.
fn rss_sampler(pid: u32) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let run = Arc::new(AtomicBool::new(true));
    let flag = run.clone();
    let task = tokio::spawn(async move {
        let mut peak = 0;
        while flag.load(Ordering::Relaxed) {
            peak = peak.max(procs::rss_kb(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    });
    (run, task)
}

/// RSS growth of goproxy (pid) while one client reads a 1 GiB body through it.
pub async fn big_body_rss(goproxy: SocketAddr, pid: u32, f: &mut Figures) -> anyhow::Result<()> {
    let before = procs::rss_kb(pid).unwrap_or(0);
    let (run, sampler) = rss_sampler(pid);
    let body = Bytes::from_static(br#"{"model":"big-model","messages":[]}"#);
    let t0 = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(120), load::read_whole(goproxy, body)).await;
    run.store(false, Ordering::Relaxed);
    let peak = sampler.await.unwrap_or(0);
    let bytes = got.context("the 1 GiB body took over 120 s")??;
    let secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        bytes >= BIG_BODY,
        "only {bytes} bytes of the 1 GiB body arrived"
    );
    let growth = peak.saturating_sub(before) as f64 / 1024.0;
    f.push("big_body/rss_growth_mb", growth);
    f.push("big_body/mb_per_s", bytes as f64 / 1e6 / secs);
    crate::log(format!(
        "1 GiB body through goproxy: RSS {:.1} -> peak {:.1} MB (+{growth:.1} MB), {:.0} MB/s",
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        bytes as f64 / 1e6 / secs
    ));
    Ok(())
}

/// What of the ~90 KB request's added time is goproxy's own reading of
/// it: its scan of the body's top level ([`proxy::toplevel::members`]),
/// in process, in microseconds a scan: the fastest of 5 rounds of 200
/// scans (the fastest, as the least disturbed by the machine).
fn scan_micros(body: &[u8]) -> anyhow::Result<f64> {
    let text = std::str::from_utf8(body)?;
    proxy::toplevel::members(text).map_err(|e| anyhow::anyhow!("the agent body: {e}"))?;
    let round = || {
        let started = std::time::Instant::now();
        for _ in 0..200 {
            std::hint::black_box(proxy::toplevel::members(std::hint::black_box(text)).ok());
        }
        started.elapsed().as_secs_f64() * 1e6 / 200.0
    };
    Ok((0..5).map(|_| round()).fold(f64::INFINITY, f64::min))
}

/// The ~90 KB request at concurrency 1, direct, through goproxy and nginx
/// (and LiteLLM when it is in `addrs`), one request to each in turn
/// ([`load::interleaved`]). The mock answers at once here: its fixed delay
/// is a millisecond-tick tokio timer whose 1-2 ms jitter is ten times the
/// 0.1 ms this cell has to resolve.
pub async fn big_request(
    args: &Args,
    addrs: &BTreeMap<&str, SocketAddr>,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let immediate =
        json!({"chunks": 1, "chunk_delay_ms": 0, "first_chunk_delay_ms": 0, "fault": "none"});
    load::configure_mock(addrs["direct"], immediate).await?;
    let body = agent_body();
    let warmup = Duration::from_secs_f64(args.warmup_secs);
    let duration = Duration::from_secs_f64(args.duration_secs);
    let targets: Vec<&str> = ["direct", "goproxy", "nginx", "litellm"]
        .into_iter()
        .filter(|t| addrs.contains_key(t))
        .collect();
    let to: Vec<SocketAddr> = targets.iter().map(|t| addrs[t]).collect();
    for run in 0..args.runs {
        let scan = scan_micros(&body)?;
        f.push("big_request/goproxy_scan_us", scan);
        crate::log(format!(
            "run {} 90KB goproxy's body scan {scan:.1} us",
            run + 1
        ));
        let cells = load::interleaved(&to, warmup, duration, body.clone()).await;
        for (target, cell) in targets.iter().zip(cells) {
            let p50 = quantile(&cell.latency, 0.5) as f64 / 1e6;
            f.push(format!("big_request/{target}/p50_ms"), p50);
            f.push(format!("big_request/{target}/errors"), cell.errors as f64);
            crate::log(format!(
                "run {} 90KB c1 {target:<8} p50 {p50:.3} ms, {} requests, {} errors{}",
                run + 1,
                cell.latency.len(),
                cell.errors,
                cell.first_error
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// Concurrent streams of the SSE CPU cell.
pub const SSE_STREAMS: usize = 128;
/// Content events per stream of the SSE CPU cell.
pub const SSE_EVENTS: usize = 400;

/// CPU time per relayed SSE event: goproxy and nginx (and LiteLLM), each
/// straight to the mock, 128 concurrent streams of 400 events 10 ms apart.
/// Each target is its name, address and the pids whose CPU time counts.
pub async fn sse_cpu(
    mock: SocketAddr,
    targets: &[(&'static str, SocketAddr, Vec<u32>)],
    runs: usize,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let config = json!({"chunks": SSE_EVENTS, "chunk_delay_ms": 10, "first_chunk_delay_ms": 0, "fault": "none"});
    for run in 0..runs {
        for i in 0..targets.len() {
            let (name, addr, pids) = &targets[(i + run) % targets.len()];
            load::configure_mock(mock, config.clone()).await?;
            let meter = procs::CpuMeter::start(pids);
            let traces = load::concurrent_streams(*addr, SSE_STREAMS).await;
            let (ns, how) = meter.stop();
            let events: usize = traces.iter().map(|t| t.content.len()).sum();
            let us = ns as f64 / 1e3 / events.max(1) as f64;
            f.push(format!("sse_cpu/{name}/us_per_event"), us);
            // A server that cannot keep up relays fewer events (a stream
            // ends at the 10 s request timeout): the count says so.
            f.push(format!("sse_cpu/{name}/events"), events as f64);
            crate::log(format!(
                "run {} SSE CPU {name:<8} {how} for {events} events: {us:.2} us/event",
                run + 1
            ));
        }
    }
    Ok(())
}

/// Small-request throughput at concurrency 16 with nothing pinned: fresh
/// servers allowed on every CPU (`taskset -c 0-<n-1>`), and the bench's own
/// threads re-allowed on every CPU for the duration.
pub async fn unpinned_c16(args: &Args, env: &Env, f: &mut Figures) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all = format!("0-{}", cpus.max(2) - 1);
    let env = Env {
        server_cpus: Some(all.clone()),
        ..env.clone()
    };
    let pid = std::process::id().to_string();
    let previous = affinity(&pid);
    let _ = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &all, &pid])
        .output();
    let mock = env.mock(args.delay_ms)?;
    let goproxy = env.goproxy(mock.addr, load::CLIENT_KEY, None)?;
    let (nginx, listens) = env.nginx(&[mock.addr])?;
    let addrs = [
        ("direct", mock.addr),
        ("goproxy", goproxy.addr),
        ("nginx", listens[0]),
    ];
    let mut nginx_pids = vec![nginx.pid()];
    nginx_pids.extend(procs::children(nginx.pid()));
    let proxy_pids = |target: &str| match target {
        "goproxy" => vec![goproxy.pid()],
        "nginx" => nginx_pids.clone(),
        _ => Vec::new(),
    };
    for run in 0..args.runs {
        for i in 0..3 {
            let (target, addr) = addrs[(i + run) % 3];
            let pids = proxy_pids(target);
            let m = metered_c16(args, addr, &pids, mock.pid()).await;
            m.record(f, run, target, !pids.is_empty());
        }
    }
    drop((nginx, goproxy, mock));
    if let Some(prev) = previous {
        let _ = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &prev, &pid])
            .output();
    }
    Ok(())
}

/// One c16 closed loop, with where the CPU went: the proxy's own CPU time
/// and context switches per request (over warm-up and measured time
/// alike, so per request at the cell's rate), and the mock's CPU time.
struct Metered {
    cell: load::Cell,
    cpu_us: f64,
    mock_us: f64,
    switches: f64,
}

async fn metered_c16(args: &Args, addr: SocketAddr, pids: &[u32], mock: u32) -> Metered {
    let warmup = Duration::from_secs_f64(args.warmup_secs);
    let duration = Duration::from_secs_f64(args.duration_secs);
    let (cpu, mock_cpu) = (
        procs::CpuMeter::start(pids),
        procs::CpuMeter::start(&[mock]),
    );
    let switches = procs::context_switches(pids);
    let cell = load::closed_loop(addr, 16, warmup, duration).await;
    let requests = cell.throughput * (warmup + duration).as_secs_f64();
    let per_req = |x: f64| x / requests.max(1.0);
    Metered {
        cpu_us: per_req(cpu.stop().0 as f64 / 1e3),
        mock_us: per_req(mock_cpu.stop().0 as f64 / 1e3),
        switches: per_req(procs::context_switches(pids).saturating_sub(switches) as f64),
        cell,
    }
}

impl Metered {
    /// Into the figures and the log; the proxy's own figures only for a
    /// proxy (`direct` has none).
    fn record(&self, f: &mut Figures, run: usize, target: &str, proxy: bool) {
        let Metered {
            cell,
            cpu_us,
            mock_us,
            switches,
        } = self;
        let p99 = quantile(&cell.latency, 0.99) as f64 / 1e6;
        let key = |name: &str| format!("unpinned/c16/{target}/{name}");
        f.push(key("rps"), cell.throughput);
        f.push(key("p99_ms"), p99);
        f.push(key("mock_cpu_us_per_req"), *mock_us);
        if proxy {
            f.push(key("cpu_us_per_req"), *cpu_us);
            f.push(key("switches_per_req"), *switches);
        }
        crate::log(format!(
            "run {} unpinned c16 {target:<8} {:.0} req/s, p99 {p99:.3} ms, {} errors; \
             per request: proxy {cpu_us:.1} us on CPU and {switches:.2} context switches, mock {mock_us:.1} us",
            run + 1,
            cell.throughput,
            cell.errors
        ));
    }
}

/// The CPU list a process may run on (`taskset -c -p`), e.g. `0`.
fn affinity(pid: &str) -> Option<String> {
    let out = std::process::Command::new("taskset")
        .args(["-c", "-p", pid])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.rsplit(':')
        .next()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// One line of the verdict table: name, figure, decimals, target, met.
type Row = (
    &'static str,
    Option<Spread>,
    usize,
    &'static str,
    Option<bool>,
);

/// The figure under key `k`, over runs.
fn spread(f: &Figures, k: &str) -> Option<Spread> {
    Spread::of(f.get(k))
}

/// `a - b`, paired per run.
fn diff(f: &Figures, a: &str, b: &str) -> Option<Spread> {
    Spread::of(&paired_diff(f.get(a), f.get(b)))
}

/// `a / b`, paired per run.
fn ratio(f: &Figures, a: &str, b: &str) -> Option<Spread> {
    Spread::of(&paired_ratio(f.get(a), f.get(b)))
}

/// What goproxy adds to a big request, and its throughput against nginx's.
fn latency_rows(f: &Figures) -> [Row; 5] {
    let added = diff(f, "big_request/goproxy/p50_ms", "big_request/direct/p50_ms");
    let added_ng = diff(f, "big_request/nginx/p50_ms", "big_request/direct/p50_ms");
    let pinned = ratio(f, "latency/c16/goproxy/rps", "latency/c16/nginx/rps");
    let unpinned = ratio(f, "unpinned/c16/goproxy/rps", "unpinned/c16/nginx/rps");
    [
        (
            "90 KB request, added p50 at c1 (ms), goproxy",
            added,
            3,
            "< 0.1",
            added.map(|s| s.median < 0.1),
        ),
        (
            "90 KB request, added p50 at c1 (ms), nginx",
            added_ng,
            3,
            "(baseline)",
            None,
        ),
        (
            "90 KB request: goproxy's body scan, in process (us)",
            spread(f, "big_request/goproxy_scan_us"),
            1,
            "",
            None,
        ),
        (
            "c16 throughput goproxy / nginx, pinned",
            pinned,
            2,
            ">= 1.0",
            pinned.map(|s| s.median >= 1.0),
        ),
        (
            "c16 throughput goproxy / nginx, unpinned",
            unpinned,
            2,
            ">= 1.0",
            unpinned.map(|s| s.median >= 1.0),
        ),
    ]
}

/// What each proxy spent per request in the unpinned cell (no verdict:
/// they say where the throughput went).
fn unpinned_cost_rows(f: &Figures) -> [Row; 2] {
    let row = |name, key: &str| (name, spread(f, key), 1, "", None);
    [
        row(
            "c16 unpinned: goproxy CPU per request (us)",
            "unpinned/c16/goproxy/cpu_us_per_req",
        ),
        row(
            "c16 unpinned: nginx CPU per request (us)",
            "unpinned/c16/nginx/cpu_us_per_req",
        ),
    ]
}

/// What goproxy costs: CPU per relayed event and memory.
fn resource_rows(f: &Figures) -> [Row; 4] {
    let cpu = ratio(
        f,
        "sse_cpu/goproxy/us_per_event",
        "sse_cpu/nginx/us_per_event",
    );
    let rss = spread(f, "big_body/rss_growth_mb");
    let streams = spread(f, "hold/n1024/goproxy/goproxy_rss_peak_mb");
    [
        (
            "SSE CPU per event goproxy / nginx",
            cpu,
            2,
            "<= 1.0",
            cpu.map(|s| s.median <= 1.0),
        ),
        (
            "SSE CPU per event goproxy (us)",
            spread(f, "sse_cpu/goproxy/us_per_event"),
            2,
            "",
            None,
        ),
        (
            "RSS growth relaying a 1 GiB body (MB)",
            rss,
            1,
            "< 16",
            rss.map(|s| s.median < 16.0),
        ),
        (
            "goproxy RSS peak at 1024 streams (MB)",
            streams,
            1,
            "< 64",
            streams.map(|s| s.median < 64.0),
        ),
    ]
}

/// The issue-12 section of the report: each figure, its target and verdict.
pub fn markdown(f: &Figures) -> String {
    let rows = latency_rows(f)
        .into_iter()
        .chain(unpinned_cost_rows(f))
        .chain(resource_rows(f));
    let mut out = String::from(
        "\n## Issue 12 targets\n\nmedian [min..max] over runs; ratios and differences paired per run.\n\n| figure | measured | target | status |\n| --- | --- | --- | --- |\n",
    );
    for (name, s, decimals, target, met) in rows {
        let measured = s.map_or_else(|| "-".to_owned(), |s| s.fmt(decimals));
        let status = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        let _ = writeln!(out, "| {name} | {measured} | {target} | {status} |");
    }
    out
}
