//! End to end against the local Redis and RabbitMQ: gateway → processor →
//! pusher → alias-sink, all in this process, each test in its own namespace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::{
    client_decl, contract_doc, contract_id, give_dump, grant_signed, group, key, now,
    revocation_at, user, Bank, Client,
};
use protocol::anychain::{to_token, Value};
use reqwest::StatusCode;
use serde_json::Value as Json;
use sink::Faults;

/// A bank with a processor and a pusher in this process; `extra` changes
/// its configuration.
async fn stack(extra: &[(&str, &str)]) -> Bank {
    stack_of(Bank::setup("e").envs(extra)).await
}

async fn stack_of(setup: e2e::Setup) -> Bank {
    let mut bank = setup.start().await;
    bank.start_processor().await;
    bank.start_pusher().await;
    give_dump(&bank, &user(42), 3 << 20, 7).await;
    bank
}

/// The client (key of seed 1) with `faults`; its contract has the search
/// history as contractual and one consent group (YouTube history and
/// photos).
fn client(faults: Faults) -> Client {
    Client::with_contract(1, faults, contract)
}

fn contract(domain: &str) -> Value {
    contract_doc(client_decl("Voice Commons", domain, &key(1)))
        .contractual(group(&["my_activity.search"], &[]))
        .consent(group(&["youtube.watch_history", "photos"], &[]))
        .build()
}

/// `POST /alias/process` of the user's grant of every scope, waiting for
/// the transfer's end.
async fn process(bank: &Bank, client: &Client) -> (StatusCode, Json) {
    let grant = grant_signed(
        &user(42),
        &client.contract,
        vec![vec![true, true]],
        vec![],
        now(),
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/alias/process", bank.base))
        .form(&[("grant", to_token(&grant))])
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

/// Every archive the client holds is byte for byte the stored archive.
async fn assert_identical(bank: &Bank, client: &Client, body: &Json, verifying_client: bool) {
    let t = &body["transfer"];
    let id = t["id"].as_str().unwrap();
    let generation = t["generation"].as_u64().unwrap();
    let files = bank.app.state.files(id, generation).await.unwrap();
    assert!(!files.is_empty());
    for f in &files {
        let stored = bank.app.storage.get_bytes(&f.storage_key).await.unwrap();
        let received = client.sink.read_file(id, &f.name).unwrap();
        assert_eq!(received.len(), stored.len(), "{}", f.name);
        assert!(received == stored.as_ref(), "{} differs", f.name);
    }
    let sink_state = client.sink.transfer(id).unwrap();
    assert!(sink_state.finished, "{sink_state:?}");
    // A reference-mode client takes the finish without checking anything.
    assert_eq!(
        sink_state.finish_verified, verifying_client,
        "{sink_state:?}"
    );
    assert_eq!(sink_state.files.len(), files.len());
}

#[actix_web::test]
async fn archives_arrive_byte_identical() {
    let client = client(Faults::none());
    let bank = stack(&[]).await;
    let (status, body) = process(&bank, &client).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    let processor = body["processor"].as_array().unwrap();
    assert_eq!(processor.len(), 3, "{body}");
    assert_identical(&bank, &client, &body, true).await;
    assert_eq!(client.sink.counters().starts, 1);
    assert_eq!(client.sink.counters().transfer_finishes, 1);
    bank.cleanup().await;
}

/// Archives are pushed as soon as each is stored: with one build thread
/// (the scopes of an export large enough to be split built one after the
/// other), the generation is pushing with its first archives recorded
/// before its list of archives is sealed. The client still gets every
/// archive byte for byte and one transfer finish, last.
#[actix_web::test]
async fn the_first_archives_are_pushed_while_the_others_are_built() {
    let client = client(Faults::none());
    let mut bank = Bank::setup("e")
        .env("ALIAS_BUILD_THREADS", "1")
        .start()
        .await;
    bank.start_processor().await;
    bank.start_pusher().await;
    // The generated export comes out smaller than asked: twice the size.
    give_dump(&bank, &user(42), 2 * processor::extract::SPLIT_MIN_BYTES, 7).await;
    // Every event of the transfer, read as they come (the channel is
    // bounded).
    let mut events = bank.app.state.subscribe(&client.id);
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(e) = events.recv().await {
            let end = e.transfer.state.is_terminal();
            seen.push(e.transfer);
            if end {
                break;
            }
        }
        seen
    });
    let (status, body) = process(&bank, &client).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = tokio::time::timeout(std::time::Duration::from_secs(30), seen)
        .await
        .unwrap()
        .unwrap();
    let early = seen.iter().find(|t| {
        t.state == runtime::state::TransferState::Pushing && !t.built && t.files_total >= 1
    });
    assert!(early.is_some(), "{seen:#?}");
    let last = seen.last().unwrap();
    assert!(last.built && last.files_total == 3, "{last:?}");
    e2e::assert_delivered(&bank, &client).await;
    assert_eq!(client.sink.counters().transfer_finishes, 1);
    bank.cleanup().await;
}

#[actix_web::test]
async fn a_client_failing_every_third_request_still_gets_identical_files() {
    let client = client(Faults {
        fail_every: 3,
        ..Faults::none()
    });
    let bank = stack(&[]).await;
    let (status, body) = process(&bank, &client).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_identical(&bank, &client, &body, true).await;
    assert!(client.sink.counters().injected_failures > 0);
    bank.cleanup().await;
}

#[actix_web::test]
async fn a_dead_client_ends_failed_with_the_reason_and_is_never_told_finished() {
    let client = client(Faults {
        dead: true,
        ..Faults::none()
    });
    let bank = stack(&[
        ("ALIAS_PUSH_ATTEMPTS", "2"),
        ("ALIAS_PUSH_BUDGET_SECS", "1"),
    ])
    .await;
    let (status, body) = process(&bank, &client).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["code"], "failed");
    assert!(body["reason"].as_str().unwrap().contains("500"), "{body}");
    assert_eq!(client.sink.counters().transfer_finishes, 0);
    bank.cleanup().await;
}

#[actix_web::test]
async fn a_client_on_a_private_address_is_refused() {
    let client = client(Faults::none());
    // Loopback is not allowed in this deployment.
    let bank = stack_of(Bank::setup("e").unset("ALIAS_PUSH_ALLOW")).await;
    let (status, body) = process(&bank, &client).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("127.0.0.1"),
        "{body}"
    );
    assert_eq!(client.sink.counters().requests, 0);
    bank.cleanup().await;
}

#[actix_web::test]
async fn a_reference_client_losing_chunk_answers_gets_a_restart_and_identical_files() {
    let client = client(Faults {
        reference_mode: true,
        drop_every: 5,
        ..Faults::none()
    });
    let bank = stack(&[]).await;
    // Once a restart happened, the network heals: stop dropping answers.
    let mut events = bank.app.state.subscribe(&client.id);
    let healer = async {
        while let Ok(event) = events.recv().await {
            if event.kind == "restarted" {
                client.sink.set_faults(Faults::reference());
                return;
            }
        }
    };
    let ((status, body), ()) = tokio::join!(process(&bank, &client), healer);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["transfer"]["generation"].as_u64().unwrap() > 1,
        "{body}"
    );
    assert_identical(&bank, &client, &body, false).await;
    assert!(client.sink.counters().starts >= 2);
    bank.cleanup().await;
}

#[actix_web::test]
async fn a_revocation_stops_the_push_and_reaches_the_client() {
    let client = client(Faults {
        delay_ms: 20,
        ..Faults::none()
    });
    let bank = stack(&[]).await;
    let id = contract_id(&client.contract);
    let signed_at = now();
    let grant = grant_signed(
        &user(42),
        &client.contract,
        vec![vec![true, true]],
        vec![],
        signed_at,
    );
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/alias/process", bank.base))
        .header("Prefer", "respond-async")
        .form(&[("grant", to_token(&grant))])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    // While the archives are being pushed, the user revokes.
    let mut events = bank.app.state.subscribe(&id);
    while let Ok(event) = events.recv().await {
        if event.kind == "progress" && event.transfer.bytes_done > 0 {
            break;
        }
    }
    let revoked = revocation_at(&user(42), &client.contract, signed_at + 1000.0);
    let resp = http
        .post(format!("{}/alias/grants", bank.base))
        .body(revoked)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The revocation generation ends done: start (revoked grant) + finish.
    loop {
        let t = bank.app.state.transfer(&id).await.unwrap().unwrap();
        if t.generation == 2 && t.state.is_terminal() {
            assert_eq!(t.state, runtime::state::TransferState::Done, "{t:?}");
            assert!(t.revoked);
            break;
        }
        let _ = events.recv().await;
    }
    let sink_state = client.sink.transfer(&id).unwrap();
    assert!(sink_state.revoked, "{sink_state:?}");
    assert!(sink_state.grant.revoked);
    assert!(
        sink_state.files.is_empty(),
        "the client's data was dropped: {sink_state:?}"
    );
    assert_eq!(client.sink.counters().starts, 2);
    bank.cleanup().await;
}

/// The consent page's preview through RabbitMQ and a processor: the user
/// sees, per scope, the archive the transfer then delivers (the same
/// files), and the preview stores no archive.
#[actix_web::test]
async fn a_preview_shows_what_the_transfer_then_delivers() {
    let bank = stack(&[]).await;
    let client = client(Faults::none());
    let mut agent = e2e::WebAgent::new(&bank);
    e2e::web_signup(&mut agent, "previewer", &user(42), 42).await;
    let enc: String =
        url::form_urlencoded::byte_serialize(to_token(&client.contract).as_bytes()).collect();
    let (status, page, _) = agent.get(&format!("/request?contract={enc}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"preview-start\""));
    let rid = e2e::html_attr(&page, "id=\"request-id\" value=\"").unwrap();
    let path = format!("/web/preview?request={rid}");
    let (status, started) = agent.post_json(&path, serde_json::json!({})).await;
    assert_eq!(status, 202, "{started}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let answer = loop {
        let (status, answer) = agent.get_json(&path).await;
        assert_eq!(status, 200, "{answer}");
        if answer["state"] != "pending" {
            break answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the preview never came"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(answer["state"], "ready", "{answer}");
    let scopes = answer["preview"]["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 3, "{answer}");
    // Scopes taken whole: files counted and named (records are counted
    // for filtered files only, as in the manifests).
    for s in scopes {
        assert!(s["files"].as_u64().unwrap() > 0, "{s}");
        assert!(!s["first_files"].as_array().unwrap().is_empty(), "{s}");
    }
    assert!(
        bank.app.storage.list("transfers").await.unwrap().is_empty(),
        "a preview stored an archive"
    );
    let (status, body) = process(&bank, &client).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let t = &body["transfer"];
    let files = bank
        .app
        .state
        .files(t["id"].as_str().unwrap(), t["generation"].as_u64().unwrap())
        .await
        .unwrap();
    let mut delivered: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let mut previewed: Vec<&str> = scopes.iter().map(|s| s["file"].as_str().unwrap()).collect();
    delivered.sort_unstable();
    previewed.sort_unstable();
    assert_eq!(previewed, delivered);
    bank.cleanup().await;
}

/// A failing client through the real pusher: each retry is noted with the
/// time of the next try (what the user's dashboard shows as "Retrying
/// (attempt N), next try at …"); once the client answers, the note is
/// cleared and the transfer completes.
#[actix_web::test]
async fn retries_are_noted_for_the_dashboard_and_cleared_when_the_client_answers() {
    use std::time::{Duration, Instant};
    let bank = stack(&[
        ("ALIAS_PUSH_ATTEMPTS", "1"),
        ("ALIAS_PUSH_BUDGET_SECS", "300"),
    ])
    .await;
    let client = Client::new(
        "Down",
        6,
        Faults {
            dead: true,
            ..Faults::none()
        },
    );
    let (status, body) = e2e::process_async(&bank.base, &client.grant(&user(42))).await;
    assert_eq!(status, 202, "{body}");
    // The transfer's events do not carry the note: read it until it shows
    // (bounded; the first failed try comes as soon as the archives exist).
    let limit = Instant::now() + Duration::from_secs(120);
    let (generation, note) = loop {
        let t = bank.app.state.transfer(&client.id).await.unwrap().unwrap();
        let note = bank
            .app
            .state
            .retry_note(&client.id, t.generation)
            .await
            .unwrap();
        if let Some(note) = note {
            break (t.generation, note);
        }
        assert!(Instant::now() < limit, "no retry noted: {t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(note.failures >= 1, "{note:?}");
    assert!(
        note.next_ms > runtime::state::now_ms().saturating_sub(10_000),
        "{note:?}"
    );
    assert!(client.sink.counters().transfer_finishes == 0);
    // The client comes back: the next try goes through and the note goes.
    client.sink.set_faults(Faults::none());
    let t = e2e::wait_terminal(&bank, &client.id, Duration::from_secs(120)).await;
    assert_eq!(t.state, runtime::state::TransferState::Done, "{t:?}");
    assert_eq!(t.generation, generation);
    assert_eq!(
        bank.app
            .state
            .retry_note(&client.id, t.generation)
            .await
            .unwrap(),
        None
    );
    bank.cleanup().await;
}
