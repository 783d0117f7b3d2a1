//! `POST /alias/process`, grants, bindings, transfers and operations.

use crate::fixtures::*;
use crate::{Bank, ORIGIN};
use reqwest::StatusCode;
use runtime::jobs::{self, ProcessJob};
use runtime::mq::Route;
use runtime::state::{FileRecord, TransferState};
use serde_json::Value as Json;

async fn bind_user(bank: &Bank, n: u8) {
    let resp = bank
        .http
        .post(bank.url("/alias/bind"))
        .json(&serde_json::json!({"bind": bind(&user_key(n), ORIGIN)}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap()
    );
}

async fn process_async(bank: &Bank, grant: &str) -> (StatusCode, Json, Option<String>) {
    let resp = bank
        .http
        .post(bank.url("/alias/process"))
        .header("Prefer", "respond-async")
        .json(&serde_json::json!({ "grant": grant }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, resp.json().await.unwrap(), location)
}

#[actix_web::test]
async fn discovery_health_and_metrics() {
    let bank = Bank::start().await;
    let d: Json = bank
        .http
        .get(bank.url("/alias/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["what"], "alias authz server");
    assert_eq!(d["processPath"], "/alias/process");
    assert_eq!(
        bank.http
            .get(bank.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let ready: Json = bank
        .http
        .get(bank.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["redis"], true);
    assert_eq!(ready["rabbitmq"], true);
    let metrics = bank
        .http
        .get(bank.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("alias_http_requests_total"), "{metrics}");
    assert!(metrics.contains("alias_queue_messages"), "{metrics}");
    let missing = bank.http.get(bank.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: Json = missing.json().await.unwrap();
    assert_eq!(body["status"], "error");
    bank.cleanup().await;
}

#[actix_web::test]
async fn valid_grant_creates_one_transfer_and_one_durable_message_and_joins() {
    let bank = Bank::start().await;
    bind_user(&bank, 2).await;
    let c = contract("Demo", "127.0.0.1:9");
    let token = grant(&user_key(2), &c, now());
    let (status, body, location) = process_async(&bank, &token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["transfer"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        location.as_deref(),
        Some(format!("/alias/transfers/{id}").as_str())
    );
    assert_eq!(body["transfer"]["state"], "accepted");
    assert_eq!(body["joined"], false);
    assert_eq!(bank.depth(Route::Process).await, 1);

    // The same grant again joins the running transfer: no second job.
    let (status, body, _) = process_async(&bank, &token).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["joined"], true);
    assert_eq!(body["transfer"]["generation"], 1);
    assert_eq!(bank.depth(Route::Process).await, 1);

    // The message names the transfer and generation, nothing else.
    let mut consumer = bank
        .app
        .broker
        .consume(Route::Process, 1, "test")
        .await
        .unwrap();
    let delivery = consumer.next().await.unwrap().unwrap();
    let job: ProcessJob = jobs::decode(delivery.body()).unwrap();
    assert_eq!(
        job,
        ProcessJob {
            transfer: id.clone(),
            generation: 1
        }
    );
    delivery.ack().await.unwrap();

    // Status endpoint, for the holder of the capability.
    let access = body["access"].as_str().unwrap();
    let s: Json = bank
        .http
        .get(bank.url(&format!("/alias/transfers/{id}")))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["state"], "accepted");
    assert_eq!(s["push_url"], format!("http://127.0.0.1:9/alias/push/{id}"));
    bank.cleanup().await;
}

#[actix_web::test]
async fn form_encoded_grant_and_bind_like_the_reference_client() {
    let bank = Bank::start().await;
    let user = user_key(3);
    let c = contract("Demo", "client.example");
    let form = [
        ("grant", grant(&user, &c, now())),
        ("bind", bind(&user, ORIGIN)),
    ];
    let resp = bank
        .http
        .post(bank.url("/alias/process"))
        .header("Prefer", "respond-async")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "{}",
        resp.text().await.unwrap()
    );
    assert_eq!(bank.depth(Route::Process).await, 1);
    bank.cleanup().await;
}

async fn refused(bank: &Bank, body: Json) -> (StatusCode, Json) {
    let resp = bank
        .http
        .post(bank.url("/alias/process"))
        .header("Prefer", "respond-async")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Json::Null))
}

#[actix_web::test]
async fn bad_requests_are_refused_and_nothing_is_queued() {
    let bank = Bank::start().await;
    bind_user(&bank, 4).await;
    let user = user_key(4);
    let c = contract("Demo", "client.example");
    let good = grant(&user, &c, now());

    let (s, b) = refused(&bank, serde_json::json!({})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing_parameter"))
    );

    let tampered = good.replace("\"research\"", "\"marketing\"");
    let (s, b) = refused(&bank, serde_json::json!({ "grant": tampered })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["reason"],
        "invalid chain: bad signature or forged document"
    );
    assert_eq!(b["status"], "error");

    // A grant whose client declaration was forged (domain changed after signing).
    let forged_decl = grant(&user, &contract("Demo", "client.example"), now())
        .replace("client.example", "evil.example");
    let (s, b) = refused(&bank, serde_json::json!({ "grant": forged_decl })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["code"], "invalid_token");

    let (s, b) = refused(&bank, serde_json::json!({ "grant": bind(&user, ORIGIN) })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["reason"], "expected a 'alias.grant' token");

    let (s, _) = refused(&bank, serde_json::json!({ "grant": "{not json" })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = refused(
        &bank,
        serde_json::json!({ "grant": r#"{"x":{"__bytes":"AA=="}}"# }),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let deep = "[".repeat(100) + &"]".repeat(100);
    let (s, b) = refused(&bank, serde_json::json!({ "grant": deep })).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("too_deep"))
    );
    let big = format!("\"{}\"", "a".repeat((1 << 20) + 10));
    let (s, _) = refused(&bank, serde_json::json!({ "grant": big })).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let huge = "a".repeat(8 << 20);
    let (s, _) = refused(&bank, serde_json::json!({ "grant": huge })).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);

    // Policy: signed far in the future; contractual given as 1; hostile push target.
    let (s, b) = refused(
        &bank,
        serde_json::json!({ "grant": grant(&user, &c, now() + 3_600_000.0) }),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("policy"))
    );
    let evil = contract("Evil", "user@127.0.0.1:6379");
    let (s, b) = refused(
        &bank,
        serde_json::json!({ "grant": grant(&user, &evil, now()) }),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_push_destination"))
    );

    // A user this data bank does not know.
    let stranger = grant(&user_key(99), &c, now());
    let (s, b) = refused(&bank, serde_json::json!({ "grant": stranger })).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("unknown_user"))
    );
    // A bind for another data bank does not make them known.
    let other_bind = bind(&user_key(99), "https://other-bank.example");
    let (s, b) = refused(
        &bank,
        serde_json::json!({ "grant": grant(&user_key(99), &c, now()), "bind": other_bind }),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_origin"))
    );
    // A bind signed by someone else than the grant's user.
    let (s, b) = refused(&bank, serde_json::json!({ "grant": grant(&user_key(99), &c, now()), "bind": bind(&user, ORIGIN) })).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("bind_mismatch"))
    );

    assert_eq!(bank.depth(Route::Process).await, 0);
    assert!(bank.app.state.count_by_state().await.unwrap().is_empty());
    bank.cleanup().await;
}

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

/// Plays the workers' part through RabbitMQ and Redis: takes the process
/// job, records one archive and walks the state machine to `done`.
async fn fake_workers(bank: &Bank, fail: Option<&str>) {
    let mut consumer = bank
        .app
        .broker
        .consume(Route::Process, 1, "fake")
        .await
        .unwrap();
    let delivery = consumer.next().await.unwrap().unwrap();
    let job: ProcessJob = jobs::decode(delivery.body()).unwrap();
    let state = &bank.app.state;
    let (id, g) = (job.transfer.as_str(), job.generation);
    assert!(state
        .transition(
            id,
            g,
            &[TransferState::Accepted],
            TransferState::Processing,
            None
        )
        .await
        .unwrap());
    let file = FileRecord {
        name: "google.my_activity.search.zip".into(),
        scope: "google.my_activity.search".into(),
        storage_key: format!("transfers/{id}/{g}/google.my_activity.search.zip"),
        size: 10,
        blake2b: "HASH".into(),
        offset: 0,
        finished: false,
    };
    state.set_files(id, g, &[file]).await.unwrap();
    assert!(state
        .transition(
            id,
            g,
            &[TransferState::Processing],
            TransferState::Pushing,
            None
        )
        .await
        .unwrap());
    state
        .commit_offset(id, g, "google.my_activity.search.zip", 10)
        .await
        .unwrap();
    state
        .finish_file(id, g, "google.my_activity.search.zip")
        .await
        .unwrap();
    let (to, err) = match fail {
        Some(reason) => (TransferState::Failed, Some(reason)),
        None => (TransferState::Done, None),
    };
    assert!(state
        .transition(id, g, &[TransferState::Pushing], to, err)
        .await
        .unwrap());
    delivery.ack().await.unwrap();
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

#[actix_web::test]
async fn events_stream_follows_the_transfer() {
    let bank = Bank::start().await;
    bind_user(&bank, 7).await;
    let c = contract("Demo", "client.example");
    let (_, body, _) = process_async(&bank, &grant(&user_key(7), &c, now())).await;
    let id = body["transfer"]["id"].as_str().unwrap().to_owned();
    let mut resp = bank
        .http
        .get(bank.url(&format!("/alias/transfers/{id}/events")))
        .bearer_auth(body["access"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    // The first event is the current status; then the workers' changes.
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("event: status\ndata: "));
    fake_workers(&bank, None).await;
    let mut text = String::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    for kind in ["processing", "files", "pushing", "progress", "file", "done"] {
        assert!(
            text.contains(&format!("event: {kind}\n")),
            "{kind} missing in {text}"
        );
    }
    bank.cleanup().await;
}

#[actix_web::test]
async fn rate_limit_answers_429() {
    let bank = Bank::start_with(&[("ALIAS_RATE_PER_SEC", "1")]).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            bank.http
                .get(bank.url("/alias/"))
                .send()
                .await
                .unwrap()
                .status(),
        );
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Health checks are never limited.
    assert_eq!(
        bank.http
            .get(bank.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    bank.cleanup().await;
}

#[actix_web::test]
async fn broker_connection_loss_during_publishing_loses_no_accepted_job() {
    let bank = Bank::start().await;
    bind_user(&bank, 8).await;
    let user = user_key(8);
    let n = 30;
    let mut accepted = 0;
    for i in 0..n {
        if i == 10 {
            // Only this gateway's connection, not the other tests'.
            let needle = format!("alias-bank {}", bank.app.config.namespace);
            let closed = tokio::task::spawn_blocking(move || {
                runtime::mq::testing::close_connections(&needle)
            });
            assert!(closed.await.unwrap().unwrap() >= 1);
        }
        let c = contract(&format!("Client {i}"), "client.example");
        let (status, body, _) = process_async(&bank, &grant(&user, &c, now())).await;
        match status {
            StatusCode::ACCEPTED => accepted += 1,
            other => assert_eq!(other, StatusCode::SERVICE_UNAVAILABLE, "{body}"),
        }
    }
    assert!(accepted >= n - 1, "only {accepted} of {n} accepted");
    assert_eq!(bank.depth(Route::Process).await, accepted);
    bank.cleanup().await;
}

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
