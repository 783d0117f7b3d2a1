//! The preview of a shown request: what this client would receive from the
//! dumps the bank holds, before the user answers.
//!
//! `POST /web/preview?request={id}` (JSON, CSRF header) starts one for the
//! request shown to this user under `id`: a pending record in the state
//! ([`runtime::state::PreviewStore`]: one at a time per user and contract,
//! [`PreviewLimits::per_hour`] an hour per user) and a [`PreviewJob`] on
//! the preview queue, which a processor answers with a dry run of the
//! build over this user's dumps. `GET /web/preview?request={id}` reads it
//! back. Both find the contract and the user through the shown request, so
//! nobody reads or starts a preview of another's request, and a contract
//! bound to another user is refused as at agreement.
//!
//! The answer carries sample records as raw text (cut by the processor):
//! the page shows them with `textContent`, never as markup.

use super::decide::pending;
use crate::error::ApiError;
use crate::grants::contract_bound;
use crate::site::catalog::{describe, provider_name};
use crate::site::session::Session;
use crate::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use protocol::alias::{decode_verified, Contract, PushId};
use protocol::scope::Scope;
use runtime::jobs::{self, PreviewJob};
use runtime::mq::Route;
use runtime::state::{Preview, PreviewKey, PreviewLimits, PreviewStart, PreviewState};
use serde::Deserialize;
use serde_json::{json, Value};

/// The query of both routes.
#[derive(Debug, Deserialize)]
pub struct PreviewQuery {
    request: String,
}

/// The user's key and the scopes of the contract of a shown request, with
/// the words the page shows for each scope and provider.
struct Target {
    key: PreviewKey,
    scopes: Vec<String>,
    words: Value,
}

async fn target(app: &AppState, session: &Session, rid: &str) -> Result<Target, ApiError> {
    let p = pending(app, rid, session).await?;
    let value = decode_verified(&p.contract, &app.config.limits)
        .map_err(|e| ApiError::unavailable("stored contract", e))?;
    let contract =
        Contract::new(&value).map_err(|e| ApiError::unavailable("stored contract", e))?;
    let hash = contract
        .hash()
        .map_err(|e| ApiError::unavailable("stored contract", e))?
        .to_b64();
    if app.config.push_id == PushId::Contract {
        let owner = app.state.contract_owner(&hash).await?;
        if owner.is_some_and(|o| o != p.pk) {
            return Err(contract_bound());
        }
    }
    let mut scopes: Vec<String> = Vec::new();
    let mut labels = serde_json::Map::new();
    let mut providers = serde_json::Map::new();
    for entry in contract
        .scope_entries()
        .map_err(|e| ApiError::unavailable("stored contract", e))?
    {
        let scope = Scope::from_value(entry.scope).map_err(|e| {
            ApiError::bad_request("bad_scope", format!("a scope is not understood: {e}"))
        })?;
        let text = scope.display();
        if !scopes.contains(&text) {
            let d = describe(&app.catalog, entry.scope);
            let label = match d.restrictions.as_str() {
                "" => d.description,
                r => {
                    // "only the fields title, time" reads as its own sentence.
                    let mut chars = r.chars();
                    let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
                    let r = first.unwrap_or_default() + chars.as_str();
                    let end = if r.ends_with('.') { "" } else { "." };
                    format!("{} {r}{end}", d.description)
                }
            };
            labels.insert(text.clone(), Value::String(label));
            providers.insert(
                scope.provider.clone(),
                Value::String(provider_name(&app.catalog, &scope.provider)),
            );
            scopes.push(text);
        }
    }
    let words = json!({"labels": labels, "providers": providers});
    let key = PreviewKey::new(&p.pk, &hash)
        .ok_or_else(|| ApiError::unavailable("preview key", "not URL-safe"))?;
    Ok(Target { key, scopes, words })
}

/// The answer: the record, or `{"state":"none"}`, with the words of the
/// contract's scopes and providers (`words.labels` by scope text,
/// `words.providers` by provider id), so the page names them as the
/// consent page does rather than by their raw strings.
fn answer(status: StatusCode, preview: Option<&Preview>, words: &Value) -> HttpResponse {
    let mut body = match preview {
        Some(p) => json!({
            "state": match p.state {
                PreviewState::Pending => "pending",
                PreviewState::Ready { .. } => "ready",
                PreviewState::Failed { .. } => "failed",
            },
            "preview": p,
        }),
        None => json!({"state": "none"}),
    };
    body["words"] = words.clone();
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}

/// `GET /web/preview?request={id}`: the preview of a request shown to this
/// user (`state`: `none`, `pending`, `ready` or `failed`).
pub async fn get_preview(
    app: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<PreviewQuery>,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load(&app, &req).await?;
    let t = target(&app, &session, &query.request).await?;
    let preview = app.state.preview(&t.key).await?;
    Ok(answer(StatusCode::OK, preview.as_ref(), &t.words))
}

/// `POST /web/preview?request={id}` (CSRF header): starts a preview of a
/// request shown to this user. `202` with the pending record when started
/// or already running; `429 preview_limit` with `Retry-After` past the
/// hourly limit; `503` when the job could not be queued (nothing stays
/// pending then).
pub async fn start_preview(
    app: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<PreviewQuery>,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load_checked(&app, &req).await?;
    let t = target(&app, &session, &query.request).await?;
    let limits = PreviewLimits::DEFAULT;
    match app.state.start_preview(&t.key, &t.scopes, &limits).await? {
        PreviewStart::Busy(p) => Ok(answer(StatusCode::ACCEPTED, Some(&p), &t.words)),
        PreviewStart::Limited { retry_after } => {
            let secs = u16::try_from(retry_after.as_secs().max(1)).unwrap_or(u16::MAX);
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "preview_limit",
                format!(
                    "you asked for {} previews this hour; the next one can start in {} minutes",
                    limits.per_hour,
                    secs.div_ceil(60)
                ),
            )
            .retry_after(secs))
        }
        PreviewStart::Started(p) => {
            let job = PreviewJob {
                user: t.key.user().to_owned(),
                contract: t.key.contract().to_owned(),
                id: p.id.clone(),
            };
            let body = jobs::encode(&job).map_err(|e| ApiError::unavailable("preview job", e))?;
            if let Err(e) = app
                .broker
                .publish(Route::Preview, &body, &job.message_id())
                .await
            {
                // Nothing will answer this one: it must not block the next.
                if let Err(f) = app.state.forget_preview(&t.key).await {
                    tracing::warn!(error = %f, "could not forget an unqueued preview");
                }
                return Err(ApiError::unavailable("message queue", e));
            }
            Ok(answer(StatusCode::ACCEPTED, Some(&p), &t.words))
        }
    }
}
