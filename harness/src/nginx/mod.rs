//! One nginx reader for lint, rendering and the local backend.
//!
//! [`NginxConfig::load`] reads the main file and every file it `include`s
//! (relative to the main file's directory, as nginx resolves them against
//! its conf prefix; globs; absolute container paths such as
//! `/etc/nginx/conf.d/*.conf` mapped back into the operator's tree). Each
//! directive keeps its file, line and byte span: see [`goproxy`] for where
//! nginx sends traffic to goproxy and [`render`] for rewrites that keep
//! every other byte.

pub mod goproxy;
mod include;
pub mod lexer;
pub mod render;
pub mod tree;

use std::path::{Path, PathBuf};

pub use include::PathMap;
pub use tree::Directive;

/// What can stop nginx's files from being read; every variant names the
/// operator's file (and line, where there is one).
#[derive(Debug, thiserror::Error)]
pub enum NginxError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not UTF-8 text: {source}")]
    NotUtf8 {
        path: PathBuf,
        source: std::string::FromUtf8Error,
    },
    #[error("{path} starts with a UTF-8 byte-order mark (EF BB BF): nginx reads it as part of the first directive; save the file without BOM")]
    ByteOrderMark { path: PathBuf },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: include {pattern}: {problem}")]
    Include {
        path: PathBuf,
        line: usize,
        pattern: String,
        problem: String,
    },
}

/// A file of the configuration as read.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    /// Its directives (an `include` carries the files it pulled in).
    pub directives: Vec<Directive>,
}

/// The main file and everything it includes from the operator's tree.
#[derive(Debug, Clone)]
pub struct NginxConfig {
    /// `files[0]` is the main file.
    pub files: Vec<SourceFile>,
    /// Includes that point outside the tree (e.g. `/etc/nginx/mime.types`,
    /// which the image provides): left for nginx in the container.
    pub external_includes: Vec<String>,
}

impl NginxConfig {
    /// Reads `main` and its includes; `/etc/nginx` maps to `main`'s directory.
    pub fn load(main: &Path) -> Result<Self, NginxError> {
        Self::load_with(main, &PathMap::for_main(main))
    }

    /// Like [`load`](Self::load) with more container mounts known.
    pub fn load_with(main: &Path, map: &PathMap) -> Result<Self, NginxError> {
        let mut cfg = Self {
            files: Vec::new(),
            external_includes: Vec::new(),
        };
        include::read_file(&mut cfg, main, map, 0)?;
        Ok(cfg)
    }

    /// Parses one file's text (no includes are followed): for unit tests
    /// and for text that is not on disk.
    pub fn from_text(path: &Path, text: &str) -> Result<Self, NginxError> {
        let mut cfg = Self {
            files: Vec::new(),
            external_includes: Vec::new(),
        };
        include::add_text(&mut cfg, path, text.to_string())?;
        Ok(cfg)
    }

    /// Every directive in nginx's reading order (includes expanded), with
    /// the names of the blocks around it (`["http", "upstream"]`).
    pub fn walk(&self, f: &mut dyn FnMut(&Directive, &[&str])) {
        let mut ctx = Vec::new();
        self.walk_list(&self.files[0].directives, &mut ctx, f);
    }

    fn walk_list<'a>(
        &'a self,
        list: &'a [Directive],
        ctx: &mut Vec<&'a str>,
        f: &mut dyn FnMut(&Directive, &[&str]),
    ) {
        for d in list {
            f(d, ctx);
            for &i in &d.included {
                self.walk_list(&self.files[i].directives, ctx, f);
            }
            if let Some(inner) = &d.block {
                ctx.push(&d.name);
                self.walk_list(inner, ctx, f);
                ctx.pop();
            }
        }
    }

    /// The source line of a directive, trimmed, for evidence.
    pub fn line_text(&self, file: usize, line: usize) -> String {
        self.files[file]
            .text
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .trim()
            .to_string()
    }
}
