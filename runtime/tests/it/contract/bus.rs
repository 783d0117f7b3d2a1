//! The message bus: publish, consume, settle, prefetch, dead letters,
//! delayed publishes and closing.

use super::*;

pub async fn bus_publish_consume_ack(backend: Backend) {
    let env = Env::new(backend).await;
    let b = &env.broker;
    for i in 0..3 {
        b.publish(
            Route::Process,
            format!("job {i}").as_bytes(),
            &format!("m{i}"),
        )
        .await
        .unwrap();
    }
    depth_becomes(b, Queue::Work(Route::Process), 3).await;
    assert_eq!(b.queue_depth(Route::Push).await.unwrap(), 0);
    let mut c = b.consume(Route::Process, 10, "contract").await.unwrap();
    assert_eq!(c.route(), Route::Process);
    for i in 0..3 {
        let d = next(&mut c).await;
        assert_eq!(d.body(), format!("job {i}").as_bytes());
        assert_eq!(d.message_id(), Some(format!("m{i}").as_str()));
        assert!(!d.redelivered());
        assert_eq!(d.delivery_count(), 0);
        d.ack().await.unwrap();
    }
    none_within(&mut c, Duration::from_millis(300)).await;
    assert_eq!(b.queue_depth(Route::Process).await.unwrap(), 0);
    assert!(b.is_healthy().await);
    c.cancel().await;
    env.finish().await;
}

pub async fn bus_unsettled_is_redelivered(backend: Backend) {
    let env = Env::new(backend).await;
    let b = &env.broker;
    b.publish(Route::Push, b"once", "m1").await.unwrap();
    let mut c = b.consume(Route::Push, 1, "contract").await.unwrap();
    let first = next(&mut c).await;
    first.nack_requeue().await.unwrap();
    let second = next(&mut c).await;
    assert_eq!(second.body(), b"once");
    assert!(second.redelivered());
    assert_eq!(second.delivery_count(), 1);
    drop(second); // unsettled: back to the queue
    let third = next(&mut c).await;
    assert!(third.redelivered());
    assert_eq!(third.delivery_count(), 2);
    third.ack().await.unwrap();
    none_within(&mut c, Duration::from_millis(300)).await;
    env.finish().await;
}

pub async fn bus_prefetch_bounds_unsettled(backend: Backend) {
    let env = Env::new(backend).await;
    let b = &env.broker;
    for i in 0..3 {
        b.publish(Route::Process, b"x", &format!("m{i}"))
            .await
            .unwrap();
    }
    let mut c = b.consume(Route::Process, 2, "contract").await.unwrap();
    let d1 = next(&mut c).await;
    let d2 = next(&mut c).await;
    none_within(&mut c, Duration::from_millis(300)).await;
    d1.ack().await.unwrap();
    let d3 = next(&mut c).await;
    assert_eq!(d3.message_id(), Some("m2"));
    d2.ack().await.unwrap();
    d3.ack().await.unwrap();
    env.finish().await;
}

pub async fn bus_dead_letters_listed_and_replayed(backend: Backend) {
    let env = Env::new(backend).await;
    let b = &env.broker;
    b.publish(Route::Process, b"rejected", "r1").await.unwrap();
    let mut c = b.consume(Route::Process, 5, "contract").await.unwrap();
    next(&mut c).await.reject().await.unwrap();
    b.dead_letter(Route::Push, b"given up", "g1", "client gone")
        .await
        .unwrap();
    depth_becomes(b, Queue::Dead, 2).await;
    let letters = b.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 2);
    let rejected = letters
        .iter()
        .find(|l| l.message_id.as_deref() == Some("r1"))
        .unwrap();
    assert_eq!(rejected.route, Some(Route::Process));
    assert!(rejected.reason.contains("rejected"), "{}", rejected.reason);
    let given_up = letters
        .iter()
        .find(|l| l.message_id.as_deref() == Some("g1"))
        .unwrap();
    assert_eq!(given_up.route, Some(Route::Push));
    assert_eq!(given_up.reason, "client gone");
    assert_eq!(given_up.body, b"given up");
    // Listing leaves them in place.
    assert_eq!(b.dead_letters(10).await.unwrap().len(), 2);
    assert_eq!(b.replay_dead(10).await.unwrap(), 2);
    depth_becomes(b, Queue::Dead, 0).await;
    let again = next(&mut c).await;
    assert_eq!(again.body(), b"rejected");
    again.ack().await.unwrap();
    let mut p = b.consume(Route::Push, 5, "contract").await.unwrap();
    let pushed = next(&mut p).await;
    assert_eq!(pushed.body(), b"given up");
    pushed.ack().await.unwrap();
    env.finish().await;
}

pub async fn bus_delayed_publish_arrives_later(backend: Backend) {
    let env = Env::new(backend).await;
    let b = &env.broker;
    let mut c = b.consume(Route::Push, 5, "contract").await.unwrap();
    b.publish_delayed(Route::Push, b"later", "d1", Duration::from_millis(900))
        .await
        .unwrap();
    depth_becomes(b, Queue::Delayed(Route::Push), 1).await;
    none_within(&mut c, Duration::from_millis(300)).await;
    let d = next(&mut c).await;
    assert_eq!(d.body(), b"later");
    d.ack().await.unwrap();
    depth_becomes(b, Queue::Delayed(Route::Push), 0).await;
    env.finish().await;
}

pub async fn bus_close_ends_consumers(backend: Backend) {
    let env = Env::new(backend).await;
    let b = env.broker.clone();
    let mut c = b.consume(Route::Process, 5, "contract").await.unwrap();
    let waiting = tokio::spawn(async move { c.next().await.is_none() });
    b.delete_topology().await;
    b.close().await;
    assert!(tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap());
    assert!(!b.is_healthy().await);
    assert!(b.publish(Route::Process, b"x", "late").await.is_err());
    if env.real {
        env.state.purge_namespace().await.unwrap();
    }
}
