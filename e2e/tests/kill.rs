//! Fault test: a pusher process killed with SIGKILL in the middle of a file;
//! another pusher process resumes from the committed offset, and the client
//! ends with byte-identical files, each finished once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::{contract, give_dump_of, grant, user, Bank, Client, Role};
use sink::Faults;

#[actix_web::test]
async fn a_pusher_killed_mid_file_is_resumed_by_another() {
    let mut bank = Bank::new(
        "k",
        &[
            ("ALIAS_WORKER_CONCURRENCY", "4"),
            ("ALIAS_PUSH_CONCURRENCY", "4"),
        ],
    )
    .await;
    bank.start_processor().await;
    // Slow enough that the kill lands in the middle of the big file.
    let client = Client::with_contract(
        1,
        Faults {
            delay_ms: 20,
            ..Faults::none()
        },
        |domain| contract("Photo Lab", 1, domain, &["photos", "my_activity.search"]),
    );
    let id = client.id.clone();

    // A user with a Takeout whose photos make one big archive.
    let user = user(43);
    give_dump_of(
        &bank,
        &user,
        &dumpgen::Options {
            target_bytes: 4 << 20,
            media_ratio: 0.9,
            seed: 11,
            ..dumpgen::Options::default()
        },
    )
    .await;
    let grant = grant(&user, &client.contract);

    let mut events = bank.app.state.subscribe(&id);
    let mut first = bank.spawn(Role::Pusher);
    let request = reqwest::Client::new()
        .post(format!("{}/alias/process", bank.base))
        .form(&[("grant", grant)])
        .send();
    let killer = async {
        // Kill once some bytes of the transfer are committed, mid-file.
        while let Ok(event) = events.recv().await {
            let t = event.transfer;
            if event.kind == "progress"
                && t.bytes_done > 256 * 1024
                && t.bytes_done < t.bytes_total / 2
            {
                first.start_kill().unwrap();
                first.wait().await.unwrap();
                return bank.spawn(Role::Pusher);
            }
        }
        panic!("the event stream ended before the kill");
    };
    let (response, second) = tokio::join!(request, killer);
    let response = response.unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");

    let generation = body["transfer"]["generation"].as_u64().unwrap();
    assert_eq!(generation, 1, "resumed in place, no restart: {body}");
    let files = bank.app.state.files(&id, generation).await.unwrap();
    for f in &files {
        let stored = bank.app.storage.get_bytes(&f.storage_key).await.unwrap();
        assert!(
            client.sink.read_file(&id, &f.name).unwrap() == stored.as_ref(),
            "{} differs",
            f.name
        );
    }
    let counters = client.sink.counters();
    assert_eq!(counters.starts, 1, "{counters:?}");
    assert_eq!(
        counters.file_finishes,
        files.len() as u64,
        "each file finished once: {counters:?}"
    );
    assert_eq!(counters.transfer_finishes, 1);
    assert!(
        counters.heads >= 1,
        "the second pusher asked the client's offset: {counters:?}"
    );

    bank.children.push(second);
    bank.cleanup().await;
}
