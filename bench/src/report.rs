//! Figures collected over the run, and the markdown and JSON reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::stats::{paired_diff, paired_ratio, Spread};
use crate::{targets, Args};

/// Every figure of the run: a key such as `latency/c1/goproxy/p99_ms` and
/// its value in each run, in run order (so runs of two targets pair up).
#[derive(Debug, Default)]
pub struct Figures {
    values: BTreeMap<String, Vec<f64>>,
}

impl Figures {
    /// Append one run's value of `key`.
    pub fn push(&mut self, key: impl Into<String>, value: f64) {
        self.values.entry(key.into()).or_default().push(value);
    }

    /// The values of `key` (empty when never measured).
    pub fn get(&self, key: &str) -> &[f64] {
        self.values.get(key).map_or(&[], Vec::as_slice)
    }

    fn spread(&self, key: &str) -> Option<Spread> {
        Spread::of(self.get(key))
    }

    fn cell(&self, key: &str, decimals: usize) -> String {
        self.spread(key)
            .map_or_else(|| "-".to_owned(), |s| s.fmt(decimals))
    }

    fn diff(&self, a: &str, b: &str) -> Option<Spread> {
        Spread::of(&paired_diff(self.get(a), self.get(b)))
    }

    fn ratio(&self, a: &str, b: &str) -> Option<Spread> {
        Spread::of(&paired_ratio(self.get(a), self.get(b)))
    }
}

fn opt(s: Option<Spread>, decimals: usize) -> String {
    s.map_or_else(|| "-".to_owned(), |s| s.fmt(decimals))
}

/// One target of issue 6 and where it stands.
struct Verdict {
    target: &'static str,
    measured: String,
    status: &'static str,
}

fn status(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    }
}

/// Each target of the issue, in the order the report lists them.
fn verdicts(args: &Args, f: &Figures) -> Vec<Verdict> {
    let mut v = Vec::new();
    latency_verdicts(args, f, &mut v);
    stream_verdicts(args, f, &mut v);
    gate_verdicts(f, &mut v);
    v
}

/// goproxy's added latency and its throughput against nginx's.
fn latency_verdicts(args: &Args, f: &Figures, v: &mut Vec<Verdict>) {
    let added = f.diff("latency/c1/goproxy/p99_ms", "latency/c1/direct/p99_ms");
    v.push(Verdict {
        target: "goproxy added p99 < 0.2 ms at concurrency 1",
        measured: format!("{} ms", opt(added, 3)),
        status: status(added.map(|s| s.median < 0.2)),
    });
    let ratios: Vec<(usize, Option<Spread>)> = args
        .concurrency
        .iter()
        .map(|c| {
            (
                *c,
                f.ratio(
                    &format!("latency/c{c}/goproxy/rps"),
                    &format!("latency/c{c}/nginx/rps"),
                ),
            )
        })
        .collect();
    let measured: Vec<String> = ratios
        .iter()
        .map(|(c, r)| format!("c{c} {}", opt(*r, 2)))
        .collect();
    let met = if ratios.iter().any(|(_, r)| r.is_none()) {
        None
    } else {
        Some(
            ratios
                .iter()
                .all(|(_, r)| r.is_some_and(|r| r.median >= 1.0)),
        )
    };
    v.push(Verdict {
        target: "goproxy throughput >= nginx's (ratio >= 1)",
        measured: measured.join(", "),
        status: status(met),
    });
}

/// Streams: time to first chunk, 1024 held, and goproxy's memory then.
fn stream_verdicts(args: &Args, f: &Figures, v: &mut Vec<Verdict>) {
    let ttfb = f.diff(
        "stream/nginx+goproxy/ttfb_p50_ms",
        "stream/direct/ttfb_p50_ms",
    );
    let ttfb99 = f.diff(
        "stream/nginx+goproxy/ttfb_p99_ms",
        "stream/direct/ttfb_p99_ms",
    );
    v.push(Verdict {
        target: "time to first chunk via nginx+goproxy within 2 ms of direct (p50)",
        measured: format!("+{} ms (p99: +{} ms)", opt(ttfb, 3), opt(ttfb99, 3)),
        status: status(ttfb.map(|s| s.median <= 2.0)),
    });
    let n = args.hold.iter().copied().max().unwrap_or(0);
    let held = f.spread(&format!("hold/n{n}/goproxy/held"));
    let held_ng = f.spread(&format!("hold/n{n}/nginx+goproxy/held"));
    v.push(Verdict {
        target: "1024 concurrent streams through goproxy, no stall",
        measured: format!(
            "{n} streams: held {} via goproxy, {} via nginx+goproxy",
            opt(held, 0),
            opt(held_ng, 0)
        ),
        status: status(held.map(|s| n == 1024 && s.min >= n as f64)),
    });
    let rss = f.spread(&format!("hold/n{n}/goproxy/goproxy_rss_peak_mb"));
    v.push(Verdict {
        target: "goproxy RSS < 64 MB at 1024 streams",
        measured: format!("{} MB at {n} streams", opt(rss, 1)),
        status: status(rss.map(|s| n == 1024 && s.max < 64.0)),
    });
}

/// The harness's figures: the switch, the rollback and the whole gate.
fn gate_verdicts(f: &Figures, v: &mut Vec<Verdict>) {
    let failed = f.spread("gate/switch_failed_requests");
    v.push(Verdict {
        target: "zero failed requests across the switch",
        measured: format!("{} (runs: {})", opt(failed, 0), failed.map_or(0, |s| s.n)),
        status: status(failed.map(|s| s.max == 0.0)),
    });
    let rb = f.spread("rollback/rollback_duration_ms");
    v.push(Verdict {
        target: "rollback < 10 s",
        measured: format!("{} ms", opt(rb, 0)),
        status: status(rb.map(|s| s.max < 10_000.0)),
    });
    let wall = f.spread("gate/wall_time_ms");
    v.push(Verdict {
        target: "full gate < 60 s warm (default scenario, --monitor 2s)",
        measured: format!("{} ms", opt(wall, 0)),
        status: status(wall.map(|s| s.max < 60_000.0)),
    });
}

/// The whole report as markdown (also what is printed).
pub fn markdown(args: &Args, f: &Figures, meta: &Value) -> String {
    let mut o = String::new();
    intro(&mut o, args, meta);
    targets_table(&mut o, args, f);
    if !f.get("latency/c1/direct/p50_ms").is_empty() || args.concurrency.len() > 1 {
        latency_table(&mut o, args, f);
        headline_table(&mut o, args, f);
    }
    if !f.get("stream/direct/ttfb_p50_ms").is_empty() {
        stream_table(&mut o, args, f);
    }
    if !args.hold.is_empty()
        && !f
            .get(&format!("hold/n{}/direct/held", args.hold[0]))
            .is_empty()
    {
        hold_table(&mut o, args, f);
    }
    if !f.get("gate/go").is_empty() || !f.get("rollback/wall_time_ms").is_empty() {
        gate_table(&mut o, f);
    }
    let _ = writeln!(
        o,
        "\nWhole bench: {:.0} s.",
        meta["bench_wall_secs"].as_f64().unwrap_or_default()
    );
    o
}

/// The title and how to read every cell: what was run, and how.
fn intro(o: &mut String, args: &Args, meta: &Value) {
    let _ = writeln!(o, "# goproxy bench\n");
    let _ = writeln!(
        o,
        "Every cell is `median [min..max]` over runs; \"added\" and ratios are taken per run \
         (targets of one run measured back to back) and then summarised. All processes are \
         local on 127.0.0.1. Command: `{}`. Servers pinned to CPUs: {}; per-request logs: {}.\n",
        meta["command"].as_str().unwrap_or_default(),
        args.server_cpus.as_deref().unwrap_or("not pinned"),
        if args.quiet_logs {
            "off"
        } else {
            "on, as deployed"
        }
    );
}

/// Each target of the issue with its measure and whether it was met.
fn targets_table(o: &mut String, args: &Args, f: &Figures) {
    let _ = writeln!(o, "## Targets\n");
    let _ = writeln!(o, "| target | measured | status |\n| --- | --- | --- |");
    for v in verdicts(args, f) {
        let _ = writeln!(o, "| {} | {} | {} |", v.target, v.measured, v.status);
    }
}

/// Non-streamed completions: latency quantiles and throughput per cell.
fn latency_table(o: &mut String, args: &Args, f: &Figures) {
    let _ = writeln!(
        o,
        "\n## Non-streamed completion: latency and throughput\n\n\
         Closed loop, one keep-alive HTTP/1.1 connection per worker, {} s warm-up + {} s \
         measured per cell, {} runs; the mock answers after a fixed {} ms.\n",
        args.warmup_secs, args.duration_secs, args.runs, args.delay_ms
    );
    let _ = writeln!(
        o,
        "| conc | target | p50 ms | p99 ms | p99.9 ms | req/s | added p99 vs direct ms | errors |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for c in &args.concurrency {
        for t in targets(args.litellm) {
            let k = format!("latency/c{c}/{t}");
            let added = if t == "direct" {
                "-".to_owned()
            } else {
                opt(
                    f.diff(
                        &format!("{k}/p99_ms"),
                        &format!("latency/c{c}/direct/p99_ms"),
                    ),
                    3,
                )
            };
            let _ = writeln!(
                o,
                "| {c} | {t} | {} | {} | {} | {} | {added} | {} |",
                f.cell(&format!("{k}/p50_ms"), 3),
                f.cell(&format!("{k}/p99_ms"), 3),
                f.cell(&format!("{k}/p999_ms"), 3),
                f.cell(&format!("{k}/rps"), 0),
                f.cell(&format!("{k}/errors"), 0),
            );
        }
    }
}

/// A headline row: its label, target `a` against target `b` on metric `m`,
/// as a ratio (`true`) or a difference.
type Headline = (&'static str, &'static str, &'static str, &'static str, bool);

const HEADLINES: [Headline; 5] = [
    (
        "goproxy added p50 over direct, ms",
        "goproxy",
        "direct",
        "p50_ms",
        false,
    ),
    (
        "goproxy added p99 over direct, ms",
        "goproxy",
        "direct",
        "p99_ms",
        false,
    ),
    (
        "nginx added p99 over direct, ms",
        "nginx",
        "direct",
        "p99_ms",
        false,
    ),
    (
        "goproxy added p99 behind nginx (nginx+goproxy - nginx), ms",
        "nginx+goproxy",
        "nginx",
        "p99_ms",
        false,
    ),
    (
        "goproxy req/s ÷ nginx req/s",
        "goproxy",
        "nginx",
        "rps",
        true,
    ),
];

/// The headline rows about LiteLLM, when it is measured.
const LITELLM_HEADLINES: [Headline; 2] = [
    (
        "litellm added p50 over direct, ms",
        "litellm",
        "direct",
        "p50_ms",
        false,
    ),
    (
        "goproxy req/s ÷ litellm req/s",
        "goproxy",
        "litellm",
        "rps",
        true,
    ),
];

/// What each proxy adds, per concurrency: the differences and ratios a
/// reader looks for, taken per run.
fn headline_table(o: &mut String, args: &Args, f: &Figures) {
    let _ = writeln!(
        o,
        "\n| headline | {} |",
        args.concurrency
            .iter()
            .map(|c| format!("c{c}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(o, "| --- |{}", " --- |".repeat(args.concurrency.len()));
    let litellm: &[Headline] = if args.litellm {
        &LITELLM_HEADLINES
    } else {
        &[]
    };
    for &(label, a, b, m, ratio) in HEADLINES.iter().chain(litellm) {
        let cells: Vec<String> = args
            .concurrency
            .iter()
            .map(|c| {
                let ka = format!("latency/c{c}/{a}/{m}");
                let kb = format!("latency/c{c}/{b}/{m}");
                if ratio {
                    opt(f.ratio(&ka, &kb), 2)
                } else {
                    opt(f.diff(&ka, &kb), 3)
                }
            })
            .collect();
        let _ = writeln!(o, "| {label} | {} |", cells.join(" | "));
    }
}

/// Streaming: time to first chunk and the gaps between events.
fn stream_table(o: &mut String, args: &Args, f: &Figures) {
    let _ = writeln!(
        o,
        "\n## Streaming: time to first chunk and gaps\n\n\
         {} sequential streams per target per run on one keep-alive connection; the mock sends \
         {} content chunks {} ms apart, the first at once. Gaps are between content events.\n",
        args.ttfb_streams, args.stream_chunks, args.chunk_delay_ms
    );
    let _ = writeln!(
        o,
        "| target | ttfb p50 ms | ttfb max ms | added ttfb p50 vs direct ms | gap p50 ms | gap p99 ms | gap max ms | failed |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for t in targets(args.litellm) {
        let k = format!("stream/{t}");
        let added = if t == "direct" {
            "-".to_owned()
        } else {
            opt(
                f.diff(&format!("{k}/ttfb_p50_ms"), "stream/direct/ttfb_p50_ms"),
                3,
            )
        };
        let _ = writeln!(
            o,
            "| {t} | {} | {} | {added} | {} | {} | {} | {} |",
            f.cell(&format!("{k}/ttfb_p50_ms"), 3),
            f.cell(&format!("{k}/ttfb_max_ms"), 3),
            f.cell(&format!("{k}/gap_p50_ms"), 2),
            f.cell(&format!("{k}/gap_p99_ms"), 2),
            f.cell(&format!("{k}/gap_max_ms"), 2),
            f.cell(&format!("{k}/failed"), 0),
        );
    }
}

/// Concurrent streams held, and goproxy's memory around them.
fn hold_table(o: &mut String, args: &Args, f: &Figures) {
    let _ = writeln!(
        o,
        "\n## Concurrent SSE streams held\n\n\
         N streams opened at once, each on its own connection, {} chunks {} ms apart \
         (one run per cell). A stream is *held* when it completes with no gap over {} ms \
         (twice the chunk delay).\n",
        args.hold_chunks,
        args.chunk_delay_ms,
        2 * args.chunk_delay_ms
    );
    let _ = writeln!(
        o,
        "| streams | target | held | failed | gap p99 ms | worst gap ms | ttfb max ms | goproxy RSS peak MB |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for n in &args.hold {
        for t in ["direct", "goproxy", "nginx+goproxy"] {
            let k = format!("hold/n{n}/{t}");
            let _ = writeln!(
                o,
                "| {n} | {t} | {}/{n} | {} | {} | {} | {} | {} |",
                f.cell(&format!("{k}/held"), 0),
                f.cell(&format!("{k}/failed"), 0),
                f.cell(&format!("{k}/gap_p99_ms"), 1),
                f.cell(&format!("{k}/gap_max_ms"), 1),
                f.cell(&format!("{k}/ttfb_max_ms"), 1),
                f.cell(&format!("{k}/goproxy_rss_peak_mb"), 1),
            );
        }
    }
    let _ = writeln!(
        o,
        "\ngoproxy RSS (VmRSS): fresh {} MB, after the latency cells {} MB, after the hold cells {} MB.",
        f.cell("rss/idle_fresh_mb", 1),
        f.cell("rss/idle_after_load_mb", 1),
        f.cell("rss/idle_after_streams_mb", 1)
    );
}

/// The harness's own figures: the switch, the gate and the rollback.
fn gate_table(o: &mut String, f: &Figures) {
    let _ = writeln!(
        o,
        "\n## The switch and the gate (`harness validate --monitor 2s`, real containers)\n\n\
         | figure | median [min..max] | runs |\n| --- | --- | --- |"
    );
    for (label, key, d) in [
        ("default scenario: go verdicts", "gate/go", 0),
        ("switch: requests sent", "gate/switch_requests", 0),
        ("switch: failed requests", "gate/switch_failed_requests", 0),
        ("switch: longest gap, ms", "gate/switch_longest_gap_ms", 1),
        ("switch: duration, ms", "gate/switch_duration_ms", 0),
        ("full gate wall time, ms", "gate/wall_time_ms", 0),
        (
            "rollback scenario: rollback duration, ms",
            "rollback/rollback_duration_ms",
            0,
        ),
        (
            "rollback scenario: failed requests",
            "rollback/switch_failed_requests",
            0,
        ),
        (
            "rollback scenario: wall time, ms",
            "rollback/wall_time_ms",
            0,
        ),
    ] {
        let _ = writeln!(o, "| {label} | {} | {} |", f.cell(key, d), f.get(key).len());
    }
}

/// Every figure with its per-run values and summary, plus the run's settings.
pub fn json(f: &Figures, meta: &Value) -> Value {
    let figures: serde_json::Map<String, Value> = f
        .values
        .iter()
        .map(|(k, v)| (k.clone(), json!({"runs": v, "summary": Spread::of(v)})))
        .collect();
    json!({"meta": meta, "figures": figures})
}
