//! Static checks of the deployment tree: no containers, no network.
//!
//! The half-done port change (JSON says 8004, nginx still says 8005) is the
//! classic way this deployment breaks, so the gate compares every file that
//! names the port and names both sides of any disagreement. nginx and
//! compose are read by their own rules ([`crate::nginx`],
//! [`crate::compose_file`]); goproxy's address in nginx is found through
//! the compose service that runs goproxy, never by an upstream's name.
//! goproxy's shutdown (its drain) must also fit in the `stop_grace_period`
//! compose gives it, or docker SIGKILLs it mid-drain at the switch.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::check::{Checks, Phase};
use crate::compose_file::{ComposeFile, ComposeFileError};
use crate::compose_grace::{docker_wait, Grace, COMPOSE_DEFAULT_GRACE};
use crate::nginx::{goproxy, NginxConfig, NginxError, PathMap};
use crate::ports::{self, PortSite};

/// Why a file fails lint, or cannot be read for it: the file, the line
/// where there is one, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error(transparent)]
    Compose(#[from] ComposeFileError),
    #[error(transparent)]
    Nginx(#[from] NginxError),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: starts with a UTF-8 byte-order mark (EF BB BF), which {reader}; save the \
         file without BOM",
        path.display()
    )]
    ByteOrderMark {
        path: PathBuf,
        /// What the file's reader makes of it.
        reader: &'static str,
    },
    /// goproxy's own loader refused the config (its message names the file).
    #[error(transparent)]
    Config(Box<proxy::config::ConfigError>),
    #[error("{}: no top-level \"port\" field; goproxy needs one (e.g. \"port\": 8004)", path.display())]
    NoPort { path: PathBuf },
    #[error(
        "{}: no `server` of an upstream and no `proxy_pass` names the goproxy service \
         ({names}), so nginx cannot reach goproxy; proxy_pass targets found: {found}",
        main.display()
    )]
    NoGoproxySite {
        main: PathBuf,
        names: String,
        found: String,
    },
    /// A port value that is no TCP port, and any mismatches beside it.
    #[error("{site}: not a TCP port (1-65535){also}")]
    NotAPort { site: String, also: String },
    /// Files that name different ports, one line each.
    #[error("{}", .0.join("\n"))]
    Mismatch(Vec<String>),
    /// `stop_grace_period`s shorter than goproxy's drain, or unreadable,
    /// one line each.
    #[error("{}", .0.join("\n"))]
    GraceTooShort(Vec<String>),
}

/// What a byte-order mark does to a goproxy JSON, for [`LintError::ByteOrderMark`].
const JSON_BOM: &str = "JSON does not allow and goproxy refuses";

/// The compose service that runs goproxy unless `--service` says otherwise.
pub const DEFAULT_SERVICE: &str = "goproxy";

/// The files of a deployment that name goproxy's port.
#[derive(Debug, Clone)]
pub struct LintTargets {
    /// The production goproxy config (`config-ohmygpt-prod.json`).
    pub prod_config: PathBuf,
    /// The dev config, which must agree with prod on the port.
    pub dev_config: Option<PathBuf>,
    /// Why no dev config is judged, when none is (shown as a skipped check).
    pub dev_note: Option<String>,
    /// The main nginx config; its includes are read too.
    pub nginx_conf: PathBuf,
    /// Compose files, scanned for goproxy ports (those that define the service).
    pub compose_files: Vec<PathBuf>,
    /// The compose service that runs goproxy.
    pub service: String,
}

impl LintTargets {
    /// The files of this repository's layout under `root`.
    pub fn from_root(root: &Path) -> Self {
        let dev = root.join("proxy/config-ohmygpt-dev.json");
        Self {
            prod_config: root.join("proxy/config-ohmygpt-prod.json"),
            dev_note: (!dev.exists())
                .then(|| format!("not judged: no dev config at {}", dev.display())),
            dev_config: dev.exists().then_some(dev),
            nginx_conf: root.join("nginx/nginx.conf"),
            compose_files: compose_files_in(root),
            service: DEFAULT_SERVICE.into(),
        }
    }

    /// Every file named, for a bad-input check before anything runs.
    pub fn files(&self) -> Vec<&Path> {
        let mut v = vec![self.prod_config.as_path(), self.nginx_conf.as_path()];
        v.extend(self.dev_config.as_deref());
        v.extend(self.compose_files.iter().map(PathBuf::as_path));
        v
    }

    /// The first named file that cannot be read: bad input (exit 2).
    pub fn unreadable(&self) -> Option<LintError> {
        self.files()
            .into_iter()
            .find_map(|p| {
                std::fs::File::open(p)
                    .and_then(|f| f.metadata())
                    .and_then(|m| {
                        if m.is_dir() {
                            Err(std::io::Error::other("it is a directory"))
                        } else {
                            Ok(())
                        }
                    })
                    .err()
                    .map(|source| LintError::Read {
                        path: p.to_path_buf(),
                        source,
                    })
            })
            .or_else(|| self.byte_order_mark())
            .or_else(|| self.included_byte_order_mark())
    }

    /// A file nginx.conf includes that starts with a BOM: as unusable as a
    /// main file with one (nginx refuses both), so bad input too.
    fn included_byte_order_mark(&self) -> Option<LintError> {
        match NginxConfig::load_with(&self.nginx_conf, &nginx_paths(self)) {
            Err(e @ NginxError::ByteOrderMark { .. }) => Some(e.into()),
            _ => None,
        }
    }

    /// A goproxy JSON or the main nginx.conf that starts with a UTF-8
    /// byte-order mark: neither goproxy nor nginx can use the file as it
    /// is, so it is bad input like an unreadable one. (Compose reads a BOM.)
    fn byte_order_mark(&self) -> Option<LintError> {
        let mut files = vec![self.prod_config.as_path(), self.nginx_conf.as_path()];
        files.extend(self.dev_config.as_deref());
        files.into_iter().find_map(|p| {
            let mut head = [0u8; 3];
            let n = std::fs::File::open(p)
                .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
                .ok()?;
            (n == 3 && head == *b"\xEF\xBB\xBF").then(|| LintError::ByteOrderMark {
                path: p.to_path_buf(),
                reader: if p == self.nginx_conf {
                    "nginx reads as part of the first directive"
                } else {
                    JSON_BOM
                },
            })
        })
    }
}

/// Where nginx's container paths are on the host: `/etc/nginx` is the main
/// file's directory, plus what every compose file mounts for nginx (not
/// only those defining goproxy).
fn nginx_paths(targets: &LintTargets) -> PathMap {
    let mut map = PathMap::for_main(&targets.nginx_conf);
    for path in &targets.compose_files {
        if let Ok(f) = ComposeFile::load(path) {
            for (c, h) in f.nginx_mounts() {
                map.mount(c, h);
            }
        }
    }
    map
}

/// The compose files at the top of `root` (`docker-compose*.yml`,
/// `compose*.yaml`, ...), sorted; those that do not define goproxy's
/// service are skipped when read.
pub fn compose_files_in(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for pat in [
        "docker-compose*.yml",
        "docker-compose*.yaml",
        "compose*.yml",
        "compose*.yaml",
    ] {
        let pattern = root.join(pat);
        if let Ok(paths) = glob::glob(&pattern.to_string_lossy()) {
            out.extend(paths.filter_map(Result::ok).filter(|p| p.is_file()));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Runs every lint check, recording each into `checks`.
pub async fn run(targets: &LintTargets, checks: &mut Checks) {
    let mut configs = vec![("prod", targets.prod_config.clone())];
    if let Some(dev) = &targets.dev_config {
        configs.push(("dev", dev.clone()));
    } else if let Some(note) = &targets.dev_note {
        checks.skip(Phase::Lint, "lint.goproxy-config-dev", note);
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
    const GRACE: &str = "lint.drain-fits-grace";
    let Ok(config) = proxy::config::Config::load(&targets.prod_config) else {
        let why = "not judged: the prod config does not load (lint.goproxy-config-prod says why)";
        return checks.skip(Phase::Lint, GRACE, why);
    };
    let shutdown = Shutdown::of(targets, &config);
    match graces(targets) {
        Ok(Graces { defined: false, .. }) => {
            let note = format!(
                "not judged: no compose file defines service {} (--service names goproxy's)",
                targets.service
            );
            checks.skip(Phase::Lint, GRACE, &note);
        }
        // Nothing written to judge: compose's default, said when short.
        Ok(g) if g.set.is_empty() && COMPOSE_DEFAULT_GRACE <= shutdown.needed => {
            let note = format!(
                "not judged: no compose file sets stop_grace_period for service {}, so \
                 compose's default applies: docker SIGKILLs goproxy {} s after SIGTERM, but \
                 {}; {} under `{}:`",
                targets.service,
                COMPOSE_DEFAULT_GRACE.as_secs(),
                shutdown.why,
                shutdown.fix,
                targets.service,
            );
            checks.skip(Phase::Lint, GRACE, &note);
        }
        found => {
            checks
                .run(Phase::Lint, GRACE, async {
                    drain_fits_grace(&shutdown, found?.set)
                })
                .await;
        }
    }
}

/// How long goproxy's shutdown may take, said in the operator's terms:
/// after SIGTERM it keeps `/health` at 503 for `drain_readiness_delay_secs`,
/// lets open requests finish for up to `drain_timeout_secs`, then gives
/// cut streams 2 s to flush their error event.
#[derive(Debug)]
pub struct Shutdown {
    pub needed: Duration,
    why: String,
    fix: String,
}

impl Shutdown {
    pub fn of(targets: &LintTargets, config: &proxy::config::Config) -> Self {
        let needed = config.drain_readiness_delay + config.drain_timeout + proxy::conn::CUT_GRACE;
        // A field the file leaves out is goproxy's default, not the file's.
        let written: serde_json::Value = std::fs::read_to_string(&targets.prod_config)
            .ok()
            .and_then(|t| serde_json::from_str(t.trim_start_matches('\u{feff}')).ok())
            .unwrap_or_default();
        let field = |name: &str, value: Duration| match written.get(name) {
            Some(_) => format!("{} s {name}", secs(value)),
            None => format!("{} s {name} (goproxy's default)", secs(value)),
        };
        Shutdown {
            needed,
            why: format!(
                "goproxy's shutdown takes up to {} s ({} + {} in {} + {} s for cut streams to \
                 flush)",
                secs(needed),
                field("drain_readiness_delay_secs", config.drain_readiness_delay),
                field("drain_timeout_secs", config.drain_timeout),
                targets.prod_config.display(),
                secs(proxy::conn::CUT_GRACE),
            ),
            // Docker waits whole seconds: the least that is longer.
            fix: format!(
                "set stop_grace_period to at least {}s",
                needed.as_secs() + 1
            ),
        }
    }
}

/// Seconds as an operator writes them: `330`, `1.5`.
fn secs(d: Duration) -> String {
    let s = format!("{:.3}", d.as_secs_f64());
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// What the compose files (and those they `include:`) say of goproxy's
/// service.
#[derive(Debug)]
pub struct Graces {
    /// Whether any of them defines the service.
    pub defined: bool,
    /// Every `stop_grace_period` they set for it.
    pub set: Vec<Grace>,
}

/// Every `stop_grace_period` the compose files set for goproxy's service,
/// the files they `include:` too, read once each.
pub fn graces(targets: &LintTargets) -> Result<Graces, LintError> {
    let mut out = Vec::new();
    let mut defined = false;
    let mut files = targets.compose_files.clone();
    let mut seen = std::collections::BTreeSet::new();
    // Bounded: each file is read once, however the includes loop.
    while let Some(path) = files.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let f = ComposeFile::load(&path)?;
        files.extend(f.included());
        defined |= f.defines(&targets.service);
        out.extend(f.stop_grace_period(&targets.service));
    }
    out.sort_by(|a, b| a.site.cmp(&b.site));
    Ok(Graces { defined, set: out })
}

/// goproxy's shutdown fits in every `stop_grace_period` set for its
/// service: docker SIGKILLs it when the period runs out, which drops every
/// stream still open without its error event. An override file that does
/// not set the period keeps another file's; with none set, compose's 10 s
/// default applies.
pub fn drain_fits_grace(shutdown: &Shutdown, graces: Vec<Grace>) -> Result<String, LintError> {
    let Shutdown { needed, why, fix } = shutdown;
    if graces.is_empty() {
        return Ok(format!(
            "no stop_grace_period set: compose's default {} s covers it; {why}",
            COMPOSE_DEFAULT_GRACE.as_secs()
        ));
    }
    let short: Vec<String> = graces
        .iter()
        .filter(|g| g.period.is_none_or(|p| docker_wait(p) <= *needed))
        .map(|g| match g.period {
            Some(p) => format!(
                "{}: stop_grace_period {} (docker waits {} s) is not longer than {why}: \
                 docker SIGKILLs goproxy with streams still open; {fix}",
                g.site,
                g.written,
                docker_wait(p).as_secs()
            ),
            None => format!(
                "{}: stop_grace_period {} is not a duration compose reads (a string such as \
                 360s, 6m or 1m30s); {why}; {fix}",
                g.site, g.written
            ),
        })
        .collect();
    if !short.is_empty() {
        return Err(LintError::GraceTooShort(short));
    }
    let sites: Vec<String> = graces
        .iter()
        .map(|g| format!("{} {}", g.site, g.written))
        .collect();
    Ok(format!(
        "stop_grace_period ({}) covers it: {why}",
        sites.join(", ")
    ))
}

/// Loads and validates a goproxy config with goproxy's own code.
pub fn validate_goproxy_config(path: &Path) -> Result<String, LintError> {
    if std::fs::read(path).is_ok_and(|b| b.starts_with(b"\xEF\xBB\xBF")) {
        return Err(LintError::ByteOrderMark {
            path: path.to_path_buf(),
            reader: JSON_BOM,
        });
    }
    match proxy::config::Config::load(path) {
        Ok(config) => Ok(format!(
            "{}: valid, port {}, {} endpoints, {} models",
            path.display(),
            config.port(),
            config.endpoints().len(),
            config.models().len()
        )),
        Err(e) => Err(LintError::Config(Box::new(e))),
    }
}

/// Where nginx and compose say goproxy is, read with their own rules.
#[derive(Debug)]
pub struct Deployment {
    pub nginx: NginxConfig,
    pub compose: Vec<ComposeFile>,
    /// The names nginx may reach goproxy by (service, aliases).
    pub goproxy_names: Vec<String>,
    /// Where nginx's container paths are in the tree (compose's mounts).
    pub nginx_paths: PathMap,
}

impl Deployment {
    /// Reads nginx (with includes) and the compose files that define the service.
    pub fn read(targets: &LintTargets) -> Result<Self, LintError> {
        let mut compose = Vec::new();
        for path in &targets.compose_files {
            let f = ComposeFile::load(path)?;
            if f.defines(&targets.service) {
                compose.push(f);
            }
        }
        let mut names = vec![targets.service.clone()];
        for f in &compose {
            names.extend(f.names_of(&targets.service));
        }
        names.sort();
        names.dedup();
        let map = nginx_paths(targets);
        let nginx = NginxConfig::load_with(&targets.nginx_conf, &map)?;
        Ok(Self {
            nginx,
            compose,
            goproxy_names: names,
            nginx_paths: map,
        })
    }

    /// nginx's sites for goproxy; an error says what nginx proxies to instead.
    pub fn nginx_sites(&self, main: &Path) -> Result<Vec<goproxy::Site>, LintError> {
        let sites = goproxy::sites(&self.nginx, &self.goproxy_names);
        if sites.is_empty() {
            let targets = goproxy::proxy_pass_targets(&self.nginx);
            return Err(LintError::NoGoproxySite {
                main: main.to_path_buf(),
                names: self.goproxy_names.join(", "),
                found: if targets.is_empty() {
                    "none".to_string()
                } else {
                    targets.join("; ")
                },
            });
        }
        Ok(sites)
    }
}

/// Every file that names goproxy's port names the same one.
pub fn ports_agree(targets: &LintTargets) -> Result<String, LintError> {
    let prod = read_json_port(&targets.prod_config)?;
    let mut sites: Vec<PortSite> = vec![prod.clone()];
    if let Some(dev) = &targets.dev_config {
        sites.push(read_json_port(dev)?);
    }
    let dep = Deployment::read(targets)?;
    for s in dep.nginx_sites(&targets.nginx_conf)? {
        sites.push(PortSite {
            file: s.path.clone(),
            line: s.line,
            value: s.port_value(),
            text: s.text.clone(),
        });
    }
    for f in &dep.compose {
        sites.extend(f.goproxy_port_sites(&targets.service, &dep.goproxy_names));
    }
    compare(&prod, &sites)
}

fn compare(prod: &PortSite, sites: &[PortSite]) -> Result<String, LintError> {
    let mismatches: Vec<String> = sites
        .iter()
        .skip(1)
        .filter(|s| !s.names_port(&prod.value))
        .map(|s| format!("port mismatch: {prod}, but {s}"))
        .collect();
    if let Some(bad) = sites
        .iter()
        .find(|s| s.port().is_none() && s.range().is_none())
    {
        return Err(LintError::NotAPort {
            site: bad.to_string(),
            also: if mismatches.is_empty() {
                String::new()
            } else {
                format!("; also {}", mismatches.join("; "))
            },
        });
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
        Err(LintError::Mismatch(mismatches))
    }
}

fn read_json_port(path: &Path) -> Result<PortSite, LintError> {
    let bytes = std::fs::read(path).map_err(|source| LintError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    ports::json_port(path, text).ok_or_else(|| LintError::NoPort {
        path: path.to_path_buf(),
    })
}
