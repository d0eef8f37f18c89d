//! The operator's files, as `lint` and `validate` both take them.

use std::path::PathBuf;

use crate::lint::{LintError, LintTargets, DEFAULT_SERVICE};

/// Which files are judged; each defaults to this repository's layout
/// under `--root`.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// goproxy production config [default: <root>/proxy/config-ohmygpt-prod.json].
    #[arg(long)]
    pub goproxy_config: Option<PathBuf>,
    /// goproxy dev config, which must agree on the port
    /// [default: <root>/proxy/config-ohmygpt-dev.json if it exists and
    /// --goproxy-config, when given, is under --root; otherwise not judged].
    #[arg(long)]
    pub dev_config: Option<PathBuf>,
    /// nginx config; its includes are read too [default: <root>/nginx/nginx.conf].
    #[arg(long)]
    pub nginx_conf: Option<PathBuf>,
    /// Compose files to scan for goproxy ports (repeatable) [default: every
    /// docker-compose*.yml / compose*.yaml under --root that defines the service].
    #[arg(long)]
    pub compose: Vec<PathBuf>,
    /// The compose service that runs goproxy (nginx reaches it by this name).
    #[arg(long, default_value = DEFAULT_SERVICE)]
    pub service: String,
}

/// The context of a file to judge that cannot be used: what to do.
pub(super) const UNUSABLE: &str = "the deployment's files cannot be judged (fix the file, or \
     name the right ones with --root, --goproxy-config, --nginx-conf, --compose)";

impl TargetArgs {
    /// The files to judge; `Err` names the first that cannot be read (exit 2).
    pub fn targets(&self, root: &std::path::Path) -> Result<LintTargets, LintError> {
        let mut t = LintTargets::from_root(root);
        if let Some(p) = &self.goproxy_config {
            t.prod_config = p.clone();
            // A dev config under --root belongs to that tree: judging it
            // beside a prod config from elsewhere mixes two deployments.
            if self.dev_config.is_none() && !same_tree(p, root) {
                t.dev_note = Some(format!(
                    "not judged: --goproxy-config {} is not under --root {}; \
                     give --dev-config to compare a dev config",
                    p.display(),
                    root.display()
                ));
                t.dev_config = None;
            }
        }
        if self.dev_config.is_some() {
            t.dev_config = self.dev_config.clone();
            t.dev_note = None;
        }
        if let Some(p) = &self.nginx_conf {
            t.nginx_conf = p.clone();
        }
        if !self.compose.is_empty() {
            t.compose_files = self.compose.clone();
        }
        t.service = self.service.clone();
        match t.unreadable() {
            Some(why) => Err(why),
            None => Ok(t),
        }
    }
}

/// Whether `file` lies under `root` (both resolved; an unresolvable path is
/// taken as outside).
fn same_tree(file: &std::path::Path, root: &std::path::Path) -> bool {
    match (file.canonicalize(), root.canonicalize()) {
        (Ok(f), Ok(r)) => f.starts_with(r),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;
    use crate::exit;
    use crate::report::EXIT_USAGE;

    /// A missing --goproxy-config ends `lint` and `validate` with one line
    /// that names the path, what went wrong and what to do, each once, and
    /// exit 2.
    #[test]
    fn a_missing_goproxy_config_names_the_path_and_what_to_do() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("proxy/nope.json");
        let args = TargetArgs {
            goproxy_config: Some(missing.clone()),
            dev_config: None,
            nginx_conf: None,
            compose: Vec::new(),
            service: DEFAULT_SERVICE.into(),
        };
        let err = args.targets(root.path()).context(UNUSABLE).unwrap_err();
        let said = exit::chain(&err);
        assert!(
            said.starts_with("the deployment's files cannot be judged"),
            "{said}"
        );
        assert!(said.contains("--goproxy-config"), "{said}");
        assert!(
            said.contains(&format!("cannot read {}", missing.display())),
            "{said}"
        );
        assert_eq!(said.matches("No such file").count(), 1, "{said}");
        assert!(!said.contains('\n'), "{said}");
        assert_eq!(exit::code_of(&err), EXIT_USAGE);
    }
}
