//! What a kept run leaves on disk so that later commands (`harness
//! rollback`, `harness down`) can act on the same stack: the compose
//! project and its variables, the files and backups, the ports and keys.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::Backup;
use crate::stream_model::StreamModel;

/// File name of the state inside a run directory.
pub const STATE_FILE: &str = "harness-state.json";

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
    pub fn save(&self) -> Result<PathBuf, String> {
        let path = self.run_dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// Reads `<run_dir>/harness-state.json`, saying what to do if it is not there.
    pub fn load(run_dir: &Path) -> Result<Self, String> {
        let path = run_dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read {} ({e}): is this the run directory printed by \
                 `harness up` or `harness validate --keep`?",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a harness state file: {e}", path.display()))
    }

    pub fn backups(&self) -> Vec<Backup> {
        self.backups
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

    pub fn stream_model(&self) -> StreamModel {
        StreamModel {
            id: self.stream_model_id.clone(),
            upstream_ids: self.stream_upstream_ids.clone(),
        }
    }
}
