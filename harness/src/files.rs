//! The deployment's files for one run: what the stack mounts, the
//! candidate the change writes, and the timestamped backups.
//!
//! The stack bind-mounts single files (`nginx.conf`, goproxy's
//! `config.json`). A bind mount follows the inode, so every write here is
//! in place (truncate and write), never write-to-temp-and-rename: a rename
//! would leave the container reading the old file.

use std::path::{Path, PathBuf};

pub use crate::render::{
    mark_down, MockEndpoints, Rendered, Sources, PROBE_ENDPOINT, PROBE_MODEL, PROBE_UPSTREAM_MODEL,
    UNBINDABLE_HOST,
};

/// The files the stack mounts, and where candidates and backups go.
#[derive(Debug, Clone)]
pub struct LiveFiles {
    pub dir: PathBuf,
    pub goproxy_config: PathBuf,
    /// The second instance's config; written only in a multi-instance run.
    pub goproxy_b_config: PathBuf,
    pub nginx_conf: PathBuf,
    pub tls_dir: PathBuf,
}

impl LiveFiles {
    /// Lays out a run directory and writes the starting deployment.
    pub fn create(dir: &Path, start: &Rendered) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("goproxy"))?;
        std::fs::create_dir_all(dir.join("nginx"))?;
        std::fs::create_dir_all(dir.join("tls"))?;
        std::fs::create_dir_all(dir.join("goproxy-b"))?;
        let live = Self::open(dir);
        live.write(start)?;
        Ok(live)
    }

    /// The layout of an existing run directory.
    pub fn open(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            goproxy_config: dir.join("goproxy/config.json"),
            goproxy_b_config: dir.join("goproxy-b/config.json"),
            nginx_conf: dir.join("nginx/nginx.conf"),
            tls_dir: dir.join("tls"),
        }
    }

    /// Writes both files in place (see the module docs for why in place).
    pub fn write(&self, r: &Rendered) -> std::io::Result<()> {
        write_in_place(&self.goproxy_config, r.goproxy_config.as_bytes())?;
        if let Some(b) = &r.goproxy_b_config {
            write_in_place(&self.goproxy_b_config, b.as_bytes())?;
        }
        write_in_place(&self.nginx_conf, r.nginx_conf.as_bytes())
    }

    /// Writes the candidate beside the live files (for `nginx -t` and
    /// `goproxy --check-config` before anything live changes).
    pub fn write_candidate(&self, r: &Rendered) -> std::io::Result<(PathBuf, PathBuf)> {
        let g = self.dir.join("goproxy/config.candidate.json");
        let n = self.dir.join("nginx/nginx.candidate.conf");
        std::fs::write(&g, &r.goproxy_config)?;
        std::fs::write(&n, &r.nginx_conf)?;
        Ok((g, n))
    }
}

/// One verified backup: the original and its timestamped copy.
#[derive(Debug, Clone)]
pub struct Backup {
    pub original: PathBuf,
    pub copy: PathBuf,
    pub bytes: usize,
}

impl Backup {
    /// A backup a state file recorded as `(original, copy)` pairs; `bytes`
    /// is the copy's size now (0 when it is gone).
    pub fn recorded(pairs: &[(PathBuf, PathBuf)]) -> Vec<Backup> {
        pairs
            .iter()
            .map(|(original, copy)| Backup {
                original: original.clone(),
                copy: copy.clone(),
                bytes: std::fs::metadata(copy)
                    .map(|m| m.len() as usize)
                    .unwrap_or(0),
            })
            .collect()
    }
}

/// Why a backup, a restore or their verification failed: the file and
/// what the system said, or where the two files differ.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// "read", "write backup", "restore".
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} ({a_len} bytes) and {} ({b_len} bytes) differ at byte {at}",
        a.display(),
        b.display()
    )]
    Differ {
        a: PathBuf,
        a_len: usize,
        b: PathBuf,
        b_len: usize,
        at: usize,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FilesError {
    let path = path.to_path_buf();
    move |source| FilesError::Io {
        action,
        path,
        source,
    }
}

/// Copies `path` to `path.bak-<UTC timestamp>` and verifies the copy byte
/// for byte, as the design's runbook asks ("backup with a date suffix").
pub fn backup(path: &Path) -> Result<Backup, FilesError> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let mut copy = path.as_os_str().to_owned();
    copy.push(format!(".bak-{stamp}"));
    let copy = PathBuf::from(copy);
    let original = std::fs::read(path).map_err(io("read", path))?;
    std::fs::write(&copy, &original).map_err(io("write backup", &copy))?;
    verify_same(path, &copy)?;
    Ok(Backup {
        original: path.to_path_buf(),
        copy,
        bytes: original.len(),
    })
}

/// Restores a backup over the original (in place) and verifies it.
pub fn restore(b: &Backup) -> Result<(), FilesError> {
    let data = std::fs::read(&b.copy).map_err(io("read", &b.copy))?;
    write_in_place(&b.original, &data).map_err(io("restore", &b.original))?;
    verify_same(&b.original, &b.copy)
}

/// Byte-for-byte comparison, with the first differing offset on mismatch.
pub fn verify_same(a: &Path, b: &Path) -> Result<(), FilesError> {
    let x = std::fs::read(a).map_err(io("read", a))?;
    let y = std::fs::read(b).map_err(io("read", b))?;
    if x == y {
        return Ok(());
    }
    let at = x
        .iter()
        .zip(&y)
        .position(|(p, q)| p != q)
        .unwrap_or(x.len().min(y.len()));
    Err(FilesError::Differ {
        a: a.to_path_buf(),
        a_len: x.len(),
        b: b.to_path_buf(),
        b_len: y.len(),
        at,
    })
}

fn write_in_place(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backup is byte-identical, and a restore brings the original back.
    #[test]
    fn backup_and_restore_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("nginx.conf");
        std::fs::write(&f, "old\n").unwrap();
        let b = backup(&f).unwrap();
        assert!(b.copy.to_string_lossy().contains(".bak-"));
        std::fs::write(&f, "new and longer\n").unwrap();
        assert!(verify_same(&f, &b.copy)
            .unwrap_err()
            .to_string()
            .contains("differ at byte 0"));
        restore(&b).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "old\n");
    }
}
