//! Where a client receives pushes: `{scheme}://{domain}{pushEndpoint}{id}`,
//! from the signed client declaration's `domain` and the contract's
//! `network` (defaults `https` and `/alias/push/`). The parts are checked,
//! never concatenated blindly: one host without userinfo, an optional port,
//! a path starting with `/`, `http` or `https` only.

use std::fmt;
use std::str::FromStr;

/// Why a contract's push destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushUrlError {
    /// A part is missing or not a string.
    #[error("push destination: {0} must be a string")]
    NotAString(&'static str),
    /// The scheme is neither `http` nor `https`.
    #[error("push destination: scheme {0:?} is not http or https")]
    Scheme(String),
    /// The domain is not a bare host with an optional port.
    #[error("push destination: domain {0:?} is not a host name with an optional port")]
    Domain(String),
    /// The push endpoint is not a plain absolute path.
    #[error("push destination: pushEndpoint {0:?} is not a path starting with '/'")]
    Endpoint(String),
}

/// Which hash names a transfer and ends its push URL (`ALIAS_PUSH_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushId {
    /// The contract hash (default; what v1.1 clients implement).
    #[default]
    Contract,
    /// The grant hash (the identifier of the protocol text).
    Grant,
}

impl FromStr for PushId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "contract" => Ok(PushId::Contract),
            "grant" => Ok(PushId::Grant),
            other => Err(format!(
                "push id must be 'contract' or 'grant', not {other:?}"
            )),
        }
    }
}

impl fmt::Display for PushId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushId::Contract => "contract",
            PushId::Grant => "grant",
        })
    }
}

/// A checked push base: everything of the push URL but the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushBase {
    scheme: String,
    host: String,
    port: Option<u16>,
    endpoint: String,
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl PushBase {
    /// Checks the three parts (`None` scheme or endpoint take the defaults,
    /// as do empty ones, like the reference's `||`).
    pub fn new(
        scheme: Option<&str>,
        domain: &str,
        endpoint: Option<&str>,
    ) -> Result<Self, PushUrlError> {
        let scheme = scheme.filter(|s| !s.is_empty()).unwrap_or("https");
        if scheme != "http" && scheme != "https" {
            return Err(PushUrlError::Scheme(scheme.to_owned()));
        }
        let endpoint = endpoint.filter(|s| !s.is_empty()).unwrap_or("/alias/push/");
        let endpoint_ok = endpoint.starts_with('/')
            && !endpoint.starts_with("//")
            && endpoint.split('/').all(|seg| seg != ".." && seg != ".")
            && endpoint
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:%".contains(&b));
        if !endpoint_ok {
            return Err(PushUrlError::Endpoint(endpoint.to_owned()));
        }
        let bad_domain = || PushUrlError::Domain(domain.to_owned());
        let (host, port) = match domain.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|p| *p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(bad_domain)?;
                (host, Some(port))
            }
            _ => (domain, None),
        };
        if !valid_host(host) {
            return Err(bad_domain());
        }
        Ok(Self {
            scheme: scheme.to_owned(),
            host: host.to_ascii_lowercase(),
            port,
            endpoint: endpoint.to_owned(),
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The host (a DNS name, an IPv4 literal or a bracketed IPv6 literal).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The push endpoint path.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The transfer's push URL: `{scheme}://{domain}{pushEndpoint}{id}`.
    pub fn transfer_url(&self, id: &str) -> String {
        match self.port {
            Some(port) => format!(
                "{}://{}:{port}{}{id}",
                self.scheme, self.host, self.endpoint
            ),
            None => format!("{}://{}{}{id}", self.scheme, self.host, self.endpoint),
        }
    }

    /// The URL of one file of a transfer: `{transfer URL}/{file}`.
    pub fn file_url(&self, id: &str, file: &str) -> String {
        format!("{}/{file}", self.transfer_url(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_forms() {
        let b = PushBase::new(None, "client.example", None).unwrap();
        assert_eq!(b.transfer_url("ID"), "https://client.example/alias/push/ID");
        assert_eq!(
            b.file_url("ID", "a.zip"),
            "https://client.example/alias/push/ID/a.zip"
        );
        let b = PushBase::new(Some("http"), "127.0.0.1:8080", Some("/p/")).unwrap();
        assert_eq!(b.transfer_url("x"), "http://127.0.0.1:8080/p/x");
        assert_eq!(b.port(), Some(8080));
        let b = PushBase::new(Some(""), "[::1]:9", Some("")).unwrap();
        assert_eq!(b.transfer_url("x"), "https://[::1]:9/alias/push/x");
    }

    #[test]
    fn refuses_hostile_parts() {
        assert!(matches!(
            PushBase::new(Some("file"), "a", None),
            Err(PushUrlError::Scheme(_))
        ));
        assert!(matches!(
            PushBase::new(Some("gopher"), "a", None),
            Err(PushUrlError::Scheme(_))
        ));
        for domain in [
            "user@evil.example",
            "a/b",
            "a b",
            "",
            "a:0",
            "a:99999",
            "a:1x",
            "-a.example",
            "a..b",
            "::1",
            "evil.example#",
        ] {
            assert!(
                matches!(
                    PushBase::new(None, domain, None),
                    Err(PushUrlError::Domain(_))
                ),
                "{domain}"
            );
        }
        for endpoint in [
            "@evil.example/",
            "push/",
            "//evil.example/",
            "/a/../b/",
            "/a?x=",
            "/a#",
            "/a\\b",
        ] {
            assert!(
                matches!(
                    PushBase::new(None, "a.example", Some(endpoint)),
                    Err(PushUrlError::Endpoint(_))
                ),
                "{endpoint}"
            );
        }
    }

    #[test]
    fn push_id_parses() {
        assert_eq!("contract".parse::<PushId>().unwrap(), PushId::Contract);
        assert_eq!("grant".parse::<PushId>().unwrap(), PushId::Grant);
        assert!("both".parse::<PushId>().is_err());
    }
}
