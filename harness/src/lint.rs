//! Static checks of a deployment tree: no containers, no network.
//!
//! The half-done port change (JSON says 8004, nginx still says 8005) is the
//! classic way this deployment breaks, so the gate compares every file that
//! names the port and names both sides of any disagreement.

use std::path::{Path, PathBuf};

use crate::check::{Checks, Outcome, Phase};
use crate::ports::{self, PortSite};

/// The files of a deployment that name goproxy's port.
#[derive(Debug, Clone)]
pub struct LintTargets {
    /// The production goproxy config (`config-ohmygpt-prod.json`).
    pub prod_config: PathBuf,
    /// The dev config, which must agree with prod on the port.
    pub dev_config: Option<PathBuf>,
    /// The nginx config with `upstream goproxy { server goproxy:<port>; }`.
    pub nginx_conf: PathBuf,
    /// Compose files, scanned for goproxy ports.
    pub compose_files: Vec<PathBuf>,
}

impl LintTargets {
    /// The files of this repository's layout under `root`.
    pub fn from_root(root: &Path) -> Self {
        let dev = root.join("proxy/config-ohmygpt-dev.json");
        Self {
            prod_config: root.join("proxy/config-ohmygpt-prod.json"),
            dev_config: dev.exists().then_some(dev),
            nginx_conf: root.join("nginx/nginx.conf"),
            compose_files: ["docker-compose.yml", "docker-compose.test.yml"]
                .iter()
                .map(|f| root.join(f))
                .filter(|p| p.exists())
                .collect(),
        }
    }
}

/// Runs every lint check, recording each into `checks`.
pub async fn run(targets: &LintTargets, checks: &mut Checks) {
    let mut configs = vec![("prod", targets.prod_config.clone())];
    if let Some(dev) = &targets.dev_config {
        configs.push(("dev", dev.clone()));
    }
    for (label, path) in &configs {
        let name = format!("lint.goproxy-config-{label}");
        checks
            .run(Phase::Lint, &name, async { validate_goproxy_config(path) })
            .await;
    }
    checks
        .run(Phase::Lint, "lint.ports-agree", async {
            ports_agree(targets)
        })
        .await;
}

/// Loads and validates a goproxy config with goproxy's own code.
pub fn validate_goproxy_config(path: &Path) -> Outcome {
    match proxy::config::Config::load(path) {
        Ok(config) => Ok(format!(
            "{}: valid, port {}, {} endpoints, {} models",
            path.display(),
            config.port(),
            config.endpoints().len(),
            config.models().len()
        )),
        Err(e) => Err(format!("{e}")),
    }
}

/// Every file that names goproxy's port names the same one.
pub fn ports_agree(targets: &LintTargets) -> Outcome {
    let prod = read_json_port(&targets.prod_config)?;
    let mut sites: Vec<PortSite> = vec![prod.clone()];
    if let Some(dev) = &targets.dev_config {
        sites.push(read_json_port(dev)?);
    }
    let nginx_text = read(&targets.nginx_conf)?;
    // Only `server goproxy:<port>` is goproxy's own port; other servers in
    // the group (a second instance, `goproxy-b:8005`) have their own configs.
    let nginx =
        ports::nginx_upstream_servers(&targets.nginx_conf, &nginx_text, "goproxy", Some("goproxy"));
    if nginx.is_empty() {
        return Err(format!(
            "{} has no `upstream goproxy {{ server <host>:<port>; }}`: nginx cannot reach goproxy",
            targets.nginx_conf.display()
        ));
    }
    sites.extend(nginx);
    for compose in &targets.compose_files {
        let text = read(compose)?;
        sites.extend(ports::compose_goproxy_ports(compose, &text, "goproxy"));
    }

    let mismatches: Vec<String> = sites
        .iter()
        .skip(1)
        .filter(|s| s.value != prod.value)
        .map(|s| format!("port mismatch: {prod}, but {s}"))
        .collect();
    if let Some(bad) = sites.iter().find(|s| s.port().is_none()) {
        return Err(format!(
            "{bad}: not a TCP port (1-65535){}",
            if mismatches.is_empty() {
                String::new()
            } else {
                format!("; also {}", mismatches.join("; "))
            }
        ));
    }
    if mismatches.is_empty() {
        Ok(format!(
            "port {} in all {} places: {}",
            prod.value,
            sites.len(),
            sites
                .iter()
                .map(|s| format!("{}:{}", s.file.display(), s.line))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        Err(mismatches.join("\n"))
    }
}

fn read_json_port(path: &Path) -> Result<PortSite, String> {
    let text = read(path)?;
    ports::json_port(path, &text).ok_or_else(|| {
        format!(
            "{}: no top-level \"port\" field; goproxy needs one (e.g. \"port\": 8004)",
            path.display()
        )
    })
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
