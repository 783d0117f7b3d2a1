//! Attacks: isolation between users, and the restart fence.
//!
//! With contract-hash push ids (the default, the only form the reference
//! client accepts) the client keeps one folder per contract hash and wipes
//! it on every start: a second user's grant or revocation for a contract
//! another user holds must be refused (409 `contract_bound`), and the first
//! user's transfer and client folder must stay exactly as they were. The
//! `client_id` shortcut of the web authorization request must never hand a
//! user a contract another user holds. And a restarted transfer must never
//! let a request of the old generation reach the client after the new
//! generation's start (the reference client appends chunks blindly).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::{
    assert_delivered, give_dump, html_attr, process_async, process_sync, revocation, user, user_pk,
    wait_terminal, wait_until, web_signup, Bank, Client, WebAgent,
};
use protocol::alias::Contract;
use protocol::anychain::to_token;
use runtime::state::{now_ms, Transfer, TransferState};
use sink::Faults;
use std::collections::BTreeMap;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// What must not have moved for the victim.
fn same_transfer(before: &Transfer, after: &Transfer) {
    assert_eq!(
        (
            &after.user,
            &after.grant_hash,
            after.generation,
            after.state,
            after.revoked,
            &after.push_url
        ),
        (
            &before.user,
            &before.grant_hash,
            before.generation,
            before.state,
            before.revoked,
            &before.push_url
        ),
        "the victim's transfer changed"
    );
}

/// User B grants, then revokes, user A's contract while A's transfer runs:
/// both refused with 409 `contract_bound`; A's transfer runs on untouched
/// and A's client receives exactly A's archives after exactly one start.
#[actix_web::test]
async fn another_users_grant_for_a_bound_contract_is_refused() {
    let mut bank = Bank::new("iso", &[]).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let (alice, mallory) = (user(81), user(82));
    give_dump(&bank, &alice, 1 << 20, 81).await;
    give_dump(&bank, &mallory, 1 << 20, 82).await;
    // A slow client, so that A's transfer is still running when B strikes.
    let client = Client::new(
        "Shared",
        80,
        Faults {
            delay_ms: 50,
            ..Faults::none()
        },
    );
    let (status, body) = process_async(&bank.base, &client.grant(&alice)).await;
    assert_eq!(status, 202, "{body}");
    let running = wait_until(&bank, &client.id, LIMIT, |t| {
        t.state == TransferState::Pushing && t.bytes_done > 0
    })
    .await;
    assert_eq!(running.user, user_pk(&alice));

    for (what, token) in [
        ("grant", client.grant(&mallory)),
        ("revocation", revocation(&mallory, &client.contract)),
    ] {
        for (route, (status, body)) in [
            ("process", process_async(&bank.base, &token).await),
            ("grants", e2e::store_grant(&bank.base, &token).await),
        ] {
            assert_eq!(status, 409, "{what} via {route}: {body}");
            assert_eq!(body["code"], "contract_bound", "{what} via {route}: {body}");
            assert!(
                body["reason"]
                    .as_str()
                    .unwrap()
                    .contains("contract per user"),
                "{body}"
            );
        }
        let now = bank.app.state.transfer(&client.id).await.unwrap().unwrap();
        assert_eq!(
            (&now.user, &now.grant_hash, now.generation, now.revoked),
            (
                &running.user,
                &running.grant_hash,
                running.generation,
                false
            ),
            "{what}: the victim's transfer changed"
        );
    }
    // Nothing of B's was stored.
    let contract_hash = client.id.clone();
    assert_eq!(
        bank.app
            .state
            .stored_grant(&user_pk(&mallory), &contract_hash)
            .await
            .unwrap(),
        None
    );

    let done = wait_terminal(&bank, &client.id, LIMIT).await;
    assert_eq!(done.state, TransferState::Done, "{done:?}");
    assert_eq!(
        (done.generation, done.user.as_str()),
        (1, running.user.as_str())
    );
    assert_delivered(&bank, &client).await;
    let counters = client.sink.counters();
    assert_eq!(counters.starts, 1, "{counters:?}");
    let held = client.sink.transfer(&client.id).unwrap();
    assert_eq!(held.grant.user, user_pk(&alice));
    assert!(!held.revoked);
    bank.cleanup().await;
}

/// After A's transfer finished, B's revocation (and B's newer grant) of A's
/// contract change nothing: no notice reaches A's client, A's stored grant
/// and transfer stay, A's folder at the client is intact.
#[actix_web::test]
async fn another_users_revocation_changes_nothing() {
    let mut bank = Bank::new("isr", &[]).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let (alice, mallory) = (user(83), user(84));
    give_dump(&bank, &alice, 1 << 19, 83).await;
    give_dump(&bank, &mallory, 1 << 19, 84).await;
    let client = Client::new("Shared", 85, Faults::none());
    let alice_grant = client.grant(&alice);
    let (status, body) = process_sync(&bank.base, &alice_grant).await;
    assert_eq!(status, 200, "{body}");
    let files = assert_delivered(&bank, &client).await;
    let before = bank.app.state.transfer(&client.id).await.unwrap().unwrap();
    let requests = client.sink.requests().len();

    let (status, body) =
        e2e::store_grant(&bank.base, &revocation(&mallory, &client.contract)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("contract_bound")),
        "{body}"
    );
    let (status, body) = process_sync(&bank.base, &client.grant(&mallory)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("contract_bound")),
        "{body}"
    );

    let after = bank.app.state.transfer(&client.id).await.unwrap().unwrap();
    same_transfer(&before, &after);
    assert_eq!(
        bank.app
            .state
            .stored_grant(&user_pk(&alice), &client.id)
            .await
            .unwrap()
            .as_deref(),
        Some(alice_grant.as_str())
    );
    // A's own revocation still works, and reaches A's client.
    assert_eq!(
        client.sink.requests().len(),
        requests,
        "B reached the client"
    );
    assert_eq!(e2e::received(&client), files);
    assert_eq!(client.sink.counters().starts, 1);
    let (status, body) = e2e::store_grant(&bank.base, &revocation(&alice, &client.contract)).await;
    assert_eq!(status, 200, "{body}");
    let revoked = wait_terminal(&bank, &client.id, LIMIT).await;
    assert!(
        revoked.revoked && revoked.generation == 2 && revoked.state == TransferState::Done,
        "{revoked:?}"
    );
    assert!(client.sink.transfer(&client.id).unwrap().revoked);
    bank.cleanup().await;
}

/// `/request?client_id=` only finds a contract the same user was shown:
/// B never gets A's contract from it, and A's contract itself is refused
/// to B once A holds it.
#[actix_web::test]
async fn client_id_shortcut_never_hands_over_another_users_contract() {
    let bank = Bank::new("isw", &[]).await;
    let client = Client::new("Shared web", 86, Faults::none());
    let token = to_token(&client.contract);
    let client_id = Contract::new(&client.contract)
        .unwrap()
        .client()
        .unwrap()
        .id()
        .unwrap()
        .to_b64();
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();

    // A is shown the contract and agrees: the contract is A's.
    let alice = user(87);
    let mut a = WebAgent::new(&bank);
    web_signup(&mut a, "alice", &alice, 87).await;
    let (status, page, _) = a.get(&format!("/request?contract={}", enc(&token))).await;
    assert_eq!(status, 200, "{page}");
    let rid = html_attr(&page, "id=\"request-id\" value=\"").unwrap();
    let grant = client.grant(&alice);
    let (status, body) = a
        .post_json(
            &format!("/request/{rid}/agree"),
            serde_json::json!({"grant": grant, "bind": e2e::bind_token(&alice)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A's own shortcut finds it again.
    let (status, page, _) = a.get(&format!("/request?client_id={client_id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Shared web"));

    // B: not logged in, the shortcut only leads to the login page.
    let mallory = user(88);
    let mut b = WebAgent::new(&bank);
    let (status, page, location) = b.get(&format!("/request?client_id={client_id}")).await;
    assert_eq!(status, 303, "{page}");
    assert!(location.unwrap().starts_with("/login?"));
    assert!(!page.contains("Shared web"));
    web_signup(&mut b, "mallory", &mallory, 88).await;
    // Logged in: the shortcut does not know this client for B.
    let (status, page, _) = b.get(&format!("/request?client_id={client_id}")).await;
    assert_eq!(status, 400, "{page}");
    assert!(!page.contains("request-id") && !page.contains(&token));
    // And A's contract itself is refused to B.
    let (status, page, _) = b.get(&format!("/request?contract={}", enc(&token))).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("contract per user") && !page.contains("request-id"));
    // Nothing of B's is stored; the contract stays A's.
    assert_eq!(
        bank.app
            .state
            .stored_grant(&user_pk(&mallory), &client.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        bank.app
            .state
            .contract_owner(&client.id)
            .await
            .unwrap()
            .as_deref(),
        Some(user_pk(&alice).as_str())
    );

    // A grant of B's for A's contract stored before contracts were bound
    // (legacy state): B's dashboard still never shows A's transfer as B's.
    let legacy = client.grant(&mallory);
    bank.app
        .state
        .update_grant(&user_pk(&mallory), &client.id, now_ms() as f64, &legacy)
        .await
        .unwrap();
    let alice_grant = protocol::alias::Grant::from_token(&grant, &Default::default()).unwrap();
    bank.app
        .state
        .begin_transfer(
            &client.id,
            &runtime::state::NewTransfer {
                grant_token: &grant,
                grant_hash: &alice_grant.grant_hash().unwrap().to_b64(),
                user: &user_pk(&alice),
                push_url: &client.sink.transfer_url(&client.id),
                revoked: false,
            },
        )
        .await
        .unwrap();
    for (agent, sees) in [(&mut a, true), (&mut b, false)] {
        let (status, _, _) = agent.get("/dashboard").await;
        assert_eq!(status, 200);
        let (status, body) = agent.get_json("/web/transfers").await;
        assert_eq!(status, 200, "{body}");
        let clients = body["clients"].as_array().unwrap();
        assert_eq!(clients.len(), 1, "{body}");
        assert_eq!(clients[0]["contract"], client.id);
        assert_eq!(!clients[0]["transfer"].is_null(), sees, "{body}");
    }
    bank.cleanup().await;
}

// ---- the restart fence ------------------------------------------------------

mod slow_client {
    //! A receiver that behaves as the reference client (chunks appended in
    //! arrival order, no `HEAD`, every start wipes the data) and stages a
    //! restart while a chunk is in flight: it holds the first chunk of the
    //! photos archive (as a slow disk or a slow upload would) until a new
    //! start arrives or a few seconds passed, and meanwhile answers the
    //! first chunk of the searches archive with 409, which makes the pusher
    //! restart the transfer (no `HEAD` to ask the offset).

    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::sync::Notify;

    /// One chunk as the receiver saw it.
    #[derive(Debug, Clone)]
    pub struct ChunkSeen {
        pub file: String,
        /// Starts received when the chunk arrived.
        pub starts_at_arrival: u64,
        /// Starts received when its bytes were appended.
        pub starts_at_write: u64,
    }

    #[derive(Default)]
    pub struct Seen {
        pub starts: u64,
        pub chunks: Vec<ChunkSeen>,
        pub files: BTreeMap<String, Vec<u8>>,
        pub finished: bool,
        held_once: bool,
        refused_once: bool,
        holding: bool,
    }

    #[derive(Clone, Default)]
    pub struct Shared {
        pub seen: Arc<Mutex<Seen>>,
        start: Arc<Notify>,
        holding: Arc<Notify>,
    }

    async fn start(shared: web::Data<Shared>) -> HttpResponse {
        {
            let mut seen = shared.seen.lock().unwrap();
            seen.starts += 1;
            seen.files.clear();
            seen.finished = false;
        }
        shared.start.notify_waiters();
        HttpResponse::Ok().finish()
    }

    async fn chunk(
        shared: web::Data<Shared>,
        path: web::Path<(String, String)>,
        body: web::Bytes,
    ) -> HttpResponse {
        let file = path.into_inner().1;
        let (arrival, hold, refuse) = {
            let mut seen = shared.seen.lock().unwrap();
            let hold = file.contains("photos") && !seen.held_once && seen.starts == 1;
            let refuse = file.contains("search") && !seen.refused_once;
            seen.held_once |= hold;
            seen.refused_once |= refuse;
            (seen.starts, hold, refuse)
        };
        if refuse {
            // Wait (bounded) until the photos chunk is held, then lose this
            // chunk's answer: the pusher restarts the transfer.
            let held = shared.holding.notified();
            let is_held = shared.seen.lock().unwrap().holding;
            if !is_held {
                let _ = tokio::time::timeout(Duration::from_secs(20), held).await;
            }
            return HttpResponse::Conflict()
                .json(serde_json::json!({"status": "error", "reason": "lost"}));
        }
        if hold {
            let next_start = shared.start.notified();
            shared.seen.lock().unwrap().holding = true;
            shared.holding.notify_waiters();
            let _ = tokio::time::timeout(Duration::from_secs(8), next_start).await;
            shared.seen.lock().unwrap().holding = false;
        }
        let mut seen = shared.seen.lock().unwrap();
        let starts_at_write = seen.starts;
        seen.files
            .entry(file.clone())
            .or_default()
            .extend_from_slice(&body);
        seen.chunks.push(ChunkSeen {
            file,
            starts_at_arrival: arrival,
            starts_at_write,
        });
        HttpResponse::Ok().finish()
    }

    async fn finish_transfer(shared: web::Data<Shared>) -> HttpResponse {
        shared.seen.lock().unwrap().finished = true;
        HttpResponse::Ok().finish()
    }

    async fn not_found(_req: HttpRequest) -> HttpResponse {
        HttpResponse::NotFound().finish()
    }

    /// Serves on a free loopback port; returns its address.
    pub fn serve(shared: Shared) -> std::net::SocketAddr {
        let data = web::Data::new(shared);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .route("/alias/push/{id}", web::put().to(start))
                .route("/alias/push/{id}", web::post().to(finish_transfer))
                .route("/alias/push/{id}/{file}", web::put().to(chunk))
                .route("/alias/push/{id}/{file}", web::post().to(HttpResponse::Ok))
                .default_service(web::to(not_found))
        })
        .workers(4)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        actix_web::rt::spawn(server.run());
        addr
    }
}

/// A restart staged while a chunk of generation 1 is in flight: the start
/// of generation 2 reaches the client only after that chunk was answered,
/// so no chunk of generation 1 is written after it, and the client ends
/// with exactly the archives of the last generation. The client holds the
/// chunk past the pusher's chunk deadline (the pusher abandons the
/// request): the generation stays fenced one more deadline, for a chunk
/// the client may still write. The test checks that the scene took place
/// (it once passed without it, when one push at a time per client never
/// had the two chunks out together).
#[actix_web::test]
async fn no_chunk_of_an_old_generation_arrives_after_a_new_start() {
    // Two pushes at once for the client: the photos archive, stored last
    // (it is the largest), is pushed while the search archive's chunk waits
    // for it, as the scene needs.
    let mut bank = Bank::new(
        "isf",
        &[
            ("ALIAS_WORKER_CONCURRENCY", "4"),
            ("ALIAS_PUSH_CONCURRENCY", "4"),
            ("ALIAS_PUSH_PER_CLIENT", "2"),
        ],
    )
    .await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let alice = user(89);
    give_dump(&bank, &alice, 1 << 20, 89).await;
    let shared = slow_client::Shared::default();
    let addr = slow_client::serve(shared.clone());
    let contract = e2e::contract("Slow", 90, &addr.to_string(), &e2e::SCOPES);
    let id = e2e::contract_id(&contract);
    let grant = e2e::grant(&alice, &contract);
    let (status, body) = process_async(&bank.base, &grant).await;
    assert_eq!(status, 202, "{body}");
    // A second push job of generation 1, as the processor queues for
    // archives announced after the first job started: it pushes beside the
    // first (the files that one does not hold), so two chunks of the
    // generation are out at once.
    let pushing = wait_until(&bank, &id, LIMIT, |t| {
        t.state == TransferState::Pushing && t.files_total > 0
    })
    .await;
    let first = bank.app.state.files(&id, pushing.generation).await.unwrap();
    let second = runtime::jobs::PushJob {
        transfer: id.clone(),
        generation: pushing.generation,
        file: Some(first[0].name.clone()),
    };
    bank.app
        .broker
        .publish(
            runtime::mq::Route::Push,
            &runtime::jobs::encode(&second).unwrap(),
            "second",
        )
        .await
        .unwrap();
    let done = wait_until(&bank, &id, LIMIT, |t| {
        t.state == TransferState::Done || t.state == TransferState::Failed
    })
    .await;
    assert_eq!(done.state, TransferState::Done, "{done:?}");
    assert!(done.generation >= 2, "the transfer was restarted: {done:?}");

    let files = stored_files(&bank, &done).await;
    {
        let seen = shared.seen.lock().unwrap();
        assert!(seen.starts >= 2, "restarted at the client");
        let held: Vec<_> = seen
            .chunks
            .iter()
            .filter(|c| c.file.contains("photos"))
            .collect();
        // The scene took place: a photos chunk of generation 1 was held.
        assert!(
            held.iter().any(|c| c.starts_at_arrival == 1),
            "{:?}",
            seen.chunks
        );
        for c in &seen.chunks {
            assert_eq!(
                c.starts_at_arrival, c.starts_at_write,
                "a chunk was in flight across a start: {c:?} (all: {:?})",
                seen.chunks
            );
        }
        // What the client holds is the last generation's archives, byte for byte.
        assert_eq!(
            seen.files.keys().collect::<Vec<_>>(),
            files.keys().collect::<Vec<_>>(),
            "{done:?} {:?}",
            seen.chunks
        );
        for (name, bytes) in &files {
            assert!(
                seen.files[name] == *bytes,
                "{name} is corrupt at the client"
            );
        }
        assert!(seen.finished);
    }
    bank.cleanup().await;
}

/// The archives of a transfer's current generation, from storage.
async fn stored_files(bank: &Bank, t: &Transfer) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for f in bank.app.state.files(&t.id, t.generation).await.unwrap() {
        let bytes = bank.app.storage.get_bytes(&f.storage_key).await.unwrap();
        out.insert(f.name, bytes.to_vec());
    }
    out
}

/// With `ALIAS_PUSH_ID=grant`, a revocation has its own hash: it still
/// cancels the running transfer, and its notice (the start with the revoked
/// grant, then the finish) goes to the id the data was pushed to, never to
/// a new id the client knows nothing about.
#[actix_web::test]
async fn grant_hash_ids_revocation_cancels_and_notifies_where_the_data_went() {
    let mut bank = Bank::new("isg", &[("ALIAS_PUSH_ID", "grant")]).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let alice = user(91);
    give_dump(&bank, &alice, 1 << 20, 91).await;
    let dir = tempfile::tempdir().unwrap();
    // The sink receives for the client of the contract below (seed 92).
    let client_key = protocol::anychain::signing_key_from_seed(&[92; 32]);
    let mut config =
        sink::SinkConfig::new(dir.path()).with_client_key(client_key.verifying_key().as_bytes());
    config.push_id = protocol::alias::PushId::Grant;
    config.faults = Faults {
        delay_ms: 50,
        ..Faults::none()
    };
    let (addr, sink) = sink::Sink::start(config).unwrap();
    let contract = e2e::contract("Grant ids", 92, &addr.to_string(), &e2e::SCOPES);
    let grant = e2e::grant(&alice, &contract);
    let pushed_id = protocol::alias::Grant::from_token(&grant, &Default::default())
        .unwrap()
        .grant_hash()
        .unwrap()
        .to_b64();
    let (status, body) = process_async(&bank.base, &grant).await;
    assert_eq!(status, 202, "{body}");
    let running = wait_until(&bank, &pushed_id, LIMIT, |t| {
        t.state == TransferState::Pushing && t.bytes_done > 0
    })
    .await;
    assert_eq!(running.generation, 1);

    let revocation = revocation(&alice, &contract);
    let revoked_id = protocol::alias::Grant::from_token(&revocation, &Default::default())
        .unwrap()
        .grant_hash()
        .unwrap()
        .to_b64();
    let (status, body) = e2e::store_grant(&bank.base, &revocation).await;
    assert_eq!(status, 200, "{body}");
    let t = wait_terminal(&bank, &pushed_id, LIMIT).await;
    assert!(
        t.revoked && t.generation == 2 && t.state == TransferState::Done,
        "the running transfer was replaced by the revocation's notice: {t:?}"
    );
    assert!(bank
        .app
        .state
        .transfer(&revoked_id)
        .await
        .unwrap()
        .is_none());
    let held = sink.transfer(&pushed_id).unwrap();
    assert!(held.revoked && held.finished, "{held:?}");
    assert!(
        held.files.is_empty(),
        "the client dropped the data: {held:?}"
    );
    assert!(sink.transfer(&revoked_id).is_none());
    sink.stop();
    bank.cleanup().await;
}
