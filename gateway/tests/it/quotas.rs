//! Per-user quotas over HTTP: dumps (count and bytes, refused before any
//! byte is stored), grants (contracts and bytes, with their codes),
//! oversized tokens, and a guest's records that expire.

use crate::fixtures::*;
use crate::{Bank, ORIGIN};
use protocol::anychain::b64u_encode;
use reqwest::StatusCode;
use serde_json::Value as Json;

async fn upload(
    bank: &Bank,
    user: &protocol::anychain::SigningKey,
    name: &str,
    size: usize,
) -> (StatusCode, Json) {
    let path = format!("/alias/dumps/google/{name}");
    let auth = signed_request(user, "PUT", &path, Some(size as u64), now());
    let resp = bank
        .http
        .put(bank.url(&path))
        .header("Authorization", format!("Alias {auth}"))
        .body(vec![7u8; size])
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Json::Null))
}

#[actix_web::test]
async fn dump_quotas_refuse_before_storing() {
    let bank = Bank::start_with(&[
        ("ALIAS_QUOTA_DUMPS", "2"),
        ("ALIAS_QUOTA_DUMP_BYTES", "1000"),
    ])
    .await;
    let user = user_key(30);
    let pk = b64u_encode(user.verifying_key().as_bytes());
    assert_eq!(
        upload(&bank, &user, "a.zip", 400).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        upload(&bank, &user, "b.zip", 400).await.0,
        StatusCode::CREATED
    );
    // A third dump: over the count.
    let (status, body) = upload(&bank, &user, "c.zip", 10).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "quota_exceeded");
    assert_eq!(body["quota"], "dumps");
    // Replacing one with more bytes than the budget leaves: over the bytes.
    let (status, body) = upload(&bank, &user, "b.zip", 700).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["quota"], "dump_bytes");
    assert_eq!(body["limit"], 1000);
    // Nothing of the refused uploads was stored.
    let stored = bank
        .app
        .storage
        .get_bytes(&format!("dumps/{pk}/google/b.zip"))
        .await
        .unwrap();
    assert_eq!(stored.len(), 400);
    assert!(bank
        .app
        .storage
        .get_bytes(&format!("dumps/{pk}/google/c.zip"))
        .await
        .is_err());
    // Within the budget, a replacement is fine.
    assert_eq!(
        upload(&bank, &user, "b.zip", 600).await.0,
        StatusCode::CREATED
    );
    bank.cleanup().await;
}

async fn post_grant(bank: &Bank, grant: &str) -> (StatusCode, Json) {
    let resp = bank
        .http
        .post(bank.url("/alias/grants"))
        .form(&[("grant", grant)])
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Json::Null))
}

#[actix_web::test]
async fn grant_quotas_answer_with_their_codes() {
    let bank = Bank::start_with(&[
        ("ALIAS_QUOTA_CONTRACTS", "2"),
        ("ALIAS_MAX_TOKEN_BYTES", "8192"),
        ("ALIAS_QUOTA_GRANT_BYTES", "8192"),
    ])
    .await;
    let user = user_key(31);
    let pk = b64u_encode(user.verifying_key().as_bytes());
    let resp = bank
        .http
        .post(bank.url("/alias/bind"))
        .body(bind(&user, ORIGIN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    for (i, name) in ["One", "Two"].iter().enumerate() {
        let g = grant(&user, &contract(name, "127.0.0.1:9"), now() + i as f64);
        assert_eq!(post_grant(&bank, &g).await.0, StatusCode::OK);
    }
    let g = grant(&user, &contract("Three", "127.0.0.1:9"), now());
    let (status, body) = post_grant(&bank, &g).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        (body["code"].as_str(), body["quota"].as_str()),
        (Some("quota_exceeded"), Some("contracts"))
    );
    // Over the token limit: 413 too_large, before any quota.
    let big = contract(&"N".repeat(9000), "127.0.0.1:9");
    let (status, body) = post_grant(&bank, &grant(&user, &big, now())).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );
    let mut contracts = bank.app.state.contracts_of(&pk).await.unwrap();
    contracts.sort();
    assert_eq!(contracts.len(), 2);
    bank.cleanup().await;
}

#[actix_web::test]
async fn bodies_past_the_limit_answer_413_with_a_code() {
    let bank = Bank::start().await;
    for (ctype, body) in [
        (
            "application/x-www-form-urlencoded",
            format!("grant={}", "a".repeat(400 << 10)),
        ),
        (
            "application/json",
            format!("{{\"grant\":\"{}\"}}", "a".repeat(400 << 10)),
        ),
    ] {
        let resp = bank
            .http
            .post(bank.url("/alias/process"))
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let text = resp.text().await.unwrap();
        let body: Json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert_eq!(body["code"], "too_large", "{body}");
    }
    bank.cleanup().await;
}
