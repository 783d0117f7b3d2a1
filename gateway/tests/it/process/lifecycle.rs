//! A transfer's life: revocation, the synchronous answer and the events
//! stream (the workers played through RabbitMQ and Redis).

use super::*;

#[actix_web::test]
async fn revocation_supersedes_cancels_and_notifies_and_old_grants_are_refused() {
    let bank = Bank::start().await;
    bind_user(&bank, 5).await;
    let user = user_key(5);
    let c = contract("Demo", "client.example");
    let t0 = now() - 60_000.0;
    let old = grant(&user, &c, t0);
    let (status, body, _) = process_async(&bank, &old).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = body["transfer"]["id"].as_str().unwrap().to_owned();
    assert_eq!(bank.depth(Route::Process).await, 1);

    // The user revokes: the running generation is superseded, a notice is queued.
    let resp = bank
        .http
        .post(bank.url("/alias/grants"))
        .body(revoked(&user, &c, t0 + 1000.0))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Json = resp.json().await.unwrap();
    assert_eq!(body["stored"], true);
    assert_eq!(body["transfer"]["generation"], 2);
    assert_eq!(body["transfer"]["revoked"], true);
    assert_eq!(bank.depth(Route::Process).await, 2);

    // The old grant again: refused with the revoked grant, nothing queued.
    let (status, body) = refused(&bank, serde_json::json!({ "grant": old })).await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(body["code"], "revoked");
    assert_eq!(body["grant"]["body"]["revoked"], true);
    assert_eq!(body["processor"], serde_json::json!([]));
    assert_eq!(bank.depth(Route::Process).await, 2);

    // An older grant replayed after the revocation is not stored either.
    let older = grant(&user, &c, t0 - 1000.0);
    let (status, _) = refused(&bank, serde_json::json!({ "grant": older })).await;
    assert_eq!(status, StatusCode::GONE);
    let stored = bank
        .app
        .state
        .stored_grant(
            &protocol::anychain::b64u_encode(user.verifying_key().as_bytes()),
            &id,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(stored.contains("\"revoked\":true"));

    // A newer consent un-revokes (reference rule), with a new generation.
    let (status, body, _) = process_async(&bank, &grant(&user, &c, t0 + 2000.0)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["transfer"]["generation"], 3);
    bank.cleanup().await;
}

#[actix_web::test]
async fn synchronous_process_answers_when_the_transfer_ends() {
    let bank = Bank::start().await;
    bind_user(&bank, 6).await;
    let user = user_key(6);
    let c = contract("Demo", "client.example");
    let token = grant(&user, &c, now());
    let request = bank
        .http
        .post(bank.url("/alias/process"))
        .json(&serde_json::json!({ "grant": token }))
        .send();
    let (resp, ()) = tokio::join!(request, fake_workers(&bank, None));
    let resp = resp.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Json = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(
        body["processor"],
        serde_json::json!([{"google.my_activity.search.zip": "HASH"}])
    );
    assert_eq!(body["grant"]["body"]["type"], "alias.grant");
    assert_eq!(body["transfer"]["state"], "done");
    assert_eq!(body["transfer"]["bytes_done"], 10);
    assert_eq!(body["transfer"]["files_done"], 1);

    // A failing transfer answers with the reason.
    let c2 = contract("Other", "client.example");
    let request = bank
        .http
        .post(bank.url("/alias/process"))
        .form(&[("grant", grant(&user, &c2, now()))])
        .send();
    let (resp, ()) = tokio::join!(
        request,
        fake_workers(&bank, Some("client answered 500 too often"))
    );
    let resp = resp.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body: Json = resp.json().await.unwrap();
    assert_eq!(body["reason"], "client answered 500 too often");
    bank.cleanup().await;
}

/// User `n` starts a transfer; its events stream, opened, has given its
/// first event (the current status). Returns the transfer id and the stream.
async fn follow_new_transfer(bank: &Bank, n: u8) -> (String, reqwest::Response) {
    bind_user(bank, n).await;
    let c = contract("Demo", "client.example");
    let (_, body, _) = process_async(bank, &grant(&user_key(n), &c, now())).await;
    let id = body["transfer"]["id"].as_str().unwrap().to_owned();
    let mut resp = bank
        .http
        .get(bank.url(&format!("/alias/transfers/{id}/events")))
        .bearer_auth(body["access"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("event: status\ndata: "));
    (id, resp)
}

/// The rest of an events stream, up to its end.
async fn rest_of(resp: &mut reqwest::Response) -> String {
    let mut text = String::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[actix_web::test]
async fn events_stream_follows_the_transfer() {
    let bank = Bank::start().await;
    let (_, mut resp) = follow_new_transfer(&bank, 7).await;
    // Then the workers' changes.
    fake_workers(&bank, None).await;
    let text = rest_of(&mut resp).await;
    for kind in ["processing", "files", "pushing", "progress", "file", "done"] {
        assert!(
            text.contains(&format!("event: {kind}\n")),
            "{kind} missing in {text}"
        );
    }
    bank.cleanup().await;
}

#[actix_web::test]
async fn a_quiet_events_stream_still_ends_when_the_last_event_was_lost() {
    let bank = Bank::start().await;
    let (id, mut resp) = follow_new_transfer(&bank, 8).await;

    // The transfer ends without an event, as when the gateway's pub/sub
    // subscription is being renewed (a Redis failover): its state is
    // written straight into its record.
    let config = &bank.app.config;
    runtime::state::testing::write_without_event(
        &config.redis_url,
        &config.namespace,
        &id,
        "state",
        "done",
    )
    .await;

    // The stream reads the status again once quiet and ends with it.
    let text = tokio::time::timeout(std::time::Duration::from_secs(60), rest_of(&mut resp))
        .await
        .expect("the stream ends");
    assert!(
        text.contains("event: status\ndata: ") && text.contains("\"state\":\"done\""),
        "{text}"
    );
    bank.cleanup().await;
}
