//! The user's dashboard: dumps (uploaded, listed and deleted by the
//! browser with signed requests to `/alias/dumps`), the clients holding
//! grants with what each may see and its transfer, the history of grants
//! and transfers, a revoke button and the re-export switch per client.

use super::catalog::{describe, providers, Described};
use super::pages::{html, see_other, Chrome};
use super::session::{json_body, Session};
use crate::error::ApiError;
use crate::grants::{accept_grant, checked_grant, start_transfer, token_error};
use crate::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use protocol::alias::Grant;
use protocol::anychain::{from_json_str, Limits};
use runtime::state::{now_ms, DumpRecord, Transfer};
use serde::{Deserialize, Serialize};

/// Entries kept in a user's web history.
const HISTORY_KEEP: usize = 200;

/// One line of the web history (`web:history:{pk}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// `granted`, `revoked`, `reexport`.
    pub kind: String,
    /// The contract hash.
    pub contract: String,
    /// The client's name.
    pub client: String,
    /// The transfer and generation started, if any.
    pub transfer: Option<(String, u64)>,
    /// When (ms since the epoch).
    pub at_ms: u64,
}

/// Appends to the user's history (failures are logged only).
pub async fn record_event(
    app: &AppState,
    pk: &str,
    kind: &str,
    contract: &str,
    client: &str,
    transfer: Option<(String, u64)>,
) {
    let event = Event {
        kind: kind.to_owned(),
        contract: contract.to_owned(),
        client: client.to_owned(),
        transfer,
        at_ms: now_ms(),
    };
    let Ok(json) = serde_json::to_string(&event) else {
        return;
    };
    if let Err(e) = app
        .state
        .list_push(&format!("web:history:{pk}"), &json, HISTORY_KEEP)
        .await
    {
        tracing::warn!(error = %e, "web history not recorded");
    }
}

/// The client's name in a grant.
pub fn client_name(grant: &Grant) -> String {
    grant
        .contract()
        .client()
        .ok()
        .and_then(|c| c.name())
        .unwrap_or("(unnamed client)")
        .to_owned()
}

/// A stored grant token, parsed (it was verified when stored).
pub fn parse_stored(token: &str) -> Option<Grant> {
    let limits = Limits {
        max_bytes: usize::MAX,
        max_depth: 128,
    };
    from_json_str(token, &limits)
        .ok()
        .and_then(|v| Grant::from_verified(v).ok())
}

fn reexport_key(pk: &str, contract: &str) -> String {
    format!("web:reexport:{pk}:{contract}")
}

/// Whether re-export is on for a user's contract.
pub async fn reexport_on(app: &AppState, pk: &str, contract: &str) -> Result<bool, ApiError> {
    Ok(app
        .state
        .kv_get(&reexport_key(pk, contract))
        .await?
        .is_some())
}

/// A transfer as the pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct TransferView {
    /// The id.
    pub id: String,
    /// The state.
    pub state: String,
    /// Generation.
    pub generation: u64,
    /// Bytes pushed.
    pub bytes_done: u64,
    /// Bytes to push.
    pub bytes_total: u64,
    /// Archives pushed.
    pub files_done: u64,
    /// Archives.
    pub files_total: u64,
    /// Last change.
    pub updated: String,
    /// Error or notes.
    pub detail: String,
}

/// Milliseconds since the epoch as UTC text.
pub fn when(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(0);
    actix_web::cookie::time::OffsetDateTime::from_unix_timestamp(secs).map_or_else(
        |_| ms.to_string(),
        |t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        },
    )
}

impl TransferView {
    fn of(t: &Transfer) -> TransferView {
        let mut detail = t.error.clone().unwrap_or_default();
        if !t.notes.is_empty() {
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            detail.push_str(&t.notes.join("; "));
        }
        TransferView {
            id: t.id.clone(),
            state: t.state.as_str().to_owned(),
            generation: t.generation,
            bytes_done: t.bytes_done,
            bytes_total: t.bytes_total,
            files_done: t.files_done,
            files_total: t.files_total,
            updated: when(t.updated_ms),
            detail,
        }
    }
}

/// A client holding a grant.
pub struct ClientView {
    contract: String,
    name: String,
    domain: String,
    revoked: bool,
    since: String,
    scopes: Vec<Described>,
    transfer: Option<TransferView>,
    reexport: bool,
    grant_json: String,
}

struct GrantLine {
    when: String,
    client: String,
    what: String,
}

struct EventLine {
    when: String,
    kind: String,
    client: String,
    transfer: String,
    state: String,
}

struct DumpView {
    provider: String,
    provider_name: String,
    name: String,
    size: u64,
    uploaded: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage<'a> {
    chrome: &'a Chrome,
    dumps: Vec<DumpView>,
    providers: Vec<(String, String)>,
    clients: Vec<ClientView>,
    grants: Vec<GrantLine>,
    events: Vec<EventLine>,
    max_dump_bytes: u64,
}

async fn clients_of(app: &AppState, pk: &str) -> Result<Vec<ClientView>, ApiError> {
    let mut out = Vec::new();
    for contract in app.state.contracts_of(pk).await? {
        let Some(token) = app.state.stored_grant(pk, &contract).await? else {
            continue;
        };
        let Some(grant) = parse_stored(&token) else {
            continue;
        };
        // Only a transfer of this user: never another user's as theirs.
        let transfer = match crate::grants::transfer_id_of(app, pk, &contract, &grant).await? {
            Some(id) => app
                .state
                .transfer(&id)
                .await?
                .filter(|t| t.user == pk)
                .map(|t| TransferView::of(&t)),
            None => None,
        };
        let scopes = grant
            .scopes()
            .map(|s| s.iter().map(describe).collect())
            .unwrap_or_default();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let since = grant
            .date()
            .and_then(protocol::anychain::Value::as_f64)
            .map(|d| when(d as u64))
            .unwrap_or_default();
        out.push(ClientView {
            reexport: reexport_on(app, pk, &contract).await?,
            name: client_name(&grant),
            domain: grant
                .contract()
                .client()
                .ok()
                .and_then(|c| c.domain())
                .unwrap_or_default()
                .to_owned(),
            revoked: grant.is_revoked(),
            since,
            scopes,
            transfer,
            grant_json: super::authorize::script_json(&token),
            contract,
        });
    }
    out.sort_by(|a, b| a.revoked.cmp(&b.revoked).then(a.name.cmp(&b.name)));
    Ok(out)
}

/// `GET /dashboard`.
pub async fn page(app: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let session = Session::load(&app, &req).await?;
    let Some(user) = session.user.clone() else {
        return Ok(see_other(&app, &session, "/login?next=/dashboard"));
    };
    let dumps = app
        .state
        .dumps(&user.pk)
        .await?
        .into_iter()
        .map(|d: DumpRecord| DumpView {
            provider_name: super::catalog::provider_name(&d.provider),
            provider: d.provider,
            name: d.name,
            size: d.size,
            uploaded: when(d.uploaded_ms),
        })
        .collect();
    let clients = clients_of(&app, &user.pk).await?;
    let grants = app
        .state
        .grant_history(&user.pk)
        .await?
        .iter()
        .take(100)
        .filter_map(|t| parse_stored(t))
        .map(|g| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let at = g
                .date()
                .and_then(protocol::anychain::Value::as_f64)
                .map(|d| when(d as u64))
                .unwrap_or_default();
            let what = if g.is_revoked() {
                "revoked".to_owned()
            } else {
                let n = g.scopes().map(|s| s.len()).unwrap_or(0);
                format!("granted {n} scope(s)")
            };
            GrantLine {
                when: at,
                client: client_name(&g),
                what,
            }
        })
        .collect();
    let mut events = Vec::new();
    for json in app
        .state
        .list_range(&format!("web:history:{}", user.pk), 100)
        .await?
    {
        let Ok(e) = serde_json::from_str::<Event>(&json) else {
            continue;
        };
        let (transfer, state) = match &e.transfer {
            Some((id, generation)) => {
                let state = match app.state.transfer(id).await? {
                    Some(t) if t.user != user.pk => "replaced by a later run".to_owned(),
                    Some(t) if t.generation == *generation => {
                        format!(
                            "{} ({} of {} bytes)",
                            t.state.as_str(),
                            t.bytes_done,
                            t.bytes_total
                        )
                    }
                    Some(_) => "replaced by a later run".to_owned(),
                    None => "expired".to_owned(),
                };
                (
                    format!("{}… run {generation}", id.get(..10).unwrap_or(id)),
                    state,
                )
            }
            None => (String::new(), String::new()),
        };
        events.push(EventLine {
            when: when(e.at_ms),
            kind: e.kind,
            client: e.client,
            transfer,
            state,
        });
    }
    let chrome = Chrome::new(&app, &session, "Your data bank");
    let body = DashboardPage {
        chrome: &chrome,
        dumps,
        providers: providers(),
        clients,
        grants,
        events,
        max_dump_bytes: app.config.max_dump_bytes,
    }
    .render();
    Ok(html(&app, &session, &chrome, StatusCode::OK, body))
}

/// `GET /web/transfers`: the transfers of the user's clients (polled by
/// the dashboard).
pub async fn transfers(
    app: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load(&app, &req).await?;
    let user = session.require_user()?;
    let clients = clients_of(&app, &user.pk).await?;
    let list: Vec<_> = clients
        .iter()
        .map(|c| serde_json::json!({"contract": c.contract, "revoked": c.revoked, "transfer": c.transfer}))
        .collect();
    Ok(super::accounts::json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({"status": "ok", "clients": list}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostGrant {
    grant: String,
}

/// `POST /web/grants {grant}` (JSON, CSRF header): stores a grant the
/// logged-in user signed, typically the revocation of the dashboard's
/// revoke button. A newer revocation stops the transfer and tells the
/// client (the start request with the revoked grant, then the finish).
pub async fn post_grant(
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load_checked(&app, &req).await?;
    let user = session.require_user()?;
    let input: PostGrant = json_body(&body)?;
    let grant = checked_grant(&app, &input.grant)?;
    if grant.signer_b64() != user.pk {
        return Err(ApiError::forbidden(
            "not_yours",
            "the grant is not signed by the logged-in user's key",
        ));
    }
    let effective = accept_grant(&app, &input.grant, None).await?;
    let contract = effective
        .grant
        .contract_hash()
        .map_err(|e| token_error(e, "grant"))?
        .to_b64();
    let mut transfer = None;
    if effective.stored && effective.grant.is_revoked() {
        let (id, begin) = start_transfer(&app, &effective.grant).await?;
        transfer = Some((id, begin.generation));
    }
    if effective.stored {
        let kind = if effective.grant.is_revoked() {
            "revoked"
        } else {
            "granted"
        };
        record_event(
            &app,
            &user.pk,
            kind,
            &contract,
            &client_name(&effective.grant),
            transfer.clone(),
        )
        .await;
    }
    Ok(super::accounts::json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({
            "status": "ok",
            "stored": effective.stored,
            "revoked": effective.grant.is_revoked(),
            "contract": contract,
            "transfer": transfer.map(|(id, _)| id),
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reexport {
    contract: String,
    enabled: bool,
}

/// `POST /web/reexport {contract, enabled}` (JSON, CSRF header): whether a
/// newer dump of a provider the grant covers starts a fresh transfer.
pub async fn set_reexport(
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load_checked(&app, &req).await?;
    let user = session.require_user()?;
    let input: Reexport = json_body(&body)?;
    if app
        .state
        .stored_grant(&user.pk, &input.contract)
        .await?
        .is_none()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no grant of yours for this contract",
        ));
    }
    let key = reexport_key(&user.pk, &input.contract);
    if input.enabled {
        app.state.kv_set(&key, "1", None).await?;
    } else {
        let _ = app.state.kv_delete(&key).await?;
    }
    Ok(super::accounts::json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({"status": "ok", "enabled": input.enabled}),
    ))
}
