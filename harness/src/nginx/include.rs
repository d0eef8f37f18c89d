//! Reading files and following `include` the way nginx does.

use std::path::{Path, PathBuf};

use super::{lexer, tree, NginxConfig, NginxError, SourceFile};

/// Deeper than this is an include cycle.
const MAX_DEPTH: usize = 16;

/// Where container paths are in the operator's tree: `/etc/nginx` (the
/// prefix nginx resolves relative includes against) is the main file's
/// directory; compose volumes may add more.
#[derive(Debug, Clone)]
pub struct PathMap {
    /// The directory relative includes are resolved against.
    pub conf_dir: PathBuf,
    /// (container path, host path), longest first.
    pub mounts: Vec<(PathBuf, PathBuf)>,
}

impl PathMap {
    /// The mapping of the stock image: the main file is `/etc/nginx/nginx.conf`.
    pub fn for_main(main: &Path) -> Self {
        let dir = main
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Self {
            conf_dir: dir.clone(),
            mounts: vec![(PathBuf::from("/etc/nginx"), dir)],
        }
    }

    /// Adds a bind mount (`./conf.d:/etc/nginx/conf.d`).
    pub fn mount(&mut self, container: PathBuf, host: PathBuf) {
        self.mounts.push((container, host));
        self.mounts
            .sort_by_key(|(c, _)| std::cmp::Reverse(c.as_os_str().len()));
    }

    /// The host pattern for an include pattern; `None` when it lies
    /// outside every mount (the image provides it).
    pub fn resolve(&self, pattern: &str) -> Option<PathBuf> {
        let p = Path::new(pattern);
        if p.is_relative() {
            return Some(self.conf_dir.join(p));
        }
        self.mounts.iter().find_map(|(c, h)| {
            p.strip_prefix(c).ok().map(|rest| {
                if rest.as_os_str().is_empty() {
                    h.clone()
                } else {
                    h.join(rest)
                }
            })
        })
    }
}

pub(super) fn read_file(
    cfg: &mut NginxConfig,
    path: &Path,
    map: &PathMap,
    depth: usize,
) -> Result<usize, NginxError> {
    let bytes = std::fs::read(path).map_err(|source| NginxError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|source| NginxError::NotUtf8 {
        path: path.to_path_buf(),
        source,
    })?;
    let idx = add_text(cfg, path, text)?;
    let mut directives = std::mem::take(&mut cfg.files[idx].directives);
    let result = follow(cfg, &mut directives, idx, map, depth);
    cfg.files[idx].directives = directives;
    result.map(|()| idx)
}

pub(super) fn add_text(
    cfg: &mut NginxConfig,
    path: &Path,
    text: String,
) -> Result<usize, NginxError> {
    if text.starts_with('\u{feff}') {
        return Err(NginxError::ByteOrderMark {
            path: path.to_path_buf(),
        });
    }
    let syntax = |line, message| NginxError::Syntax {
        path: path.to_path_buf(),
        line,
        message,
    };
    let idx = cfg.files.len();
    let tokens = lexer::tokenize(&text).map_err(|e| syntax(e.line, e.to_string()))?;
    let directives = tree::parse(&tokens, idx).map_err(|e| syntax(e.line, e.message))?;
    cfg.files.push(SourceFile {
        path: path.to_path_buf(),
        text,
        directives,
    });
    Ok(idx)
}

/// Resolves every `include` in `list` (recursively into blocks).
fn follow(
    cfg: &mut NginxConfig,
    list: &mut [tree::Directive],
    file: usize,
    map: &PathMap,
    depth: usize,
) -> Result<(), NginxError> {
    for d in list.iter_mut() {
        if let Some(inner) = d.block.as_mut() {
            follow(cfg, inner, file, map, depth)?;
        }
        if d.name != "include" {
            continue;
        }
        let path = cfg.files[file].path.clone();
        let err = |pattern: &str, problem: String| NginxError::Include {
            path: path.clone(),
            line: d.line,
            pattern: pattern.to_string(),
            problem,
        };
        let Some(pattern) = d.args.first().map(|a| a.value.clone()) else {
            return Err(err("", "include needs a file name".into()));
        };
        if depth >= MAX_DEPTH {
            return Err(err(&pattern, "includes nest too deep (a cycle?)".into()));
        }
        let Some(host) = map.resolve(&pattern) else {
            cfg.external_includes.push(pattern);
            continue;
        };
        let expanded = expand(&host);
        for found in expanded.map_err(|e| err(&pattern, format!("not a valid pattern: {e}")))? {
            let idx = read_file(cfg, &found, map, depth + 1)?;
            d.included.push(idx);
        }
        if d.included.is_empty() && !has_glob(&pattern) {
            if Path::new(&pattern).is_absolute() {
                // e.g. /etc/nginx/mime.types: the image has it, the tree need not.
                cfg.external_includes.push(pattern);
            } else {
                return Err(err(
                    &pattern,
                    format!(
                        "{} does not exist (nginx -t fails with \"open() failed\")",
                        host.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// The files a pattern names, sorted as nginx's glob returns them.
fn expand(host: &Path) -> Result<Vec<PathBuf>, glob::PatternError> {
    let s = host.to_string_lossy();
    if !has_glob(&s) {
        return Ok(host
            .is_file()
            .then(|| host.to_path_buf())
            .into_iter()
            .collect());
    }
    let mut found: Vec<PathBuf> = glob::glob(&s)?
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    Ok(found)
}
