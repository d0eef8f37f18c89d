//! lint on real-world shapes of the deployment files: each is a copy of this
//! repository's files with one edit, judged by `lint::ports_agree` (no
//! containers, no network, so no lock).

use std::path::{Path, PathBuf};

use harness::lint::{self, LintTargets};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A tree with the repository's prod JSON (port 8004) and the given nginx
/// and extra files.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new(nginx: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proxy")).unwrap();
        std::fs::create_dir_all(dir.path().join("nginx")).unwrap();
        std::fs::copy(
            repo().join("proxy/config-ohmygpt-prod.json"),
            dir.path().join("proxy/config-ohmygpt-prod.json"),
        )
        .unwrap();
        std::fs::write(dir.path().join("nginx/nginx.conf"), nginx).unwrap();
        Self { dir }
    }

    fn file(self, rel: &str, text: &str) -> Self {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    fn json(self, edit: impl Fn(&str) -> String) -> Self {
        let p = self.dir.path().join("proxy/config-ohmygpt-prod.json");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, edit(&text)).unwrap();
        self
    }

    /// The lint's evidence, or its error's message (what the report shows).
    fn lint(&self) -> Result<String, String> {
        lint::ports_agree(&LintTargets::from_root(self.dir.path())).map_err(|e| e.to_string())
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }
}

fn wrap(upstream_and_servers: &str) -> String {
    format!("user www-data;\nevents {{}}\nhttp {{\n{upstream_and_servers}\n}}\n")
}

/// nginx with an upstream on 8004, the prod JSON's port.
fn nginx_8004() -> String {
    wrap(&format!(
        "    upstream goproxy {{ server goproxy:8004; }}\n{PASS}"
    ))
}

const PASS: &str = "    server { listen 443 ssl; location / { proxy_pass http://goproxy; } }";

fn assert_names(err: &str, want: &[&str]) {
    for w in want {
        assert!(err.contains(w), "expected {w:?} in: {err}");
    }
}

/// Half-done change: nginx still 8005 while the JSON says 8004, also with a
/// commented new line above it and with server parameters.
#[test]
fn half_done_change_is_no_go_naming_both_files_and_lines() {
    for server in [
        "server goproxy:8005;",
        "# server goproxy:8004;\n        server goproxy:8005;",
        "server goproxy:8005 max_fails=3 fail_timeout=5s;",
    ] {
        let t = Tree::new(&wrap(&format!(
            "    upstream goproxy {{\n        {server}\n    }}\n{PASS}"
        )));
        let err = t.lint().unwrap_err();
        let line = if server.starts_with('#') { 6 } else { 5 };
        assert_names(
            &err,
            &[
                &format!("{}:4 says 8004", t.path("proxy/config-ohmygpt-prod.json")),
                &format!("{}:{line} says 8005", t.path("nginx/nginx.conf")),
            ],
        );
    }
}

/// A port written as a string, or no port at all, is refused.
#[test]
fn string_port_and_missing_port_are_no_go() {
    let nginx = nginx_8004();
    let t = Tree::new(&nginx).json(|j| j.replace("\"port\": 8004", "\"port\": \"8004\""));
    assert_names(&t.lint().unwrap_err(), &["not a TCP port"]);
    let t = Tree::new(&nginx).json(|j| j.replace("\"port\": 8004,", ""));
    assert_names(&t.lint().unwrap_err(), &["no top-level \"port\""]);
}

/// Ordinary nginx shapes that reach goproxy on 8004 are GO.
#[test]
fn ordinary_nginx_shapes_are_go() {
    let shapes = [
        format!("    upstream goproxy {{ server goproxy:8004; keepalive 32; }}\n{PASS}"),
        "    server { location / { proxy_pass http://goproxy:8004; } }".to_string(),
        "    upstream llm { server goproxy:8004; }\n    server { location / { proxy_pass http://llm; } }".to_string(),
        format!("    upstream goproxy_legacy {{ server upstream:9000; }}\n    upstream goproxy {{ server goproxy:8004; }}\n{PASS}"),
    ];
    for s in shapes {
        let t = Tree::new(&wrap(&s));
        assert!(t.lint().is_ok(), "{s}: {:?}", t.lint());
    }
}

/// The upstream in an included file (absolute container path, glob) is read,
/// and a mismatch there names the included file and its line.
#[test]
fn upstream_in_an_included_file() {
    let nginx = wrap(&format!(
        "    include /etc/nginx/mime.types;\n    include /etc/nginx/conf.d/*.conf;\n{PASS}"
    ));
    let t = Tree::new(&nginx).file(
        "nginx/conf.d/goproxy.conf",
        "upstream goproxy {\n    server goproxy:8004;\n}\n",
    );
    assert!(t.lint().is_ok(), "{:?}", t.lint());
    let t = Tree::new(&nginx).file(
        "nginx/conf.d/goproxy.conf",
        "upstream goproxy {\n    server goproxy:8005;\n}\n",
    );
    assert_names(
        &t.lint().unwrap_err(),
        &[&format!(
            "{}:2 says 8005",
            t.path("nginx/conf.d/goproxy.conf")
        )],
    );
}

/// No route to goproxy at all: the error names the file and what nginx proxies to.
#[test]
fn no_route_to_goproxy_names_what_nginx_proxies_to() {
    let t = Tree::new(&wrap(
        "    server { location / { proxy_pass http://backend:9000; } }",
    ));
    assert_names(
        &t.lint().unwrap_err(),
        &["nginx/nginx.conf", "nginx.conf:4 http://backend:9000"],
    );
}

/// Compose: flow-style expose and ports, a healthcheck URL, docker-compose.yml
/// is read, and an image tag is not a port.
#[test]
fn compose_shapes() {
    let nginx = nginx_8004();
    let ok = "services:\n  goproxy:\n    image: registry.example/goproxy:1.4.2\n    expose: [\"8004\"]\n";
    let t = Tree::new(&nginx).file("docker-compose.yml", ok);
    assert!(t.lint().is_ok(), "{:?}", t.lint());
    for (bad, line) in [
        ("services:\n  goproxy:\n    image: goproxy:1\n    expose: [\"8005\"]\n", 4),
        ("services:\n  goproxy:\n    image: goproxy:1\n    ports: [\"127.0.0.1:8005:8005\"]\n", 4),
        ("services:\n  goproxy:\n    image: goproxy:1\n    healthcheck:\n      test: [\"CMD\", \"curl\", \"-f\", \"http://localhost:8005/health\"]\n", 5),
    ] {
        let t = Tree::new(&nginx).file("docker-compose.yml", bad);
        assert_names(&t.lint().unwrap_err(), &[&format!("{}:{line} says 8005", t.path("docker-compose.yml"))]);
    }
}

/// A JSON config that starts with a byte-order mark is named as such.
#[test]
fn bom_is_named() {
    let nginx = nginx_8004();
    let t = Tree::new(&nginx).json(|j| format!("\u{feff}{j}"));
    let out = lint::validate_goproxy_config(Path::new(&t.path("proxy/config-ohmygpt-prod.json")));
    assert_names(&out.unwrap_err().to_string(), &["byte-order mark"]);
}

/// Includes mounted by compose from elsewhere in the tree
/// (`./conf.d:/etc/nginx/conf.d`) are read where compose mounts them from.
#[test]
fn include_mounted_by_compose() {
    let nginx = wrap(&format!("    include /etc/nginx/conf.d/*.conf;\n{PASS}"));
    let compose = "services:\n  goproxy:\n    image: goproxy:1\n  nginx:\n    image: nginx:1\n    volumes:\n      - ./nginx/nginx.conf:/etc/nginx/nginx.conf:ro\n      - ./conf.d:/etc/nginx/conf.d:ro\n";
    let t = Tree::new(&nginx).file("docker-compose.yml", compose).file(
        "conf.d/goproxy.conf",
        "upstream goproxy {\n    server goproxy:8005;\n}\n",
    );
    assert_names(
        &t.lint().unwrap_err(),
        &[&format!("{}:2 says 8005", t.path("conf.d/goproxy.conf"))],
    );
}

/// The grace check's result for a tree: its status and evidence, as the
/// report shows them.
fn grace_of(t: &Tree) -> (harness::check::Status, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut checks = harness::check::Checks::new(true);
    rt.block_on(lint::run(
        &LintTargets::from_root(t.dir.path()),
        &mut checks,
    ));
    let r = checks
        .results()
        .iter()
        .find(|r| r.name == "lint.drain-fits-grace")
        .expect("the grace check is recorded")
        .clone();
    (r.status, r.evidence)
}

/// goproxy's drain must end before docker's SIGKILL: a `stop_grace_period`
/// at or under the drain (330 s in the prod JSON, + 2 s to flush) is
/// no-go at its file and line, however it is written; an override that
/// does not set it keeps the base file's; one that sets less is named.
#[test]
fn a_grace_period_shorter_than_the_drain_is_no_go() {
    use harness::check::Status;
    let nginx = nginx_8004();
    let base = |grace: &str| {
        format!("services:\n  goproxy:\n    image: goproxy:1\n    stop_grace_period: {grace}\n  nginx:\n    image: nginx:1\n    stop_grace_period: 5s\n")
    };
    for ok in ["360s", "6m", "5m33s", "\"1h\"", "+6m", "!override 6m"] {
        let t = Tree::new(&nginx).file("docker-compose.yml", &base(ok));
        assert_eq!(grace_of(&t).0, Status::Pass, "{ok}: {:?}", grace_of(&t));
    }
    for (bad, says) in [
        (
            "30s",
            "stop_grace_period 30s (docker waits 30 s) is not longer than goproxy's shutdown",
        ),
        ("332s", "(docker waits 332 s) is not longer"),
        // Docker is handed whole seconds.
        ("332.9s", "(docker waits 332 s)"),
        ("5m", "(docker waits 300 s)"),
        ("330", "not a duration compose reads"),
        ("6 minutes", "not a duration compose reads"),
        ("\" 6m\"", "stop_grace_period \" 6m\" is not a duration"),
        (
            "!reset null",
            "stop_grace_period !reset (docker waits 10 s)",
        ),
    ] {
        let t = Tree::new(&nginx).file("docker-compose.yml", &base(bad));
        let (status, evidence) = grace_of(&t);
        assert_eq!(status, Status::Fail, "{bad}: {evidence}");
        assert_names(
            &evidence,
            &[
                &format!("{}:4", t.path("docker-compose.yml")),
                says,
                "330 s drain_timeout_secs",
                "at least 333s",
            ],
        );
    }
    let t = Tree::new(&nginx)
        .file("docker-compose.yml", &base("360s"))
        .file(
            "docker-compose.override.yml",
            "services:\n  goproxy:\n    environment:\n      RUST_LOG: debug\n",
        );
    assert_eq!(grace_of(&t).0, Status::Pass, "{:?}", grace_of(&t));
    let t = Tree::new(&nginx)
        .file("docker-compose.yml", &base("360s"))
        .file(
            "docker-compose.override.yml",
            "services:\n  goproxy:\n    stop_grace_period: 10s\n",
        );
    let (status, evidence) = grace_of(&t);
    assert_eq!(status, Status::Fail, "{evidence}");
    assert_names(
        &evidence,
        &[&format!("{}:3", t.path("docker-compose.override.yml"))],
    );
    assert!(!evidence.contains("docker-compose.yml:4"), "{evidence}");
}

/// With no `stop_grace_period` anywhere, compose's 10 s default applies:
/// said (not judged) when the drain is longer, passed when it fits; a
/// service no file defines (not even one included) is said to be so.
#[test]
fn an_unset_grace_period_is_said_not_judged() {
    use harness::check::Status;
    let nginx = nginx_8004();
    let compose = "services:\n  goproxy:\n    image: goproxy:1\n";
    let t = Tree::new(&nginx).file("docker-compose.yml", compose);
    let (status, evidence) = grace_of(&t);
    assert_eq!(status, Status::Skip, "{evidence}");
    assert_names(
        &evidence,
        &[
            "compose's default",
            "10 s",
            "at least 333s",
            "under `goproxy:`",
        ],
    );
    let t = Tree::new(&nginx)
        .file("docker-compose.yml", compose)
        .json(|j| j.replace("\"drain_timeout_secs\": 330", "\"drain_timeout_secs\": 5"));
    assert_eq!(grace_of(&t).0, Status::Pass, "{:?}", grace_of(&t));
    // Defined only in a file another includes: the default is said, as
    // for any service defined without a period.
    let t = Tree::new(&nginx)
        .file("docker-compose.yml", "include: [goproxy.yml]\n")
        .file("goproxy.yml", compose);
    let (status, evidence) = grace_of(&t);
    assert_eq!(status, Status::Skip, "{evidence}");
    assert_names(&evidence, &["compose's default", "at least 333s"]);
    // Defined nowhere: said so.
    let t = Tree::new(&nginx).file("docker-compose.yml", "services:\n  nginx:\n    image: n\n");
    let (status, evidence) = grace_of(&t);
    assert_eq!(status, Status::Skip, "{evidence}");
    assert_names(&evidence, &["no compose file defines service goproxy"]);
}

/// Where compose takes the value from, the check does too, and names the
/// line that writes it: the service's own key (not a `goproxy:` under
/// another service's `depends_on`, nor the words in a label or command),
/// an anchor merged two deep, a service it `extends` (in the same file or
/// another), a file it `include`s.
#[test]
fn the_grace_period_is_found_where_compose_finds_it() {
    use harness::check::Status;
    // What the case is, its files (name, text), and the site to be named.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        (
            "own key after another service's depends_on",
            &[("docker-compose.yml", "services:\n  nginx:\n    depends_on:\n      goproxy:\n        condition: service_healthy\n    labels: {stop_grace_period: 6m}\n    stop_grace_period: 6m\n  goproxy:\n    image: x\n    command: |\n      stop_grace_period: 6m\n    stop_grace_period: 30s\n")],
            "docker-compose.yml:12",
        ),
        (
            "merge keys two deep",
            &[("docker-compose.yml", "x-a: &a\n  stop_grace_period: 30s\nx-b: &b\n  <<: *a\n  restart: always\nservices:\n  goproxy:\n    <<: *b\n    image: x\n")],
            "docker-compose.yml:2",
        ),
        (
            "extends in the same file",
            &[("docker-compose.yml", "services:\n  base:\n    image: x\n    stop_grace_period: 30s\n  goproxy:\n    extends: base\n")],
            "docker-compose.yml:4",
        ),
        (
            "extends from another file",
            &[
                ("docker-compose.yml", "services:\n  goproxy:\n    extends:\n      file: common.yml\n      service: base\n"),
                ("common.yml", "services:\n  base:\n    image: x\n    stop_grace_period: 30s\n"),
            ],
            "common.yml:4",
        ),
        (
            "include",
            &[
                ("docker-compose.yml", "include:\n  - goproxy.yml\nservices:\n  nginx:\n    image: n\n"),
                ("goproxy.yml", "services:\n  goproxy:\n    image: x\n    stop_grace_period: 30s\n"),
            ],
            "goproxy.yml:4",
        ),
    ];
    for (what, files, site) in cases {
        let mut t = Tree::new(&nginx_8004());
        for (name, text) in files {
            t = t.file(name, text);
        }
        let (status, evidence) = grace_of(&t);
        assert_eq!(status, Status::Fail, "{what}: {evidence}");
        assert_names(
            &evidence,
            &[&format!("{}: stop_grace_period 30s", t.path(site))],
        );
    }
}
