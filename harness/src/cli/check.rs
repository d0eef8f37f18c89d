//! `harness check` on the command line: its flags, and the run that prints
//! the report like `validate` (summary, `--report json`, `--junit`) and
//! exits with the same codes (0 go, 1 no-go, 2 bad input).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::{emit, Global, Output};
use crate::exit::Usage;
use crate::files::FilesError;
use crate::live::target::{Resolve, TargetSpec};
use crate::live::LiveOptions;
use crate::stack::DEFAULT_STREAM_BOUND;

/// How to reach and trust the deployment, and what to ask it (shared by
/// `check` and `deploy`; the URL is each command's own, as `deploy` has a
/// default for it and `check` does not).
// These doc comments are also the --help text: plain URLs and <placeholders>
// read well there, so rustdoc's markdown lints are off for them.
#[allow(rustdoc::bare_urls, rustdoc::invalid_html_tags)]
#[derive(Debug, Clone, clap::Args)]
pub struct ReachArgs {
    /// Send requests for HOST:PORT to ADDR (as curl's --resolve), e.g.
    /// chat.trollllm.xyz:443:127.0.0.1 to check a host before DNS points at it.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Option<Resolve>,
    /// Trust this CA certificate (PEM) instead of the built-in web roots.
    #[arg(long, conflicts_with = "insecure")]
    pub ca_cert: Option<PathBuf>,
    /// Do not verify the certificate chain (its dates are still checked).
    #[arg(long)]
    pub insecure: bool,
    /// The environment variable holding the client key (its value is never printed).
    #[arg(long, default_value = "PROXY_API_KEY")]
    pub api_key_env: String,
    /// The model for the completions [default: the first of /v1/models].
    #[arg(long)]
    pub model: Option<String>,
}

impl ReachArgs {
    /// The target at `url`, reached and trusted as these flags say.
    pub fn spec(&self, url: &str, stream_bound: Duration) -> TargetSpec {
        TargetSpec {
            url: url.to_string(),
            resolve: self.resolve.clone(),
            ca_cert: self.ca_cert.clone(),
            insecure: self.insecure,
            api_key_env: self.api_key_env.clone(),
            stream_bound,
        }
    }
}

/// `harness check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The deployment's public URL, e.g. `https://chat.trollllm.xyz`.
    #[arg(long)]
    pub url: String,
    #[command(flatten)]
    pub reach: ReachArgs,
    /// Monitoring window after the requests (the design watches 15m).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub monitor: Duration,
    /// The compose file(s) of the deployment on this Docker host (repeat for overrides).
    #[arg(long)]
    pub compose_file: Vec<PathBuf>,
    /// The compose project on this Docker host: adds the host checks (port in
    /// goproxy's namespace, nginx -t, nginx -> goproxy, logs, restarts).
    #[arg(long)]
    pub project_name: Option<String>,
    #[command(flatten)]
    pub out: Output,
}

/// Runs `harness check`; returns the exit code.
pub(super) async fn run(args: CheckArgs, g: &Global) -> anyhow::Result<i32> {
    let (root, quiet) = (g.root.as_path(), g.quiet);
    if args.monitor.is_zero() {
        let why = "--monitor 0s watches nothing: give a window, e.g. --monitor 30s";
        return Err(Usage(why.into()).into());
    }
    let project = args.project_name.clone().or_else(|| {
        (!args.compose_file.is_empty()).then(|| default_project(root, &args.compose_file))
    });
    let opts = LiveOptions {
        target: args.reach.spec(&args.url, DEFAULT_STREAM_BOUND),
        model: args.reach.model.clone(),
        monitor: args.monitor,
        compose_files: args.compose_file.clone(),
        project,
        quiet,
    };
    if !quiet {
        eprintln!("harness check: {}", args.url);
    }
    let report = crate::live::check(&opts)
        .await
        .with_context(|| format!("checking {}", args.url))?;
    Ok(emit(&report, &args.out))
}

/// Compose's default project name: the first compose file's directory name
/// (`root` when that file is given without a directory).
pub(super) fn default_project(root: &Path, compose_files: &[PathBuf]) -> String {
    let dir = compose_files
        .first()
        .and_then(|f| f.parent())
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(root);
    crate::prod::project::default_name(dir)
}

/// The exact `harness check` command for a stack `harness up` started, on
/// one line. The key is not printed: it is written to `<run dir>/api-key`
/// (mode 0600) and read by the shell into the variable the check names.
pub fn check_command_for(state: &crate::state::RunState) -> Result<String, FilesError> {
    use std::os::unix::fs::PermissionsExt as _;
    let key_file = state.run_dir.join("api-key");
    std::fs::write(&key_file, &state.api_key)
        .and_then(|_| std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)))
        .map_err(|source| FilesError::Io {
            action: "write",
            path: key_file.clone(),
            source,
        })?;
    let host = crate::stack::HOSTNAME;
    let port = state.https_port;
    let files: Vec<String> = state
        .compose_files
        .iter()
        .map(|f| format!("--compose-file {}", f.display()))
        .collect();
    Ok(format!(
        "HARNESS_API_KEY=\"$(cat {key})\" harness check --url https://{host}:{port} \
         --resolve {host}:{port}:127.0.0.1 --ca-cert {dir}/tls/fullchain.pem \
         --api-key-env HARNESS_API_KEY {files} --project-name {project}",
        key = key_file.display(),
        dir = state.run_dir.display(),
        files = files.join(" "),
        project = state.project
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `harness up`'s check command is one line, names the key's variable
    /// and the file it is read from, and never the key itself.
    #[test]
    fn up_prints_a_check_command_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state::RunState {
            run_dir: dir.path().to_path_buf(),
            compose_files: vec![
                "/r/docker-compose.yml".into(),
                "/r/docker-compose.test.yml".into(),
            ],
            project: "harness-1234".into(),
            env: Vec::new(),
            https_port: 32768,
            mock_port: 0,
            wiremock_port: 0,
            api_key: "sk-trollllm-secret".into(),
            cert_pem: String::new(),
            start_port: 8005,
            change_port: 8004,
            second_port: None,
            stream_model_id: "m".into(),
            stream_upstream_ids: Vec::new(),
            backups: Vec::new(),
        };
        let cmd = check_command_for(&state).unwrap();
        assert!(!cmd.contains('\n'), "{cmd}");
        assert!(!cmd.contains("sk-trollllm-secret"), "{cmd}");
        assert!(cmd.contains("--api-key-env HARNESS_API_KEY"), "{cmd}");
        assert!(
            cmd.contains("--resolve chat.trollllm.xyz:32768:127.0.0.1"),
            "{cmd}"
        );
        assert!(
            cmd.contains("--compose-file /r/docker-compose.test.yml --project-name harness-1234"),
            "{cmd}"
        );
        let key = std::fs::read_to_string(dir.path().join("api-key")).unwrap();
        assert_eq!(key, "sk-trollllm-secret");
    }
}
