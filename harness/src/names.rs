//! Messages in the operator's terms: the files the gate renders into its
//! run directory (deleted after the run) are named by the operator's files
//! and lines they came from.

use crate::gate::Prepared;
use crate::lint::LintTargets;
use crate::nginx::render::LineMap;

/// Rewrites paths of rendered files in a message to the operator's.
#[derive(Debug, Clone)]
pub struct Namer {
    nginx_map: LineMap,
    operator_nginx: String,
    /// (rendered path, what to call it instead).
    plain: Vec<(String, String)>,
}

/// The file name every rendered candidate nginx.conf has, wherever it is
/// copied (the run directory, /tmp inside the nginx container).
const CANDIDATE_NGINX: &str = "nginx.candidate.conf";

impl Namer {
    pub fn new(p: &Prepared, t: &LintTargets) -> Self {
        let json = t.prod_config.display();
        Self {
            nginx_map: p.candidate.nginx_map.clone(),
            operator_nginx: t.nginx_conf.display().to_string(),
            plain: vec![
                (
                    p.candidate_json.display().to_string(),
                    format!("{json} (as rendered for the test stack)"),
                ),
                (
                    p.run_dir.path().display().to_string(),
                    "the run directory".to_string(),
                ),
            ],
        }
    }

    /// For files deployed verbatim (`harness deploy`): the candidate copies
    /// inside the containers are named by the operator's candidate files,
    /// nginx's lines mapped through the candidate's own reader.
    pub fn verbatim(nginx: &std::path::Path, json: &std::path::Path) -> Self {
        let nginx_map = std::fs::read_to_string(nginx)
            .ok()
            .and_then(|text| crate::nginx::NginxConfig::from_text(nginx, &text).ok())
            .map(|cfg| crate::nginx::render::flatten(&cfg, &[]).1)
            .unwrap_or_default();
        Self {
            nginx_map,
            operator_nginx: nginx.display().to_string(),
            plain: vec![(
                "/tmp/config.candidate.json".to_string(),
                json.display().to_string(),
            )],
        }
    }

    /// `message` with every rendered path replaced by the operator's file
    /// (and line, for nginx).
    pub fn say(&self, message: &str) -> String {
        let mut out = self.nginx_lines(message);
        for (from, to) in &self.plain {
            out = out.replace(from.as_str(), to);
        }
        out
    }

    fn nginx_lines(&self, message: &str) -> String {
        let mut out = String::with_capacity(message.len());
        let mut rest = message;
        while let Some(pos) = rest.find(CANDIDATE_NGINX) {
            let before = &rest[..pos];
            let start = before
                .rfind(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '(' | '`'))
                .map_or(0, |i| i + 1);
            out.push_str(&before[..start]);
            let after = &rest[pos + CANDIDATE_NGINX.len()..];
            let digits = after
                .strip_prefix(':')
                .map_or(0, |a| a.chars().take_while(char::is_ascii_digit).count());
            let line: Option<usize> = after.get(1..1 + digits).and_then(|d| d.parse().ok());
            match line.and_then(|n| self.nginx_map.source(n)) {
                Some((p, l)) => out.push_str(&format!("{}:{l}", p.display())),
                None => out.push_str(&self.operator_nginx),
            }
            rest = if line.is_some() {
                &after[1 + digits..]
            } else {
                after
            };
        }
        out.push_str(rest);
        out
    }
}
