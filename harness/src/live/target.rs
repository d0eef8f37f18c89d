//! What `harness check` talks to: the URL, how its name resolves, which
//! certificates to trust, and the client key, read from the command line
//! in steps (parse, then build the clients) with errors in the operator's
//! terms. The key's value is never printed: only the variable's name.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::stack::client;

/// Bad input to `harness check` / `harness deploy` (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("--url {url}: {source}")]
    Url {
        url: String,
        /// The URL parser's error (`url::ParseError`, which reqwest does
        /// not re-export).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("--url {url}: the deployment is checked over HTTPS: use https://")]
    NotHttps { url: String },
    #[error("--resolve {value}: {problem} (expected HOST:PORT:ADDR, as curl's --resolve)")]
    Resolve { value: String, problem: String },
    #[error("--ca-cert {path}: {problem}")]
    CaCert { path: PathBuf, problem: String },
    #[error(
        "the client key variable {name} is not set: export it (e.g. `set -a; . ./.env; set +a`) \
         or name another with --api-key-env"
    )]
    NoKey { name: String },
    #[error("cannot build the HTTPS client: {0}")]
    Client(#[source] reqwest::Error),
}

/// `--resolve HOST:PORT:ADDR`: send requests for HOST:PORT to ADDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolve {
    pub host: String,
    pub port: u16,
    pub addr: IpAddr,
}

impl std::str::FromStr for Resolve {
    type Err = TargetError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bad = |problem: &str| TargetError::Resolve {
            value: value.to_string(),
            problem: problem.to_string(),
        };
        let mut parts = value.splitn(3, ':');
        let host = parts
            .next()
            .filter(|h| !h.is_empty())
            .ok_or(bad("no host"))?;
        let port = parts
            .next()
            .ok_or(bad("no port"))?
            .parse()
            .map_err(|_| bad("the port is not a number 1-65535"))?;
        let addr = parts.next().ok_or(bad("no address"))?;
        let addr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| bad("the address is not an IP address"))?;
        Ok(Resolve {
            host: host.to_string(),
            port,
            addr,
        })
    }
}

/// How to reach the deployment (from the command line).
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub url: String,
    pub resolve: Option<Resolve>,
    pub ca_cert: Option<PathBuf>,
    pub insecure: bool,
    pub api_key_env: String,
    /// The longest a stream may last (the client's overall bound).
    pub stream_bound: Duration,
}

/// A deployment to check, with its clients.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https://host[:port]` without a trailing slash.
    pub base: String,
    pub host: String,
    pub port: u16,
    /// Verifies the certificate (unless `--insecure`).
    pub client: reqwest::Client,
    /// Accepts any certificate and records it, to read its dates even when
    /// it does not verify (an expired one).
    pub inspect: reqwest::Client,
    pub api_key: String,
    pub api_key_env: String,
    /// Where trust comes from, for evidence.
    pub trust: String,
    pub insecure: bool,
}

impl TargetSpec {
    /// Parses the URL, reads the key from its variable and builds the clients.
    pub fn connect(&self) -> Result<Target, TargetError> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| TargetError::Url {
            url: self.url.clone(),
            source: e.into(),
        })?;
        if url.scheme() != "https" {
            return Err(TargetError::NotHttps {
                url: self.url.clone(),
            });
        }
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let api_key = std::env::var(&self.api_key_env)
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| TargetError::NoKey {
                name: self.api_key_env.clone(),
            })?;
        let mut verified = client::builder(self.stream_bound);
        let mut inspect = client::builder(client::SHORT)
            .danger_accept_invalid_certs(true)
            .tls_info(true);
        if let Some(r) = &self.resolve {
            let addr = SocketAddr::new(r.addr, r.port);
            verified = verified.resolve(&r.host, addr);
            inspect = inspect.resolve(&r.host, addr);
        }
        let trust = match (&self.ca_cert, self.insecure) {
            (_, true) => {
                verified = verified.danger_accept_invalid_certs(true);
                "not verified (--insecure)".to_string()
            }
            (Some(path), false) => {
                verified = verified
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(read_ca(path)?);
                format!("verified against {}", path.display())
            }
            (None, false) => "verified against the built-in web roots".to_string(),
        };
        let build = |b: reqwest::ClientBuilder| b.build().map_err(TargetError::Client);
        Ok(Target {
            base: format!("https://{host}:{port}"),
            host,
            port,
            client: build(verified)?,
            inspect: build(inspect)?,
            api_key,
            api_key_env: self.api_key_env.clone(),
            trust,
            insecure: self.insecure,
        })
    }
}

fn read_ca(path: &PathBuf) -> Result<reqwest::Certificate, TargetError> {
    let bad = |problem: String| TargetError::CaCert {
        path: path.clone(),
        problem,
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    reqwest::Certificate::from_pem(&pem).map_err(|e| bad(format!("not a PEM certificate: {e}")))
}

impl Target {
    /// `<base><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request error with its causes ("... : invalid peer certificate:
    /// Expired"): reqwest's own message names only the URL.
    pub fn explain(e: &reqwest::Error) -> String {
        let mut out = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            let said = s.to_string();
            if !out.contains(&said) {
                out.push_str(": ");
                out.push_str(&said);
            }
            source = s.source();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// curl's `--resolve` format, IPv6 in brackets too; bad parts named.
    #[test]
    fn parses_resolve_like_curl() {
        let r: Resolve = "chat.trollllm.xyz:8443:127.0.0.1".parse().unwrap();
        assert_eq!(r.host, "chat.trollllm.xyz");
        assert_eq!(r.port, 8443);
        assert_eq!(r.addr, IpAddr::from([127, 0, 0, 1]));
        let r: Resolve = "h:443:[::1]".parse().unwrap();
        assert!(r.addr.is_ipv6());
        let e = "h:http:1.2.3.4".parse::<Resolve>().unwrap_err().to_string();
        assert!(e.contains("port is not a number"), "{e}");
        let e = "h:443".parse::<Resolve>().unwrap_err().to_string();
        assert!(e.contains("no address"), "{e}");
    }

    /// A missing key variable is named, and no value is ever printed.
    #[test]
    fn missing_key_names_the_variable() {
        let spec = TargetSpec {
            url: "https://chat.trollllm.xyz".into(),
            resolve: None,
            ca_cert: None,
            insecure: false,
            api_key_env: "HARNESS_TEST_SURELY_UNSET_KEY".into(),
            stream_bound: Duration::from_secs(10),
        };
        let e = spec.connect().unwrap_err().to_string();
        assert!(
            e.contains("HARNESS_TEST_SURELY_UNSET_KEY is not set"),
            "{e}"
        );
    }

    /// Plain HTTP is refused: the check is about TLS too.
    #[test]
    fn http_urls_are_refused() {
        let spec = TargetSpec {
            url: "http://chat.trollllm.xyz".into(),
            resolve: None,
            ca_cert: None,
            insecure: false,
            api_key_env: "PATH".into(),
            stream_bound: Duration::from_secs(10),
        };
        let e = spec.connect().unwrap_err().to_string();
        assert!(e.contains("use https://"), "{e}");
    }
}
