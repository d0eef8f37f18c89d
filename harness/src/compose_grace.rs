//! A service's `stop_grace_period`, read as compose reads it: a duration
//! string (`360s`, `6m`, `1m30s`, `1.5h`; Go's `time.ParseDuration`, which
//! compose v2 uses, and compose v1's own parser agree on these), 10 s when
//! no file sets it. Docker sends SIGKILL when it runs out.

use std::time::Duration;

use serde_norway::Value;

use crate::compose_file::ComposeFile;

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
    /// `service`'s `stop_grace_period` in this file, if it sets one.
    pub fn stop_grace_period(&self, service: &str) -> Option<Grace> {
        let value = self.services.get(service)?.get("stop_grace_period")?;
        let line = self
            .line_with("stop_grace_period", self.service_line(service))
            .or_else(|| self.line_with("stop_grace_period", 0))
            .unwrap_or(0);
        let (written, period) = match value {
            Value::String(s) => (s.clone(), parse_duration(s)),
            // The compose schema wants a string: a bare number is refused.
            other => (
                serde_norway::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
                None,
            ),
        };
        Some(Grace {
            site: format!("{}:{line}", self.path.display()),
            written,
            period,
        })
    }
}

/// A duration in Go's syntax: one or more decimal numbers each with a unit
/// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), or `0`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total)
        .ok()
        .filter(|_| !text.trim().is_empty())
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
        for bad in ["", "360", "6 m", "1d", "s", "-5s", "1..5s", "abc"] {
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
            ("6m", Some(Duration::from_secs(360)))
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
