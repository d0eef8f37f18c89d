//! Messages in the operator's terms: the files the gate renders into its
//! run directory (deleted after the run) and mounts into containers are
//! named by the operator's files and lines they came from.

use std::path::Path;

use crate::lint::LintTargets;
use crate::nginx::render::LineMap;
use crate::render::Rendered;

/// Every rendered candidate nginx.conf has this name, wherever it is
/// copied (the run directory, /tmp inside the nginx container).
const CANDIDATE_NGINX: &str = "nginx.candidate.conf";
/// The live nginx.conf as nginx in the container names it.
const LIVE_NGINX: &str = "/etc/nginx/nginx.conf";
const CANDIDATE_JSON: &str = "config.candidate.json";

/// Rewrites paths of rendered files in a message to the operator's.
#[derive(Debug, Clone)]
pub struct Namer {
    candidate_map: LineMap,
    base_map: LineMap,
    operator_nginx: String,
    operator_json: String,
    run_dir: Option<String>,
}

impl Namer {
    /// `keep`: the run directory stays, so its paths may stay too.
    pub fn new(
        candidate: &Rendered,
        base: &Rendered,
        run_dir: &Path,
        t: &LintTargets,
        keep: bool,
    ) -> Self {
        Self {
            candidate_map: candidate.nginx_map.clone(),
            base_map: base.nginx_map.clone(),
            operator_nginx: t.nginx_conf.display().to_string(),
            operator_json: t.prod_config.display().to_string(),
            run_dir: (!keep).then(|| run_dir.display().to_string()),
        }
    }

    /// For files deployed as they are (a production deploy): nginx's paths
    /// and lines are the operator's own, only the container paths are named.
    pub fn for_files(nginx_conf: &std::path::Path, goproxy_config: &std::path::Path) -> Self {
        Self {
            candidate_map: LineMap::default(),
            base_map: LineMap::default(),
            operator_nginx: nginx_conf.display().to_string(),
            operator_json: goproxy_config.display().to_string(),
            run_dir: None,
        }
    }

    /// `message` about the candidate, in the operator's terms.
    pub fn say(&self, message: &str) -> String {
        self.say_with(message, &self.candidate_map)
    }

    /// Before the switch the live nginx.conf is the base; after it, the candidate.
    pub fn say_live(&self, message: &str, before_switch: bool) -> String {
        let map = if before_switch {
            &self.base_map
        } else {
            &self.candidate_map
        };
        self.say_with(message, map)
    }

    fn say_with(&self, message: &str, live: &LineMap) -> String {
        let out = self.paths(
            message,
            CANDIDATE_NGINX,
            Some(&self.candidate_map),
            &self.operator_nginx,
        );
        let out = self.paths(&out, LIVE_NGINX, Some(live), &self.operator_nginx);
        let json = format!("{} (as rendered for the test stack)", self.operator_json);
        let mut out = self.paths(&out, CANDIDATE_JSON, None, &json);
        if let Some(dir) = &self.run_dir {
            out = out.replace(dir.as_str(), "<run directory, removed>");
        }
        out
    }

    /// Replaces each path ending in `name` (and its `:line`, through `map`).
    fn paths(&self, message: &str, name: &str, map: Option<&LineMap>, instead: &str) -> String {
        let mut out = String::with_capacity(message.len());
        let mut rest = message;
        while let Some(pos) = rest.find(name) {
            let before = &rest[..pos];
            let start = before
                .rfind(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '(' | '`'))
                .map_or(0, |i| i + 1);
            out.push_str(&before[..start]);
            let after = &rest[pos + name.len()..];
            let digits = after
                .strip_prefix(':')
                .map_or(0, |a| a.chars().take_while(char::is_ascii_digit).count());
            let line: Option<usize> = after.get(1..1 + digits).and_then(|d| d.parse().ok());
            match (line, map) {
                (Some(n), Some(m)) => match m.source(n) {
                    Some((p, l)) => out.push_str(&format!("{}:{l}", p.display())),
                    None => out.push_str(&format!("{instead}:{n}")),
                },
                _ => out.push_str(instead),
            }
            rest = if line.is_some() && map.is_some() {
                &after[1 + digits..]
            } else {
                after
            };
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nginx's `in /etc/nginx/nginx.conf:111` becomes the operator's file and line.
    #[test]
    fn live_paths_become_the_operators() {
        let cfg =
            crate::nginx::NginxConfig::from_text(std::path::Path::new("/op/nginx.conf"), "a;\n")
                .unwrap();
        let (_, map) = crate::nginx::render::flatten(&cfg, &[]);
        let n = Namer {
            candidate_map: map.clone(),
            base_map: map,
            operator_nginx: "/op/nginx.conf".into(),
            operator_json: "/op/c.json".into(),
            run_dir: Some("/tmp/run".into()),
        };
        let msg = "says: nginx: [emerg] unknown directive \"x\" in /etc/nginx/nginx.conf:111 / nginx: configuration file /etc/nginx/nginx.conf test failed (x)";
        assert_eq!(
            n.say_live(msg, true),
            "says: nginx: [emerg] unknown directive \"x\" in /op/nginx.conf:111 / nginx: configuration file /op/nginx.conf test failed (x)"
        );
    }
}
