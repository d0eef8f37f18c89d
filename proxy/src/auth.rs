//! Secrets (client and upstream keys) and client authentication.
//!
//! Keys come from environment variables named in the config, are held only
//! here, and are never formatted: `Debug` prints counts, not values.

use std::collections::HashMap;
use std::fmt;

use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::error::ProxyError;

/// All keys goproxy holds.
#[derive(Clone, Default)]
pub struct Secrets {
    client_keys: Vec<Vec<u8>>,
    endpoint_keys: HashMap<String, Vec<String>>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("client_keys", &self.client_keys.len())
            .field(
                "endpoint_keys",
                &self
                    .endpoint_keys
                    .iter()
                    .map(|(k, v)| (k.clone(), v.len()))
                    .collect::<HashMap<_, _>>(),
            )
            .finish()
    }
}

impl Secrets {
    /// Explicit keys (tests, embedding). `endpoint_keys` maps endpoint name
    /// to its rotation list.
    pub fn new(client_keys: Vec<String>, endpoint_keys: HashMap<String, Vec<String>>) -> Self {
        Secrets {
            client_keys: client_keys
                .into_iter()
                .filter(|k| !k.is_empty())
                .map(String::into_bytes)
                .collect(),
            endpoint_keys,
        }
    }

    /// Read the env vars the config names. Unset or empty vars are skipped.
    pub fn from_env(config: &Config) -> Self {
        let read = |names: &[String]| distinct_keys(names.iter().filter_map(|n| env_key(n)));
        let endpoint_keys = config
            .endpoints()
            .iter()
            .map(|e| (e.name.to_string(), read(&e.api_key_env)))
            .collect();
        Secrets::new(read(&config.client_api_keys_env), endpoint_keys)
    }

    /// What is wrong with the environment `config` reads keys from, in the
    /// operator's terms (variable names, never values): unset or empty
    /// variables, and values a header cannot carry (every request sending
    /// one would fail). `--check-config` and startup both report these.
    pub fn env_problems(config: &Config) -> Vec<String> {
        // Each variable once, with everything that reads it: whether it is
        // a client key, and the endpoints it is an upstream key of.
        let mut vars: Vec<(&str, bool, Vec<&str>)> = Vec::new();
        let names = config.client_api_keys_env.iter().map(|v| (v, None));
        let upstream = config
            .endpoints()
            .iter()
            .flat_map(|e| e.api_key_env.iter().map(move |v| (v, Some(&*e.name))));
        for (var, endpoint) in names.chain(upstream) {
            let i = match vars.iter().position(|(v, ..)| v == var) {
                Some(i) => i,
                None => {
                    vars.push((var, false, Vec::new()));
                    vars.len() - 1
                }
            };
            match endpoint {
                None => vars[i].1 = true,
                Some(e) => vars[i].2.push(e),
            }
        }
        let mut problems: Vec<String> = vars
            .into_iter()
            .filter_map(|(var, client, endpoints)| {
                let mut what = Vec::new();
                if client {
                    what.push("client key".to_string());
                }
                match endpoints.len() {
                    0 => {}
                    1 => what.push(format!("upstream key of endpoint {}", endpoints[0])),
                    _ => what.push(format!(
                        "upstream key of endpoints {}",
                        endpoints.join(", ")
                    )),
                }
                let what = what.join("; ");
                let problem = match std::env::var_os(var) {
                    None => "is not set",
                    Some(v) => match v.to_str().map(str::trim) {
                        None => "is not UTF-8 text",
                        Some("") => "is empty",
                        Some(v) if v.chars().any(|c| c.is_control()) => {
                            "holds a line break or control character: no request can send it"
                        }
                        // Sent as its UTF-8 bytes, which no API key is:
                        // a paste that took a look-alike letter.
                        Some(v) if !v.is_ascii() => {
                            "holds characters outside ASCII, which no API key has (a look-alike \
                             letter pasted?): the upstream will refuse it"
                        }
                        Some(_) => return None,
                    },
                };
                Some(format!("{var} ({what}) {problem}"))
            })
            .collect();
        problems.extend(same_keys(config));
        problems.extend(client_keys_upstream(config));
        problems
    }

    /// Whether any client key is configured.
    pub fn has_client_keys(&self) -> bool {
        !self.client_keys.is_empty()
    }

    /// Upstream keys of an endpoint, in rotation order.
    pub fn endpoint_keys(&self, endpoint: &str) -> &[String] {
        self.endpoint_keys
            .get(endpoint)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Every secret value, for redacting logged upstream text.
    pub fn all_values(&self) -> impl Iterator<Item = &str> {
        self.client_keys
            .iter()
            .filter_map(|k| std::str::from_utf8(k).ok())
            .chain(self.endpoint_keys.values().flatten().map(String::as_str))
    }

    /// Check the client's key: `Authorization: Bearer`, or `x-api-key` when
    /// `allow_x_api_key` (the Anthropic route). Comparison is constant-time
    /// in the key contents and always tries every configured key.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        allow_x_api_key: bool,
    ) -> Result<(), ProxyError> {
        if self.client_keys.is_empty() {
            return Err(ProxyError::NoClientKeys);
        }
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .map(http::HeaderValue::as_bytes)
            .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
            .map(|v| &v[7..])
            .map(<[u8]>::trim_ascii);
        let x_api_key = allow_x_api_key
            .then(|| headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii()))
            .flatten();
        let Some(given) = bearer.or(x_api_key) else {
            return Err(ProxyError::Unauthorized);
        };
        let mut ok = subtle::Choice::from(0u8);
        for key in &self.client_keys {
            ok |= key.as_slice().ct_eq(given);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(ProxyError::Unauthorized)
        }
    }
}

/// Client key variables holding an upstream key: whoever has that key can
/// use the proxy (and the upstream directly). Named, never shown.
fn client_keys_upstream(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for client in &config.client_api_keys_env {
        let Some(key) = env_key(client) else { continue };
        for e in config.endpoints() {
            if let Some(up) = e
                .api_key_env
                .iter()
                .find(|u| env_key(u).as_deref() == Some(&key))
            {
                out.push(format!(
                    "{client} (client key) holds the same key as {up} (upstream key of endpoint {}): give clients keys of their own",
                    e.name
                ));
                break;
            }
        }
    }
    out
}

/// The key a variable holds, trimmed; `None` when unset, not UTF-8 or
/// empty (as [`Secrets::from_env`] reads it).
fn env_key(name: &str) -> Option<String> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// Values read from key variables: trimmed, empty ones skipped, and a value
/// two variables hold kept once (rotating to "another" key that is the same
/// one retried a rate-limited key against itself).
fn distinct_keys(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for v in values {
        let v = v.trim();
        if !v.is_empty() && !keys.iter().any(|k| k == v) {
            keys.push(v.to_string());
        }
    }
    keys
}

/// Variables of one endpoint's rotation that hold the same key as an
/// earlier one: named, never shown. The key is used once.
fn same_keys(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for e in config.endpoints() {
        let values: Vec<Option<String>> = e.api_key_env.iter().map(|n| env_key(n)).collect();
        for (j, v) in values.iter().enumerate() {
            let Some(v) = v.as_deref() else { continue };
            if let Some(i) = values[..j].iter().position(|o| o.as_deref() == Some(v)) {
                out.push(format!(
                    "{} holds the same key as {} (upstream keys of endpoint {}): it is used once",
                    e.api_key_env[j], e.api_key_env[i], e.name
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_two_variables_hold_is_kept_once() {
        let read = ["k1", " k2\n", "", "k1", "k2", "k3"].map(String::from);
        assert_eq!(distinct_keys(read.into_iter()), ["k1", "k2", "k3"]);
    }

    fn secrets() -> Secrets {
        Secrets::new(vec!["client-key-1".into()], HashMap::new())
    }

    #[test]
    fn bearer_and_x_api_key() {
        let s = secrets();
        let mut h = HeaderMap::new();
        assert!(matches!(
            s.authenticate(&h, true),
            Err(ProxyError::Unauthorized)
        ));
        h.insert("x-api-key", "client-key-1".parse().unwrap());
        assert!(s.authenticate(&h, true).is_ok());
        assert!(
            s.authenticate(&h, false).is_err(),
            "x-api-key only on /v1/messages"
        );
        h.insert("authorization", "Bearer client-key-2".parse().unwrap());
        assert!(
            s.authenticate(&h, true).is_err(),
            "a wrong bearer wins over x-api-key"
        );
        h.insert("authorization", "Bearer client-key-1".parse().unwrap());
        assert!(s.authenticate(&h, false).is_ok());
    }

    #[test]
    fn no_keys_refuses() {
        let s = Secrets::default();
        assert!(matches!(
            s.authenticate(&HeaderMap::new(), false),
            Err(ProxyError::NoClientKeys)
        ));
    }
}
