//! Accepting grants and bindings: discovery, one transfer and one message
//! per grant, the reference client's forms, and what is refused.

use super::*;

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
