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
    /// Last change, as UTC text (the page shows it in local time).
    pub updated: String,
    /// Last change, ms since the epoch.
    pub updated_ms: u64,
    /// The state in words.
    pub words: String,
    /// What happened, in words for people.
    pub detail: String,
    /// The error or notes as recorded (no URLs), for the technically minded.
    pub technical: String,
    /// Whether a Retry is offered (the run failed).
    pub retry: bool,
    /// Sizes and files in words (`1.2 MB of 3.4 MB, 1 of 2 files`).
    pub sizes: String,
}

/// A size in bytes as people read it (`1.4 MB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} {}", if n == 1 { "byte" } else { "bytes" }),
        _ if v < 10.0 => format!("{v:.1} {}", UNITS[unit]),
        _ => format!("{v:.0} {}", UNITS[unit]),
    }
}

/// A transfer state in words.
pub fn state_words(state: &str, revoked: bool) -> &'static str {
    match (state, revoked) {
        ("accepted", false) => "Waiting to start",
        ("processing", false) => "Preparing your data",
        ("pushing", false) => "Sending",
        ("done", false) => "Delivered",
        ("failed", _) => "Failed",
        ("cancelled", _) => "Stopped",
        ("done", true) => "Client told of the withdrawal",
        (_, true) => "Telling the client of the withdrawal",
        _ => "Unknown",
    }
}

/// An error or note without URLs (the push address with its long id says
/// nothing to a person): each `http(s)://…` becomes "the client".
pub fn without_urls(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            if w.starts_with("http://") || w.starts_with("https://") {
                "the client"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
        let state = t.state.as_str();
        TransferView {
            id: t.id.clone(),
            words: state_words(state, t.revoked).to_owned(),
            retry: state == "failed" && !t.revoked,
            updated_ms: t.updated_ms,
            state: state.to_owned(),
            generation: t.generation,
            bytes_done: t.bytes_done,
            bytes_total: t.bytes_total,
            files_done: t.files_done,
            files_total: t.files_total,
            updated: when(t.updated_ms),
            sizes: if t.bytes_total == 0 {
                String::new()
            } else {
                format!(
                    "{} of {}, {} of {} files",
                    human_bytes(t.bytes_done),
                    human_bytes(t.bytes_total),
                    t.files_done,
                    t.files_total
                )
            },
            detail: match (state, t.revoked) {
                ("failed", false) => "The service did not accept the data, and the data bank stopped trying. You can retry once the service works again.".to_owned(),
                ("failed", true) => "The service could not be told of the withdrawal.".to_owned(),
                ("cancelled", _) => "This transfer was stopped before it finished.".to_owned(),
                _ => String::new(),
            },
            technical: without_urls(&detail),
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
    since_ms: u64,
    scopes: Vec<Described>,
    transfer: Option<TransferView>,
    reexport: bool,
    grant_json: String,
    delivered: Option<Delivered>,
}

/// What a client had received when the user withdrew (kept after the
/// revocation, whose own run delivers nothing).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivered {
    /// Bytes delivered.
    pub bytes: u64,
    /// Archives delivered.
    pub files: u64,
    /// When the delivery finished (ms since the epoch).
    pub at_ms: u64,
}

impl Delivered {
    /// What was delivered, in words (`2 files (11 kB)`).
    pub fn words(&self) -> String {
        format!(
            "{} file{} ({})",
            self.files,
            if self.files == 1 { "" } else { "s" },
            human_bytes(self.bytes)
        )
    }

    /// When, as UTC text (the page shows it in local time).
    pub fn when(&self) -> String {
        when(self.at_ms)
    }
}

fn delivered_key(pk: &str, contract: &str) -> String {
    format!("web:delivered:{pk}:{contract}")
}

/// Called before a revocation's run starts: keeps the record of what the
/// client had received (the last done run), for the dashboard.
pub async fn remember_delivered(app: &AppState, pk: &str, contract: &str) -> Result<(), ApiError> {
    let Some(grant) = app
        .state
        .stored_grant(pk, contract)
        .await?
        .and_then(|t| parse_stored(&t))
    else {
        return Ok(());
    };
    if grant.is_revoked() {
        return Ok(());
    }
    let Some(id) = crate::grants::transfer_id_of(app, pk, contract, &grant).await? else {
        return Ok(());
    };
    let Some(t) = app.state.transfer(&id).await?.filter(|t| t.user == pk) else {
        return Ok(());
    };
    if t.state.as_str() != "done" || t.revoked || t.files_done == 0 {
        return Ok(());
    }
    let record = Delivered {
        bytes: t.bytes_done,
        files: t.files_done,
        at_ms: t.updated_ms,
    };
    let json = serde_json::to_string(&record).map_err(|e| ApiError::unavailable("encoding", e))?;
    app.state
        .kv_set(&delivered_key(pk, contract), &json, None)
        .await?;
    Ok(())
}

struct GrantLine {
    when: String,
    at_ms: u64,
    client: String,
    what: String,
}

struct EventLine {
    when: String,
    at_ms: u64,
    kind: String,
    client: String,
    state: String,
}

struct DumpView {
    provider: String,
    provider_name: String,
    name: String,
    size: String,
    uploaded: String,
    uploaded_ms: u64,
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
        let since_ms = grant
            .date()
            .and_then(protocol::anychain::Value::as_f64)
            .map_or(0, |d| d as u64);
        let since = when(since_ms);
        let delivered = if grant.is_revoked() {
            app.state
                .kv_get(&delivered_key(pk, &contract))
                .await?
                .and_then(|j| serde_json::from_str::<Delivered>(&j).ok())
        } else {
            None
        };
        out.push(ClientView {
            delivered,
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
            since_ms,
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
            size: human_bytes(d.size),
            uploaded: when(d.uploaded_ms),
            uploaded_ms: d.uploaded_ms,
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
            let at_ms = g
                .date()
                .and_then(protocol::anychain::Value::as_f64)
                .map_or(0, |d| d as u64);
            let what = if g.is_revoked() {
                "Withdrawn".to_owned()
            } else {
                let n = g.scopes().map(|s| s.len()).unwrap_or(0);
                format!(
                    "Agreed to {n} kind{} of data",
                    if n == 1 { "" } else { "s" }
                )
            };
            GrantLine {
                when: when(at_ms),
                at_ms,
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
        let state = match &e.transfer {
            Some((id, generation)) => {
                let state = match app.state.transfer(id).await? {
                    Some(t) if t.user != user.pk => "replaced by a later run".to_owned(),
                    Some(t) if t.generation == *generation && t.bytes_total > 0 => {
                        format!(
                            "{} ({} of {})",
                            state_words(t.state.as_str(), t.revoked),
                            human_bytes(t.bytes_done),
                            human_bytes(t.bytes_total)
                        )
                    }
                    Some(t) if t.generation == *generation => {
                        state_words(t.state.as_str(), t.revoked).to_owned()
                    }
                    Some(_) => "replaced by a later run".to_owned(),
                    None => "expired".to_owned(),
                };
                state
            }
            None => String::new(),
        };
        events.push(EventLine {
            when: when(e.at_ms),
            at_ms: e.at_ms,
            kind: match e.kind.as_str() {
                "granted" => "You agreed".to_owned(),
                "revoked" => "You withdrew".to_owned(),
                "reexport" => "Fresh transfer after a new export".to_owned(),
                "retry" => "You retried".to_owned(),
                other => other.to_owned(),
            },
            client: e.client,
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
    if grant.is_revoked() {
        if let Ok(hash) = grant.contract_hash() {
            remember_delivered(&app, &user.pk, &hash.to_b64()).await?;
        }
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    contract: String,
}

/// `POST /web/transfers/retry {contract}` (JSON, CSRF header): a new run of
/// a failed transfer with the user's stored (not withdrawn) grant.
pub async fn retry(
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load_checked(&app, &req).await?;
    let user = session.require_user()?;
    let input: Retry = json_body(&body)?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no agreement of yours with this client",
        )
    };
    let grant = app
        .state
        .stored_grant(&user.pk, &input.contract)
        .await?
        .and_then(|t| parse_stored(&t))
        .ok_or_else(not_found)?;
    if grant.is_revoked() {
        return Err(ApiError::bad_request(
            "revoked",
            "you withdrew this agreement: there is nothing to send",
        ));
    }
    let current =
        match crate::grants::transfer_id_of(&app, &user.pk, &input.contract, &grant).await? {
            Some(id) => app.state.transfer(&id).await?.filter(|t| t.user == user.pk),
            None => None,
        };
    if current
        .as_ref()
        .is_some_and(|t| t.state.as_str() != "failed" && t.state.as_str() != "cancelled")
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_failed",
            "this transfer has not failed: there is nothing to retry",
        ));
    }
    let (id, begin) = start_transfer(&app, &grant).await?;
    record_event(
        &app,
        &user.pk,
        "retry",
        &input.contract,
        &client_name(&grant),
        Some((id, begin.generation)),
    )
    .await;
    Ok(super::accounts::json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({"status": "ok", "generation": begin.generation}),
    ))
}

/// `POST /dashboard`: where the upload form leads when it is submitted
/// before its script runs (the file input has no name: nothing is sent).
pub async fn form_without_script(
    app: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load(&app, &req).await?;
    Ok(super::pages::error_page(
        &app,
        &session,
        StatusCode::BAD_REQUEST,
        "Nothing was uploaded",
        "Uploading needs the dashboard's script, which signs the upload with your key in this browser, and it had not started yet. Go back to your dashboard and try again once the page is ready.",
    ))
}
