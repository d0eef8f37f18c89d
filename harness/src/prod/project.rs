//! The operator's running compose project, as Docker sees it: which files
//! are really mounted into goproxy and nginx (read from the containers'
//! mounts, so the files `deploy` backs up and replaces are the ones that
//! run), which port nginx publishes, and whether everything is healthy.

use super::ProdError;
use std::path::{Path, PathBuf};

use crate::docker;
use crate::stack::containers::Containers;
use crate::stack::Backend;

/// Where goproxy's config is mounted in its container.
pub const GOPROXY_CONFIG_IN: &str = "/app/config.json";
/// Where nginx's config is mounted in its container.
pub const NGINX_CONF_IN: &str = "/etc/nginx/nginx.conf";

/// Compose's default project name for a directory: its name, lowercased,
/// with only `[a-z0-9_-]` kept (what v1 and v2 both do).
pub fn default_name(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

/// The host file mounted at `inside` in container `id`.
pub async fn mounted_source(id: &str, inside: &str) -> Result<PathBuf, ProdError> {
    let template = format!(
        "{{{{range .Mounts}}}}{{{{if eq .Destination \"{inside}\"}}}}{{{{.Source}}}}{{{{end}}}}{{{{end}}}}"
    );
    let out = docker::docker_ok(&["inspect", "-f", &template, id]).await?;
    let source = out.trim();
    if source.is_empty() {
        return Err(ProdError::NotMounted {
            id: id[..12.min(id.len())].to_string(),
            inside: inside.to_string(),
        });
    }
    Ok(PathBuf::from(source))
}

/// The live files of the project: (goproxy's config, nginx.conf) on the host.
pub async fn live_files(c: &Containers) -> Result<(PathBuf, PathBuf), ProdError> {
    let goproxy = c.only("goproxy").await?;
    let nginx = c.only("nginx").await?;
    Ok((
        mounted_source(&goproxy, GOPROXY_CONFIG_IN).await?,
        mounted_source(&nginx, NGINX_CONF_IN).await?,
    ))
}

/// goproxy-b's live config on the host, when the project runs that second
/// instance (`docker-compose.multi.yml`).
pub async fn live_second(c: &Containers) -> Result<Option<PathBuf>, ProdError> {
    let ids = c.ids(crate::deploy::MULTI_SERVICES[1]).await?;
    match ids.first() {
        Some(id) => Ok(Some(mounted_source(id, GOPROXY_CONFIG_IN).await?)),
        None => Ok(None),
    }
}

/// The host port nginx publishes 443 on (loopback reaches it from the host).
pub async fn published_https(c: &Containers) -> Result<u16, ProdError> {
    let nginx = c.only("nginx").await?;
    let out = docker::docker_ok(&["port", &nginx, "443/tcp"]).await?;
    out.lines()
        .filter_map(|l| l.trim().rsplit(':').next()?.parse::<u16>().ok())
        .next()
        .ok_or_else(|| ProdError::NotPublished {
            said: out.trim().to_string(),
        })
}

/// Every container of goproxy and nginx is running and healthy.
pub async fn healthy(c: &dyn Backend) -> Result<String, ProdError> {
    let mut seen = Vec::new();
    for service in ["goproxy", "nginx"] {
        let ids = c.goproxy_ids(service).await?;
        if ids.is_empty() {
            return Err(ProdError::NoContainer { service });
        }
        for id in ids {
            let state = docker::docker_ok(&[
                "inspect",
                "-f",
                "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                &id,
            ])
            .await?;
            let state = state.trim().to_string();
            if state != "running healthy" && state != "running" {
                return Err(ProdError::Unhealthy {
                    service,
                    id: id[..12.min(id.len())].to_string(),
                    state,
                });
            }
            seen.push(format!("{service} {}", state));
        }
    }
    Ok(seen.join(", "))
}

/// The candidate for a live file: the same path relative to the project
/// directory, under the candidate directory.
pub fn candidate_for(
    live: &Path,
    project_dir: &Path,
    candidate_dir: &Path,
) -> Result<PathBuf, ProdError> {
    let project_dir = project_dir
        .canonicalize()
        .unwrap_or_else(|_| project_dir.to_path_buf());
    let rel = live
        .strip_prefix(&project_dir)
        .map_err(|_| ProdError::OutsideProject {
            live: live.to_path_buf(),
            project_dir: project_dir.clone(),
        })?;
    Ok(candidate_dir.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compose's rule: lowercase, only letters, digits, `_` and `-`.
    #[test]
    fn default_project_name_is_the_directory() {
        assert_eq!(default_name(Path::new("/srv/Chat.App")), "chatapp");
        assert_eq!(default_name(Path::new("/srv/my-app_2")), "my-app_2");
    }

    /// The candidate mirrors the live file's place in the project.
    #[test]
    fn candidate_mirrors_the_project_layout() {
        let c = candidate_for(
            Path::new("/nonexistent-proj/nginx/nginx.conf"),
            Path::new("/nonexistent-proj"),
            Path::new("/tmp/new"),
        )
        .unwrap();
        assert_eq!(c, Path::new("/tmp/new/nginx/nginx.conf"));
        let e = candidate_for(
            Path::new("/etc/nginx.conf"),
            Path::new("/nonexistent-proj"),
            Path::new("/tmp/new"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("outside the project directory"), "{e}");
    }
}
