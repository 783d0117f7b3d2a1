//! The primary the sentinels name: asked of each sentinel in turn
//! (`SENTINEL GET-MASTER-ADDR-BY-NAME`), then checked to answer as a
//! primary (`ROLE`) with the bank's login and, when the sentinels are
//! reached over TLS (`rediss://`), over TLS with the same settings, as
//! everything else of a Redis set up for TLS is.
//!
//! The `redis` crate's own sentinel client checks the role of the primary
//! it finds with the system's authorities only, so that a primary whose
//! certificate a private authority signed could not be reached through
//! it: hence this small lookup of our own.

use super::conn::{bounded, PrimaryLogin, RedisTls, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ErrorKind, RedisConnectionInfo,
    RedisError, RedisResult, Value,
};

/// The sentinels of one master name, and how to reach the primary they
/// name.
pub(super) struct Sentinels {
    /// One client per sentinel, in the configured order.
    sentinels: Vec<redis::Client>,
    master: String,
    login: PrimaryLogin,
    tls: RedisTls,
    /// Whether the primary is reached over TLS (the sentinels are).
    secure: bool,
}

/// A connection for one question, bounded in time.
async fn ask_once(client: &redis::Client) -> RedisResult<redis::aio::MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT);
    bounded(
        CONNECT_TIMEOUT * 2,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
}

impl Sentinels {
    /// The sentinels at `urls` (all `redis://` or all `rediss://`).
    pub(super) fn new(
        urls: &[String],
        master: &str,
        login: &PrimaryLogin,
        tls: &RedisTls,
    ) -> RedisResult<Sentinels> {
        let sentinels = urls
            .iter()
            .map(|u| tls.client(u))
            .collect::<RedisResult<Vec<_>>>()?;
        Ok(Sentinels {
            sentinels,
            master: master.to_owned(),
            login: login.clone(),
            tls: tls.clone(),
            secure: urls.iter().any(|u| u.starts_with("rediss://")),
        })
    }

    /// The master name.
    pub(super) fn master(&self) -> &str {
        &self.master
    }

    /// A client of the primary the first sentinel that answers names, once
    /// it answered as a primary; the last failure when none did.
    pub(super) async fn primary(&self) -> RedisResult<redis::Client> {
        let mut last = None;
        for sentinel in &self.sentinels {
            match self.primary_named_by(sentinel).await {
                Ok(client) => return Ok(client),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((ErrorKind::InvalidClientConfig, "no sentinel configured"))
        }))
    }

    async fn primary_named_by(&self, sentinel: &redis::Client) -> RedisResult<redis::Client> {
        let mut conn = ask_once(sentinel).await?;
        let named: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.master)
            .query_async(&mut conn)
            .await?;
        let Some((host, port)) = named else {
            return Err(RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "the sentinels name no primary",
                format!("master `{}` is unknown to them", self.master),
            )));
        };
        let client = self.client_of(host.clone(), port)?;
        self.check_role(&client)
            .await
            .map_err(|e| self.explain(e, &host, port))?;
        Ok(client)
    }

    /// A client of the server at `host:port` with the primary's login.
    fn client_of(&self, host: String, port: u16) -> RedisResult<redis::Client> {
        let addr = if self.secure {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        let info = ConnectionInfo {
            addr,
            redis: RedisConnectionInfo {
                username: self.login.username.clone(),
                password: self.login.password.clone(),
                ..Default::default()
            },
        };
        self.tls.client_of(info)
    }

    /// Whether the server answers `ROLE` as a primary (a sentinel's view
    /// may lag a failover).
    async fn check_role(&self, client: &redis::Client) -> RedisResult<()> {
        let mut conn = ask_once(client).await?;
        let role: Vec<Value> =
            bounded(RESPONSE_TIMEOUT, redis::cmd("ROLE").query_async(&mut conn)).await?;
        match role.first() {
            Some(Value::BulkString(r)) if r.as_slice() == b"master" => Ok(()),
            _ => Err(RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "the server the sentinels name is not a primary (a failover under way?)",
            ))),
        }
    }

    /// A primary that refused the bank (a wrong or missing password, a
    /// certificate): says which settings to check.
    fn explain(&self, e: RedisError, host: &str, port: u16) -> RedisError {
        let logged_in = self.login.username.is_some() || self.login.password.is_some();
        let refused_login = e.kind() == ErrorKind::AuthenticationFailed
            || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"));
        let check = if refused_login && logged_in {
            "check ALIAS_REDIS_SENTINEL_USERNAME and ALIAS_REDIS_SENTINEL_PASSWORD"
        } else if refused_login {
            "a primary that asks for a password needs ALIAS_REDIS_SENTINEL_PASSWORD"
        } else if self.secure && e.to_string().contains("certificate") {
            "check ALIAS_REDIS_CA_FILE and the client certificate"
        } else {
            return e;
        };
        RedisError::from((
            e.kind(),
            "the primary the sentinels name does not answer this client",
            format!("master `{}` at {host}:{port}: {e} ({check})", self.master),
        ))
    }
}
