//! The state on the clustered forms of Redis, beyond the contract suite:
//! on a Redis Cluster, the keys a script touches together share a slot and
//! the namespace's keys are found on every master; under Sentinel, the
//! store follows a failover of its primary (killed, not asked to step down)
//! and keeps what it answered for, and a grant no replica confirmed is not
//! answered for.

use crate::contract::cluster_target;
use runtime::state::testing::{query, until, SentinelSet};
use runtime::state::{
    FileRecord, GrantIntake, Intake, KvEntry, NewTransfer, PrimaryLogin, Quotas, RedisTarget,
    Settled, State, StateError, Subscription, TransferIntake, TransferState, WebKey,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(60);

fn urls(target: &RedisTarget) -> Vec<String> {
    match target {
        RedisTarget::Cluster(urls) => urls.clone(),
        other => panic!("not a cluster: {other}"),
    }
}

/// Every key of the namespace on every master of the test cluster, with
/// its slot and the master holding it.
async fn cluster_keys(ns: &str) -> BTreeMap<String, (i64, String)> {
    let seed = redis::Client::open(urls(&cluster_target())[0].as_str()).unwrap();
    let mut conn = seed.get_multiplexed_async_connection().await.unwrap();
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for line in nodes.lines().filter(|l| l.contains("master")) {
        let addr = line.split(' ').nth(1).unwrap().split('@').next().unwrap();
        let node = redis::Client::open(format!("redis://{addr}")).unwrap();
        let mut node = node.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{ns}:*"))
            .query_async(&mut node)
            .await
            .unwrap();
        for key in keys {
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&key)
                .query_async(&mut node)
                .await
                .unwrap();
            out.insert(key, (slot, addr.to_owned()));
        }
    }
    out
}

pub(crate) fn grant<'a>(user: &'a str, id: &'a str, date: f64, token: &'a str) -> GrantIntake<'a> {
    GrantIntake {
        user,
        contract_hash: id,
        date_ms: date,
        token,
        claim_contract: true,
        begin: Some(TransferIntake {
            id,
            transfer: NewTransfer {
                grant_token: token,
                grant_hash: token,
                user,
                push_url: "https://client.example/alias/push/h",
                revoked: false,
            },
            capability: Some(KvEntry {
                key: WebKey::TransferAccess { id, hash: "cap" },
                value: user,
                ttl: TTL,
            }),
        }),
    }
}

fn file(name: &str) -> FileRecord {
    FileRecord {
        name: name.into(),
        scope: "google.photos".into(),
        storage_key: format!("archives/{name}"),
        size: 10,
        blake2b: "h".into(),
        offset: 0,
        finished: false,
    }
}

/// A transfer's whole life on the cluster, then the slots of its keys: one
/// for the transfer's (and its index sets'), one for the user's. Without
/// the hash tags the scripts fail with `CROSSSLOT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keys_of_one_script_share_a_slot() {
    let ns = format!("ha-{}", uuid::Uuid::new_v4().simple());
    let s = State::connect_to(&cluster_target(), &ns, TTL, Quotas::DEFAULT)
        .await
        .expect("Redis Cluster reachable (scripts/services starts it)");
    let (user, id) = ("user-one", "transfer-one");
    s.set_binding(user, "bind").await.unwrap();
    let Intake::Begun { begin, .. } = s.take_grant(&grant(user, id, 1.0, "g1")).await.unwrap()
    else {
        panic!("begun")
    };
    let generation = begin.generation;
    s.set_files(id, generation, &[file("a"), file("b")])
        .await
        .unwrap();
    use TransferState::{Accepted, Done, Processing, Pushing};
    assert!(s
        .transition(id, generation, &[Accepted], Processing, None)
        .await
        .unwrap());
    assert!(s
        .transition(id, generation, &[Processing], Pushing, None)
        .await
        .unwrap());
    assert!(s.enter_fence(id, generation, "w1", TTL).await.unwrap());
    assert_eq!(
        s.commit_offset(id, generation, "a", 5).await.unwrap(),
        Some(5)
    );
    assert!(s.finish_file(id, generation, "a").await.unwrap());
    let next = s
        .restart_generation(id, generation, "resume")
        .await
        .unwrap()
        .expect("restarted");
    assert!(s
        .transition(id, next, &[Pushing], Done, None)
        .await
        .unwrap());
    assert_eq!(s.count_by_state().await.unwrap().get(&Done), Some(&1));
    let mut keys = cluster_keys(&ns).await;
    // The contract's owner key names the contract (here the transfer id)
    // and is touched alone.
    keys.retain(|k, _| !k.contains(":contract:"));
    let slots = |part: &str| -> BTreeSet<i64> {
        keys.iter()
            .filter(|(k, _)| k.contains(part))
            .map(|(_, (slot, _))| *slot)
            .collect()
    };
    let transfer_slots = slots(id);
    assert!(
        keys.keys().filter(|k| k.contains(id)).count() >= 7,
        "{keys:?}"
    );
    assert_eq!(transfer_slots.len(), 1, "{keys:?}");
    let index_slots = slots(":index:");
    assert_eq!(index_slots, transfer_slots, "{keys:?}");
    assert_eq!(slots(user).len(), 1, "{keys:?}");
    s.purge_namespace().await.unwrap();
}

/// Transfers spread over every master; counting and purging see them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_counts_and_purge_reach_every_master() {
    let ns = format!("ha-{}", uuid::Uuid::new_v4().simple());
    let s = State::connect_to(&cluster_target(), &ns, TTL, Quotas::DEFAULT)
        .await
        .expect("Redis Cluster reachable (scripts/services starts it)");
    let new = NewTransfer {
        grant_token: "t",
        grant_hash: "h",
        user: "u",
        push_url: "https://client.example/alias/push/h",
        revoked: false,
    };
    for i in 0..40 {
        s.begin_transfer(&format!("t{i}"), &new).await.unwrap();
    }
    assert_eq!(
        s.count_by_state()
            .await
            .unwrap()
            .get(&TransferState::Accepted),
        Some(&40)
    );
    let before = cluster_keys(&ns).await;
    let masters: BTreeSet<&String> = before.values().map(|(_, node)| node).collect();
    assert_eq!(masters.len(), 3, "keys on every master: {before:?}");
    s.purge_namespace().await.unwrap();
    assert!(cluster_keys(&ns).await.is_empty());
}

/// Under Sentinel: a grant no replica confirmed is not answered for; the
/// primary killed, a replica takes over, and the store, its events and
/// every grant it answered for carry on there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_keeps_answered_grants() {
    let set = SentinelSet::start(7301).await;
    let ns = format!("ha-{}", uuid::Uuid::new_v4().simple());
    let s = State::connect_to(&set.target(), &ns, TTL, Quotas::DEFAULT)
        .await
        .unwrap();
    s.set_binding("u", "bind").await.unwrap();
    let mut answered = Vec::new();
    for (i, id) in ["c1", "c2", "c3"].into_iter().enumerate() {
        let token = format!("g-{id}");
        let outcome = s.take_grant(&grant("u", id, 1.0 + i as f64, &token)).await;
        assert!(matches!(outcome, Ok(Intake::Begun { .. })), "{outcome:?}");
        answered.push((id, token));
    }
    // A worker's writes, settled before its job is acknowledged, are on a
    // replica when the settling returns (it waited on another connection
    // than the writes'; replication is one ordered stream).
    s.set_binding("w", "settled").await.unwrap();
    assert_eq!(s.settle_writes().await.unwrap(), Settled::Replicated);
    let mut on_replicas = Vec::new();
    for port in set.replica_ports() {
        let keys: Vec<String> = query(port, redis::cmd("KEYS").arg(format!("{ns}:*{{w}}*")))
            .await
            .unwrap();
        on_replicas.push((port, keys));
    }
    assert!(
        on_replicas.iter().any(|(_, keys)| !keys.is_empty()),
        "the settled write is on no replica: {on_replicas:?}"
    );
    // The replicas stopped: the grant reaches the primary only; no 2xx,
    // and settling a worker's writes reports that no replica has them.
    let paused = set.pause_replicas();
    let unconfirmed = s.take_grant(&grant("u", "c4", 9.0, "g-c4")).await;
    s.set_binding("w", "alone").await.unwrap();
    let alone = s.settle_writes().await;
    drop(paused);
    assert!(
        matches!(unconfirmed, Err(StateError::NotReplicated { .. })),
        "{unconfirmed:?}"
    );
    assert!(matches!(alone, Ok(Settled::Unconfirmed)), "{alone:?}");
    let mut events = s.subscribe("c1");
    // The primary killed.
    let mut set = set;
    set.primary.kill().unwrap();
    set.primary.wait().unwrap();
    let killed = Instant::now();
    until("the store on the new primary", || async {
        s.take_grant(&grant("u", "c5", 10.0, "g-c5")).await.is_ok()
    })
    .await;
    eprintln!(
        "sentinel failover: grants taken in again {} ms after the primary was killed",
        killed.elapsed().as_millis()
    );
    assert!(set.a_replica_took_over().await, "a replica took over");
    for (id, token) in &answered {
        assert_eq!(
            s.stored_grant("u", id).await.unwrap().as_deref(),
            Some(token.as_str()),
            "{id}"
        );
        assert_eq!(
            s.transfer(id).await.unwrap().map(|t| t.state),
            Some(TransferState::Accepted)
        );
    }
    // Events come from the new primary too.
    assert!(
        probe_arrives(&s, "c1", &mut events).await,
        "an event after the failover"
    );
    drop(set);
}

/// Whether a `probe` event of `id`, emitted every 200 ms until one
/// arrives (a subscription, or a failover, takes a moment to be in place),
/// reaches `events` within 30 s.
pub(crate) async fn probe_arrives(s: &State, id: &str, events: &mut Subscription) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        s.emit(id, "probe").await.unwrap();
        if matches!(
            tokio::time::timeout(Duration::from_millis(200), events.recv()).await,
            Ok(Ok(e)) if e.kind == "probe"
        ) {
            return true;
        }
    }
    false
}

/// On a cluster the intake runs in steps; one cut short after the grant
/// was stored (its begin marker left, no generation) is finished by the
/// same grant sent again, and only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_intake_cut_short_is_finished_by_a_retry() {
    let ns = format!("ha-{}", uuid::Uuid::new_v4().simple());
    let s = State::connect_to(&cluster_target(), &ns, TTL, Quotas::DEFAULT)
        .await
        .expect("Redis Cluster reachable (scripts/services starts it)");
    s.set_binding("u", "bind").await.unwrap();
    // Steps 1-3 of an intake of g1 for transfer c1: the claim, the grant
    // and its begin marker; the generation never begun.
    assert_eq!(s.claim_contract("c1", "u").await.unwrap(), "u");
    assert!(s.update_grant("u", "c1", 1.0, "g1").await.unwrap().1);
    let client = redis::cluster::ClusterClient::new(urls(&cluster_target())).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let () = redis::cmd("SET")
        .arg(format!("{ns}:user:{{u}}:begin:c1"))
        .arg("g1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(s.transfer("c1").await.unwrap(), None);
    let retried = s.take_grant(&grant("u", "c1", 1.0, "g1")).await.unwrap();
    assert!(
        matches!(&retried, Intake::Begun { begin, .. } if !begin.joined && begin.generation == 1),
        "{retried:?}"
    );
    assert_eq!(
        s.kv_get(&WebKey::TransferAccess {
            id: "c1",
            hash: "cap"
        })
        .await
        .unwrap()
        .as_deref(),
        Some("u")
    );
    // Sent once more: kept, as on one server; no second generation.
    let again = s.take_grant(&grant("u", "c1", 1.0, "g1")).await.unwrap();
    assert_eq!(
        again,
        Intake::Kept {
            effective: "g1".into()
        }
    );
    assert_eq!(
        s.transfer("c1").await.unwrap().map(|t| t.generation),
        Some(1)
    );
    // Without a marker, a stored grant sent again is only kept.
    assert!(s.update_grant("u", "c2", 1.0, "g2").await.unwrap().1);
    let kept = s.take_grant(&grant("u", "c2", 1.0, "g2")).await.unwrap();
    assert_eq!(
        kept,
        Intake::Kept {
            effective: "g2".into()
        }
    );
    assert_eq!(s.transfer("c2").await.unwrap(), None);
    s.purge_namespace().await.unwrap();
}

/// A primary (and replicas) asking for a password: the state logs in with
/// the primary's login of the configuration, for commands, settling and
/// events alike; without it no connection is made, and the error names the
/// setting to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_with_a_password_is_reached_with_its_login() {
    let set = SentinelSet::start_with_password(7321, "primary-pw").await;
    let ns = format!("ha-{}", uuid::Uuid::new_v4().simple());
    let s = State::connect_to(&set.target(), &ns, TTL, Quotas::DEFAULT)
        .await
        .unwrap();
    s.set_binding("u", "bind").await.unwrap();
    let outcome = s.take_grant(&grant("u", "c1", 1.0, "g-c1")).await;
    assert!(matches!(outcome, Ok(Intake::Begun { .. })), "{outcome:?}");
    assert_eq!(s.settle_writes().await.unwrap(), Settled::Replicated);
    let mut events = s.subscribe("c1");
    assert!(
        probe_arrives(&s, "c1", &mut events).await,
        "no event through the logged-in subscriber"
    );

    // The same sentinels without the primary's login.
    let RedisTarget::Sentinel {
        sentinels, master, ..
    } = set.target()
    else {
        panic!("a sentinel target")
    };
    let bare = RedisTarget::Sentinel {
        sentinels,
        master,
        login: PrimaryLogin::default(),
    };
    let refused = match State::connect_to(&bare, &ns, TTL, Quotas::DEFAULT).await {
        Err(e) => e.to_string(),
        Ok(without) => without
            .set_binding("v", "bind")
            .await
            .unwrap_err()
            .to_string(),
    };
    assert!(
        refused.contains("ALIAS_REDIS_SENTINEL_PASSWORD"),
        "the error names the setting: {refused}"
    );
    s.purge_namespace().await.unwrap();
    drop(set);
}
