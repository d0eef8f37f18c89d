//! A place a port is written ([`PortSite`], "file:line says X"), and the
//! goproxy JSON's top-level `"port"` found with its line.
//!
//! The JSON is scanned as text so a half-edited file that no longer parses
//! is still reported precisely. nginx and compose are read by their own
//! rules in [`crate::nginx`] and [`crate::compose_file`].

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

    /// The value as a port range (compose's `"8000-8010"`), if it is one.
    pub fn range(&self) -> Option<(u16, u16)> {
        let (a, b) = self.value.split_once('-')?;
        let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
        (a != 0 && a <= b).then_some((a, b))
    }

    /// Whether this site names `port`: the same value, or a range that
    /// holds it (compose publishes every port of a range).
    pub fn names_port(&self, port: &str) -> bool {
        self.value == port
            || port
                .parse::<u16>()
                .ok()
                .zip(self.range())
                .is_some_and(|(p, (a, b))| (a..=b).contains(&p))
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
}
