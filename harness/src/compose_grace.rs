//! A service's `stop_grace_period`, read as compose reads it: a duration
//! string (`360s`, `6m`, `1m30s`, `1.5h`; Go's `time.ParseDuration`, which
//! compose v2 uses, and compose v1's own parser agree on these), 10 s when
//! no file sets it. Docker sends SIGKILL when it runs out.

use std::time::Duration;

use serde_norway::Value;

use crate::compose_file::ComposeFile;
use crate::compose_lines::{anchor_key_line, block_key_line};

/// How many `extends` deep a service's value is looked for.
const EXTENDS_DEPTH: usize = 8;

/// What compose waits after SIGTERM when no file sets `stop_grace_period`.
pub const COMPOSE_DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// One `stop_grace_period` as a file writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Grace {
    /// `file:line`.
    pub site: String,
    /// The value as written (interpolated).
    pub written: String,
    /// What compose makes of it; `None` if compose refuses it.
    pub period: Option<Duration>,
}

impl ComposeFile {
    /// `service`'s `stop_grace_period` in this file, if it sets one (its
    /// own key, a merge key's or `extends`'s in the same file).
    pub fn stop_grace_period(&self, service: &str) -> Option<Grace> {
        self.grace_through_extends(service, EXTENDS_DEPTH)
    }

    /// The service's own value, else that of the service it `extends`
    /// (in this file or in `file:`, relative to this one), as compose
    /// fills in what the extending service leaves out.
    fn grace_through_extends(&self, service: &str, depth: usize) -> Option<Grace> {
        let def = self.services.get(service)?;
        if def.get("stop_grace_period").is_some() {
            return self.own_grace(service);
        }
        let (file, base) = match def.get("extends")? {
            Value::String(base) => (None, base.as_str()),
            ext => (
                ext.get("file").and_then(Value::as_str),
                ext.get("service").and_then(Value::as_str)?,
            ),
        };
        let depth = depth.checked_sub(1)?;
        match file {
            None => self.grace_through_extends(base, depth),
            Some(file) => {
                let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
                ComposeFile::load(&dir.join(file))
                    .ok()?
                    .grace_through_extends(base, depth)
            }
        }
    }

    /// What this file writes for `service` itself (or through a merge key).
    fn own_grace(&self, service: &str) -> Option<Grace> {
        let value = self.services.get(service)?.get("stop_grace_period")?;
        let raw = self
            .raw_services
            .get(service)
            .and_then(|s| s.get("stop_grace_period"));
        let line = self.grace_line(service);
        let (written, period) = match untagged(value) {
            // `!reset`: compose's default again.
            None => ("!reset".to_string(), Some(COMPOSE_DEFAULT_GRACE)),
            Some(Value::String(s)) => (s.clone(), parse_duration(s)),
            // The compose schema wants a string: a bare number is refused.
            Some(other) => (yaml_text(other), None),
        };
        // Quoted when blank or padded (else the padding cannot be seen);
        // what the line writes first when interpolation changed it.
        let shown = if written.is_empty() || written.trim() != written {
            format!("{written:?}")
        } else {
            written.clone()
        };
        let written = match raw.and_then(untagged) {
            Some(Value::String(r)) if *r != written => format!("{r} (= \"{written}\")"),
            _ => shown,
        };
        Some(Grace {
            site: format!("{}:{line}", self.path.display()),
            written,
            period,
        })
    }

    /// The line that writes `service`'s `stop_grace_period`, found by
    /// indentation in the `services:` block (so a `goproxy:` under another
    /// service's `depends_on`, or the words in a label or a command, are
    /// not taken for it); the service's own line when the value comes from
    /// a merge key; the old text search when the file is not laid out in
    /// blocks.
    fn grace_line(&self, service: &str) -> usize {
        match block_key_line(&self.lines(), service, "stop_grace_period") {
            Some((line, true)) => line,
            // From a merge key: where an anchor's block writes it.
            Some((line, false)) => {
                anchor_key_line(&self.lines(), "stop_grace_period").unwrap_or(line)
            }
            None => self
                .line_with("stop_grace_period", self.service_line(service))
                .unwrap_or(0),
        }
    }
}

impl ComposeFile {
    /// The files this one's top-level `include:` names (a path, a list of
    /// paths, or `{path: ...}` entries), relative to this file.
    pub fn included(&self) -> Vec<std::path::PathBuf> {
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        let Some(Value::Sequence(entries)) = self.include.as_ref() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries {
            match e {
                Value::String(p) => out.push(dir.join(p)),
                other => match other.get("path") {
                    Some(Value::String(p)) => out.push(dir.join(p)),
                    Some(Value::Sequence(ps)) => {
                        out.extend(ps.iter().filter_map(Value::as_str).map(|p| dir.join(p)))
                    }
                    _ => {}
                },
            }
        }
        out
    }
}

/// `value` without a compose merge tag: `!override x` is `x`; `!reset`
/// is nothing.
fn untagged(value: &Value) -> Option<&Value> {
    match value {
        Value::Tagged(t) if t.tag == "reset" => None,
        Value::Tagged(t) if t.tag == "override" => Some(&t.value),
        v => Some(v),
    }
}

fn yaml_text(v: &Value) -> String {
    serde_norway::to_string(v)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A duration as Go's `time.ParseDuration` reads it (compose v2 uses
/// it; compose v1's parser agrees on what operators write): an optional
/// sign, then one or more decimal numbers each with a unit (`ns`, `us`,
/// `µs`, `μs`, `ms`, `s`, `m`, `h`), or `0`; nothing around it, and no
/// more than Go's ~292 years. A negative one is refused here (no grace
/// at all), as a value compose reads but that cannot hold a drain.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    if unsigned == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = unsigned;
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        // Go takes `6.` and `.5` but not a lone `.`.
        let number = match &rest[..digits] {
            "" | "." => return None,
            n if n.starts_with('.') => format!("0{n}").parse::<f64>().ok()?,
            n => n.trim_end_matches('.').parse::<f64>().ok()?,
        };
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    // i64 nanoseconds, Go's limit.
    (!unsigned.is_empty() && total <= 9_223_372_036.854_775)
        .then(|| Duration::try_from_secs_f64(total).ok())
        .flatten()
}

/// What docker waits for a `stop_grace_period`: whole seconds (compose
/// hands docker the period's seconds, rounded down).
pub fn docker_wait(period: Duration) -> Duration {
    Duration::from_secs(period.as_secs())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn durations_as_compose_reads_them() {
        for (text, secs) in [
            ("360s", 360.0),
            ("6m", 360.0),
            ("1m30s", 90.0),
            ("1.5h", 5400.0),
            ("500ms", 0.5),
            ("0", 0.0),
            ("2h45m10s", 9910.0),
        ] {
            assert_eq!(
                parse_duration(text),
                Some(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        for (text, secs) in [
            ("+6m", 360.0),
            ("6.m", 360.0),
            (".5h", 1800.0),
            ("1\u{3bc}s", 1e-6),
        ] {
            assert_eq!(
                parse_duration(text),
                Some(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        for bad in [
            "",
            "360",
            "6 m",
            "1d",
            "s",
            "-5s",
            "1..5s",
            "abc",
            " 6m",
            "6m\t",
            "6M",
            ".s",
            "2562048h",
            "9223372037s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_service_grace_is_found_at_its_line() {
        let yml = "x-common: &common\n  stop_grace_period: 20s\nservices:\n  nginx:\n    stop_grace_period: 5s\n  goproxy:\n    image: g\n    stop_grace_period: ${GRACE:-6m}\n  other:\n    <<: *common\n";
        let f = ComposeFile::parse(Path::new("dc.yml"), yml.into(), &|_| None).unwrap();
        let g = f.stop_grace_period("goproxy").unwrap();
        assert_eq!(g.site, "dc.yml:8");
        assert_eq!(
            (g.written.as_str(), g.period),
            ("${GRACE:-6m} (= \"6m\")", Some(Duration::from_secs(360)))
        );
        let merged = f.stop_grace_period("other").unwrap();
        assert_eq!(
            (merged.site.as_str(), merged.period),
            ("dc.yml:2", Some(Duration::from_secs(20)))
        );
        let f = ComposeFile::parse(
            Path::new("dc.yml"),
            "services:\n  goproxy:\n    stop_grace_period: 30\n".into(),
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            f.stop_grace_period("goproxy").unwrap().period,
            None,
            "a number is refused"
        );
        let f = ComposeFile::parse(
            Path::new("dc.yml"),
            "services:\n  goproxy:\n    image: g\n".into(),
            &|_| None,
        )
        .unwrap();
        assert_eq!(f.stop_grace_period("goproxy"), None);
    }
}
