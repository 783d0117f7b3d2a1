//! Transfers on the dashboard: seen by their user only, retried after a
//! failure.

use super::*;

#[actix_web::test]
async fn a_transfer_is_seen_with_its_users_session_only() {
    let bank = Bank::start().await;
    let alice = Account::new("alice-sees", 71);
    let bob = Account::new("bob-sees", 72);
    let mut alice_agent = Agent::new(&bank);
    let mut bob_agent = Agent::new(&bank);
    signup(&mut alice_agent, &alice).await;
    signup(&mut bob_agent, &bob).await;
    let token = grant(
        &alice.key,
        &contract("Session client", CLIENT_DOMAIN),
        now(),
    );
    let resp = bank
        .http
        .post(bank.url("/alias/process"))
        .header("Prefer", "respond-async")
        .json(&json!({ "grant": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let body: Json = resp.json().await.unwrap();
    let id = body["transfer"]["id"].as_str().unwrap().to_owned();
    let path = format!("/alias/transfers/{id}");

    let (status, text, _) = alice_agent.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains(&alice.pk()), "{text}");
    let (status, text, _) = bob_agent.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(!text.contains(&alice.pk()), "{text}");
    let (status, _, _) = bob_agent.get(&format!("{path}/events")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A forged cookie is nobody.
    let mut forged = Agent::new(&bank);
    forged.cookie = Some("x".repeat(60));
    let (status, _, _) = forged.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // After logout, the session sees nothing.
    let csrf = alice_agent.csrf.clone();
    let _ = alice_agent
        .post_form("/logout", &[("csrf", csrf.as_str())])
        .await;
    let (status, _, _) = alice_agent.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    bank.cleanup().await;
}

#[actix_web::test]
async fn a_failed_transfer_can_be_retried() {
    let bank = Bank::start().await;
    let mut agent = Agent::new(&bank);
    let account = Account::new("dave", 73);
    signup(&mut agent, &account).await;
    let c = contract("Flaky", CLIENT_DOMAIN);
    let grant = crate::fixtures::grant(&account.key, &c, now());
    let (status, body) = agent
        .post_json("/web/grants", json!({"grant": grant}), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hash = body["contract"].as_str().unwrap().to_owned();
    // Nothing failed yet: no transfer to retry is started from nothing,
    // a running one is not retried.
    let (status, body) = agent
        .post_json("/web/transfers/retry", json!({"contract": hash}), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["generation"], 1);
    let (status, body) = agent
        .post_json("/web/transfers/retry", json!({"contract": hash}), true)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_failed"))
    );
    // Failed (here: stopped): Retry starts a new run; the page offers it.
    bank.app
        .state
        .cancel(&hash, "the client kept failing")
        .await
        .unwrap();
    let (_, page, _) = agent.get("/dashboard").await;
    assert!(page.contains("data-state=\"cancelled\""), "{page}");
    let (status, _) = agent
        .post_json("/web/transfers/retry", json!({"contract": hash}), false)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "CSRF needed");
    let (status, body) = agent
        .post_json("/web/transfers/retry", json!({"contract": hash}), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["generation"], 2);
    // Another user's contract: not found.
    let mut other = Agent::new(&bank);
    signup(&mut other, &Account::new("erin", 74)).await;
    let (status, _) = other
        .post_json("/web/transfers/retry", json!({"contract": hash}), true)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    bank.cleanup().await;
}

/// While the pusher retries a failing client, the dashboard says so: the
/// attempt and when the next try is due (local time in the page, the
/// milliseconds in the JSON); not once the transfer moved on or ended.
#[actix_web::test]
async fn retries_are_shown_with_the_next_attempt() {
    let bank = Bank::start().await;
    let mut agent = Agent::new(&bank);
    let account = Account::new("rita", 75);
    signup(&mut agent, &account).await;
    let c = contract("Failing", CLIENT_DOMAIN);
    let grant = crate::fixtures::grant(&account.key, &c, now());
    let (status, body) = agent
        .post_json("/web/grants", json!({"grant": grant}), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hash = body["contract"].as_str().unwrap().to_owned();
    let (status, body) = agent
        .post_json("/web/transfers/retry", json!({"contract": hash}), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let transfer = |body: &Json| body["clients"][0]["transfer"].clone();
    let (_, listing, _) = agent.get("/web/transfers").await;
    let listing: Json = serde_json::from_str(&listing).unwrap();
    assert_eq!(transfer(&listing)["retry_attempt"], 0, "{listing}");
    assert_eq!(transfer(&listing)["retrying"], "");

    // The pusher noted two failed tries; the next is due in a minute.
    let state = &bank.app.state;
    let next_ms = runtime::state::now_ms() + 60_000;
    state
        .note_retry(
            &hash,
            1,
            next_ms - 1_000,
            std::time::Duration::from_secs(600),
        )
        .await
        .unwrap();
    state
        .note_retry(&hash, 1, next_ms, std::time::Duration::from_secs(600))
        .await
        .unwrap();
    let (_, listing, _) = agent.get("/web/transfers").await;
    let listing: Json = serde_json::from_str(&listing).unwrap();
    let t = transfer(&listing);
    assert_eq!(t["retry_attempt"], 3, "{listing}");
    assert_eq!(t["retry_next_ms"], next_ms);
    assert!(
        t["retrying"]
            .as_str()
            .unwrap()
            .starts_with("Retrying (attempt 3), next try at "),
        "{t}"
    );
    let (_, page, _) = agent.get("/dashboard").await;
    assert!(page.contains("Retrying (attempt 3), next try at"), "{page}");
    assert!(!page.contains(&bank.url("")), "no raw URL");

    // The client answered: the pusher cleared the note.
    state.clear_retry(&hash, 1).await.unwrap();
    let (_, listing, _) = agent.get("/web/transfers").await;
    let listing: Json = serde_json::from_str(&listing).unwrap();
    assert_eq!(transfer(&listing)["retry_attempt"], 0, "{listing}");
    // A note left behind by a transfer that ended is not shown.
    state
        .note_retry(&hash, 1, next_ms, std::time::Duration::from_secs(600))
        .await
        .unwrap();
    state
        .cancel(&hash, "the client kept failing")
        .await
        .unwrap();
    let (_, listing, _) = agent.get("/web/transfers").await;
    let listing: Json = serde_json::from_str(&listing).unwrap();
    assert_eq!(transfer(&listing)["retry_attempt"], 0, "{listing}");
    bank.cleanup().await;
}
