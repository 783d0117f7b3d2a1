//! `runtime::mq` against a three-node RabbitMQ cluster on loopback
//! (`scripts/rabbit-ha`, started here when it is not running; nodes
//! `alias-ha{1,2,3}@localhost` on 5681-5683), and a URL list holding a dead
//! node. The shared node on 5672 is only used by the list test, and never
//! stopped or killed. Every test uses its own namespace `t-ha-<uuid>`.

use runtime::mq::{BrokerConfig, RabbitBroker, RabbitConsumer, Route};
use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The cluster's nodes and their AMQP ports (`scripts/rabbit-ha`).
const NODES: [(&str, u16); 3] = [
    ("alias-ha1@localhost", 5681),
    ("alias-ha2@localhost", 5682),
    ("alias-ha3@localhost", 5683),
];

/// Starts the cluster unless it runs (idempotent, serialized by the
/// script); returns the comma-separated URLs of its nodes.
fn cluster_urls() -> String {
    let urls = runtime::mq::testing::rabbit_cluster_urls().expect("scripts/rabbit-ha start");
    assert_eq!(urls.split(',').count(), 3, "three URLs: {urls}");
    urls
}

/// `rabbitmqctl -n node -q args…`; its output.
fn rabbitmqctl(node: &str, args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(["-n", node, "-q"])
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl -n {node} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills a node's Erlang VM with SIGKILL (a crash: nothing is flushed,
/// connections are reset).
fn kill_node(node: &str) {
    let pid = rabbitmqctl(node, &["eval", "os:getpid()."]);
    let pid = pid.trim().trim_matches('"');
    assert!(pid.bytes().all(|b| b.is_ascii_digit()), "pid {pid:?}");
    let status = Command::new("kill")
        .args(["-9", pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -9 {pid}");
}

/// The cluster node behind a URL shown by [`RabbitBroker::node`].
fn node_of(url: &str) -> &'static str {
    NODES
        .iter()
        .find(|(_, port)| url.contains(&format!(":{port}/")))
        .map(|(name, _)| *name)
        .unwrap_or_else(|| panic!("{url} is not a cluster node"))
}

/// Starts the killed node again when dropped (also when the test panics),
/// so that the cluster is whole for the next test.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        cluster_urls();
    }
}

/// Deletes the queues of a namespace (second) on the nodes (first) when
/// dropped.
struct Cleanup(String, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (urls, ns) = (self.0.clone(), self.1.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok(b) = RabbitBroker::connect(&urls, &ns).await {
                    b.delete_topology().await;
                    b.close().await;
                }
            });
        })
        .join();
    }
}

/// What the consumer saw.
#[derive(Default)]
struct Seen {
    counts: HashMap<String, usize>,
    /// When the first delivery after the consumer's re-subscription came.
    resumed_at: Option<Instant>,
    /// When the last delivery before it came.
    last_before: Option<Instant>,
}

/// Consumes and acks for ever, recording every delivery.
async fn consume(mut consumer: RabbitConsumer, seen: Arc<Mutex<Seen>>) {
    while let Some(item) = consumer.next().await {
        let Ok(delivery) = item else { continue };
        let id = delivery.message_id().unwrap_or_default().to_owned();
        {
            let mut seen = seen.lock().unwrap();
            *seen.counts.entry(id).or_default() += 1;
            if consumer.resubscriptions() == 0 {
                seen.last_before = Some(Instant::now());
            } else if seen.resumed_at.is_none() {
                seen.resumed_at = Some(Instant::now());
            }
        }
        // An ack lost with the node is fine: the message comes again.
        let _ = delivery.ack().await;
    }
}

/// With the URLs of the three nodes, publishers and a consumer sharing one
/// handle run while the node they are connected to is killed (SIGKILL):
/// they move to another node by themselves, every publish that returned
/// `Ok` (confirmed) is consumed (at least once; duplicates only from
/// retried publishes or lost acks), and the time from the loss to the
/// first delivery on the new node is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_and_consumers_move_to_another_node_when_theirs_dies() {
    /// Confirmed publishes before the node is killed.
    const BEFORE: usize = 100;
    /// Confirmed publishes after the handle reconnected.
    const AFTER: usize = 100;
    /// Concurrent publishers.
    const PUBLISHERS: usize = 16;
    let urls = tokio::task::spawn_blocking(cluster_urls).await.unwrap();
    let ns = format!("t-ha-{}", uuid::Uuid::new_v4().simple());
    let config = BrokerConfig {
        publish_timeout: Duration::from_secs(60),
        connection_name: Some(format!("alias-bank {ns}")),
        ..BrokerConfig::default()
    };
    let broker = RabbitBroker::connect_with(&urls, &ns, config)
        .await
        .unwrap();
    let _cleanup = Cleanup(urls.clone(), ns.clone());
    let first = node_of(&broker.node().unwrap());

    let seen = Arc::new(Mutex::new(Seen::default()));
    let consumer = broker.consume(Route::Process, 50, "ha").await.unwrap();
    let consuming = tokio::spawn(consume(consumer, seen.clone()));

    // Publishes continuously until AFTER publishes were confirmed after the
    // move; records which returned Ok.
    let confirmed = Arc::new(Mutex::new(Vec::<String>::new()));
    let moved = Arc::new(AtomicBool::new(false));
    let after_move = Arc::new(AtomicUsize::new(0));
    // PUBLISHERS tasks publish concurrently (as a gateway's requests do),
    // so that many confirms are pending when the node goes.
    let publishing: Vec<_> = (0..PUBLISHERS)
        .map(|w| {
            let (broker, confirmed, moved, after_move) = (
                broker.clone(),
                confirmed.clone(),
                moved.clone(),
                after_move.clone(),
            );
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut i = 0;
                let deadline = Instant::now() + Duration::from_secs(180);
                while after_move.load(Ordering::SeqCst) < AFTER && Instant::now() < deadline {
                    let id = format!("job-{w}-{i}");
                    let body = format!("{{\"w\":{w},\"n\":{i}}}");
                    match broker.publish(Route::Process, body.as_bytes(), &id).await {
                        Ok(()) => {
                            confirmed.lock().unwrap().push(id);
                            if moved.load(Ordering::SeqCst) {
                                after_move.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(e) => {
                            eprintln!("publish {id} failed: {e}");
                            failures.push(format!("{id}: {e}"));
                        }
                    }
                    i += 1;
                }
                failures
            })
        })
        .collect();

    // Stop the node once BEFORE publishes were confirmed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while confirmed.lock().unwrap().len() < BEFORE {
        assert!(Instant::now() < deadline, "publishing before the kill");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reconnects = broker.reconnects();
    let stopped_at = Instant::now();
    let _restart = Restart;
    tokio::task::spawn_blocking(move || kill_node(first))
        .await
        .unwrap();
    let stop_took = stopped_at.elapsed();
    // The handle reconnects (to another node: this one is down).
    let deadline = Instant::now() + Duration::from_secs(60);
    while broker.reconnects() == reconnects || !broker.is_healthy().await {
        assert!(Instant::now() < deadline, "the handle never reconnected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reconnected_after = stopped_at.elapsed();
    let now_on = node_of(&broker.node().unwrap());
    assert_ne!(now_on, first, "moved to another node");
    moved.store(true, Ordering::SeqCst);

    let mut failures = Vec::new();
    for task in publishing {
        failures.extend(task.await.unwrap());
    }
    assert!(failures.is_empty(), "publishes failed: {failures:?}");
    let confirmed = confirmed.lock().unwrap().clone();
    // Every confirmed job is consumed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing: Vec<&String> = {
            let seen = seen.lock().unwrap();
            confirmed
                .iter()
                .filter(|id| !seen.counts.contains_key(*id))
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} confirmed jobs never consumed, e.g. {:?}",
            missing.len(),
            missing.first()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consuming.abort();
    let seen = seen.lock().unwrap();
    let resumed_at = seen
        .resumed_at
        .expect("the consumer resumed on another node");
    let resumed_after = resumed_at.duration_since(stopped_at);
    // No delivery comes between the loss and the resumption: the gap
    // bounds the time from the loss to consumers resumed.
    let gap = resumed_at.duration_since(seen.last_before.expect("deliveries before the kill"));
    let duplicates: usize = seen.counts.values().map(|c| c - 1).sum();
    let unconfirmed = seen.counts.len() - confirmed.len();
    println!(
        "failover: killed {first} (the kill took {stop_took:?}); handle on {now_on} \
         {reconnected_after:?} after the kill began; first delivery after it \
         {resumed_after:?} after the kill began, {gap:?} after the last one on the lost node; \
         {} confirmed, {duplicates} duplicate deliveries, \
         {unconfirmed} consumed ids beyond the confirmed",
        confirmed.len()
    );
    assert_eq!(unconfirmed, 0, "only published ids are consumed");
}

/// A URL list whose first nodes are down (nothing listens on port 1 and
/// 2): the handle connects to the live node, whichever node it tries
/// first, and a publish is confirmed there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_with_dead_nodes_connects_to_the_live_one() {
    let live = std::env::var("ALIAS_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let list =
        format!("amqp://guest:guest@127.0.0.1:1/%2f, amqp://guest:guest@127.0.0.1:2/%2f,{live}");
    let mut nodes = HashSet::new();
    for _ in 0..3 {
        let ns = format!("t-ha-{}", uuid::Uuid::new_v4().simple());
        let broker = RabbitBroker::connect(&list, &ns).await.unwrap();
        nodes.insert(broker.node().unwrap());
        broker.publish(Route::Process, b"{}", "one").await.unwrap();
        assert_eq!(broker.queue_depth(Route::Process).await.unwrap(), 1);
        broker.delete_topology().await;
        broker.close().await;
    }
    assert_eq!(nodes.len(), 1, "always the live node: {nodes:?}");
    assert!(!nodes.iter().any(|n| n.contains(":1/") || n.contains(":2/")));
}
