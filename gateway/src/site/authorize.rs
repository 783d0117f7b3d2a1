//! The authorization request (PROTOCOL.md Part 2 §A, "Consent UI flow"):
//! `GET /request?contract=<token>|client_id=<id>&username=&state=&redirect=`.
//!
//! The request is validated in full before anything else: the contract and
//! its client declaration verify (every signature, the reference validators
//! and the acceptance policy), its push destination is acceptable, and the
//! callback is the client's declared `redirectEndpoint` or a `redirect`
//! within the client's declared domain (same scheme, host and port). A
//! request that fails shows an error page and never redirects.
//!
//! `client_id=` finds only a contract that was shown to the same logged-in
//! user before (never one another user was shown or holds): with
//! contract-hash push ids a contract serves one user, so a contract bound to
//! another user is refused here as it is at agreement (`contract_bound`).
//!
//! A valid request is kept server-side under a random id for 30 minutes;
//! the page shows the client, the legal terms and the scopes (contractual,
//! consent switches off by default, legitimate), each described from the
//! provider catalogs. Agreeing: the browser signs the grant and posts it to
//! `/request/{id}/agree`, which stores it like `POST /alias/grants` and
//! answers the callback URL with `code`, `bind` and `state`. Denying: a
//! form post to `/request/{id}/deny` that redirects with
//! `error=access_denied` and `state`.

use super::accounts::random_id;
use super::catalog::{describe, Described};
use super::pages::{error_page, html, see_other, Chrome};
use super::session::{json_body, Session};
use crate::error::ApiError;
use crate::grants::{accept_grant, checked_grant, token_error};
use crate::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use protocol::alias::{decode_verified, Basis, Contract};
use protocol::anychain::{fold, to_token, Value};
use runtime::state::now_ms;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a shown request may be answered.
const PENDING_TTL: Duration = Duration::from_secs(30 * 60);
/// How long a client's latest contract shown to a user is remembered for
/// that user's `client_id=`.
const CLIENT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
const MAX_STATE: usize = 1024;

/// The query of an authorization request.
#[derive(Debug, Deserialize)]
pub struct RequestQuery {
    contract: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    state: Option<String>,
    redirect: Option<String>,
}

/// A validated request waiting for the user's answer.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    contract: String,
    callback: String,
    state: Option<String>,
    pk: String,
}

/// Why a request is refused (shown on the error page).
#[derive(Debug)]
pub struct Refusal(pub String);

fn refuse(reason: impl Into<String>) -> Refusal {
    Refusal(reason.into())
}

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

/// A scope as the page shows it.
pub struct ScopeView {
    /// Described scope.
    pub d: Described,
    /// Group index.
    pub group: usize,
    /// Index in the group.
    pub index: usize,
}

/// A group of scopes with its usages.
pub struct GroupView {
    /// What the client does with them.
    pub usages: String,
    /// The scopes.
    pub scopes: Vec<ScopeView>,
}

#[derive(Template)]
#[template(path = "request.html")]
struct RequestPage<'a> {
    chrome: &'a Chrome,
    rid: String,
    client_name: String,
    client_desc: String,
    client_domain: String,
    client_company: String,
    legal: Vec<(String, String)>,
    contractual: GroupView,
    consent: Vec<GroupView>,
    legitimate: Vec<GroupView>,
    legitimate_reason: String,
    contract_json: String,
    callback_origin: String,
    previously: String,
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Null => "—".into(),
        Value::List(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        Value::Dict(d) => d
            .iter()
            .map(|(k, v)| format!("{k}: {}", plain(v)))
            .collect::<Vec<_>>()
            .join("; "),
        other => to_token(other),
    }
}

fn usages(group: Option<&Value>) -> String {
    group
        .and_then(|g| g.get("usages"))
        .map(plain)
        .unwrap_or_default()
}

fn humanize(key: &str) -> String {
    let words = key.replace(['_', '-'], " ");
    let mut chars = words.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().collect::<String>() + chars.as_str()
    })
}

/// The legal terms, usage and third parties first.
fn legal_terms(contract: &Contract<'_>) -> Vec<(String, String)> {
    let Some(Value::Dict(legal)) = contract.legal() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let first = ["usage", "destination", "subprocessors", "third_parties"];
    for key in first {
        if let Some(v) = legal.get(key) {
            let label = match key {
                "usage" => "Usage".to_owned(),
                "destination" | "third_parties" => "Third parties receiving the data".to_owned(),
                _ => "Subprocessors".to_owned(),
            };
            out.push((label, plain(v)));
        }
    }
    for (k, v) in legal.iter() {
        if !first.contains(&k) {
            out.push((humanize(k), plain(v)));
        }
    }
    out
}

/// Escapes JSON for a `<script type="application/json">` element.
pub fn script_json(text: &str) -> String {
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn contract_groups(
    contract: &Contract<'_>,
) -> Result<(GroupView, Vec<GroupView>, Vec<GroupView>), Refusal> {
    let entries = contract
        .scope_entries()
        .map_err(|e| refuse(format!("the contract's scopes cannot be read: {e}")))?;
    let base = contract.base();
    let mut contractual = GroupView {
        usages: usages(base.and_then(|b| b.get("contractual"))),
        scopes: Vec::new(),
    };
    let consent_groups = base.and_then(|b| b.get("consent")).and_then(Value::as_list);
    let legit_groups = base
        .and_then(|b| b.get("legitimate"))
        .and_then(|l| l.get("groups"))
        .and_then(Value::as_list);
    let mk = |list: Option<&[Value]>| -> Vec<GroupView> {
        list.map(|l| {
            l.iter()
                .map(|g| GroupView {
                    usages: usages(Some(g)),
                    scopes: Vec::new(),
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let mut consent = mk(consent_groups);
    let mut legitimate = mk(legit_groups);
    for e in entries {
        let view = ScopeView {
            d: describe(e.scope),
            group: e.group,
            index: e.index,
        };
        match e.basis {
            Basis::Contractual => contractual.scopes.push(view),
            Basis::Consent => {
                if let Some(g) = consent.get_mut(e.group) {
                    g.scopes.push(view);
                }
            }
            Basis::Legitimate => {
                if let Some(g) = legitimate.get_mut(e.group) {
                    g.scopes.push(view);
                }
            }
        }
    }
    Ok((contractual, consent, legitimate))
}

struct Checked {
    token: String,
    value: Value,
    callback: url::Url,
}

/// The key of the contract of client `client_id` last shown to user `pk`.
fn client_key(pk: &str, client_id: &str) -> String {
    format!("web:client:{pk}:{client_id}")
}

/// Whether the request names its client by `client_id` alone.
fn by_client_id(q: &RequestQuery) -> bool {
    q.contract.as_deref().is_none_or(|c| c.trim().is_empty())
        && q.client_id.as_deref().is_some_and(|id| !id.is_empty())
}

async fn check_request(
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

/// `GET /request`: validates the request and shows the consent page (or
/// sends the user to log in first).
pub async fn request_page(
    app: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<RequestQuery>,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load(&app, &req).await?;
    let wanted = query
        .username
        .as_deref()
        .map(|u| u.trim().to_ascii_lowercase())
        .filter(|u| !u.is_empty());
    let logged_as = session.user.as_ref().map(|u| u.username.clone());
    let user = session
        .user
        .clone()
        .filter(|_| wanted.is_none() || wanted == logged_as);
    if user.is_none() && by_client_id(&query) {
        // client_id= is resolved per user: log in first.
        return Ok(to_login(&app, &session, &req, wanted.as_deref()));
    }
    let checked = match check_request(&app, &query, user.as_ref().map(|u| u.pk.as_str())).await {
        Ok(c) => c,
        Err(Refusal(reason)) => {
            return Ok(error_page(
                &app,
                &session,
                StatusCode::BAD_REQUEST,
                "This request cannot be shown",
                &reason,
            ))
        }
    };
    let Some(user) = user else {
        return Ok(to_login(&app, &session, &req, wanted.as_deref()));
    };
    let contract = Contract::new(&checked.value).map_err(|e| token_error(e, "contract"))?;
    let client = contract.client().map_err(|e| token_error(e, "contract"))?;
    let client_id = client
        .id()
        .map_err(|e| token_error(e, "contract"))?
        .to_b64();
    let contract_hash = contract
        .hash()
        .map_err(|e| token_error(e, "contract"))?
        .to_b64();
    if app.config.push_id == protocol::alias::PushId::Contract {
        let owner = app.state.contract_owner(&contract_hash).await?;
        if owner.is_some_and(|o| o != user.pk) {
            return Ok(error_page(
                &app,
                &session,
                StatusCode::CONFLICT,
                "This request cannot be shown",
                &crate::grants::contract_bound().reason,
            ));
        }
    }
    app.state
        .kv_set(
            &client_key(&user.pk, &client_id),
            &checked.token,
            Some(CLIENT_TTL),
        )
        .await?;
    let (contractual, consent, legitimate) = match contract_groups(&contract) {
        Ok(g) => g,
        Err(Refusal(reason)) => {
            return Ok(error_page(
                &app,
                &session,
                StatusCode::BAD_REQUEST,
                "This request cannot be shown",
                &reason,
            ))
        }
    };
    let previously = match app.state.stored_grant(&user.pk, &contract_hash).await? {
        Some(t) if t.contains("\"revoked\":true") => {
            "You revoked an earlier grant of this contract; agreeing gives a new one.".to_owned()
        }
        Some(_) => {
            "You already agreed to this contract; answering again replaces your earlier choice."
                .to_owned()
        }
        None => String::new(),
    };
    let rid = random_id()?;
    let pending = Pending {
        contract: checked.token.clone(),
        callback: checked.callback.to_string(),
        state: query.state.clone(),
        pk: user.pk.clone(),
    };
    let json = serde_json::to_string(&pending).map_err(|e| ApiError::unavailable("encoding", e))?;
    app.state
        .kv_set(&format!("web:authreq:{rid}"), &json, Some(PENDING_TTL))
        .await?;
    let mut chrome = Chrome::new(&app, &session, "Authorization request");
    chrome.form_target = Some(checked.callback.origin().ascii_serialization());
    let legit_reason = contract
        .base()
        .and_then(|b| b.get("legitimate"))
        .and_then(|l| l.get("reason"))
        .map(plain)
        .unwrap_or_default();
    let body = RequestPage {
        chrome: &chrome,
        rid,
        client_name: client.name().unwrap_or("(unnamed client)").to_owned(),
        client_desc: client.description().unwrap_or_default().to_owned(),
        client_domain: client.domain().unwrap_or_default().to_owned(),
        client_company: client.body().get("company").map(plain).unwrap_or_default(),
        legal: legal_terms(&contract),
        contractual,
        consent,
        legitimate,
        legitimate_reason: legit_reason,
        contract_json: script_json(&checked.token),
        callback_origin: checked.callback.origin().ascii_serialization(),
        previously,
    }
    .render();
    Ok(html(&app, &session, &chrome, StatusCode::OK, body))
}

/// Sends the user to log in, then back to this request.
fn to_login(
    app: &AppState,
    session: &Session,
    req: &HttpRequest,
    wanted: Option<&str>,
) -> HttpResponse {
    let here = req
        .uri()
        .path_and_query()
        .map_or("/request", |p| p.as_str())
        .to_owned();
    let mut login = url::form_urlencoded::Serializer::new(String::new());
    login.append_pair("next", &here);
    if let Some(w) = wanted {
        login.append_pair("username", w);
    }
    see_other(app, session, &format!("/login?{}", login.finish()))
}

async fn pending(app: &AppState, rid: &str, session: &Session) -> Result<Pending, ApiError> {
    let user = session.require_user()?;
    let json = app
        .state
        .kv_get(&format!("web:authreq:{rid}"))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_request",
                "this request expired or was answered: go back to the client and start again",
            )
        })?;
    let p: Pending =
        serde_json::from_str(&json).map_err(|e| ApiError::unavailable("pending request", e))?;
    if p.pk != user.pk {
        return Err(ApiError::forbidden(
            "not_yours",
            "this request was shown to another user",
        ));
    }
    Ok(p)
}

fn with_params(callback: &str, pairs: &[(&str, &str)]) -> Result<String, ApiError> {
    let mut url =
        url::Url::parse(callback).map_err(|e| ApiError::unavailable("stored callback", e))?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    Ok(url.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agree {
    grant: String,
    bind: String,
}

/// `POST /request/{id}/agree {grant, bind}` (JSON, CSRF header): stores
/// the grant the browser signed and answers where to send the user.
pub async fn agree(
    app: web::Data<AppState>,
    req: HttpRequest,
    rid: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load_checked(&app, &req).await?;
    let p = pending(&app, &rid, &session).await?;
    let input: Agree = json_body(&body)?;
    let grant = checked_grant(&app, &input.grant)?;
    if grant.signer_b64() != p.pk {
        return Err(ApiError::forbidden(
            "not_yours",
            "the grant is not signed by the logged-in user's key",
        ));
    }
    if grant.is_revoked() {
        return Err(ApiError::bad_request(
            "revoked",
            "agreeing needs a consented grant, not a revocation",
        ));
    }
    let shown =
        decode_verified(&p.contract, &app.config.limits).map_err(|e| token_error(e, "contract"))?;
    let shown_hash = fold(&shown)
        .map_err(|e| token_error(e.into(), "contract"))?
        .to_b64();
    let signed_hash = grant
        .contract_hash()
        .map_err(|e| token_error(e, "grant"))?
        .to_b64();
    if shown_hash != signed_hash {
        return Err(ApiError::bad_request(
            "contract_mismatch",
            "the grant is for another contract than the one shown",
        ));
    }
    let effective = accept_grant(&app, &input.grant, Some(&input.bind)).await?;
    let _ = app.state.kv_delete(&format!("web:authreq:{rid}")).await?;
    let code = effective.grant.to_token();
    super::dashboard::record_event(
        &app,
        &p.pk,
        "granted",
        &shown_hash,
        &super::dashboard::client_name(&effective.grant),
        None,
    )
    .await;
    let mut pairs = vec![("code", code.as_str()), ("bind", input.bind.as_str())];
    if let Some(s) = &p.state {
        pairs.push(("state", s));
    }
    let redirect = with_params(&p.callback, &pairs)?;
    Ok(super::accounts::json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({"status": "ok", "redirect": redirect, "stored": effective.stored}),
    ))
}

#[derive(Deserialize)]
pub struct DenyForm {
    csrf: Option<String>,
}

/// `POST /request/{id}/deny` (form with `csrf`): back to the client with
/// `error=access_denied`.
pub async fn deny(
    app: web::Data<AppState>,
    req: HttpRequest,
    rid: web::Path<String>,
    form: web::Form<DenyForm>,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load(&app, &req).await?;
    session.check_csrf(&app, form.csrf.as_deref())?;
    let p = pending(&app, &rid, &session).await?;
    let _ = app.state.kv_delete(&format!("web:authreq:{rid}")).await?;
    let mut pairs = vec![("error", "access_denied")];
    if let Some(s) = &p.state {
        pairs.push(("state", s));
    }
    let redirect = with_params(&p.callback, &pairs)?;
    Ok(see_other(&app, &session, &redirect))
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

    #[test]
    fn script_json_cannot_close_the_script() {
        assert_eq!(script_json("</script>"), "\\u003c/script\\u003e");
    }
}
