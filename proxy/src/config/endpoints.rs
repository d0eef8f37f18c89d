//! The `endpoints` section, and env var names (also used by
//! `client_api_keys_env`).

use foldhash::HashMap;
use std::net::IpAddr;

use serde_json::Value;

use super::error::{shown, shown_unless_key, ConfigError};
use super::raw::Reader;
use super::types::{Endpoint, Format};

/// Keys an endpoint may have.
const KNOWN: &[&str] = &["name", "base_url", "api_key_env"];

/// Validated endpoints and their index by name.
#[derive(Debug, Default)]
pub(crate) struct Endpoints {
    pub list: Vec<Endpoint>,
    pub by_name: HashMap<String, usize>,
    /// Names that serve no format (warned about, not loaded).
    pub unused: Vec<String>,
}

/// Validate every entry of `endpoints`.
pub(crate) fn endpoints(
    top: &Reader<'_>,
    own: (IpAddr, u16),
    warnings: &mut Vec<String>,
) -> Result<Endpoints, ConfigError> {
    let items = top.list("endpoints")?;
    if items.is_empty() {
        return Err(top.at.invalid(
            "endpoints",
            top.value("endpoints").map_or("(missing)".into(), shown),
            "at least one endpoint is required ({\"name\": \"<line>-openai\", \"base_url\": \"https://...\"})",
        ));
    }
    let mut out = Endpoints::default();
    for (i, v) in items.iter().enumerate() {
        let name = v.get("name").and_then(Value::as_str);
        let r = Reader::new(
            v,
            top.at.entry("endpoints", i, "endpoint", name),
            &format!("endpoints[{i}]"),
        )?;
        r.unknown_keys(KNOWN, warnings)?;
        match endpoint(&r, &out.by_name, warnings)? {
            Ok(e) if is_goproxy_itself(&e.uri, own) => {
                let url = r.string("base_url")?.unwrap_or_default();
                return Err(r.at.invalid(
                    "base_url",
                    shown(&Value::String(without_userinfo(&url))),
                    format!(
                        "is goproxy's own address (port {} on this host): every request would \
                         come back to goproxy, and loop until no connection is left; name the \
                         upstream's URL",
                        own.1
                    ),
                ));
            }
            Ok(e) => {
                out.by_name.insert(e.name.to_string(), out.list.len());
                out.list.push(e);
            }
            Err(unused) => out.unused.push(unused),
        }
    }
    Ok(out)
}

/// One endpoint; `Err(name)` (with a warning) when its name serves no
/// format.
fn endpoint(
    r: &Reader<'_>,
    seen: &HashMap<String, usize>,
    warnings: &mut Vec<String>,
) -> Result<Result<Endpoint, String>, ConfigError> {
    let Some(name) = r.string("name")? else {
        return Err(r.at.invalid("name", "(missing)", "required"));
    };
    super::models::plain_name(r, "name", &name)?;
    if seen.contains_key(&name) {
        return Err(r.at.invalid(
            "name",
            shown(&Value::String(name)),
            "duplicate endpoint name",
        ));
    }
    let Some(base_url) = r.string("base_url")? else {
        return Err(r.at.invalid(
            "base_url",
            "(missing)",
            "required: the full URL requests are POSTed to",
        ));
    };
    let shown_url = shown(&Value::String(without_userinfo(&base_url)));
    written_plainly(r, &base_url, &shown_url)?;
    let parsed = url::Url::parse(&base_url);
    // The parser's own reason where it names one the operator can act on.
    let why = match &parsed {
        Err(url::ParseError::InvalidPort) => "has a port that is not a number from 1 to 65535",
        Err(url::ParseError::InvalidIpv4Address | url::ParseError::InvalidIpv6Address) => {
            "has a host that is not a valid IP address"
        }
        Err(url::ParseError::InvalidDomainCharacter | url::ParseError::IdnaError) => {
            "has a host name with characters no host name can have"
        }
        _ => "must be an absolute http:// or https:// URL (the full URL requests are POSTed to)",
    };
    let mut url = parsed
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| r.at.invalid("base_url", shown_url.clone(), why))?;
    if let Some(why) = unreachable_host(&url) {
        return Err(r.at.invalid("base_url", shown_url, why));
    }
    if has_dot_segments(&base_url) {
        return Err(r.at.invalid(
            "base_url",
            shown_url,
            format!(
                "has . or .. path segments, which are resolved before sending: requests would go to {}; write that path",
                url.path()
            ),
        ));
    }
    if url.port() == Some(0) {
        return Err(r
            .at
            .invalid("base_url", shown_url, "port 0 cannot be connected to"));
    }
    if matches!(url.path(), "" | "/") {
        return Err(r.at.invalid(
            "base_url",
            shown_url,
            "has no path: it is the full URL requests are POSTed to, e.g. \
             https://api.openai.com/v1/chat/completions or https://api.anthropic.com/v1/messages",
        ));
    }
    let basic_auth = userinfo_auth(&mut url);
    // A parsed `Url` prints in the form `http::Uri` accepts (percent-encoded,
    // punycode host), so this only fails for what hyper could not send.
    let uri = http::Uri::try_from(url.as_str()).map_err(|_| {
        r.at.invalid(
            "base_url",
            shown_url.clone(),
            "must be an absolute http:// or https:// URL (the full URL requests are POSTed to)",
        )
    })?;
    let api_key_env = env_names(r, "api_key_env", false)?.unwrap_or_default();
    let format = Format::ALL
        .into_iter()
        .find(|f| name == f.as_str() || name.ends_with(&format!("-{f}")));
    let Some(format) = format else {
        warnings.push(format!(
            "endpoint {name} is never used: names must be <line>-openai, <line>-anthropic, openai or anthropic"
        ));
        return Ok(Err(name));
    };
    if let Some(other) = other_routes_path(format, url.path()) {
        warnings.push(format!(
            "endpoint {name} is an {format} endpoint but its base_url path {} is the {other} route's: are the URLs of -openai and -anthropic swapped?",
            url.path()
        ));
    } else if let Some(why) = odd_route_path(format, url.path()) {
        warnings.push(format!(
            "endpoint {name}: base_url path {} {why}",
            url.path()
        ));
    }
    // An OpenAI endpoint sends its key as `Authorization: Bearer`; with
    // `user:password@` in the URL too, the upstream would get two
    // Authorization headers and refuse every request.
    if format == Format::OpenAi && basic_auth.is_some() && !api_key_env.is_empty() {
        return Err(r.at.invalid(
            "base_url",
            shown_url,
            "carries user:password@ and api_key_env names a key: both would be sent as \
             Authorization; keep one (remove user:password@ from base_url, or api_key_env)",
        ));
    }
    Ok(Ok(Endpoint {
        name: name.into(),
        uri,
        basic_auth,
        format,
        api_key_env,
    }))
}

/// `base_url` as shown in errors: `user:password@` becomes `***@` and
/// query values become `***`, so a password or a `?key=` never reaches a
/// message or a log. The userinfo ends at the last `@` (a password may
/// hold `/`, `?` or `#`; hiding a path's `@...` too is the safe mistake).
fn without_userinfo(base_url: &str) -> String {
    // After `scheme://`, or after `scheme:` when the slashes are missing
    // or backslashes (URL parsers accept both forms).
    let scheme_end = match base_url.find("://") {
        Some(i) => i + 3,
        None => base_url.find(':').map_or(0, |i| i + 1),
    };
    let (head, rest) = base_url.split_at(scheme_end);
    let rest = match rest.rfind('@') {
        Some(at) => format!("***{}", &rest[at..]),
        None => rest.to_string(),
    };
    let Some(q) = rest.find('?') else {
        return format!("{head}{rest}");
    };
    let (path, query) = rest.split_at(q + 1);
    let query = query.split('#').next().unwrap_or("");
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) => format!("{k}=***"),
            None => pair.to_string(),
        })
        .collect();
    format!("{head}{path}{}", masked.join("&"))
}

/// `base_url` as URL parsers agree on it: `http://` or `https://` then no
/// whitespace, control characters or backslashes. A parser quietly drops
/// or percent-encodes those (and reads `http:///v1/x` as host `v1`), so
/// the URL used would not be the one written.
fn written_plainly(r: &Reader<'_>, base_url: &str, shown_url: &str) -> Result<(), ConfigError> {
    let lower = base_url.get(..8).unwrap_or(base_url).to_ascii_lowercase();
    let after_scheme = if lower.starts_with("https://") {
        8
    } else if lower.starts_with("http://") {
        7
    } else {
        return Err(r.at.invalid(
            "base_url",
            shown_url,
            "must start with http:// or https:// (the full URL requests are POSTed to)",
        ));
    };
    let odd = base_url
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || c == '\\');
    if let Some(c) = odd {
        return Err(r.at.invalid(
            "base_url",
            shown_url,
            format!(
                "holds U+{:04X} (a space, control character or backslash): write it percent-encoded",
                c as u32
            ),
        ));
    }
    if matches!(
        base_url[after_scheme..].chars().next(),
        None | Some('/' | '?' | '#')
    ) {
        return Err(r.at.invalid("base_url", shown_url, "has no host"));
    }
    Ok(())
}

/// Whether the written URL's path has `.` or `..` segments (also as `%2e`):
/// URL parsers resolve them, so the path sent is not the one written.
fn has_dot_segments(base_url: &str) -> bool {
    let rest = base_url.split_once("://").map_or(base_url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    })
}

/// The other format's name when `path` ends the way that format's route
/// does (`/messages` on an OpenAI endpoint, `/chat/completions` on an
/// Anthropic one).
fn other_routes_path(format: Format, path: &str) -> Option<Format> {
    let path = path.trim_end_matches('/');
    Format::ALL
        .into_iter()
        .find(|&other| other != format && path.ends_with(route_tail(other)))
}

/// How a route's full upstream URL ends.
fn route_tail(format: Format) -> &'static str {
    match format {
        Format::OpenAi => "/chat/completions",
        Format::Anthropic => "/messages",
    }
}

/// Why a base_url path is unlikely to be the route's full URL: an SDK
/// style base (`.../v1`, to which SDKs append the route; goproxy POSTs to
/// base_url as written) or a trailing `/` (most upstreams answer 404,
/// relayed as "the upstream could not find the requested model").
fn odd_route_path(format: Format, path: &str) -> Option<String> {
    let tail = route_tail(format);
    if path.ends_with(tail) {
        return None;
    }
    Some(if path.trim_end_matches('/').ends_with(tail) {
        "ends with /: most upstreams answer 404 there; remove the trailing /".to_string()
    } else {
        format!(
            "does not end with {tail}: base_url is the full URL requests are POSTed to \
             (an SDK's base URL such as .../v1 needs {tail} added)"
        )
    })
}

/// Whether `uri` is goproxy's own listener: its port, on a loopback
/// address (`localhost`, `127.x`, `::1`) or on the address goproxy binds.
fn is_goproxy_itself(uri: &http::Uri, (host, port): (IpAddr, u16)) -> bool {
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let uri_port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let Some(name) = uri.host() else {
        return false;
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let local = match name.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback() || ip.to_canonical() == host.to_canonical(),
        Err(_) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    uri_port == port && local
}

/// Why a host name can never be looked up: an empty label (`a..b`), a
/// label over 63 characters or a name over 253 (RFC 1035 section 2.3.4;
/// resolvers refuse them, so every request failed with a DNS error).
fn unresolvable_name(name: &str) -> Option<&'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > 253 {
        Some("has a host name over 253 characters, which no resolver looks up")
    } else if name.split('.').any(str::is_empty) {
        Some("has an empty label in its host name (two dots in a row, or a leading dot)")
    } else if name.split('.').any(|l| l.len() > 63) {
        Some("has a label over 63 characters in its host name, which no resolver looks up")
    } else {
        None
    }
}

/// Why `url`'s host can never be connected to: multicast, broadcast, the
/// unspecified address, or a name of dots alone. An IPv4-mapped IPv6
/// address (`[::ffff:224.0.0.1]`) is judged as the IPv4 address it is.
fn unreachable_host(url: &url::Url) -> Option<&'static str> {
    let ip = match url.host()? {
        url::Host::Domain(d) if d.trim_matches('.').is_empty() => {
            return Some("has no host name (only dots)")
        }
        url::Host::Domain(d) => return unresolvable_name(d),
        url::Host::Ipv4(v4) if v4.is_broadcast() => return Some("is a broadcast address"),
        url::Host::Ipv4(v4) => std::net::IpAddr::V4(v4),
        url::Host::Ipv6(v6) => std::net::IpAddr::V6(v6).to_canonical(),
    };
    if matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("is a broadcast address")
    } else if ip.is_multicast() {
        Some("is a multicast address, which TCP cannot connect to")
    } else if ip.is_unspecified() {
        Some("is the unspecified address (0.0.0.0 or ::), not a host to connect to")
    } else {
        None
    }
}

/// Take `user:password@` out of `url` and make it the `Authorization:
/// Basic` value reqwest derived from it: the percent-decoded bytes as they
/// are (RFC 7617 leaves their charset to the server; a byte that is not
/// UTF-8, `%ff`, dropped the whole header before, silently).
fn userinfo_auth(url: &mut url::Url) -> Option<http::HeaderValue> {
    use base64::Engine as _;
    let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let user = decode(url.username());
    let password = url.password().map(decode);
    if user.is_empty() && password.is_none() {
        return None;
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut plain = user;
    plain.push(b':');
    plain.extend_from_slice(&password.unwrap_or_default());
    let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
    let mut v = http::HeaderValue::try_from(format!("Basic {encoded}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Env var names under `key` (one name or a list). A value that looks like
/// a key rather than a name is refused without being shown: it would
/// otherwise end up in this error, and in logs.
pub(crate) fn env_names(
    r: &Reader<'_>,
    key: &str,
    default_note: bool,
) -> Result<Option<Vec<String>>, ConfigError> {
    let names = match r.value(key) {
        None => return Ok(None),
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(items)) => items.clone(),
        Some(other) => {
            return Err(r.at.invalid(
                key,
                shown_unless_key(other),
                "expected an environment variable name or a list of them",
            ));
        }
    };
    if names.is_empty() {
        let reason = if default_note {
            "an empty list accepts no client at all (every model route answers 503); leave the field out for the default [\"PROXY_API_KEY\"]"
        } else {
            "an empty list sends no key; leave the field out to send none"
        };
        return Err(r.at.invalid(key, "[]", reason));
    }
    let mut out = Vec::with_capacity(names.len());
    for (j, n) in names.iter().enumerate() {
        let field = format!("{key}[{j}]");
        match n.as_str() {
            Some(s) if looks_like_key(s) => {
                return Err(r.at.invalid(
                    &field,
                    "(hidden: it looks like a key)",
                    "must be the NAME of an environment variable; put the key itself in that \
                     variable, never in this file (a name is taken for a key when it is over 64 \
                     characters, or 20+ without `_` and with digits and letters or mixed case: \
                     if this is a name, write it in UPPER_SNAKE_CASE, e.g. OHMYGPT_API_KEY_2)",
                ))
            }
            Some(s) if is_system_variable(s) => {
                return Err(r.at.invalid(
                    &field,
                    shown_unless_key(n),
                    format!(
                        "names the system variable {s}, which holds no key: name the variable \
                         the key is in (e.g. OPENAI_API_KEY)"
                    ),
                ))
            }
            Some(s) if is_env_name(s) => {
                // The same variable twice would be one key tried twice (a
                // rate-limited key retried against itself).
                if let Some(first) = out.iter().position(|o: &String| o == s) {
                    return Err(r.at.invalid(
                        &field,
                        shown_unless_key(n),
                        format!("is already listed as {key}[{first}]: list each variable once"),
                    ));
                }
                out.push(s.to_string())
            }
            _ => {
                return Err(r.at.invalid(
                    &field,
                    shown_unless_key(n),
                    "must be an environment variable name (letters, digits and _, not starting with a digit)",
                ))
            }
        }
    }
    Ok(Some(out))
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A value someone pasted instead of a variable name: `sk-`/`sk_` keys,
/// a UUID, anything over 64 characters, or a long random-looking piece:
/// mixed case with digits, or letters and digits with no `_` (a hex or
/// base32 key; names are conventionally UPPER_SNAKE_CASE), 20+ characters
/// long, or 12+ between dashes. Dashed names of short words and numbers
/// are names: model ids (`claude-3-5-sonnet-20241022`, `gpt-4o-2024-08-06`)
/// and field names (`anthropic-version`) are shown as written.
pub(crate) fn looks_like_key(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let hex_digits = s.chars().filter(char::is_ascii_hexdigit).count();
    let uuid = hex_digits >= 32 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    let min_piece = if s.contains('-') { 12 } else { 20 };
    lower.starts_with("sk-")
        || lower.starts_with("sk_")
        || uuid
        || s.len() > 64
        || s.split('-')
            .any(|p| p.len() >= min_piece && random_looking(p))
}

/// Mixed case with digits, or letters and digits with no `_`.
fn random_looking(p: &str) -> bool {
    let has = |f: fn(&char) -> bool| p.chars().any(|c| f(&c));
    let digits = has(char::is_ascii_digit);
    let mixed = has(char::is_ascii_lowercase) && has(char::is_ascii_uppercase) && digits;
    mixed || (has(char::is_ascii_alphabetic) && digits && !p.contains('_'))
}

/// Variables the system or goproxy itself sets, never a key: naming one
/// sent its value (a `PATH`, a home directory) upstream as the key.
const NOT_KEYS: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "PWD",
    "OLDPWD",
    "HOSTNAME",
    "HOST",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TZ",
    "TMPDIR",
    "MAIL",
    "SHLVL",
    // Every shell sets `_` to the last command's path.
    "_",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "CONFIG_PATH",
    "GOPROXY_LOG_FORMAT",
    "DISPLAY",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "PS1",
    "HISTFILE",
    "SSH_AUTH_SOCK",
    "XDG_RUNTIME_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// `s` names a variable the system sets (or a locale `LC_*`), not a key.
fn is_system_variable(s: &str) -> bool {
    let upper = s.to_ascii_uppercase();
    NOT_KEYS.contains(&upper.as_str()) || upper.starts_with("LC_")
}
