//! Which form of Redis holds the state: one server (`ALIAS_REDIS_URL`), a
//! Redis Cluster (`ALIAS_REDIS_CLUSTER_URLS`, comma-separated seed nodes)
//! or a primary watched by Sentinel (`ALIAS_REDIS_SENTINEL_URLS` with
//! `ALIAS_REDIS_SENTINEL_MASTER`, and the primary's login in
//! `ALIAS_REDIS_SENTINEL_USERNAME` and `ALIAS_REDIS_SENTINEL_PASSWORD`).
//! The forms exclude each other.

use super::raw::Raw;
use super::{invalid, ConfigError};
use crate::state::{PrimaryLogin, RedisTarget};

const CLUSTER: &str = "ALIAS_REDIS_CLUSTER_URLS";
const SENTINELS: &str = "ALIAS_REDIS_SENTINEL_URLS";
const MASTER: &str = "ALIAS_REDIS_SENTINEL_MASTER";
const USERNAME: &str = "ALIAS_REDIS_SENTINEL_USERNAME";
const PASSWORD: &str = "ALIAS_REDIS_SENTINEL_PASSWORD";

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

/// Comma-separated `redis://` URLs, at least one.
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
        if url.scheme() != "redis" {
            return Err(invalid(var, u, "scheme must be redis"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid(var, u, "a host is needed"));
        }
    }
    Ok(urls)
}
