//! Who may see a transfer: the user, the client and an operator only;
//! unknown and forbidden ids answer the same and leave nothing behind;
//! bounded event streams and waits.

use crate::fixtures::*;
use crate::{Bank, ORIGIN};
use protocol::anychain::b64u_encode;
use reqwest::StatusCode;
use serde_json::Value as Json;
use std::time::{Duration, Instant};

const OPERATOR: &str = "operator-token-for-tests-0123456789abcdef";

async fn bind_user(bank: &Bank, n: u8) {
    let resp = bank
        .http
        .post(bank.url("/alias/bind"))
        .json(&serde_json::json!({"bind": bind(&user_key(n), ORIGIN)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Posts `grant` with `Prefer: respond-async`; the transfer id and the
/// capability of the answer.
async fn start(bank: &Bank, grant: &str) -> (String, String) {
    let resp = bank
        .http
        .post(bank.url("/alias/process"))
        .header("Prefer", "respond-async")
        .json(&serde_json::json!({ "grant": grant }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let body: Json = resp.json().await.unwrap();
    let access = body["access"].as_str().unwrap().to_owned();
    assert!(access.len() >= 43, "{access}");
    (body["transfer"]["id"].as_str().unwrap().to_owned(), access)
}

/// The answer to `GET path` with `auth` as the Authorization header.
async fn get(bank: &Bank, path: &str, auth: Option<&str>) -> (StatusCode, String) {
    let mut req = bank.http.get(bank.url(path));
    if let Some(auth) = auth {
        req = req.header("Authorization", auth);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    if resp
        .headers()
        .get("content-type")
        .is_some_and(|c| c == "text/event-stream")
    {
        // A stream: its first event is enough.
        let mut resp = resp;
        let first = resp.chunk().await.unwrap().unwrap_or_default();
        return (status, String::from_utf8_lossy(&first).into_owned());
    }
    (status, resp.text().await.unwrap())
}

#[actix_web::test]
async fn only_the_user_the_client_and_an_operator_see_a_transfer() {
    let bank = Bank::start_with(&[("ALIAS_OPERATOR_TOKEN", OPERATOR)]).await;
    bind_user(&bank, 21).await;
    bind_user(&bank, 22).await;
    let alice = user_key(21);
    let mallory = user_key(22);
    let c = contract("Visible", "127.0.0.1:9");
    let alice_grant = grant(&alice, &c, now());
    let (id, access) = start(&bank, &alice_grant).await;
    // Mallory is a user with her own transfer (another contract) and its
    // capability, and a grant of her own for Alice's contract.
    let (_, other_access) = start(
        &bank,
        &grant(&mallory, &contract("Other", "127.0.0.1:9"), now()),
    )
    .await;
    let mallory_same_contract = grant(&mallory, &c, now());
    let t = bank.app.state.transfer(&id).await.unwrap().unwrap();
    let secrets = [t.user.clone(), t.push_url.clone(), t.grant_hash.clone()];

    for suffix in ["", "/events"] {
        let path = format!("/alias/transfers/{id}{suffix}");
        let unknown_path = format!("/alias/transfers/no-such-transfer{suffix}");
        let (status, unknown) = get(&bank, &unknown_path, Some(&format!("Bearer {access}"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let unknown: Json = serde_json::from_str(&unknown).unwrap();
        assert_eq!(unknown["code"], "not_found");
        let refused = [
            ("nothing", None),
            (
                "a made-up bearer",
                Some(format!("Bearer {}", b64u_encode(&[9; 32]))),
            ),
            (
                "another client's capability",
                Some(format!("Bearer {other_access}")),
            ),
            (
                "a wrong operator token",
                Some(format!("Bearer {OPERATOR}x")),
            ),
            (
                "another user's signed request",
                Some(format!(
                    "Alias {}",
                    signed_request(&mallory, "GET", &path, None, now())
                )),
            ),
            (
                "the user's request signed for another path",
                Some(format!(
                    "Alias {}",
                    signed_request(&alice, "GET", "/alias/transfers/other", None, now())
                )),
            ),
            (
                "another user's grant for the same contract",
                Some(format!("Grant {mallory_same_contract}")),
            ),
            ("garbage", Some("Alias {not a token".to_owned())),
        ];
        for (who, auth) in refused {
            let (status, body) = get(&bank, &path, auth.as_deref()).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{who}: {body}");
            let body: Json = serde_json::from_str(&body).unwrap();
            assert_eq!(body, unknown, "{who} learns the transfer exists");
            let text = body.to_string();
            for s in &secrets {
                assert!(!text.contains(s.as_str()), "{who} sees {s}");
            }
        }
        assert_eq!(bank.app.state.live_channels(), 0);

        let signed = signed_request(&alice, "GET", &path, None, now());
        let allowed = [
            ("the client's capability", format!("Bearer {access}")),
            ("the client's grant", format!("Grant {alice_grant}")),
            ("the user's signed request", format!("Alias {signed}")),
            ("an operator", format!("Bearer {OPERATOR}")),
        ];
        for (who, auth) in allowed {
            let (status, body) = get(&bank, &path, Some(&auth)).await;
            assert_eq!(status, StatusCode::OK, "{who}: {body}");
            assert!(body.contains(&t.push_url), "{who}: {body}");
        }
        // A signed request is used once.
        let (status, _) = get(&bank, &path, Some(&format!("Alias {signed}"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    bank.cleanup().await;
}

#[actix_web::test]
async fn without_an_operator_token_there_is_no_operator_access() {
    let bank = Bank::start().await;
    bind_user(&bank, 23).await;
    let (id, _) = start(
        &bank,
        &grant(&user_key(23), &contract("NoOp", "127.0.0.1:9"), now()),
    )
    .await;
    for auth in ["Bearer ", "Bearer x", &format!("Bearer {OPERATOR}")] {
        let (status, _) = get(&bank, &format!("/alias/transfers/{id}"), Some(auth)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{auth}");
    }
    bank.cleanup().await;
}

/// Waits (bounded) until `check` holds.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn unknown_and_forbidden_streams_leave_nothing_behind() {
    let bank = Bank::start_with(&[("ALIAS_OPERATOR_TOKEN", OPERATOR)]).await;
    bind_user(&bank, 24).await;
    let (id, access) = start(
        &bank,
        &grant(&user_key(24), &contract("Hub", "127.0.0.1:9"), now()),
    )
    .await;
    let before = bank.app.state.live_channels();
    assert_eq!(before, 0);
    for i in 0..2000 {
        let auth = if i % 2 == 0 {
            format!("Bearer {OPERATOR}")
        } else {
            format!("Bearer {i}")
        };
        let path = if i % 3 == 0 {
            format!("/alias/transfers/{id}/events")
        } else {
            format!("/alias/transfers/unknown-{i}/events")
        };
        let resp = bank
            .http
            .get(bank.url(&path))
            .header(
                "Authorization",
                if i % 3 == 0 {
                    "Bearer stranger".to_owned()
                } else {
                    auth
                },
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        bank.app.state.live_channels(),
        0,
        "refused streams left channels"
    );
    // A real stream has a channel while it lasts, and none after.
    let mut resp = bank
        .http
        .get(bank.url(&format!("/alias/transfers/{id}/events")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let _ = resp.chunk().await.unwrap();
    assert_eq!(bank.app.state.live_channels(), 1);
    assert_eq!(bank.app.streams.held().0, 1);
    drop(resp);
    // The server notices the closed connection at its next write (a
    // keep-alive at the latest) or when the transfer ends: end it.
    bank.app.state.cancel(&id, "test over").await.unwrap();
    let state = bank.app.state.clone();
    until("the channel to go", || state.live_channels() == 0).await;
    until("the slot to go", || bank.app.streams.held() == (0, 0)).await;
    bank.cleanup().await;
}

/// A client connecting from `ip`; a request it makes fails after 20 s
/// (so that a bound which does not hold fails the test, not hangs it).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

#[actix_web::test]
async fn event_streams_are_bounded_per_address_and_in_total() {
    let bank = Bank::start_with(&[
        ("ALIAS_MAX_STREAMS_PER_ADDR", "2"),
        ("ALIAS_MAX_STREAMS", "3"),
    ])
    .await;
    bind_user(&bank, 25).await;
    let (id, access) = start(
        &bank,
        &grant(&user_key(25), &contract("Caps", "127.0.0.1:9"), now()),
    )
    .await;
    let url = bank.url(&format!("/alias/transfers/{id}/events"));
    let open = |http: reqwest::Client| {
        let url = url.clone();
        let access = access.clone();
        async move { http.get(url).bearer_auth(access).send().await.unwrap() }
    };
    let one = client_from("127.0.0.1");
    let two = client_from("127.0.0.2");
    let mut held = Vec::new();
    for _ in 0..2 {
        let r = open(one.clone()).await;
        assert_eq!(r.status(), StatusCode::OK);
        held.push(r);
    }
    let r = open(one.clone()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    let body: Json = r.json().await.unwrap();
    assert_eq!(body["code"], "too_many_streams");
    let r = open(two.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    held.push(r);
    let r = open(two.clone()).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(bank.app.streams.held(), (3, 2));
    // The streams end with the transfer, and the slots come back.
    bank.app.state.cancel(&id, "test over").await.unwrap();
    for mut r in held {
        while r.chunk().await.unwrap().is_some() {}
    }
    until("the slots to come back", || {
        bank.app.streams.held() == (0, 0)
    })
    .await;
    let r = open(two).await;
    assert_eq!(r.status(), StatusCode::OK);
    bank.cleanup().await;
}

#[actix_web::test]
async fn synchronous_waits_are_bounded_per_address_and_in_total() {
    let bank =
        Bank::start_with(&[("ALIAS_MAX_WAITS_PER_ADDR", "1"), ("ALIAS_MAX_WAITS", "2")]).await;
    for n in 26..=29 {
        bind_user(&bank, n).await;
    }
    let url = bank.url("/alias/process");
    let post = |http: reqwest::Client, n: u8| {
        let url = url.clone();
        let token = grant(
            &user_key(n),
            &contract(&format!("Wait {n}"), "127.0.0.1:9"),
            now(),
        );
        async move {
            http.post(url)
                .json(&serde_json::json!({ "grant": token }))
                .send()
                .await
                .unwrap()
        }
    };
    // Nobody processes: the first waits (until the end of the test).
    let first = actix_web::rt::spawn(post(client_from("127.0.0.1"), 26));
    until("the first wait", || bank.app.waits.held().0 == 1).await;
    // The slot is taken before the grant is even read: count the queued
    // jobs once the first request's job is there (it queues, then waits).
    let deadline = Instant::now() + Duration::from_secs(10);
    let depth = loop {
        let depth = bank.depth(runtime::mq::Route::Process).await;
        if depth >= 1 {
            break depth;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the first job"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let r = post(client_from("127.0.0.1"), 27).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    let body: Json = r.json().await.unwrap();
    assert_eq!(body["code"], "too_many_waits");
    // Refused before anything started.
    assert_eq!(bank.depth(runtime::mq::Route::Process).await, depth);
    let second = actix_web::rt::spawn(post(client_from("127.0.0.2"), 28));
    until("the second wait", || bank.app.waits.held().0 == 2).await;
    let r = post(client_from("127.0.0.3"), 29).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some());
    // An asynchronous request does not wait, so it is not bounded by these.
    let (_, _) = start(
        &bank,
        &grant(&user_key(29), &contract("Async", "127.0.0.1:9"), now()),
    )
    .await;
    first.abort();
    second.abort();
    bank.cleanup().await;
}
