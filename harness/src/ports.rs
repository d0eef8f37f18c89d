//! Finding the goproxy port in each file that names it, with line numbers,
//! so a mismatch can be reported as "file:line says X".
//!
//! The three places are the goproxy JSON (`"port"`), nginx's
//! `upstream goproxy { server goproxy:<port>; }` and the compose file. Each
//! is read as text: a half-edited file that no longer parses must still be
//! reported precisely, and nginx/compose have no parser here worth trusting
//! more than a careful scan.

use std::fmt;
use std::path::{Path, PathBuf};

/// One place a port is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSite {
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The port as written: not always a valid port (`"8004"`, `0`, `70000`).
    pub value: String,
    /// What the line says, trimmed, for the evidence.
    pub text: String,
}

impl PortSite {
    /// The value as a TCP port, if it is one.
    pub fn port(&self) -> Option<u16> {
        self.value.parse::<u16>().ok().filter(|p| *p != 0)
    }
}

impl fmt::Display for PortSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} says {} (`{}`)",
            self.file.display(),
            self.line,
            self.value,
            self.text
        )
    }
}

/// The top-level `"port"` of a goproxy JSON config.
///
/// Scans the text tracking string and nesting state, so a `"port"` inside a
/// nested object or a `_comment` string is not taken for the real one.
pub fn json_port(file: &Path, text: &str) -> Option<PortSite> {
    let bytes = text.as_bytes();
    let mut depth = 0i32;
    let mut line = 1usize;
    let mut i = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => line += 1,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while j < bytes.len() && bytes[j] != b'"' {
                    if bytes[j] == b'\\' {
                        j += 1;
                    }
                    if j < bytes.len() && bytes[j] == b'\n' {
                        line += 1;
                    }
                    j += 1;
                }
                let key = &text[start..j.min(text.len())];
                i = j;
                if depth == 1 && key == "port" {
                    let rest = &text[(j + 1).min(text.len())..];
                    let rest = rest.trim_start();
                    if let Some(after_colon) = rest.strip_prefix(':') {
                        let value: String = after_colon
                            .trim_start()
                            .chars()
                            .take_while(|c| !matches!(c, ',' | '}' | '\n' | '\r'))
                            .collect();
                        return Some(PortSite {
                            file: file.to_path_buf(),
                            line,
                            value: value.trim().to_string(),
                            text: line_text(text, line),
                        });
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The `server <host>:<port>` entries of nginx's `upstream <name> { ... }`,
/// only those for `host` when given.
pub fn nginx_upstream_servers(
    file: &Path,
    text: &str,
    upstream: &str,
    host: Option<&str>,
) -> Vec<PortSite> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut depth = 0i32;
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if !inside {
            let mut words = line.split_whitespace();
            if words.next() == Some("upstream")
                && words.next().map(|w| w.trim_end_matches('{')) == Some(upstream)
            {
                inside = true;
                depth = 0;
            } else {
                continue;
            }
        }
        if let Some(rest) = line.strip_prefix("server") {
            if rest.starts_with(char::is_whitespace) {
                let addr = rest.split_whitespace().next().unwrap_or("");
                let addr = addr.trim_end_matches(';');
                if let Some((h, port)) = addr.rsplit_once(':') {
                    if host.is_some_and(|want| want != h) {
                        continue;
                    }
                    out.push(PortSite {
                        file: file.to_path_buf(),
                        line: idx + 1,
                        value: port.to_string(),
                        text: raw.trim().to_string(),
                    });
                }
            }
        }
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
        if inside && depth <= 0 && line.contains('}') {
            break;
        }
    }
    out
}

/// Ports the compose file writes for the goproxy service: `goproxy:<port>`
/// anywhere (an environment variable, a healthcheck URL) and the entries
/// under the service's `expose:` / `ports:`.
pub fn compose_goproxy_ports(file: &Path, text: &str, service: &str) -> Vec<PortSite> {
    let mut out = Vec::new();
    let needle = format!("{service}:");
    let mut service_indent: Option<usize> = None;
    let mut list_indent: Option<usize> = None;
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or("");
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        // `goproxy:8004` in any value.
        let mut rest = line;
        while let Some(pos) = rest.find(&needle) {
            let after = &rest[pos + needle.len()..];
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                out.push(PortSite {
                    file: file.to_path_buf(),
                    line: idx + 1,
                    value: digits,
                    text: raw.trim().to_string(),
                });
            }
            rest = after;
        }
        // The service block and its expose/ports lists.
        if trimmed == needle {
            service_indent = Some(indent);
            list_indent = None;
            continue;
        }
        let Some(si) = service_indent else { continue };
        if indent <= si {
            service_indent = None;
            list_indent = None;
            continue;
        }
        if trimmed == "expose:" || trimmed == "ports:" {
            list_indent = Some(indent);
            continue;
        }
        if let Some(li) = list_indent {
            if indent > li || trimmed.starts_with('-') && indent >= li {
                let item = trimmed.trim_start_matches('-').trim().trim_matches('"');
                let item = item.trim_matches('\'');
                // "8004", "127.0.0.1:8004:8004", "8004/tcp": the container port is last.
                let container = item.rsplit(':').next().unwrap_or(item);
                let container = container.split('/').next().unwrap_or(container);
                if !container.is_empty() && container.chars().all(|c| c.is_ascii_digit()) {
                    out.push(PortSite {
                        file: file.to_path_buf(),
                        line: idx + 1,
                        value: container.to_string(),
                        text: raw.trim().to_string(),
                    });
                }
            } else {
                list_indent = None;
            }
        }
    }
    out
}

/// Line `line` (1-based) of `text`, trimmed.
pub fn nth_line(text: &str, line: usize) -> String {
    line_text(text, line)
}

fn line_text(text: &str, line: usize) -> String {
    text.lines()
        .nth(line.saturating_sub(1))
        .unwrap_or("")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The top-level port is found with its line; nested and commented
    /// "port" strings are not mistaken for it.
    #[test]
    fn finds_the_top_level_json_port() {
        let text = r#"{
  "_comment": "the \"port\": 1 here is prose",
  "endpoints": [{"name": "x", "port": 9}],
  "port": 8004,
  "models": []
}"#;
        let site = json_port(Path::new("c.json"), text).unwrap();
        assert_eq!(site.line, 4);
        assert_eq!(site.value, "8004");
        assert_eq!(site.port(), Some(8004));
    }

    /// A string or out-of-range port is reported as written, not as a port.
    #[test]
    fn odd_json_ports_are_kept_as_written() {
        let s = json_port(Path::new("c.json"), r#"{"port": "8004"}"#).unwrap();
        assert_eq!(s.value, "\"8004\"");
        assert_eq!(s.port(), None);
        let s = json_port(Path::new("c.json"), r#"{"port": 70000}"#).unwrap();
        assert_eq!(s.port(), None);
        assert!(json_port(Path::new("c.json"), r#"{"models": []}"#).is_none());
    }

    /// Only the servers of the named upstream block count.
    #[test]
    fn reads_nginx_upstream_servers() {
        let conf = "\
http {
    upstream other { server other:9000; }
    upstream goproxy {
        server goproxy:8005;  # old port
        keepalive 32;
    }
    server { listen 443 ssl; }
}";
        let sites = nginx_upstream_servers(Path::new("nginx.conf"), conf, "goproxy", None);
        assert_eq!(sites.len(), 1);
        assert_eq!(sites[0].line, 4);
        assert_eq!(sites[0].value, "8005");
    }

    /// Compose mentions: `goproxy:<port>` values and the service's expose list.
    #[test]
    fn reads_compose_ports() {
        let yml = "\
services:
  goproxy:
    image: goproxy:test
    expose:
      - \"8004\"
  nginx:
    environment:
      UPSTREAM: goproxy:8004
    ports:
      - \"127.0.0.1:443:443\"
";
        let sites = compose_goproxy_ports(Path::new("dc.yml"), yml, "goproxy");
        let values: Vec<_> = sites.iter().map(|s| (s.line, s.value.as_str())).collect();
        assert_eq!(values, [(5, "8004"), (8, "8004")]);
    }
}
