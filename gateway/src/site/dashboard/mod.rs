//! The user's dashboard: dumps (uploaded, listed and deleted by the
//! browser with signed requests to `/alias/dumps`), the clients holding
//! grants with what each may see and its transfer, the history of grants
//! and transfers, a revoke button and the re-export switch per client.

mod actions;
mod page;
mod words;

pub use actions::{form_without_script, post_grant, retry, set_reexport, transfers};
pub use page::page;
pub use words::{human_bytes, state_words, when, Delivered, TransferView};

use crate::error::ApiError;
use crate::AppState;
use protocol::alias::Grant;
use protocol::anychain::{from_json_str, Limits};
use runtime::state::{now_ms, WebKey, WebList};
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
        .list_push(&WebList::History(pk), &json, HISTORY_KEEP)
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

fn reexport_key<'a>(pk: &'a str, contract: &'a str) -> WebKey<'a> {
    WebKey::Reexport { pk, contract }
}

/// Whether re-export is on for a user's contract.
pub async fn reexport_on(app: &AppState, pk: &str, contract: &str) -> Result<bool, ApiError> {
    Ok(app
        .state
        .kv_get(&reexport_key(pk, contract))
        .await?
        .is_some())
}

fn delivered_key<'a>(pk: &'a str, contract: &'a str) -> WebKey<'a> {
    WebKey::Delivered { pk, contract }
}

/// Forgets the web records of a user's contract (the account is deleted):
/// its re-export switch and delivered record.
pub async fn forget_contract(app: &AppState, pk: &str, contract: &str) -> Result<(), ApiError> {
    let _existed = app.state.kv_delete(&reexport_key(pk, contract)).await?;
    let _existed = app.state.kv_delete(&delivered_key(pk, contract)).await?;
    Ok(())
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
