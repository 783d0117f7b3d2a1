//! Account deletion: `POST /web/account/delete {verifier, revocations}`
//! (logged in, CSRF header). The current password's verifier (throttled
//! like a login) confirms it; `revocations` are the withdrawals, signed in
//! the browser, of every agreement the user holds (the bank cannot sign
//! for the user). Nothing changes unless all of that checks. Then, in this
//! order:
//! 1. the dumps: storage objects and records (transfers built from them
//!    are cancelled, as a dump deletion does), then every archive built for
//!    the user;
//! 2. the agreements: each revocation is stored and announced exactly as
//!    the dashboard's Withdraw does (the running transfer is superseded,
//!    the client is told to delete what it received);
//! 3. the web records: re-export switches, delivered records, history,
//!    known devices, every session, the account and its key's username;
//! 4. the user's records in the state (grants, history, binding, usage).
//!
//! Afterwards the name and the key are free, login fails as for an unknown
//! name, and the login page says the account is gone.

use super::json_with_session;
use super::login::authenticate;
use super::record::account_key;
use super::throttle::forget_devices;
use crate::error::ApiError;
use crate::grants::{accept_grant, checked_grant, start_transfer, token_error};
use crate::site::dashboard::{forget_contract, parse_stored};
use crate::site::extract::UserJson;
use crate::site::session::Session;
use crate::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use runtime::state::{WebKey, WebList};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccount {
    verifier: String,
    /// Revocations of every agreement held (tokens).
    #[serde(default)]
    revocations: Vec<String>,
}

/// A checked revocation: its token and the contract hash it withdraws.
struct Withdrawal {
    token: String,
    contract: String,
}

/// Checks the revocations: each signed by `pk`, revoked, readable; and
/// together they withdraw every agreement `pk` holds.
async fn checked_withdrawals(
    app: &AppState,
    pk: &str,
    tokens: &[String],
) -> Result<Vec<Withdrawal>, ApiError> {
    let mut out = Vec::new();
    for token in tokens {
        let grant = checked_grant(app, token)?;
        if grant.signer_b64() != pk {
            return Err(ApiError::forbidden(
                "not_yours",
                "a revocation is not signed by the logged-in user's key",
            ));
        }
        if !grant.is_revoked() {
            return Err(ApiError::bad_request(
                "not_revoked",
                "deleting the account withdraws agreements with revocations, not grants",
            ));
        }
        let contract = grant
            .contract_hash()
            .map_err(|e| token_error(e, "revocation"))?
            .to_b64();
        out.push(Withdrawal {
            token: token.clone(),
            contract,
        });
    }
    for contract in app.state.contracts_of(pk).await? {
        let held = app
            .state
            .stored_grant(pk, &contract)
            .await?
            .and_then(|t| parse_stored(&t))
            .is_some_and(|g| !g.is_revoked());
        if held && !out.iter().any(|w| w.contract == contract) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "revocation_needed",
                "every agreement must be withdrawn before the account goes: reload the page and try again",
            ));
        }
    }
    Ok(out)
}

/// `POST /web/account/delete` (see the module documentation).
pub async fn delete_account(
    req: HttpRequest,
    input: UserJson<DeleteAccount>,
) -> Result<HttpResponse, ApiError> {
    let UserJson {
        app,
        session,
        user,
        body: input,
    } = input;
    let (username, record, _) = authenticate(&app, &req, &user.username, &input.verifier).await?;
    let pk = record.public_key;
    if pk != user.pk {
        return Err(ApiError::forbidden(
            "not_yours",
            "this session is not of this account",
        ));
    }
    let withdrawals = checked_withdrawals(&app, &pk, &input.revocations).await?;
    let contracts = app.state.contracts_of(&pk).await?;
    // 1. The dumps, then every archive built for the user.
    let storage_error = |e: runtime::archives::ArchiveError| ApiError::unavailable("storage", e);
    for dump in app.state.dumps(&pk).await? {
        let _existed = app
            .state
            .delete_dump(&pk, &dump.provider, &dump.name)
            .await?;
        app.storage
            .delete(&dump.key)
            .await
            .map_err(|e| ApiError::unavailable("storage", e))?;
        runtime::archives::dump_deleted(&app.state, &app.storage, &pk, &dump.key)
            .await
            .map_err(storage_error)?;
    }
    runtime::archives::user_deleted(&app.state, &app.storage, &pk)
        .await
        .map_err(storage_error)?;
    // 2. The agreements, withdrawn as the dashboard withdraws them.
    for w in &withdrawals {
        let effective = accept_grant(&app, &w.token, None).await?;
        if effective.stored && effective.grant.is_revoked() {
            let (id, begin) = start_transfer(&app, &effective.grant).await?;
            tracing::info!(user = %pk, transfer = %id, generation = begin.generation, "account deleted: agreement withdrawn");
        }
    }
    // 3. The web records.
    for contract in &contracts {
        forget_contract(&app, &pk, contract).await?;
    }
    let _existed = app.state.list_delete(&WebList::History(&pk)).await?;
    forget_devices(&app, &username).await?;
    Session::end_all(&app, &pk).await?;
    let _existed = app.state.kv_delete(&account_key(&username)).await?;
    let _existed = app.state.kv_delete(&WebKey::UserOfKey(&pk)).await?;
    // 4. The user's records.
    app.state.forget_user(&pk).await?;
    tracing::info!(user = %pk, "web account deleted");
    let session = Session::logout(&app, &session).await?;
    Ok(json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({"status": "ok", "redirect": "/login?deleted=1"}),
    ))
}
