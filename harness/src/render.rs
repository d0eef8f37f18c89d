//! The configs a run deploys, rendered from the operator's files.
//!
//! The candidate is the operator's files as written. The only changes are
//! the ones the test stack needs, and each is listed in
//! [`Rendered::substitutions`] for the report: endpoint URLs pointed at the
//! mocks, a probe model added, certificate paths moved to the throwaway
//! certificate, included files inlined (the stack mounts one nginx.conf).
//! No port is rewritten, unless a fault scenario derives its candidate on
//! purpose ([`crate::scenario::Change::derives`]).
//!
//! The base is what is deployed now: the files at a git ref or in a
//! directory; without either it is simulated from the candidate at the
//! scenario's start port, and says so.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::nginx::render::{flatten, Edit, LineMap};
use crate::nginx::{goproxy, NginxConfig, NginxError};
use crate::scenario::{Fault, Scenario};

pub mod base;
mod json_splice;

pub use base::BaseSource;

/// Address goproxy binds in the "fails to start" fault: TEST-NET-2
/// (RFC 5737), never assigned inside a container, so bind() fails while the
/// config itself is valid.
pub const UNBINDABLE_HOST: &str = "198.51.100.1";
/// The probe model routed to wiremock, and the id wiremock must receive.
pub const PROBE_MODEL: &str = "harness-probe";
/// The endpoint that serves the probe model (wiremock).
pub const PROBE_ENDPOINT: &str = "probe-openai";
pub const PROBE_UPSTREAM_MODEL: &str = "harness-probe-upstream-v1";
/// Where the test stack mounts its throwaway certificate in nginx.
pub const CERT_DIR: &str = "/etc/letsencrypt/live/chat.trollllm.xyz";

/// What stops a config from being rendered: always the operator's file.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} starts with a UTF-8 byte-order mark (EF BB BF), which JSON does not allow; save it without BOM")]
    ByteOrderMark { path: PathBuf },
    #[error("{path}:{line}:{column}: not valid JSON: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: the goproxy config must be a JSON object")]
    NotObject { path: PathBuf },
    #[error(transparent)]
    Nginx(#[from] NginxError),
    #[error(transparent)]
    Base(#[from] base::BaseError),
}

/// The operator's files a run deploys.
#[derive(Debug, Clone)]
pub struct Sources {
    /// goproxy JSON as operators have it (endpoints pointing at real upstreams).
    pub goproxy_config: PathBuf,
    /// nginx.conf as deployed (its includes are read too).
    pub nginx_conf: PathBuf,
    /// The names nginx reaches goproxy by (the compose service, aliases).
    pub goproxy_names: Vec<String>,
    /// Compose's bind mounts into nginx's conf directory (container, host).
    pub nginx_mounts: Vec<(PathBuf, PathBuf)>,
    /// The compose files these came from (read again at a base's ref).
    pub compose_files: Vec<PathBuf>,
    /// The compose service that runs goproxy.
    pub service: String,
}

impl Sources {
    pub fn from_root(root: &Path) -> Self {
        Self {
            goproxy_config: root.join("proxy/config-ohmygpt-prod.json"),
            nginx_conf: root.join("nginx/nginx.conf"),
            goproxy_names: vec![crate::lint::DEFAULT_SERVICE.into()],
            nginx_mounts: Vec::new(),
            compose_files: Vec::new(),
            service: crate::lint::DEFAULT_SERVICE.into(),
        }
    }

    /// The files to render, and the names nginx reaches goproxy by and the
    /// mounts nginx sees (from compose, when it reads).
    pub fn of(t: &crate::lint::LintTargets) -> Self {
        let (names, mounts) = match crate::lint::Deployment::read(t) {
            Ok(d) => (d.goproxy_names, d.nginx_paths.mounts),
            Err(_) => (vec![t.service.clone()], Vec::new()),
        };
        Self {
            goproxy_config: t.prod_config.clone(),
            nginx_conf: t.nginx_conf.clone(),
            goproxy_names: names,
            nginx_mounts: mounts,
            compose_files: t.compose_files.clone(),
            service: t.service.clone(),
        }
    }
}

/// Where the mocks are, as seen from inside the goproxy container.
#[derive(Debug, Clone)]
pub struct MockEndpoints {
    /// Base of the streaming mock container, e.g. `http://upstream:9000`.
    pub stream_mock: String,
    /// Base of the wiremock server on the host.
    pub wiremock: Option<String>,
    /// The address goproxy binds (`host`), when not its default 0.0.0.0.
    pub goproxy_host: Option<String>,
}

/// The two configs of a run, rendered from the operator's files.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub goproxy_config: String,
    pub nginx_conf: String,
    /// The second instance's config (`goproxy-b`), in a multi-instance run.
    pub goproxy_b_config: Option<String>,
    /// Lines of `nginx_conf` back to the operator's files and lines.
    pub nginx_map: LineMap,
    /// Every change from the operator's bytes, in the operator's terms.
    pub substitutions: Vec<String>,
    /// Where it came from: "the files under /repo", "git ref v1.4", "simulated ...".
    pub origin: String,
}

/// What a config is rendered with.
#[derive(Debug, Clone, Default)]
struct Knobs<'a> {
    port: Option<String>,
    nginx_port: Option<u16>,
    json_text: Option<&'a str>,
    append: Option<&'a str>,
    host: Option<&'a str>,
    second: Option<u16>,
}

/// Renders the deployment before the change (base) and the candidate.
pub fn render(
    scenario: &Scenario,
    sources: &Sources,
    base: &BaseSource,
    mocks: &MockEndpoints,
) -> Result<(Rendered, Rendered), RenderError> {
    let candidate = candidate(scenario, sources, mocks)?;
    let base_knobs = Knobs {
        host: mocks.goproxy_host.as_deref(),
        second: scenario.second_port,
        ..Default::default()
    };
    let start = match base {
        BaseSource::Simulated => simulated(scenario, sources, mocks, base_knobs)?,
        other => materialized(other, sources, mocks, &base_knobs)?,
    };
    Ok((start, candidate))
}

/// The operator's files as written, or as the scenario derives them.
fn candidate(
    scenario: &Scenario,
    sources: &Sources,
    mocks: &MockEndpoints,
) -> Result<Rendered, RenderError> {
    let change = &scenario.change;
    let derive = change.derives();
    let host = if scenario.fault == Fault::GoproxyFailsToStart {
        Some(UNBINDABLE_HOST)
    } else {
        mocks.goproxy_host.as_deref()
    };
    let knobs = Knobs {
        port: derive.then(|| {
            change
                .port_literal
                .clone()
                .unwrap_or_else(|| change.port.to_string())
        }),
        nginx_port: derive.then_some(change.nginx_port),
        json_text: change.goproxy_config_text.as_deref(),
        append: change.nginx_append.as_deref(),
        host,
        second: scenario.second_port,
    };
    let mut candidate = one(sources, mocks, &knobs)?;
    candidate.origin = format!(
        "{} and {}{}",
        sources.goproxy_config.display(),
        sources.nginx_conf.display(),
        if derive {
            ", derived by the scenario"
        } else {
            " as written"
        }
    );
    Ok(candidate)
}

/// No base given: the candidate at the scenario's start port.
fn simulated(
    scenario: &Scenario,
    sources: &Sources,
    mocks: &MockEndpoints,
    base_knobs: Knobs,
) -> Result<Rendered, RenderError> {
    let knobs = Knobs {
        port: Some(scenario.start_port.to_string()),
        nginx_port: Some(scenario.start_port),
        ..base_knobs
    };
    let mut r = one(sources, mocks, &knobs)?;
    r.origin = format!(
        "simulated: the candidate with goproxy's port set to {} (no --base or --base-dir given)",
        scenario.start_port
    );
    Ok(r)
}

/// The base's own files (a git ref or a directory), rendered as they are and
/// shown under the name the operator knows them by.
fn materialized(
    base: &BaseSource,
    sources: &Sources,
    mocks: &MockEndpoints,
    base_knobs: &Knobs,
) -> Result<Rendered, RenderError> {
    let files = base::Files {
        goproxy_config: &sources.goproxy_config,
        nginx_conf: &sources.nginx_conf,
        compose_files: &sources.compose_files,
    };
    let (m, origin) = base.materialize(files)?;
    // The base's service names and mounts come from its own compose files.
    let base_sources = Sources::of(&crate::lint::LintTargets {
        prod_config: m.goproxy_config.clone(),
        dev_config: None,
        dev_note: None,
        nginx_conf: m.nginx_conf.clone(),
        compose_files: m.compose_files.clone(),
        service: sources.service.clone(),
    });
    let mut r = one(&base_sources, mocks, base_knobs)?;
    if let Some((dir, label)) = &m.shown_as {
        let from = format!("{}/", dir.display());
        for s in &mut r.substitutions {
            *s = s.replace(&from, label);
        }
        r.nginx_map.relabel(dir, label);
    }
    r.origin = origin;
    Ok(r)
}

fn one(sources: &Sources, mocks: &MockEndpoints, k: &Knobs) -> Result<Rendered, RenderError> {
    let path = &sources.goproxy_config;
    let mut subs = Vec::new();
    let json = read(path)?;
    let goproxy_config = match k.json_text {
        // A scenario's broken file is deployed verbatim: lint must see it as is.
        Some(t) => {
            subs.push(format!(
                "{}: replaced by the scenario's text",
                path.display()
            ));
            t.to_string()
        }
        None => goproxy_json(path, &json, k.port.as_deref(), mocks, k.host, &mut subs)?,
    };
    let goproxy_b_config = k
        .second
        .map(|p| {
            goproxy_json(
                path,
                &json,
                Some(&p.to_string()),
                mocks,
                k.host,
                &mut Vec::new(),
            )
        })
        .transpose()?;
    let mut map = crate::nginx::PathMap::for_main(&sources.nginx_conf);
    for (c, h) in &sources.nginx_mounts {
        map.mount(c.clone(), h.clone());
    }
    let cfg = NginxConfig::load_with(&sources.nginx_conf, &map)?;
    let (nginx_conf, nginx_map) = nginx_conf(&cfg, &sources.goproxy_names, k, &mut subs);
    Ok(Rendered {
        goproxy_config,
        nginx_conf,
        goproxy_b_config,
        nginx_map,
        substitutions: subs,
        origin: String::new(),
    })
}

fn read(path: &Path) -> Result<String, RenderError> {
    let bytes = std::fs::read(path).map_err(|source| RenderError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(RenderError::ByteOrderMark {
            path: path.to_path_buf(),
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The operator's goproxy JSON for the test stack: endpoints pointed at the
/// mocks (paths kept), the probe model added; `port` only when given (as a
/// JSON literal, so invalid ports can be reproduced by a fault scenario).
pub fn goproxy_json(
    path: &Path,
    text: &str,
    port_literal: Option<&str>,
    mocks: &MockEndpoints,
    host: Option<&str>,
    subs: &mut Vec<String>,
) -> Result<String, RenderError> {
    let root: Value = serde_json::from_str(text).map_err(|e| json_error(path, e))?;
    if !root.is_object() {
        return Err(RenderError::NotObject {
            path: path.to_path_buf(),
        });
    }
    let (members, close) = json_splice::object(text, json_splice::root(text));
    let mut edits = top_level_edits(path, &members, close, port_literal, host, subs)?;
    let endpoints = arrays(text, &members, "endpoints");
    rebase_endpoints(path, text, &endpoints, mocks, subs, &mut edits);
    if let Some(wm) = &mocks.wiremock {
        let models = arrays(text, &members, "models");
        add_probe(path, wm, &endpoints, &models, subs, &mut edits);
    }
    Ok(json_splice::splice(text, edits))
}

/// One replacement in the operator's JSON text: a byte range and its new text.
type Splice = (std::ops::Range<usize>, String);

fn json_error(path: &Path, e: serde_json::Error) -> RenderError {
    RenderError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

/// `"port"` and `"host"` set at every place the operator has them, else
/// appended to the root object.
fn top_level_edits(
    path: &Path,
    members: &[json_splice::Member],
    close: usize,
    port_literal: Option<&str>,
    host: Option<&str>,
    subs: &mut Vec<String>,
) -> Result<Vec<Splice>, RenderError> {
    let file = path.display();
    let mut edits = Vec::new();
    let mut added = Vec::new();
    let mut set = |key: &str, lit: &str, edits: &mut Vec<_>| {
        let spans: Vec<_> = members.iter().filter(|(k, _)| k == key).collect();
        if spans.is_empty() {
            added.push(format!("\"{key}\": {lit}"));
        }
        for (_, span) in spans {
            edits.push((span.clone(), lit.to_string()));
        }
    };
    if let Some(lit) = port_literal {
        serde_json::from_str::<Value>(lit).map_err(|e| json_error(path, e))?;
        set("port", lit, &mut edits);
        subs.push(format!("{file}: \"port\" set to {lit} by the scenario"));
    }
    if let Some(host) = host {
        let lit = serde_json::to_string(host).expect("a string serializes");
        set("host", &lit, &mut edits);
        subs.push(format!("{file}: \"host\" set to {host}"));
    }
    if !added.is_empty() {
        let values: Vec<_> = members.iter().map(|(_, r)| r.clone()).collect();
        edits.push(json_splice::append(&values, close, &added.join(", ")));
    }
    Ok(edits)
}

/// Each top-level array member named `key`: its elements and closing bracket.
fn arrays(
    text: &str,
    members: &[json_splice::Member],
    key: &str,
) -> Vec<(Vec<std::ops::Range<usize>>, usize)> {
    members
        .iter()
        .filter(|(k, r)| k == key && text.as_bytes()[r.start] == b'[')
        .map(|(_, r)| json_splice::array(text, r.start))
        .collect()
}

/// Every endpoint's `base_url` pointed at the mock upstream, path kept.
fn rebase_endpoints(
    path: &Path,
    text: &str,
    endpoints: &[(Vec<std::ops::Range<usize>>, usize)],
    mocks: &MockEndpoints,
    subs: &mut Vec<String>,
    edits: &mut Vec<Splice>,
) {
    let file = path.display();
    for ep in endpoints.iter().flat_map(|(els, _)| els) {
        if text.as_bytes()[ep.start] != b'{' {
            continue;
        }
        let (fields, _) = json_splice::object(text, ep.start);
        let string = |key: &str| {
            fields
                .iter()
                .filter(|(k, _)| k == key)
                .filter_map(|(_, r)| {
                    Some((
                        r.clone(),
                        serde_json::from_str::<String>(&text[r.clone()]).ok()?,
                    ))
                })
                .collect::<Vec<_>>()
        };
        let name = string("name").pop().map_or("?".to_string(), |(_, n)| n);
        for (span, url) in string("base_url") {
            let new = rebase(&url, &mocks.stream_mock);
            subs.push(format!(
                "{file}: endpoint {name} base_url {url} -> {new} (the mock upstream)"
            ));
            edits.push((
                span,
                serde_json::to_string(&new).expect("a string serializes"),
            ));
        }
    }
}

/// The probe endpoint (wiremock at `wm`) and its model, appended to the
/// last `endpoints` and `models` arrays.
fn add_probe(
    path: &Path,
    wm: &str,
    endpoints: &[(Vec<std::ops::Range<usize>>, usize)],
    models: &[(Vec<std::ops::Range<usize>>, usize)],
    subs: &mut Vec<String>,
    edits: &mut Vec<Splice>,
) {
    if let Some((els, close)) = endpoints.last() {
        let probe = serde_json::json!({
            "name": PROBE_ENDPOINT,
            "base_url": format!("{wm}/v1/chat/completions"),
        });
        edits.push(json_splice::append(els, *close, &probe.to_string()));
    }
    if let Some((els, close)) = models.last() {
        let model = serde_json::json!({
            "id": PROBE_MODEL,
            "name": "harness probe (wiremock)",
            "type": "openai",
            "upstream": "probe",
            "upstream_model_id": PROBE_UPSTREAM_MODEL,
            "input_price_per_mtok": 1.0,
            "output_price_per_mtok": 2.0,
        });
        edits.push(json_splice::append(els, *close, &model.to_string()));
        subs.push(format!(
            "{}: probe endpoint {PROBE_ENDPOINT} and model {PROBE_MODEL} added (wiremock)",
            path.display()
        ));
    }
}

/// `https://api.example.com/v1/messages` -> `<base>/v1/messages`.
fn rebase(url: &str, base: &str) -> String {
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = after_scheme
        .find('/')
        .map(|i| &after_scheme[i..])
        .unwrap_or("/");
    format!("{}{}", base.trim_end_matches('/'), path)
}

/// nginx for the test stack, by span edits of the operator's files.
fn nginx_conf(
    cfg: &NginxConfig,
    names: &[String],
    k: &Knobs,
    subs: &mut Vec<String>,
) -> (String, LineMap) {
    let mut edits = Vec::new();
    let sites = goproxy::sites(cfg, names);
    if let Some(port) = k.nginx_port {
        for s in &sites {
            let text = if s.port.is_some() {
                port.to_string()
            } else {
                format!("{}:{port}", s.host)
            };
            edits.push(Edit {
                file: s.file,
                span: s.port_span.clone(),
                text,
            });
        }
        subs.push(format!(
            "nginx: goproxy's port set to {port} by the scenario"
        ));
    }
    if let Some(p) = k.second {
        if let Some(last) = sites
            .iter()
            .rev()
            .find(|s| matches!(s.via, goproxy::Via::Upstream { .. }))
        {
            edits.push(Edit {
                file: last.file,
                span: last.stmt_end..last.stmt_end,
                text: format!(" server goproxy-b:{p};"),
            });
        }
    }
    cert_paths(cfg, &mut edits, subs);
    if let Some(extra) = k.append {
        if let Some((file, at)) = http_open(cfg) {
            edits.push(Edit {
                file,
                span: at..at,
                text: format!(" {extra}"),
            });
            subs.push(format!(
                "nginx: `{extra}` added inside http {{ }} by the scenario"
            ));
        }
    }
    for f in cfg.files.iter().skip(1) {
        subs.push(format!(
            "nginx: {} inlined at its include (the stack mounts one file)",
            f.path.display()
        ));
    }
    flatten(cfg, &edits)
}

/// `ssl_certificate` and `ssl_certificate_key` moved to the throwaway certificate.
fn cert_paths(cfg: &NginxConfig, edits: &mut Vec<Edit>, subs: &mut Vec<String>) {
    cfg.walk(&mut |d, _| {
        let file = match d.name.as_str() {
            "ssl_certificate" => "fullchain.pem",
            "ssl_certificate_key" => "privkey.pem",
            _ => return,
        };
        let Some(a) = d.args.first() else { return };
        let new = format!("{CERT_DIR}/{file}");
        if a.value != new && !a.value.contains('$') {
            subs.push(format!(
                "{}:{}: {} {} -> {new} (the test certificate)",
                cfg.files[d.file].path.display(),
                d.line,
                d.name,
                a.value
            ));
            edits.push(Edit {
                file: d.file,
                span: a.span.clone(),
                text: new,
            });
        }
    });
}

/// Just after the `{` of the `http` block.
fn http_open(cfg: &NginxConfig) -> Option<(usize, usize)> {
    let mut at = None;
    cfg.walk(&mut |d, ctx| {
        if at.is_none() && d.name == "http" && ctx.is_empty() && d.block.is_some() {
            let text = &cfg.files[d.file].text;
            at = text[d.span.clone()]
                .find('{')
                .map(|i| (d.file, d.span.start + i + 1));
        }
    });
    at
}

/// Marks `server <host>:<port>` of goproxy's upstream as `down`, so nginx
/// sends it nothing (to take one instance out of rotation before a restart).
pub fn mark_down(conf: &str, host: &str) -> String {
    let Ok(cfg) = NginxConfig::from_text(Path::new("nginx.conf"), conf) else {
        return conf.to_string();
    };
    let edits: Vec<Edit> = goproxy::sites(&cfg, &[host.to_string()])
        .into_iter()
        .filter(|s| matches!(s.via, goproxy::Via::Upstream { .. }))
        .map(|s| Edit {
            file: 0,
            span: s.stmt_end - 1..s.stmt_end - 1,
            text: " down".into(),
        })
        .collect();
    crate::nginx::render::apply(conf, &edits.iter().collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    const JSON: &str = r#"{"port": 8004, "endpoints": [{"name": "ohmygpt-openai",
        "base_url": "https://api.example.com/v1/chat/completions"}], "models": []}"#;

    fn tree(nginx: &str) -> (tempfile::TempDir, Sources) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.json"), JSON).unwrap();
        std::fs::write(dir.path().join("nginx.conf"), nginx).unwrap();
        let s = Sources {
            goproxy_config: dir.path().join("c.json"),
            nginx_conf: dir.path().join("nginx.conf"),
            goproxy_names: vec!["goproxy".into()],
            nginx_mounts: Vec::new(),
            compose_files: Vec::new(),
            service: "goproxy".into(),
        };
        (dir, s)
    }

    fn mocks() -> MockEndpoints {
        MockEndpoints {
            stream_mock: "http://upstream:9000".into(),
            wiremock: Some("http://host.docker.internal:4000".into()),
            goproxy_host: None,
        }
    }

    fn scenario(extra: &str) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(&p, format!("description = \"t\"\n[start]\nport = 8005\n[change]\nport = 8004\n{extra}[expect]\nverdict = \"go\"\n")).unwrap();
        Scenario::load(&p).unwrap()
    }

    /// The candidate is the operator's bytes (odd spacing, key order, a
    /// duplicate key, an escaped string) except the listed substitutions.
    #[test]
    fn goproxy_json_keeps_every_other_byte() {
        let text = "{\"models\":[ {\"id\":\"m\", \"name\": \"a\\\"b\"} ],\n\t\"endpoints\" : [\n  { \"base_url\" : \"https://x.example/v1/messages\",\"name\":\"e\" }\n ],\n \"port\": 8004, \"port\": 8004 }\n";
        let mut subs = Vec::new();
        let out = goproxy_json(
            Path::new("/op/goproxy.json"),
            text,
            Some("8004"),
            &mocks(),
            Some("0.0.0.0"),
            &mut subs,
        )
        .unwrap();
        let probe_ep = r#"{"base_url":"http://host.docker.internal:4000/v1/chat/completions","name":"probe-openai"}"#;
        let expected = text
            .replace(
                "https://x.example/v1/messages",
                "http://upstream:9000/v1/messages",
            )
            .replace(
                "\"name\":\"e\" }",
                &format!("\"name\":\"e\" }}, {probe_ep}"),
            )
            .replace("\"a\\\"b\"} ]", "\"a\\\"b\"}, PROBE_MODEL ]")
            .replace("8004 }", "8004, \"host\": \"0.0.0.0\" }");
        let model_at = out.find(", {\"id\":\"harness-probe").map(|i| i + 2);
        let model_end = model_at.map(|i| i + out[i..].find('}').unwrap() + 1);
        let (a, b) = (model_at.unwrap(), model_end.unwrap());
        let out_with_placeholder = format!("{}PROBE_MODEL{}", &out[..a], &out[b..]);
        assert_eq!(out_with_placeholder, expected, "{out}");
        serde_json::from_str::<Value>(&out).unwrap();
        assert_eq!(subs.len(), 4, "{subs:?}");
    }

    /// The candidate keeps every port as written (a half-done change stays
    /// half done); only the base is simulated at the start port, and other
    /// upstreams are never touched.
    #[test]
    fn candidate_keeps_ports_base_is_simulated() {
        let nginx = "http {\n  upstream goproxy_legacy { server upstream:9000; }\n  upstream goproxy { server goproxy:8005; } # half done\n}\n";
        let (_d, src) = tree(nginx);
        let (base, cand) = render(&scenario(""), &src, &BaseSource::Simulated, &mocks()).unwrap();
        assert_eq!(cand.nginx_conf, nginx);
        let v: Value = serde_json::from_str(&cand.goproxy_config).unwrap();
        assert_eq!(v["port"], 8004);
        assert_eq!(
            v["endpoints"][0]["base_url"],
            "http://upstream:9000/v1/chat/completions"
        );
        assert!(
            cand.substitutions.iter().any(|s| s.contains("base_url")),
            "{:?}",
            cand.substitutions
        );
        assert!(base.origin.starts_with("simulated"));
        assert!(base.nginx_conf.contains("server upstream:9000;"));
        assert!(base.nginx_conf.contains("server goproxy:8005;"));
        let v: Value = serde_json::from_str(&base.goproxy_config).unwrap();
        assert_eq!(v["port"], 8005);
    }

    /// A fault scenario derives its candidate on purpose, on the same line.
    #[test]
    fn fault_scenarios_derive() {
        let nginx = "http {\n  upstream goproxy { server goproxy:8004; }\n}\n";
        let (_d, src) = tree(nginx);
        let s =
            scenario("nginx_port = 8005\nnginx_append = \"proxy_bufering off;\"\nforce = true\n");
        let (_, cand) = render(&s, &src, &BaseSource::Simulated, &mocks()).unwrap();
        assert_eq!(
            cand.nginx_conf,
            "http { proxy_bufering off;\n  upstream goproxy { server goproxy:8005; }\n}\n"
        );
    }

    /// Multi-instance: goproxy-b joins the upstream; mark_down takes one out.
    #[test]
    fn second_instance_and_mark_down() {
        let nginx = "http {\n  upstream goproxy {\n    server goproxy:8004; # new\n    keepalive 32;\n  }\n}\n";
        let (_d, src) = tree(nginx);
        let s = scenario("").clone();
        let mut s = s;
        s.second_port = Some(8006);
        let (_, cand) = render(&s, &src, &BaseSource::Simulated, &mocks()).unwrap();
        assert!(
            cand.nginx_conf
                .contains("server goproxy:8004; server goproxy-b:8006; # new"),
            "{}",
            cand.nginx_conf
        );
        let down = mark_down(&cand.nginx_conf, "goproxy-b");
        assert!(
            down.contains("server goproxy:8004; server goproxy-b:8006 down; # new"),
            "{down}"
        );
    }
}
