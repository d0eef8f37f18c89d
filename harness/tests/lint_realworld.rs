//! Acceptance: `harness lint` on real-world operator trees
//! (`tests/fixtures/realworld/<case>/`), each a goproxy JSON, an nginx
//! config (with the includes it names) and compose files, written the many
//! ways operators write them. Each test states what an operator expects:
//! the verdict, the exit code and what the message must name (the
//! operator's file and line, the value). No containers, so no lock.

mod realworld_common;

use realworld_common::{lint, lint_with, run};

// ---------------------------------------------------------------- nginx

/// Comments holding braces and semicolons, quoted strings holding `#`,
/// `;` and `{`, a commented-out old upstream: the live line is the one
/// found, and the trees agree.
#[test]
fn nginx_comments_and_quotes_with_braces() {
    lint("n01_comments_quotes_braces")
        .go()
        .has("nginx/nginx.conf:10");
}

/// `include /etc/nginx/conf.d/*.conf` (an absolute container path and a
/// glob), the upstream named `llm_backend` in one included file with
/// `max_fails`/`fail_timeout`/`weight`, still on 8005: no-go naming the
/// included file's line and both values.
#[test]
fn nginx_confd_glob_upstream_with_other_name_half_done() {
    lint("n02_confd_glob_absolute_halfdone")
        .no_go()
        .has("goproxy.json:3 says 8004")
        .has("nginx/conf.d/10-upstreams.conf:3 says 8005");
}

/// Includes nested two deep, relative paths resolved against the conf
/// directory (nginx's prefix), not the including file's directory.
#[test]
fn nginx_nested_includes_relative_to_the_prefix() {
    lint("n03_nested_includes")
        .go()
        .has("nginx/snippets/goproxy-upstream.conf:2");
}

/// The whole config on one line; `proxy_pass` straight to the service,
/// with and without a URI, no upstream block.
#[test]
fn nginx_one_line_direct_proxy_pass_with_uri() {
    lint("n04_one_line_direct_with_uri").go();
}

/// One location still proxies to `goproxy:8005/v1/`.
#[test]
fn nginx_direct_proxy_pass_with_uri_half_done() {
    lint("n05_direct_uri_halfdone")
        .no_go()
        .has("nginx/nginx.conf:7 says 8005");
}

/// The only `proxy_pass` takes a variable that a `map` sets to other hosts:
/// nginx does not reach goproxy, and the message names the variable where
/// it is used rather than failing or guessing.
#[test]
fn nginx_proxy_pass_variable_is_named_not_guessed() {
    lint("n07_proxy_pass_map_variable_only")
        .no_go()
        .has("nginx/nginx.conf:10")
        .has("$backend");
}

/// A `proxy_pass $backend` beside the goproxy upstream is not goproxy's
/// and does not disturb the reading.
#[test]
fn nginx_variable_proxy_pass_beside_the_upstream() {
    lint("n07b_variable_beside_upstream")
        .go()
        .has("nginx/nginx.conf:6");
}

/// `zone`, `weight`, `backup`, `resolve`, a unix socket upstream, an IPv6
/// upstream and a `proxy_pass http://unix:...`: all read, none mistaken.
#[test]
fn nginx_server_parameters_unix_sockets_and_ipv6() {
    lint("n08_upstream_params_unix_ipv6")
        .go()
        .lacks("9901")
        .lacks("goproxy.sock");
}

/// The backup server still names the old port.
#[test]
fn nginx_backup_server_half_done() {
    lint("n09_backup_server_halfdone")
        .no_go()
        .has("nginx/nginx.conf:5 says 8005");
}

/// `goproxy_legacy`, `goproxy-admin` and `goproxy2` are other services:
/// not read as goproxy's, in a go and in a no-go.
#[test]
fn nginx_upstreams_named_like_goproxy_are_not_goproxy() {
    lint("n10_other_upstreams_untouched")
        .go()
        .has("nginx/nginx.conf:9")
        .lacks("9000")
        .lacks("9100")
        .lacks("8006");
    lint("n10b_other_upstreams_halfdone")
        .no_go()
        .has("nginx/nginx.conf:8 says 8005")
        .lacks("9000")
        .lacks("9100");
}

/// `map`, `if` and regex locations with `{n,m}` quantifiers in quotes.
#[test]
fn nginx_map_if_and_regexes_with_braces() {
    lint("n11_map_if_regex_braces")
        .go()
        .has("nginx/nginx.conf:11");
}

/// CRLF line endings, tabs, no newline at the end: lines are counted as
/// the operator's editor counts them and no `\r` sticks to the value.
#[test]
fn nginx_crlf_tabs_and_no_final_newline() {
    lint("n12_crlf_tabs_no_newline_halfdone")
        .no_go()
        .has("nginx/nginx.conf:4 says 8005 (")
        .lacks("8005\r");
    lint("n12b_crlf_tabs_no_newline_ok")
        .go()
        .has("nginx/nginx.conf:4");
}

/// `server goproxy;` means port 80 to nginx.
#[test]
fn nginx_server_without_a_port_is_port_80() {
    lint("n14_server_without_port")
        .no_go()
        .has("nginx/nginx.conf:6 says 80");
}

/// An include of a file that is not there: nginx -t would fail; the
/// message names the including file, its line and the pattern.
#[test]
fn nginx_missing_include_is_named() {
    let said = lint("n16_missing_include");
    assert_ne!(said.code, 0, "{}", said.out);
    said.has("nginx/nginx.conf:4")
        .has("sites-enabled/llm.conf")
        .lacks("panicked");
}

/// A glob include that matches nothing is fine for nginx.
#[test]
fn nginx_glob_include_matching_nothing() {
    lint("n17_empty_glob_include").go();
}

/// Upstream on 8004, but the health location proxies to 8005 directly.
#[test]
fn nginx_two_sites_disagree() {
    lint("n18_two_sites_disagree")
        .no_go()
        .has("nginx/nginx.conf:8 says 8005");
}

// -------------------------------------------------------------- compose

/// `compose.yaml` found under --root, no `version`, `expose: [8004]` as an
/// integer, images from a registry with a port and a tag.
#[test]
fn compose_yaml_name_int_expose_and_registry_port() {
    run("c01_compose_yaml_expose_int", &[])
        .go()
        .has("compose.yaml:5")
        .lacks("5000")
        .lacks("1.4.2 (");
}

/// `expose: ["8005/tcp"]`.
#[test]
fn compose_expose_with_protocol_half_done() {
    lint("c02_expose_tcp_halfdone")
        .no_go()
        .has("docker-compose.yml:4 says 8005");
}

/// `"8004"`, `"127.0.0.1:18004:8004"`, `"[::1]:28004:8004/tcp"`: the
/// container port is 8004 in each.
#[test]
fn compose_short_port_variants() {
    lint("c03_ports_short_variants").go().lacks("18004 (");
}

/// `ports: ["127.0.0.1:8005:8005"]`.
#[test]
fn compose_host_bound_port_half_done() {
    lint("c04_ports_bound_halfdone")
        .no_go()
        .has("docker-compose.yml:4 says 8005");
}

/// Long syntax: `target` is goproxy's port, `published` is the host's.
#[test]
fn compose_long_syntax() {
    lint("c05_long_syntax").go();
    lint("c06_long_syntax_halfdone")
        .no_go()
        .has("docker-compose.yml:5 says 8005");
}

/// A healthcheck `test:` in string form still on 8005.
#[test]
fn compose_healthcheck_string_form_half_done() {
    lint("c08_healthcheck_string_halfdone")
        .no_go()
        .has("docker-compose.yml:5 says 8005");
}

/// `CMD-SHELL` healthcheck with `wget ... || exit 1`.
#[test]
fn compose_healthcheck_cmd_shell() {
    lint("c09_healthcheck_cmd_shell")
        .go()
        .has("docker-compose.yml:5");
}

/// nginx's environment (list form) names `goproxy:8005`; goproxy's own
/// environment is a map and its command a list with no port.
#[test]
fn compose_environment_list_and_map_command_list() {
    lint("c10_environment_list_halfdone")
        .no_go()
        .has("docker-compose.yml:13 says 8005");
}

/// `${GOPROXY_PORT:-8004}` with no variable set: the default is the port.
#[test]
fn compose_interpolation_default() {
    lint("c14_env_interpolation_default")
        .go()
        .has("docker-compose.yml:5");
}

/// A sidecar with `network_mode: host` and `pid: host`.
#[test]
fn compose_network_mode_sidecar() {
    lint("c15_network_mode_sidecar").go();
}

/// The service is `llm-proxy` (`--service llm-proxy`); nginx reaches it
/// by that name on the old port.
#[test]
fn compose_renamed_service_half_done() {
    lint_with("c16_renamed_service_halfdone", &["--service", "llm-proxy"])
        .no_go()
        .has("nginx/nginx.conf:6 says 8005");
}

/// nginx reaches `llm-proxy` by its network alias `goproxy`.
#[test]
fn compose_network_alias_half_done() {
    lint_with("c17_alias_halfdone", &["--service", "llm-proxy"])
        .no_go()
        .has("nginx/nginx.conf:6 says 8005");
}

/// `docker-compose.override.yml` beside `docker-compose.yml` (compose
/// reads both by default) still exposes 8005.
#[test]
fn compose_override_file_half_done() {
    run("c18_override_discovery_halfdone", &[])
        .no_go()
        .has("docker-compose.override.yml:5 says 8005");
}

/// Unparsable YAML: named with file and line, not a panic.
#[test]
fn compose_bad_yaml_names_file_and_line() {
    let said = lint("c20_compose_bad_yaml");
    assert_ne!(said.code, 0, "{}", said.out);
    said.has("docker-compose.yml:5").lacks("panicked");
}

/// Publishing goproxy's 8004 on other host ports is not a disagreement.
#[test]
fn compose_published_port_differs_from_container_port() {
    lint("c21_published_differs").go().lacks("9005 (");
}

/// `version: "3.8"` and an `x-` extension that mentions the old port in
/// prose: not a service, not a port site.
#[test]
fn compose_extension_fields_are_not_services() {
    lint("c22_extension_field_mentions_port").go();
}

// ----------------------------------------------------------------- JSON

/// `"port": "8004"` (goproxy refuses strings), missing, 0, 70000: no-go
/// naming the JSON file (and line where there is one) and the value.
#[test]
fn json_port_string_missing_zero_too_big() {
    lint("j01_port_string")
        .no_go()
        .has("goproxy.json")
        .has("\"8004\"");
    lint("j02_port_missing")
        .no_go()
        .has("goproxy.json")
        .has("port");
    lint("j03_port_zero").no_go().has("goproxy.json:3 says 0");
    lint("j04_port_70000")
        .no_go()
        .has("goproxy.json:3 says 70000");
}

/// `_comment` keys that mention another port are prose.
#[test]
fn json_comment_keys_are_ignored() {
    lint("j06_comment_keys").go().has("goproxy.json:4");
}

/// A trailing comma: invalid JSON named with line and column.
#[test]
fn json_trailing_comma_names_line_and_column() {
    lint("j07_trailing_comma").no_go().has("goproxy.json:13:3");
}

/// `proxy_pass "http://goproxy:8005";` written in quotes.
#[test]
fn nginx_quoted_proxy_pass_half_done() {
    lint("n19_quoted_proxy_pass_halfdone")
        .no_go()
        .has("nginx/nginx.conf:6 says 8005");
}

/// `sites-available/` holds an old copy on 8005 that nginx never reads
/// (only `sites-enabled/*.conf` is included): it must not be read either.
#[test]
fn nginx_files_not_included_are_not_read() {
    lint("n21_sites_available_not_included")
        .go()
        .has("nginx/sites-enabled/llm.conf:1")
        .lacks("sites-available");
}

/// An `include` inside `upstream goproxy { }` (a generated server list),
/// one line of which is still on 8005.
#[test]
fn nginx_include_inside_an_upstream_half_done() {
    lint("n22_include_inside_upstream_halfdone")
        .no_go()
        .has("nginx/upstreams/goproxy-servers.conf:3 says 8005");
}

/// The whole compose file in flow style on one line.
#[test]
fn compose_flow_mapping_on_one_line_half_done() {
    lint("c24_flow_mapping_service")
        .no_go()
        .has("docker-compose.yml:1 says 8005");
}

/// A healthcheck that calls goproxy by its service name on the old port.
#[test]
fn compose_healthcheck_by_service_name_half_done() {
    lint("c26_healthcheck_service_name_halfdone")
        .no_go()
        .has("docker-compose.yml:5 says 8005");
}

/// `// comments` in the JSON: goproxy refuses them; named with line:col.
#[test]
fn json_line_comments_name_line_and_column() {
    lint("j08_line_comments").no_go().has("goproxy.json:3:3");
}

/// nginx reaches goproxy by its `container_name`, on the old port.
#[test]
fn compose_container_name_is_a_name_of_goproxy() {
    lint("c28_container_name_hostname_halfdone")
        .no_go()
        .has("nginx/nginx.conf:6 says 8005");
}

/// No spaces around braces, a quoted include pattern, no final newline.
#[test]
fn nginx_no_spaces_and_quoted_include_half_done() {
    lint("n23_no_spaces_quoted_include")
        .no_go()
        .has("nginx/conf.d/up.conf:1 says 8005");
}

/// Minified JSON with a `"port"` inside a `_comment...` object before the
/// real one: the top-level port is the one.
#[test]
fn json_minified_with_a_nested_port_first() {
    lint("j09_minified_nested_port")
        .go()
        .has("goproxy.json:1")
        .lacks("8005");
}

/// nginx publishing host port 8005 (short) and 8004 (long syntax) is
/// nginx's business, not goproxy's port.
#[test]
fn compose_other_services_ports_are_not_goproxy_ports() {
    lint("c29_nginx_publishes_old_port").go().lacks("8005");
}

/// A quoted service key, a commented-out old `expose`, and a folded block
/// scalar healthcheck whose URL is on its second line.
#[test]
fn compose_block_scalar_healthcheck_half_done() {
    lint("c30_block_scalar_healthcheck_halfdone")
        .no_go()
        .has("docker-compose.yml:8 says 8005");
}

/// nginx includes `/etc/nginx/sites-enabled/*.conf`, and compose mounts
/// `./nginx/sites` there: the included file is the operator's
/// `nginx/sites/llm.conf` (still on 8005), not "nginx cannot reach goproxy".
#[test]
fn compose_volume_maps_an_absolute_include() {
    lint("c23_compose_mount_maps_include")
        .no_go()
        .has("nginx/sites/llm.conf:1 says 8005");
}

// ------------------------------------- found at acceptance, fixed on qa

/// `"8000-8010:8000-8010"`: a published range that includes goproxy's
/// port is not "not a TCP port".
#[test]
fn compose_port_range_including_the_port() {
    lint("c07_port_range").go();
}

/// A merge key (`<<: *goproxy-defaults`) brings in a healthcheck still on
/// 8005: compose applies it, so must lint; named at the anchor's line.
#[test]
fn compose_merge_key_half_done() {
    lint("c11_anchor_merge_halfdone")
        .no_go()
        .has("docker-compose.yml:4 says 8005");
}

/// An alias (`healthcheck: *hc`) defined above `services:`: the site is
/// named where it is written (line 2), never line 0.
#[test]
fn compose_alias_defined_above_services_is_located() {
    lint("c12_anchor_alias_ok")
        .go()
        .has("docker-compose.yml:2")
        .lacks("docker-compose.yml:0");
}

/// `${GOPROXY_PORT:-8004}` with `.env` saying 8005: no-go naming the
/// compose line where the variable is used (and the value 8005), never
/// line 0.
#[test]
fn compose_dotenv_interpolation_half_done_is_located() {
    lint("c13_env_interpolation_dotenv_halfdone")
        .no_go()
        .has("docker-compose.yml:5 says 8005")
        .lacks("docker-compose.yml:0");
}

/// Compose accepts a UTF-8 BOM at the start of a YAML file (YAML allows
/// it; `docker-compose config` reads it): lint must too.
#[test]
fn compose_bom_is_read_as_compose_reads_it() {
    lint("c19_compose_bom").go();
}

/// `set $goproxy_upstream goproxy:8005; proxy_pass http://$goproxy_upstream;`
/// (the usual way to make nginx re-resolve): the `set` line is where nginx
/// names goproxy's port.
#[test]
fn nginx_set_variable_half_done() {
    lint("n06_set_variable_halfdone")
        .no_go()
        .has("nginx/nginx.conf:6 says 8005");
}

/// The same with 8004: go, not "nginx cannot reach goproxy".
#[test]
fn nginx_set_variable_ok() {
    lint("n06b_set_variable_ok").go().has("nginx/nginx.conf:6");
}

/// `server GoProxy:8005;`: host names are case-insensitive (Docker's DNS
/// answers `GoProxy` for `goproxy`), so this is goproxy on the old port,
/// not "nginx cannot reach goproxy".
#[test]
fn nginx_host_name_case_is_ignored() {
    lint("n15_host_case_halfdone")
        .no_go()
        .has("nginx/nginx.conf:6 says 8005");
}

/// A BOM in the goproxy JSON or in nginx.conf is bad input (exit 2, as
/// validate), named as a byte-order mark with the file.
#[test]
fn bom_in_json_or_nginx_is_bad_input() {
    lint("j05_bom_json")
        .code(2)
        .has("goproxy.json")
        .has("byte-order mark");
    lint("n13_bom_nginx")
        .code(2)
        .has("nginx/nginx.conf")
        .has("byte-order mark");
}

/// `proxy_pass http://goproxy:8005$request_uri;`: the host and port come
/// before the variable and are goproxy's.
#[test]
fn nginx_proxy_pass_port_followed_by_a_variable_half_done() {
    lint("n20_proxy_pass_port_then_variable_halfdone")
        .no_go()
        .has("nginx/nginx.conf:6 says 8005");
}

/// `"127.0.0.1:${GOPROXY_PORT}:${GOPROXY_PORT}"` with `.env` 8005: named at
/// the line that writes it.
#[test]
fn compose_interpolated_ports_are_located() {
    lint("c25_ports_interpolated_both_sides")
        .no_go()
        .has("docker-compose.yml:5 says 8005")
        .lacks("docker-compose.yml:0");
}

/// `.env` with an inline comment (`GOPROXY_PORT=8004  # the new port`):
/// compose (v1 and v2) takes `8004`.
#[test]
fn compose_dotenv_inline_comment_is_not_the_value() {
    lint("c27_dotenv_inline_comment").go();
}
