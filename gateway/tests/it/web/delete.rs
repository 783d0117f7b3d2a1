//! Account deletion through the real gateway, Redis and storage: the
//! user's dumps (objects and records), archives, agreements (withdrawn as
//! the dashboard withdraws, the running transfer superseded), sessions,
//! devices and account go; another user's data stays exactly as it was.

use super::*;
use protocol::anychain::Value;
use runtime::archives::{record_build, Build};
use runtime::state::{TransferState, WebKey, WebList};

/// A signed-up user with a dump, an archive build, an agreement and a
/// transfer started by its client.
struct Holder {
    agent: Agent,
    account: Account,
    contract: Value,
    dump_key: String,
    archive_key: String,
    transfer: String,
}

async fn holder(bank: &Bank, name: &str, n: u8) -> Holder {
    let mut agent = Agent::new(bank);
    let account = Account::new(name, n);
    signup(&mut agent, &account).await;
    let pk = account.pk();
    let data = vec![n; 4096];
    let url_path = "/alias/dumps/google/takeout.zip";
    let auth = signed_request(
        &account.key,
        "PUT",
        url_path,
        Some(data.len() as u64),
        now(),
    );
    let resp = bank
        .http
        .put(bank.url(url_path))
        .header("Authorization", format!("Alias {auth}"))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let dump_key = bank.app.state.dumps(&pk).await.unwrap()[0].key.clone();
    // The client's contract, agreed to on the dashboard, and the transfer
    // its client starts.
    let contract = crate::fixtures::contract(&format!("Client of {name}"), CLIENT_DOMAIN);
    let token = crate::fixtures::grant(&account.key, &contract, now());
    let (status, body) = agent
        .post_json("/web/grants", json!({"grant": token}), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let transfer = body["contract"].as_str().unwrap().to_owned();
    let resp = bank
        .http
        .post(bank.url("/alias/process"))
        .header("Prefer", "respond-async")
        .json(&json!({ "grant": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // What the processor would have built for it.
    let prefix = format!("transfers/{transfer}/1");
    let archive_key = format!("{prefix}/google.zip");
    bank.app
        .storage
        .put_bytes(&archive_key, vec![1u8; 100].into())
        .await
        .unwrap();
    let build = Build {
        key: "k".into(),
        generation: 1,
        prefix,
        user: pk.clone(),
        dumps: vec![dump_key.clone()],
        files: vec![],
    };
    record_build(
        &bank.app.state,
        &transfer,
        &build,
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();
    Holder {
        agent,
        account,
        contract,
        dump_key,
        archive_key,
        transfer,
    }
}

fn withdrawal(h: &Holder) -> String {
    crate::fixtures::revoked(&h.account.key, &h.contract, now() + 1.0)
}

async fn delete(h: &mut Holder, verifier: &[u8], revocations: Vec<String>) -> (StatusCode, Json) {
    h.agent
        .post_json(
            "/web/account/delete",
            json!({"verifier": b64u_encode(verifier), "revocations": revocations}),
            true,
        )
        .await
}

#[actix_web::test]
async fn deleting_an_account_takes_everything_of_it_and_nothing_else() {
    let bank = Bank::start().await;
    let state = &bank.app.state;
    let mut ann = holder(&bank, "ann", 81).await;
    let bob = holder(&bank, "bob", 82).await;
    let (ann_pk, bob_pk) = (ann.account.pk(), bob.account.pk());
    // A second session of Ann's, in another browser.
    let mut other = Agent::new(&bank);
    other.get("/login").await;
    assert_eq!(login(&mut other, &ann.account).await.0, StatusCode::OK);
    let bob_before = state.transfer(&bob.transfer).await.unwrap().unwrap();

    // Refused, and nothing changes: a wrong password, a missing withdrawal,
    // a withdrawal signed by someone else, a grant instead of a revocation.
    let w = withdrawal(&ann);
    let (status, body) = delete(&mut ann, &[0; 32], vec![w]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("wrong_password"))
    );
    let verifier = ann.account.verifier.clone();
    let (status, body) = delete(&mut ann, &verifier, vec![]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("revocation_needed"))
    );
    let foreign = crate::fixtures::revoked(&bob.account.key, &ann.contract, now());
    let (status, body) = delete(&mut ann, &verifier, vec![foreign]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_yours"))
    );
    let not_revoked = crate::fixtures::grant(&ann.account.key, &ann.contract, now());
    let (status, body) = delete(&mut ann, &verifier, vec![not_revoked]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("not_revoked"))
    );
    assert_eq!(state.dumps(&ann_pk).await.unwrap().len(), 1);
    assert!(bank
        .app
        .storage
        .head(&ann.dump_key)
        .await
        .unwrap()
        .is_some());
    assert_eq!(state.contracts_of(&ann_pk).await.unwrap().len(), 1);
    let (status, _, _) = other.get("/dashboard").await;
    assert_eq!(status, StatusCode::OK);

    // Deleted.
    let w = withdrawal(&ann);
    let (status, body) = delete(&mut ann, &verifier, vec![w]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["redirect"], "/login?deleted=1");

    // Dumps, objects and records, and the archives built for Ann.
    assert!(state.dumps(&ann_pk).await.unwrap().is_empty());
    assert!(bank
        .app
        .storage
        .head(&ann.dump_key)
        .await
        .unwrap()
        .is_none());
    assert!(bank
        .app
        .storage
        .head(&ann.archive_key)
        .await
        .unwrap()
        .is_none());
    assert!(runtime::archives::build_of(state, &ann.transfer)
        .await
        .unwrap()
        .is_none());
    // The agreement: withdrawn as Withdraw does (a new generation with the
    // revoked grant supersedes the running one; the client is told), then
    // forgotten with the user's records.
    let t = state.transfer(&ann.transfer).await.unwrap().unwrap();
    assert!(t.revoked, "the client is told of the withdrawal");
    assert_eq!(t.generation, 2);
    assert_eq!(t.state, TransferState::Accepted);
    assert!(state.contracts_of(&ann_pk).await.unwrap().is_empty());
    assert!(state.grant_history(&ann_pk).await.unwrap().is_empty());
    assert_eq!(state.binding(&ann_pk).await.unwrap(), None);
    assert!(!state.is_known_user(&ann_pk).await.unwrap());
    // The web records: account, key, history, devices, every session.
    assert_eq!(state.kv_get(&WebKey::Account("ann")).await.unwrap(), None);
    assert_eq!(
        state.kv_get(&WebKey::UserOfKey(&ann_pk)).await.unwrap(),
        None
    );
    for list in [
        WebList::History(&ann_pk),
        WebList::Sessions(&ann_pk),
        WebList::Devices("ann"),
    ] {
        assert!(
            state.list_range(&list, 10).await.unwrap().is_empty(),
            "{list:?}"
        );
    }
    let (status, _, location) = other.get("/dashboard").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the other session ended too");
    assert!(location.unwrap().starts_with("/login"));
    let (status, body, _) = ann.agent.get("/web/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Login fails as for an unknown name, and the login page says why.
    let mut again = Agent::new(&bank);
    again.get("/login").await;
    let (status, body) = login(&mut again, &ann.account).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("wrong_password"))
    );
    let (_, page, _) = again.get("/login?deleted=1").await;
    assert!(page.contains("Your account is deleted"), "{page}");

    // Bob's data is untouched.
    let bob_after = state.transfer(&bob.transfer).await.unwrap().unwrap();
    assert_eq!(
        (bob_after.generation, bob_after.revoked, bob_after.state),
        (bob_before.generation, bob_before.revoked, bob_before.state)
    );
    assert_eq!(state.dumps(&bob_pk).await.unwrap().len(), 1);
    assert!(bank
        .app
        .storage
        .head(&bob.dump_key)
        .await
        .unwrap()
        .is_some());
    assert!(bank
        .app
        .storage
        .head(&bob.archive_key)
        .await
        .unwrap()
        .is_some());
    assert!(runtime::archives::build_of(state, &bob.transfer)
        .await
        .unwrap()
        .is_some());
    assert_eq!(state.contracts_of(&bob_pk).await.unwrap().len(), 1);
    assert!(state.binding(&bob_pk).await.unwrap().is_some());
    assert!(state
        .kv_get(&WebKey::Account("bob"))
        .await
        .unwrap()
        .is_some());
    assert!(!state
        .list_range(&WebList::History(&bob_pk), 10)
        .await
        .unwrap()
        .is_empty());
    let mut bob_agent = Agent::new(&bank);
    bob_agent.get("/login").await;
    assert_eq!(login(&mut bob_agent, &bob.account).await.0, StatusCode::OK);

    // The name and the key are free again.
    let mut fresh = Agent::new(&bank);
    signup(&mut fresh, &ann.account).await;
    bank.cleanup().await;
}
