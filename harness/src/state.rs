//! What a kept run leaves on disk so that later commands (`harness
//! rollback`, `harness down`) can act on the same stack: the compose
//! project and its variables, the files and backups, the ports and keys.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::Backup;
use crate::stream_model::StreamModel;

/// File name of the state inside a run directory.
pub const STATE_FILE: &str = "harness-state.json";

/// Why a run directory's state could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot read {path} ({source}): is this the run directory printed by \
         `harness up` or `harness validate --keep`?"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a harness state file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// A kept run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub run_dir: PathBuf,
    pub compose_files: Vec<PathBuf>,
    pub project: String,
    pub env: Vec<(String, String)>,
    pub https_port: u16,
    pub mock_port: u16,
    /// wiremock's port: goproxy's probe endpoint points at it.
    pub wiremock_port: u16,
    pub api_key: String,
    /// The self-signed certificate nginx serves (public part only).
    pub cert_pem: String,
    pub start_port: u16,
    pub change_port: u16,
    /// The second instance's port in a multi-instance stack.
    #[serde(default)]
    pub second_port: Option<u16>,
    pub stream_model_id: String,
    pub stream_upstream_ids: Vec<String>,
    /// (original, copy) pairs; empty until the pre-deployment backups.
    pub backups: Vec<(PathBuf, PathBuf)>,
}

impl RunState {
    /// Writes `<run_dir>/harness-state.json`; returns its path.
    pub fn save(&self) -> Result<PathBuf, StateError> {
        let path = self.run_dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        match std::fs::write(&path, text) {
            Ok(()) => Ok(path),
            Err(source) => Err(StateError::Write { path, source }),
        }
    }

    /// Reads `<run_dir>/harness-state.json`, saying what to do if it is not there.
    pub fn load(run_dir: &Path) -> Result<Self, StateError> {
        let path = run_dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(source) => return Err(StateError::Read { path, source }),
        };
        serde_json::from_str(&text).map_err(|source| StateError::Parse { path, source })
    }

    pub fn backups(&self) -> Vec<Backup> {
        Backup::recorded(&self.backups)
    }

    pub fn stream_model(&self) -> StreamModel {
        StreamModel {
            id: self.stream_model_id.clone(),
            upstream_ids: self.stream_upstream_ids.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory without a state file is answered with what to do.
    #[test]
    fn missing_state_says_which_directory_to_pass() {
        let dir = tempfile::tempdir().unwrap();
        let e = RunState::load(dir.path()).unwrap_err();
        let said = e.to_string();
        assert!(matches!(e, StateError::Read { .. }), "{said}");
        assert!(said.contains(STATE_FILE), "{said}");
        assert!(said.contains("harness up"), "{said}");
    }

    /// A file that is not a state names the file.
    #[test]
    fn foreign_json_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{\"x\": 1}").unwrap();
        let e = RunState::load(dir.path()).unwrap_err();
        assert!(matches!(e, StateError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("is not a harness state file"), "{e}");
    }
}
