//! Which form of Redis holds the state: one server (`ALIAS_REDIS_URL`), a
//! Redis Cluster (`ALIAS_REDIS_CLUSTER_URLS`, comma-separated seed nodes)
//! or a primary watched by Sentinel (`ALIAS_REDIS_SENTINEL_URLS` with
//! `ALIAS_REDIS_SENTINEL_MASTER`, and the primary's login in
//! `ALIAS_REDIS_SENTINEL_USERNAME` and `ALIAS_REDIS_SENTINEL_PASSWORD`).
//! The forms exclude each other. TLS: `rediss://` URLs, with
//! `ALIAS_REDIS_CA_FILE` and a client certificate
//! (`ALIAS_REDIS_CLIENT_CERT_FILE`, `ALIAS_REDIS_CLIENT_KEY_FILE`) when the
//! system's authorities or no certificate will not do.

use super::raw::Raw;
use super::{invalid, ConfigError};
use crate::state::{PrimaryLogin, RedisTarget, RedisTls};

const CLUSTER: &str = "ALIAS_REDIS_CLUSTER_URLS";
const SENTINELS: &str = "ALIAS_REDIS_SENTINEL_URLS";
const MASTER: &str = "ALIAS_REDIS_SENTINEL_MASTER";
const USERNAME: &str = "ALIAS_REDIS_SENTINEL_USERNAME";
const PASSWORD: &str = "ALIAS_REDIS_SENTINEL_PASSWORD";
const CA_FILE: &str = "ALIAS_REDIS_CA_FILE";
const CERT_FILE: &str = "ALIAS_REDIS_CLIENT_CERT_FILE";
const KEY_FILE: &str = "ALIAS_REDIS_CLIENT_KEY_FILE";

/// Whether any of the Redis variables was given.
pub(super) fn given(raw: &Raw) -> bool {
    raw.redis_url.is_some()
        || raw.redis_cluster_urls.is_some()
        || raw.redis_sentinel_urls.is_some()
        || raw.redis_sentinel_master.is_some()
}

/// The form of Redis the variables select; `single` is the (checked)
/// `ALIAS_REDIS_URL` or its default.
pub(super) fn target(raw: &Raw, single: &str) -> Result<RedisTarget, ConfigError> {
    let cluster = raw.redis_cluster_urls.as_deref();
    let sentinels = raw.redis_sentinel_urls.as_deref();
    let master = raw.redis_sentinel_master.as_deref();
    let login = PrimaryLogin {
        username: raw
            .redis_sentinel_username
            .clone()
            .filter(|u| !u.is_empty()),
        password: raw
            .redis_sentinel_password
            .clone()
            .filter(|p| !p.is_empty()),
    };
    if sentinels.is_none() && login != PrimaryLogin::default() {
        let var = if login.username.is_some() {
            USERNAME
        } else {
            PASSWORD
        };
        return Err(ConfigError::Needs {
            var,
            needs: SENTINELS,
        });
    }
    let exclusive =
        |first: &'static str, second: &'static str| ConfigError::Exclusive { first, second };
    if raw.redis_url.is_some() && cluster.is_some() {
        return Err(exclusive("ALIAS_REDIS_URL", CLUSTER));
    }
    if raw.redis_url.is_some() && sentinels.is_some() {
        return Err(exclusive("ALIAS_REDIS_URL", SENTINELS));
    }
    if cluster.is_some() && sentinels.is_some() {
        return Err(exclusive(CLUSTER, SENTINELS));
    }
    if let Some(urls) = cluster {
        if master.is_some() {
            return Err(ConfigError::Needs {
                var: MASTER,
                needs: SENTINELS,
            });
        }
        return Ok(RedisTarget::Cluster(urls_of(CLUSTER, urls)?));
    }
    match (sentinels, master) {
        (Some(urls), Some(name)) => {
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(invalid(MASTER, name, "a master name without spaces"));
            }
            Ok(RedisTarget::Sentinel {
                sentinels: urls_of(SENTINELS, urls)?,
                master: name.to_owned(),
                login,
            })
        }
        (Some(_), None) => Err(ConfigError::Needs {
            var: SENTINELS,
            needs: MASTER,
        }),
        (None, Some(_)) => Err(ConfigError::Needs {
            var: MASTER,
            needs: SENTINELS,
        }),
        (None, None) => Ok(RedisTarget::Single(single.to_owned())),
    }
}

/// The TLS settings, read from their files and checked: a certificate
/// and its key come together, the files parse, and they go with
/// `rediss://` URLs only (given with plain ones they would protect
/// nothing). Under Sentinel, `rediss://` sentinels mean a primary reached
/// over TLS too.
pub(super) fn tls(raw: &Raw, target: &RedisTarget) -> Result<RedisTls, ConfigError> {
    let path = |value: &Option<String>| value.clone().filter(|p| !p.trim().is_empty());
    let (ca, cert, key) = (
        path(&raw.redis_ca_file),
        path(&raw.redis_client_cert_file),
        path(&raw.redis_client_key_file),
    );
    match (&cert, &key) {
        (Some(_), None) => {
            return Err(ConfigError::Needs {
                var: CERT_FILE,
                needs: KEY_FILE,
            })
        }
        (None, Some(_)) => {
            return Err(ConfigError::Needs {
                var: KEY_FILE,
                needs: CERT_FILE,
            })
        }
        _ => {}
    }
    let tls = RedisTls {
        ca_pem: read_pem(CA_FILE, ca.as_deref(), Pem::Certificates)?,
        client_cert_pem: read_pem(CERT_FILE, cert.as_deref(), Pem::Certificates)?,
        client_key_pem: read_pem(KEY_FILE, key.as_deref(), Pem::Key)?,
    };
    let (var, urls): (&'static str, Vec<&str>) = match target {
        RedisTarget::Single(url) => ("ALIAS_REDIS_URL", vec![url.as_str()]),
        RedisTarget::Cluster(urls) => (CLUSTER, urls.iter().map(String::as_str).collect()),
        RedisTarget::Sentinel { sentinels, .. } => {
            (SENTINELS, sentinels.iter().map(String::as_str).collect())
        }
    };
    let secure = urls.iter().filter(|u| u.starts_with("rediss://")).count();
    if secure != 0 && secure != urls.len() {
        return Err(invalid(
            var,
            &urls.join(","),
            "either every URL is rediss:// or none",
        ));
    }
    if secure == 0 && tls.is_set() {
        let given = if tls.ca_pem.is_some() {
            CA_FILE
        } else {
            CERT_FILE
        };
        return Err(ConfigError::Needs {
            var: given,
            needs: "rediss:// URLs",
        });
    }
    if let Some(u) = urls.iter().find(|u| u.contains('#')) {
        return Err(invalid(
            var,
            u,
            "no #fragment: certificate checks cannot be turned off (#insecure); \
             give the server's authority in ALIAS_REDIS_CA_FILE",
        ));
    }
    if let Err(e) = tls.check() {
        return Err(ConfigError::Load(format!("the Redis TLS files: {e}")));
    }
    Ok(tls)
}

/// What a PEM file must hold.
#[derive(Clone, Copy)]
enum Pem {
    /// One certificate at least.
    Certificates,
    /// A private key.
    Key,
}

/// The file at `path`, checked to hold what `want` says.
fn read_pem(
    var: &'static str,
    path: Option<&str>,
    want: Pem,
) -> Result<Option<Vec<u8>>, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let Some(path) = path else {
        return Ok(None);
    };
    let pem =
        std::fs::read(path).map_err(|e| invalid(var, path, format!("cannot be read: {e}")))?;
    let found = match want {
        Pem::Certificates => CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
            .and_then(|certs| {
                if certs.is_empty() {
                    Err("no PEM certificate in it".to_owned())
                } else {
                    Ok(())
                }
            }),
        Pem::Key => PrivateKeyDer::from_pem_slice(&pem)
            .map(drop)
            .map_err(|e| format!("no usable PEM private key in it ({e})")),
    };
    found.map_err(|reason| invalid(var, path, reason))?;
    Ok(Some(pem))
}

/// Comma-separated `redis://` (or `rediss://`) URLs, at least one.
fn urls_of(var: &'static str, value: &str) -> Result<Vec<String>, ConfigError> {
    let urls: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        return Err(invalid(var, value, "at least one redis:// URL"));
    }
    for u in &urls {
        let url = url::Url::parse(u).map_err(|e| invalid(var, u, e.to_string()))?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err(invalid(var, u, "scheme must be redis or rediss"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid(var, u, "a host is needed"));
        }
    }
    Ok(urls)
}
