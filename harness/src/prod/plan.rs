//! `harness deploy --dry-run`: every step and command the deploy would run
//! on this project, with the real container ids, files and ports, after the
//! read-only checks (project healthy, lint). Nothing is changed.

use std::fmt::Write as _;

use super::deploy::{DeployOptions, Found};

/// The plan, one numbered step per line group.
pub fn render(opts: &DeployOptions, f: &Found, old_port: u16, new_port: u16) -> String {
    let compose = f
        .stack
        .compose()
        .map(|c| {
            let files: Vec<String> = c
                .files()
                .iter()
                .map(|p| format!("-f {}", p.display()))
                .collect();
            format!("docker-compose {} -p {}", files.join(" "), c.project())
        })
        .unwrap_or_default();
    let (live_json, live_nginx) = (&f.live.0, &f.live.1);
    let (cand_json, cand_nginx) = (&f.candidate.0, &f.candidate.1);
    let grace = f.stack.stream_bound.as_secs();
    let mut out = String::new();
    let mut step = 0;
    let mut say = |title: &str, commands: &[String]| {
        step += 1;
        let _ = writeln!(out, "{step:>2}. {title}");
        for c in commands {
            let _ = writeln!(out, "      $ {c}");
        }
    };
    say(
        &format!(
            "dry run on {}: goproxy {old_port} -> {new_port}; nothing below is run",
            opts.project
        ),
        &[],
    );
    say(
        &format!("pre: port {new_port} free in goproxy's network namespace"),
        &["docker exec <goproxy> cat /proc/net/tcp /proc/net/tcp6".into()],
    );
    say(
        "pre: the candidate config in the deployed goproxy image",
        &[
            format!(
                "docker cp {} <goproxy>:/tmp/config.candidate.json",
                cand_json.display()
            ),
            "docker exec <goproxy> goproxy --check-config /tmp/config.candidate.json".into(),
        ],
    );
    say(
        "pre: the candidate nginx.conf by the deployed nginx",
        &[
            format!(
                "docker cp {} <nginx>:/tmp/nginx.candidate.conf",
                cand_nginx.display()
            ),
            "docker exec <nginx> nginx -t -c /tmp/nginx.candidate.conf".into(),
        ],
    );
    say(
        "pre: timestamped backups, each verified byte for byte",
        &[
            format!("cp {0} {0}.bak-<UTC time>", live_json.display()),
            format!("cp {0} {0}.bak-<UTC time>", live_nginx.display()),
        ],
    );
    say(
        &format!(
            "state for `harness rollback --run-dir {}`",
            f.state_dir.display()
        ),
        &[format!("write {}/deploy-state.json", f.state_dir.display())],
    );
    say(
        "apply: the candidate written over the live files in place (bind mounts follow the inode)",
        &[
            format!("cat {} > {}", cand_json.display(), live_json.display()),
            format!("cat {} > {}", cand_nginx.display(), live_nginx.display()),
        ],
    );
    say(
        "switch (overlap): a new goproxy beside the old one, nginx reloaded onto both",
        &[
            format!("{compose} up -d --no-deps --no-recreate --scale goproxy=2 goproxy"),
            "docker inspect <new goproxy> (until healthy, 60 s)".into(),
            "docker exec <nginx> nginx -t && docker exec <nginx> nginx -s reload".into(),
        ],
    );
    say(
        &format!(
            "switch: wait for the previous nginx workers (their open streams) to finish, up to {grace} s, \
             then drain the old goproxy"
        ),
        &[
            "docker exec <nginx> (list worker pids, every 100 ms; progress every 10 s)".into(),
            "docker stop -t 360 <old goproxy> && docker rm <old goproxy>".into(),
            "docker exec <nginx> nginx -t && docker exec <nginx> nginx -s reload".into(),
        ],
    );
    say(
        &format!(
            "post: the live checks, then a {}-second monitoring window",
            opts.monitor.as_secs()
        ),
        &[format!(
            "harness check --url {} --api-key-env {} --project-name {} --monitor {}s",
            f.target.base,
            opts.api_key_env,
            opts.project,
            opts.monitor.as_secs()
        )],
    );
    say(
        &format!(
            "on any failure after the change: restore the backups, the same switch back to {old_port}, \
             check /health through nginx"
        ),
        &[],
    );
    out
}
