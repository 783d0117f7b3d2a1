//! The fast path of `POST /alias/process`: a consented grant (with
//! contract-hash push ids) goes to the state in one round trip
//! ([`runtime::state::GrantStore::take_grant`]), then its job is published
//! and its confirm awaited. Confirms are per publish on the one publisher
//! channel, so concurrent requests share the channel's confirm flow; a
//! request is only answered once its own job is confirmed.

use crate::error::ApiError;
use crate::grants::{contract_bound, stored_grant, token_error, unknown_user};
use crate::transfers::status_json;
use crate::AppState;
use protocol::alias::{Grant, PushId};
use runtime::jobs::{self, ProcessJob};
use runtime::mq::Route;
use runtime::state::{
    Begin, GrantIntake, Intake, KvEntry, NewTransfer, TransferIntake, TransferState,
};

/// Queues the process job of generation `generation` of transfer `id`,
/// waiting for the broker's confirm; when it cannot be queued the
/// generation fails (nothing would ever run it).
pub(crate) async fn queue_job(app: &AppState, id: &str, generation: u64) -> Result<(), ApiError> {
    let job = ProcessJob {
        transfer: id.to_owned(),
        generation,
    };
    let published = match jobs::encode(&job) {
        Ok(body) => app
            .broker
            .publish(Route::Process, &body, &job.message_id())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = published {
        let reason = format!("could not queue the job: {e}");
        if let Err(s) = app
            .state
            .transition(
                id,
                generation,
                &[TransferState::Accepted],
                TransferState::Failed,
                Some(&reason),
            )
            .await
        {
            tracing::error!(transfer = %id, error = %s, "could not record the failed queueing; the generation stays accepted");
        }
        return Err(ApiError::unavailable("job queue", e));
    }
    Ok(())
}

/// A consented grant taken in at once (contract-hash push ids).
pub(crate) enum TakenIn {
    /// Stored, its transfer begun (job queued and confirmed) or joined.
    Started {
        /// The transfer id.
        id: String,
        /// The generation begun or joined.
        begin: Begin,
        /// The transfer's status document.
        status: serde_json::Value,
        /// The transfer's capability.
        access: String,
    },
    /// A stored grant as new or newer stays the effective one.
    Kept(Grant),
}

/// With contract-hash push ids, a consented grant goes to the state in one
/// step ([`runtime::state::GrantStore::take_grant`]: user check, contract
/// claim, `updateGrant`, new generation and capability in one round trip),
/// then its job is queued. Leaves the state as
/// [`crate::grants::accept_grant`] then
/// [`crate::grants::start_transfer`] and
/// [`crate::access::issue_capability`] do.
pub(crate) async fn take_in(app: &AppState, grant: &Grant) -> Result<TakenIn, ApiError> {
    let user = grant.signer_b64();
    let id = grant
        .contract_hash()
        .map_err(|e| token_error(e, "grant"))?
        .to_b64();
    let grant_hash = grant
        .grant_hash()
        .map_err(|e| token_error(e, "grant"))?
        .to_b64();
    let push_url = grant
        .push_url(PushId::Contract)
        .map_err(|e| token_error(e, "grant"))?;
    let token = grant.to_token();
    let (access, capability_hash) = crate::access::new_capability()?;
    let capability_key = crate::access::capability_key(&id, &capability_hash);
    let date = grant
        .date()
        .and_then(protocol::anychain::Value::as_f64)
        .unwrap_or(0.0);
    let intake = GrantIntake {
        user: &user,
        contract_hash: &id,
        date_ms: date,
        token: &token,
        claim_contract: true,
        begin: Some(TransferIntake {
            id: &id,
            transfer: NewTransfer {
                grant_token: &token,
                grant_hash: &grant_hash,
                user: &user,
                push_url: &push_url,
                revoked: false,
            },
            capability: Some(KvEntry {
                key: capability_key,
                value: &user,
                ttl: app.config.finished_ttl,
            }),
        }),
    };
    let (begin, transfer, files) = match app.state.take_grant(&intake).await? {
        Intake::UnknownUser => return Err(unknown_user()),
        Intake::ContractBound { .. } => {
            tracing::warn!(contract = %id, %user, "refused a grant for a contract bound to another user");
            return Err(contract_bound());
        }
        Intake::Kept { effective } => return Ok(TakenIn::Kept(stored_grant(&effective)?)),
        Intake::Stored => {
            return Err(ApiError::unavailable(
                "state",
                "the grant was stored but no transfer begun",
            ))
        }
        Intake::Begun {
            begin,
            transfer,
            files,
        } => (begin, transfer, files),
    };
    if begin.foreign {
        tracing::warn!(transfer = %id, %user, "refused to touch another user's transfer");
        return Err(contract_bound());
    }
    if let Some(old) = begin.superseded {
        tracing::warn!(transfer = %id, old, new = begin.generation, "generation superseded by a newer grant");
    }
    if !begin.joined {
        if let Err(e) = queue_job(app, &id, begin.generation).await {
            // Nobody will hold this capability: do not leave it behind.
            if let Err(s) = app.state.kv_delete(&capability_key).await {
                tracing::warn!(transfer = %id, error = %s, "could not withdraw the capability of a transfer that failed to queue");
            }
            return Err(e);
        }
    }
    let status = transfer
        .as_ref()
        .map_or(serde_json::Value::Null, |t| status_json(t, &files));
    Ok(TakenIn::Started {
        id,
        begin,
        status,
        access,
    })
}
