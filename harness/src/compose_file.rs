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

use crate::ports::PortSite;

/// What stops a compose file from being read.
#[derive(Debug, thiserror::Error)]
pub enum ComposeFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} starts with a UTF-8 byte-order mark (EF BB BF); save it without BOM")]
    ByteOrderMark { path: PathBuf },
    #[error("{path}:{line}: not valid YAML: {message}")]
    Yaml {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: `services` is not a mapping of service names")]
    NoServices { path: PathBuf },
}

/// One compose file, parsed.
#[derive(Debug, Clone)]
pub struct ComposeFile {
    pub path: PathBuf,
    pub text: String,
    /// Service name -> its definition, interpolated.
    pub services: BTreeMap<String, Value>,
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
        if text.starts_with('\u{feff}') {
            return Err(ComposeFileError::ByteOrderMark {
                path: path.to_path_buf(),
            });
        }
        let mut doc: Value = serde_norway::from_str(&text).map_err(|e| ComposeFileError::Yaml {
            path: path.to_path_buf(),
            line: e.location().map_or(0, |l| l.line()),
            message: e.to_string(),
        })?;
        crate::compose_env::interpolate(&mut doc, env);
        let services = match doc.get("services") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Mapping(m)) => m
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
                .collect(),
            Some(_) => {
                return Err(ComposeFileError::NoServices {
                    path: path.to_path_buf(),
                })
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            text,
            services,
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

    /// Every place the file writes the port goproxy listens on: the
    /// service's container ports (`ports`, `expose`), URLs in its
    /// healthcheck and command, and `<name>:<port>` of goproxy in any other
    /// service's environment, command or healthcheck.
    pub fn goproxy_port_sites(&self, service: &str, names: &[String]) -> Vec<PortSite> {
        let mut sites = Vec::new();
        let mut cursor = BTreeMap::new();
        for (name, def) in &self.services {
            let mut found = Vec::new();
            if name == service {
                for p in seq(def.get("ports")) {
                    found.extend(container_port(p, true));
                }
                for p in seq(def.get("expose")) {
                    found.extend(container_port(p, false));
                }
                let local = ["localhost", "127.0.0.1", "0.0.0.0", "[::1]", "::1"];
                let mut hosts: Vec<&str> = local.to_vec();
                hosts.extend(names.iter().map(String::as_str));
                for text in strings_of(def, &["healthcheck", "command", "entrypoint"]) {
                    found.extend(host_ports(&text, &hosts));
                }
            } else {
                let hosts: Vec<&str> = names.iter().map(String::as_str).collect();
                for text in strings_of(
                    def,
                    &["environment", "command", "healthcheck", "entrypoint"],
                ) {
                    found.extend(host_ports(&text, &hosts));
                }
            }
            let start = self.service_line(name);
            for (written, port) in found {
                let line = self.locate(&written, start, &mut cursor);
                sites.push(PortSite {
                    file: self.path.clone(),
                    line,
                    value: port,
                    text: crate::ports::nth_line(&self.text, line),
                });
            }
        }
        sites
    }

    /// The 1-based line of the next occurrence of `written` (each repeat
    /// of the same text moves on to the next line that has it).
    fn locate(&self, written: &str, start: usize, cursor: &mut BTreeMap<String, usize>) -> usize {
        let from = cursor.get(written).copied().unwrap_or(0).max(start);
        // After interpolation `goproxy:8004` may be written
        // `goproxy:${PORT:-8004}`: fall back to the part before the port.
        let first = written.lines().next().unwrap_or(written);
        let host_part = first.rsplit_once(':').map(|(h, _)| format!("{h}:"));
        let hit = std::iter::once(first.to_string())
            .chain(host_part)
            .find_map(|needle| {
                self.text
                    .lines()
                    .enumerate()
                    .skip(from)
                    .find(|(_, l)| l.contains(&needle) && !l.trim_start().starts_with('#'))
                    .map(|(i, _)| i + 1)
            })
            .unwrap_or(0);
        cursor.insert(written.to_string(), hit);
        hit
    }
}

impl ComposeFile {
    /// The 0-based line of `name:` as a service key (indented, under
    /// `services:`), 0 if not found: where its values are searched from.
    fn service_line(&self, name: &str) -> usize {
        let key = format!("{name}:");
        let quoted = [format!("\"{name}\":"), format!("'{name}':")];
        self.text
            .lines()
            .position(|l| {
                let t = l.trim_start();
                l.len() > t.len()
                    && (t.starts_with(&key) || quoted.iter().any(|q| t.starts_with(q.as_str())))
                    && t[t.find(':').unwrap_or(0) + 1..]
                        .trim()
                        .split('#')
                        .next()
                        .is_some_and(|r| r.trim().is_empty() || r.trim() == "{")
            })
            .map_or(0, |i| i + 1)
    }
}

fn seq(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Sequence(s)) => s,
        _ => &[],
    }
}

/// The container port of one `ports`/`expose` entry, with the text to
/// locate it by: `"8005"`, `"127.0.0.1:8005:8005/tcp"`, `8005`,
/// `{target: 8005, published: 443}`.
fn container_port(v: &Value, is_ports: bool) -> Option<(String, String)> {
    match v {
        Value::Number(n) => Some((n.to_string(), n.to_string())),
        Value::String(s) => {
            let no_proto = s.split('/').next().unwrap_or(s);
            let port = if is_ports {
                no_proto.rsplit(':').next().unwrap_or(no_proto)
            } else {
                no_proto
            };
            Some((s.clone(), port.to_string()))
        }
        Value::Mapping(_) => {
            let t = v.get("target")?;
            let port = match t {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return None,
            };
            Some((format!("target: {port}"), port))
        }
        _ => None,
    }
}

/// Every scalar under the given keys of a service, as text.
fn strings_of(def: &Value, keys: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for k in keys {
        if let Some(v) = def.get(*k) {
            scalars(v, &mut out);
        }
    }
    out
}

fn scalars(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Sequence(s) => s.iter().for_each(|x| scalars(x, out)),
        Value::Mapping(m) => {
            for (k, x) in m {
                // `environment: {UPSTREAM: goproxy:8004}` is written `KEY: value`.
                match (k.as_str(), x) {
                    (Some(k), Value::String(_) | Value::Number(_)) => {
                        let mut s = Vec::new();
                        scalars(x, &mut s);
                        out.extend(s.into_iter().map(|s| format!("{k}={s}")));
                    }
                    _ => scalars(x, out),
                }
            }
        }
        _ => {}
    }
}

/// `host:port` (optionally after `scheme://`) for any of `hosts` in `text`:
/// (the text that locates it, the port).
fn host_ports(text: &str, hosts: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for host in hosts {
        let needle = format!("{host}:");
        let mut from = 0;
        while let Some(pos) = text[from..].find(&needle) {
            let start = from + pos;
            let before = text[..start].chars().next_back();
            let bounded = before
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'));
            let after = &text[start + needle.len()..];
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if bounded && !digits.is_empty() {
                out.push((format!("{host}:{digits}"), digits));
            }
            from = start + needle.len();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(yml: &str) -> Vec<(usize, String)> {
        let f = ComposeFile::parse(Path::new("dc.yml"), yml.into(), &|_| None).unwrap();
        let names = f.names_of("goproxy");
        f.goproxy_port_sites("goproxy", &names)
            .into_iter()
            .map(|s| (s.line, s.value))
            .collect()
    }

    /// Flow-style lists, host-bound ports and a healthcheck URL; the image
    /// tag is not a port.
    #[test]
    fn flow_lists_bound_ports_and_healthcheck_urls() {
        let yml = r#"services:
  goproxy:
    image: registry.example/goproxy:1.4.2
    expose: ["8005"]
    ports: ["127.0.0.1:8005:8005"]
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost:8005/health"]
"#;
        assert_eq!(
            sites(yml),
            [(5, "8005".into()), (4, "8005".into()), (7, "8005".into())]
        );
    }

    /// Long syntax, environment maps and lists, `${VAR:-default}`.
    #[test]
    fn long_syntax_environment_and_defaults() {
        let yml = r#"services:
  goproxy:
    image: goproxy:test
    ports:
      - target: 8004
        published: "${GOPROXY_PORT:-18004}"
    command: goproxy --check http://127.0.0.1:8004/health
  nginx:
    environment:
      - UPSTREAM=http://goproxy:${GOPROXY_PORT:-8004}
    healthcheck:
      test: curl -f http://nginx/health
"#;
        assert_eq!(
            sites(yml),
            [(5, "8004".into()), (7, "8004".into()), (10, "8004".into())]
        );
    }

    /// Network aliases and container names are names of goproxy too.
    #[test]
    fn aliases_are_names() {
        let yml = "services:\n  goproxy:\n    container_name: gp\n    networks:\n      backend:\n        aliases: [llm-proxy]\n";
        let f = ComposeFile::parse(Path::new("dc.yml"), yml.into(), &|_| None).unwrap();
        assert_eq!(f.names_of("goproxy"), ["goproxy", "gp", "llm-proxy"]);
    }

    /// A BOM is named as such.
    #[test]
    fn bom_is_named() {
        let e = ComposeFile::parse(
            Path::new("dc.yml"),
            "\u{feff}services: {}\n".into(),
            &|_| None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("byte-order mark"), "{e}");
    }
}
