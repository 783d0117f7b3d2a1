//! The contract of [`runtime::state::GrantStore::take_grant`], against
//! both stores (part of the contract suite, kept in its own file): a grant
//! taken in at once leaves the state the separate calls leave — the same
//! answers from every store and, in Redis, the same keys with the same
//! values — for every outcome.

use runtime::state::{
    Begin, GrantIntake, Intake, KvEntry, NewTransfer, Quotas, State, StateError, TransferIntake,
    WebKey,
};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::contract::{cluster_target, sentinel_target, Backend};

const TTL: Duration = Duration::from_secs(60);
const CAPABILITY: WebKey<'static> = WebKey::TransferAccess {
    id: "c1",
    hash: "capability-hash",
};

fn redis_url() -> String {
    std::env::var("ALIAS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn state(backend: Backend, quotas: Quotas) -> State {
    let ns = format!("intake-{}", uuid::Uuid::new_v4().simple());
    match backend {
        Backend::Memory => State::in_memory_with(&ns, TTL, quotas),
        Backend::Real => State::connect_with(&redis_url(), &ns, TTL, quotas)
            .await
            .expect("Redis reachable (scripts/services starts it)"),
        Backend::Cluster => State::connect_to(&cluster_target(), &ns, TTL, quotas)
            .await
            .expect("Redis Cluster reachable (scripts/services starts it)"),
        Backend::Sentinel => State::connect_to(&sentinel_target(), &ns, TTL, quotas)
            .await
            .expect("Redis Sentinel reachable (scripts/services starts it)"),
    }
}

/// One grant of user `user` for contract `contract`, dated `date`.
struct Submit {
    user: &'static str,
    contract: &'static str,
    date: f64,
    token: &'static str,
    grant_hash: &'static str,
}

fn intake<'a>(g: &'a Submit) -> GrantIntake<'a> {
    GrantIntake {
        user: g.user,
        contract_hash: g.contract,
        date_ms: g.date,
        token: g.token,
        claim_contract: true,
        begin: Some(TransferIntake {
            id: g.contract,
            transfer: NewTransfer {
                grant_token: g.token,
                grant_hash: g.grant_hash,
                user: g.user,
                push_url: "https://client.example/alias/push/c1",
                revoked: false,
            },
            capability: Some(KvEntry {
                key: CAPABILITY,
                value: g.user,
                ttl: TTL,
            }),
        }),
    }
}

/// What the gateway did before `take_grant`, call by call.
async fn separately(s: &State, g: &Submit) -> Result<Intake, StateError> {
    if !s.is_known_user(g.user).await? {
        return Ok(Intake::UnknownUser);
    }
    let owner = s.claim_contract(g.contract, g.user).await?;
    if owner != g.user {
        return Ok(Intake::ContractBound { owner });
    }
    let (effective, stored) = s.update_grant(g.user, g.contract, g.date, g.token).await?;
    if !stored {
        return Ok(Intake::Kept { effective });
    }
    let i = intake(g);
    let Some(b) = i.begin else { unreachable!() };
    let begin: Begin = s.begin_transfer(b.id, &b.transfer).await?;
    if begin.foreign {
        return Ok(Intake::Begun {
            begin,
            transfer: None,
            files: Vec::new(),
        });
    }
    s.kv_set(&CAPABILITY, g.user, Some(TTL)).await?;
    let transfer = s.transfer(b.id).await?.map(Box::new);
    let files = s
        .files(b.id, transfer.as_ref().map_or(0, |t| t.generation))
        .await?;
    Ok(Intake::Begun {
        begin,
        transfer,
        files,
    })
}

/// Clears the clock fields, which differ between two runs.
fn timeless(outcome: Result<Intake, StateError>) -> String {
    match outcome {
        Ok(Intake::Begun {
            begin,
            mut transfer,
            files,
        }) => {
            if let Some(t) = &mut transfer {
                t.created_ms = 0;
                t.updated_ms = 0;
            }
            format!("{:?}", (begin, transfer, files))
        }
        other => format!("{other:?}"),
    }
}

/// Every key of the namespace with its type, value and whether it expires
/// (clock fields of transfers blanked), the namespace cut off.
async fn redis_dump(ns: &str) -> BTreeMap<String, String> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{ns}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let value = match kind.as_str() {
            "string" => redis::cmd("GET")
                .arg(&key)
                .query_async::<String>(&mut conn)
                .await
                .unwrap(),
            "hash" => {
                let mut map: BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                for clock in ["created_ms", "updated_ms"] {
                    if let Some(v) = map.get_mut(clock) {
                        *v = "<clock>".into();
                    }
                }
                format!("{map:?}")
            }
            "list" => format!(
                "{:?}",
                redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async::<Vec<String>>(&mut conn)
                    .await
                    .unwrap()
            ),
            "zset" => format!(
                "{:?}",
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async::<Vec<String>>(&mut conn)
                    .await
                    .unwrap()
            ),
            other => format!("<{other}>"),
        };
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let name = key.strip_prefix(ns).unwrap_or(&key).to_owned();
        out.insert(name, format!("{kind} {value} expires={}", pttl > 0));
    }
    out
}

/// Runs `steps` on two fresh states, one through `take_grant` and one call
/// by call, and checks every answer and the state left.
async fn agree(backend: Backend, quotas: Quotas, setup: &[&str], steps: &[Submit]) {
    let a = state(backend, quotas).await;
    let b = state(backend, quotas).await;
    for user in setup {
        a.set_binding(user, "bind-token").await.unwrap();
        b.set_binding(user, "bind-token").await.unwrap();
    }
    for g in steps {
        let one = timeless(a.take_grant(&intake(g)).await);
        let calls = timeless(separately(&b, g).await);
        assert_eq!(one, calls, "the answers differ for {}", g.token);
    }
    for user in ["u", "v"] {
        assert_eq!(
            a.grant_history(user).await.unwrap(),
            b.grant_history(user).await.unwrap()
        );
        assert_eq!(
            a.contracts_of(user).await.unwrap(),
            b.contracts_of(user).await.unwrap()
        );
        assert_eq!(
            a.binding(user).await.unwrap(),
            b.binding(user).await.unwrap()
        );
    }
    assert_eq!(
        a.contract_owner("c1").await.unwrap(),
        b.contract_owner("c1").await.unwrap()
    );
    assert_eq!(
        a.transfer_grant("c1").await.unwrap(),
        b.transfer_grant("c1").await.unwrap()
    );
    assert_eq!(
        a.kv_get(&CAPABILITY).await.unwrap(),
        b.kv_get(&CAPABILITY).await.unwrap()
    );
    assert_eq!(
        a.count_by_state().await.unwrap(),
        b.count_by_state().await.unwrap()
    );
    if matches!(backend, Backend::Real) {
        let (da, db) = (
            redis_dump(a.namespace()).await,
            redis_dump(b.namespace()).await,
        );
        assert!(!da.is_empty());
        assert_eq!(da, db, "the keys and values left differ");
    }
    if !matches!(backend, Backend::Memory) {
        a.purge_namespace().await.unwrap();
        b.purge_namespace().await.unwrap();
    }
}

const fn submit(user: &'static str, date: f64, token: &'static str) -> Submit {
    Submit {
        user,
        contract: "c1",
        date,
        token,
        grant_hash: token,
    }
}

pub async fn state_take_grant_new_older_same_and_newer(backend: Backend) {
    agree(
        backend,
        Quotas::DEFAULT,
        &["u"],
        &[
            submit("u", 2.0, "g2"),
            // Older: the stored grant stays.
            submit("u", 1.0, "g1"),
            // As new: the stored grant stays.
            submit("u", 2.0, "g2-bis"),
            // Newer: stored, supersedes the running generation.
            submit("u", 3.0, "g3"),
        ],
    )
    .await;
}

pub async fn state_take_grant_refusals(backend: Backend) {
    agree(
        backend,
        Quotas::DEFAULT,
        &["u", "v"],
        &[
            // Unknown user: nothing stored.
            submit("w", 1.0, "w1"),
            submit("u", 1.0, "u1"),
            // The contract is u's.
            submit("v", 2.0, "v2"),
        ],
    )
    .await;
    let quotas = Quotas {
        grant_bytes: 4,
        ..Quotas::DEFAULT
    };
    agree(backend, quotas, &["u"], &[submit("u", 1.0, "too-long")]).await;
}

pub async fn state_take_grant_tells_subscribers(backend: Backend) {
    let s = state(backend, Quotas::DEFAULT).await;
    s.set_binding("u", "bind-token").await.unwrap();
    let mut events = s.subscribe("c1");
    let g = submit("u", 1.0, "g1");
    let Intake::Begun { begin, .. } = s.take_grant(&intake(&g)).await.unwrap() else {
        panic!("begun")
    };
    let event = tokio::time::timeout(Duration::from_secs(15), events.recv())
        .await
        .expect("an event in time")
        .expect("an event");
    assert_eq!(event.kind, "accepted");
    assert_eq!(event.transfer.generation, begin.generation);
    s.purge_namespace().await.unwrap();
}

macro_rules! intake_contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Memory).await;
                }
            )*
        }
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Real).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Cluster).await;
                }
            )*
        }
        mod sentinel {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sentinel).await;
                }
            )*
        }
    };
}

intake_contract!(
    state_take_grant_new_older_same_and_newer,
    state_take_grant_refusals,
    state_take_grant_tells_subscribers,
);
