//! Which Docker engine to talk to, decided as the docker CLI decides it (connecting to it
//! is the engine adapter's: `BollardApi::connect`).
//!
//! Precedence (docker/cli `resolveContextName`): `--host` and `--context` (not both), then
//! `DOCKER_HOST`, then `DOCKER_CONTEXT`, then the current context of the Docker config
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), then the local socket.
//! A context's endpoint and TLS material come from the config's context store.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// What the command line said about the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointFlags {
    pub host: Option<String>,
    pub context: Option<String>,
}

/// Client certificates for a TLS endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A resolved engine endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `unix://…`, `tcp://…` or `ssh://…`.
    pub host: String,
    pub tls: Option<Tls>,
    /// Where it came from, for messages: "DOCKER_HOST", "context prod", ...
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("conflicting options: either specify --host or --context, not both")]
    Conflict,
    #[error("context {name:?} does not exist (looked for {path})")]
    NoContext { name: String, path: String },
    #[error("context {name:?} is broken: {reason}")]
    BadContext { name: String, reason: String },
    #[error("cannot read the Docker config {path}: {reason}")]
    BadConfig { path: String, reason: String },
    #[error("unsupported engine address {0:?}: expected unix://, tcp:// or ssh://")]
    Scheme(String),
    #[error("cannot connect to {host} ({source_of}): {reason}")]
    Connect {
        host: String,
        source_of: String,
        reason: String,
    },
}

/// Resolves the endpoint; `env` reads environment variables (injected for tests).
pub fn resolve(
    flags: &EndpointFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Endpoint, EndpointError> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let from_host = |host: String, source: &str| Endpoint {
        tls: tls_from_env(&host, &var),
        host,
        source: source.to_owned(),
    };
    match (&flags.host, &flags.context) {
        (Some(_), Some(_)) => return Err(EndpointError::Conflict),
        (Some(h), None) => return Ok(from_host(h.clone(), "--host")),
        (None, Some(c)) => return context(c, &var),
        (None, None) => {}
    }
    if let Some(h) = var("DOCKER_HOST") {
        return Ok(from_host(h, "DOCKER_HOST"));
    }
    if let Some(c) = var("DOCKER_CONTEXT") {
        return context(&c, &var);
    }
    let config = config_dir(&var);
    let config_file = config.join("config.json");
    match std::fs::read_to_string(&config_file) {
        Ok(text) => {
            #[derive(Deserialize)]
            struct Config {
                #[serde(rename = "currentContext", default)]
                current_context: Option<String>,
            }
            let c: Config = serde_json::from_str(&text).map_err(|e| EndpointError::BadConfig {
                path: config_file.display().to_string(),
                reason: e.to_string(),
            })?;
            if let Some(name) = c.current_context.filter(|n| !n.is_empty()) {
                return context(&name, &var);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(EndpointError::BadConfig {
                path: config_file.display().to_string(),
                reason: e.to_string(),
            })
        }
    }
    Ok(from_host(DEFAULT_SOCKET.to_owned(), "default"))
}

fn config_dir(var: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match var("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(var("HOME").unwrap_or_else(|| "/root".into())).join(".docker"),
    }
}

/// `DOCKER_TLS_VERIFY` with `DOCKER_CERT_PATH` (default `~/.docker`), for tcp hosts.
fn tls_from_env(host: &str, var: &dyn Fn(&str) -> Option<String>) -> Option<Tls> {
    if !host.starts_with("tcp://") || var("DOCKER_TLS_VERIFY").is_none() {
        return None;
    }
    let dir = var("DOCKER_CERT_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| config_dir(var));
    Some(Tls {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    })
}

/// A context from the store: `contexts/meta/<sha256(name)>/meta.json`, TLS files under
/// `contexts/tls/<sha256(name)>/docker/`.
fn context(name: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<Endpoint, EndpointError> {
    if name == "default" {
        let host = var("DOCKER_HOST").unwrap_or_else(|| DEFAULT_SOCKET.to_owned());
        return Ok(Endpoint {
            tls: tls_from_env(&host, var),
            host,
            source: "context default".to_owned(),
        });
    }
    let id = format!("{:x}", Sha256::digest(name.as_bytes()));
    let store = config_dir(var).join("contexts");
    let meta = store.join("meta").join(&id).join("meta.json");
    let bad = |reason: String| EndpointError::BadContext {
        name: name.to_owned(),
        reason,
    };
    let text = match std::fs::read_to_string(&meta) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EndpointError::NoContext {
                name: name.to_owned(),
                path: meta.display().to_string(),
            })
        }
        Err(e) => return Err(bad(format!("{}: {e}", meta.display()))),
    };
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "Endpoints")]
        endpoints: std::collections::HashMap<String, MetaEndpoint>,
    }
    #[derive(Deserialize)]
    struct MetaEndpoint {
        #[serde(rename = "Host")]
        host: Option<String>,
    }
    let m: Meta =
        serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", meta.display())))?;
    let host = m
        .endpoints
        .get("docker")
        .and_then(|e| e.host.clone())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("it has no docker endpoint".to_owned()))?;
    let tls_dir = store.join("tls").join(&id).join("docker");
    let tls = tls_files(&tls_dir);
    Ok(Endpoint {
        host,
        tls,
        source: format!("context {name}"),
    })
}

fn tls_files(dir: &Path) -> Option<Tls> {
    let t = Tls {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    (t.cert.exists() && t.key.exists()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn store(dir: &Path, name: &str, host: &str, current: Option<&str>) {
        let id = format!("{:x}", Sha256::digest(name.as_bytes()));
        let meta = dir.join("contexts/meta").join(&id);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            format!(r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#),
        )
        .unwrap();
        if let Some(c) = current {
            std::fs::write(
                dir.join("config.json"),
                format!(r#"{{"currentContext":"{c}"}}"#),
            )
            .unwrap();
        }
    }

    #[test]
    fn precedence_is_the_docker_clis() {
        let dir = std::env::temp_dir().join(format!("sx-ctx-{}", uuid::Uuid::new_v4().simple()));
        store(&dir, "lab", "unix:///lab.sock", Some("lab"));
        store(&dir, "other", "tcp://10.0.0.1:2375", None);
        let cfg = dir.to_str().unwrap();
        let none = EndpointFlags::default();
        // The config's current context.
        let e = resolve(&none, &env(&[("DOCKER_CONFIG", cfg)])).unwrap();
        assert_eq!(
            (e.host.as_str(), e.source.as_str()),
            ("unix:///lab.sock", "context lab")
        );
        // DOCKER_CONTEXT beats the config; DOCKER_HOST beats both.
        let e = resolve(
            &none,
            &env(&[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "other")]),
        )
        .unwrap();
        assert_eq!(e.host, "tcp://10.0.0.1:2375");
        let e = resolve(
            &none,
            &env(&[
                ("DOCKER_CONFIG", cfg),
                ("DOCKER_CONTEXT", "other"),
                ("DOCKER_HOST", "unix:///h.sock"),
            ]),
        )
        .unwrap();
        assert_eq!(e.host, "unix:///h.sock");
        // --context beats DOCKER_HOST; --host with --context is refused.
        let flags = EndpointFlags {
            context: Some("other".into()),
            ..Default::default()
        };
        let e = resolve(
            &flags,
            &env(&[("DOCKER_CONFIG", cfg), ("DOCKER_HOST", "unix:///h.sock")]),
        )
        .unwrap();
        assert_eq!(e.host, "tcp://10.0.0.1:2375");
        let both = EndpointFlags {
            host: Some("unix:///x".into()),
            context: Some("lab".into()),
        };
        assert!(matches!(
            resolve(&both, &env(&[])),
            Err(EndpointError::Conflict)
        ));
        // Missing and broken contexts are errors naming them.
        let missing = EndpointFlags {
            context: Some("nope".into()),
            ..Default::default()
        };
        let err = resolve(&missing, &env(&[("DOCKER_CONFIG", cfg)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"nope\" does not exist"), "{err}");
        let id = format!("{:x}", Sha256::digest(b"lab"));
        std::fs::write(
            dir.join("contexts/meta").join(id).join("meta.json"),
            "{broken",
        )
        .unwrap();
        let err = resolve(&none, &env(&[("DOCKER_CONFIG", cfg)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("context \"lab\" is broken"), "{err}");
        // Nothing set: the local socket.
        let e = resolve(&none, &env(&[("DOCKER_CONFIG", "/nonexistent")])).unwrap();
        assert_eq!(e.host, DEFAULT_SOCKET);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_from_the_environment() {
        let e = resolve(
            &EndpointFlags::default(),
            &env(&[
                ("DOCKER_HOST", "tcp://m:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/certs"),
            ]),
        )
        .unwrap();
        assert_eq!(e.tls.unwrap().key, PathBuf::from("/certs/key.pem"));
    }
}
