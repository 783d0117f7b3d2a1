//! `runtime::mq` against the real RabbitMQ on loopback (`ALIAS_AMQP_URL`,
//! default `amqp://guest:guest@127.0.0.1:5672/%2f`). Every test uses its own
//! namespace `t-<uuid>` and deletes it at the end (also when it panics).

use runtime::mq::{
    Broker, BrokerConfig, Consumer, Delivery, MqError, Queue, RabbitBroker, Route, DELIVERY_LIMIT,
    MOVED_BUCKETS,
};
use std::collections::HashSet;
use std::time::Duration;

fn amqp_url() -> String {
    std::env::var("ALIAS_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A broker on a fresh namespace, whose topology is deleted on drop.
struct Ns {
    broker: Broker,
    name: String,
}

impl Ns {
    async fn new() -> Self {
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let config = BrokerConfig {
            publish_timeout: Duration::from_secs(20),
            ..BrokerConfig::default()
        };
        let broker = Broker::connect_with(&amqp_url(), &name, config)
            .await
            .expect(
                "RabbitMQ reachable (start it with scripts/services or rabbitmq-server -detached)",
            );
        Self { broker, name }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        // The test's runtime may be shutting down: clean up from a runtime of
        // our own, on a connection of our own.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(broker) = Broker::connect(&amqp_url(), &name).await {
                    broker.delete_topology().await;
                    broker.close().await;
                }
            });
        })
        .join();
    }
}

/// The next delivery, or `None` after `wait`.
async fn next_within(consumer: &mut Consumer, wait: Duration) -> Option<Delivery> {
    match tokio::time::timeout(wait, consumer.next()).await {
        Ok(Some(item)) => Some(item.expect("delivery")),
        Ok(None) => panic!("consumer ended"),
        Err(_) => None,
    }
}

async fn next(consumer: &mut Consumer) -> Delivery {
    next_within(consumer, Duration::from_secs(10))
        .await
        .expect("a delivery within 10 s")
}

/// Polls `queue_depth` until it equals `want` (depths lag acks a little).
async fn wait_depth(broker: &Broker, queue: Queue, want: u32) {
    let mut last = u32::MAX;
    for _ in 0..100 {
        last = broker.queue_depth(queue).await.expect("queue depth");
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{queue:?} depth {last}, want {want}");
}

/// Makes the broker close every connection whose name contains `needle`
/// (only this test's, so that parallel tests are not disturbed), as
/// `rabbitmqctl close_all_connections` would; returns how many.
fn drop_connections(needle: &str) -> usize {
    runtime::mq::testing::close_connections(needle).expect("rabbitmqctl closes connections")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_consume_ack_and_depth() {
    let ns = Ns::new().await;
    let broker = &ns.broker;
    assert!(broker.is_healthy().await);
    // Declaring the same topology again (another process, a restart) is fine.
    let again = Broker::connect(&amqp_url(), &ns.name)
        .await
        .expect("second declaration");
    again.close().await;

    let n = 25;
    for i in 0..n {
        broker
            .publish(
                Route::Process,
                format!("{{\"i\":{i}}}").as_bytes(),
                &format!("m{i}"),
            )
            .await
            .expect("publish");
    }
    assert_eq!(broker.queue_depth(Route::Process).await.unwrap(), n);
    assert_eq!(
        broker.queue_depth(Queue::Work(Route::Push)).await.unwrap(),
        0
    );
    assert_eq!(broker.queue_depth(Queue::Dead).await.unwrap(), 0);

    let mut consumer = broker
        .consume(Route::Process, 10, "ack-test")
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..n {
        let d = next(&mut consumer).await;
        assert!(!d.redelivered());
        assert_eq!(d.delivery_count(), 0);
        let i: u32 = d.message_id().unwrap()[1..].parse().unwrap();
        assert_eq!(d.body(), format!("{{\"i\":{i}}}").as_bytes());
        seen.push(i);
        d.ack().await.expect("ack");
    }
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "FIFO order");
    assert!(next_within(&mut consumer, Duration::from_millis(300))
        .await
        .is_none());
    drop(consumer);
    wait_depth(broker, Queue::Work(Route::Process), 0).await;
    broker.delete_topology().await;
    assert!(matches!(
        broker.queue_depth(Route::Process).await,
        Err(MqError::MissingQueue(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_requeue_redelivers_and_reject_dead_letters() {
    let ns = Ns::new().await;
    let broker = &ns.broker;
    broker.publish(Route::Push, b"{}", "again").await.unwrap();
    let mut consumer = broker.consume(Route::Push, 1, "").await.unwrap();
    let first = next(&mut consumer).await;
    assert!(!first.redelivered());
    first.nack_requeue().await.unwrap();
    let second = next(&mut consumer).await;
    assert_eq!(second.message_id(), Some("again"));
    assert!(second.redelivered());
    assert_eq!(second.delivery_count(), 1);
    second.reject().await.unwrap();
    // Gone from the work queue, kept in the dead-letter queue by the broker.
    assert!(next_within(&mut consumer, Duration::from_millis(500))
        .await
        .is_none());
    wait_depth(broker, Queue::Work(Route::Push), 0).await;
    let dead = broker.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id.as_deref(), Some("again"));
    assert_eq!(dead[0].route, Some(Route::Push));
    assert!(dead[0].reason.contains("rejected"), "{}", dead[0].reason);

    // A message returned again and again ends in the dead-letter queue.
    broker.publish(Route::Push, b"{}", "poison").await.unwrap();
    let mut returns = 0;
    while let Some(d) = next_within(&mut consumer, Duration::from_millis(500)).await {
        assert_eq!(d.message_id(), Some("poison"));
        assert_eq!(d.delivery_count(), returns);
        d.nack_requeue().await.unwrap();
        returns += 1;
        assert!(returns <= DELIVERY_LIMIT as u64 + 1, "never dead-lettered");
    }
    assert_eq!(returns, DELIVERY_LIMIT as u64 + 1);
    wait_depth(broker, Queue::Dead, 2).await;
    let dead = broker.dead_letters(10).await.unwrap();
    assert_eq!(dead[1].message_id.as_deref(), Some("poison"));
    assert_eq!(dead[1].route, Some(Route::Push));
    assert!(
        dead[1].reason.contains("delivery_limit"),
        "{}",
        dead[1].reason
    );

    // A delivery dropped without being settled goes back to the queue.
    broker.publish(Route::Push, b"{}", "dropped").await.unwrap();
    let d = next(&mut consumer).await;
    drop(d);
    let d = next(&mut consumer).await;
    assert_eq!(d.message_id(), Some("dropped"));
    assert!(d.redelivered());
    d.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_publish_comes_back_after_the_delay() {
    let ns = Ns::new().await;
    let broker = &ns.broker;
    let mut consumer = broker.consume(Route::Process, 5, "delayed").await.unwrap();
    let started = std::time::Instant::now();
    broker
        .publish_delayed(
            Route::Process,
            b"{\"later\":true}",
            "later",
            Duration::from_millis(300),
        )
        .await
        .unwrap();
    assert_eq!(
        broker
            .queue_depth(Queue::Delayed(Route::Process))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        broker
            .queue_depth(Queue::Delayed(Route::Push))
            .await
            .unwrap(),
        0
    );
    // Rounded up to the 1 s bucket: nothing before, then the message.
    assert!(next_within(&mut consumer, Duration::from_millis(700))
        .await
        .is_none());
    let d = next(&mut consumer).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(d.message_id(), Some("later"));
    assert_eq!(d.body(), b"{\"later\":true}");
    d.ack().await.unwrap();
    assert_eq!(
        broker
            .queue_depth(Queue::Delayed(Route::Process))
            .await
            .unwrap(),
        0
    );
}

/// A worker's movers bring delayed jobs back when due, whatever the
/// broker's message TTL does (a quorum retry queue of RabbitMQ 3.10 was
/// seen to stop expiring): the job comes back marked as moved by them, and
/// not before its delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn movers_bring_delayed_jobs_back_when_due() {
    let ns = Ns::new().await;
    let broker = &ns.broker;
    let movers = broker.start_movers(Route::Process);
    assert_eq!(movers.len(), MOVED_BUCKETS.len());
    // The headers are read through the RabbitMQ broker itself.
    let rabbit = RabbitBroker::connect_with(&amqp_url(), &ns.name, BrokerConfig::default())
        .await
        .unwrap();
    let mut consumer = rabbit.consume(Route::Process, 5, "moved").await.unwrap();
    let started = std::time::Instant::now();
    for (id, delay) in [("first", 300), ("second", 1000), ("third", 4000)] {
        broker
            .publish_delayed(Route::Process, b"{}", id, Duration::from_millis(delay))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("a moved job")
            .unwrap()
            .unwrap();
        let moved = d
            .header("x-alias-moved-from")
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        got.push((
            d.message_id().unwrap_or("").to_owned(),
            moved,
            started.elapsed(),
        ));
        d.ack().await.unwrap();
    }
    for mover in movers {
        mover.abort();
    }
    // "first" and "second" share the 1 s bucket and are due within the
    // same millisecond: either may come back first.
    got[..2].sort_by(|a, b| a.0.cmp(&b.0));
    let ids: Vec<&str> = got.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["first", "second", "third"], "{got:?}");
    for ((_, moved, waited), (bucket, least)) in
        got.iter().zip([(1000, 950), (1000, 950), (5000, 4950)])
    {
        assert!(moved.contains(&bucket.to_string()), "{got:?}");
        assert!(*waited >= Duration::from_millis(least), "{got:?}");
    }
    assert_eq!(
        broker
            .queue_depth(Queue::Delayed(Route::Process))
            .await
            .unwrap(),
        0
    );
    rabbit.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed() {
    let ns = Ns::new().await;
    let broker = &ns.broker;
    broker
        .dead_letter(
            Route::Push,
            b"{\"job\":1}",
            "job-1",
            "client endpoint answered 404",
        )
        .await
        .unwrap();
    broker
        .dead_letter(Route::Process, b"{\"job\":2}", "job-2", "dump unreadable")
        .await
        .unwrap();
    assert_eq!(broker.queue_depth(Queue::Dead).await.unwrap(), 2);

    // Listing leaves them in place, in order, with their reasons.
    for _ in 0..2 {
        let dead = broker.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 2);
        assert_eq!(dead[0].message_id.as_deref(), Some("job-1"));
        assert_eq!(dead[0].route, Some(Route::Push));
        assert_eq!(dead[0].reason, "client endpoint answered 404");
        assert_eq!(dead[0].body, b"{\"job\":1}");
        assert!(dead[0].dead_at.is_some());
        assert_eq!(dead[1].route, Some(Route::Process));
        assert_eq!(dead[1].reason, "dump unreadable");
    }
    assert_eq!(broker.dead_letters(1).await.unwrap().len(), 1);
    wait_depth(broker, Queue::Dead, 2).await;

    // Replay moves them back to their routes.
    assert_eq!(broker.replay_dead(10).await.unwrap(), 2);
    wait_depth(broker, Queue::Dead, 0).await;
    assert!(broker.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(broker.queue_depth(Route::Push).await.unwrap(), 1);
    assert_eq!(broker.queue_depth(Route::Process).await.unwrap(), 1);
    let mut push = broker.consume(Route::Push, 1, "").await.unwrap();
    let d = next(&mut push).await;
    assert_eq!(d.message_id(), Some("job-1"));
    assert_eq!(d.body(), b"{\"job\":1}");
    d.ack().await.unwrap();
}

/// The broker drops the connection while a publisher publishes 200 jobs and
/// a consumer consumes them: no confirmed job is lost, both recover on their
/// own, and a delivery held across the drop cannot be acked but comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_dropped_connections() {
    const TOTAL: usize = 200;
    const DROP_AFTER: usize = 60;
    const LAST_DURING_DROP: usize = 190;
    let ns = Ns::new().await;
    let broker = ns.broker.clone();

    // A delivery held unacked across the drop.
    broker.publish(Route::Push, b"{}", "held").await.unwrap();
    let mut push = broker.consume(Route::Push, 1, "held").await.unwrap();
    let held = next(&mut push).await;

    let mut consumer = broker
        .consume(Route::Process, 20, "survivor")
        .await
        .unwrap();
    let consuming = tokio::spawn(async move {
        let mut ids = HashSet::new();
        let mut deliveries = 0;
        while ids.len() < TOTAL {
            let Some(d) = next_within(&mut consumer, Duration::from_secs(30)).await else {
                break;
            };
            deliveries += 1;
            ids.insert(d.message_id().unwrap().to_owned());
            // An ack lost with the connection is fine: the job comes again.
            let _ = d.ack().await;
        }
        (ids, deliveries, consumer.resubscriptions())
    });

    let publisher = broker.clone();
    let mut dropping = None;
    for i in 0..TOTAL {
        let body = format!("{{\"n\":{i}}}");
        publisher
            .publish(Route::Process, body.as_bytes(), &format!("job-{i}"))
            .await
            .unwrap_or_else(|e| panic!("publish {i}: {e}"));
        if i == DROP_AFTER {
            let needle = ns.name.clone();
            dropping = Some(tokio::task::spawn_blocking(move || {
                drop_connections(&needle)
            }));
        }
        // Keep publishing, slowly, while the broker drops the connection;
        // the last jobs are published after the drop has surely happened.
        if let Some(task) = dropping.as_mut() {
            if i >= LAST_DURING_DROP || task.is_finished() {
                assert_eq!(task.await.unwrap(), 1, "one connection per broker");
                dropping = None;
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(dropping.is_none(), "the drop happened while publishing");

    let (ids, deliveries, resubscriptions) = consuming.await.unwrap();
    assert_eq!(
        ids.len(),
        TOTAL,
        "distinct jobs consumed ({deliveries} deliveries)"
    );
    assert!(resubscriptions >= 1, "the consumer resumed by itself");
    assert!(broker.reconnects() >= 1);
    assert!(broker.is_healthy().await);

    // The held delivery's channel died: settling it is an error, not a panic,
    // and the broker redelivers the message to the resumed consumer.
    assert!(matches!(held.ack().await, Err(MqError::Closed)));
    let again = next(&mut push).await;
    assert_eq!(again.message_id(), Some("held"));
    assert!(again.redelivered());
    again.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clear() {
    let bad_ns = Broker::connect(&amqp_url(), "has space").await.unwrap_err();
    assert!(matches!(bad_ns, MqError::InvalidInput(_)), "{bad_ns}");
    let config = BrokerConfig {
        connect_timeout: Duration::from_millis(500),
        ..BrokerConfig::default()
    };
    // Nothing listens on port 1.
    let err = Broker::connect_with(
        "amqp://guest:secret@127.0.0.1:1/%2f",
        "t-unreachable",
        config,
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, MqError::Timeout { .. }), "{text}");
    assert!(
        text.contains("127.0.0.1:1") && !text.contains("secret"),
        "{text}"
    );
}

/// The heartbeat RabbitMQ agreed with the connection named `name`, read
/// through `rabbitmqctl` (seconds).
fn agreed_heartbeat(name: &str) -> Option<u64> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "timeout", "client_properties"])
        .args(["--quiet", "--no-table-headers"])
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(name))
        .find_map(|line| line.split('\t').next()?.trim().parse().ok())
}

/// A connection asks for a 10 s heartbeat unless its URL names one, so that
/// a node cut off the network is found dead in seconds, not minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_ask_for_a_short_heartbeat_unless_the_url_names_one() {
    let ns = Ns::new().await;
    for (query, want) in [("", 10), ("?heartbeat=7", 7)] {
        let name = format!("heartbeat-{}", uuid::Uuid::new_v4().simple());
        let config = BrokerConfig {
            connection_name: Some(name.clone()),
            ..BrokerConfig::default()
        };
        let url = format!("{}{query}", amqp_url());
        let broker = Broker::connect_with(&url, &ns.name, config).await.unwrap();
        let agreed = tokio::task::spawn_blocking(move || agreed_heartbeat(&name))
            .await
            .unwrap();
        assert_eq!(agreed, Some(want), "{url}");
        broker.close().await;
    }
}
