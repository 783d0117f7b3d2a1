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
use super::pages::{error_page, error_page_with_detail, html, see_other, Chrome};
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
/// What a person reads when a request cannot be shown (the reason, for the
/// client's developers, is folded away below it).
const UNREADABLE: &str =
    "The link that brought you here is damaged, expired or not meant for this \
     data bank, so there is nothing to decide. Go back to the service that sent you and try again; \
     if it happens again, tell them.";

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
    summary: String,
    warnings: Vec<Warning>,
    legal: Vec<(String, String)>,
    contractual: GroupView,
    consent: Vec<GroupView>,
    legitimate: Vec<GroupView>,
    legitimate_reason: String,
    contract_json: String,
    callback_origin: String,
    push_target: String,
    previously: String,
    earlier_grant: bool,
}

/// A warning of the consent page: a short headline and its explanation.
pub struct Warning {
    /// Stable id (`all-data`, `plain-http`, `indefinite`, `legitimate`,
    /// `no-dump`), for styling and tests.
    pub kind: &'static str,
    /// What it is, in a few words.
    pub title: String,
    /// What it means for the user.
    pub text: String,
}

/// Words of a `storage_duration` that mean "no limit".
fn indefinite(duration: Option<&str>) -> bool {
    let Some(d) = duration.map(|d| d.trim().to_lowercase()) else {
        return true;
    };
    d.is_empty()
        || [
            "indefinite",
            "unlimited",
            "forever",
            "permanent",
            "no limit",
            "unknown",
            "not specified",
            "as long as",
        ]
        .iter()
        .any(|w| d.contains(w))
}

/// "a, b and c".
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Lower-cases the first letter (a catalog description inside a sentence).
fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_lowercase().collect::<String>() + chars.as_str()
    })
}

/// The short name of a provider (`Facebook` of `Facebook — Download your
/// information`).
fn short_provider(name: &str) -> &str {
    name.split(" — ").next().unwrap_or(name).trim()
}

/// A scope in a few words, inside a sentence: the catalog description up
/// to its first detail (`your Google searches and the search results you
/// opened`), or "everything of your Google Takeout".
fn short_description(d: &Described) -> String {
    if d.all {
        return format!("everything of your {}", short_provider(&d.provider));
    }
    let text = d.description.trim_end_matches('.');
    let cut = [", with", " (", ": ", "; ", ". "]
        .iter()
        .filter_map(|sep| text.find(sep))
        .min()
        .unwrap_or(text.len());
    lower_first(text.get(..cut).unwrap_or(text).trim())
}

/// What the consent page says first: who asks for what, where it goes and
/// for how long, in one paragraph; and the warnings that apply.
struct Summary {
    text: String,
    warnings: Vec<Warning>,
    push_target: String,
}

fn summarize(
    contract: &Contract<'_>,
    client_name: &str,
    groups: (&GroupView, &[GroupView], &[GroupView]),
    dump_providers: &[String],
) -> Summary {
    let (contractual, consent, legitimate) = groups;
    let name_of = |v: &ScopeView| short_description(&v.d);
    let required: Vec<String> = contractual.scopes.iter().map(name_of).collect();
    let optional: Vec<String> = consent
        .iter()
        .flat_map(|g| g.scopes.iter().map(name_of))
        .collect();
    let legit: Vec<String> = legitimate
        .iter()
        .flat_map(|g| g.scopes.iter().map(name_of))
        .collect();
    let push = contract.push_base().ok();
    let push_target = push.as_ref().map_or_else(String::new, |p| {
        p.port().map_or_else(
            || format!("{}://{}", p.scheme(), p.host()),
            |port| format!("{}://{}:{port}", p.scheme(), p.host()),
        )
    });
    let legal = contract.legal();
    let legal_text = |key: &str| legal.and_then(|l| l.get(key)).map(plain);
    let duration = legal_text("storage_duration");
    let usage = legal_text("usage");
    let mut what = required.clone();
    what.extend(legit.iter().cloned());
    let them = if optional.len() == 1 { "it" } else { "them" };
    let asked = match (what.is_empty(), optional.is_empty()) {
        (true, true) => "no data at all (the request names none)".to_owned(),
        (true, false) => format!("only what you switch on below: {}", and_list(&optional)),
        (false, true) => and_list(&what),
        (false, false) => format!(
            "{}, and, only if you switch {them} on, {}",
            and_list(&what),
            and_list(&optional)
        ),
    };
    let mut text = format!("“{client_name}” asks to receive {asked}");
    text.push('.');
    if let Some(u) = usage.filter(|u| !u.is_empty()) {
        text.push_str(&format!(" It says it uses them for: {u}."));
    }
    if let Some(p) = &push {
        text.push_str(&format!(" The data is sent to {}", p.host()));
        if p.scheme() == "http" {
            text.push_str(" without encryption");
        }
        text.push('.');
    }
    match duration.as_deref() {
        Some(d) if !indefinite(Some(d)) => text.push_str(&format!(" It keeps it for {d}.")),
        _ => text.push_str(" It does not say for how long it keeps it."),
    }
    let mut warnings = Vec::new();
    let everything: Vec<String> = [contractual]
        .into_iter()
        .chain(consent.iter())
        .chain(legitimate.iter())
        .flat_map(|g| g.scopes.iter())
        .filter(|v| v.d.all)
        .map(|v| short_provider(&v.d.provider).to_owned())
        .collect();
    if !everything.is_empty() {
        warnings.push(Warning {
            kind: "all-data",
            title: "Everything of an export".into(),
            text: format!(
                "This asks for all of your {}: every message, search, photo and location it holds.",
                and_list(&everything)
            ),
        });
    }
    if push.as_ref().is_some_and(|p| p.scheme() == "http") {
        warnings.push(Warning {
            kind: "plain-http",
            title: "Sent without encryption".into(),
            text: "The client receives your data over plain http: anyone on the network path can read or change it.".into(),
        });
    }
    if indefinite(duration.as_deref()) {
        warnings.push(Warning {
            kind: "indefinite",
            title: "No time limit".into(),
            text: match duration.as_deref() {
                Some(d) if !d.trim().is_empty() => format!("The client keeps your data {d}."),
                _ => "The client does not say how long it keeps your data: assume indefinitely."
                    .into(),
            },
        });
    }
    if !legit.is_empty() {
        warnings.push(Warning {
            kind: "legitimate",
            title: "Shared without asking".into(),
            text: "Part of it would be shared on the client's “legitimate interest”, which does not need your consent. You can object to each of those below.".into(),
        });
    }
    let mut missing: Vec<String> = Vec::new();
    for v in [contractual]
        .into_iter()
        .chain(consent.iter())
        .chain(legitimate.iter())
        .flat_map(|g| g.scopes.iter())
    {
        if !v.d.provider_id.is_empty()
            && !dump_providers.contains(&v.d.provider_id)
            && !missing.iter().any(|m| m == short_provider(&v.d.provider))
        {
            missing.push(short_provider(&v.d.provider).to_owned());
        }
    }
    if !missing.is_empty() {
        warnings.push(Warning {
            kind: "no-dump",
            title: "No export uploaded".into(),
            text: format!(
                "You have no {} export here yet: nothing of it is sent until you upload one.",
                and_list(&missing)
            ),
        });
    }
    Summary {
        text,
        warnings,
        push_target,
    }
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
                let p = describe(e.scope).provider;
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

/// The parameters of an authorization request's query text.
fn request_query(query: &str) -> RequestQuery {
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
            return Ok(error_page_with_detail(
                &app,
                &session,
                StatusCode::BAD_REQUEST,
                "This request cannot be shown",
                UNREADABLE,
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
            return Ok(error_page_with_detail(
                &app,
                &session,
                StatusCode::BAD_REQUEST,
                "This request cannot be shown",
                UNREADABLE,
                &reason,
            ))
        }
    };
    let (previously, earlier_grant) = match app.state.stored_grant(&user.pk, &contract_hash).await? {
        Some(t) if t.contains("\"revoked\":true") => (
            "You withdrew an earlier agreement with this client; agreeing gives a new one.".to_owned(),
            false,
        ),
        Some(_) => (
            "You agreed to this before. Your new answer replaces it: Deny withdraws the earlier agreement.".to_owned(),
            true,
        ),
        None => (String::new(), false),
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
    let client_name = client.name().unwrap_or("(unnamed client)").to_owned();
    let mut dump_providers: Vec<String> = app
        .state
        .dumps(&user.pk)
        .await?
        .into_iter()
        .map(|d| d.provider)
        .collect();
    dump_providers.dedup();
    let summary = summarize(
        &contract,
        &client_name,
        (&contractual, &consent, &legitimate),
        &dump_providers,
    );
    let body = RequestPage {
        chrome: &chrome,
        rid,
        client_desc: client.description().unwrap_or_default().to_owned(),
        client_domain: client.domain().unwrap_or_default().to_owned(),
        client_company: client.body().get("company").map(plain).unwrap_or_default(),
        summary: summary.text,
        warnings: summary.warnings,
        legal: legal_terms(&contract),
        contractual,
        consent,
        legitimate,
        legitimate_reason: legit_reason,
        contract_json: script_json(&checked.token),
        callback_origin: checked.callback.origin().ascii_serialization(),
        push_target: summary.push_target,
        previously,
        earlier_grant,
        client_name,
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
    if !is_json(&req) {
        // The form, submitted before its script ran: nothing is signed
        // without the script, so nothing is stored; the request stays open.
        let session = Session::load(&app, &req).await?;
        return Ok(error_page(
            &app,
            &session,
            StatusCode::BAD_REQUEST,
            "Nothing was shared yet",
            "Agreeing needs this page's script, which signs your answer in this browser, and it had not started yet. Go back to the request and press Agree again once the page is ready.",
        ));
    }
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
    let shown_hash = same_contract_as_shown(&app, &p.contract, &grant, "the grant")?;
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

/// Whether a request's body is JSON (the pages' scripts) rather than a form.
fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

#[derive(Deserialize)]
pub struct DenyForm {
    csrf: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyJson {
    /// The revocation of an earlier grant of the shown contract, signed in
    /// the browser (absent when there is nothing to withdraw).
    revocation: Option<String>,
}

/// Stores the user's revocation of the shown contract: signed by the user,
/// revoked, of exactly the contract of the pending request. The client is
/// told (a transfer generation with the revoked grant).
async fn withdraw(app: &AppState, p: &Pending, token: &str) -> Result<(), ApiError> {
    let grant = checked_grant(app, token)?;
    if grant.signer_b64() != p.pk {
        return Err(ApiError::forbidden(
            "not_yours",
            "the revocation is not signed by the logged-in user's key",
        ));
    }
    if !grant.is_revoked() {
        return Err(ApiError::bad_request(
            "not_revoked",
            "denying withdraws with a revocation, not a grant",
        ));
    }
    let shown_hash = same_contract_as_shown(app, &p.contract, &grant, "the revocation")?;
    super::dashboard::remember_delivered(app, &p.pk, &shown_hash).await?;
    let effective = accept_grant(app, token, None).await?;
    if effective.stored && effective.grant.is_revoked() {
        let (id, begin) = crate::grants::start_transfer(app, &effective.grant).await?;
        super::dashboard::record_event(
            app,
            &p.pk,
            "revoked",
            &shown_hash,
            &super::dashboard::client_name(&effective.grant),
            Some((id, begin.generation)),
        )
        .await;
    }
    Ok(())
}

/// Whether the user holds an agreement (not revoked) of the contract shown.
async fn holds_grant(app: &AppState, p: &Pending) -> Result<bool, ApiError> {
    let shown =
        decode_verified(&p.contract, &app.config.limits).map_err(|e| token_error(e, "contract"))?;
    let hash = fold(&shown)
        .map_err(|e| token_error(e.into(), "contract"))?
        .to_b64();
    Ok(app
        .state
        .stored_grant(&p.pk, &hash)
        .await?
        .and_then(|t| super::dashboard::parse_stored(&t))
        .is_some_and(|g| !g.is_revoked()))
}

/// `POST /request/{id}/deny`: back to the client with `error=access_denied`.
/// As a form (field `csrf`, no script needed) when the user holds no
/// agreement of this contract; as JSON from the page's script
/// (`{revocation}`, CSRF header), which withdraws an earlier agreement with
/// the revocation signed in the browser and answers `{redirect}`. A form
/// post while an agreement is held changes nothing and says why: the
/// withdrawal must be signed, and Deny never leaves an earlier Agree
/// standing silently.
pub async fn deny(
    app: web::Data<AppState>,
    req: HttpRequest,
    rid: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if is_json(&req) {
        let session = Session::load_checked(&app, &req).await?;
        let p = pending(&app, &rid, &session).await?;
        let input: DenyJson = json_body(&body)?;
        match input.revocation.as_deref() {
            Some(token) => withdraw(&app, &p, token).await?,
            None if holds_grant(&app, &p).await? => {
                return Err(ApiError::bad_request(
                    "revocation_needed",
                    "you agreed to this client before: denying must withdraw that agreement",
                ))
            }
            None => {}
        }
        let _ = app.state.kv_delete(&format!("web:authreq:{rid}")).await?;
        let redirect = denied_url(&p)?;
        return Ok(super::accounts::json_with_session(
            &app,
            &session,
            StatusCode::OK,
            serde_json::json!({"status": "ok", "redirect": redirect}),
        ));
    }
    let session = Session::load(&app, &req).await?;
    let form: DenyForm = deny_form(&body);
    session.check_csrf(&app, form.csrf.as_deref())?;
    let p = pending(&app, &rid, &session).await?;
    if holds_grant(&app, &p).await? {
        return Ok(error_page(
            &app,
            &session,
            StatusCode::CONFLICT,
            "Your earlier agreement still stands",
            "You agreed to this client before. Withdrawing that agreement must be signed by this page's script, which had not started yet. Go back to the request and press Deny again once the page is ready, or withdraw it from your dashboard.",
        ));
    }
    let _ = app.state.kv_delete(&format!("web:authreq:{rid}")).await?;
    let redirect = denied_url(&p)?;
    Ok(see_other(&app, &session, &redirect))
}

/// The form fields of a deny post (only `csrf` is read).
fn deny_form(body: &[u8]) -> DenyForm {
    let csrf = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    DenyForm { csrf }
}

/// The callback with `error=access_denied` (and the request's `state`).
fn denied_url(p: &Pending) -> Result<String, ApiError> {
    let mut pairs = vec![("error", "access_denied")];
    if let Some(s) = &p.state {
        pairs.push(("state", s));
    }
    with_params(&p.callback, &pairs)
}

/// Refuses a grant (or revocation, `what`) signed for another contract than
/// the one the page showed: 400 `contract_mismatch`. Gives the shown
/// contract's hash.
fn same_contract_as_shown(
    app: &AppState,
    contract: &str,
    grant: &protocol::alias::Grant,
    what: &str,
) -> Result<String, ApiError> {
    let shown =
        decode_verified(contract, &app.config.limits).map_err(|e| token_error(e, "contract"))?;
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
            format!("{what} is for another contract than the one shown"),
        ));
    }
    Ok(shown_hash)
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
