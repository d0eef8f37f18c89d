//! Before any container starts: the mocks, the base and candidate rendered
//! from the operator's files, written into a fresh run directory.

use std::path::PathBuf;

use super::{GateError, GateOptions};
use crate::files::{self, LiveFiles, MockEndpoints, Rendered};
use crate::lint::LintTargets;
use crate::render::{self, Sources};
use crate::scenario::Scenario;
use crate::stack::{self, BackendKind, MOCK_PORT};
use crate::verify::StreamModel;

/// The scenario with the ports the files actually carry: the candidate's
/// own port, and the base's when the base is real (not simulated).
pub(super) fn effective(scenario: &Scenario, p: &Prepared) -> Scenario {
    let mut s = scenario.clone();
    if !s.change.derives() {
        if let Some(port) = json_port(&p.candidate.goproxy_config) {
            s.change.port = port;
            s.change.nginx_port = port;
        }
    }
    if !p.start.origin.starts_with("simulated") {
        if let Some(port) = json_port(&p.start.goproxy_config) {
            s.start_port = port;
        }
    }
    s
}

pub(super) fn json_port(text: &str) -> Option<u16> {
    crate::ports::json_port(std::path::Path::new("config.json"), text)?.port()
}

/// A run's files and mocks, before any container starts.
#[derive(Debug)]
pub struct Prepared {
    pub wiremock: wiremock::MockServer,
    pub start: Rendered,
    pub candidate: Rendered,
    pub run_dir: tempfile::TempDir,
    pub live: LiveFiles,
    pub candidate_json: PathBuf,
    pub candidate_nginx: PathBuf,
    /// The streaming mock, for the local backend (containers run their own).
    pub mock: Option<mock_upstream::MockUpstream>,
}

/// Starts wiremock, renders the base and candidate configs pointed at the
/// mocks, and writes them into a fresh run directory.
pub async fn prepare(scenario: &Scenario, opts: &GateOptions) -> Result<Prepared, GateError> {
    let wiremock = stack::start_wiremock(opts.backend).await?;
    let (mocks, mock) = mocks(opts.backend, wiremock.address().port()).await?;
    let sources = sources_of(&opts.targets);
    let (start, candidate) =
        render::render(scenario, &sources, &opts.base, &mocks).map_err(GateError::Render)?;
    let run_dir = tempfile::Builder::new()
        .prefix(&format!("harness-{}-", scenario.name))
        .tempdir()
        .map_err(GateError::RunDir)?;
    let live = LiveFiles::create(run_dir.path(), &start).map_err(|source| GateError::Write {
        what: "run's files",
        source,
    })?;
    let (candidate_json, candidate_nginx) =
        live.write_candidate(&candidate)
            .map_err(|source| GateError::Write {
                what: "candidate files",
                source,
            })?;
    Ok(Prepared {
        wiremock,
        start,
        candidate,
        run_dir,
        live,
        candidate_json,
        candidate_nginx,
        mock,
    })
}

/// Where goproxy reaches the mocks on this backend, and the streaming mock
/// itself when the harness runs it (the container backend runs its own).
async fn mocks(
    backend: BackendKind,
    wm_port: u16,
) -> Result<(MockEndpoints, Option<mock_upstream::MockUpstream>), GateError> {
    match backend {
        BackendKind::Containers => Ok((
            MockEndpoints {
                stream_mock: format!("http://upstream:{MOCK_PORT}"),
                wiremock: Some(format!("http://host.docker.internal:{wm_port}")),
                goproxy_host: None,
            },
            None,
        )),
        BackendKind::Local => {
            let listener =
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|source| GateError::Mock {
                        what: "bind",
                        source,
                    })?;
            let mock = mock_upstream::MockUpstream::start(listener, Default::default())
                .await
                .map_err(|source| GateError::Mock {
                    what: "start",
                    source,
                })?;
            let endpoints = MockEndpoints {
                stream_mock: format!("http://{}", mock.addr()),
                wiremock: Some(format!("http://127.0.0.1:{wm_port}")),
                goproxy_host: Some("127.0.0.1".into()),
            };
            Ok((endpoints, Some(mock)))
        }
    }
}

/// The files to render, and the names nginx reaches goproxy by (from compose).
pub fn sources_of(t: &LintTargets) -> Sources {
    Sources::of(t)
}

/// The first model of the deployed config that the streaming mock serves
/// in OpenAI format (the probe model goes to wiremock instead).
pub fn stream_model(candidate: &str, start: &str) -> Result<StreamModel, GateError> {
    // A candidate that does not parse (a no-go scenario) still has a start.
    let config = proxy::config::Config::from_json(candidate, "candidate")
        .or_else(|_| proxy::config::Config::from_json(start, "start"))
        .map_err(GateError::ConfigDoesNotLoad)?;
    config
        .models()
        .iter()
        .find(|m| {
            &*m.id != files::PROBE_MODEL
                && config
                    .endpoint_for(m, proxy::config::Format::OpenAi)
                    .is_some_and(|e| &*e.name != files::PROBE_ENDPOINT)
        })
        .map(|m| StreamModel {
            id: m.id.to_string(),
            upstream_ids: m
                .upstream_ids
                .iter()
                .map(|(id, _)| id.to_string())
                .collect(),
        })
        .ok_or(GateError::NoStreamModel)
}
