//! Re-export: when a user uploads a newer dump of a provider, every active
//! grant of theirs that covers the provider and has re-export switched on
//! (on the dashboard, off by default) gets a fresh transfer, queued like
//! any other (a new generation of the contract's transfer, whose start
//! request tells the client to drop the earlier data).

use super::dashboard::{client_name, parse_stored, record_event, reexport_on};
use crate::AppState;
use protocol::scope::Scope;

/// Called after a dump of `provider` was stored for `user`; returns the
/// transfers started. Failures are logged: the upload itself succeeded.
pub async fn after_upload(app: &AppState, user: &str, provider: &str) -> Vec<String> {
    match run(app, user, provider).await {
        Ok(started) => started,
        Err(e) => {
            tracing::warn!(%user, %provider, error = %e, "re-export after upload failed");
            Vec::new()
        }
    }
}

async fn run(
    app: &AppState,
    user: &str,
    provider: &str,
) -> Result<Vec<String>, crate::error::ApiError> {
    let mut started = Vec::new();
    for contract in app.state.contracts_of(user).await? {
        if !reexport_on(app, user, &contract).await? {
            continue;
        }
        let Some(grant) = app
            .state
            .stored_grant(user, &contract)
            .await?
            .and_then(|t| parse_stored(&t))
        else {
            continue;
        };
        if grant.is_revoked() {
            continue;
        }
        let covers = grant.scopes().is_ok_and(|scopes| {
            scopes
                .iter()
                .filter_map(|s| Scope::from_value(s).ok())
                .any(|s| s.provider == provider)
        });
        if !covers {
            continue;
        }
        // Only the user's own transfers: a contract another user holds is
        // never re-exported (start_transfer refuses it too).
        let (id, begin) = match crate::grants::start_transfer(app, &grant).await {
            Ok(started) => started,
            Err(e) if e.code == "contract_bound" => {
                tracing::warn!(%user, %contract, "not re-exported: the contract is bound to another user");
                continue;
            }
            Err(e) => return Err(e),
        };
        tracing::info!(%user, transfer = %id, generation = begin.generation, joined = begin.joined, "re-export queued");
        record_event(
            app,
            user,
            "reexport",
            &contract,
            &client_name(&grant),
            Some((id.clone(), begin.generation)),
        )
        .await;
        started.push(id);
    }
    Ok(started)
}
