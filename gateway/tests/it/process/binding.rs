//! Push ids: contracts bound to their first user, grant-hash ids.

use super::*;

/// With contract-hash ids a contract serves the first user who grants it:
/// another user's grant or revocation is refused with 409 `contract_bound`
/// on every route, nothing is stored or queued, and the first user's
/// transfer stays as it was.
#[actix_web::test]
async fn a_contract_is_bound_to_its_first_user() {
    let bank = Bank::start().await;
    bind_user(&bank, 20).await;
    bind_user(&bank, 21).await;
    let c = contract("Bound", "127.0.0.1:9");
    let (status, body, _) = process_async(&bank, &grant(&user_key(20), &c, now())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["transfer"]["id"].as_str().unwrap().to_owned();
    let before = bank.app.state.transfer(&id).await.unwrap().unwrap();
    assert_eq!(bank.depth(Route::Process).await, 1);
    let other = user_key(21);
    for token in [
        grant(&other, &c, now() + 1.0),
        revoked(&other, &c, now() + 2.0),
    ] {
        for path in ["/alias/process", "/alias/grants"] {
            let resp = bank
                .http
                .post(bank.url(path))
                .json(&serde_json::json!({ "grant": token }))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::CONFLICT, "{path}");
            let body: Json = resp.json().await.unwrap();
            assert_eq!(body["code"], "contract_bound", "{path}: {body}");
        }
    }
    let after = bank.app.state.transfer(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            after.user,
            after.grant_hash,
            after.generation,
            after.revoked
        ),
        (before.user, before.grant_hash, before.generation, false)
    );
    let other_pk = protocol::anychain::b64u_encode(other.verifying_key().as_bytes());
    assert_eq!(
        bank.app.state.stored_grant(&other_pk, &id).await.unwrap(),
        None
    );
    assert_eq!(bank.depth(Route::Process).await, 1, "nothing queued for B");
    bank.cleanup().await;
}

/// With grant-hash ids contracts are not bound (each grant has its own
/// id), and a user's newer grant cancels the user's previous transfer; a
/// revocation is announced at the id the data went to.
#[actix_web::test]
async fn grant_hash_ids_route_revocations_to_the_pushed_id() {
    let bank = Bank::start_with(&[("ALIAS_PUSH_ID", "grant")]).await;
    bind_user(&bank, 22).await;
    bind_user(&bank, 23).await;
    let c = contract("Grant ids", "127.0.0.1:9");
    let first = grant(&user_key(22), &c, now());
    let (status, body, _) = process_async(&bank, &first).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let first_id = body["transfer"]["id"].as_str().unwrap().to_owned();
    // Another user may use the same contract: another id.
    let (status, body, _) = process_async(&bank, &grant(&user_key(23), &c, now())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_ne!(body["transfer"]["id"], first_id.as_str());
    // The first user's newer grant runs under its own id and cancels the first.
    let second = grant(&user_key(22), &c, now() + 1.0);
    let (status, body, _) = process_async(&bank, &second).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let second_id = body["transfer"]["id"].as_str().unwrap().to_owned();
    assert_ne!(second_id, first_id);
    let t = bank.app.state.transfer(&first_id).await.unwrap().unwrap();
    assert_eq!(t.state, TransferState::Cancelled, "{t:?}");
    // The revocation goes where the data went: the second grant's id.
    let resp = bank
        .http
        .post(bank.url("/alias/grants"))
        .json(&serde_json::json!({ "grant": revoked(&user_key(22), &c, now() + 2.0) }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Json = resp.json().await.unwrap();
    assert_eq!(body["transfer"]["id"], second_id.as_str(), "{body}");
    let t = bank.app.state.transfer(&second_id).await.unwrap().unwrap();
    assert!(t.revoked && t.generation == 2, "{t:?}");
    assert!(t.push_url.ends_with(&second_id));
    bank.cleanup().await;
}
