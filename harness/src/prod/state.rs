//! A deploy's state on disk: written before anything changes and after
//! each step, so that `harness rollback --run-dir <deploy dir>` can restore
//! the backups on demand, also after a deploy that was interrupted (a
//! signal, a lost SSH session, a crash). No key value is ever stored: only
//! the name of the variable that holds the client key.

use super::ProdError;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::files::Backup;
use crate::live::target::Resolve;

/// File name of the state inside a deploy directory.
pub const STATE_FILE: &str = "deploy-state.json";

/// How far a deploy got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Backups taken; nothing changed yet.
    BackedUp,
    /// The candidate files are written in place: the live files changed.
    Applied,
    /// The switch ran and the checks passed.
    Done,
    /// Rolled back (automatically or on demand) and the old service answered.
    RolledBack,
    /// A rollback ran and did not restore service.
    RollbackFailed,
}

/// The deploy in progress in this process, for the signal handler: a
/// signal ends the run by dropping it, and the operator must then be told
/// where the state is and how to roll back.
static IN_PROGRESS: Mutex<Option<(PathBuf, Step)>> = Mutex::new(None);

/// The deploy this process left unfinished, if any: its directory and
/// the last step its state file records.
pub fn in_progress() -> Option<(PathBuf, Step)> {
    IN_PROGRESS.lock().ok().and_then(|g| g.clone())
}

/// What to tell the operator when a signal ends a deploy mid-way.
pub fn interrupted_message(dir: &Path, step: Step) -> String {
    let what = match step {
        Step::BackedUp => "backups taken, the live files not yet changed",
        Step::Applied => "the candidate files are live and the switch may be half done",
        Step::Done | Step::RolledBack | Step::RollbackFailed => "the deploy had finished",
    };
    format!(
        "harness: deploy interrupted ({what}); no container was removed. Roll back (again, \
         if a rollback was interrupted) with `harness rollback --run-dir {}`",
        dir.display()
    )
}

/// What a later `harness rollback` needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployState {
    pub dir: PathBuf,
    pub project: String,
    pub compose_files: Vec<PathBuf>,
    pub step: Step,
    pub old_port: u16,
    pub new_port: u16,
    /// (live file, verified copy) pairs.
    pub backups: Vec<(PathBuf, PathBuf)>,
    pub url: String,
    pub resolve: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub insecure: bool,
    pub api_key_env: String,
}

impl DeployState {
    /// Writes `<dir>/deploy-state.json` (whole file, then renamed: a crash
    /// mid-write leaves the previous state, never half of one).
    pub fn save(&self) -> Result<PathBuf, ProdError> {
        std::fs::create_dir_all(&self.dir).map_err(ProdError::io("create", &self.dir))?;
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(ProdError::io("write", &path))?;
        if let Ok(mut g) = IN_PROGRESS.lock() {
            *g = match self.step {
                Step::BackedUp | Step::Applied => Some((self.dir.clone(), self.step)),
                Step::Done | Step::RolledBack | Step::RollbackFailed => None,
            };
        }
        Ok(path)
    }

    /// Records a step and saves.
    pub fn advance(&mut self, step: Step) -> Result<PathBuf, ProdError> {
        self.step = step;
        self.save()
    }

    /// Reads `<dir>/deploy-state.json`.
    pub fn load(dir: &Path) -> Result<Self, ProdError> {
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(source) => return Err(ProdError::NoState { path, source }),
        };
        serde_json::from_str(&text).map_err(|source| ProdError::BadState { path, source })
    }

    /// Whether `dir` holds a deploy's state (rather than a test run's).
    pub fn is_deploy_dir(dir: &Path) -> bool {
        dir.join(STATE_FILE).is_file()
    }

    pub fn backups(&self) -> Vec<Backup> {
        Backup::recorded(&self.backups)
    }

    pub fn resolve(&self) -> Option<Resolve> {
        self.resolve.as_deref().and_then(|r| r.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A saved state loads back with its step and backups, and a deploy
    /// directory is told apart from a test run's.
    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DeployState {
            dir: dir.path().to_path_buf(),
            project: "app".into(),
            compose_files: vec!["/srv/app/docker-compose.yml".into()],
            step: Step::BackedUp,
            old_port: 8005,
            new_port: 8004,
            backups: vec![("/srv/app/nginx/nginx.conf".into(), "/x.bak".into())],
            url: "https://chat.trollllm.xyz".into(),
            resolve: Some("chat.trollllm.xyz:443:127.0.0.1".into()),
            ca_cert: None,
            insecure: false,
            api_key_env: "PROXY_API_KEY".into(),
        };
        assert!(!DeployState::is_deploy_dir(dir.path()));
        s.advance(Step::Applied).unwrap();
        assert!(DeployState::is_deploy_dir(dir.path()));
        let back = DeployState::load(dir.path()).unwrap();
        assert_eq!(back.step, Step::Applied);
        assert_eq!(back.backups.len(), 1);
        assert_eq!(back.resolve().unwrap().port, 443);
    }
}
