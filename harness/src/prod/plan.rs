//! `harness deploy --dry-run`: every step and command the deploy would run
//! on this project, with the real container ids, files and ports, after the
//! read-only checks (project healthy, lint). Nothing is changed.

use std::fmt::Write as _;

use super::deploy::{DeployOptions, Found};
use super::strategy;
use crate::deploy::MULTI_SERVICES;
use crate::scenario::Strategy;

/// The plan, one numbered step per line group.
pub fn render(opts: &DeployOptions, f: &Found, old_port: u16, new_port: u16) -> String {
    let compose = compose_command(f);
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
            "dry run on {}: goproxy {old_port} -> {new_port} by {}; nothing below is run",
            opts.project,
            strategy::name(f.strategy)
        ),
        &[],
    );
    check_steps(&mut say, f, new_port);
    backup_steps(&mut say, f);
    apply_step(&mut say, f);
    match f.strategy {
        Strategy::RollingRestart => rolling_steps(&mut say, grace),
        _ => overlap_steps(&mut say, &compose, grace),
    }
    post_steps(&mut say, opts, f, old_port);
    out
}

/// The project's `docker-compose -f .. -p ..` prefix, as the switch runs it.
fn compose_command(f: &Found) -> String {
    f.stack
        .compose()
        .map(|c| {
            let files: Vec<String> = c
                .files()
                .iter()
                .map(|p| format!("-f {}", p.display()))
                .collect();
            format!("docker-compose {} -p {}", files.join(" "), c.project())
        })
        .unwrap_or_default()
}

/// The read-only pre-deployment checks: the port, and each candidate file
/// checked by the deployed binaries.
fn check_steps(say: &mut impl FnMut(&str, &[String]), f: &Found, new_port: u16) {
    let (cand_json, cand_nginx) = (&f.candidate.0, &f.candidate.1);
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
    if let Some((_, cand_b)) = &f.second {
        say(
            "pre: goproxy-b keeps its port; its candidate config in the deployed goproxy image",
            &[
                format!(
                    "docker cp {} <goproxy>:/tmp/config.candidate.json",
                    cand_b.display()
                ),
                "docker exec <goproxy> goproxy --check-config /tmp/config.candidate.json".into(),
            ],
        );
    }
}

/// The backups of every live file, and the state a rollback reads.
fn backup_steps(say: &mut impl FnMut(&str, &[String]), f: &Found) {
    let mut backups = vec![format!("cp {0} {0}.bak-<UTC time>", f.live.0.display())];
    if let Some((live_b, _)) = &f.second {
        backups.push(format!("cp {0} {0}.bak-<UTC time>", live_b.display()));
    }
    backups.push(format!("cp {0} {0}.bak-<UTC time>", f.live.1.display()));
    say(
        "pre: timestamped backups, each verified byte for byte",
        &backups,
    );
    say(
        &format!(
            "state for `harness rollback --run-dir {}`",
            f.state_dir.display()
        ),
        &[format!("write {}/deploy-state.json", f.state_dir.display())],
    );
}

/// The candidate over the live files: goproxy's JSON(s), then nginx.conf.
fn apply_step(say: &mut impl FnMut(&str, &[String]), f: &Found) {
    let mut applied = vec![format!(
        "cat {} > {}",
        f.candidate.0.display(),
        f.live.0.display()
    )];
    if let Some((live_b, cand_b)) = &f.second {
        applied.push(format!("cat {} > {}", cand_b.display(), live_b.display()));
    }
    applied.push(format!(
        "cat {} > {}",
        f.candidate.1.display(),
        f.live.1.display()
    ));
    say(
        "apply: the candidate written over the live files in place (bind mounts follow the inode)",
        &applied,
    );
}

/// The live checks after the switch, and what a failure does.
fn post_steps(
    say: &mut impl FnMut(&str, &[String]),
    opts: &DeployOptions,
    f: &Found,
    old_port: u16,
) {
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
            "on any failure after the change: restore the backups, the same switch ({}) back to \
             {old_port}, check /health through nginx",
            strategy::name(f.strategy)
        ),
        &[],
    );
}

/// The overlap switch's steps: a new goproxy beside the old one.
fn overlap_steps(say: &mut impl FnMut(&str, &[String]), compose: &str, grace: u64) {
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
}

/// The rolling restart's steps: each instance out of rotation, restarted,
/// back in, while the other serves.
fn rolling_steps(say: &mut impl FnMut(&str, &[String]), grace: u64) {
    let reload_and_wait = [
        "docker exec <nginx> nginx -t && docker exec <nginx> nginx -s reload".to_string(),
        format!(
            "docker exec <nginx> (wait for the previous workers and their streams, up to {grace} s)"
        ),
    ];
    for service in MULTI_SERVICES {
        let mut down = vec![format!(
            "nginx.conf rewritten in place with `server {service}:<port> ... down;`"
        )];
        down.extend(reload_and_wait.iter().cloned());
        say(
            &format!("switch (rolling-restart): {service} out of nginx's rotation"),
            &down,
        );
        say(
            &format!("switch: restart {service} on its new config while the other serves"),
            &[
                format!("docker restart -t 360 <{service}>"),
                format!("docker inspect <{service}> (until healthy, 60 s)"),
            ],
        );
        let mut back = vec!["the candidate nginx.conf written back in place".to_string()];
        back.extend(reload_and_wait.iter().cloned());
        say(&format!("switch: {service} back in rotation"), &back);
    }
}
