//! nginx that does not start says why, in its own words, within seconds.
//!
//! nginx exits at once on a config it refuses (`unknown directive
//! "proxy_bufering"`, `host not found in upstream`). The health wait sees
//! the exited container and returns; this adds `nginx -t` run on the same
//! mounts (a throwaway `compose run`), so the report quotes nginx.

use super::StackError;
use crate::compose::ComposeStack;
use crate::docker::DockerError;

/// The error of a failed start, with nginx's own `nginx -t` output when
/// nginx is what failed.
pub async fn explain(compose: &ComposeStack, e: DockerError) -> StackError {
    if !matches!(&e, DockerError::NotHealthy { service, .. } if service == "nginx") {
        return e.into();
    }
    let args = [
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "--entrypoint",
        "nginx",
        "nginx",
        "-t",
    ];
    let test = match compose.output(&args).await {
        Ok(out) => format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(other) => format!("(could not run nginx -t: {other})"),
    };
    let test = test.trim();
    // Compose adds its own progress lines; keep nginx's.
    let own: Vec<String> = test.lines().filter_map(nginx_line).collect();
    let test = if own.is_empty() {
        test.replace('\n', " / ")
    } else {
        own.join(" / ")
    };
    StackError::NginxDidNotStart {
        said: test,
        source: Box::new(e),
    }
}

/// One line of nginx's own output, without the error log's timestamp:
/// `2026/11/27 08:11:17 [emerg] 1#1: unknown ...` -> `[emerg] unknown ...`.
fn nginx_line(l: &str) -> Option<String> {
    if l.starts_with("nginx:") {
        return Some(l.to_string());
    }
    let level = ["[emerg]", "[alert]", "[crit]", "[error]", "[warn]"]
        .into_iter()
        .find(|lv| l.contains(lv))?;
    let after = &l[l.find(level)? + level.len()..];
    // Skip the `pid#tid:` that follows the level.
    let msg = after.split_once(": ").map_or(after, |(_, m)| m);
    Some(format!("nginx: {level} {}", msg.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nginx's error-log lines keep their level and message.
    #[test]
    fn keeps_nginx_lines() {
        let l =
            "2026/11/27 08:11:17 [emerg] 1#1: unknown directive \"x\" in /etc/nginx/nginx.conf:111";
        assert_eq!(
            nginx_line(l).unwrap(),
            "nginx: [emerg] unknown directive \"x\" in /etc/nginx/nginx.conf:111"
        );
        assert!(nginx_line("Creating harness_nginx_run ... done").is_none());
    }
}
