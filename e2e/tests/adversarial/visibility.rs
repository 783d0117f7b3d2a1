//! Attacks: visibility. A transfer's status and events are read by a
//! stranger, by another user with their own valid signed request and grant,
//! and by another client with its own capability; event streams of unknown
//! ids are opened by the thousand; streams are held open past the bounds.
//! Each is refused with the answer an unknown id gets, reveals nothing,
//! changes nothing for the victim, and leaves no channel behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::{give_dump, process_async, user, user_pk, wait_terminal, Bank, Client};
use protocol::anychain::{b64u_encode, SigningKey};
use sink::Faults;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);
const OPERATOR: &str = "adversarial-operator-token-0123456789abcdef";

/// A signed `alias.bank.request` of `who` for `GET path`, now.
fn signed_get(who: &SigningKey, path: &str) -> String {
    e2e::request_token(who, "GET", path, None)
}

/// `GET path` with `auth` (an `Authorization` value); status and the body
/// (for a stream, its first event).
async fn get(bank: &Bank, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", bank.base));
    if let Some(auth) = auth {
        req = req.header("Authorization", auth);
    }
    let mut resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    if resp
        .headers()
        .get("content-type")
        .is_some_and(|c| c == "text/event-stream")
    {
        let first = resp.chunk().await.unwrap().unwrap_or_default();
        return (status, String::from_utf8_lossy(&first).into_owned());
    }
    (status, resp.text().await.unwrap())
}

/// A bank with workers and an operator token, a victim user whose
/// transfer to `client` ran to its end, and its capability.
async fn victim_transfer(prefix: &str, client: &Client, victim: &SigningKey) -> (Bank, String) {
    let mut bank = Bank::new(prefix, &[("ALIAS_OPERATOR_TOKEN", OPERATOR)]).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    give_dump(&bank, victim, 1 << 20, 7).await;
    let (status, body) = process_async(&bank.base, &client.grant(victim)).await;
    assert_eq!(status, 202, "{body}");
    let access = body["access"].as_str().unwrap().to_owned();
    wait_terminal(&bank, &client.id, LIMIT).await;
    (bank, access)
}

#[actix_web::test]
async fn strangers_other_users_and_other_clients_cannot_read_a_transfer() {
    let client = Client::new("Victim's client", 41, Faults::none());
    let victim = user(141);
    let (bank, access) = victim_transfer("av", &client, &victim).await;
    let id = client.id.clone();
    let before = bank.app.state.transfer(&id).await.unwrap().unwrap();
    let files = bank.app.state.files(&id, before.generation).await.unwrap();
    let pushed_before = client.sink.requests().len();

    // Another user of the bank, with a dump, and another client holding
    // that user's grant and its own capability.
    let other_user = user(142);
    give_dump(&bank, &other_user, 1 << 20, 8).await;
    let other_client = Client::new("Other client", 42, Faults::none());
    let (status, body) = process_async(&bank.base, &other_client.grant(&other_user)).await;
    assert_eq!(status, 202, "{body}");
    let other_access = body["access"].as_str().unwrap().to_owned();
    wait_terminal(&bank, &other_client.id, LIMIT).await;
    // The other user's own valid grant for the victim's contract (never
    // submitted: it is only presented as a credential).
    let other_grant_same_contract = client.grant(&other_user);

    // What nobody else may learn.
    let mut secrets = vec![
        user_pk(&victim),
        before.push_url.clone(),
        before.grant_hash.clone(),
        "my_activity.search".to_owned(),
        "youtube.watch_history".to_owned(),
    ];
    secrets.extend(before.notes.iter().cloned());
    secrets.extend(files.iter().map(|f| f.blake2b.clone()));

    for suffix in ["", "/events"] {
        let path = format!("/alias/transfers/{id}{suffix}");
        let (status, unknown) = get(
            &bank,
            &format!("/alias/transfers/{}{suffix}", b64u_encode(&[3; 64])),
            Some(&format!("Bearer {access}")),
        )
        .await;
        assert_eq!(status, 404);
        let attacks = [
            ("a stranger", None),
            (
                "a stranger guessing a capability",
                Some(format!("Bearer {}", b64u_encode(&[1; 32]))),
            ),
            (
                "a stranger guessing the operator token",
                Some(format!("Bearer {}", &OPERATOR[1..])),
            ),
            (
                "another user's valid signed request",
                Some(format!("Alias {}", signed_get(&other_user, &path))),
            ),
            (
                "another user's valid grant for the same contract",
                Some(format!("Grant {other_grant_same_contract}")),
            ),
            (
                "another client's grant",
                Some(format!("Grant {}", other_client.grant(&other_user))),
            ),
            (
                "another client's capability",
                Some(format!("Bearer {other_access}")),
            ),
        ];
        for (who, auth) in attacks {
            let (status, body) = get(&bank, &path, auth.as_deref()).await;
            assert_eq!(status, 404, "{who} on {path}: {body}");
            assert_eq!(body, unknown, "{who} can tell the transfer exists");
            for s in &secrets {
                assert!(!body.contains(s.as_str()), "{who} learns {s}");
            }
        }
        // The user, the client and the operator do get through.
        for (who, auth) in [
            ("the user", format!("Alias {}", signed_get(&victim, &path))),
            ("the client's capability", format!("Bearer {access}")),
            (
                "the client's grant",
                format!("Grant {}", client.grant(&victim)),
            ),
            ("an operator", format!("Bearer {OPERATOR}")),
        ] {
            let (status, body) = get(&bank, &path, Some(&auth)).await;
            assert_eq!(status, 200, "{who}: {body}");
            assert!(body.contains(&before.push_url), "{who}: {body}");
        }
    }

    // Nothing changed for the victim, nothing was pushed, nothing is left.
    let after = bank.app.state.transfer(&id).await.unwrap().unwrap();
    assert_eq!(after, before);
    assert_eq!(client.sink.requests().len(), pushed_before);
    let state = bank.app.state.clone();
    until("the streams' channels to go", || state.live_channels() == 0).await;
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
async fn thousands_of_unknown_event_streams_leave_the_gateway_as_it_was() {
    let bank = Bank::new("aw", &[]).await;
    let http = reqwest::Client::new();
    let anonymous = ["", "Bearer x", "Alias {}", "Grant {}"];
    for i in 0..3000usize {
        let mut req = http.get(format!("{}/alias/transfers/unknown-{i}/events", bank.base));
        let auth = anonymous[i % anonymous.len()];
        if !auth.is_empty() {
            req = req.header("Authorization", auth);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 404);
    }
    assert_eq!(bank.app.state.live_channels(), 0);
    assert_eq!(bank.app.streams.held(), (0, 0));
    // Nor was anything written for them.
    for i in [0usize, 1, 2999] {
        assert!(bank
            .app
            .state
            .transfer(&format!("unknown-{i}"))
            .await
            .unwrap()
            .is_none());
    }
    bank.cleanup().await;
}

#[actix_web::test]
async fn held_event_streams_are_bounded_per_address_and_in_total() {
    // No workers: the transfer stays accepted and its streams stay open.
    let bank = Bank::new(
        "as",
        &[
            ("ALIAS_MAX_STREAMS_PER_ADDR", "3"),
            ("ALIAS_MAX_STREAMS", "4"),
        ],
    )
    .await;
    let client = Client::new("Streams", 43, Faults::none());
    let u = user(143);
    give_dump(&bank, &u, 1 << 20, 9).await;
    let (status, body) = process_async(&bank.base, &client.grant(&u)).await;
    assert_eq!(status, 202, "{body}");
    let access = body["access"].as_str().unwrap().to_owned();
    let url = format!("{}/alias/transfers/{}/events", bank.base, client.id);
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let (a, b) = (from("127.0.0.1"), from("127.0.0.2"));
    let mut held = Vec::new();
    for _ in 0..3 {
        let r = a.get(&url).bearer_auth(&access).send().await.unwrap();
        assert_eq!(r.status(), 200);
        held.push(r);
    }
    let r = a.get(&url).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let r = b.get(&url).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 200);
    held.push(r);
    let r = b.get(&url).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(bank.app.streams.held(), (4, 2));
    assert_eq!(bank.app.state.live_channels(), 1);
    drop(held);
    bank.cleanup().await;
}
