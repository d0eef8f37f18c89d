//! `bench`: goproxy's figures measured side by side with their baselines in
//! one run (direct to the mock, nginx `proxy_pass`, nginx + goproxy, and
//! with `--litellm` LiteLLM as a peer), plus the gate's switch and rollback
//! figures read from `harness validate`.
//! Prints a table and writes `bench.md` and `bench.json`.

mod cells;
mod gate;
mod litellm;
mod load;
mod procs;
mod report;
mod stats;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::json;

use crate::load::StreamTrace;
use crate::report::Figures;
use crate::stats::quantile;

/// Side-by-side figures for goproxy against direct and nginx baselines.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    /// Directory with the release binaries (`goproxy`, `mock-upstream`, `harness`).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where `bench.md` and `bench.json` are written.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Runs per cell (each figure is reported as median [min..max] over runs).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Measured seconds per latency cell.
    #[arg(long, default_value_t = 3.0)]
    duration_secs: f64,
    /// Unrecorded warm-up seconds before each latency cell.
    #[arg(long, default_value_t = 0.5)]
    warmup_secs: f64,
    /// Concurrency levels of the latency cells.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// The mock's fixed delay before a non-streamed answer, ms.
    #[arg(long, default_value_t = 1)]
    delay_ms: u64,
    /// Content chunks per stream in the time-to-first-chunk cells.
    #[arg(long, default_value_t = 8)]
    stream_chunks: usize,
    /// The mock's pause between content chunks, ms (a stall is a gap over twice this).
    #[arg(long, default_value_t = 20)]
    chunk_delay_ms: u64,
    /// Sequential streams per target per run in the time-to-first-chunk cells.
    #[arg(long, default_value_t = 30)]
    ttfb_streams: usize,
    /// Concurrent stream counts of the hold cells.
    #[arg(long, value_delimiter = ',', default_value = "128,512,1024")]
    hold: Vec<usize>,
    /// Content chunks per stream in the hold cells.
    #[arg(long, default_value_t = 50)]
    hold_chunks: usize,
    /// Pin every server (mock, goproxy, nginx) to these CPUs with `taskset -c`
    /// (run the bench itself under `taskset` on the others).
    #[arg(long)]
    server_cpus: Option<String>,
    /// Per-request logs off (default: as deployed, goproxy at `info`, nginx access log on).
    #[arg(long)]
    quiet_logs: bool,
    /// `harness validate` runs of the default scenario (0 skips the gate).
    #[arg(long, default_value_t = 3)]
    gate_runs: usize,
    /// `harness validate` runs of `scenarios/rollback-on-demand.toml`.
    #[arg(long, default_value_t = 3)]
    rollback_runs: usize,
    /// Skip the proxy measurements (only the gate).
    #[arg(long)]
    gate_only: bool,
    /// Also measure LiteLLM as a peer of goproxy and nginx (installed by
    /// `bash bench/litellm/setup.sh`; `bench/run.sh --litellm` runs it).
    #[arg(long)]
    litellm: bool,
    /// The venv of `bench/litellm/setup.sh`.
    #[arg(long, env = "LITELLM_VENV", default_value = litellm::DEFAULT_VENV)]
    litellm_venv: PathBuf,
}

/// The four ways to reach the mock.
const TARGETS: [&str; 4] = ["direct", "goproxy", "nginx", "nginx+goproxy"];

/// The targets of the latency and streaming cells: the four, and LiteLLM
/// when it is measured.
pub fn targets(litellm: bool) -> Vec<&'static str> {
    let mut t = TARGETS.to_vec();
    if litellm {
        t.push("litellm");
    }
    t
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    // Before anything starts: a missing install fails at once, with the fix.
    let litellm = match args.litellm && !args.gate_only {
        true => Some(litellm::Install::find(&args.litellm_venv)?),
        false => None,
    };
    let mut figures = Figures::default();
    let mut stop = rt.spawn(interrupted());
    if !args.gate_only {
        rt.block_on(async {
            tokio::select! {
                r = proxy_figures(&args, litellm.as_ref(), &mut figures) => r,
                sig = &mut stop => anyhow::bail!(
                    "interrupted by {}; servers stopped",
                    sig.unwrap_or("a signal")
                ),
            }
        })?;
    }
    // No server of ours runs any more: from here a signal ends the bench at
    // once, as it did before the handlers replaced the default action.
    rt.spawn(async move {
        if let Ok(sig) = stop.await {
            log(format!("interrupted by {sig}"));
            std::process::exit(130);
        }
    });
    if args.gate_runs + args.rollback_runs > 0 {
        gate::run(
            &args.bin_dir,
            args.gate_runs,
            args.rollback_runs,
            &mut figures,
        );
    }
    let meta = meta(&args, litellm.as_ref(), started);
    write_report(&args, &figures, &meta, started)?;
    Ok(())
}

/// The run's settings and context, written beside the figures.
fn meta(args: &Args, litellm: Option<&litellm::Install>, started: Instant) -> serde_json::Value {
    json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "host_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "server_cpus": args.server_cpus,
        "quiet_logs": args.quiet_logs,
        "runs": args.runs,
        "duration_secs": args.duration_secs,
        "warmup_secs": args.warmup_secs,
        "delay_ms": args.delay_ms,
        "chunk_delay_ms": args.chunk_delay_ms,
        "stream_chunks": args.stream_chunks,
        "ttfb_streams": args.ttfb_streams,
        "hold_chunks": args.hold_chunks,
        "litellm": litellm.map(|l| json!({"version": l.version, "bin": l.bin})),
        "bench_wall_secs": started.elapsed().as_secs_f64(),
    })
}

/// Prints the markdown report and writes it with the JSON figures to `args.out`.
fn write_report(
    args: &Args,
    figures: &Figures,
    meta: &serde_json::Value,
    started: Instant,
) -> anyhow::Result<()> {
    let mut md = report::markdown(args, figures, meta);
    md.push_str(&cells::markdown(figures));
    md.push_str(&litellm::markdown(args, figures));
    println!("{md}");
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("bench.md"), &md)?;
    std::fs::write(
        args.out.join("bench.json"),
        serde_json::to_vec_pretty(&report::json(figures, meta))?,
    )?;
    eprintln!(
        "wrote {} and {} in {:.0} s",
        args.out.join("bench.md").display(),
        args.out.join("bench.json").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Resolves when the bench is asked to stop (Ctrl-C, SIGTERM, SIGHUP). The
/// measurements race it, so a stop drops their future and with it every
/// server guard: each server is stopped and reaped instead of outliving the
/// bench (a stray LiteLLM would keep a server CPU busy for a minute).
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        // Without handlers the default action (exit) stays in place.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

fn log(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

async fn proxy_figures(
    args: &Args,
    litellm: Option<&litellm::Install>,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("goproxy-bench-")
        .tempdir()?;
    let env = procs::Env {
        bin_dir: args.bin_dir.clone(),
        dir: dir.path().to_owned(),
        server_cpus: args.server_cpus.clone(),
        quiet_logs: args.quiet_logs,
    };
    let mut servers = Servers::start(&env, args, litellm).await?;
    log(format!(
        "mock {} (pid {}), goproxy {} (pid {}), nginx {} / {} (pid {}), scratch {}",
        servers.mock.addr,
        servers.mock.pid(),
        servers.goproxy.addr,
        servers.goproxy.pid(),
        servers.listens[0],
        servers.listens[1],
        servers.nginx.pid(),
        dir.path().display()
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let goproxy_rss = |s: &Servers, f: &mut Figures, key: &str| {
        if let Some(kb) = s.goproxy.rss_kb() {
            f.push(key, kb as f64 / 1024.0);
        }
    };
    goproxy_rss(&servers, f, "rss/idle_fresh_mb");
    latency_cells(args, &servers, f).await?;
    cells::big_request(args, &servers.addrs, f).await?;
    goproxy_rss(&servers, f, "rss/idle_after_load_mb");
    stream_cells(args, &servers, f).await?;
    cells::sse_cpu(servers.mock.addr, &servers.sse_targets(), args.runs, f).await?;
    // LiteLLM is not in the hold cells (nor the unpinned cell): stop it now
    // so it takes nothing from the single server CPU there.
    drop(servers.litellm.take());
    for _ in 0..args.runs {
        cells::big_body_rss(servers.goproxy.addr, servers.goproxy.pid(), f).await?;
    }
    hold_cells(args, &servers, f).await?;
    goproxy_rss(&servers, f, "rss/idle_after_streams_mb");
    let _big = servers.stop();
    cells::unpinned_c16(args, &env, f).await?;
    Ok(())
}

/// The servers of the proxy figures, each stopped when dropped.
struct Servers {
    mock: procs::Server,
    goproxy: procs::Server,
    nginx: procs::Server,
    /// nginx's two listeners: straight to the mock, and to goproxy.
    listens: Vec<SocketAddr>,
    litellm: Option<procs::Server>,
    /// Each target's address by its name in the figures.
    addrs: BTreeMap<&'static str, SocketAddr>,
    /// The latency and streaming cells' targets, in order.
    targets: Vec<&'static str>,
    big: cells::BigBody,
}

impl Servers {
    async fn start(
        env: &procs::Env,
        args: &Args,
        litellm: Option<&litellm::Install>,
    ) -> anyhow::Result<Self> {
        let mock = env.mock(args.delay_ms)?;
        // First, so its long start is over before anything is measured.
        let litellm = match litellm {
            Some(l) => Some(
                env.litellm(l, mock.addr, load::CLIENT_KEY)
                    .await
                    .context("litellm")?,
            ),
            None => None,
        };
        let big = cells::BigBody::start().await?;
        let goproxy = env
            .goproxy(mock.addr, load::CLIENT_KEY, Some(big.addr))
            .context("goproxy")?;
        let (nginx, listens) = env.nginx(&[mock.addr, goproxy.addr]).context("nginx")?;
        let mut addrs: BTreeMap<&str, SocketAddr> = TARGETS
            .into_iter()
            .zip([mock.addr, goproxy.addr, listens[0], listens[1]])
            .collect();
        if let Some(l) = &litellm {
            addrs.insert("litellm", l.addr);
            log(format!("litellm {} (pid {})", l.addr, l.pid()));
        }
        Ok(Self {
            targets: targets(litellm.is_some()),
            mock,
            goproxy,
            nginx,
            listens,
            litellm,
            addrs,
            big,
        })
    }

    /// The proxies measured for CPU per relayed event, each straight to the
    /// mock, with the pids whose CPU counts.
    fn sse_targets(&self) -> Vec<(&'static str, SocketAddr, Vec<u32>)> {
        let mut nginx_pids = procs::children(self.nginx.pid());
        nginx_pids.push(self.nginx.pid());
        let mut sse_targets = vec![
            ("goproxy", self.goproxy.addr, vec![self.goproxy.pid()]),
            ("nginx", self.listens[0], nginx_pids),
        ];
        if let Some(l) = &self.litellm {
            let mut pids = procs::children(l.pid());
            pids.push(l.pid());
            sse_targets.push(("litellm", l.addr, pids));
        }
        sse_targets
    }

    /// Stops nginx, goproxy and the mock (in that order), so the unpinned
    /// cell that follows starts its own; the 1 GiB upstream stays.
    fn stop(self) -> cells::BigBody {
        let Self {
            mock,
            goproxy,
            nginx,
            big,
            ..
        } = self;
        drop(nginx);
        drop(goproxy);
        drop(mock);
        big
    }
}

/// The mock's behaviour for a cell: `chunks` events, the first after `first` ms.
fn mock_config(args: &Args, chunks: usize, first: u64) -> serde_json::Value {
    json!({"chunks": chunks, "chunk_delay_ms": args.chunk_delay_ms,
           "first_chunk_delay_ms": first, "fault": "none"})
}

/// Latency and throughput of non-streamed completions, per concurrency
/// and target, `args.runs` times.
async fn latency_cells(args: &Args, s: &Servers, f: &mut Figures) -> anyhow::Result<()> {
    let warmup = Duration::from_secs_f64(args.warmup_secs);
    let duration = Duration::from_secs_f64(args.duration_secs);
    let targets = &s.targets;
    for run in 0..args.runs {
        for &c in &args.concurrency {
            for i in 0..targets.len() {
                // Rotate the order so no target always runs first or last.
                let target = targets[(i + run) % targets.len()];
                load::configure_mock(
                    s.mock.addr,
                    mock_config(args, args.stream_chunks, args.delay_ms),
                )
                .await?;
                let cell = load::closed_loop(s.addrs[target], c, warmup, duration).await;
                let h = &cell.latency;
                let ms = |q| quantile(h, q) as f64 / 1e6;
                let key = format!("latency/c{c}/{target}");
                f.push(format!("{key}/p50_ms"), ms(0.5));
                f.push(format!("{key}/p99_ms"), ms(0.99));
                f.push(format!("{key}/p999_ms"), ms(0.999));
                f.push(format!("{key}/rps"), cell.throughput);
                f.push(format!("{key}/errors"), cell.errors as f64);
                log(format!(
                    "run {} c{c:<3} {target:<14} p50 {:.3} p99 {:.3} p99.9 {:.3} ms  {:.0} req/s  {} errors{}",
                    run + 1,
                    ms(0.5),
                    ms(0.99),
                    ms(0.999),
                    cell.throughput,
                    cell.errors,
                    cell.first_error
                        .map(|e| format!(" (first: {e})"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    Ok(())
}

/// Time to first chunk and inter-chunk gaps, sequential streams.
async fn stream_cells(args: &Args, s: &Servers, f: &mut Figures) -> anyhow::Result<()> {
    let targets = &s.targets;
    load::configure_mock(s.mock.addr, mock_config(args, args.stream_chunks, 0)).await?;
    for run in 0..args.runs {
        for i in 0..targets.len() {
            let target = targets[(i + run) % targets.len()];
            let traces = load::sequential_streams(s.addrs[target], args.ttfb_streams).await?;
            let sum = stream_summary(&traces);
            let key = format!("stream/{target}");
            for (name, v) in &sum {
                f.push(format!("{key}/{name}"), *v);
            }
            log(format!(
                "run {} ttfb {target:<14} p50 {:.3} max {:.3} ms, gap p50 {:.3} p99 {:.3} ms, {} failed",
                run + 1,
                sum["ttfb_p50_ms"],
                sum["ttfb_max_ms"],
                sum["gap_p50_ms"],
                sum["gap_p99_ms"],
                sum["failed"]
            ));
        }
        load::configure_mock(s.mock.addr, mock_config(args, args.stream_chunks, 0)).await?;
    }
    Ok(())
}

/// Concurrent streams held without a stall, per count and target.
async fn hold_cells(args: &Args, s: &Servers, f: &mut Figures) -> anyhow::Result<()> {
    for &n in &args.hold {
        for target in ["direct", "goproxy", "nginx+goproxy"] {
            load::configure_mock(s.mock.addr, mock_config(args, args.hold_chunks, 0)).await?;
            hold_cell(args, s, n, target, f).await;
            // Let closed connections leave TIME_WAIT pressure and the
            // proxies settle before the next cell.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// `n` streams held at once through `target`, goproxy's RSS sampled meanwhile.
async fn hold_cell(args: &Args, s: &Servers, n: usize, target: &str, f: &mut Figures) {
    let stall = Duration::from_millis(2 * args.chunk_delay_ms);
    let (traces, peak_kb) = with_peak_rss(
        s.goproxy.pid(),
        load::concurrent_streams(s.addrs[target], n),
    )
    .await;
    let key = format!("hold/n{n}/{target}");
    let sum = stream_summary(&traces);
    let stalled = traces
        .iter()
        .filter(|t| t.error.is_some() || !t.complete || t.gaps().any(|g| g > stall))
        .count();
    f.push(format!("{key}/held"), (n - stalled) as f64);
    f.push(format!("{key}/stalled"), stalled as f64);
    for name in [
        "failed",
        "gap_p99_ms",
        "gap_max_ms",
        "ttfb_p99_ms",
        "ttfb_max_ms",
    ] {
        f.push(format!("{key}/{name}"), sum[name]);
    }
    if target != "direct" {
        f.push(
            format!("{key}/goproxy_rss_peak_mb"),
            peak_kb as f64 / 1024.0,
        );
    }
    log(format!(
        "hold {n:<5} {target:<14} held {}/{n}, failed {}, worst gap {:.1} ms, ttfb max {:.1} ms, goproxy RSS peak {:.1} MB{}",
        n - stalled,
        sum["failed"],
        sum["gap_max_ms"],
        sum["ttfb_max_ms"],
        peak_kb as f64 / 1024.0,
        traces
            .iter()
            .find_map(|t| t.error.clone())
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    ));
}

/// Runs `work` while sampling `pid`'s RSS every 50 ms; its output and the
/// peak RSS in kB.
async fn with_peak_rss<T>(pid: u32, work: impl std::future::Future<Output = T>) -> (T, u64) {
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = sampling.clone();
    let sampler = tokio::spawn(async move {
        let mut peak = 0u64;
        while flag.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(procs::rss_kb(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak
    });
    let out = work.await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    (out, sampler.await.unwrap_or(0))
}

/// TTFB and gap quantiles over a set of streams, in ms, plus failures.
fn stream_summary(traces: &[StreamTrace]) -> BTreeMap<&'static str, f64> {
    let mut ttfb = load::histogram();
    let mut gaps = load::histogram();
    let mut failed = 0;
    for t in traces {
        if t.error.is_some() || !t.complete {
            failed += 1;
        }
        if let Some(d) = t.ttfb() {
            let _ = ttfb.record((d.as_nanos() as u64).max(1));
        }
        for g in t.gaps() {
            let _ = gaps.record((g.as_nanos() as u64).max(1));
        }
    }
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| quantile(h, q) as f64 / 1e6;
    BTreeMap::from([
        ("ttfb_p50_ms", ms(&ttfb, 0.5)),
        ("ttfb_p99_ms", ms(&ttfb, 0.99)),
        ("ttfb_max_ms", ttfb.max() as f64 / 1e6),
        ("gap_p50_ms", ms(&gaps, 0.5)),
        ("gap_p99_ms", ms(&gaps, 0.99)),
        ("gap_max_ms", gaps.max() as f64 / 1e6),
        ("failed", failed as f64),
    ])
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// LiteLLM is off unless asked for, and joins the targets when it is.
    #[test]
    fn litellm_is_an_opt_in_target() {
        let args = Args::parse_from(["bench"]);
        assert!(!args.litellm);
        assert!(!targets(args.litellm).contains(&"litellm"));
        let args = Args::parse_from(["bench", "--litellm", "--litellm-venv", "/opt/venv"]);
        assert!(args.litellm);
        assert_eq!(args.litellm_venv, PathBuf::from("/opt/venv"));
        assert_eq!(targets(args.litellm).last(), Some(&"litellm"));
    }

    /// The venv defaults to where setup.sh puts it (LITELLM_VENV may override
    /// it, so the default is read from the definition, not from a parse).
    #[test]
    fn litellm_venv_defaults_to_setup_sh_location() {
        let cmd = Args::command();
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == "litellm_venv")
            .expect("the --litellm-venv argument");
        assert_eq!(arg.get_default_values(), [litellm::DEFAULT_VENV]);
        assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new("LITELLM_VENV")));
    }
}
