//! Dump upload, listing and deletion with signed requests.

use crate::fixtures::*;
use crate::Bank;
use reqwest::StatusCode;
use serde_json::Value as Json;

async fn put(bank: &Bank, auth: Option<String>, path: &str, body: Vec<u8>) -> (StatusCode, Json) {
    let mut req = bank.http.put(bank.url(path)).body(body);
    if let Some(auth) = auth {
        req = req.header("Authorization", format!("Alias {auth}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Json::Null))
}

#[actix_web::test]
async fn upload_list_replace_and_delete() {
    let bank = Bank::start().await;
    let user = user_key(20);
    let pk = protocol::anychain::b64u_encode(user.verifying_key().as_bytes());
    let path = "/alias/dumps/google/takeout-20250101-001.zip";
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let auth = signed_request(&user, "PUT", path, Some(data.len() as u64), now());
    let (status, body) = put(&bank, Some(auth.clone()), path, data.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["dump"]["size"], 3_000_000);
    let expected = protocol::anychain::b64u_encode(blake2b_simd::blake2b(&data).as_bytes());
    assert_eq!(body["dump"]["blake2b"], expected);
    let key = format!("dumps/{pk}/google/takeout-20250101-001.zip");
    assert_eq!(
        bank.app.storage.get_bytes(&key).await.unwrap().len(),
        3_000_000
    );
    // The user now counts as known to this data bank.
    assert!(bank.app.state.is_known_user(&pk).await.unwrap());

    // Replay of the same signed request: refused.
    let (status, body) = put(&bank, Some(auth), path, data.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );

    // Body shorter than signed: refused, and the stored dump is intact.
    let auth = signed_request(&user, "PUT", path, Some(10), now());
    let (status, _) = put(&bank, Some(auth), path, vec![1, 2, 3]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let auth = signed_request(&user, "PUT", path, Some(3), now());
    let (status, _) = put(&bank, Some(auth), path, vec![0; 10]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bank.app.storage.get_bytes(&key).await.unwrap().as_ref(),
        data.as_slice()
    );

    // List.
    let auth = signed_request(&user, "GET", "/alias/dumps", None, now());
    let list: Json = bank
        .http
        .get(bank.url("/alias/dumps"))
        .header("Authorization", format!("Alias {auth}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["dumps"].as_array().unwrap().len(), 1);
    assert_eq!(list["user"], pk);

    // Delete.
    let auth = signed_request(&user, "DELETE", path, None, now());
    let resp = bank
        .http
        .delete(bank.url(path))
        .header("Authorization", format!("Alias {auth}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(bank.app.storage.head(&key).await.unwrap().is_none());
    bank.cleanup().await;
}

#[actix_web::test]
async fn unsigned_stale_misdirected_and_hostile_uploads_are_refused() {
    let bank = Bank::start().await;
    let user = user_key(21);
    let path = "/alias/dumps/google/takeout.zip";
    let (status, _) = put(&bank, None, path, vec![1; 4]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Stale signature.
    let stale = signed_request(&user, "PUT", path, Some(4), now() - 3_600_000.0);
    let (status, body) = put(&bank, Some(stale), path, vec![1; 4]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Signed for another path (another name, or another user's space).
    let other = signed_request(
        &user,
        "PUT",
        "/alias/dumps/google/other.zip",
        Some(4),
        now(),
    );
    let (status, _) = put(&bank, Some(other), path, vec![1; 4]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Tampered signature.
    let forged =
        signed_request(&user, "PUT", path, Some(4), now()).replace("\"size\":4", "\"size\":5");
    let (status, _) = put(&bank, Some(forged), path, vec![1; 5]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Hostile names never reach storage.
    for bad in [
        "/alias/dumps/google/..%2Fx.zip",
        "/alias/dumps/Goo gle/x.zip",
        "/alias/dumps/google/x.exe",
    ] {
        let auth = signed_request(&user, "PUT", bad, Some(1), now());
        let (status, _) = put(&bank, Some(auth), bad, vec![1]).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{bad}: {status}"
        );
    }
    assert!(bank.app.storage.list("dumps").await.unwrap().is_empty());
    bank.cleanup().await;
}

async fn call(
    bank: &Bank,
    method: reqwest::Method,
    path: &str,
    auth: String,
) -> (StatusCode, Json) {
    let resp = bank
        .http
        .request(method, bank.url(path))
        .header("Authorization", format!("Alias {auth}"))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Json::Null))
}

#[actix_web::test]
async fn another_users_space_is_out_of_reach() {
    let bank = Bank::start().await;
    let (alice, bob) = (user_key(22), user_key(23));
    let alice_pk = protocol::anychain::b64u_encode(alice.verifying_key().as_bytes());
    let path = "/alias/dumps/google/takeout.zip";
    let auth = signed_request(&alice, "PUT", path, Some(4), now());
    let (status, body) = put(&bank, Some(auth), path, vec![1; 4]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let alice_key = format!("dumps/{alice_pk}/google/takeout.zip");

    // Bob's requests name the same path but act in Bob's own space: he
    // sees nothing of Alice's and deletes nothing of hers.
    let auth = signed_request(&bob, "GET", "/alias/dumps", None, now());
    let (status, list) = call(&bank, reqwest::Method::GET, "/alias/dumps", auth).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["dumps"].as_array().unwrap().len(), 0, "{list}");
    let auth = signed_request(&bob, "DELETE", path, None, now());
    let (status, _) = call(&bank, reqwest::Method::DELETE, path, auth).await;
    assert!(status.is_client_error(), "{status}");
    assert!(bank.app.storage.head(&alice_key).await.unwrap().is_some());

    // Alice's request with Bob named as signer: the signature does not hold.
    let forged = signed_request(&alice, "DELETE", path, None, now()).replace(
        &alice_pk,
        &protocol::anychain::b64u_encode(bob.verifying_key().as_bytes()),
    );
    let (status, _) = call(&bank, reqwest::Method::DELETE, path, forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A request signed for another data bank, or dated in the future.
    let elsewhere = protocol::anychain::to_token(
        &protocol::anychain::sign(
            &alice,
            protocol::alias::request_body("DELETE", path, "https://other-bank.example", None),
            now(),
        )
        .unwrap(),
    );
    let (status, _) = call(&bank, reqwest::Method::DELETE, path, elsewhere).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let future = signed_request(&alice, "DELETE", path, None, now() + 3_600_000.0);
    let (status, _) = call(&bank, reqwest::Method::DELETE, path, future).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(bank.app.storage.head(&alice_key).await.unwrap().is_some());
    bank.cleanup().await;
}

#[actix_web::test]
async fn dumps_keep_the_names_people_have() {
    let bank = Bank::start().await;
    let user = user_key(24);
    let pk = protocol::anychain::b64u_encode(user.verifying_key().as_bytes());
    // Amazon's export, as the browser and aliasctl send it: the name
    // percent-encoded as one path segment, the signature over that path.
    let path = "/alias/dumps/amazon/Your%20Orders.zip";
    let data = vec![5u8; 1000];
    let auth = signed_request(&user, "PUT", path, Some(1000), now());
    let (status, body) = put(&bank, Some(auth), path, data.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["dump"]["name"], "Your Orders.zip");
    let key = body["dump"]["key"].as_str().unwrap().to_owned();
    let stored = key.rsplit('/').next().unwrap();
    assert!(
        stored.starts_with("Your_Orders-") && stored.ends_with(".zip"),
        "{key}"
    );
    assert!(protocol::wire::is_safe_segment(stored));
    assert_eq!(key, format!("dumps/{pk}/amazon/{stored}"));
    assert_eq!(bank.app.storage.get_bytes(&key).await.unwrap().len(), 1000);
    let dumps = bank.app.state.dumps(&pk).await.unwrap();
    assert_eq!(dumps[0].name, "Your Orders.zip");
    // A file literally named as that storage name: it would share the key.
    let clash = format!("/alias/dumps/amazon/{stored}");
    let auth = signed_request(&user, "PUT", &clash, Some(3), now());
    let (status, body) = put(&bank, Some(auth), &clash, vec![1, 2, 3]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("name_conflict"))
    );
    assert_eq!(bank.app.storage.get_bytes(&key).await.unwrap().len(), 1000);
    // Names that are no file names: refused before anything is read.
    for bad in [
        "/alias/dumps/amazon/a%2Fb.zip",
        "/alias/dumps/amazon/a%5Cb.zip",
        "/alias/dumps/amazon/a%0Ab.zip",
        "/alias/dumps/amazon/a%00.zip",
        "/alias/dumps/amazon/a%E2%80%AEpiz.zip",
        "/alias/dumps/amazon/%FF.zip",
        "/alias/dumps/amazon/notes.txt",
    ] {
        let auth = signed_request(&user, "PUT", bad, Some(3), now());
        let (status, body) = put(&bank, Some(auth), bad, vec![1, 2, 3]).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{bad}: {status} {body}"
        );
        if status == StatusCode::BAD_REQUEST {
            assert_eq!(body["code"], "bad_name", "{bad}");
        }
    }
    assert_eq!(bank.app.state.dumps(&pk).await.unwrap().len(), 1);
    // Deleted by the same name: the derived key goes with it.
    let auth = signed_request(&user, "DELETE", path, None, now());
    let resp = bank
        .http
        .delete(bank.url(path))
        .header("Authorization", format!("Alias {auth}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(bank.app.storage.get_bytes(&key).await.is_err());
    assert!(bank.app.state.dumps(&pk).await.unwrap().is_empty());
    bank.cleanup().await;
}
