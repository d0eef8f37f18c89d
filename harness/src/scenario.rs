//! A scenario: the starting deployment, the change, a fault to inject, the
//! load to run during the change, and what must come out. One TOML file per
//! scenario in `scenarios/` (format in `scenarios/README.md`).
//!
//! Loaded in three steps like goproxy's config: read the file, parse the
//! TOML, validate into a [`Scenario`] whose values are known to make sense.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend_kind::BackendKind;
use crate::check::Phase;
use crate::report::Verdict;

/// A validated scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// File stem; how the scenario is named in reports and tests.
    pub name: String,
    pub description: String,
    /// The port goproxy and nginx use before the change.
    pub start_port: u16,
    /// A second goproxy instance (`goproxy-b`) on this port, also in nginx's
    /// upstream: the design's "one goproxy per port" future.
    pub second_port: Option<u16>,
    pub change: Change,
    pub fault: Fault,
    pub load: Load,
    pub expect: Expect,
    /// The backends the scenario means something on (its finding may be
    /// about compose or about two containers).
    pub backends: Vec<BackendKind>,
}

/// What the deployment changes.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The port the new goproxy JSON carries.
    pub port: u16,
    /// What the candidate nginx upstream says (`server goproxy:<port>`);
    /// differs from `port` only to reproduce a half-done change.
    pub nginx_port: u16,
    /// Replaces the JSON value of `"port"` verbatim (`"\"8004\""`, `0`,
    /// `70000`): a candidate config that must be refused.
    pub port_literal: Option<String>,
    /// Replaces the whole candidate goproxy JSON (a malformed file).
    pub goproxy_config_text: Option<String>,
    /// Appended inside the candidate nginx `http { }` block (a syntax error).
    pub nginx_append: Option<String>,
    pub strategy: Strategy,
    /// Run the change even if lint says no (reproduces a forced half change).
    pub force: bool,
    /// Roll back on demand after a successful change (as `harness rollback`).
    pub rollback_after: bool,
}

impl Change {
    /// Whether the scenario makes its own candidate from the operator's
    /// files (a bad port, a half change, a broken file) instead of deploying
    /// them as written.
    pub fn derives(&self) -> bool {
        self.port_literal.is_some()
            || self.nginx_port != self.port
            || self.goproxy_config_text.is_some()
            || self.nginx_append.is_some()
    }
}

/// How goproxy is switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The design's steps: `up -d --build goproxy`, then `nginx -s reload`.
    RestartThenReload,
    /// Ours: start the new goproxy beside the old, reload nginx, drain and
    /// stop the old, reload again. No request sees a closed port.
    Overlap,
    /// With two instances: restart one at a time (drain, start, reload
    /// nginx) while the other serves. The port does not change.
    RollingRestart,
}

/// A fault injected before or during the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    None,
    /// The new port is already bound inside goproxy's network namespace.
    PortInUse,
    /// The new goproxy exits at start (its port is taken by a squatter that
    /// only appears after the pre-deployment checks).
    GoproxyFailsToStart,
    /// The mock LLM upstream refuses connections.
    UpstreamDown,
    /// The mock LLM upstream streams with long gaps between events.
    UpstreamSlowStream,
}

/// Traffic run while the change happens.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    /// Pause between two non-streamed requests of the steady client.
    pub interval: Duration,
    /// SSE streams opened just before the switch and held across it.
    pub streams: u32,
    /// Extra nginx reloads during the load (reload-under-load).
    pub extra_reloads: u32,
    /// A request slower than this counts as slow.
    pub slow_threshold: Duration,
    /// Events in each stream held across the switch, and the pause between
    /// two: how long the streams stay open (30 x 100 ms by default).
    pub stream_chunks: u32,
    pub stream_chunk_delay: Duration,
}

/// The outcome the scenario expects.
#[derive(Debug, Clone, Serialize)]
pub struct Expect {
    pub verdict: Verdict,
    /// Where the first failing check must be, for a no-go.
    pub failed_phase: Option<Phase>,
    /// A substring of the first failing check's name or evidence.
    pub failure_mentions: Option<String>,
    /// The switch's target: more failed requests (or broken streams) than
    /// this and `deploy.switch-under-load` fails.
    pub max_failed_requests: u64,
}

/// Errors loading a scenario: which file, what is wrong, what to do.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("scenario {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("scenario {path}: field `{field}` = {value}: {problem}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        value: String,
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    description: String,
    #[serde(default = "all_backends")]
    backends: Vec<BackendKind>,
    start: RawStart,
    change: RawChange,
    #[serde(default)]
    fault: Option<RawFault>,
    #[serde(default)]
    load: RawLoad,
    expect: RawExpect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStart {
    port: i64,
    second_port: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChange {
    port: i64,
    nginx_port: Option<i64>,
    port_literal: Option<String>,
    goproxy_config_text: Option<String>,
    nginx_append: Option<String>,
    #[serde(default = "default_strategy")]
    strategy: Strategy,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    rollback_after: bool,
}

fn all_backends() -> Vec<BackendKind> {
    vec![BackendKind::Containers, BackendKind::Local]
}

fn default_strategy() -> Strategy {
    Strategy::Overlap
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: Fault,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    #[serde(default = "default_interval_ms")]
    interval_ms: u64,
    #[serde(default = "default_streams")]
    streams: u32,
    #[serde(default)]
    extra_reloads: u32,
    #[serde(default = "default_slow_ms")]
    slow_threshold_ms: u64,
    #[serde(default = "default_stream_chunks")]
    stream_chunks: u32,
    #[serde(default = "default_stream_chunk_delay_ms")]
    stream_chunk_delay_ms: u64,
}

impl Default for RawLoad {
    fn default() -> Self {
        Self {
            interval_ms: default_interval_ms(),
            streams: default_streams(),
            extra_reloads: 0,
            slow_threshold_ms: default_slow_ms(),
            stream_chunks: default_stream_chunks(),
            stream_chunk_delay_ms: default_stream_chunk_delay_ms(),
        }
    }
}

fn default_interval_ms() -> u64 {
    20
}
fn default_streams() -> u32 {
    4
}
fn default_slow_ms() -> u64 {
    2000
}
fn default_stream_chunks() -> u32 {
    30
}
fn default_stream_chunk_delay_ms() -> u64 {
    100
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    verdict: Verdict,
    failed_phase: Option<Phase>,
    failure_mentions: Option<String>,
    #[serde(default)]
    max_failed_requests: u64,
}

impl<'de> Deserialize<'de> for Verdict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "go" => Ok(Verdict::Go),
            "no-go" => Ok(Verdict::NoGo),
            "rolled-back" => Ok(Verdict::RolledBack),
            "rollback-failed" => Ok(Verdict::RollbackFailed),
            other => Err(serde::de::Error::custom(format!(
                "unknown verdict `{other}`; expected go, no-go, rolled-back or rollback-failed"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "lint" => Ok(Phase::Lint),
            "pre-deployment" => Ok(Phase::PreDeployment),
            "deployment" => Ok(Phase::Deployment),
            "post-deployment" => Ok(Phase::PostDeployment),
            "rollback" => Ok(Phase::Rollback),
            other => Err(serde::de::Error::custom(format!(
                "unknown phase `{other}`; expected lint, pre-deployment, deployment, \
                 post-deployment or rollback"
            ))),
        }
    }
}

impl Scenario {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".into());
        Self::from_toml(&name, path, &text)
    }

    /// Parses and validates scenario text; `path` is only for messages.
    pub fn from_toml(name: &str, path: &Path, text: &str) -> Result<Self, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let check = Check { path };
        // The checks run in this order so a file with several mistakes is
        // always reported on the same (first) one.
        let ports = check.ports(&raw)?;
        check.load(&raw.load)?;
        check.expect(&raw)?;
        check.backends(&raw)?;
        Ok(Self::from_raw(name, raw, ports))
    }

    /// Builds the scenario from raw fields that passed every check.
    fn from_raw(name: &str, raw: RawScenario, ports: Ports) -> Self {
        Scenario {
            backends: raw.backends,
            name: name.to_string(),
            description: raw.description,
            start_port: ports.start,
            second_port: ports.second,
            change: Change {
                port: ports.change,
                nginx_port: ports.nginx,
                port_literal: raw.change.port_literal,
                goproxy_config_text: raw.change.goproxy_config_text,
                nginx_append: raw.change.nginx_append,
                strategy: raw.change.strategy,
                force: raw.change.force,
                rollback_after: raw.change.rollback_after,
            },
            fault: raw.fault.map(|f| f.kind).unwrap_or(Fault::None),
            load: Load {
                interval: Duration::from_millis(raw.load.interval_ms),
                streams: raw.load.streams,
                extra_reloads: raw.load.extra_reloads,
                slow_threshold: Duration::from_millis(raw.load.slow_threshold_ms),
                stream_chunks: raw.load.stream_chunks,
                stream_chunk_delay: Duration::from_millis(raw.load.stream_chunk_delay_ms),
            },
            expect: Expect {
                verdict: raw.expect.verdict,
                failed_phase: raw.expect.failed_phase,
                failure_mentions: raw.expect.failure_mentions,
                max_failed_requests: raw.expect.max_failed_requests,
            },
        }
    }
}

/// The scenario's ports once each is known to be a TCP port.
struct Ports {
    start: u16,
    second: Option<u16>,
    change: u16,
    nginx: u16,
}

/// The validation of one scenario file; holds the path for the messages.
struct Check<'a> {
    path: &'a Path,
}

impl Check<'_> {
    fn invalid(&self, field: &'static str, value: String, problem: &str) -> ScenarioError {
        ScenarioError::Invalid {
            path: self.path.to_path_buf(),
            field,
            value,
            problem: problem.to_string(),
        }
    }

    fn port(&self, field: &'static str, v: i64) -> Result<u16, ScenarioError> {
        u16::try_from(v)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| self.invalid(field, v.to_string(), "must be a TCP port, 1 to 65535"))
    }

    /// The ports, and how they must relate to the strategy.
    fn ports(&self, raw: &RawScenario) -> Result<Ports, ScenarioError> {
        let start_port = self.port("start.port", raw.start.port)?;
        let second_port = raw
            .start
            .second_port
            .map(|p| self.port("start.second_port", p))
            .transpose()?;
        let rolling = raw.change.strategy == Strategy::RollingRestart;
        if rolling != second_port.is_some() {
            return Err(self.invalid(
                "start.second_port",
                format!("{second_port:?}"),
                "a second instance goes with strategy = \"rolling-restart\", and only with it",
            ));
        }
        if second_port == Some(start_port) {
            return Err(self.invalid(
                "start.second_port",
                start_port.to_string(),
                "two instances cannot share a port in nginx's upstream",
            ));
        }
        let change_port = self.port("change.port", raw.change.port)?;
        let nginx_port = self.port(
            "change.nginx_port",
            raw.change.nginx_port.unwrap_or(raw.change.port),
        )?;
        if rolling && change_port != start_port {
            return Err(self.invalid(
                "change.port",
                change_port.to_string(),
                "a rolling restart keeps the port: make it equal to start.port",
            ));
        }
        if start_port == change_port && raw.change.port_literal.is_none() && !rolling {
            return Err(self.invalid(
                "change.port",
                change_port.to_string(),
                "equals start.port: the scenario changes nothing",
            ));
        }
        Ok(Ports {
            start: start_port,
            second: second_port,
            change: change_port,
            nginx: nginx_port,
        })
    }

    /// The load stays small and bounded: the gate runs on small machines.
    fn load(&self, load: &RawLoad) -> Result<(), ScenarioError> {
        if load.interval_ms == 0 || load.interval_ms > 10_000 {
            return Err(self.invalid(
                "load.interval_ms",
                load.interval_ms.to_string(),
                "must be 1 to 10000 (ms between two requests of the steady client)",
            ));
        }
        if load.streams > 256 {
            return Err(self.invalid(
                "load.streams",
                load.streams.to_string(),
                "at most 256 streams during a switch (the gate runs on small machines)",
            ));
        }
        // Streams are bounded like everything else: at most the 330 s the
        // switch waits for them (goproxy's drain_timeout_secs).
        let stream_ms = u64::from(load.stream_chunks) * load.stream_chunk_delay_ms;
        if load.stream_chunks == 0 || stream_ms > 330_000 {
            return Err(self.invalid(
                "load.stream_chunks",
                format!("{} x {} ms", load.stream_chunks, load.stream_chunk_delay_ms),
                "a stream must have events and last at most 330 s (the stream bound)",
            ));
        }
        Ok(())
    }

    /// A no-go must say where it stops (unless a rollback follows).
    fn expect(&self, raw: &RawScenario) -> Result<(), ScenarioError> {
        if raw.expect.verdict != Verdict::Go
            && raw.expect.failed_phase.is_none()
            && !raw.change.rollback_after
        {
            return Err(self.invalid(
                "expect.failed_phase",
                "(missing)".into(),
                "a scenario expecting a no-go must say in which phase it stops",
            ));
        }
        Ok(())
    }

    /// At least one backend, and one that can run the strategy.
    fn backends(&self, raw: &RawScenario) -> Result<(), ScenarioError> {
        let rolling = raw.change.strategy == Strategy::RollingRestart;
        if rolling && raw.backends.contains(&BackendKind::Local) {
            return Err(self.invalid(
                "backends",
                format!("{:?}", raw.backends),
                "two goproxy instances run only on the container backend: backends = [\"containers\"]",
            ));
        }
        if raw.backends.is_empty() {
            return Err(self.invalid("backends", "[]".into(), "name at least one backend"));
        }
        Ok(())
    }
}

/// Every `*.toml` in a folder, sorted by name.
pub fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAPPY: &str = r#"
description = "the design's change"
[start]
port = 8005
[change]
port = 8004
[expect]
verdict = "go"
"#;

    /// A minimal file gets the defaults an operator would expect.
    #[test]
    fn minimal_scenario_gets_defaults() {
        let s = Scenario::from_toml("happy", Path::new("happy.toml"), HAPPY).unwrap();
        assert_eq!(
            (s.start_port, s.change.port, s.change.nginx_port),
            (8005, 8004, 8004)
        );
        assert_eq!(s.change.strategy, Strategy::Overlap);
        assert_eq!(s.fault, Fault::None);
        assert_eq!(s.expect.max_failed_requests, 0);
    }

    /// Bad values are refused with the file, the field and the value.
    #[test]
    fn bad_values_name_file_field_and_value() {
        let text = HAPPY.replace("port = 8004", "port = 70000");
        let err = Scenario::from_toml("x", Path::new("s/x.toml"), &text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("s/x.toml") && msg.contains("change.port") && msg.contains("70000"),
            "{msg}"
        );

        let text = HAPPY.replace("verdict = \"go\"", "verdict = \"no-go\"");
        let msg = Scenario::from_toml("x", Path::new("x.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("failed_phase"), "{msg}");

        let text = HAPPY.replace("[expect]", "typo = 1\n[expect]");
        let msg = Scenario::from_toml("x", Path::new("x.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("typo"), "{msg}");
    }
}
