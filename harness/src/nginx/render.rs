//! Rewrites by exact byte spans, and the configuration as one file.
//!
//! Every edit replaces a token's span, so every other byte of the
//! operator's file (comments, spacing, other upstreams) is kept. Edits never
//! add a newline, so a line of the output is the same line of the source:
//! nginx's "in nginx.conf:111" is the operator's line 111 (through the
//! [`LineMap`] when includes were inlined).

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{Directive, NginxConfig};

/// Replace `span` of file `file` with `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub file: usize,
    pub span: Range<usize>,
    pub text: String,
}

/// One file's text with its edits applied (edits must not overlap).
pub fn apply(text: &str, edits: &[&Edit]) -> String {
    let mut sorted: Vec<&&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| e.span.start);
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for e in sorted {
        out.push_str(&text[at..e.span.start]);
        out.push_str(&e.text);
        at = e.span.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Which operator file and line each line of a flattened file came from.
#[derive(Debug, Clone, Default)]
pub struct LineMap {
    /// (first output line, source file, its line there), in output order.
    segments: Vec<(usize, PathBuf, usize)>,
}

impl LineMap {
    /// The operator's file and line for line `out` of the flattened file.
    pub fn source(&self, out: usize) -> Option<(&Path, usize)> {
        let seg = self.segments.iter().rev().find(|(o, _, _)| *o <= out)?;
        Some((seg.1.as_path(), seg.2 + (out - seg.0)))
    }

    /// Names files under `dir` as `label<relative path>` (a git ref's
    /// files, written to a directory that is removed after the run).
    pub fn relabel(&mut self, dir: &Path, label: &str) {
        for (_, path, _) in &mut self.segments {
            if let Ok(rel) = path.strip_prefix(dir) {
                *path = PathBuf::from(format!("{label}{}", rel.display()));
            }
        }
    }

    /// Replaces `<conf_path>:<line>` in nginx's words with the operator's
    /// file and line.
    pub fn rewrite(&self, message: &str, conf_path: &str) -> String {
        let needle = format!("{conf_path}:");
        let mut out = String::with_capacity(message.len());
        let mut rest = message;
        while let Some(pos) = rest.find(&needle) {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + needle.len()..];
            let digits = after.chars().take_while(char::is_ascii_digit).count();
            match after[..digits].parse().ok().and_then(|n| self.source(n)) {
                Some((p, l)) => out.push_str(&format!("{}:{l}", p.display())),
                None => out.push_str(&rest[pos..pos + needle.len() + digits]),
            }
            rest = &after[digits..];
        }
        out.push_str(rest);
        out
    }
}

/// The configuration as one file: each `include` that pulled files from
/// the tree is replaced by their text (with edits), because the test stack
/// mounts one file. Includes outside the tree stay as written.
pub fn flatten(cfg: &NginxConfig, edits: &[Edit]) -> (String, LineMap) {
    let mut out = String::new();
    let mut map = LineMap::default();
    emit(cfg, 0, edits, &mut out, &mut map);
    (out, map)
}

fn emit(cfg: &NginxConfig, file: usize, edits: &[Edit], out: &mut String, map: &mut LineMap) {
    let src = &cfg.files[file];
    let mut includes = Vec::new();
    collect_includes(&src.directives, &mut includes);
    let mut at = 0;
    let mut line = 1;
    for inc in includes {
        chunk(cfg, file, at..inc.span.start, line, edits, out, map);
        line += src.text[at..inc.span.start].matches('\n').count();
        for &i in &inc.included {
            emit(cfg, i, edits, out, map);
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        at = inc.span.end;
    }
    chunk(cfg, file, at..src.text.len(), line, edits, out, map);
}

/// Copies `range` of a file with the edits inside it, noting its first line.
fn chunk(
    cfg: &NginxConfig,
    file: usize,
    range: Range<usize>,
    line: usize,
    edits: &[Edit],
    out: &mut String,
    map: &mut LineMap,
) {
    let out_line = out.matches('\n').count() + 1;
    map.segments
        .push((out_line, cfg.files[file].path.clone(), line));
    let shifted: Vec<Edit> = edits
        .iter()
        .filter(|e| e.file == file && e.span.start >= range.start && e.span.end <= range.end)
        .map(|e| Edit {
            file,
            span: e.span.start - range.start..e.span.end - range.start,
            text: e.text.clone(),
        })
        .collect();
    let refs: Vec<&Edit> = shifted.iter().collect();
    out.push_str(&apply(&cfg.files[file].text[range], &refs));
}

fn collect_includes<'a>(list: &'a [Directive], out: &mut Vec<&'a Directive>) {
    for d in list {
        if d.name == "include" && !d.included.is_empty() {
            out.push(d);
        }
        if let Some(inner) = &d.block {
            collect_includes(inner, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Included files are inlined and their lines map back.
    #[test]
    fn flatten_inlines_includes_and_maps_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        let main = dir.path().join("nginx.conf");
        std::fs::write(
            &main,
            "events {}\nhttp {\n    include /etc/nginx/mime.types;\n    include /etc/nginx/conf.d/*.conf;\n}\n",
        )
        .unwrap();
        let up = dir.path().join("conf.d/upstream.conf");
        std::fs::write(&up, "upstream goproxy {\n    server goproxy:8004;\n}\n").unwrap();
        let cfg = NginxConfig::load(&main).unwrap();
        assert_eq!(cfg.external_includes, ["/etc/nginx/mime.types"]);
        let sites = super::super::goproxy::sites(&cfg, &["goproxy".into()]);
        assert_eq!(sites.len(), 1);
        assert_eq!((sites[0].path.clone(), sites[0].line), (up.clone(), 2));
        let edit = Edit {
            file: sites[0].file,
            span: sites[0].port_span.clone(),
            text: "8005".into(),
        };
        let (flat, map) = flatten(&cfg, &[edit]);
        assert!(flat.contains("server goproxy:8005;"), "{flat}");
        assert!(flat.contains("include /etc/nginx/mime.types;"), "{flat}");
        let out_line = flat
            .lines()
            .position(|l| l.contains("goproxy:8005"))
            .unwrap()
            + 1;
        assert_eq!(map.source(out_line), Some((up.as_path(), 2)));
        let said = map.rewrite(
            &format!("unknown directive \"x\" in /etc/nginx/nginx.conf:{out_line}"),
            "/etc/nginx/nginx.conf",
        );
        assert_eq!(
            said,
            format!("unknown directive \"x\" in {}:2", up.display())
        );
    }
}
