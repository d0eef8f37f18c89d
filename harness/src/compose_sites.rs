//! Where a compose file writes goproxy's port: the service's container
//! ports (`ports`, `expose`, short and long syntax, ranges), URLs in its
//! healthcheck, command and entrypoint, and `<name>:<port>` of goproxy in
//! other services. Each is named at the line that writes it, found by the
//! text as written (before interpolation): anchors and aliases may put it
//! above `services:`, and `${PORT:-8004}` is not `8004` in the file.

use std::collections::BTreeMap;

use serde_norway::Value;

use crate::compose_file::{seq, ComposeFile};
use crate::ports::PortSite;

impl ComposeFile {
    /// Every place the file writes the port goproxy listens on: the
    /// service's container ports (`ports`, `expose`), URLs in its
    /// healthcheck and command, and `<name>:<port>` of goproxy in any other
    /// service's environment, command or healthcheck.
    pub fn goproxy_port_sites(&self, service: &str, names: &[String]) -> Vec<PortSite> {
        let mut sites = Vec::new();
        let mut cursor = BTreeMap::new();
        for (name, def) in &self.services {
            let raw = self.raw_services.get(name).unwrap_or(&Value::Null);
            let start = self.service_line(name);
            for (written, port) in found_in(def, raw, name == service, names) {
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

    /// The 1-based line of the next occurrence of the first of `needles`
    /// found (each repeat of the same text moves on to the next line that
    /// has it): under the service first, then anywhere (an anchor or alias
    /// may write it above `services:`); the service's own line otherwise.
    fn locate(
        &self,
        needles: &[String],
        start: usize,
        cursor: &mut BTreeMap<String, usize>,
    ) -> usize {
        for needle in needles.iter().filter(|n| !n.is_empty()) {
            let from = cursor.get(needle).copied().unwrap_or(0);
            let hit = self
                .line_with(needle, from.max(start))
                .or_else(|| self.line_with(needle, from));
            if let Some(line) = hit {
                cursor.insert(needle.clone(), line);
                return line;
            }
        }
        start
    }

    /// The first line after the first `skip` lines that contains `needle`
    /// outside a comment.
    pub(crate) fn line_with(&self, needle: &str, skip: usize) -> Option<usize> {
        self.text
            .lines()
            .enumerate()
            .skip(skip)
            .find(|(_, l)| l.contains(needle) && !l.trim_start().starts_with('#'))
            .map(|(i, _)| i + 1)
    }
}

impl ComposeFile {
    /// The text's lines, without a CRLF's CR.
    pub(crate) fn lines(&self) -> Vec<&str> {
        self.text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .collect()
    }

    /// The 1-based line of `name:` as a service key (directly under
    /// `services:`, by indentation; in a flow-style file, the first
    /// indented `name:` opening a mapping), 0 if not found: where its
    /// values are searched from.
    pub(crate) fn service_line(&self, name: &str) -> usize {
        if let Some(i) = crate::compose_lines::service_index(&self.lines(), name) {
            return i + 1;
        }
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

/// The ports one service writes, each with the texts that find its line
/// (best first): goproxy's own container ports and local URLs when
/// `is_goproxy`, else `<name>:<port>` of goproxy. `raw` is `def` as written.
fn found_in(
    def: &Value,
    raw: &Value,
    is_goproxy: bool,
    names: &[String],
) -> Vec<(Vec<String>, String)> {
    let mut found = Vec::new();
    let mut hosts: Vec<&str> = names.iter().map(String::as_str).collect();
    let keys: &[&str] = if is_goproxy {
        for (key, is_ports) in [("ports", true), ("expose", false)] {
            let raws = seq(raw.get(key));
            for (i, p) in seq(def.get(key)).iter().enumerate() {
                let written = raws.get(i).and_then(|r| container_port(r, is_ports));
                if let Some((w, port)) = container_port(p, is_ports) {
                    let texts = written.map(|(r, _)| r).into_iter().chain([w]).collect();
                    found.push((texts, port));
                }
            }
        }
        hosts.extend(["localhost", "127.0.0.1", "0.0.0.0", "[::1]", "::1"]);
        &["healthcheck", "command", "entrypoint"]
    } else {
        &["environment", "command", "healthcheck", "entrypoint"]
    };
    for key in keys {
        let mut texts = Vec::new();
        if let Some(v) = def.get(*key) {
            scalar_pairs(raw.get(*key).unwrap_or(&Value::Null), v, &mut texts);
        }
        for (raw_text, text) in texts {
            for (hp, port) in host_ports(&text, &hosts) {
                found.push((needles(&hp, &raw_text), port));
            }
        }
    }
    found
}

/// Texts that find `host:port` (found in an interpolated scalar written
/// `raw`) in the file, best first: itself when written so, the scalar as
/// written (`http://goproxy:${PORT:-8004}`), then `host:`.
fn needles(host_port: &str, raw: &str) -> Vec<String> {
    let first = raw.lines().next().unwrap_or("").trim();
    let host = host_port.rsplit_once(':').map(|(h, _)| format!("{h}:"));
    [
        raw.contains(host_port).then(|| host_port.to_string()),
        Some(first.to_string()),
        host,
    ]
    .into_iter()
    .flatten()
    .collect()
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

/// Every scalar under `v` as (written, interpolated) text; the written
/// text comes from `raw`, the same node before interpolation.
fn scalar_pairs(raw: &Value, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(_) | Value::Number(_) => out.push((text_of(raw), text_of(v))),
        Value::Sequence(s) => {
            for (i, x) in s.iter().enumerate() {
                scalar_pairs(raw.get(i).unwrap_or(&Value::Null), x, out);
            }
        }
        Value::Mapping(m) => {
            for (k, x) in m {
                scalar_pairs(raw.get(k).unwrap_or(&Value::Null), x, out);
            }
        }
        _ => {}
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// `host:port` (optionally after `scheme://`) for any of `hosts` in `text`:
/// (the text that locates it, the port).
fn host_ports(text: &str, hosts: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // Host names are case-insensitive (Docker's DNS too); ASCII lowering
    // keeps every byte offset.
    let lower = text.to_ascii_lowercase();
    for host in hosts {
        let needle = format!("{}:", host.to_ascii_lowercase());
        let mut from = 0;
        while let Some(pos) = lower[from..].find(&needle) {
            let start = from + pos;
            let before = text[..start].chars().next_back();
            let bounded = before
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'));
            let after = &text[start + needle.len()..];
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if bounded && !digits.is_empty() {
                let end = start + needle.len() + digits.len();
                out.push((text[start..end].to_string(), digits));
            }
            from = start + needle.len();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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

    /// Merge keys are applied, and a value from an anchor or an
    /// interpolated one is found on the line that writes it.
    #[test]
    fn merge_keys_anchors_and_interpolation_are_located() {
        let yml = r#"x-hc: &hc
  healthcheck:
    test: curl -f http://localhost:8005/health
services:
  goproxy:
    <<: *hc
    expose:
      - "${GOPROXY_PORT:-8004}"
  nginx:
    environment:
      UPSTREAM: http://GoProxy:${GOPROXY_PORT:-8004}
"#;
        let f = ComposeFile::parse(Path::new("dc.yml"), yml.into(), &|k| {
            (k == "GOPROXY_PORT").then(|| "8006".to_string())
        })
        .unwrap();
        let s: Vec<(usize, String)> = f
            .goproxy_port_sites("goproxy", &["goproxy".into()])
            .into_iter()
            .map(|s| (s.line, s.value))
            .collect();
        assert_eq!(
            s,
            [(8, "8006".into()), (3, "8005".into()), (11, "8006".into())]
        );
    }
}
