//! `GET /request`: the consent page.

use super::check::{by_client_id, check_request, client_key};
use super::summary::{summarize, Warning};
use super::terms::{contract_groups, legal_terms, plain, script_json, GroupView};
use super::{Pending, Refusal, RequestQuery, CLIENT_TTL, PENDING_TTL, UNREADABLE};
use crate::error::ApiError;
use crate::grants::token_error;
use crate::site::accounts::random_id;
use crate::site::pages::{error_page, error_page_with_detail, html, see_other, Chrome};
use crate::site::session::Session;
use crate::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use protocol::alias::Contract;
use runtime::state::WebKey;

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
    let (contractual, consent, legitimate) = match contract_groups(&app.catalog, &contract) {
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
        .kv_set(&WebKey::AuthRequest(&rid), &json, Some(PENDING_TTL))
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
