//! Two gateway replicas on the same namespace (the same Redis keys and
//! RabbitMQ queues), as behind a load balancer, with real workers: what a
//! client starts on one replica it follows on the other.

#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::{
    assert_delivered, give_dump, process_async, process_sync, signed_request, user, Bank, Client,
};
use reqwest::Method;
use runtime::state::testing::{query, SentinelSet};
use serde_json::Value as Json;
use sink::Faults;
use std::time::{Duration, Instant};

/// Waits until the transfer `id` exists in the bank's state.
async fn wait_exists(bank: &Bank, id: &str) {
    let mut events = bank.app.state.subscribe(id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while bank.app.state.transfer(id).await.unwrap().is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "transfer {id} never recorded");
        let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), events.recv()).await;
    }
}

/// A transfer accepted through gateway A is followed to its end through
/// gateway B's event stream and status; a synchronous `/alias/process` on B
/// waits for the work the workers do and answers 200. The workers start
/// only once both clients are waiting on B, so B must learn of every
/// change from the shared state, not from its own requests.
#[actix_web::test]
async fn a_transfer_started_on_one_gateway_is_followed_on_another() {
    follow_across_replicas(&[]).await;
}

/// The same with every role given the URLs of a three-node RabbitMQ
/// cluster (`scripts/rabbit-ha`, started when it is not running): each
/// gateway and worker connects to a node of its own choosing.
#[actix_web::test]
async fn replicas_and_workers_share_a_rabbitmq_cluster() {
    let urls = tokio::task::spawn_blocking(runtime::mq::testing::rabbit_cluster_urls)
        .await
        .unwrap()
        .expect("scripts/rabbit-ha start");
    follow_across_replicas(&[("ALIAS_AMQP_URL", &urls)]).await;
}

async fn follow_across_replicas(extra: &[(&str, &str)]) {
    let mut bank = Bank::new("rep", extra).await;
    let (_b_app, b_addr) = gateway::spawn(bank.config.clone()).await.unwrap();
    let b = format!("http://{b_addr}");
    assert_ne!(b, bank.base, "two replicas");
    give_dump(&bank, &user(42), 1 << 20, 7).await;
    let http = reqwest::Client::new();

    // Accepted on A (no worker runs yet: it stays accepted).
    let one = Client::new("Replica One", 1, Faults::none());
    let (status, body) = process_async(&bank.base, &one.grant(&user(42))).await;
    assert_eq!(status, 202, "{body}");
    let access = body["access"].as_str().unwrap().to_owned();
    assert_eq!(body["transfer"]["id"], one.id.as_str());

    // B streams its events: the current status first.
    let mut stream = http
        .get(format!("{b}/alias/transfers/{}/events", one.id))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let first = stream.chunk().await.unwrap().unwrap();
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(first.starts_with("event: status\ndata: "), "{first}");
    assert!(first.contains("\"state\":\"accepted\""), "{first}");

    // A synchronous request on B for a second client, pending until the
    // workers have done the work.
    let two = Client::new("Replica Two", 2, Faults::none());
    let grant_two = two.grant(&user(42));
    let b_sync = b.clone();
    let waiting = actix_web::rt::spawn(async move { process_sync(&b_sync, &grant_two).await });
    wait_exists(&bank, &two.id).await;
    assert!(!waiting.is_finished(), "B answered before any worker ran");

    bank.start_processor().await;
    bank.start_pusher().await;

    // B's stream follows the transfer to its end, then ends.
    let mut text = first;
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Some(chunk) = tokio::time::timeout_at(deadline.into(), stream.chunk())
        .await
        .expect("B's event stream ends with the transfer")
        .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    for kind in ["processing", "files", "pushing", "file", "done"] {
        assert!(
            text.contains(&format!("event: {kind}\n")),
            "{kind} missing in B's stream: {text}"
        );
    }

    // B's status says done.
    let status: Json = http
        .get(format!("{b}/alias/transfers/{}", one.id))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "done", "{status}");
    assert_delivered(&bank, &one).await;

    // B's synchronous wait ends with the transfer's result.
    let (status, body) = tokio::time::timeout(Duration::from_secs(120), waiting)
        .await
        .expect("B's synchronous wait completes")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["processor"].as_array().unwrap().len(), 3, "{body}");
    assert_delivered(&bank, &two).await;
    bank.cleanup().await;
}

/// The gateway on a Redis primary under Sentinel answers for a write only
/// once a replica holds it: with the replicas stopped, a dump upload and a
/// deletion get 503 `not_replicated` (reads still answer); with them back,
/// the same upload gets 201 and its record is on a replica when the answer
/// arrives, so losing the primary right then would not lose it. A primary
/// with no replica connected answers alone.
#[actix_web::test]
async fn a_write_is_answered_only_once_a_replica_holds_it() {
    let set = SentinelSet::start(7401).await;
    let sentinels = set.sentinel_urls().join(",");
    let bank = Bank::new(
        "dur",
        &[
            ("ALIAS_REDIS_SENTINEL_URLS", sentinels.as_str()),
            ("ALIAS_REDIS_SENTINEL_MASTER", "alias"),
        ],
    )
    .await;
    let u = user(61);
    let pk = e2e::user_pk(&u);
    let body = b"PK\x05\x06"
        .iter()
        .copied()
        .chain([0u8; 18])
        .collect::<Vec<u8>>();
    let http = reqwest::Client::new();
    let upload = |name: &'static str| {
        let path = format!("/alias/dumps/google/{name}");
        let size = Some(body.len() as u64);
        signed_request(&http, Method::PUT, &bank.base, &path, &u, size)
            .body(body.clone())
            .send()
    };
    let list = || signed_request(&http, Method::GET, &bank.base, "/alias/dumps", &u, None).send();

    let first = upload("takeout-1.zip").await.unwrap();
    assert_eq!(first.status().as_u16(), 201);

    let paused = set.pause_replicas();
    let refused = upload("takeout-2.zip").await.unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let answer: Json = refused.json().await.unwrap();
    assert_eq!(answer["code"], "not_replicated", "{answer}");
    let path = "/alias/dumps/google/takeout-1.zip";
    let deleted = signed_request(&http, Method::DELETE, &bank.base, path, &u, None)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 503);
    assert_eq!(list().await.unwrap().status().as_u16(), 200);
    drop(paused);

    // Asked again, the upload is answered, and the replicas hold its
    // record by then.
    let again = upload("takeout-2.zip").await.unwrap();
    assert_eq!(again.status().as_u16(), 201);
    let mut on_replicas = Vec::new();
    for port in set.replica_ports() {
        let key = format!("{}:*dumps*", bank.ns);
        let keys: Vec<String> = query(port, redis::cmd("KEYS").arg(key)).await.unwrap();
        for key in keys {
            let values: Vec<String> = query(port, redis::cmd("HVALS").arg(&key)).await.unwrap();
            on_replicas.extend(values.into_iter().map(|v| (port, v)));
        }
    }
    assert!(
        on_replicas.iter().any(|(_, v)| v.contains("takeout-2.zip")),
        "no replica holds the answered upload: {on_replicas:?}"
    );
    let listed: Json = list().await.unwrap().json().await.unwrap();
    assert!(listed.to_string().contains(&pk), "{listed}");

    // With no replica left at all (as right after a failover, before the
    // old primary returns as a replica), the primary answers alone: there
    // is no copy to wait for, and refusing would stop every upload.
    let mut set = set;
    for replica in &mut set.replicas {
        replica.kill().unwrap();
        replica.wait().unwrap();
    }
    let alone = upload("takeout-3.zip").await.unwrap();
    assert_eq!(alone.status().as_u16(), 201);
    bank.cleanup().await;
    drop(set);
}
