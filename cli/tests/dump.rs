//! `aliasctl dump` against a real gateway (local Redis and RabbitMQ).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use runtime::config::Config;
use tokio::process::Command;

#[actix_web::test]
async fn upload_list_delete_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let ns = format!("t{}", uuid::Uuid::new_v4().simple());
    let storage = dir.path().join("storage");
    let config = Config::from_pairs(&[
        ("ALIAS_NAMESPACE", ns.as_str()),
        ("ALIAS_STORAGE_URL", storage.to_str().unwrap()),
        ("ALIAS_LISTEN", "127.0.0.1:0"),
        ("ALIAS_PUBLIC_ORIGIN", "http://bank.test"),
    ])
    .unwrap();
    let (app, addr) = gateway::spawn(config).await.unwrap();
    let gw = format!("http://{addr}");

    let key = dir.path().join("user.key");
    let file = dir.path().join("takeout-001.zip");
    std::fs::write(&file, vec![7u8; 5_000_000]).unwrap();
    let bin = env!("CARGO_BIN_EXE_aliasctl");
    // Async, so the in-process gateway keeps serving while aliasctl runs.
    let run = |args: Vec<&str>| {
        let mut cmd = Command::new(bin);
        cmd.args(&args);
        async move {
            let out = cmd.output().await.unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (ok, pk, _) = run(vec!["keygen", "--out", key.to_str().unwrap()]).await;
    assert!(ok);
    let pk = pk.trim().to_owned();
    let (ok, out, err) = run(vec![
        "dump",
        "upload",
        "--quiet",
        "--key",
        key.to_str().unwrap(),
        "--gateway",
        &gw,
        "--provider",
        "google",
        file.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{err}");
    let body: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(body["dump"]["size"], 5_000_000);
    let stored = app
        .storage
        .get_bytes(&format!("dumps/{pk}/google/takeout-001.zip"))
        .await
        .unwrap();
    assert_eq!(stored.len(), 5_000_000);

    let (ok, out, err) = run(vec![
        "dump",
        "list",
        "--key",
        key.to_str().unwrap(),
        "--gateway",
        &gw,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("takeout-001.zip"));
    let (ok, _, err) = run(vec![
        "dump",
        "delete",
        "--key",
        key.to_str().unwrap(),
        "--gateway",
        &gw,
        "--provider",
        "google",
        "takeout-001.zip",
    ])
    .await;
    assert!(ok, "{err}");
    let (ok, _, err) = run(vec![
        "dump",
        "delete",
        "--key",
        key.to_str().unwrap(),
        "--gateway",
        &gw,
        "--provider",
        "google",
        "takeout-001.zip",
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("404"), "{err}");

    // Amazon's export as Amazon names it: uploaded under its own name
    // (shown as is), stored under a safe derived key, deleted by its name.
    let orders = dir.path().join("Your Orders.zip");
    std::fs::write(&orders, vec![3u8; 10_000]).unwrap();
    let (ok, out, err) = run(vec![
        "dump",
        "upload",
        "--quiet",
        "--key",
        key.to_str().unwrap(),
        "--gateway",
        &gw,
        "--provider",
        "amazon",
        orders.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{err}");
    let body: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(body["dump"]["name"], "Your Orders.zip");
    let stored_key = body["dump"]["key"].as_str().unwrap().to_owned();
    assert!(stored_key.starts_with(&format!("dumps/{pk}/amazon/Your_Orders-")));
    assert_eq!(
        app.storage.get_bytes(&stored_key).await.unwrap().len(),
        10_000
    );
    let (ok, out, err) = run(vec![
        "dump",
        "list",
        "--key",
        key.to_str().unwrap(),
        "--gateway",
        &gw,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("Your Orders.zip"), "{out}");
    let (ok, _, err) = run(vec![
        "dump",
        "delete",
        "--key",
        key.to_str().unwrap(),
        "--gateway",
        &gw,
        "--provider",
        "amazon",
        "Your Orders.zip",
    ])
    .await;
    assert!(ok, "{err}");
    assert!(app.storage.get_bytes(&stored_key).await.is_err());
    // A name that cannot be one file name is refused before any request.
    let (ok, _, err) = run(vec![
        "dump",
        "upload",
        "--quiet",
        "--key",
        key.to_str().unwrap(),
        "--gateway",
        &gw,
        "--provider",
        "amazon",
        "--name",
        "../x.zip",
        orders.to_str().unwrap(),
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("path separator"), "{err}");
    app.broker.delete_topology().await;
    app.state.purge_namespace().await.unwrap();
}
