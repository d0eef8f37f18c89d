//! Where nginx sends traffic to goproxy: `server` lines of an `upstream`
//! whose host is the goproxy service (or one of its aliases), and
//! `proxy_pass http://<service>:<port>` without an upstream. Found through
//! the service name, never through an upstream's name: other upstreams are
//! neither read as goproxy's nor edited.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::PathBuf;

use super::lexer::Token;
use super::NginxConfig;

/// How a site reaches goproxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// `server host:port params;` in `upstream <name>`.
    Upstream { name: String, params: Vec<String> },
    /// `proxy_pass http://host:port...;`
    ProxyPass,
    /// `set $variable host:port;` where `proxy_pass` uses `$variable`.
    Set { variable: String },
}

/// One place nginx names goproxy's address.
#[derive(Debug, Clone)]
pub struct Site {
    pub file: usize,
    pub path: PathBuf,
    pub line: usize,
    pub host: String,
    /// The port as written; `None` when none is written (nginx uses 80).
    pub port: Option<String>,
    /// Byte span of the port digits, or of the host when no port is written
    /// (a rewrite then appends `:port`).
    pub port_span: Range<usize>,
    pub host_span: Range<usize>,
    /// Byte offset just after the directive's `;`.
    pub stmt_end: usize,
    pub via: Via,
    /// The line as written, for evidence.
    pub text: String,
}

impl Site {
    /// The effective port (nginx's default 80 when none is written).
    pub fn port_value(&self) -> String {
        self.port.clone().unwrap_or_else(|| "80".into())
    }
}

/// Every site that reaches one of `hosts`, in reading order.
pub fn sites(cfg: &NginxConfig, hosts: &[String]) -> Vec<Site> {
    let upstreams = upstream_names(cfg);
    let proxied = proxy_pass_variables(cfg);
    let mut out = Vec::new();
    cfg.walk(&mut |d, ctx| {
        let Some(arg) = d.args.first() else { return };
        let (via, arg) = if d.name == "server" && ctx.last() == Some(&"upstream") {
            let name = enclosing_upstream(cfg, d.file, d.span.start).unwrap_or_default();
            let params = d.args[1..].iter().map(|a| a.value.clone()).collect();
            (Via::Upstream { name, params }, arg)
        } else if d.name == "proxy_pass" {
            (Via::ProxyPass, arg)
        } else if d.name == "set" && d.args.len() == 2 && proxied.contains(&arg.value) {
            // `set $up goproxy:8004; proxy_pass http://$up;` (how nginx is
            // made to re-resolve a name): the `set` value is the address.
            let variable = arg.value.clone();
            (Via::Set { variable }, &d.args[1])
        } else {
            return;
        };
        let url = via == Via::ProxyPass || arg.value.contains("://");
        let Some((host, host_span, port, port_span)) = address(arg, url) else {
            return;
        };
        // Host names are case-insensitive, in DNS and in nginx's upstream names.
        if !hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
            return;
        }
        // `proxy_pass http://goproxy` names the upstream when one exists.
        let is_upstream = upstreams.iter().any(|u| u.eq_ignore_ascii_case(&host));
        if !matches!(via, Via::Upstream { .. }) && port.is_none() && is_upstream {
            return;
        }
        out.push(Site {
            file: d.file,
            path: cfg.files[d.file].path.clone(),
            line: arg.line,
            host,
            port,
            port_span,
            host_span,
            stmt_end: d.span.end,
            via,
            text: cfg.line_text(d.file, arg.line),
        });
    });
    out
}

/// The variables `proxy_pass` takes its target from (`$up` in
/// `proxy_pass http://$up;` or `http://${up}/v1`).
fn proxy_pass_variables(cfg: &NginxConfig) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    cfg.walk(&mut |d, _| {
        if d.name != "proxy_pass" {
            return;
        }
        let Some(a) = d.args.first() else { return };
        let mut rest = a.value.as_str();
        while let Some(i) = rest.find('$') {
            rest = &rest[i + 1..];
            let name = rest.strip_prefix('{').unwrap_or(rest);
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(name.len());
            vars.insert(format!("${}", &name[..end]));
        }
    });
    vars
}

/// Names of every `upstream` block.
pub fn upstream_names(cfg: &NginxConfig) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    cfg.walk(&mut |d, _| {
        if d.name == "upstream" && d.block.is_some() {
            if let Some(a) = d.args.first() {
                names.insert(a.value.clone());
            }
        }
    });
    names
}

/// Every `proxy_pass` target as written, for a message that says what
/// nginx does proxy to when none of it is goproxy.
pub fn proxy_pass_targets(cfg: &NginxConfig) -> Vec<String> {
    let mut out = Vec::new();
    cfg.walk(&mut |d, _| {
        if d.name == "proxy_pass" {
            if let Some(a) = d.args.first() {
                out.push(format!(
                    "{}:{} {}",
                    cfg.files[d.file].path.display(),
                    d.line,
                    a.value
                ));
            }
        }
    });
    out
}

fn enclosing_upstream(cfg: &NginxConfig, file: usize, at: usize) -> Option<String> {
    let mut found = None;
    cfg.walk(&mut |d, _| {
        if d.file == file && d.name == "upstream" && d.span.contains(&at) {
            found = d.args.first().map(|a| a.value.clone());
        }
    });
    found
}

/// Host, its span, the port as written, its span (or the host's).
type Address = (String, Range<usize>, Option<String>, Range<usize>);

/// Splits `host:port` (after `scheme://` for proxy_pass) into host and
/// port with their byte spans in the file. Variables and unix sockets are
/// not addresses here.
fn address(arg: &Token, url: bool) -> Option<Address> {
    // Spans are only exact when the token is written unquoted and unescaped.
    let quoted = arg.span.len() != arg.value.len();
    let base = arg.span.start + usize::from(quoted);
    let v = arg.value.as_str();
    let mut start = 0;
    if url {
        start = v.find("://")? + 3;
    }
    let rest = &v[start..];
    // A variable after host:port (`goproxy:8004$request_uri`) is the URI.
    let end = rest.find(['/', '?', '$']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains('$') || v.starts_with("unix:") {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let close = v6.find(']')?;
            let port = v6[close + 1..].strip_prefix(':');
            (&authority[..close + 2], port)
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let host_span = base + start..base + start + host.len();
    let port_span = match port {
        Some(p) => base + start + authority.len() - p.len()..base + start + authority.len(),
        None => host_span.clone(),
    };
    Some((
        host.to_string(),
        host_span,
        port.map(str::to_string),
        port_span,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn find(conf: &str) -> Vec<(usize, String, String)> {
        let cfg = NginxConfig::from_text(Path::new("nginx.conf"), conf).unwrap();
        sites(&cfg, &["goproxy".to_string()])
            .into_iter()
            .map(|s| {
                (
                    s.line,
                    s.port_value(),
                    conf[s.port_span.clone()].to_string(),
                )
            })
            .collect()
    }

    /// A commented old line is not a server; parameters do not hide the port.
    #[test]
    fn commented_lines_and_parameters() {
        let conf = "http {\n  upstream goproxy {\n    # server goproxy:8004;\n    server goproxy:8005 max_fails=3 fail_timeout=10s;\n  }\n  server { location / { proxy_pass http://goproxy; } }\n}\n";
        assert_eq!(find(conf), [(4, "8005".into(), "8005".into())]);
    }

    /// A one-line block, an upstream with another name, a direct proxy_pass.
    #[test]
    fn one_line_blocks_other_names_and_direct_proxy_pass() {
        let one = "http { upstream goproxy { server goproxy:8004; keepalive 32; } server { location / { proxy_pass http://goproxy; } } }";
        assert_eq!(find(one), [(1, "8004".into(), "8004".into())]);
        let named = "http { upstream llm_backend {\n server goproxy:8004 weight=2;\n}\n server { location / { proxy_pass http://llm_backend; } } }";
        assert_eq!(find(named), [(2, "8004".into(), "8004".into())]);
        let direct =
            "http {\n server {\n location /v1/ {\n proxy_pass http://goproxy:8004/v1/;\n }\n }\n}";
        assert_eq!(find(direct), [(4, "8004".into(), "8004".into())]);
    }

    /// `set $v goproxy:port` used by `proxy_pass`, a variable after the
    /// port, and a host written in another case are goproxy's sites.
    #[test]
    fn set_variables_trailing_variables_and_case() {
        let set = "http {\n server {\n set $gp goproxy:8005;\n set $other goproxy:9999;\n location / { proxy_pass http://$gp; }\n }\n}";
        assert_eq!(find(set), [(3, "8005".into(), "8005".into())]);
        let uri =
            "http { server { location / {\n proxy_pass http://goproxy:8005$request_uri;\n } } }";
        assert_eq!(find(uri), [(2, "8005".into(), "8005".into())]);
        let case = "http { upstream b {\n server GoProxy:8005;\n } }";
        assert_eq!(find(case), [(2, "8005".into(), "8005".into())]);
    }

    /// Upstreams whose name starts with goproxy but point elsewhere are not goproxy's.
    #[test]
    fn name_prefix_is_not_goproxy() {
        let conf = "http { upstream goproxy_legacy { server upstream:9000; } upstream goproxy { server goproxy:8004; } }";
        assert_eq!(find(conf), [(1, "8004".into(), "8004".into())]);
    }
}

#[cfg(test)]
mod repo_tests {
    use super::*;
    use std::path::Path;

    /// The repository's own nginx.conf reads, and its goproxy server is found.
    #[test]
    fn reads_the_repository_nginx_conf() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nginx/nginx.conf");
        let cfg = NginxConfig::load(&path).unwrap();
        let s = sites(&cfg, &["goproxy".to_string()]);
        assert_eq!(s.len(), 1, "{s:?}");
        assert!(matches!(&s[0].via, Via::Upstream { name, .. } if name == "goproxy"));
        assert_eq!(cfg.external_includes, ["/etc/nginx/mime.types"]);
    }
}
