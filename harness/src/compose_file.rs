//! Compose files read as YAML, the way compose reads them: `${VAR:-default}`
//! interpolation, `ports`/`expose` in short and long syntax, healthchecks,
//! environment as a list or a map, command as a string or a list. Used by
//! lint to find every place a compose file writes goproxy's port, and the
//! names nginx may reach goproxy by.
//!
//! Image tags are not ports: `image:` is never scanned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_norway::Value;

/// What stops a compose file from being read.
#[derive(Debug, thiserror::Error)]
pub enum ComposeFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not valid YAML: {message}")]
    Yaml {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: `services` is not a mapping of service names")]
    NoServices { path: PathBuf },
}

/// How many anchors deep `<<` merges are followed.
const MERGE_DEPTH: usize = 8;

/// One compose file, parsed.
#[derive(Debug, Clone)]
pub struct ComposeFile {
    pub path: PathBuf,
    pub text: String,
    /// Service name -> its definition, interpolated.
    pub services: BTreeMap<String, Value>,
    /// The same before interpolation: the text to find a value's line by.
    pub(crate) raw_services: BTreeMap<String, Value>,
    /// The top-level `include:`, interpolated (compose v2.20+).
    pub(crate) include: Option<Value>,
}

impl ComposeFile {
    /// Reads and parses a compose file; variables come from the process
    /// environment, then the `.env` beside the file, then their defaults.
    pub fn load(path: &Path) -> Result<Self, ComposeFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ComposeFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let dotenv = path
            .parent()
            .map(|d| crate::compose_env::read_dotenv(&d.join(".env")))
            .unwrap_or_default();
        Self::parse(path, text, &|k| {
            std::env::var(k).ok().or_else(|| dotenv.get(k).cloned())
        })
    }

    /// Parses `text` with `env` looking variables up.
    pub fn parse(
        path: &Path,
        text: String,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ComposeFileError> {
        let yaml = |e: serde_norway::Error| ComposeFileError::Yaml {
            path: path.to_path_buf(),
            line: e.location().map_or(0, |l| l.line()),
            message: e.to_string(),
        };
        // YAML allows a byte-order mark at the start and compose reads such
        // a file: it is not part of the document (and moves no line).
        let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut raw: Value = serde_norway::from_str(body).map_err(yaml)?;
        // Compose applies `<<: *defaults`: what the anchor says, the service
        // says. A merge brings the anchor's own `<<` along (`x-b: {<<: *a}`
        // merged into a service), so merge again until none is left; a
        // chain deeper than this is not a compose file anyone writes.
        for _ in 0..MERGE_DEPTH {
            raw.apply_merge().map_err(yaml)?;
        }
        let mut doc = raw.clone();
        crate::compose_env::interpolate(&mut doc, env);
        Ok(Self {
            include: doc.get("include").cloned(),
            services: services_of(path, &doc)?,
            raw_services: services_of(path, &raw)?,
            path: path.to_path_buf(),
            text,
        })
    }

    /// Whether this file defines (or overrides) `service`.
    pub fn defines(&self, service: &str) -> bool {
        self.services.contains_key(service)
    }

    /// The names other containers reach `service` by: the service name,
    /// its `container_name`, `hostname`, and network aliases.
    pub fn names_of(&self, service: &str) -> Vec<String> {
        let mut names = vec![service.to_string()];
        let Some(s) = self.services.get(service) else {
            return names;
        };
        for key in ["container_name", "hostname"] {
            if let Some(n) = s.get(key).and_then(Value::as_str) {
                names.push(n.to_string());
            }
        }
        if let Some(Value::Mapping(nets)) = s.get("networks") {
            for (_, net) in nets {
                if let Some(Value::Sequence(aliases)) = net.get("aliases") {
                    names.extend(aliases.iter().filter_map(|a| a.as_str().map(String::from)));
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Bind mounts into nginx's conf directory (`./conf.d:/etc/nginx/conf.d`),
    /// as (container path, host path): where nginx's absolute includes
    /// live in the operator's tree. The main nginx.conf mount is left out.
    pub fn nginx_mounts(&self) -> Vec<(PathBuf, PathBuf)> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut out = Vec::new();
        for def in self.services.values() {
            for v in seq(def.get("volumes")) {
                let (src, dst) = match v {
                    Value::String(s) => {
                        let mut parts = s.splitn(3, ':');
                        match (parts.next(), parts.next()) {
                            (Some(a), Some(b)) => (a.to_string(), b.to_string()),
                            _ => continue,
                        }
                    }
                    Value::Mapping(_) => match (
                        v.get("source").and_then(Value::as_str),
                        v.get("target").and_then(Value::as_str),
                    ) {
                        (Some(a), Some(b)) => (a.to_string(), b.to_string()),
                        _ => continue,
                    },
                    _ => continue,
                };
                let is_path = src.starts_with('.') || src.starts_with('/');
                if is_path && dst.starts_with("/etc/nginx/") && dst != "/etc/nginx/nginx.conf" {
                    let src = src.strip_prefix("./").unwrap_or(&src);
                    out.push((PathBuf::from(dst), dir.join(src)));
                }
            }
        }
        out
    }
}

/// The `services` mapping of a document, by name.
fn services_of(path: &Path, doc: &Value) -> Result<BTreeMap<String, Value>, ComposeFileError> {
    match doc.get("services") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Mapping(m)) => Ok(m
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
            .collect()),
        Some(_) => Err(ComposeFileError::NoServices {
            path: path.to_path_buf(),
        }),
    }
}

pub(crate) fn seq(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Sequence(s)) => s,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Network aliases and container names are names of goproxy too.
    #[test]
    fn aliases_are_names() {
        let yml = "services:\n  goproxy:\n    container_name: gp\n    networks:\n      backend:\n        aliases: [llm-proxy]\n";
        let f = ComposeFile::parse(Path::new("dc.yml"), yml.into(), &|_| None).unwrap();
        assert_eq!(f.names_of("goproxy"), ["goproxy", "gp", "llm-proxy"]);
    }

    /// A BOM is read past, as compose reads it; lines do not move.
    #[test]
    fn bom_is_read_as_compose_reads_it() {
        let f = ComposeFile::parse(
            Path::new("dc.yml"),
            "\u{feff}services:\n  goproxy:\n    expose: [\"8005\"]\n".into(),
            &|_| None,
        )
        .unwrap();
        let s = f.goproxy_port_sites("goproxy", &["goproxy".into()]);
        assert_eq!((s[0].line, s[0].value.as_str()), (3, "8005"));
    }
}
