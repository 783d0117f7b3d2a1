//! Previews from the consent page: started and read only through a request
//! shown to the same user, one at a time, a bounded number an hour, and a
//! contract bound to another user refused.

use super::*;
use runtime::mq::Route;
use runtime::state::{PreviewKey, PreviewState, ScopeSummary};
use std::time::Duration;

/// Opens the consent page of `contract` and returns the request id.
async fn shown(agent: &mut Agent, contract: &Value) -> String {
    let (status, page, _) = agent
        .get(&format!("/request?contract={}", enc(&to_token(contract))))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    attr(&page, "id=\"request-id\" value=\"")
}

async fn read(agent: &mut Agent, rid: &str) -> (StatusCode, Json) {
    let (status, body, _) = agent.get(&format!("/web/preview?request={rid}")).await;
    (status, serde_json::from_str(&body).unwrap_or(Json::Null))
}

/// What a processor stores, done here by hand (the gateway's tests run no
/// processor).
async fn answer(bank: &Bank, key: &PreviewKey, id: &str, sample: &str) {
    let state = PreviewState::Ready {
        scopes: vec![ScopeSummary {
            scope: "google.my_activity.search".into(),
            file: "google.my_activity.search.zip".into(),
            files: 1,
            records: 12,
            bytes: 3400,
            first_files: vec!["Takeout/My Activity/Search/MyActivity.json".into()],
            samples: vec![sample.into()],
            skipped: 0,
            notes: Vec::new(),
        }],
        missing: vec!["google.youtube.watch_history".into()],
        elapsed_ms: 5,
    };
    assert!(bank
        .app
        .state
        .finish_preview(key, id, &state, Duration::from_secs(60))
        .await
        .unwrap());
}

#[actix_web::test]
async fn previews_are_one_at_a_time_limited_and_the_users_own() {
    let bank = Bank::start().await;
    let mut alice = Agent::new(&bank);
    let a = Account::new("alice", 71);
    signup(&mut alice, &a).await;
    let contract = contract("Test client", CLIENT_DOMAIN);
    let hash = protocol::anychain::fold(&contract).unwrap().to_b64();
    let key = PreviewKey::new(&a.pk(), &hash).unwrap();
    let rid = shown(&mut alice, &contract).await;
    let path = format!("/web/preview?request={rid}");

    let (status, none) = read(&mut alice, &rid).await;
    assert_eq!((status, &none["state"]), (StatusCode::OK, &json!("none")));
    assert!(none.get("preview").is_none(), "{none}");
    // A start needs the page's CSRF token.
    let (status, body) = alice.post_json(&path, json!({}), false).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("csrf"))
    );
    assert_eq!(bank.depth(Route::Preview).await, 0);
    let (status, first) = alice.post_json(&path, json!({}), true).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["state"], "pending");
    assert_eq!(
        first["preview"]["requested"],
        json!([
            "google.my_activity.search.*",
            "google.youtube.watch_history.*"
        ])
    );
    assert_eq!(bank.depth(Route::Preview).await, 1);
    // One at a time: a second start joins the first.
    let (status, again) = alice.post_json(&path, json!({}), true).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["preview"]["id"], first["preview"]["id"]);
    assert_eq!(bank.depth(Route::Preview).await, 1);

    // Bob can neither read nor start a preview of Alice's request.
    let mut bob = Agent::new(&bank);
    signup(&mut bob, &Account::new("bob", 72)).await;
    let (status, body) = read(&mut bob, &rid).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_yours"))
    );
    let (status, body) = bob.post_json(&path, json!({}), true).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_yours"))
    );
    // Nor can someone logged out, nor an unknown request.
    let mut nobody = Agent::new(&bank);
    let (status, _) = read(&mut nobody, &rid).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = read(&mut alice, "no-such-request").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(bank.depth(Route::Preview).await, 1);

    // The result, samples as text in JSON (the page shows them as text).
    let sample = "<script>alert(1)</script>{\"title\":\"Searched for x\"}";
    answer(
        &bank,
        &key,
        first["preview"]["id"].as_str().unwrap(),
        sample,
    )
    .await;
    let (status, ready) = read(&mut alice, &rid).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["state"], "ready");
    assert_eq!(ready["preview"]["scopes"][0]["records"], 12);
    assert_eq!(ready["preview"]["scopes"][0]["samples"][0], sample);
    // Each scope of the contract comes with the catalog's words for it,
    // which the page shows instead of the raw scope string.
    let labels = ready["words"]["labels"].as_object().expect("labels");
    assert!(!labels.is_empty(), "{ready}");
    for (scope, words) in labels {
        let words = words.as_str().unwrap_or_default();
        assert!(
            !words.is_empty() && !words.contains(scope.as_str()),
            "{scope}: {words}"
        );
    }
    let resp = bank
        .http
        .get(bank.url(&path))
        .header(
            "cookie",
            format!("alias_session={}", alice.cookie.clone().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));

    // 20 an hour: this was the first; 19 more, then a refusal with a delay.
    for n in 2..=20 {
        let (status, p) = alice.post_json(&path, json!({}), true).await;
        assert_eq!(status, StatusCode::ACCEPTED, "preview {n}: {p}");
        answer(&bank, &key, p["preview"]["id"].as_str().unwrap(), "{}").await;
    }
    assert_eq!(bank.depth(Route::Preview).await, 20);
    let resp = alice
        .with_cookie(bank.http.post(bank.url(&path)))
        .header("x-csrf-token", &alice.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
    let body: Json = resp.json().await.unwrap();
    assert_eq!(body["code"], "preview_limit");
    assert_eq!(
        bank.depth(Route::Preview).await,
        20,
        "nothing queued past the limit"
    );
    // The last result stays readable.
    assert_eq!(read(&mut alice, &rid).await.1["state"], "ready");
    bank.cleanup().await;
}

#[actix_web::test]
async fn a_contract_bound_to_another_user_gets_no_preview() {
    let bank = Bank::start().await;
    let mut alice = Agent::new(&bank);
    let a = Account::new("alice", 73);
    signup(&mut alice, &a).await;
    let contract = contract("Test client", CLIENT_DOMAIN);
    let hash = protocol::anychain::fold(&contract).unwrap().to_b64();
    let rid = shown(&mut alice, &contract).await;
    // Another user binds the contract after the page was shown.
    bank.app
        .state
        .claim_contract(&hash, "someone-else")
        .await
        .unwrap();
    let path = format!("/web/preview?request={rid}");
    let (status, body) = alice.post_json(&path, json!({}), true).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("contract_bound"))
    );
    let (status, _) = read(&mut alice, &rid).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(bank.depth(Route::Preview).await, 0);
    let key = PreviewKey::new(&a.pk(), &hash).unwrap();
    assert_eq!(bank.app.state.preview(&key).await.unwrap(), None);
    bank.cleanup().await;
}
