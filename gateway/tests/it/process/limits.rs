//! The rate limit and a broker connection lost while publishing.

use super::*;

#[actix_web::test]
async fn rate_limit_answers_429() {
    let bank = Bank::start_with(&[("ALIAS_RATE_PER_SEC", "1")]).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            bank.http
                .get(bank.url("/alias/"))
                .send()
                .await
                .unwrap()
                .status(),
        );
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Health checks are never limited.
    assert_eq!(
        bank.http
            .get(bank.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    bank.cleanup().await;
}

#[actix_web::test]
async fn broker_connection_loss_during_publishing_loses_no_accepted_job() {
    let bank = Bank::start().await;
    bind_user(&bank, 8).await;
    let user = user_key(8);
    let n = 30;
    let mut accepted = 0;
    for i in 0..n {
        if i == 10 {
            // Only this gateway's connection, not the other tests'.
            let needle = format!("alias-bank {}", bank.app.config.namespace);
            let closed = tokio::task::spawn_blocking(move || {
                runtime::mq::testing::close_connections(&needle)
            });
            assert!(closed.await.unwrap().unwrap() >= 1);
        }
        let c = contract(&format!("Client {i}"), "client.example");
        let (status, body, _) = process_async(&bank, &grant(&user, &c, now())).await;
        match status {
            StatusCode::ACCEPTED => accepted += 1,
            other => assert_eq!(other, StatusCode::SERVICE_UNAVAILABLE, "{body}"),
        }
    }
    assert!(accepted >= n - 1, "only {accepted} of {n} accepted");
    assert_eq!(bank.depth(Route::Process).await, accepted);
    bank.cleanup().await;
}
