//! The base of a run: what is deployed now, read from a git ref
//! (`--base v1.4.2`, the pull request's base commit) or a directory
//! (`--base-dir`), or simulated from the candidate.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the deployed files come from.
#[derive(Debug, Clone)]
pub enum BaseSource {
    /// The candidate at the scenario's start port (the report says so).
    Simulated,
    /// The same files at a git ref of the repository containing `root`.
    GitRef { rev: String, root: PathBuf },
    /// The same relative paths under another directory.
    Dir { dir: PathBuf, root: PathBuf },
}

/// The base's files on disk (a git ref is written into a temporary
/// directory, removed with this value).
#[derive(Debug)]
pub struct Materialized {
    pub goproxy_config: PathBuf,
    pub nginx_conf: PathBuf,
    /// The compose files of the base that exist there (same relative paths).
    pub compose_files: Vec<PathBuf>,
    /// For a git ref: the temporary directory and how to name it in
    /// messages instead (`v1.4.2:`), since it is removed after the run.
    pub shown_as: Option<(PathBuf, String)>,
    _tmp: Option<tempfile::TempDir>,
}

/// The same files as the candidate's: its goproxy JSON and main nginx.conf.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    pub goproxy_config: &'a Path,
    pub nginx_conf: &'a Path,
    pub compose_files: &'a [PathBuf],
}

/// Why the base's files cannot be had; names the ref or directory, and
/// the file git could not show.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("--base {rev}: {} is not in a git repository: {source}", root.display())]
    NotARepo {
        rev: String,
        root: PathBuf,
        source: GitError,
    },
    #[error(
        "--base {rev}: no such commit, tag or branch in {} (in CI, check out with \
         fetch-depth: 0)",
        top.display()
    )]
    NoSuchRef { rev: String, top: PathBuf },
    #[error("--base {rev}: cannot make a directory: {source}")]
    TempDir { rev: String, source: std::io::Error },
    #[error(
        "{} is not under --root {}, so the base cannot name the same file",
        file.display(),
        root.display()
    )]
    NotUnderRoot { file: PathBuf, root: PathBuf },
    #[error("--base {rev}: {source}")]
    Git { rev: String, source: GitError },
    #[error("--base {rev}: {} is not in that commit: {source}", path.display())]
    NotInCommit {
        rev: String,
        path: PathBuf,
        source: GitError,
    },
    #[error("--base {rev}: cannot write {}: {source}", path.display())]
    Write {
        rev: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A git command that could not run, or what git said when it failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("{stderr}")]
    Failed { stderr: String },
}

impl BaseSource {
    /// Bad input before anything runs: a ref that is not in the repository.
    pub fn check(&self) -> Result<(), BaseError> {
        let BaseSource::GitRef { rev, root } = self else {
            return Ok(());
        };
        verified_top(rev, root).map(|_| ())
    }

    /// The base's files, and a phrase saying where they come from.
    pub fn materialize(&self, cand: Files) -> Result<(Materialized, String), BaseError> {
        match self {
            BaseSource::Simulated => Ok((
                Materialized {
                    goproxy_config: cand.goproxy_config.to_path_buf(),
                    nginx_conf: cand.nginx_conf.to_path_buf(),
                    compose_files: cand.compose_files.to_vec(),
                    shown_as: None,
                    _tmp: None,
                },
                "simulated".into(),
            )),
            BaseSource::Dir { dir, root } => {
                let m = Materialized {
                    goproxy_config: dir.join(relative(root, cand.goproxy_config)?),
                    nginx_conf: dir.join(relative(root, cand.nginx_conf)?),
                    compose_files: cand
                        .compose_files
                        .iter()
                        .filter_map(|c| Some(dir.join(relative(root, c).ok()?)))
                        .filter(|c| c.is_file())
                        .collect(),
                    shown_as: None,
                    _tmp: None,
                };
                let origin = format!("the files under {} (--base-dir)", dir.display());
                Ok((m, origin))
            }
            BaseSource::GitRef { rev, root } => from_git(rev, root, cand),
        }
    }
}

fn relative(root: &Path, file: &Path) -> Result<PathBuf, BaseError> {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    canon(file)
        .strip_prefix(canon(root))
        .map(Path::to_path_buf)
        .map_err(|_| BaseError::NotUnderRoot {
            file: file.to_path_buf(),
            root: root.to_path_buf(),
        })
}

fn git(top: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(top)
        .args(args)
        .output()
        .map_err(GitError::Spawn)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(GitError::Failed {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The top of the repository holding `root`, once `rev` is known to be a
/// commit in it.
fn verified_top(rev: &str, root: &Path) -> Result<PathBuf, BaseError> {
    let top =
        git(root, &["rev-parse", "--show-toplevel"]).map_err(|source| BaseError::NotARepo {
            rev: rev.to_string(),
            root: root.to_path_buf(),
            source,
        })?;
    let top = PathBuf::from(String::from_utf8_lossy(&top).trim());
    match git(
        &top,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    ) {
        Ok(_) => Ok(top),
        Err(_) => Err(BaseError::NoSuchRef {
            rev: rev.to_string(),
            top,
        }),
    }
}

fn from_git(rev: &str, root: &Path, cand: Files) -> Result<(Materialized, String), BaseError> {
    let top = verified_top(rev, root)?;
    let tmp = tempfile::Builder::new()
        .prefix("harness-base-")
        .tempdir()
        .map_err(|source| BaseError::TempDir {
            rev: rev.to_string(),
            source,
        })?;
    let json_rel = relative(&top, cand.goproxy_config)?;
    let nginx_rel = relative(&top, cand.nginx_conf)?;
    let mut wanted = vec![json_rel.clone()];
    wanted.extend(nginx_files_at(&top, rev, &nginx_rel)?);
    for rel in &wanted {
        write_at(&top, rev, rel, tmp.path())?;
    }
    let compose_files = compose_files_at(&top, rev, cand.compose_files, tmp.path());
    let goproxy_config = tmp.path().join(&json_rel);
    let nginx_conf = tmp.path().join(&nginx_rel);
    let mut shown: Vec<String> = vec![
        json_rel.display().to_string(),
        nginx_rel.display().to_string(),
    ];
    shown.extend(
        compose_files
            .iter()
            .filter_map(|c| Some(c.strip_prefix(tmp.path()).ok()?.display().to_string())),
    );
    let origin = format!("{} at git ref {rev}", shown.join(", "));
    Ok((
        Materialized {
            goproxy_config,
            nginx_conf,
            compose_files,
            shown_as: Some((tmp.path().to_path_buf(), format!("{rev}:"))),
            _tmp: Some(tmp),
        },
        origin,
    ))
}

/// Every file at `rev` in the folder of nginx's main file (relative to
/// `top`): nginx's includes may be anywhere beside its main file.
fn nginx_files_at(top: &Path, rev: &str, nginx_rel: &Path) -> Result<Vec<PathBuf>, BaseError> {
    let nginx_dir = nginx_rel
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let listed = git(
        top,
        &[
            "ls-tree",
            "-r",
            "--name-only",
            rev,
            "--",
            &nginx_dir.to_string_lossy(),
        ],
    )
    .map_err(|source| BaseError::Git {
        rev: rev.to_string(),
        source,
    })?;
    Ok(String::from_utf8_lossy(&listed)
        .lines()
        .map(PathBuf::from)
        .collect())
}

/// The compose files the candidate has, as they were at the ref, written
/// under `dir` (a file added since is simply not part of the base).
fn compose_files_at(top: &Path, rev: &str, candidate: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    let compose_rels: Vec<PathBuf> = candidate
        .iter()
        .filter_map(|c| relative(top, c).ok())
        .collect();
    let mut compose_files = Vec::new();
    for rel in &compose_rels {
        if write_at(top, rev, rel, dir).is_ok() {
            compose_files.push(dir.join(rel));
        }
    }
    compose_files
}

/// Writes `rev:rel` of the repository at `top` to `rel` under `dir`.
fn write_at(top: &Path, rev: &str, rel: &Path, dir: &Path) -> Result<(), BaseError> {
    let spec = format!("{rev}:{}", rel.display());
    let bytes = git(top, &["show", &spec]).map_err(|source| BaseError::NotInCommit {
        rev: rev.to_string(),
        path: rel.to_path_buf(),
        source,
    })?;
    let dest = dir.join(rel);
    // The file as the repository names it, not the temporary copy's path.
    let write = |source| BaseError::Write {
        rev: rev.to_string(),
        path: rel.to_path_buf(),
        source,
    };
    if let Some(d) = dest.parent() {
        std::fs::create_dir_all(d).map_err(write)?;
    }
    std::fs::write(&dest, bytes).map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    /// `--base REF` reads the compose files at the ref too, not today's.
    #[test]
    fn a_git_base_takes_the_compose_files_at_the_ref() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("nginx")).unwrap();
        std::fs::write(root.join("c.json"), "{}").unwrap();
        std::fs::write(root.join("nginx/nginx.conf"), "events {}\n").unwrap();
        std::fs::write(root.join("docker-compose.yml"), "then\n").unwrap();
        sh(&root, &["init", "-q"]);
        sh(&root, &["add", "-A"]);
        sh(&root, &["commit", "-qm", "v1"]);
        sh(&root, &["tag", "v1"]);
        std::fs::write(root.join("docker-compose.yml"), "now\n").unwrap();
        let compose = vec![root.join("docker-compose.yml")];
        let files = Files {
            goproxy_config: &root.join("c.json"),
            nginx_conf: &root.join("nginx/nginx.conf"),
            compose_files: &compose,
        };
        let (m, origin) = from_git("v1", &root, files).unwrap();
        assert_eq!(m.compose_files.len(), 1);
        assert_eq!(
            std::fs::read_to_string(&m.compose_files[0]).unwrap(),
            "then\n"
        );
        assert!(origin.contains("docker-compose.yml"), "{origin}");
    }
}
