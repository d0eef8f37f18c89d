//! Container-level operations the compose CLI does not do well: exec by
//! container id (after a scale-up, `compose exec` picks a replica by index,
//! not the one we mean), copying a candidate file in, logs since an instant,
//! and reading what a container listens on.

use std::time::SystemTime;

use tokio::process::Command;

/// Output of a command run in a container.
#[derive(Debug, Clone)]
pub struct Exec {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `docker <args>`; Err carries the command and its stderr.
pub async fn docker(args: &[&str]) -> Result<Exec, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run `docker {}`: {e}", args.join(" ")))?;
    Ok(Exec {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Like [`docker`], but a non-zero exit is an error.
pub async fn docker_ok(args: &[&str]) -> Result<String, String> {
    let out = docker(args).await?;
    if out.code == 0 {
        Ok(out.stdout)
    } else {
        Err(format!(
            "`docker {}` exited {}: {}",
            args.join(" "),
            out.code,
            out.stderr.trim()
        ))
    }
}

/// Runs `cmd` in container `id`.
pub async fn exec(id: &str, cmd: &[&str]) -> Result<Exec, String> {
    let mut args = vec!["exec", id];
    args.extend_from_slice(cmd);
    docker(&args).await
}

/// Copies a host file into a container.
pub async fn copy_in(id: &str, host: &std::path::Path, in_container: &str) -> Result<(), String> {
    let src = host.to_string_lossy();
    let dst = format!("{id}:{in_container}");
    docker_ok(&["cp", &src, &dst]).await.map(|_| ())
}

/// stdout and stderr of a container since `since`.
pub async fn logs_since(id: &str, since: SystemTime) -> Result<String, String> {
    let secs = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let since = format!("{secs:.3}");
    let out = docker(&["logs", "--since", &since, id]).await?;
    if out.code != 0 {
        return Err(format!(
            "`docker logs {id}` exited {}: {}",
            out.code,
            out.stderr.trim()
        ));
    }
    Ok(format!("{}{}", out.stdout, out.stderr))
}

/// The TCP ports a container listens on, read from `/proc/net/tcp{,6}` in
/// its network namespace (works whatever tools the image has).
pub async fn listening_ports(id: &str) -> Result<Vec<u16>, String> {
    let out = exec(id, &["cat", "/proc/net/tcp", "/proc/net/tcp6"]).await?;
    if out.code != 0 && out.stdout.is_empty() {
        return Err(format!(
            "cannot read /proc/net/tcp in {id}: {}",
            out.stderr.trim()
        ));
    }
    Ok(parse_listening(&out.stdout))
}

/// Ports in state LISTEN (`0A`) in `/proc/net/tcp` text.
pub fn parse_listening(proc_net_tcp: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = proc_net_tcp
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _slot = f.next()?;
            let local = f.next()?;
            let _remote = f.next()?;
            let state = f.next()?;
            if state != "0A" {
                return None;
            }
            let port_hex = local.rsplit(':').next()?;
            u16::from_str_radix(port_hex, 16).ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The container's start time as docker reports it (changes on restart).
pub async fn started_at(id: &str) -> Result<String, String> {
    docker_ok(&["inspect", "-f", "{{.State.StartedAt}}", id])
        .await
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only LISTEN sockets count, from both tcp and tcp6 tables.
    #[test]
    fn parses_listening_ports() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F44 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F44 0100007F:A000 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0 100 0 0 10 0
   0: 00000000000000000000000000000000:1F45 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 3 1";
        assert_eq!(parse_listening(text), [8004, 8005]);
    }
}
