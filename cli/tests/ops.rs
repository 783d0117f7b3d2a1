//! `aliasctl transfer` and `aliasctl dead` against a real gateway, Redis and RabbitMQ.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use runtime::config::Config;
use runtime::mq::{Queue, Route};
use runtime::state::{NewTransfer, TransferState};
use tokio::process::Command;

const OPERATOR: &str = "cli-test-operator-token-0123456789abcdef";

async fn aliasctl(args: &[&str], ns: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aliasctl"))
        .args(args)
        .env("ALIAS_NAMESPACE", ns)
        .env_remove("ALIAS_OPERATOR_TOKEN")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[actix_web::test]
async fn transfer_status_watch_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let ns = format!("t{}", uuid::Uuid::new_v4().simple());
    let config = Config::from_pairs(&[
        ("ALIAS_NAMESPACE", ns.as_str()),
        ("ALIAS_STORAGE_URL", dir.path().to_str().unwrap()),
        ("ALIAS_LISTEN", "127.0.0.1:0"),
        ("ALIAS_OPERATOR_TOKEN", OPERATOR),
    ])
    .unwrap();
    let (app, addr) = gateway::spawn(config).await.unwrap();
    let gw = format!("http://{addr}");

    let state = &app.state;
    let begin = state
        .begin_transfer(
            "T1",
            &NewTransfer {
                grant_token: "{}",
                grant_hash: "g",
                user: "u",
                push_url: "https://client.example/alias/push/T1",
                revoked: false,
            },
        )
        .await
        .unwrap();
    // Without a token the transfer is not shown; with the operators' token it is.
    let (ok, out) = aliasctl(&["transfer", "status", "--gateway", &gw, "T1"], &ns).await;
    assert!(!ok, "{out}");
    let (ok, out) = aliasctl(
        &[
            "transfer",
            "status",
            "--gateway",
            &gw,
            "--token",
            OPERATOR,
            "T1",
        ],
        &ns,
    )
    .await;
    assert!(ok);
    assert!(out.contains("\"state\": \"accepted\""), "{out}");

    // Watch follows the transfer to its end, whether it connects before,
    // during or after the changes (its first event is the current status).
    let args = [
        "transfer",
        "watch",
        "--quiet",
        "--gateway",
        gw.as_str(),
        "--token",
        OPERATOR,
        "T1",
    ];
    let watch = aliasctl(&args, &ns);
    let finish = async {
        let g = begin.generation;
        state
            .transition(
                "T1",
                g,
                &[TransferState::Accepted],
                TransferState::Processing,
                None,
            )
            .await
            .unwrap();
        state
            .transition(
                "T1",
                g,
                &[TransferState::Processing],
                TransferState::Pushing,
                None,
            )
            .await
            .unwrap();
        state
            .transition(
                "T1",
                g,
                &[TransferState::Pushing],
                TransferState::Done,
                None,
            )
            .await
            .unwrap();
    };
    let ((ok, out), ()) = tokio::join!(watch, finish);
    assert!(ok, "{out}");
    assert!(out.contains("\"state\": \"done\""), "{out}");

    // Dead letters: list, then replay onto their queue.
    app.broker
        .dead_letter(
            Route::Push,
            br#"{"transfer":"T1","generation":1,"file":null}"#,
            "m1",
            "client kept failing",
        )
        .await
        .unwrap();
    let (ok, out) = aliasctl(&["dead", "list"], &ns).await;
    assert!(ok);
    assert!(out.contains("client kept failing"), "{out}");
    let (ok, out) = aliasctl(&["dead", "replay"], &ns).await;
    assert!(ok);
    assert!(out.contains("\"replayed\": 1"), "{out}");
    assert_eq!(
        app.broker
            .queue_depth(Queue::Work(Route::Push))
            .await
            .unwrap(),
        1
    );

    app.broker.delete_topology().await;
    app.state.purge_namespace().await.unwrap();
}
