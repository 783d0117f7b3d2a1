//! `GET /dashboard`: the user's dumps, clients, grants and history.

use super::{
    client_name, delivered_key, human_bytes, parse_stored, reexport_on, state_words, when,
    Delivered, Event, TransferView,
};
use crate::error::ApiError;
use crate::site::catalog::{describe, providers, Described};
use crate::site::pages::{html, see_other, Chrome};
use crate::site::session::Session;
use crate::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use runtime::state::{DumpRecord, WebList};

/// A client holding a grant.
pub struct ClientView {
    pub(super) contract: String,
    name: String,
    domain: String,
    pub(super) revoked: bool,
    since: String,
    since_ms: u64,
    scopes: Vec<Described>,
    pub(super) transfer: Option<TransferView>,
    reexport: bool,
    grant_json: String,
    delivered: Option<Delivered>,
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

pub(super) async fn clients_of(app: &AppState, pk: &str) -> Result<Vec<ClientView>, ApiError> {
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
            Some(id) => match app.state.transfer(&id).await?.filter(|t| t.user == pk) {
                Some(t) => {
                    let note = if t.state.is_terminal() {
                        None
                    } else {
                        app.state.retry_note(&t.id, t.generation).await?
                    };
                    Some(TransferView::of(&t).with_retry(note, t.updated_ms))
                }
                None => None,
            },
            None => None,
        };
        let scopes = grant
            .scopes()
            .map(|s| s.iter().map(|v| describe(&app.catalog, v)).collect())
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
            grant_json: crate::site::authorize::script_json(&token),
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
            provider_name: crate::site::catalog::provider_name(&app.catalog, &d.provider),
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
        .list_range(&WebList::History(&user.pk), 100)
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
        providers: providers(&app.catalog),
        clients,
        grants,
        events,
        max_dump_bytes: app.config.max_dump_bytes,
    }
    .render();
    Ok(html(&app, &session, &chrome, StatusCode::OK, body))
}
