//! `PUT {base}{id}`: the start of a transfer (generation).

use std::fs;
use std::io;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::http::StatusCode;
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use protocol::alias::{AliasError, Grant, GRANT};
use protocol::anychain::Limits;

use super::{begin, blocking, check_names, end, header, Reject, START_LIMIT};
use crate::body::BodyReader;
use crate::store::{bump, persist, GrantSummary, Shared};

/// `PUT {base}{id}`: verify the grant, store it, wipe the transfer's data.
pub(crate) async fn start(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (call, fault) = begin(&shared, &req);
    bump(&shared.counters.starts);
    let mut reader = BodyReader::new(payload, &shared.settings.limits);
    let body = reader.read_all(START_LIMIT).await;
    let response = match (fault, body) {
        (Some(r), _) => r,
        (None, Err(r)) => r.response(),
        (None, Ok(body)) => {
            match do_start(&req, &id, &body, &shared, call.faults.reference_mode).await {
                Ok(()) => HttpResponse::Ok().finish(),
                Err(r) => r.response(),
            }
        }
    };
    end(&shared, call, reader.received, response, false).await
}

/// The `grant` parameter: a JSON body's `grant` key, otherwise the form
/// field.
fn grant_param(req: &HttpRequest, body: &[u8]) -> Option<String> {
    let is_json = header(req, CONTENT_TYPE).is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    });
    if is_json {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        return value.get("grant")?.as_str().map(str::to_owned);
    }
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "grant")
        .map(|(_, v)| v.into_owned())
}

/// With grant-hash ids, a revocation is a new grant with its own hash: it
/// is accepted at the id of the grant it revokes (held here, same user and
/// same contract), where that grant's data was pushed.
fn revokes_held(shared: &Shared, id: &str, grant: &Grant) -> bool {
    if shared.settings.push_id != protocol::alias::PushId::Grant || !grant.is_revoked() {
        return false;
    }
    let Some(slot) = shared.slot(id) else {
        return false;
    };
    let st = slot.state();
    let same_contract = match (st.grant.contract_hash(), grant.contract_hash()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    same_contract && st.grant.signer() == grant.signer()
}

async fn do_start(
    req: &HttpRequest,
    id: &str,
    body: &[u8],
    shared: &Shared,
    reference: bool,
) -> Result<(), Reject> {
    check_names(id, None)?;
    let Some(token) = grant_param(req, body) else {
        return Err(if reference {
            Reject::internal("missing grant")
        } else {
            Reject::bad("missing_grant", "missing grant")
        });
    };
    let grant = match Grant::from_token(&token, &Limits::default()) {
        Ok(g) => g,
        Err(AliasError::WrongType(t)) if t == GRANT => {
            return Err(Reject::bad("not_a_grant", "not a grant"))
        }
        Err(e) if reference => return Err(Reject::internal(e.to_string())),
        Err(e) => return Err(Reject::bad("invalid_grant", format!("invalid grant: {e}"))),
    };
    let expected = grant
        .transfer_id(shared.settings.push_id)
        .map_err(|e| Reject::bad("invalid_grant", format!("invalid grant: {e}")))?
        .to_b64();
    if expected != id && !revokes_held(shared, id, &grant) {
        return Err(Reject::bad("bad_grant_hash", "bad grant hash"));
    }
    // Only the contracts of the clients this sink receives for.
    let client = grant
        .contract()
        .client()
        .map_err(|e| Reject::bad("invalid_grant", format!("invalid grant: {e}")))?;
    if !shared.knows_client(client.signer()) {
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            "unknown_client",
            "the contract is not signed by a client key this sink receives for",
        ));
    }

    let Some((slot, created)) = shared.slot_or_insert(id, &grant) else {
        return Err(Reject::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "too_many_transfers",
            format!(
                "this sink holds at most {} transfers",
                shared.settings.limits.max_transfers
            ),
        ));
    };
    let _io = slot.io.lock().await;
    let (state, token_to_store) = {
        let mut st = slot.state();
        // As the reference: the grant is stored only when newer, the data is
        // wiped on every start.
        let newer = created || grant.is_newer_than(Some(&st.grant));
        if newer {
            st.transfer.grant = GrantSummary::of(&grant);
            st.grant = grant;
        }
        st.transfer.revoked = st.grant.is_revoked();
        st.transfer.starts += 1;
        st.transfer.finished = false;
        st.transfer.finish_verified = false;
        st.transfer.files.clear();
        (st.transfer.clone(), newer.then_some(token))
    };
    let data = shared.data_dir(id);
    let dir = shared.transfer_dir(id);
    let revoked = state.revoked;
    blocking(move || {
        match fs::remove_dir_all(&data) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::create_dir_all(&data)?;
        persist(&dir, &state, token_to_store.as_deref())
    })
    .await
    .map_err(Reject::io)?;
    tracing::info!(id, revoked, "transfer started");
    Ok(())
}
