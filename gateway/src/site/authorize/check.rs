//! Checking an authorization request before anything is shown: the
//! contract verifies and passes the policy, its push destination and the
//! callback are acceptable; and what the login page says of a request.

use super::summary::and_list;
use super::{refuse, Refusal, RequestQuery, MAX_STATE};
use crate::site::catalog::describe;
use crate::AppState;
use protocol::alias::{decode_verified, Contract};
use protocol::anychain::Value;
use runtime::state::{now_ms, WebKey};

/// The callback URL of a contract: the client's `redirectEndpoint` (default
/// `/alias/cb/`) on `{scheme}://{domain}`, or `redirect` when it is within
/// that origin.
pub fn callback(contract: &Contract<'_>, redirect: Option<&str>) -> Result<url::Url, Refusal> {
    let network = contract.value().get("network");
    let text = |key: &str| network.and_then(|n| n.get(key)).and_then(Value::as_str);
    let scheme = text("scheme").unwrap_or("https");
    if !matches!(scheme, "http" | "https") {
        return Err(refuse("the contract's scheme must be http or https"));
    }
    let domain = contract
        .client()
        .ok()
        .and_then(|c| c.domain())
        .ok_or_else(|| refuse("the client declaration has no domain"))?;
    let base = url::Url::parse(&format!("{scheme}://{domain}/"))
        .map_err(|_| refuse("the client's domain is not a host"))?;
    if base.host_str().is_none()
        || !base.username().is_empty()
        || base.password().is_some()
        || base.path() != "/"
        || base.query().is_some()
        || base.fragment().is_some()
    {
        return Err(refuse("the client's domain is not a bare host[:port]"));
    }
    let target = match redirect.filter(|r| !r.is_empty()) {
        Some(r) => url::Url::parse(r).map_err(|_| refuse("redirect is not an absolute URL"))?,
        None => {
            let endpoint = match network.and_then(|n| n.get("redirectEndpoint")) {
                None | Some(Value::Null) => "/alias/cb/",
                Some(Value::String(s)) => s.as_str(),
                Some(_) => return Err(refuse("redirectEndpoint must be a string")),
            };
            if !endpoint.starts_with('/') || endpoint.starts_with("//") || endpoint.contains('\\') {
                return Err(refuse("redirectEndpoint must be a path starting with '/'"));
            }
            base.join(endpoint)
                .map_err(|_| refuse("redirectEndpoint is not a path"))?
        }
    };
    let same_origin = target.scheme() == base.scheme()
        && target.host_str() == base.host_str()
        && target.port_or_known_default() == base.port_or_known_default();
    if !same_origin || !target.username().is_empty() || target.password().is_some() {
        return Err(refuse(format!(
            "the redirect must stay within the client's declared domain {scheme}://{domain}"
        )));
    }
    let mut target = target;
    target.set_fragment(None);
    Ok(target)
}

/// The parameters of an authorization request's query text.
pub(super) fn request_query(query: &str) -> RequestQuery {
    let mut q = RequestQuery {
        contract: None,
        client_id: None,
        username: None,
        state: None,
        redirect: None,
    };
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let v = Some(v.into_owned());
        match k.as_ref() {
            "contract" => q.contract = v,
            "client_id" => q.client_id = v,
            "username" => q.username = v,
            "state" => q.state = v,
            "redirect" => q.redirect = v,
            _ => {}
        }
    }
    q
}

pub(super) struct Checked {
    /// The contract's token.
    pub(super) token: String,
    /// The verified contract.
    pub(super) value: Value,
    /// Where the answer goes.
    pub(super) callback: url::Url,
}

/// The key of the contract of client `client_id` last shown to user `pk`.
pub(super) fn client_key<'a>(pk: &'a str, client_id: &'a str) -> WebKey<'a> {
    WebKey::ClientContract {
        pk,
        client: client_id,
    }
}

/// Whether the request names its client by `client_id` alone.
pub(super) fn by_client_id(q: &RequestQuery) -> bool {
    q.contract.as_deref().is_none_or(|c| c.trim().is_empty())
        && q.client_id.as_deref().is_some_and(|id| !id.is_empty())
}

pub(super) async fn check_request(
    app: &AppState,
    q: &RequestQuery,
    pk: Option<&str>,
) -> Result<Checked, Refusal> {
    let token = match (&q.contract, &q.client_id, pk) {
        (Some(t), _, _) if !t.trim().is_empty() => t.clone(),
        (_, Some(id), Some(pk)) if !id.is_empty() => app
            .state
            .kv_get(&client_key(pk, id))
            .await
            .map_err(|e| refuse(format!("state store unavailable: {e}")))?
            .ok_or_else(|| refuse("unknown client_id: this client has not shown you a contract here yet; the client must send its contract"))?,
        _ => return Err(refuse("missing parameter 'contract' (or 'client_id')")),
    };
    let value = decode_verified(&token, &app.config.limits)
        .map_err(|e| refuse(format!("the contract does not verify: {e}")))?;
    #[allow(clippy::cast_precision_loss)]
    app.policy
        .check_contract(&value, now_ms() as f64)
        .map_err(|e| match e {
            protocol::alias::PolicyError::Clear(c) => {
                refuse(format!("the contract is refused ({}): {c}", c.code()))
            }
            other => refuse(format!("the contract is refused: {other}")),
        })?;
    let contract = Contract::new(&value).map_err(|e| refuse(format!("not a contract: {e}")))?;
    contract
        .push_base()
        .map_err(|e| refuse(format!("the contract's push destination is refused: {e}")))?;
    if q.state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
        return Err(refuse("state is too long"));
    }
    let callback = callback(&contract, q.redirect.as_deref())?;
    Ok(Checked {
        token,
        value,
        callback,
    })
}

/// What the login page says when it leads to an authorization request
/// (`next` is `/request?…` with a contract): who asks, for what; empty when
/// `next` is no such request or it does not verify.
pub async fn context_for_login(app: &AppState, next: &str) -> String {
    let Some(query) = next
        .strip_prefix("/request?")
        .or_else(|| next.strip_prefix("/request/?"))
    else {
        return String::new();
    };
    let q = request_query(query);
    if by_client_id(&q) {
        return "A client asks for some of your data. Log in to see its request: nothing is shared until you agree.".into();
    }
    let Ok(checked) = check_request(app, &q, None).await else {
        return String::new();
    };
    let Ok(contract) = Contract::new(&checked.value) else {
        return String::new();
    };
    let Ok(client) = contract.client() else {
        return String::new();
    };
    let name = client.name().unwrap_or("A client");
    let what: Vec<String> = contract
        .scope_entries()
        .map(|entries| {
            let mut seen = Vec::new();
            for e in entries {
                let p = describe(&app.catalog, e.scope).provider;
                if !seen.contains(&p) {
                    seen.push(p);
                }
            }
            seen
        })
        .unwrap_or_default();
    let domain = client.domain().unwrap_or_default();
    format!(
        "“{name}” ({domain}, a name it gives itself) asks for data of your {}. Log in or create an account to see exactly what, and to answer: nothing is shared until you agree.",
        if what.is_empty() { "exports".to_owned() } else { and_list(&what) }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::anychain::{sign, signing_key_from_seed, Dict};

    fn contract(domain: &str, network: Dict) -> Value {
        let decl = Dict::new()
            .with("type", "alias.client.decl")
            .with("name", "C")
            .with("domain", domain)
            .with("crypto", Dict::new());
        let client = sign(&signing_key_from_seed(&[1; 32]), Value::Dict(decl), 1.0).unwrap();
        Value::Dict(
            Dict::new()
                .with("type", "alias.contract")
                .with("client", client)
                .with("legal", Dict::new())
                .with("base", Dict::new())
                .with("network", network),
        )
    }

    #[test]
    fn callbacks_stay_in_the_client_domain() {
        let v = contract("client.example", Dict::new());
        let c = Contract::new(&v).unwrap();
        assert_eq!(
            callback(&c, None).unwrap().as_str(),
            "https://client.example/alias/cb/"
        );
        assert_eq!(
            callback(&c, Some("https://client.example/cb?x=1#frag"))
                .unwrap()
                .as_str(),
            "https://client.example/cb?x=1"
        );
        for bad in [
            "https://evil.example/cb",
            "http://client.example/cb",
            "https://client.example:444/cb",
            "https://client.example.evil.example/",
            "https://user@client.example/",
            "//evil.example/",
            "/cb",
            "javascript:alert(1)",
        ] {
            assert!(callback(&c, Some(bad)).is_err(), "{bad}");
        }
        let v = contract(
            "127.0.0.1:9000",
            Dict::new()
                .with("scheme", "http")
                .with("redirectEndpoint", "/back"),
        );
        let c = Contract::new(&v).unwrap();
        assert_eq!(
            callback(&c, None).unwrap().as_str(),
            "http://127.0.0.1:9000/back"
        );
        let v = contract(
            "client.example",
            Dict::new().with("redirectEndpoint", "//evil.example/"),
        );
        assert!(callback(&Contract::new(&v).unwrap(), None).is_err());
        let v = contract("evil.example@client.example", Dict::new());
        assert!(callback(&Contract::new(&v).unwrap(), None).is_err());
    }
}
