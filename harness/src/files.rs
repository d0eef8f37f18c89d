//! The deployment's files for one run: what the stack mounts, the
//! candidate the change writes, and the timestamped backups.
//!
//! The stack bind-mounts single files (`nginx.conf`, goproxy's
//! `config.json`). A bind mount follows the inode, so every write here is
//! in place (truncate and write), never write-to-temp-and-rename: a rename
//! would leave the container reading the old file.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::scenario::{Fault, Scenario};

/// Address goproxy binds in the "fails to start" fault: TEST-NET-2
/// (RFC 5737), never assigned inside a container, so bind() fails while the
/// config itself is valid.
pub const UNBINDABLE_HOST: &str = "198.51.100.1";

/// The operator's files a run starts from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// goproxy JSON as operators have it (endpoints pointing at real upstreams).
    pub goproxy_config: PathBuf,
    /// nginx.conf as deployed.
    pub nginx_conf: PathBuf,
}

impl Sources {
    pub fn from_root(root: &Path) -> Self {
        Self {
            goproxy_config: root.join("proxy/config-ohmygpt-prod.json"),
            nginx_conf: root.join("nginx/nginx.conf"),
        }
    }
}

/// Where the mocks are, as seen from inside the goproxy container.
#[derive(Debug, Clone)]
pub struct MockEndpoints {
    /// Base of the streaming mock container, e.g. `http://upstream:9000`.
    pub stream_mock: String,
    /// Base of the wiremock server on the host, e.g.
    /// `http://host.docker.internal:41234`.
    pub wiremock: Option<String>,
    /// The address goproxy binds (`host`), when not its default 0.0.0.0:
    /// 127.0.0.1 for local processes.
    pub goproxy_host: Option<String>,
}

/// The probe model routed to wiremock, and the id wiremock must receive.
pub const PROBE_MODEL: &str = "harness-probe";
/// The endpoint that serves the probe model (wiremock).
pub const PROBE_ENDPOINT: &str = "probe-openai";
pub const PROBE_UPSTREAM_MODEL: &str = "harness-probe-upstream-v1";

/// The two configs of a run, rendered from the operator's files.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub goproxy_config: String,
    pub nginx_conf: String,
    /// The second instance's config (`goproxy-b`), in a multi-instance run.
    pub goproxy_b_config: Option<String>,
}

/// Renders the operator's goproxy JSON for the test stack: the given port
/// (as a JSON literal, so invalid ports can be reproduced), endpoints
/// pointed at the mocks (paths kept), plus the wiremock probe model.
pub fn render_goproxy_config(
    operator_json: &str,
    port_literal: &str,
    mocks: &MockEndpoints,
    host: Option<&str>,
) -> Result<String, String> {
    let mut root: Value = serde_json::from_str(operator_json)
        .map_err(|e| format!("operator goproxy config is not JSON: {e}"))?;
    let obj = root
        .as_object_mut()
        .ok_or("operator goproxy config is not a JSON object")?;
    let port: Value = serde_json::from_str(port_literal)
        .map_err(|e| format!("port literal `{port_literal}` is not JSON: {e}"))?;
    obj.insert("port".into(), port);
    if let Some(host) = host {
        obj.insert("host".into(), Value::String(host.to_string()));
    }
    if let Some(Value::Array(endpoints)) = obj.get_mut("endpoints") {
        for ep in endpoints.iter_mut() {
            if let Some(Value::String(url)) = ep.get_mut("base_url") {
                *url = rebase(url, &mocks.stream_mock);
            }
        }
        if let Some(wm) = &mocks.wiremock {
            endpoints.push(serde_json::json!({
                "name": PROBE_ENDPOINT,
                "base_url": format!("{wm}/v1/chat/completions"),
            }));
        }
    }
    if mocks.wiremock.is_some() {
        if let Some(Value::Array(models)) = obj.get_mut("models") {
            models.push(serde_json::json!({
                "id": PROBE_MODEL,
                "name": "harness probe (wiremock)",
                "type": "openai",
                "upstream": "probe",
                "upstream_model_id": PROBE_UPSTREAM_MODEL,
                "input_price_per_mtok": 1.0,
                "output_price_per_mtok": 2.0,
            }));
        }
    }
    Ok(serde_json::to_string_pretty(&root).expect("a JSON value serializes") + "\n")
}

/// `https://api.example.com/v1/messages` -> `<base>/v1/messages`.
fn rebase(url: &str, base: &str) -> String {
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = after_scheme
        .find('/')
        .map(|i| &after_scheme[i..])
        .unwrap_or("/");
    format!("{}{}", base.trim_end_matches('/'), path)
}

/// Sets the port of every `server <host>:<port>` in `upstream goproxy`;
/// with `second`, adds `server goproxy-b:<second>;` after them.
pub fn render_nginx_conf(
    conf: &str,
    port: u16,
    append: Option<&str>,
    second: Option<u16>,
) -> String {
    let mut out = String::with_capacity(conf.len() + 64);
    let mut inside = false;
    for line in conf.split_inclusive('\n') {
        let code = line.split('#').next().unwrap_or("");
        let trimmed = code.trim_start();
        if trimmed.starts_with("upstream goproxy") {
            inside = true;
        }
        if inside && trimmed.starts_with("server ") {
            if let Some(colon) = code.rfind(':') {
                let digits_end = code[colon + 1..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map(|i| colon + 1 + i)
                    .unwrap_or(code.len());
                out.push_str(&line[..=colon]);
                out.push_str(&port.to_string());
                out.push_str(&line[digits_end..]);
                continue;
            }
        }
        if inside && code.contains('}') {
            inside = false;
            if let Some(p) = second {
                out.push_str(&format!("        server goproxy-b:{p};\n"));
            }
        }
        out.push_str(line);
        if let Some(extra) = append {
            if trimmed.starts_with("http {") || trimmed.trim_end() == "http {" {
                out.push_str("    ");
                out.push_str(extra);
                out.push('\n');
            }
        }
    }
    out
}

/// Marks `server <host>:<port>` in `upstream goproxy` as `down`, so nginx
/// sends it nothing (to take one instance out of rotation before a restart).
pub fn mark_down(conf: &str, host: &str) -> String {
    let mut out = String::with_capacity(conf.len() + 8);
    let mut inside = false;
    let prefix = format!("server {host}:");
    for line in conf.split_inclusive('\n') {
        let code = line.split('#').next().unwrap_or("");
        let trimmed = code.trim_start();
        if trimmed.starts_with("upstream goproxy") {
            inside = true;
        }
        if inside && trimmed.starts_with(&prefix) {
            if let Some(semi) = code.find(';') {
                out.push_str(&line[..semi]);
                out.push_str(" down");
                out.push_str(&line[semi..]);
                continue;
            }
        }
        if inside && code.contains('}') {
            inside = false;
        }
        out.push_str(line);
    }
    out
}

/// Renders the deployment before the change and the candidate after it.
pub fn render(
    scenario: &Scenario,
    sources: &Sources,
    mocks: &MockEndpoints,
) -> Result<(Rendered, Rendered), String> {
    let operator_json = read(&sources.goproxy_config)?;
    let nginx = read(&sources.nginx_conf)?;
    let second = scenario.second_port;
    let goproxy_b_config = second
        .map(|p| {
            render_goproxy_config(
                &operator_json,
                &p.to_string(),
                mocks,
                mocks.goproxy_host.as_deref(),
            )
        })
        .transpose()?;
    let start = Rendered {
        goproxy_config: render_goproxy_config(
            &operator_json,
            &scenario.start_port.to_string(),
            mocks,
            mocks.goproxy_host.as_deref(),
        )?,
        nginx_conf: render_nginx_conf(&nginx, scenario.start_port, None, second),
        goproxy_b_config: goproxy_b_config.clone(),
    };
    let change = &scenario.change;
    let host = if scenario.fault == Fault::GoproxyFailsToStart {
        Some(UNBINDABLE_HOST)
    } else {
        mocks.goproxy_host.as_deref()
    };
    let goproxy_config = match &change.goproxy_config_text {
        Some(text) => text.clone(),
        None => render_goproxy_config(
            &operator_json,
            change
                .port_literal
                .as_deref()
                .unwrap_or(&change.port.to_string()),
            mocks,
            host,
        )?,
    };
    let candidate = Rendered {
        goproxy_config,
        nginx_conf: render_nginx_conf(
            &nginx,
            change.nginx_port,
            change.nginx_append.as_deref(),
            second,
        ),
        goproxy_b_config,
    };
    Ok((start, candidate))
}

/// The files the stack mounts, and where candidates and backups go.
#[derive(Debug, Clone)]
pub struct LiveFiles {
    pub dir: PathBuf,
    pub goproxy_config: PathBuf,
    /// The second instance's config; written only in a multi-instance run.
    pub goproxy_b_config: PathBuf,
    pub nginx_conf: PathBuf,
    pub tls_dir: PathBuf,
}

impl LiveFiles {
    /// Lays out a run directory and writes the starting deployment.
    pub fn create(dir: &Path, start: &Rendered) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("goproxy"))?;
        std::fs::create_dir_all(dir.join("nginx"))?;
        std::fs::create_dir_all(dir.join("tls"))?;
        std::fs::create_dir_all(dir.join("goproxy-b"))?;
        let live = Self::open(dir);
        live.write(start)?;
        Ok(live)
    }

    /// The layout of an existing run directory.
    pub fn open(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            goproxy_config: dir.join("goproxy/config.json"),
            goproxy_b_config: dir.join("goproxy-b/config.json"),
            nginx_conf: dir.join("nginx/nginx.conf"),
            tls_dir: dir.join("tls"),
        }
    }

    /// Writes both files in place (see the module docs for why in place).
    pub fn write(&self, r: &Rendered) -> std::io::Result<()> {
        write_in_place(&self.goproxy_config, r.goproxy_config.as_bytes())?;
        if let Some(b) = &r.goproxy_b_config {
            write_in_place(&self.goproxy_b_config, b.as_bytes())?;
        }
        write_in_place(&self.nginx_conf, r.nginx_conf.as_bytes())
    }

    /// Writes the candidate beside the live files (for `nginx -t` and
    /// `goproxy --check-config` before anything live changes).
    pub fn write_candidate(&self, r: &Rendered) -> std::io::Result<(PathBuf, PathBuf)> {
        let g = self.dir.join("goproxy/config.candidate.json");
        let n = self.dir.join("nginx/nginx.candidate.conf");
        std::fs::write(&g, &r.goproxy_config)?;
        std::fs::write(&n, &r.nginx_conf)?;
        Ok((g, n))
    }
}

/// One verified backup: the original and its timestamped copy.
#[derive(Debug, Clone)]
pub struct Backup {
    pub original: PathBuf,
    pub copy: PathBuf,
    pub bytes: usize,
}

/// Copies `path` to `path.bak-<UTC timestamp>` and verifies the copy byte
/// for byte, as the design's runbook asks ("backup with a date suffix").
pub fn backup(path: &Path) -> Result<Backup, String> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let mut copy = path.as_os_str().to_owned();
    copy.push(format!(".bak-{stamp}"));
    let copy = PathBuf::from(copy);
    let original =
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    std::fs::write(&copy, &original)
        .map_err(|e| format!("cannot write backup {}: {e}", copy.display()))?;
    verify_same(path, &copy)?;
    Ok(Backup {
        original: path.to_path_buf(),
        copy,
        bytes: original.len(),
    })
}

/// Restores a backup over the original (in place) and verifies it.
pub fn restore(b: &Backup) -> Result<(), String> {
    let data =
        std::fs::read(&b.copy).map_err(|e| format!("cannot read {}: {e}", b.copy.display()))?;
    write_in_place(&b.original, &data)
        .map_err(|e| format!("cannot restore {}: {e}", b.original.display()))?;
    verify_same(&b.original, &b.copy)
}

/// Byte-for-byte comparison, with the first differing offset on mismatch.
pub fn verify_same(a: &Path, b: &Path) -> Result<(), String> {
    let x = std::fs::read(a).map_err(|e| format!("cannot read {}: {e}", a.display()))?;
    let y = std::fs::read(b).map_err(|e| format!("cannot read {}: {e}", b.display()))?;
    if x == y {
        return Ok(());
    }
    let at = x
        .iter()
        .zip(&y)
        .position(|(p, q)| p != q)
        .unwrap_or(x.len().min(y.len()));
    Err(format!(
        "{} ({} bytes) and {} ({} bytes) differ at byte {at}",
        a.display(),
        x.len(),
        b.display(),
        y.len()
    ))
}

fn write_in_place(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NGINX: &str = "http {\n    upstream goproxy {\n        server goproxy:8004; # new\n        keepalive 32;\n    }\n}\n";

    /// Only the goproxy upstream's port changes; the rest is byte-identical.
    #[test]
    fn nginx_render_changes_only_the_upstream_port() {
        let out = render_nginx_conf(NGINX, 8005, None, None);
        assert_eq!(out, NGINX.replace("goproxy:8004", "goproxy:8005"));
        let out = render_nginx_conf(NGINX, 8004, None, Some(8005));
        assert!(
            out.contains("keepalive 32;\n        server goproxy-b:8005;\n    }"),
            "{out}"
        );
        let out = render_nginx_conf(NGINX, 8004, Some("bogus directive here;"), None);
        assert!(out.contains("http {\n    bogus directive here;\n"), "{out}");
    }

    /// Only the named instance is taken out of rotation.
    #[test]
    fn mark_down_takes_one_server_out() {
        let two = render_nginx_conf(NGINX, 8004, None, Some(8005));
        let out = mark_down(&two, "goproxy");
        assert!(out.contains("server goproxy:8004 down; # new"), "{out}");
        assert!(out.contains("server goproxy-b:8005;"), "{out}");
        let out = mark_down(&two, "goproxy-b");
        assert!(out.contains("server goproxy-b:8005 down;"), "{out}");
        assert!(out.contains("server goproxy:8004; # new"), "{out}");
    }

    /// Endpoints keep their paths but point at the mocks; the port literal
    /// is written as given, even when it is not a valid port.
    #[test]
    fn goproxy_render_points_endpoints_at_mocks() {
        let op = r#"{"port": 8004, "endpoints": [{"name": "ohmygpt-openai",
            "base_url": "https://api.example.com/v1/chat/completions"}], "models": []}"#;
        let mocks = MockEndpoints {
            stream_mock: "http://upstream:9000".into(),
            wiremock: Some("http://host.docker.internal:4000".into()),
            goproxy_host: None,
        };
        let out = render_goproxy_config(op, "\"8004\"", &mocks, None).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["port"], "8004");
        assert_eq!(
            v["endpoints"][0]["base_url"],
            "http://upstream:9000/v1/chat/completions"
        );
        assert_eq!(v["endpoints"][1]["name"], "probe-openai");
        assert_eq!(v["models"][0]["id"], PROBE_MODEL);
    }

    /// A backup is byte-identical, and a restore brings the original back.
    #[test]
    fn backup_and_restore_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("nginx.conf");
        std::fs::write(&f, "old\n").unwrap();
        let b = backup(&f).unwrap();
        assert!(b.copy.to_string_lossy().contains(".bak-"));
        std::fs::write(&f, "new and longer\n").unwrap();
        assert!(verify_same(&f, &b.copy)
            .unwrap_err()
            .contains("differ at byte 0"));
        restore(&b).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "old\n");
    }
}
